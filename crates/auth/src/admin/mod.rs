//! What operators do: the functions behind the `tobira` CLI and the admin API (`api`),
//! and the audit log they write.

pub mod api;
pub mod audit;
pub mod clients;
pub mod support;
pub mod unlock;
pub mod users;
