//! Signing in with a passkey: the 「パスキーでログイン」 button and the browser's autofill
//! on the sign-in page (usernameless: the authenticator names the account), and a passkey
//! as the second step after a password.
//!
//! Each page view starts one ceremony, kept in the ephemeral store bound to the browser's
//! binding cookie and taken once at the finish (`authn::passkey`), so a replayed or
//! another browser's answer meets no state. The finish goes through what a password goes
//! through: the parked request's binding, the throttle (per account and address, a known
//! device exempt), the history, the new-device mail (`login::complete_sign_in`).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PublicKeyCredential, Webauthn,
    WebauthnError,
};

use super::authorize::{Rejection, see_other};
use super::login::{self, Completed, complete_sign_in, ui_locales};
use super::second_step::{self as page, Says};
use crate::account::unlock::{locked_now, refused, throttled_message};
use crate::admin::support::frozen_notice;
use crate::authn::passkey::{self, Ceremony};
use crate::authn::second_step::{self, METHOD_PASSKEY, Proof, SecondStepError};
use crate::authn::sign_in::{self, Attempted};
use crate::authn::throttle::{AccountKey, Admission, Attempt};
use crate::domain::{ACR_TWO, AMR_MFA, AMR_POP, AMR_USER, User};
use crate::flow::{self, Binding, FlowError};
use crate::state::AppState;
use crate::store::{LoginResult, StoredPasskey};
use crate::web::client_ip::{client_ip, ip_bucket};
use crate::web::csrf::CsrfForm;
use crate::web::i18n::Msg;
use crate::web::pages::{RequestId, error_page, page_lang};

/// A passkey form on a page: the options for the browser (webauthn-rs's JSON, escaped by
/// the template) and the ceremony's id.
pub struct Offer {
    pub options: String,
    pub ceremony: String,
}

/// The browser's binding cookie, when it has one (every page of a parked sign-in does):
/// what a ceremony is bound to.
fn binding(state: &AppState, headers: &HeaderMap) -> Option<Binding> {
    let binding = Binding::of(state.cookies, headers);
    binding.set_cookie.is_none().then_some(binding)
}

/// Keeps `ceremony` under the parked request's id `tx`, bound to this browser; the offer
/// for the page. One ceremony per parked request and kind: a reload replaces it, so
/// reloading a page cannot fill the ephemeral store (the parks are bounded already).
async fn offer<T: serde::Serialize>(
    state: &AppState,
    headers: &HeaderMap,
    tx: &str,
    kind: Ceremony,
    options: &impl serde::Serialize,
    ceremony: &T,
) -> Option<Offer> {
    let binding = binding(state, headers)?;
    let id = tx.to_owned();
    if let Err(e) = passkey::keep(state, kind, &id, binding.cookie_value(), ceremony).await {
        // The page works without its passkey form.
        tracing::warn!(error = %e, "passkey ceremony not kept: the page shows no passkey form");
        return None;
    }
    let options = serde_json::to_string(options).ok()?;
    Some(Offer {
        options,
        ceremony: id,
    })
}

/// The sign-in page's passkey form (a discoverable ceremony: the button and the
/// autofill), or none when passkeys are off or the ceremony cannot be kept.
pub async fn sign_in_offer(state: &AppState, headers: &HeaderMap, tx: &str) -> Option<Offer> {
    let webauthn = state.webauthn.as_ref()?;
    let (options, ceremony) = match webauthn.start_discoverable_authentication() {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = ?e, "cannot start a passkey sign-in");
            return None;
        }
    };
    offer(state, headers, tx, Ceremony::SignIn, &options, &ceremony).await
}

/// The second-step page's passkey form for `user`, when they have passkeys.
pub async fn second_step_offer(
    state: &AppState,
    headers: &HeaderMap,
    tx: &str,
    user: &User,
) -> Option<Offer> {
    let webauthn = state.webauthn.as_ref()?;
    let stored = match state.db.passkeys().list(user.id).await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!(error = %e, "cannot list the member's passkeys");
            return None;
        }
    };
    let keys: Vec<Passkey> = stored.iter().filter_map(credential).collect();
    // An empty list would ask for any discoverable credential: not a second step.
    if keys.is_empty() {
        return None;
    }
    let (options, ceremony) = match webauthn.start_passkey_authentication(&keys) {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = ?e, "cannot start a passkey second step");
            return None;
        }
    };
    offer(
        state,
        headers,
        tx,
        Ceremony::SecondStep,
        &options,
        &ceremony,
    )
    .await
}

/// The stored credential, or `None` (logged) when it cannot be read.
fn credential(stored: &StoredPasskey) -> Option<Passkey> {
    serde_json::from_str(&stored.credential)
        .inspect_err(|e| {
            tracing::error!(error = %e, cred_id = %stored.cred_id, "a stored passkey cannot be read");
        })
        .ok()
}

/// The signature counter stored with a credential (webauthn-rs's `Passkey` JSON keeps it
/// at `cred.counter`).
pub fn stored_counter(credential: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(credential)
        .ok()?
        .get("cred")?
        .get("counter")?
        .as_u64()
}

/// Whether an authenticator's `counter` is not beyond the stored one (a stored counter of
/// 0 means the authenticator keeps none, as synced passkeys do: then any answer goes).
fn counter_went_back(credential: &str, counter: u32) -> bool {
    let stored = stored_counter(credential).unwrap_or(0);
    stored > 0 && u64::from(counter) <= stored
}

/// The credential as it is stored after a ceremony: the counter (and backup flags) as the
/// authenticator reported them, when they changed. (`result.needs_update()` adds nothing:
/// what it says beyond a change here, a backup-eligible flag turning off, is one that
/// webauthn-rs does not write into the credential, so it would be stored unchanged.)
fn updated(
    mut key: Passkey,
    result: &webauthn_rs::prelude::AuthenticationResult,
) -> Option<String> {
    let changed = key.update_credential(result) == Some(true);
    changed.then(|| serde_json::to_string(&key).ok()).flatten()
}

#[derive(Deserialize)]
pub struct PasskeyForm {
    #[serde(default)]
    tx: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    credential: String,
    lang: Option<String>,
}

/// Why a passkey sign-in was refused, as the log and the page say it.
struct Refusal {
    status: StatusCode,
    message: Msg,
    reason: String,
}

impl Refusal {
    fn new(status: StatusCode, message: Msg, reason: impl Into<String>) -> Self {
        Self {
            status,
            message,
            reason: reason.into(),
        }
    }

    /// A webauthn-rs verdict: malformed input is a 400, everything else a refusal.
    fn webauthn(e: &WebauthnError) -> Self {
        let malformed = matches!(
            e,
            WebauthnError::ParseJSONFailure(_)
                | WebauthnError::ParseCBORFailure(_)
                | WebauthnError::ParseBase64Failure(_)
                | WebauthnError::ParseNOMFailure
                | WebauthnError::InvalidUserUniqueId
        );
        if malformed {
            Self::new(
                StatusCode::BAD_REQUEST,
                Msg::PasskeyMalformed,
                format!("{e:?}"),
            )
        } else {
            Self::new(
                StatusCode::UNAUTHORIZED,
                Msg::PasskeyRefused,
                format!("{e:?}"),
            )
        }
    }
}

/// An answer that reached no ceremony (replayed, expired, or of another parked request).
struct Unverified<'a> {
    ip: IpAddr,
    device: &'a str,
    user_agent: &'a str,
}

impl Unverified<'_> {
    /// Writes a refusal into the history of the account whose credential the answer
    /// names, if any (nothing else of it can be checked without its ceremony).
    async fn record(&self, state: &AppState, webauthn: &Webauthn, answer: &str) {
        let Some(answer) = passkey::parse_answer::<PublicKeyCredential>(answer) else {
            return;
        };
        let Ok((_, cred_id)) = webauthn.identify_discoverable_authentication(&answer) else {
            return;
        };
        let cred_id = URL_SAFE_NO_PAD.encode(cred_id);
        let owner = match state.db.passkeys().find(&cred_id).await {
            Ok(Some(stored)) => stored.user,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot find the passkey of a replayed answer");
                return;
            }
        };
        // Nothing of it was checked and no throttle counted it: at most one such line a
        // minute, so that a flood of posted answers is not a flood of writes.
        let key = format!("history:passkey-unverified:{}", owner.0);
        match state.ephemeral.incr(&key, time::Duration::minutes(1)).await {
            Ok(counter) if counter.count > 1 => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot rate a replayed passkey answer");
                return;
            }
        }
        let known_device = state
            .db
            .known_devices()
            .is_known(owner, self.device)
            .await
            .unwrap_or(false);
        sign_in::record(
            state,
            Attempted {
                user: owner,
                ip: self.ip,
                device: self.device,
                user_agent: self.user_agent,
                method: METHOD_PASSKEY,
                known_device,
            },
            LoginResult::PasskeyRefused,
        );
    }
}

/// `POST /login/passkey`: the sign-in page's passkey answer (the button's or the
/// autofill's).
pub async fn post_sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<PasskeyForm>,
) -> Response {
    let target = match flow::resume_sign_in(&state, &headers, &form.tx).await {
        Ok(target) => target,
        Err(e) => return Rejection::from(e).respond(&state, &headers, request_id),
    };
    let lang = page_lang(form.lang.as_deref(), ui_locales(&target), &headers);
    let Some(webauthn) = state.webauthn.clone() else {
        return error_page(
            StatusCode::NOT_FOUND,
            lang,
            Msg::PasskeyRefused,
            request_id.0,
        );
    };
    let ip = client_ip(peer, &headers, &state.config.server.trusted_proxies);
    let (device_id, new_device_cookie) = state.cookies.device(&headers);
    let cookies: Vec<String> = new_device_cookie.into_iter().collect();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let again = |refusal: Refusal, cookies: Vec<String>| {
        let state = state.clone();
        let headers = headers.clone();
        let tx = form.tx.clone();
        let request_id = request_id.clone();
        async move {
            tracing::warn!(ip = %ip, reason = %refusal.reason, "passkey sign-in refused");
            login::page_again(
                &state,
                &headers,
                &request_id,
                &tx,
                lang,
                (refusal.status, refusal.message.text(lang).to_owned()),
                &cookies,
            )
            .await
        }
    };

    // Single use and bound to this browser: a replayed answer or another browser's
    // ceremony finds nothing.
    let Some(binding) = binding(&state, &headers) else {
        return Rejection::from(FlowError::OtherBrowser).respond(&state, &headers, request_id);
    };
    // The ceremony is kept under its parked request's id: a form naming another one
    // (someone else's, to spend it) finds nothing.
    let kept = if form.ceremony == form.tx {
        passkey::take::<DiscoverableAuthentication>(
            &state,
            Ceremony::SignIn,
            &form.tx,
            binding.cookie_value(),
        )
        .await
    } else {
        Ok(None)
    };
    let ceremony = match kept {
        Ok(Some(c)) => c,
        Ok(None) => {
            // A replayed or expired answer still names its credential: the owner sees
            // the attempt in the history, as after a wrong password.
            let attempt = Unverified {
                ip,
                device: &device_id,
                user_agent: &user_agent,
            };
            attempt.record(&state, &webauthn, &form.credential).await;
            let refusal = Refusal::new(
                StatusCode::BAD_REQUEST,
                Msg::PasskeyExpired,
                "no such ceremony",
            );
            return again(refusal, cookies).await;
        }
        Err(e) => {
            return Rejection::from(FlowError::Store(e)).respond(&state, &headers, request_id);
        }
    };
    let Some(answer) = passkey::parse_answer::<PublicKeyCredential>(&form.credential) else {
        let refusal = Refusal::new(
            StatusCode::BAD_REQUEST,
            Msg::PasskeyMalformed,
            "malformed credential JSON",
        );
        return again(refusal, cookies).await;
    };
    let (handle, cred_id) = match webauthn.identify_discoverable_authentication(&answer) {
        Ok(found) => found,
        Err(e) => return again(Refusal::webauthn(&e), cookies).await,
    };
    let cred_id = URL_SAFE_NO_PAD.encode(cred_id);
    let server_error = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "{what}");
        error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            lang,
            Msg::ServerError,
            request_id.0.clone(),
        )
    };
    let stored = match state.db.passkeys().find(&cred_id).await {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            let refusal = Refusal::new(
                StatusCode::UNAUTHORIZED,
                Msg::PasskeyRefused,
                "unknown or removed credential",
            );
            return again(refusal, cookies).await;
        }
        Err(e) => return server_error("cannot find a passkey", &e),
    };
    let user = match state.db.users().find_by_id(stored.user).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            let refusal = Refusal::new(
                StatusCode::UNAUTHORIZED,
                Msg::PasskeyRefused,
                "the passkey's account is gone",
            );
            return again(refusal, cookies).await;
        }
        Err(e) => return server_error("cannot read an account", &e),
    };
    let known_device = match state.db.known_devices().is_known(user.id, &device_id).await {
        Ok(known) => known,
        Err(e) => return server_error("cannot read the known devices", &e),
    };
    let attempted = |result: LoginResult| {
        sign_in::record(
            &state,
            Attempted {
                user: user.id,
                ip,
                device: &device_id,
                user_agent: &user_agent,
                method: METHOD_PASSKEY,
                known_device,
            },
            result,
        );
    };
    // Throttled like a password: an attempt is a failure until it succeeds.
    let counted = Attempt {
        account: AccountKey::for_user(&state.identifiers, &user),
        address: ip_bucket(ip),
        known_device: known_device.then(|| device_id.clone()),
    };
    let locks = match state.throttle.admit(&counted).await {
        Ok(Admission::Admitted { locks }) => locks,
        Ok(Admission::Refused(lock)) => {
            tracing::warn!(account = %user.id.0, ip = %ip, "passkey sign-in throttled");
            attempted(LoginResult::Throttled);
            let message = throttled_message(&state, &lock, lang);
            let mut res = login::page_again(
                &state,
                &headers,
                &request_id,
                &form.tx,
                lang,
                (StatusCode::TOO_MANY_REQUESTS, message),
                &cookies,
            )
            .await;
            refused(&state, &lock, &mut res);
            return res;
        }
        Err(e) => return server_error("the throttle cannot count a passkey sign-in", &e),
    };
    let refuse = |refusal: Refusal| {
        attempted(LoginResult::PasskeyRefused);
        if let Some(lock) = locks {
            locked_now(&state, Some(user.id), lock, lang);
        }
        refusal
    };
    // The user handle is not signed: the credential must be the named account's own.
    match state.db.passkeys().user_by_handle(handle).await {
        Ok(Some(owner)) if owner == user.id => {}
        Ok(_) => {
            let refusal = refuse(Refusal::new(
                StatusCode::UNAUTHORIZED,
                Msg::PasskeyRefused,
                "the user handle is not the credential owner's",
            ));
            return again(refusal, cookies).await;
        }
        Err(e) => return server_error("cannot read a user handle", &e),
    }
    let Some(key) = credential(&stored) else {
        return server_error("a stored passkey cannot be read", &"unreadable credential");
    };
    let result = match webauthn.finish_discoverable_authentication_v2(&answer, ceremony, &key) {
        Ok(result) => result,
        Err(e) => {
            let refusal = refuse(Refusal::webauthn(&e));
            return again(refusal, cookies).await;
        }
    };
    if let Err(e) = state.throttle.succeeded(&counted).await {
        return server_error("the throttle cannot take back a passkey sign-in", &e);
    }
    // Said only after the passkey verified, as after the right password.
    if !user.usable() {
        tracing::warn!(account = %user.id.0, ip = %ip, "passkey sign-in of an account not usable");
        attempted(LoginResult::Frozen);
        let notice = frozen_notice(&state.config.account.support_contact, lang);
        return login::page_again(
            &state,
            &headers,
            &request_id,
            &form.tx,
            lang,
            (StatusCode::FORBIDDEN, notice),
            &cookies,
        )
        .await;
    }
    match state
        .db
        .passkeys()
        .used(
            state.clock.now(),
            &stored.cred_id,
            &stored.credential,
            updated(key, &result),
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            let refusal = refuse(Refusal::new(
                StatusCode::UNAUTHORIZED,
                Msg::PasskeyRefused,
                "the passkey was removed meanwhile",
            ));
            return again(refusal, cookies).await;
        }
        Err(e) => return server_error("cannot record a passkey's use", &e),
    }
    // Every ceremony requires user verification (face, fingerprint, PIN), and webauthn-rs
    // refuses an answer without it: a passkey is then two factors at once (held, and
    // known or inherent), so it never asks for the second step. A passkey that only
    // proves presence would be one factor, a security key alone; Tobira does not accept
    // it as a way in (see the README), so `pop user` with `acr` 1 is never claimed.
    let (amr, acr) = ([AMR_POP, AMR_USER, AMR_MFA], ACR_TWO);
    tracing::info!(user = %user.id.0, ip = %ip, "signed in with a passkey");
    complete_sign_in(
        &state,
        &headers,
        request_id,
        lang,
        target,
        &form.tx,
        Completed {
            user: &user,
            amr: amr.iter().map(|a| (*a).to_owned()).collect(),
            acr,
            method: METHOD_PASSKEY,
            device_id,
            known_device,
            ip,
            user_agent,
            remember: false,
            cookies,
        },
    )
    .await
}

/// `POST /login/second-step/passkey`: a passkey as the second step after the password.
pub async fn post_second_step(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<PasskeyForm>,
) -> Response {
    let tx = form.tx.as_str();
    let w = match page::waiting(&state, &headers, &request_id, tx, form.lang.as_deref()).await {
        Ok(w) => w,
        Err(res) => return res,
    };
    let lang = w.lang;
    let ip = client_ip(peer, &headers, &state.config.server.trusted_proxies);
    let answer = page::Answer {
        state: &state,
        headers: &headers,
        w: &w,
        tx,
        csrf: &form.csrf,
        request_id: &request_id,
    };
    let method = format!("{}+{METHOD_PASSKEY}", w.pending.first_method);
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let attempted = |result: LoginResult| {
        sign_in::record(
            &state,
            Attempted {
                user: w.user.id,
                ip,
                device: &w.pending.device,
                user_agent,
                method: &method,
                known_device: w.pending.known_device,
            },
            result,
        );
    };
    let failed = |reason: &str| {
        tracing::warn!(account = %w.user.id.0, ip = %ip, reason, "passkey second step failed");
    };
    let Some(webauthn) = state.webauthn.clone() else {
        let error = Msg::MethodNotEnrolled.text(lang).to_owned();
        return answer.refused(StatusCode::BAD_REQUEST, error, "").await;
    };
    match second_step::locked_until(&state, w.user.id).await {
        Ok(Some(until)) => {
            failed("locked");
            attempted(LoginResult::Throttled);
            return answer.locked(until, &[]).await;
        }
        Ok(None) => {}
        Err(e) => return page::failure(e, lang, &request_id),
    }
    let Some(binding) = binding(&state, &headers) else {
        return Rejection::from(FlowError::OtherBrowser).respond(&state, &headers, request_id);
    };
    let kept = if form.ceremony == form.tx {
        passkey::take::<PasskeyAuthentication>(
            &state,
            Ceremony::SecondStep,
            &form.tx,
            binding.cookie_value(),
        )
        .await
    } else {
        Ok(None)
    };
    // What is not an assertion (no ceremony, unreadable JSON) costs no try.
    let ceremony = match kept {
        Ok(Some(c)) => c,
        Ok(None) => {
            failed("no such ceremony");
            attempted(LoginResult::PasskeyRefused);
            let error = Msg::PasskeyExpired.text(lang).to_owned();
            return answer.refused(StatusCode::BAD_REQUEST, error, "").await;
        }
        Err(e) => return page::failure(e.into(), lang, &request_id),
    };
    let Some(response) = passkey::parse_answer::<PublicKeyCredential>(&form.credential) else {
        failed("malformed credential JSON");
        let error = Msg::PasskeyMalformed.text(lang).to_owned();
        return answer.refused(StatusCode::BAD_REQUEST, error, "").await;
    };
    // The state holds the credentials as they were when the page was shown: the one used
    // must still be the member's now (not removed meanwhile).
    let cred_id = URL_SAFE_NO_PAD.encode(&response.raw_id);
    let stored = match state.db.passkeys().find(&cred_id).await {
        Ok(stored) => stored.filter(|s| s.user == w.user.id),
        Err(e) => return page::failure(e.into(), lang, &request_id),
    };
    let outcome = match (&stored, stored.as_ref().and_then(credential)) {
        (Some(stored), Some(key)) => webauthn
            .finish_passkey_authentication(&response, &ceremony)
            .map_err(|e| format!("{e:?}"))
            .and_then(|result| {
                // The ceremony checked the counter against the credential as it was when
                // the page was shown; a clone's answer may still be behind what the
                // authenticator has reported since (WebAuthn §6.1.1).
                if counter_went_back(&stored.credential, result.counter()) {
                    return Err("the signature counter went backwards".to_owned());
                }
                Ok((stored, key, result))
            }),
        _ => Err("unknown, removed or another member's credential".to_owned()),
    };
    if let Err(reason) = &outcome {
        failed(reason);
    }
    let verified = outcome.is_ok();
    let achieved =
        match second_step::verify(&state, tx, &w.pending, &w.user, Proof::Passkey { verified })
            .await
        {
            Ok(achieved) => achieved,
            Err(SecondStepError::Wrong { .. }) => {
                attempted(LoginResult::PasskeyRefused);
                let error = Msg::PasskeyRefused.text(lang).to_owned();
                return answer.refused(StatusCode::UNAUTHORIZED, error, "").await;
            }
            Err(SecondStepError::TooMany) => {
                attempted(LoginResult::PasskeyRefused);
                let again = format!("{}&again={}", page::to_login(tx), login::AGAIN_AFTER_CODES);
                return see_other(&again, &[]);
            }
            Err(SecondStepError::Locked { until }) => {
                attempted(LoginResult::PasskeyRefused);
                return answer.locked(until, &[]).await;
            }
            Err(SecondStepError::Expired) => return see_other(&page::to_login(tx), &[]),
            Err(SecondStepError::OtherBrowser) => {
                return Rejection::from(FlowError::OtherBrowser)
                    .respond(&state, &headers, request_id);
            }
            Err(e) => return page::failure(e, lang, &request_id),
        };
    let Ok((stored, key, result)) = outcome else {
        return page::failure(
            SecondStepError::Internal("a refused passkey passed".into()),
            lang,
            &request_id,
        );
    };
    // The atomic take: of two answers at once, one signs in.
    let pending = match second_step::finish(&state, &headers, tx, &w.pending).await {
        Ok(p) => p,
        Err(SecondStepError::Expired) => return see_other(&page::to_login(tx), &[]),
        Err(SecondStepError::OtherBrowser) => {
            return Rejection::from(FlowError::OtherBrowser).respond(&state, &headers, request_id);
        }
        Err(e) => return page::failure(e, lang, &request_id),
    };
    let user = match state.db.users().find_by_id(pending.user_id()).await {
        Ok(Some(u)) if u.usable() => u,
        Ok(_) => {
            failed("account no longer usable");
            let notice = frozen_notice(&state.config.account.support_contact, lang);
            return answer
                .show(StatusCode::FORBIDDEN, Says::Closed(notice), "", &[])
                .await;
        }
        Err(e) => return page::failure(e.into(), lang, &request_id),
    };
    match state
        .db
        .passkeys()
        .used(
            state.clock.now(),
            &stored.cred_id,
            &stored.credential,
            updated(key, &result),
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            failed("the passkey was removed meanwhile");
            attempted(LoginResult::PasskeyRefused);
            return see_other(&page::to_login(tx), &[]);
        }
        Err(e) => return page::failure(e.into(), lang, &request_id),
    }
    tracing::info!(user = %user.id.0, ip = %ip, method = %achieved.method, "signed in with two steps");
    let first_ip = pending.ip.parse().unwrap_or(ip);
    complete_sign_in(
        &state,
        &headers,
        request_id,
        lang,
        w.target,
        tx,
        Completed {
            user: &user,
            amr: achieved.amr,
            acr: achieved.acr,
            method: &achieved.method,
            device_id: pending.device,
            known_device: pending.known_device,
            ip: first_ip,
            user_agent: pending.user_agent,
            remember: pending.remember,
            cookies: Vec::new(),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(counter: u64) -> String {
        format!(r#"{{"cred":{{"counter":{counter}}}}}"#)
    }

    #[test]
    fn a_counter_goes_back_only_against_one_that_is_kept() {
        // An authenticator without a counter (synced passkeys): 0 on both sides.
        assert!(!counter_went_back(&stored(0), 0));
        assert!(!counter_went_back(&stored(0), 1));
        // One that keeps a counter must move it forward.
        assert!(counter_went_back(&stored(5), 0));
        assert!(counter_went_back(&stored(5), 4));
        assert!(
            counter_went_back(&stored(5), 5),
            "the same count twice: a clone"
        );
        assert!(!counter_went_back(&stored(5), 6));
        assert!(!counter_went_back(
            &stored(u64::from(u32::MAX) - 1),
            u32::MAX
        ));
        // A credential without a readable counter counts as one that keeps none.
        assert!(!counter_went_back("{}", 3));
        assert_eq!(stored_counter(&stored(7)), Some(7));
        assert_eq!(stored_counter(r#"{"cred":{}}"#), None);
    }
}
