//! Types that parse, not validate: once a handler holds one, it is valid.

mod email;
mod ids;
mod user;

pub use email::{Email, EmailError};
pub use ids::{Subject, UserId};
pub use user::{User, UserStatus};
