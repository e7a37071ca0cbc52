//! `/account/password`: the member changes their own password. It takes a recent sign-in
//! and the current password (a console left open, or a stolen session cookie, must not be
//! enough), meets the policy with zxcvbn's feedback, signs out the other devices unless
//! the member says not to, and mails the owner a reset link for "this wasn't me".

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};
use unicode_normalization::UnicodeNormalization;

use super::audit_ctx::AuditOrigin;
use super::reauth::RecentSession;
use super::{FORGOT, FormError, PASSWORD, link, user_lang};
use crate::authn::password::{HashError, Password, PasswordPolicyError};
use crate::crypto::{random_token, sha256_hex};
use crate::mail::templates;
use crate::oidc::authorize::see_other;
use crate::state::AppState;
use crate::store::{PasswordChange, QueuedMail};
use crate::web::cookies::SESSION;
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render, unavailable_page};

/// Current passwords a browser session may try here per window. Someone holding a
/// recently signed-in session (a borrowed browser, a stolen cookie) must not be able to
/// use this form to guess the password; five covers the owner's typos. Counted per
/// session, not per account: a stolen cookie is one session (another needs the password,
/// and the page needs a sign-in within `account.reauth_minutes`), and its holder must not
/// be able to lock the owner's own browsers out of changing the password. The sign-in
/// throttle does not count these: it is keyed by address and device.
const MAX_TRIES: u64 = 5;
const TRIES_WINDOW: Duration = Duration::minutes(15);

/// Where the counter of a session's tries lives in the ephemeral store.
fn tries_key(session: uuid::Uuid) -> String {
    format!("pwchange:{session}")
}

/// What the page says after a change (`?changed=…`): whether other devices were signed
/// out. Only ever a notice: a crafted link shows it and changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Changed {
    OthersOut,
    OthersKept,
}

impl Changed {
    fn param(self) -> &'static str {
        match self {
            Self::OthersOut => "others",
            Self::OthersKept => "kept",
        }
    }

    fn from_param(value: &str) -> Option<Self> {
        [Self::OthersOut, Self::OthersKept]
            .into_iter()
            .find(|c| c.param() == value)
    }

    fn notice(self) -> Msg {
        match self {
            Self::OthersOut => Msg::PasswordChangedOthersOut,
            Self::OthersKept => Msg::PasswordChangedOthersKept,
        }
    }
}

#[derive(Template)]
#[template(path = "account_password.html")]
struct PasswordPage<'a> {
    lang: Lang,
    csrf: &'a str,
    /// For password managers (a hidden `username` field), never shown.
    email: &'a str,
    /// An account without a password (federation-only, later issues) has none to change.
    has_password: bool,
    sign_out_others: bool,
    error: Option<FormError>,
    /// "Try again after 15:42" when the tries are used up.
    retry: Option<String>,
    changed: Option<&'static str>,
}

impl PasswordPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

#[derive(Deserialize)]
pub struct PasswordQuery {
    #[serde(default)]
    changed: String,
}

/// `GET /account/password`: the form, or what the last change did.
pub async fn get_password(
    RecentSession(current): RecentSession,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PasswordQuery>,
) -> Response {
    let user = &current.user;
    let lang = page_lang(None, Some(&user.locale), &headers);
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    let page = PasswordPage {
        lang,
        csrf: &csrf,
        email: user.email.display(),
        has_password: user.password_hash.is_some(),
        sign_out_others: true,
        error: None,
        retry: None,
        changed: Changed::from_param(&q.changed).map(|c| c.notice().text(lang)),
    };
    render(StatusCode::OK, &page, set_cookie.as_slice())
}

#[derive(Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    sign_out_others: Option<String>,
    /// The page's hidden marker that it offered the box: an unchecked box sends nothing,
    /// and only this tells it from a form that never had the box.
    sign_out_asked: Option<String>,
}

impl ChangeForm {
    /// On by default: only our page's form with the box unchecked keeps the other
    /// devices signed in.
    fn sign_out_others(&self) -> bool {
        self.sign_out_others.is_some() || self.sign_out_asked.is_none()
    }
}

/// Why a change did not go through.
#[derive(Debug)]
enum ChangeError {
    /// The account has no password to change.
    NoPassword,
    /// The form again with this message (and the policy's advice); nothing changed.
    Refused(Msg, Option<PasswordPolicyError>),
    /// The tries are used up until then; the password was not checked.
    Throttled(OffsetDateTime),
    /// The hasher or the ephemeral store cannot take it now: try again shortly.
    Unavailable,
    Internal(String),
}

impl ChangeError {
    fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<HashError> for ChangeError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::Unavailable,
            other => Self::internal(other),
        }
    }
}

/// `POST /account/password`: checks, in this order, what needs no secret (the current
/// password typed, the confirmation, the policy), then the tries, then the current
/// password, then that the new one differs; only then hashes and writes.
pub async fn post_password(
    RecentSession(current): RecentSession,
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    origin: AuditOrigin,
    CsrfForm(form): CsrfForm<ChangeForm>,
) -> Response {
    let user = &current.user;
    let lang = page_lang(None, Some(&user.locale), &headers);
    let sign_out_others = form.sign_out_others();
    let changed = change(&state, &current, &form, sign_out_others, lang, &origin).await;
    let page = |status, error, retry| {
        let page = PasswordPage {
            lang,
            csrf: &form.csrf,
            email: user.email.display(),
            has_password: user.password_hash.is_some(),
            sign_out_others,
            error,
            retry,
            changed: None,
        };
        render(status, &page, &[])
    };
    match changed {
        Ok(secret) => {
            let done = if sign_out_others {
                Changed::OthersOut
            } else {
                Changed::OthersKept
            };
            // This browser keeps its session under the secret renewed with the change.
            let cookie = state.cookies.set(
                SESSION,
                &secret,
                state.sessions.cookie_max_age(current.session.remember),
            );
            see_other(&format!("{PASSWORD}?changed={}", done.param()), &[cookie])
        }
        Err(ChangeError::NoPassword) => page(StatusCode::BAD_REQUEST, None, None),
        Err(ChangeError::Refused(msg, policy)) => page(
            StatusCode::BAD_REQUEST,
            Some(FormError::new(msg, policy.as_ref(), lang)),
            None,
        ),
        Err(ChangeError::Throttled(until)) => {
            let when = lang.clock_time(
                until,
                state.clock.now(),
                state.config.throttle.display_offset(),
            );
            page(
                StatusCode::TOO_MANY_REQUESTS,
                Some(FormError::new(Msg::PasswordChangeThrottled, None, lang)),
                Some(lang.try_again_after(&when)),
            )
        }
        Err(ChangeError::Unavailable) => unavailable_page(lang),
        Err(ChangeError::Internal(e)) => {
            tracing::error!(error = %e, "password change failed");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                Msg::ServerError,
                request_id.0,
            )
        }
    }
}

/// Changes the password; the session's new cookie secret.
async fn change(
    state: &AppState,
    current: &super::console::CurrentSession,
    form: &ChangeForm,
    sign_out_others: bool,
    lang: Lang,
    origin: &AuditOrigin,
) -> Result<String, ChangeError> {
    let user = &current.user;
    let Some(stored) = user.password_hash.as_deref() else {
        return Err(ChangeError::NoPassword);
    };
    if form.current_password.is_empty() {
        return Err(ChangeError::Refused(Msg::CurrentPasswordMissing, None));
    }
    if form.password != form.confirm {
        return Err(ChangeError::Refused(Msg::PasswordsDoNotMatch, None));
    }
    let new = Password::new(&form.password, &user.email)
        .map_err(|e| ChangeError::Refused(Msg::from(&e), Some(e)))?;
    // Counted before the check, like the sign-in throttle: guesses sent all at once
    // cannot all slip under the cap. A right password counts too; the owner would need
    // six changes within the window to notice.
    let tries = state
        .ephemeral
        .incr(&tries_key(current.session.id), TRIES_WINDOW)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "password change: cannot count the tries");
            ChangeError::Unavailable
        })?;
    if tries.count > MAX_TRIES {
        tracing::warn!(user = %user.id.0, "password change: too many tries, not checked");
        return Err(ChangeError::Throttled(tries.expires_at));
    }
    let typed = Password::for_verification(&form.current_password);
    if !state.hasher.verify(&typed, stored).await? {
        tracing::warn!(user = %user.id.0, tries = tries.count, "password change: wrong current password");
        return Err(ChangeError::Refused(Msg::CurrentPasswordWrong, None));
    }
    // Compared as the hasher sees them, NFKC-normalised (`authn/password.rs`): a
    // full-width copy of the current password is the same password.
    if form.password.nfkc().eq(form.current_password.nfkc()) {
        return Err(ChangeError::Refused(Msg::PasswordSameAsCurrent, None));
    }
    let new_hash = state.hasher.hash(&new).await?;
    let mail = templates::password_changed_by_member(
        user_lang(user, lang),
        user.email.display(),
        &user.display_name,
        &link(state, FORGOT, &[]),
        sign_out_others,
    );
    let payload = mail.seal(&state.master).map_err(ChangeError::internal)?;
    let secret = random_token(&mut rand::rng(), 32);
    let now = state.clock.now();
    let audit = origin.event(
        now,
        user.id,
        "user.password_change",
        serde_json::json!({ "sign_out_others": sign_out_others }),
    );
    let ended = state
        .db
        .passwords()
        .audited(audit)
        .change(
            now,
            PasswordChange {
                user: user.id,
                verified_hash: stored.to_owned(),
                new_hash,
                session: current.session.id,
                session_secret_hash: sha256_hex(&secret),
                sign_out_others,
                mail: QueuedMail { payload },
            },
        )
        .await
        .map_err(ChangeError::internal)?;
    // `None`: another change or a reset replaced the password since it was read, so the
    // password typed as the current one no longer is.
    let Some(ended) = ended else {
        return Err(ChangeError::Refused(Msg::CurrentPasswordWrong, None));
    };
    // The sign-in lock of the account (if someone's failures set one) stays: whoever
    // guessed is not shown to be gone by the owner proving the password here, clearing it
    // would hand them fresh guesses, and the owner's own known devices are not held by
    // it. A reset clears it because its owner may be locked out everywhere.
    tracing::info!(
        user = %user.id.0,
        sign_out_others,
        ended,
        "password changed by the member"
    );
    Ok(secret)
}
