//! What operators do: the functions behind the `tobira` CLI (and the admin API later).

pub mod clients;
pub mod support;
pub mod unlock;
pub mod users;
