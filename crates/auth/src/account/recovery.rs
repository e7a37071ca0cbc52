//! Password reset (`/password/forgot`, `/password/reset`). The forgot form answers the
//! same, in about the same time, whether or not an account has the address, and mails
//! are capped per address and per client address so the form cannot bomb anyone. The
//! token is single use, lives 30 minutes, is stored only as its hash, and a newer request
//! voids the older. A reset ends every session and grant of the account and tells the
//! owner by mail.

use std::net::IpAddr;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use time::Duration;

use super::address::{self, AddressForm, AddressPage};
use super::audit_ctx::AuditOrigin;
use super::{FORGOT, FormError, PageQuery, RESET, link, mail_allowed, park_of, user_lang};
use crate::authn::password::{HashError, Password, PasswordPolicyError};
use crate::authn::throttle::AccountKey;
use crate::crypto::{random_token, sha256_hex};
use crate::domain::{Email, User, UserStatus};
use crate::mail::templates;
use crate::state::AppState;
use crate::store::QueuedMail;
use crate::web::client_ip::ClientAddr;
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render, unavailable_page};

/// How long a reset link works.
pub const RESET_LIFETIME: Duration = Duration::minutes(30);

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage<'a> {
    lang: Lang,
    csrf: &'a str,
    token: &'a str,
    tx: &'a str,
    email: &'a str,
    error: Option<FormError>,
    done: bool,
}

impl ResetPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

pub async fn get_forgot(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    address::get(AddressPage::Forgot, &state, &headers, &q).await
}

pub async fn post_forgot(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<AddressForm>,
) -> Response {
    let work = |state: AppState, ip, email: Email, tx: String, lang| async move {
        request_reset(&state, ip, &email, &tx, lang).await
    };
    address::post(
        AddressPage::Forgot,
        &state,
        ip,
        &headers,
        request_id,
        form,
        work,
    )
    .await
}

/// Sends a reset link when the address belongs to an active account and the caps allow;
/// otherwise does nothing. The caller answers the same either way.
pub(super) async fn request_reset(
    state: &AppState,
    ip: IpAddr,
    email: &Email,
    tx: &str,
    lang: Lang,
) -> Result<(), String> {
    if !mail_allowed(state, email, ip).await? {
        tracing::warn!(identifier = %state.identifiers.pseudonym(email.normalized()), ip = %ip, "password reset: mail cap reached");
        return Ok(());
    }
    let Some(user) = state
        .db
        .users()
        .find_by_email(email)
        .await
        .map_err(|e| e.to_string())?
        .filter(|u| u.status == UserStatus::Active)
    else {
        return Ok(());
    };
    let (token, mail) = reset_mail(state, &user, user.email.display(), tx, lang, false);
    let payload = mail.seal(&state.master).map_err(|e| e.to_string())?;
    let now = state.clock.now();
    state
        .db
        .password_resets()
        .start(
            now,
            user.id,
            sha256_hex(&token),
            now + RESET_LIFETIME,
            QueuedMail { payload },
        )
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(user = %user.id.0, ip = %ip, "password reset mail queued");
    Ok(())
}

/// A fresh reset token and its mail to `to` (the account's address, or the address an
/// undone email change gives back to it), in the account's language.
pub(super) fn reset_mail(
    state: &AppState,
    user: &User,
    to: &str,
    tx: &str,
    lang: Lang,
    after_undo: bool,
) -> (String, crate::mail::Mail) {
    let token = random_token(&mut rand::rng(), 32);
    let link = link(state, RESET, &[("token", &token), ("tx", tx)]);
    let build = if after_undo {
        templates::reset_after_undo
    } else {
        templates::reset
    };
    let mail = build(
        user_lang(user, lang),
        to,
        &user.display_name,
        &link,
        RESET_LIFETIME.whole_minutes(),
    );
    (token, mail)
}

/// The account a reset token belongs to, if it is live and the account active.
async fn reset_target(state: &AppState, token: &str) -> Result<Option<User>, String> {
    if token.is_empty() || token.len() > 64 {
        return Ok(None);
    }
    let Some(id) = state
        .db
        .password_resets()
        .lookup(&sha256_hex(token), state.clock.now())
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    Ok(state
        .db
        .users()
        .find_by_id(id)
        .await
        .map_err(|e| e.to_string())?
        .filter(|u| u.status == UserStatus::Active))
}

fn invalid_link(lang: Lang) -> Response {
    error_page(StatusCode::BAD_REQUEST, lang, Msg::ResetLinkInvalid, None)
}

pub async fn get_reset(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Query(q): Query<PageQuery>,
) -> Response {
    let lang = page_lang(q.lang.as_deref(), None, &headers);
    let user = match reset_target(&state, &q.token).await {
        Ok(Some(user)) => user,
        Ok(None) => return invalid_link(lang),
        Err(e) => {
            tracing::error!(error = %e, "password reset lookup failed");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                Msg::ServerError,
                request_id.0,
            );
        }
    };
    let tx = park_of(&state, &headers, &q.tx).await;
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    let page = ResetPage {
        lang,
        csrf: &csrf,
        token: &q.token,
        tx: &tx,
        email: user.email.display(),
        error: None,
        done: false,
    };
    render(StatusCode::OK, &page, set_cookie.as_slice())
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    tx: String,
    lang: Option<String>,
}

pub async fn post_reset(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    request_id: RequestId,
    origin: AuditOrigin,
    CsrfForm(form): CsrfForm<ResetForm>,
) -> Response {
    let lang = page_lang(form.lang.as_deref(), None, &headers);
    let failed = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "password reset failed");
        error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            lang,
            Msg::ServerError,
            request_id.0.clone(),
        )
    };
    let user = match reset_target(&state, &form.token).await {
        Ok(Some(user)) => user,
        Ok(None) => return invalid_link(lang),
        Err(e) => return failed(&e),
    };
    let tx = park_of(&state, &headers, &form.tx).await;
    let again = |error: Msg, policy: Option<&PasswordPolicyError>| {
        let page = ResetPage {
            lang,
            csrf: &form.csrf,
            token: &form.token,
            tx: &tx,
            email: user.email.display(),
            error: Some(FormError::new(error, policy, lang)),
            done: false,
        };
        render(StatusCode::BAD_REQUEST, &page, &[])
    };
    if form.password != form.confirm {
        return again(Msg::PasswordsDoNotMatch, None);
    }
    let password = match Password::new(&form.password, &user.email) {
        Ok(p) => p,
        Err(e) => return again(Msg::from(&e), Some(&e)),
    };
    let hash = match state.hasher.hash(&password).await {
        Ok(h) => h,
        Err(HashError::Busy) => return unavailable_page(lang),
        Err(e) => return failed(&e),
    };
    let link = state
        .config
        .issuer
        .as_str()
        .trim_end_matches('/')
        .to_owned()
        + FORGOT;
    let mail = templates::password_changed(
        user_lang(&user, lang),
        user.email.display(),
        &user.display_name,
        &link,
    );
    let payload = match mail.seal(&state.master) {
        Ok(p) => p,
        Err(e) => return failed(&e),
    };
    let now = state.clock.now();
    let audit = origin.event(
        now,
        user.id,
        "user.password_reset",
        serde_json::json!({ "method": "email_link" }),
    );
    let completed = state
        .db
        .password_resets()
        .audited(audit)
        .complete(
            now,
            &sha256_hex(&form.token),
            user.id,
            hash,
            QueuedMail { payload },
        )
        .await;
    match completed {
        Ok(true) => {}
        Ok(false) => return invalid_link(lang),
        Err(e) => return failed(&e),
    }
    tracing::info!(user = %user.id.0, ip = %ip, "password reset: every session ended");
    // The new password ends any lock of the account (the owner proved their mailbox).
    let account = AccountKey::for_user(&state.identifiers, &user);
    if let Err(e) = state.throttle.unlock_account(&account).await {
        tracing::warn!(error = %e, user = %user.id.0, "password reset: cannot clear the sign-in lock");
    }
    // This browser's session ended with the others: its cookie goes too.
    let cookies = vec![state.cookies.clear(crate::web::cookies::SESSION)];
    let page = ResetPage {
        lang,
        csrf: "",
        token: "",
        tx: &tx,
        email: "",
        error: None,
        done: true,
    };
    render(StatusCode::OK, &page, &cookies)
}
