//! Rendering pages: askama templates (HTML-escaped by default), the page headers, error
//! pages, and the stylesheet.

use askama::Template;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::i18n::{Lang, Msg};

/// Pages with forms must not be cached: a back button must not replay a stale CSRF token,
/// and a shared computer must not show someone's sign-in page from cache.
pub fn html(status: StatusCode, body: String, set_cookies: &[String]) -> Response {
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    res
}

/// Renders a template; a template that fails to render is a bug, answered as a 500.
pub fn render(status: StatusCode, page: &impl Template, set_cookies: &[String]) -> Response {
    match page.render() {
        Ok(body) => html(status, body, set_cookies),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub lang: Lang,
    pub message: Msg,
    pub request_id: Option<String>,
}

impl ErrorPage {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

pub fn error_page(
    status: StatusCode,
    lang: Lang,
    message: Msg,
    request_id: Option<String>,
) -> Response {
    render(
        status,
        &ErrorPage {
            lang,
            message,
            request_id,
        },
        &[],
    )
}

/// A store we need is down (or full): a readable page, 503, and when to try again.
/// Load balancers and browsers both understand `Retry-After`.
pub fn unavailable_page(lang: Lang) -> Response {
    let mut res = error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        lang,
        Msg::Unavailable,
        None,
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    res
}

/// The request id (set by the request-id layer), shown on 5xx pages so support can
/// find the logged cause.
#[derive(Clone, Debug)]
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ))
    }
}

/// The page language: an explicit choice, then `ui_locales`, then `Accept-Language`,
/// then Japanese.
pub fn page_lang(explicit: Option<&str>, ui_locales: Option<&str>, headers: &HeaderMap) -> Lang {
    explicit
        .and_then(Lang::from_tag)
        .or_else(|| ui_locales.and_then(Lang::negotiate))
        .or_else(|| {
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::negotiate)
        })
        .unwrap_or_default()
}

const STYLESHEET: &str = include_str!("../../static/tobira.css");
/// The passkey ceremonies (`authn::passkey`): Tobira's only script, no third-party code.
const PASSKEY_SCRIPT: &str = include_str!("../../static/passkey.js");

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/static/tobira.css",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=3600"),
                    ],
                    STYLESHEET,
                )
            }),
        )
        .route(
            "/static/passkey.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=3600"),
                    ],
                    PASSKEY_SCRIPT,
                )
            }),
        )
}
