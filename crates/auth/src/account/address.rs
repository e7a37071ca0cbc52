//! The pages that ask for one email address and answer the same whatever it holds: the
//! forgotten password (`/password/forgot`) and sign-in help (`/signin-help`). What the
//! address holds decides only what happens after the answer (in `state.background`), so
//! neither the page nor its timing tells a visitor whether an account uses it.

use std::future::Future;
use std::net::IpAddr;

use askama::Template;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{FORGOT, FormError, PageQuery, SIGNIN_HELP, park_of};
use crate::domain::Email;
use crate::state::AppState;
use crate::web::csrf;
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, page_lang, render};

/// Which of the pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressPage {
    Forgot,
    Help,
}

impl AddressPage {
    fn action(self) -> &'static str {
        match self {
            Self::Forgot => FORGOT,
            Self::Help => SIGNIN_HELP,
        }
    }

    /// Title, lead, button and the answer after a post.
    fn texts(self) -> [Msg; 4] {
        match self {
            Self::Forgot => [
                Msg::ForgotTitle,
                Msg::ForgotLead,
                Msg::ForgotButton,
                Msg::ForgotSent,
            ],
            Self::Help => [
                Msg::SignInHelpTitle,
                Msg::SignInHelpLead,
                Msg::SignInHelpButton,
                Msg::SignInHelpSent,
            ],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Forgot => "password reset",
            Self::Help => "sign-in help",
        }
    }
}

#[derive(Template)]
#[template(path = "address_form.html")]
struct Page<'a> {
    lang: Lang,
    action: &'static str,
    title: &'static str,
    lead: &'static str,
    button: &'static str,
    sent_text: &'static str,
    /// The help page is offered from the forgot page, not from itself.
    offer_help: bool,
    csrf: &'a str,
    tx: &'a str,
    email: &'a str,
    error: Option<FormError>,
    sent: bool,
}

impl Page<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

struct View<'a> {
    csrf: &'a str,
    tx: &'a str,
    email: &'a str,
    error: Option<FormError>,
    sent: bool,
}

fn show(
    kind: AddressPage,
    lang: Lang,
    view: View<'_>,
    status: StatusCode,
    cookies: &[String],
) -> Response {
    let [title, lead, button, sent_text] = kind.texts();
    let page = Page {
        lang,
        action: kind.action(),
        title: title.text(lang),
        lead: lead.text(lang),
        button: button.text(lang),
        sent_text: sent_text.text(lang),
        offer_help: kind == AddressPage::Forgot,
        csrf: view.csrf,
        tx: view.tx,
        email: view.email,
        error: view.error,
        sent: view.sent,
    };
    render(status, &page, cookies)
}

/// The empty form.
pub async fn get(
    kind: AddressPage,
    state: &AppState,
    headers: &HeaderMap,
    q: &PageQuery,
) -> Response {
    let lang = page_lang(q.lang.as_deref(), None, headers);
    let tx = park_of(state, headers, &q.tx).await;
    let (csrf, set_cookie) = csrf::token(state.cookies, headers);
    let view = View {
        csrf: &csrf,
        tx: &tx,
        email: "",
        error: None,
        sent: false,
    };
    show(kind, lang, view, StatusCode::OK, set_cookie.as_slice())
}

#[derive(Deserialize)]
pub struct AddressForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    tx: String,
    lang: Option<String>,
}

/// A posted form (its CSRF token and origin already checked): a malformed address gets
/// the form back; any other gets the same answer at once, and `work` runs after it.
pub async fn post<F, Fut>(
    kind: AddressPage,
    state: &AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    request_id: RequestId,
    form: AddressForm,
    work: F,
) -> Response
where
    F: FnOnce(AppState, IpAddr, Email, String, Lang) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let lang = page_lang(form.lang.as_deref(), None, headers);
    let tx = park_of(state, headers, &form.tx).await;
    let email = match Email::parse(&form.email) {
        Ok(email) => email,
        Err(e) => {
            let view = View {
                csrf: &form.csrf,
                tx: &tx,
                email: &form.email,
                error: Some(FormError::new(Msg::from(e), None, lang)),
                sent: false,
            };
            return show(kind, lang, view, StatusCode::BAD_REQUEST, &[]);
        }
    };
    let job = work(state.clone(), ip, email, tx.clone(), lang);
    state.background.spawn(async move {
        if let Err(e) = job.await {
            tracing::error!(error = %e, request_id = ?request_id.0, "{} failed", kind.name());
        }
    });
    let view = View {
        csrf: &form.csrf,
        tx: &tx,
        email: "",
        error: None,
        sent: true,
    };
    show(kind, lang, view, StatusCode::OK, &[])
}
