//! Tobira's cookies. Names are prefixed so they never collide with a relying party on the
//! same host; on https they also carry `__Host-` (Secure, host-only, Path=/), which stops a
//! sibling subdomain from planting them.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use cookie::{Cookie, SameSite};
use time::Duration;

pub const SESSION: &str = "tobira_session";
pub const DEVICE: &str = "tobira_device";
pub const CSRF: &str = "tobira_csrf";
/// Binds parked authorization requests to the browser that started them (`flow`).
pub const BIND: &str = "tobira_bind";
/// A device that skips the second step (`authn::second_step`): a random secret whose
/// hash the account's remembered device keeps.
pub const REMEMBER: &str = "tobira_2fa_remember";

/// Browsers cap cookie lifetimes at 400 days (RFC 6265bis).
pub const DEVICE_LIFETIME: Duration = Duration::days(400);

#[derive(Clone, Copy, Debug)]
pub struct CookiePolicy {
    pub secure: bool,
}

impl CookiePolicy {
    pub fn name(self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// Reads a cookie of ours from the request.
    pub fn get(self, headers: &HeaderMap, base: &str) -> Option<String> {
        let name = self.name(base);
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| Cookie::parse(pair.trim().to_owned()).ok())
            .find(|c| c.name() == name)
            .map(|c| c.value().to_owned())
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure on https. `max_age`
    /// `None` makes a cookie that ends with the browser.
    pub fn set(self, base: &str, value: &str, max_age: Option<Duration>) -> String {
        let mut c = Cookie::new(self.name(base), value.to_owned());
        c.set_http_only(true);
        c.set_same_site(SameSite::Lax);
        c.set_path("/");
        c.set_secure(self.secure);
        if let Some(age) = max_age {
            c.set_max_age(age);
        }
        c.to_string()
    }

    pub fn clear(self, base: &str) -> String {
        self.set(base, "", Some(Duration::ZERO))
    }

    /// This browser's device: the hash of its device cookie (only the hash is ever
    /// stored), and the `Set-Cookie` that gives it one when it has none yet (or one of a
    /// length we never issued). 22 characters: cookies set before it grew to 256 bits.
    pub fn device(self, headers: &HeaderMap) -> (String, Option<String>) {
        match self
            .get(headers, DEVICE)
            .filter(|d| d.len() == 43 || d.len() == 22)
        {
            Some(d) => (crate::crypto::sha256_hex(&d), None),
            None => {
                let d = crate::crypto::random_token(&mut rand::rng(), 32);
                let set = self.set(DEVICE, &d, Some(DEVICE_LIFETIME));
                (crate::crypto::sha256_hex(&d), Some(set))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_prefixed_and_hardened() {
        let http = CookiePolicy { secure: false };
        let set = http.set(SESSION, "abc", None);
        assert!(set.starts_with("tobira_session=abc"), "{set}");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"));
        assert!(!set.contains("Secure") && !set.contains("Max-Age"));
        let https = CookiePolicy { secure: true };
        let set = https.set(SESSION, "abc", Some(Duration::days(30)));
        assert!(
            set.starts_with("__Host-tobira_session=abc") && set.contains("Secure"),
            "{set}"
        );
        assert!(set.contains("Max-Age=2592000"), "{set}");

        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("rp_session=x; tobira_session=mine; other=y"),
        );
        assert_eq!(http.get(&headers, SESSION).as_deref(), Some("mine"));
        assert_eq!(https.get(&headers, SESSION), None);
    }
}
