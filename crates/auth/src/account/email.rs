//! Changing the address an account signs in with (`/account/email`). A recently signed-in
//! member asks for the change; the new address gets a link (24 h, single use) and only that
//! link changes the address. The address it left is told at once, with a link (7 days)
//! that undoes the change whatever happened since: the address comes back, everything
//! signed in ends, and the account signs in again only after a password reset mailed to
//! that address (whoever made the change may know the password).

mod confirm;
mod undo;

/// The second-step page names the address an email code goes to the same way.
pub(crate) use confirm::masked;

use std::net::IpAddr;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use time::Duration;

use super::audit_ctx::AuditOrigin;
use super::console::CurrentSession;
use super::reauth::RecentSession;
use super::{EMAIL_CONFIRM, FormError, link, mail_allowed, user_lang};
use crate::crypto::{random_token, sha256_hex};
use crate::domain::{Email, User};
use crate::keys::KeyError;
use crate::mail::templates;
use crate::state::AppState;
use crate::store::{NewLink, QueuedMail, StoreError};
use crate::web::client_ip::ClientAddr;
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render};

pub use confirm::{get_confirm, post_confirm};
pub use undo::{get_undo, post_undo};

/// How long the new address's link works.
pub const CONFIRM_LIFETIME: Duration = Duration::hours(24);
/// How long the old address's undo link works: long enough for a member back from a
/// week away to find the mail.
pub const UNDO_LIFETIME: Duration = Duration::days(7);
/// Our tokens are 43 characters; anything much longer is not one of them and is not
/// worth hashing.
const MAX_TOKEN: usize = 64;

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot seal the mail: {0}")]
    Seal(#[from] KeyError),
    #[error("cannot count mails: {0}")]
    Cap(String),
}

/// A 500 page for a failure: its cause is logged, never shown.
fn failed(lang: Lang, request_id: RequestId, e: &Failure) -> Response {
    tracing::error!(error = %e, "email change failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        lang,
        Msg::ServerError,
        request_id.0,
    )
}

/// Why a link's page shows no form.
enum Refusal {
    /// Not one of our tokens, spent, replaced or expired.
    LinkDead,
    /// The browser is signed in to another account than the link's.
    OtherAccount(Lang),
    /// The account is frozen or deleted, or must reset its password first.
    AccountUnavailable(Lang),
    Failed(Failure),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Self::Failed(e.into())
    }
}

impl Refusal {
    /// The page, in the account's language when the link named one.
    fn respond(
        self,
        explicit: Option<&str>,
        headers: &HeaderMap,
        request_id: RequestId,
    ) -> Response {
        let lang = match self {
            Self::OtherAccount(lang) | Self::AccountUnavailable(lang) => lang,
            Self::LinkDead | Self::Failed(_) => page_lang(explicit, None, headers),
        };
        self.page(lang, request_id)
    }

    fn page(self, lang: Lang, request_id: RequestId) -> Response {
        let (status, message) = match self {
            Self::LinkDead => (StatusCode::BAD_REQUEST, Msg::EmailLinkInvalid),
            Self::OtherAccount(_) => (StatusCode::FORBIDDEN, Msg::EmailLinkOtherAccount),
            Self::AccountUnavailable(_) => (StatusCode::FORBIDDEN, Msg::AccountUnavailable),
            Self::Failed(e) => return failed(lang, request_id, &e),
        };
        error_page(status, lang, message, None)
    }
}

/// A token as it came in, when it can be one of ours; else `None` (answered as a dead
/// link without a lookup).
fn token_hash(token: &str) -> Option<String> {
    (!token.is_empty() && token.len() <= MAX_TOKEN).then(|| sha256_hex(token))
}

/// The form of a link's page (its `csrf` field is checked by `CsrfForm`).
#[derive(Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    token: String,
    lang: Option<String>,
}

// ---- the request: `/account/email` ----

#[derive(Template)]
#[template(path = "account_email.html")]
struct EmailPage<'a> {
    lang: Lang,
    csrf: &'a str,
    /// The address the account signs in with now.
    current: &'a str,
    /// The new address as typed, when the form comes back with an error.
    email: &'a str,
    error: Option<FormError>,
    /// After a request: what the page says instead of the form.
    sent: Option<String>,
}

impl EmailPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// `GET /account/email`: the current address and the form (after a recent sign-in).
pub async fn get_email(
    State(state): State<AppState>,
    RecentSession(current): RecentSession,
    headers: HeaderMap,
) -> Response {
    let lang = page_lang(None, Some(&current.user.locale), &headers);
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    let page = EmailPage {
        lang,
        csrf: &csrf,
        current: current.user.email.display(),
        email: "",
        error: None,
        sent: None,
    };
    render(StatusCode::OK, &page, set_cookie.as_slice())
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf: String,
    /// The new address.
    #[serde(default)]
    email: String,
}

/// `POST /account/email`: sends the new address its link. Whether another account uses
/// the address is not checked here: the answer would tell a member who else has an
/// account. The confirmation decides, by the unique index.
pub async fn post_email(
    State(state): State<AppState>,
    RecentSession(current): RecentSession,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    request_id: RequestId,
    origin: AuditOrigin,
    CsrfForm(form): CsrfForm<EmailForm>,
) -> Response {
    let CurrentSession { user, .. } = &current;
    let lang = page_lang(None, Some(&user.locale), &headers);
    let again = |error: Msg| {
        let page = EmailPage {
            lang,
            csrf: &form.csrf,
            current: user.email.display(),
            email: &form.email,
            error: Some(FormError::new(error, None, lang)),
            sent: None,
        };
        render(StatusCode::BAD_REQUEST, &page, &[])
    };
    let new = match Email::parse(&form.email) {
        Ok(email) => email,
        Err(e) => return again(Msg::from(e)),
    };
    // Compared as addresses (case, width), never as raw text.
    if new.normalized() == user.email.normalized() {
        return again(Msg::EmailChangeSame);
    }
    if let Err(e) = request_change(&state, user, &new, ip, lang, &origin).await {
        return failed(lang, request_id, &e);
    }
    let sent = Msg::EmailChangeSent
        .text(lang)
        .replace("{hours}", &CONFIRM_LIFETIME.whole_hours().to_string());
    let page = EmailPage {
        lang,
        csrf: "",
        current: user.email.display(),
        email: "",
        error: None,
        sent: Some(sent),
    };
    render(StatusCode::OK, &page, &[])
}

/// Records the change and queues the new address's link, unless the mail caps are
/// reached: then nothing is sent and the page answers the same (like the reset form), so
/// the form cannot bomb an inbox.
async fn request_change(
    state: &AppState,
    user: &User,
    new: &Email,
    ip: IpAddr,
    lang: Lang,
    origin: &AuditOrigin,
) -> Result<(), Failure> {
    if !mail_allowed(state, new, ip).await.map_err(Failure::Cap)? {
        tracing::warn!(user = %user.id.0, ip = %ip, "email change: mail cap reached, nothing sent");
        return Ok(());
    }
    let token = random_token(&mut rand::rng(), 32);
    let link = link(state, EMAIL_CONFIRM, &[("token", &token)]);
    let mail = templates::email_change_confirm(
        user_lang(user, lang),
        new.display(),
        &link,
        CONFIRM_LIFETIME.whole_hours(),
    );
    let payload = mail.seal(&state.master)?;
    let now = state.clock.now();
    // Neither address is named: the log outlives the change, and the new address is not
    // the account's until its link is used.
    let audit = origin.event(
        now,
        user.id,
        "user.email_change_request",
        serde_json::json!({}),
    );
    state
        .db
        .email_changes()
        .audited(audit)
        .start(
            now,
            user.id,
            new,
            NewLink {
                token_hash: sha256_hex(&token),
                expires_at: now + CONFIRM_LIFETIME,
            },
            QueuedMail { payload },
        )
        .await?;
    tracing::info!(user = %user.id.0, ip = %ip, "email change: link sent to the new address");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_token_of_plausible_length_is_looked_up() {
        assert_eq!(token_hash(""), None);
        assert_eq!(token_hash(&"a".repeat(MAX_TOKEN + 1)), None);
        assert_eq!(token_hash("abc"), Some(sha256_hex("abc")));
    }
}
