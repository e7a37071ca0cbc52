//! Cross-site request forgery defence for Tobira's own forms (not for protocol endpoints,
//! which other sites call by design). Two checks, both in the `CsrfForm` extractor so a
//! new page cannot forget either:
//! - a double-submit token: a random value in an HttpOnly, SameSite=Lax cookie and in a
//!   hidden field; a forged cross-site POST carries neither the cookie (Lax) nor a way
//!   to read it;
//! - the request's origin (`Sec-Fetch-Site`, `Origin`): a complete, token-carrying POST
//!   from another site (a planted cookie, a leaked token) is still refused.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::client_ip::client_ip;
use super::cookies::{CSRF, CookiePolicy};
use super::i18n::Msg;
use super::pages::{error_page, page_lang};
use crate::crypto::{constant_time_eq, random_token};
use crate::state::AppState;

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

/// Why a form post was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `Sec-Fetch-Site: cross-site`, or an `Origin` that is not ours (`null` included).
    CrossSite,
    /// No token, or not this browser's.
    Token,
    /// The body is not a form of the expected shape.
    Malformed,
}

/// Whether the request comes from one of our own pages (Fetch Metadata, then Origin).
/// A request with neither header (an old browser, a privacy proxy) is judged by its
/// token alone.
pub fn same_origin(headers: &HeaderMap, our_origin: &str) -> bool {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site == Some("same-origin") {
        return true;
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        // `Origin: null` (sandboxed frames, some redirects) is not ours either.
        if origin.as_bytes() != our_origin.as_bytes() {
            return false;
        }
    }
    site != Some("cross-site")
}

#[derive(Deserialize)]
struct TokenField {
    csrf: Option<String>,
}

/// A form of one of Tobira's own pages whose token and origin were checked.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let refuse = |why: Refusal| {
            let ip = peer.map(|p| client_ip(p, &headers, &state.config.server.trusted_proxies));
            tracing::warn!(
                reason = ?why,
                ip = ?ip,
                origin = ?headers.get(header::ORIGIN),
                fetch_site = ?headers.get("sec-fetch-site"),
                "form post refused"
            );
            let lang = page_lang(None, None, &headers);
            match why {
                Refusal::CrossSite => error_page(StatusCode::FORBIDDEN, lang, Msg::CrossSite, None),
                Refusal::Token => error_page(StatusCode::FORBIDDEN, lang, Msg::FormExpired, None),
                Refusal::Malformed => {
                    error_page(StatusCode::BAD_REQUEST, lang, Msg::BadRequest, None)
                }
            }
        };
        if !same_origin(&headers, &state.issuer_origin) {
            return Err(refuse(Refusal::CrossSite));
        }
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(refuse(Refusal::Malformed));
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let token: TokenField =
            serde_urlencoded::from_bytes(&body).map_err(|_| refuse(Refusal::Malformed))?;
        if !verify(state.cookies, &headers, token.csrf.as_deref()) {
            return Err(refuse(Refusal::Token));
        }
        let form = serde_urlencoded::from_bytes(&body).map_err(|_| refuse(Refusal::Malformed))?;
        Ok(Self(form))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_our_own_origin_passes_the_origin_check() {
        let ours = "https://id.example.jp";
        assert!(same_origin(
            &headers(&[("sec-fetch-site", "same-origin")]),
            ours
        ));
        assert!(same_origin(
            &headers(&[("origin", "https://id.example.jp")]),
            ours
        ));
        assert!(same_origin(&headers(&[]), ours));
        assert!(!same_origin(&headers(&[("origin", "null")]), ours));
        assert!(!same_origin(
            &headers(&[("origin", "https://attacker.example")]),
            ours
        ));
        assert!(!same_origin(
            &headers(&[("sec-fetch-site", "cross-site")]),
            ours
        ));
        assert!(!same_origin(
            &headers(&[("origin", "https://id.example.jp.attacker.example")]),
            ours
        ));
        // A sibling subdomain is "same-site" but not our origin.
        assert!(!same_origin(
            &headers(&[
                ("sec-fetch-site", "same-site"),
                ("origin", "https://evil.example.jp")
            ]),
            ours
        ));
    }
}
