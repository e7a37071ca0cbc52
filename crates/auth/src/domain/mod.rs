//! Types that parse, not validate: once a handler holds one, it is valid.

mod client;
mod email;
mod ids;
mod session;
mod user;

pub use client::{Client, GrantType, RedirectUri, RedirectUriError};
pub use email::{Email, EmailError};
pub use ids::{Subject, UserId, row_id};
pub use session::{
    ACR_ONE, ACR_TWO, AMR_FED, AMR_MCA, AMR_MFA, AMR_OTP, AMR_PASSWORD, AMR_POP, AMR_USER,
    BrowserSession, Grant,
};
pub use user::{User, UserStatus};
