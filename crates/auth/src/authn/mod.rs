//! How a person proves who they are, and the browser session that remembers it. Passwords,
//! throttling and the new-device mail (`risk`) now; TOTP, passkeys, email codes and
//! federation arrive with later issues.

pub mod feedback;
pub mod passkey;
pub mod password;
pub mod risk;
pub mod second_step;
pub mod session;
pub mod sign_in;
pub mod throttle;
pub mod totp;
