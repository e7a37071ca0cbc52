//! How a person proves who they are, and the browser session that remembers it. Passwords and
//! throttling now; TOTP, passkeys, email codes and federation arrive with later issues.

pub mod feedback;
pub mod password;
pub mod session;
pub mod sign_in;
pub mod throttle;
