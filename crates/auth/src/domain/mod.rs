//! Types that parse, not validate: once a handler holds one, it is valid.

mod client;
mod email;
mod ids;
mod session;
mod user;

pub use client::{Client, GrantType, RedirectUri, RedirectUriError};
pub use email::{Email, EmailError};
pub use ids::{Subject, UserId, row_id};
pub use session::{AMR_PASSWORD, BrowserSession, Grant};
pub use user::{User, UserStatus};
