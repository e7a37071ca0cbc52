//! `ProtectedForm<T>`: the one way in for the marketplace's own state-changing forms.
//! It checks where the request comes from, that a session is signed in, and that the
//! form carries that session's CSRF token, so a new form cannot forget any of them.

use axum::Form;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::session::current;
use crate::state::AppState;
use crate::store::sessions::Session;
use crate::web::{PageError, texts};

/// A form of the signed-in member, from the marketplace's own pages.
pub struct ProtectedForm<T> {
    pub session: Session,
    pub fields: T,
}

/// For forms that carry nothing but the token.
#[derive(Deserialize)]
pub struct NoFields {}

#[derive(Deserialize)]
struct Submitted<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    fields: T,
}

impl<T> FromRequest<AppState> for ProtectedForm<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let t = texts(req.headers());
        if !same_origin(req.headers(), &state.origin) {
            return Err(PageError::form_refused(t, "cross-origin form post"));
        }
        let session = current(state, req.headers())
            .await
            .map_err(PageError::internal(t))?
            .ok_or_else(|| PageError::sign_in_required(t))?;
        let Form(submitted) = Form::<Submitted<T>>::from_request(req, state)
            .await
            .map_err(|_| PageError::form_refused(t, "unreadable form"))?;
        // Constant time: the comparison must not reveal how much of a guess was right.
        let token_ok: bool = submitted
            .csrf
            .as_bytes()
            .ct_eq(session.csrf.as_bytes())
            .into();
        if !token_ok {
            return Err(PageError::form_refused(t, "wrong CSRF token"));
        }
        Ok(Self {
            session,
            fields: submitted.fields,
        })
    }
}

/// Whether a form post comes from the marketplace's own pages, as far as the browser
/// says. `Sec-Fetch-Site` is set by the browser and cannot be forged by a page;
/// `Origin` is sent on every cross-origin POST. `Origin: null` (sandboxed frames,
/// some redirects) is refused too: it could be anyone. A request with neither header
/// (an old browser, a non-browser client) is judged by its CSRF token alone.
fn same_origin(headers: &HeaderMap, own_origin: &str) -> bool {
    match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
        Some(b"same-origin") => return true,
        Some(b"cross-site") => return false,
        _ => {}
    }
    headers
        .get(header::ORIGIN)
        .is_none_or(|origin| origin.as_bytes() == own_origin.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_posts_from_the_marketplaces_own_origin_pass_the_origin_check() {
        let own = "https://market.example";
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("sec-fetch-site", "same-origin")], true),
            (&[("origin", "https://market.example")], true),
            (&[], true),
            (&[("sec-fetch-site", "cross-site")], false),
            (
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://market.example"),
                ],
                false,
            ),
            (&[("origin", "https://attacker.example")], false),
            (&[("origin", "null")], false),
            (
                &[
                    ("sec-fetch-site", "same-site"),
                    ("origin", "https://a.market.example"),
                ],
                false,
            ),
            (&[("origin", "http://market.example")], false),
        ];
        for (pairs, expected) in cases {
            assert_eq!(same_origin(&headers(pairs), own), *expected, "{pairs:?}");
        }
    }
}
