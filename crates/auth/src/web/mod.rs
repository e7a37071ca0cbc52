//! What the pages share: the message catalogue (Japanese first, English second), cookies,
//! CSRF tokens, client IPs, security headers, page rendering and error pages; and the
//! `Authorization` header every endpoint that takes credentials reads.

pub mod client_ip;
pub mod cookies;
pub mod csrf;
pub mod device;
pub mod i18n;
pub mod pages;

use axum::http::{HeaderMap, header::AUTHORIZATION};

/// The credentials of the `Authorization` header when it names `scheme` (RFC 9110
/// §11.6.2: `scheme SP credentials`, the scheme case-insensitive), without surrounding
/// spaces. `None` for another scheme, a header that is not text, or no credentials: as
/// if there were no header.
pub fn authorization<'h>(headers: &'h HeaderMap, scheme: &str) -> Option<&'h str> {
    let (given, credentials) = headers.get(AUTHORIZATION)?.to_str().ok()?.split_once(' ')?;
    let credentials = credentials.trim();
    (given.eq_ignore_ascii_case(scheme) && !credentials.is_empty()).then_some(credentials)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with(value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        headers
    }

    #[test]
    fn the_credentials_of_the_named_scheme_only() {
        for (value, expected) in [
            ("Bearer abc.def", Some("abc.def")),
            ("bearer abc", Some("abc")),
            ("BEARER  abc  ", Some("abc")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Bearer    ", None),
            ("Bearerabc", None),
            ("Basic YTpi", None),
            ("Bear abc", None),
            ("Bearer\tabc", None),
            ("", None),
        ] {
            assert_eq!(
                authorization(&with(value.as_bytes()), "bearer"),
                expected,
                "{value:?}"
            );
        }
        assert_eq!(authorization(&with(b"Basic YTpi"), "basic"), Some("YTpi"));
        // Not text: no credentials, no panic.
        assert_eq!(authorization(&with(b"Bearer \xff\xfe"), "bearer"), None);
        assert_eq!(authorization(&HeaderMap::new(), "bearer"), None);
    }
}
