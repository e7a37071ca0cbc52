//! CSRF protection for Tobira's own forms (not for protocol endpoints, which other sites
//! call by design): a double-submit token. A random value lives in an HttpOnly,
//! SameSite=Lax cookie and in a hidden field; a forged cross-site POST carries neither the
//! cookie (Lax) nor a way to read it.

use axum::http::HeaderMap;

use super::cookies::{CSRF, CookiePolicy};
use crate::crypto::{constant_time_eq, random_token};

/// The token for a form, and the `Set-Cookie` to send when the browser had none.
pub fn token(policy: CookiePolicy, headers: &HeaderMap) -> (String, Option<String>) {
    match policy.get(headers, CSRF).filter(|t| t.len() >= 32) {
        Some(existing) => (existing, None),
        None => {
            let fresh = random_token(&mut rand::rng(), 32);
            let cookie = policy.set(CSRF, &fresh, None);
            (fresh, Some(cookie))
        }
    }
}

/// Whether a submitted form carries the token of this browser's cookie.
pub fn verify(policy: CookiePolicy, headers: &HeaderMap, submitted: Option<&str>) -> bool {
    match (policy.get(headers, CSRF), submitted) {
        (Some(cookie), Some(field)) if cookie.len() >= 32 => {
            constant_time_eq(cookie.as_bytes(), field.as_bytes())
        }
        _ => false,
    }
}
