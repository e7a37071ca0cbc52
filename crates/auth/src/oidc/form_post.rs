//! OAuth 2.0 Form Post Response Mode: an auto-submitting form to the client's redirect
//! URI. The one script on it runs by a CSP nonce made for this response alone.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::crypto::random_token;
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::render;

#[derive(Template)]
#[template(path = "form_post.html")]
struct FormPost<'a> {
    lang: Lang,
    action: &'a str,
    params: &'a [(&'a str, String)],
    nonce: &'a str,
}

impl FormPost<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

pub fn page(redirect_uri: &str, params: &[(&str, String)]) -> Response {
    let nonce = random_token(&mut rand::rng(), 16);
    let mut res = render(
        StatusCode::OK,
        &FormPost {
            lang: Lang::default(),
            action: redirect_uri,
            params,
            nonce: &nonce,
        },
        &[],
    );
    // No `form-action`: browsers would apply it to the POST to the client as well.
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; base-uri 'none'; frame-ancestors 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}
