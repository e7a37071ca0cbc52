//! Unlocking an account that the throttle locked (`/unlock`). The owner gets one mail
//! per lock period with a single-use link; opening it shows a button (a GET changes
//! nothing, so a mail scanner that follows links unlocks nothing), and pressing it
//! clears the account's lock and count. Support has `tobira users unlock`.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use time::Duration;

use super::{FORGOT, PageQuery, UNLOCK, link, park_of, queue_mail, user_lang};
use crate::authn::throttle::{AccountKey, Lock};
use crate::crypto::{random_token, sha256_hex};
use crate::domain::User;
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

/// A fresh single-use unlock link for the account (also sent by the sign-in help).
pub async fn unlock_link(state: &AppState, user: &User, tx: &str) -> Result<String, String> {
    let token = random_token(&mut rand::rng(), 32);
    let hours = state.config.throttle.unlock_link_hours;
    let account = AccountKey::of(&state.identifiers, user.email.normalized());
    state
        .ephemeral
        .put(
            &token_key(&token),
            account.as_str().as_bytes(),
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
    let account = match state.ephemeral.take(&token_key(&form.token)).await {
        Ok(Some(bytes)) => match String::from_utf8(bytes) {
            Ok(account) => account,
            Err(_) => return invalid_link(lang),
        },
        Ok(None) => return invalid_link(lang),
        Err(e) => return failed(&e),
    };
    if let Err(e) = state
        .throttle
        .unlock_account(&AccountKey::from_stored(account))
        .await
    {
        return failed(&e);
    }
    tracing::info!("sign-in unlocked by the owner's link");
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
