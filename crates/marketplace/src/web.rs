//! What every route shares: the HTML renderers (pages and the message page), redirects,
//! the marketplace's cookies, and the security headers on every response.

use askama::Template;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use time::Duration;

use crate::i18n::{self, Texts};

/// The marketplace's cookies. With an https public URL their names carry the
/// `__Host-` prefix, which browsers accept only with Secure, Path=/ and no Domain: a
/// sibling subdomain or a plain-http page on the same host cannot plant or overwrite
/// them (RFC 6265bis §4.1.3.2).
#[derive(Clone, Copy, Debug)]
pub struct Cookies {
    secure: bool,
}

#[derive(Clone, Copy, Debug)]
pub enum CookieName {
    /// The signed-in session.
    Session,
    /// Ties a sign-in's return to the browser that started it.
    Login,
}

impl Cookies {
    pub fn for_public_url(public_url: &str) -> Self {
        Self {
            secure: public_url.starts_with("https://"),
        }
    }

    pub fn name(self, which: CookieName) -> &'static str {
        match (which, self.secure) {
            (CookieName::Session, true) => "__Host-mp_session",
            (CookieName::Session, false) => "mp_session",
            (CookieName::Login, true) => "__Host-mp_login",
            (CookieName::Login, false) => "mp_login",
        }
    }

    pub fn get(self, headers: &HeaderMap, which: CookieName) -> Option<String> {
        let name = self.name(which);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|p| cookie::Cookie::parse(p.trim().to_owned()).ok())
            .find(|c| c.name() == name)
            .map(|c| c.value().to_owned())
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Lax (the OP's redirect back is a
    /// top-level GET, which Lax lets through), Path=/, never a Domain.
    pub fn set(self, which: CookieName, value: &str, max_age: Option<Duration>) -> String {
        let mut c = cookie::Cookie::new(self.name(which), value.to_owned());
        c.set_http_only(true);
        c.set_same_site(cookie::SameSite::Lax);
        c.set_path("/");
        c.set_secure(self.secure);
        if let Some(age) = max_age {
            c.set_max_age(age);
        }
        c.to_string()
    }

    pub fn clear(self, which: CookieName) -> String {
        self.set(which, "", Some(Duration::ZERO))
    }
}

/// Security headers on every response; pages are personal, so not cached by default.
/// `Referrer-Policy: same-origin` keeps member ids and paths from leaking to other
/// sites, yet (unlike `no-referrer`) lets browsers send the real `Origin` on the
/// marketplace's own form posts, which the origin check relies on.
pub async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

pub fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

pub fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

pub fn texts(headers: &HeaderMap) -> &'static Texts {
    i18n::texts(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    lang: &'a str,
    t: &'a Texts,
    title: &'a str,
    message: &'a str,
    testid: Option<&'a str>,
    offer_sign_in: bool,
}

pub fn message(
    status: StatusCode,
    t: &Texts,
    message: &str,
    testid: Option<&str>,
    offer_sign_in: bool,
) -> Response {
    let title = if status.is_success() {
        t.mypage
    } else {
        t.error_title
    };
    page(
        status,
        &MessagePage {
            lang: t.lang,
            t,
            title,
            message,
            testid,
            offer_sign_in,
        },
    )
}

/// Why a page is not what was asked for. Handlers return it with `?`; it renders as
/// an HTML page in the visitor's language and logs its cause, which is never shown.
pub struct PageError {
    t: &'static Texts,
    kind: PageErrorKind,
}

#[derive(Debug)]
enum PageErrorKind {
    /// A sign-in that cannot complete (400, with a way to start again).
    SignInFailed(String),
    /// Not, or no longer, signed in.
    SignInRequired,
    /// A form from another site, or without this session's token (403).
    FormRefused(&'static str),
    /// Ours or the OP's fault (500).
    Internal(String),
}

impl std::fmt::Debug for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind.fmt(f)
    }
}

impl PageError {
    pub fn sign_in_failed(t: &'static Texts, why: impl std::fmt::Display) -> Self {
        Self {
            t,
            kind: PageErrorKind::SignInFailed(why.to_string()),
        }
    }

    pub fn sign_in_required(t: &'static Texts) -> Self {
        Self {
            t,
            kind: PageErrorKind::SignInRequired,
        }
    }

    pub fn form_refused(t: &'static Texts, why: &'static str) -> Self {
        Self {
            t,
            kind: PageErrorKind::FormRefused(why),
        }
    }

    /// For `map_err`: `.map_err(PageError::internal(t))?`.
    pub fn internal<E: std::fmt::Display>(t: &'static Texts) -> impl FnOnce(E) -> Self {
        move |e| Self {
            t,
            kind: PageErrorKind::Internal(e.to_string()),
        }
    }

    pub fn is_sign_in_required(&self) -> bool {
        matches!(self.kind, PageErrorKind::SignInRequired)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let t = self.t;
        match self.kind {
            PageErrorKind::SignInFailed(why) => {
                tracing::warn!(error = %why, "sign-in failed");
                message(
                    StatusCode::BAD_REQUEST,
                    t,
                    t.signin_failed,
                    Some("signin-failed"),
                    true,
                )
            }
            PageErrorKind::SignInRequired => message(
                StatusCode::OK,
                t,
                t.signin_required,
                Some("signin-required"),
                true,
            ),
            PageErrorKind::FormRefused(why) => {
                tracing::warn!(reason = why, "form refused");
                message(StatusCode::FORBIDDEN, t, t.form_expired, None, false)
            }
            PageErrorKind::Internal(why) => {
                tracing::error!(error = %why, "request failed");
                message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    t,
                    t.signin_unavailable,
                    None,
                    false,
                )
            }
        }
    }
}
