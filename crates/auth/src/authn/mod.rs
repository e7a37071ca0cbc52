//! How a person proves who they are. Passwords now; TOTP, passkeys, email codes,
//! federation and throttling arrive with later issues.

pub mod password;
