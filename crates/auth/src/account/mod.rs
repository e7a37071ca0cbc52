//! The member's own pages outside a protocol flow: the ways back in (password reset,
//! sign-up and verification, unlocking, sign-in help) and the account console (overview,
//! profile, history, devices, apps; the address, the password and leaving, which need a
//! recent sign-in: `reauth`).

mod address;
pub mod apps;
pub mod audit_ctx;
pub mod console;
mod console_error;
pub mod delete;
pub mod email;
pub mod help;
pub mod history;
pub mod linked;
pub mod passkeys;
pub mod password;
pub mod profile;
pub mod reauth;
pub mod recovery;
pub mod sessions;
pub mod signup;
pub mod two_step;
pub mod unlock;

use std::net::IpAddr;

use axum::http::HeaderMap;
use time::Duration;

use crate::authn::password::PasswordPolicyError;
use crate::crypto::sha256_hex;
use crate::domain::{Email, User};
use crate::flow;
use crate::web::client_ip::ip_bucket;
use crate::web::i18n::{Lang, Msg};

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

pub const FORGOT: &str = "/password/forgot";
pub const RESET: &str = "/password/reset";
pub const SIGNUP: &str = "/signup";
pub const SIGNUP_RESEND: &str = "/signup/resend";
pub const VERIFY: &str = "/verify-email";
pub const UNLOCK: &str = "/unlock";
/// The account console.
pub const ACCOUNT: &str = "/account";
pub const PROFILE: &str = "/account/profile";
pub const HISTORY: &str = "/account/history";
pub const NOT_ME: &str = "/account/history/not-me";
pub const SESSIONS: &str = "/account/sessions";
pub const END: &str = "/account/sessions/end";
pub const END_OTHERS: &str = "/account/sessions/end-others";
pub const APPS: &str = "/account/apps";
pub const APPS_REMOVE: &str = "/account/apps/remove";
pub const SIGNIN_HELP: &str = "/signin-help";
/// The email change, its link to the new address and the old address's undo.
pub const EMAIL: &str = "/account/email";
pub const EMAIL_CONFIRM: &str = "/account/email/confirm";
pub const EMAIL_UNDO: &str = "/account/email/undo";
pub const PASSWORD: &str = "/account/password";
pub const DELETE: &str = "/account/delete";
// Two-step verification (account/two_step.rs)
// linked accounts (account/linked.rs)
/// Linked accounts: the page, starting a link at a provider, removing one.
pub const LINKED: &str = "/account/linked";
pub const LINKED_START: &str = "/account/linked/start";
pub const LINKED_REMOVE: &str = "/account/linked/remove";
// END-F4-PATHS
// Passkeys (account/passkeys.rs)
/// Passkeys: the page (and the registration's two steps), renaming, removing.
pub const PASSKEYS: &str = "/account/passkeys";
pub const PASSKEYS_RENAME: &str = "/account/passkeys/rename";
pub const PASSKEYS_REMOVE: &str = "/account/passkeys/remove";
/// Two-step verification: the page, and its forms (each answered where its GET leads back
/// to the page: a stale form comes back there after the sign-in).
pub const TWO_STEP: &str = "/account/2fa";
pub const TWO_STEP_TOTP: &str = "/account/2fa/totp";
pub const TWO_STEP_EMAIL: &str = "/account/2fa/email";
pub const TWO_STEP_RECOVERY: &str = "/account/2fa/recovery";
pub const TWO_STEP_DOWNLOAD: &str = "/account/2fa/recovery/download";
pub const TWO_STEP_OFF: &str = "/account/2fa/off";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            FORGOT,
            get(recovery::get_forgot).post(recovery::post_forgot),
        )
        .route(RESET, get(recovery::get_reset).post(recovery::post_reset))
        .route(SIGNUP, get(signup::get_signup).post(signup::post_signup))
        .route(SIGNUP_RESEND, post(signup::post_resend))
        .route(VERIFY, get(signup::get_verify).post(signup::post_verify))
        .route(UNLOCK, get(unlock::get_unlock).post(unlock::post_unlock))
        .route(ACCOUNT, get(console::overview))
        .route(
            PROFILE,
            get(profile::get_profile).post(profile::post_profile),
        )
        .route(HISTORY, get(history::list))
        .route(NOT_ME, post(history::post_not_me).get(history::to_history))
        .route(SESSIONS, get(sessions::list))
        .route(END, post(sessions::end).get(sessions::to_list))
        .route(
            END_OTHERS,
            post(sessions::end_others).get(sessions::to_list),
        )
        .route(APPS, get(apps::list))
        .route(APPS_REMOVE, post(apps::remove).get(apps::to_list))
        .route(SIGNIN_HELP, get(help::get_help).post(help::post_help))
        // Email change routes
        .route(EMAIL, get(email::get_email).post(email::post_email))
        .route(
            EMAIL_CONFIRM,
            get(email::get_confirm).post(email::post_confirm),
        )
        .route(EMAIL_UNDO, get(email::get_undo).post(email::post_undo))
        // Password change routes
        .route(
            PASSWORD,
            get(password::get_password).post(password::post_password),
        )
        // Deletion routes
        .route(DELETE, get(delete::get_delete).post(delete::post_delete))
        // Two-step verification routes
        // linked accounts (account/linked.rs)
        .route(LINKED, get(linked::page))
        .route(LINKED_START, get(linked::to_page).post(linked::post_start))
        .route(
            LINKED_REMOVE,
            get(linked::to_page).post(linked::post_remove),
        )
        // END-F4-ROUTES
        // Passkey routes (account/passkeys.rs)
        .route(PASSKEYS, get(passkeys::page).post(passkeys::post_register))
        .route(
            PASSKEYS_RENAME,
            get(passkeys::to_page).post(passkeys::post_rename),
        )
        .route(
            PASSKEYS_REMOVE,
            get(passkeys::to_page).post(passkeys::post_remove),
        )
        .route(TWO_STEP, get(two_step::page))
        .route(
            TWO_STEP_TOTP,
            get(two_step::get_totp).post(two_step::post_totp),
        )
        .route(
            TWO_STEP_EMAIL,
            get(two_step::to_page).post(two_step::post_email),
        )
        .route(
            TWO_STEP_RECOVERY,
            get(two_step::to_page).post(two_step::post_recovery),
        )
        .route(
            TWO_STEP_DOWNLOAD,
            get(two_step::to_page).post(two_step::post_download),
        )
        .route(
            TWO_STEP_OFF,
            get(two_step::to_page).post(two_step::post_off),
        )
}

/// The query of the account pages: the parked request to return to, a link's token,
/// an explicit language.
#[derive(serde::Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    pub tx: String,
    #[serde(default)]
    pub token: String,
    pub lang: Option<String>,
}

/// A form's error as the page shows it: the message and, for a password the policy
/// refused as too weak, zxcvbn's warning and suggestions (`templates/form_error.html`).
pub struct FormError {
    pub message: &'static str,
    pub warning: Option<&'static str>,
    pub suggestions: Vec<&'static str>,
}

impl FormError {
    pub fn new(message: Msg, policy: Option<&PasswordPolicyError>, lang: Lang) -> Self {
        let feedback = match policy {
            Some(PasswordPolicyError::TooWeak { feedback }) => Some(feedback),
            _ => None,
        };
        Self {
            message: message.text(lang),
            warning: feedback.and_then(|f| f.warning_text(lang)),
            suggestions: feedback
                .map(|f| f.suggestion_texts(lang))
                .unwrap_or_default(),
        }
    }
}

/// A link into Tobira for a mail: built from the issuer, never from the Host header.
/// Empty parameters are left out.
pub fn link(state: &AppState, path: &str, params: &[(&str, &str)]) -> String {
    let mut url = state
        .config
        .issuer
        .as_str()
        .trim_end_matches('/')
        .to_owned()
        + path;
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().filter(|(_, v)| !v.is_empty()))
        .finish();
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    url
}

/// A park id worth carrying along: only one this browser may resume.
async fn park_of(state: &AppState, headers: &HeaderMap, tx: &str) -> String {
    match flow::resume(state, headers, tx).await {
        Ok(_) => tx.to_owned(),
        Err(_) => String::new(),
    }
}

/// Per-address and per-client caps on mail a visitor can cause (0 turns one off).
pub(crate) async fn mail_allowed(
    state: &AppState,
    email: &Email,
    ip: IpAddr,
) -> Result<bool, String> {
    let caps = [
        (
            format!("mail_cap:to:{}", sha256_hex(email.normalized())),
            state.config.mail.per_address_per_hour,
        ),
        (
            format!("mail_cap:ip:{}", ip_bucket(ip)),
            state.config.mail.per_ip_per_hour,
        ),
    ];
    let mut allowed = true;
    for (key, cap) in caps {
        if cap == 0 {
            continue;
        }
        let counter = state
            .ephemeral
            .incr(&key, Duration::hours(1))
            .await
            .map_err(|e| e.to_string())?;
        allowed &= counter.count <= u64::from(cap);
    }
    Ok(allowed)
}

/// Queues a mail on its own (when no other write causes it), sealed.
pub(crate) async fn queue_mail(state: &AppState, mail: &crate::mail::Mail) -> Result<(), String> {
    let payload = mail.seal(&state.master).map_err(|e| e.to_string())?;
    state
        .db
        .jobs()
        .add(state.clock.now(), crate::store::MAIL_QUEUE, payload)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The longest display name a member may choose on the pages.
const MAX_DISPLAY_NAME: usize = 50;

/// A display name as typed on a page, trimmed; `None` when empty, too long or holding
/// control characters.
fn display_name(typed: &str) -> Option<&str> {
    let name = typed.trim();
    (!name.is_empty()
        && name.chars().count() <= MAX_DISPLAY_NAME
        && !name.chars().any(char::is_control))
    .then_some(name)
}

/// The account's language, else the page's.
pub(crate) fn user_lang(user: &User, fallback: Lang) -> Lang {
    Lang::from_tag(&user.locale).unwrap_or(fallback)
}
