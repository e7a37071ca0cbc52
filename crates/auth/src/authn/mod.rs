//! How a person proves who they are, and the browser session that remembers it. Passwords
//! now; TOTP, passkeys, email codes, federation and throttling arrive with later issues.

pub mod feedback;
pub mod password;
pub mod session;
pub mod sign_in;
