//! Unlocking an account that the throttle locked (`/unlock`). The owner gets one mail
//! per lock period with a single-use link; opening it shows a button (a GET changes
//! nothing, so a mail scanner that follows links unlocks nothing), and pressing it
//! clears the account's lock and count. Support has `tobira users unlock`.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::Duration;

use super::audit_ctx::AuditOrigin;
use super::{FORGOT, PageQuery, UNLOCK, link, park_of, queue_mail, user_lang};
use crate::authn::throttle::{AccountKey, Lock, Scope};
use crate::crypto::{random_token, sha256_hex};
use crate::domain::{User, UserId};
use crate::mail::templates::{self, LockLinks};
use crate::state::AppState;
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render};

#[derive(Template)]
#[template(path = "unlock.html")]
struct UnlockPage<'a> {
    lang: Lang,
    csrf: &'a str,
    token: &'a str,
    tx: &'a str,
    done: bool,
}

impl UnlockPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

fn token_key(token: &str) -> String {
    format!("unlock:{}", sha256_hex(token))
}

/// What an unlock link's record holds: the throttle's key of the account (what its lock
/// is kept under) and the account's id (whom the audit log names as having unlocked it).
#[derive(Serialize, Deserialize)]
struct UnlockRecord {
    account: String,
    user: uuid::Uuid,
}

impl UnlockRecord {
    /// A record as kept, with the account's id; a link mailed before records held only
    /// the key (a plain string), and still unlocks for the hours it lives.
    fn read(bytes: &[u8]) -> Option<(AccountKey, Option<UserId>)> {
        if let Ok(r) = serde_json::from_slice::<Self>(bytes) {
            return Some((AccountKey::from_stored(r.account), Some(UserId(r.user))));
        }
        let key = std::str::from_utf8(bytes).ok()?;
        Some((AccountKey::from_stored(key.to_owned()), None))
    }
}

/// A fresh single-use unlock link for the account (also sent by the sign-in help).
pub async fn unlock_link(state: &AppState, user: &User, tx: &str) -> Result<String, String> {
    let token = random_token(&mut rand::rng(), 32);
    let hours = state.config.throttle.unlock_link_hours;
    let record = UnlockRecord {
        account: AccountKey::for_user(&state.identifiers, user)
            .as_str()
            .to_owned(),
        user: user.id.0,
    };
    let record = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    state
        .ephemeral
        .put(
            &token_key(&token),
            &record,
            state.clock.now() + Duration::hours(hours.into()),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(link(state, UNLOCK, &[("token", &token), ("tx", tx)]))
}

/// The end of a lock in words, in the pages' offset (`None` for a lock until unlocked).
pub fn lock_end(state: &AppState, lock: &Lock, lang: Lang) -> Option<String> {
    let now = state.clock.now();
    lock.until
        .map(|until| lang.clock_time(until, now, state.config.throttle.display_offset()))
}

/// Tells the owner that their account locked: queues the mail with a fresh unlock link.
/// The links carry no parked request: the sign-in that locked was most likely the
/// attacker's, and its id has no business in the owner's mailbox.
pub async fn mail_lock(
    state: &AppState,
    user: &User,
    lock: &Lock,
    page_lang: Lang,
) -> Result<(), String> {
    let lang = user_lang(user, page_lang);
    let unlock = unlock_link(state, user, "").await?;
    let reset = link(state, FORGOT, &[]);
    let until = lock_end(state, lock, lang);
    let mail = templates::account_locked(
        lang,
        user.email.display(),
        &user.display_name,
        until.as_deref(),
        &LockLinks {
            unlock: &unlock,
            hours: state.config.throttle.unlock_link_hours,
            reset: &reset,
        },
    );
    queue_mail(state, &mail).await?;
    tracing::info!(user = %user.id.0, "sign-in locked; the owner is mailed an unlock link");
    Ok(())
}

/// Sign-in attempts refused by the throttle without checking the password.
const THROTTLED_TOTAL: &str = "tobira_sign_in_throttled_total";
/// Locks set by a failure (an account, a known device, a client address).
const LOCKS_TOTAL: &str = "tobira_sign_in_locks_total";

fn scope_label(scope: Scope) -> &'static str {
    match scope {
        Scope::Account => "account",
        Scope::Device => "device",
        Scope::Address => "address",
    }
}

/// What a page says of a lock: what happened, when to try again, and (for a lock of the
/// account) that its owner, if there is one, was told.
pub fn throttled_message(state: &AppState, lock: &Lock, lang: Lang) -> String {
    let what = match (lock.scope, lock.until) {
        (Scope::Account, None) => Msg::SignInLockedHard,
        (Scope::Account, Some(_)) => Msg::SignInLocked,
        (Scope::Device, _) => Msg::SignInDeviceLocked,
        (Scope::Address, _) => Msg::SignInAddressBlocked,
    };
    let gap = if lang == Lang::Ja { "" } else { " " };
    let mut text = what.text(lang).to_owned();
    if let Some(when) = lock_end(state, lock, lang) {
        text.push_str(gap);
        text.push_str(&lang.try_again_after(&when));
    }
    if lock.scope == Scope::Account {
        text.push_str(gap);
        text.push_str(Msg::LockOwnerTold.text(lang));
    }
    text
}

/// A failure just set `lock`: counted, and for an account's lock its owner (if the
/// address has one) is mailed, after the answer (whether a mail goes out must not show
/// in its timing).
pub fn locked_now(state: &AppState, account: Option<UserId>, lock: Lock, lang: Lang) {
    metrics::counter!(LOCKS_TOTAL, "scope" => scope_label(lock.scope)).increment(1);
    let Some(account) = account.filter(|_| lock.scope == Scope::Account) else {
        return;
    };
    let background = state.clone();
    state.background.spawn(async move {
        let owner = background.db.users().find_by_id(account).await;
        let sent = match owner {
            Ok(Some(user)) => mail_lock(&background, &user, &lock, lang).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            tracing::error!(error = %e, "cannot queue the lock mail");
        }
    });
}

/// A refused attempt's answer: counted, with `Retry-After` (for a lock until unlocked,
/// an hour: there is no time to give).
pub fn refused(state: &AppState, lock: &Lock, res: &mut Response) {
    metrics::counter!(THROTTLED_TOTAL, "scope" => scope_label(lock.scope)).increment(1);
    let wait = lock.until.map_or(3600, |until| {
        (until - state.clock.now()).whole_seconds().max(1) + 1
    });
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait));
}

#[derive(Template)]
#[template(path = "throttled.html")]
struct ThrottledPage {
    lang: Lang,
    message: String,
}

impl ThrottledPage {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// The answer of a form other than the sign-in page (which shows the lock in itself)
/// to a refused attempt: 429, the lock in words, the reset and the help.
pub fn throttled_page(state: &AppState, lock: &Lock, lang: Lang) -> Response {
    let page = ThrottledPage {
        lang,
        message: throttled_message(state, lock, lang),
    };
    let mut res = render(StatusCode::TOO_MANY_REQUESTS, &page, &[]);
    refused(state, lock, &mut res);
    res
}

fn invalid_link(lang: Lang) -> Response {
    error_page(StatusCode::BAD_REQUEST, lang, Msg::UnlockLinkInvalid, None)
}

fn plausible(token: &str) -> bool {
    !token.is_empty() && token.len() <= 64
}

pub async fn get_unlock(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Query(q): Query<PageQuery>,
) -> Response {
    let lang = page_lang(q.lang.as_deref(), None, &headers);
    if !plausible(&q.token) {
        return invalid_link(lang);
    }
    match state.ephemeral.get(&token_key(&q.token)).await {
        Ok(Some(_)) => {}
        Ok(None) => return invalid_link(lang),
        Err(e) => {
            tracing::error!(error = %e, "unlock link lookup failed");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                lang,
                Msg::Unavailable,
                request_id.0,
            );
        }
    }
    let tx = park_of(&state, &headers, &q.tx).await;
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    let page = UnlockPage {
        lang,
        csrf: &csrf,
        token: &q.token,
        tx: &tx,
        done: false,
    };
    render(StatusCode::OK, &page, set_cookie.as_slice())
}

#[derive(Deserialize)]
pub struct UnlockForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    tx: String,
    lang: Option<String>,
}

pub async fn post_unlock(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    origin: AuditOrigin,
    CsrfForm(form): CsrfForm<UnlockForm>,
) -> Response {
    let lang = page_lang(form.lang.as_deref(), None, &headers);
    if !plausible(&form.token) {
        return invalid_link(lang);
    }
    let failed = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "unlock failed");
        error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            lang,
            Msg::Unavailable,
            request_id.0.clone(),
        )
    };
    // Taken, so a second press (or a replayed form) finds nothing.
    let bytes = match state.ephemeral.take(&token_key(&form.token)).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return invalid_link(lang),
        Err(e) => return failed(&e),
    };
    let Some((account, user)) = UnlockRecord::read(&bytes) else {
        return invalid_link(lang);
    };
    if let Err(e) = state.throttle.unlock_account(&account).await {
        // The owner's link must survive an outage of the store: put it back.
        let until = state.clock.now() + Duration::hours(1);
        let _ = state
            .ephemeral
            .put(&token_key(&form.token), &bytes, until)
            .await;
        return failed(&e);
    }
    tracing::info!("sign-in unlocked by the owner's link");
    // The lock lives in the ephemeral store, without a transaction to share: recorded
    // right after. Only the owner's mailbox had the link, so the owner is the actor.
    match user {
        Some(user) => {
            origin
                .record(
                    &state,
                    user,
                    "user.unlock",
                    serde_json::json!({ "method": "email_link" }),
                )
                .await;
        }
        None => tracing::warn!("unlocked by a link from before accounts were named: not audited"),
    }
    let tx = park_of(&state, &headers, &form.tx).await;
    let page = UnlockPage {
        lang,
        csrf: "",
        token: "",
        tx: &tx,
        done: true,
    };
    render(StatusCode::OK, &page, &[])
}
