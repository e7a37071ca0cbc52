//! What the pages share: the message catalogue (Japanese first, English second), cookies,
//! CSRF tokens, client IPs, security headers, page rendering and error pages.

pub mod client_ip;
pub mod cookies;
pub mod csrf;
pub mod device;
pub mod i18n;
pub mod pages;
