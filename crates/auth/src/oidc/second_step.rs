//! The second-step page (`/login/second-step`): after the right password of an account
//! with two-step verification, the member shows an authenticator code, an email code or a
//! recovery code, and only then is signed in (`login::complete_sign_in`).
//!
//! The page continues the parked sign-in of the same browser (the park and the pending
//! first step are both bound to its binding cookie), so a first step passed in one browser
//! cannot be finished in another. The counting of wrong codes lives in
//! `authn::second_step`; this module turns its answers into pages.

use std::net::{IpAddr, SocketAddr};

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use super::authorize::{Rejection, see_other};
use super::login::{AGAIN_AFTER_CODES, Completed, complete_sign_in, purpose, ui_locales};
use super::paths;
use crate::account::{self, FORGOT, TWO_STEP, user_lang};
use crate::admin::support::frozen_notice;
use crate::authn::second_step::{
    self, EMAIL_CODE_LIFETIME, METHOD_EMAIL_CODE, METHOD_RECOVERY_CODE, METHOD_TOTP,
    PENDING_LIFETIME, Pending, Proof, SecondStepError,
};
use crate::authn::sign_in::{self, Attempted};
use crate::crypto::{random_token, sha256_hex};
use crate::domain::User;
use crate::flow::{self, FlowError, SignInFor};
use crate::mail::templates;
use crate::state::AppState;
use crate::store::{Factors, LoginResult};
use crate::web::client_ip::client_ip;
use crate::web::cookies::REMEMBER;
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render, unavailable_page};

/// Email codes one pending sign-in may ask for (the first, sent by itself, included):
/// enough for a slow mailbox, too few to flood one.
const MAX_SENDS: u64 = 5;

/// No code of any kind is longer (a recovery code is 11 characters; spaces allowed).
const MAX_CODE_LEN: usize = 64;

#[derive(Template)]
#[template(path = "second_step.html")]
struct SecondStepPage<'a> {
    lang: Lang,
    client_name: &'a str,
    tx: &'a str,
    csrf: &'a str,
    totp: bool,
    /// Email codes are enrolled: where the code goes (or went), in words.
    email: Option<String>,
    /// A code was sent for this sign-in: the button says "send a new code".
    email_sent: bool,
    /// Unused recovery codes are left: the way back for a lost phone.
    recovery: bool,
    /// 「この端末では{days}日間確認しない」, when this device may be remembered.
    remember: Option<String>,
    notice: Option<String>,
    error: Option<String>,
    /// The forms are shown (not while the second step is locked or refused for good).
    forms: bool,
    /// The method whose field has the focus: the one just tried, else the first shown.
    focus: &'a str,
    /// The passkey form, when the member has passkeys (`oidc::passkey`).
    passkey: Option<super::passkey::Offer>,
}

impl SecondStepPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// The sign-in the page continues: its park, the first step, the member and what they
/// enrolled, and the page's language.
pub(super) struct Waiting {
    pub(super) target: SignInFor,
    pub(super) pending: Pending,
    pub(super) user: User,
    factors: Factors,
    pub(super) lang: Lang,
}

/// Where a sign-in goes back to when its first step must be done again.
pub(super) fn to_login(tx: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("tx", tx)
        .finish();
    format!("{}?{query}", paths::LOGIN)
}

/// A failure of a store: 503 when the ephemeral store is down or full (try again), 500
/// with the request id otherwise; the cause is logged, never shown.
pub(super) fn failure(e: SecondStepError, lang: Lang, request_id: &RequestId) -> Response {
    if let SecondStepError::Ephemeral(eph) = &e
        && eph.is_transient()
    {
        tracing::warn!(error = %e, "second step: ephemeral store unavailable");
        return unavailable_page(lang);
    }
    tracing::error!(error = %e, "second step failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        lang,
        Msg::ServerError,
        request_id.0.clone(),
    )
}

/// Picks up the sign-in waiting under `tx` in this browser. The park is checked first,
/// with the login page's rejections (unknown, expired, another browser's); a park alive
/// without a first step (never passed, voided, taken) sends the browser to the password.
pub(super) async fn waiting(
    state: &AppState,
    headers: &HeaderMap,
    request_id: &RequestId,
    tx: &str,
    explicit_lang: Option<&str>,
) -> Result<Waiting, Response> {
    let target = flow::resume_sign_in(state, headers, tx)
        .await
        .map_err(|e| Rejection::from(e).respond(state, headers, request_id.clone()))?;
    let early_lang = page_lang(explicit_lang, ui_locales(&target), headers);
    let pending = match second_step::resume(state, headers, tx).await {
        Ok(p) => p,
        Err(SecondStepError::Expired) => return Err(see_other(&to_login(tx), &[])),
        Err(SecondStepError::OtherBrowser) => {
            return Err(Rejection::from(FlowError::OtherBrowser).respond(
                state,
                headers,
                request_id.clone(),
            ));
        }
        Err(e) => return Err(failure(e, early_lang, request_id)),
    };
    let user = match state.db.users().find_by_id(pending.user_id()).await {
        Ok(user) => user,
        Err(e) => return Err(failure(e.into(), early_lang, request_id)),
    };
    let factors = match &user {
        Some(u) => match state.db.two_step().factors(u.id).await {
            Ok(f) => f,
            Err(e) => return Err(failure(e.into(), early_lang, request_id)),
        },
        None => Factors::default(),
    };
    // Frozen, deleted, or the second step removed (support's reset) since the password:
    // the first step is asked again, and answers for the account as it is now.
    let Some(user) = user.filter(|u| u.usable() && factors.any()) else {
        if let Err(e) = second_step::abandon(state, tx).await {
            return Err(failure(e, early_lang, request_id));
        }
        return Err(see_other(&to_login(tx), &[]));
    };
    // The member's language after an explicit choice and the client's `ui_locales`, as
    // the sign-in page chooses, but before the browser's: the account says it best.
    let lang = explicit_lang
        .and_then(Lang::from_tag)
        .or_else(|| ui_locales(&target).and_then(Lang::negotiate))
        .or_else(|| Lang::from_tag(&user.locale))
        .unwrap_or(early_lang);
    Ok(Waiting {
        target,
        pending,
        user,
        factors,
        lang,
    })
}

/// The keys of one pending sign-in's sends: a new first step under the same park starts
/// a new count.
fn sends_key(tx: &str, pending: &Pending) -> String {
    format!(
        "second_step_sends:{tx}:{}",
        pending.created_at.unix_timestamp_nanos()
    )
}

fn sent_key(tx: &str, pending: &Pending) -> String {
    format!(
        "second_step_sent:{tx}:{}",
        pending.created_at.unix_timestamp_nanos()
    )
}

/// What asking for an email code did, as the page tells it.
enum Sent {
    /// Sent, or (over the mail caps) silently not: the page says the same either way.
    Sent,
    /// This sign-in asked for `MAX_SENDS` codes already.
    Limit,
}

/// Mails a new email code for `pending` and keeps its hash in it (replacing the one
/// before). Over the per-address or per-client mail caps nothing is sent and nothing
/// changes, but the answer is the same as for a sent code: the page must not tell whoever
/// has the password how much mail the address got (an oracle of the caps).
async fn send_code(
    state: &AppState,
    tx: &str,
    pending: &mut Pending,
    user: &User,
    ip: IpAddr,
    lang: Lang,
) -> Result<Sent, SecondStepError> {
    let until = pending.created_at + PENDING_LIFETIME;
    let sends = state
        .ephemeral
        .incr(&sends_key(tx, pending), PENDING_LIFETIME)
        .await?;
    if sends.count > MAX_SENDS {
        return Ok(Sent::Limit);
    }
    state
        .ephemeral
        .put(&sent_key(tx, pending), b"1", until)
        .await?;
    let allowed = account::mail_allowed(state, &user.email, ip)
        .await
        .map_err(SecondStepError::Internal)?;
    if !allowed {
        tracing::warn!(user = %user.id.0, ip = %ip, "email code not sent: over the mail caps");
        return Ok(Sent::Sent);
    }
    let code = second_step::new_email_code(state, tx, pending).await?;
    second_step::save(state, tx, pending).await?;
    let mail = templates::email_code(
        user_lang(user, lang),
        user.email.display(),
        &user.display_name,
        &code,
        EMAIL_CODE_LIFETIME.whole_minutes(),
        &account::link(state, FORGOT, &[]),
    );
    account::queue_mail(state, &mail)
        .await
        .map_err(SecondStepError::Internal)?;
    tracing::info!(user = %user.id.0, ip = %ip, "email code sent for the second step");
    Ok(Sent::Sent)
}

/// What the send button did.
enum SendAnswer {
    /// Sent (or silently not, over the caps); `resent`: a code was sent before.
    Sent {
        resent: bool,
    },
    Limit,
    Locked(OffsetDateTime),
}

/// Whether a code was asked for (or sent by itself) for this pending sign-in.
async fn was_sent(state: &AppState, tx: &str, pending: &Pending) -> Result<bool, SecondStepError> {
    Ok(state.ephemeral.get(&sent_key(tx, pending)).await?.is_some())
}

/// Leaves `pending` under the parked request `tx` for the second-step page. When email
/// codes are the account's only factor, the first code goes out at once: the member has
/// nothing else to type.
pub async fn begin(
    state: &AppState,
    tx: &str,
    mut pending: Pending,
    user: &User,
    lang: Lang,
) -> Result<(), SecondStepError> {
    second_step::start(state, tx, &pending).await?;
    let factors = state.db.two_step().factors(user.id).await?;
    // While the second step is locked no code could be used: none is sent.
    let locked = second_step::locked_until(state, user.id).await?.is_some();
    if factors.email && !factors.totp && !locked {
        let ip = pending
            .ip
            .parse()
            .map_err(|_| SecondStepError::Internal(format!("not an address: {}", pending.ip)))?;
        send_code(state, tx, &mut pending, user, ip, lang).await?;
    }
    Ok(())
}

/// The field a page focuses: the method just tried (else the first form's). The app's
/// form is first whenever it is shown, so trying it needs no arm of its own (and a
/// hand-made post naming it without an app enrolled focuses the form that is there).
fn focus_of(method: &str) -> &'static str {
    match method {
        "email" => "email",
        "recovery" => "recovery",
        _ => "",
    }
}

/// What a page says above its forms.
pub(super) enum Says {
    Nothing,
    Notice(String),
    Error(String),
    /// An error after which no form can help (locked, frozen): the forms are left out.
    Closed(String),
}

/// One answer of the page: the waiting sign-in it shows and the form's token.
pub(super) struct Answer<'a> {
    pub(super) state: &'a AppState,
    pub(super) headers: &'a HeaderMap,
    pub(super) w: &'a Waiting,
    pub(super) tx: &'a str,
    pub(super) csrf: &'a str,
    pub(super) request_id: &'a RequestId,
}

impl Answer<'_> {
    /// The page, showing only what the member enrolled.
    pub(super) async fn show(
        &self,
        status: StatusCode,
        says: Says,
        focus: &'static str,
        cookies: &[String],
    ) -> Response {
        let (state, w) = (self.state, self.w);
        let lang = w.lang;
        let factors = w.factors;
        let email_sent = if factors.email {
            match was_sent(state, self.tx, &w.pending).await {
                Ok(sent) => sent,
                Err(e) => return failure(e, lang, self.request_id),
            }
        } else {
            false
        };
        let email = factors.email.then(|| {
            let to = account::email::masked(&w.user.email);
            if email_sent {
                Msg::EmailCodeSentTo
                    .text(lang)
                    .replace("{to}", &to)
                    .replace(
                        "{minutes}",
                        &EMAIL_CODE_LIFETIME.whole_minutes().to_string(),
                    )
            } else {
                Msg::EmailCodeWillSend.text(lang).replace("{to}", &to)
            }
        });
        // A device the account did not know before this password is never remembered:
        // a stolen password on a new device meets the second step every time.
        let days = state.config.account.remember_device_days;
        let remember = (w.pending.known_device && days > 0).then(|| {
            Msg::RememberDevice
                .text(lang)
                .replace("{days}", &days.to_string())
        });
        let first = if factors.totp { "totp" } else { "email" };
        let (notice, error, forms) = match says {
            Says::Nothing => (None, None, true),
            Says::Notice(n) => (Some(n), None, true),
            Says::Error(e) => (None, Some(e), true),
            Says::Closed(e) => (None, Some(e), false),
        };
        let client_name = purpose(&w.target, lang);
        let passkey = if forms {
            super::passkey::second_step_offer(state, self.headers, self.tx, &w.user).await
        } else {
            None
        };
        let page = SecondStepPage {
            lang,
            client_name: &client_name,
            tx: self.tx,
            csrf: self.csrf,
            totp: factors.totp,
            email,
            email_sent,
            recovery: factors.recovery_left > 0,
            remember,
            notice,
            error,
            forms,
            focus: if focus.is_empty() { first } else { focus },
            passkey,
        };
        render(status, &page, cookies)
    }

    /// The forms again, with `error` above them.
    pub(super) async fn refused(
        &self,
        status: StatusCode,
        error: String,
        focus: &'static str,
    ) -> Response {
        self.show(status, Says::Error(error), focus, &[]).await
    }

    /// 429 while the account's second step is locked: until when, and no forms (every
    /// factor is refused until then, so none is offered).
    pub(super) async fn locked(&self, until: OffsetDateTime, cookies: &[String]) -> Response {
        let (state, lang) = (self.state, self.w.lang);
        let now = state.clock.now();
        let when = lang.clock_time(until, now, state.config.throttle.display_offset());
        let gap = if lang == Lang::Ja { "" } else { " " };
        let message = format!(
            "{}{gap}{}",
            Msg::SecondStepLocked.text(lang),
            lang.try_again_after(&when)
        );
        let mut res = self
            .show(
                StatusCode::TOO_MANY_REQUESTS,
                Says::Closed(message),
                "",
                cookies,
            )
            .await;
        let wait = (until - now).whole_seconds().max(1) + 1;
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        res
    }
}

#[derive(Deserialize)]
pub struct SecondStepQuery {
    tx: Option<String>,
    lang: Option<String>,
}

pub async fn get_second_step(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Query(q): Query<SecondStepQuery>,
) -> Response {
    let tx = q.tx.unwrap_or_default();
    let w = match waiting(&state, &headers, &request_id, &tx, q.lang.as_deref()).await {
        Ok(w) => w,
        Err(res) => return res,
    };
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    let cookies: Vec<String> = set_cookie.into_iter().collect();
    let answer = Answer {
        state: &state,
        headers: &headers,
        w: &w,
        tx: &tx,
        csrf: &csrf,
        request_id: &request_id,
    };
    match second_step::locked_until(&state, w.user.id).await {
        Ok(Some(until)) => answer.locked(until, &cookies).await,
        Ok(None) => {
            answer
                .show(StatusCode::OK, Says::Nothing, "", &cookies)
                .await
        }
        Err(e) => failure(e, w.lang, &request_id),
    }
}

#[derive(Deserialize)]
pub struct SecondStepForm {
    #[serde(default)]
    tx: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    code: String,
    remember_device: Option<String>,
    action: Option<String>,
    lang: Option<String>,
}

/// A code as typed, checked for its shape before it may count as a guess: a malformed
/// one is refused without costing a try (it cannot be right, and a slip of the finger
/// must not void a sign-in). The history's name of the factor comes with it.
fn parse_proof<'c>(method: &str, code: &'c str) -> Result<(Proof<'c>, &'static str), Msg> {
    let (make, name): (fn(&'c str) -> Proof<'c>, _) = match method {
        "totp" => (Proof::Totp, METHOD_TOTP),
        "email" => (Proof::EmailCode, METHOD_EMAIL_CODE),
        "recovery" => (Proof::Recovery, METHOD_RECOVERY_CODE),
        _ => return Err(Msg::MethodUnknown),
    };
    if code.len() > MAX_CODE_LEN {
        return Err(Msg::CodeTooLong);
    }
    let code = code.trim();
    if code.is_empty() {
        return Err(Msg::CodeEmpty);
    }
    // Apps show "123 456": spaces are allowed in the six digits.
    let digits = code.chars().filter(|c| !c.is_whitespace());
    let six_digits = digits.clone().count() == 6 && digits.clone().all(|c| c.is_ascii_digit());
    if name != METHOD_RECOVERY_CODE && !six_digits {
        return Err(Msg::CodeNotDigits);
    }
    Ok((make(code), name))
}

pub async fn post_second_step(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<SecondStepForm>,
) -> Response {
    let tx = form.tx.as_str();
    let mut w = match waiting(&state, &headers, &request_id, tx, form.lang.as_deref()).await {
        Ok(w) => w,
        Err(res) => return res,
    };
    let lang = w.lang;
    let ip = client_ip(peer, &headers, &state.config.server.trusted_proxies);
    let locked = match second_step::locked_until(&state, w.user.id).await {
        Ok(locked) => locked,
        Err(e) => return failure(e, lang, &request_id),
    };

    if let Some(action) = form.action.as_deref() {
        let answer = match action {
            "send" if !w.factors.email => Err(Msg::MethodNotEnrolled),
            "send" => match locked {
                Some(until) => Ok(SendAnswer::Locked(until)),
                None => {
                    let before = was_sent(&state, tx, &w.pending).await;
                    let sent = send_code(&state, tx, &mut w.pending, &w.user, ip, lang).await;
                    match (before, sent) {
                        (Ok(resent), Ok(Sent::Sent)) => Ok(SendAnswer::Sent { resent }),
                        (Ok(_), Ok(Sent::Limit)) => Ok(SendAnswer::Limit),
                        (Err(e), _) | (_, Err(e)) => return failure(e, lang, &request_id),
                    }
                }
            },
            _ => Err(Msg::MethodUnknown),
        };
        let page = Answer {
            state: &state,
            headers: &headers,
            w: &w,
            tx,
            csrf: &form.csrf,
            request_id: &request_id,
        };
        let focus = if w.factors.email { "email" } else { "" };
        return match answer {
            Err(msg) => {
                let error = msg.text(lang).to_owned();
                page.refused(StatusCode::BAD_REQUEST, error, focus).await
            }
            Ok(SendAnswer::Locked(until)) => page.locked(until, &[]).await,
            Ok(SendAnswer::Limit) => {
                let error = Msg::EmailSendLimit.text(lang).to_owned();
                page.refused(StatusCode::TOO_MANY_REQUESTS, error, focus)
                    .await
            }
            // The email form says where the code went; a new code also says that the
            // one before no longer works.
            Ok(SendAnswer::Sent { resent }) => {
                let says = if resent {
                    Says::Notice(Msg::EmailCodeResent.text(lang).to_owned())
                } else {
                    Says::Nothing
                };
                page.show(StatusCode::OK, says, focus, &[]).await
            }
        };
    }

    let answer = Answer {
        state: &state,
        headers: &headers,
        w: &w,
        tx,
        csrf: &form.csrf,
        request_id: &request_id,
    };
    let focus = focus_of(&form.method);
    let (proof, factor) = match parse_proof(&form.method, &form.code) {
        Ok(p) => p,
        Err(msg) => {
            return answer
                .refused(StatusCode::BAD_REQUEST, msg.text(lang).to_owned(), focus)
                .await;
        }
    };
    let method = format!("{}+{factor}", w.pending.first_method);
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let attempt = || Attempted {
        user: w.user.id,
        ip,
        device: &w.pending.device,
        user_agent,
        method: &method,
        known_device: w.pending.known_device,
    };
    // Failures name the account and the factor, never what was typed.
    let failed = |reason: &str| {
        tracing::warn!(account = %w.user.id.0, ip = %ip, method = %method, reason, "second step failed");
    };
    if let Some(until) = locked {
        failed("locked");
        sign_in::record(&state, attempt(), LoginResult::Throttled);
        return answer.locked(until, &[]).await;
    }
    let verified = second_step::verify(&state, tx, &w.pending, &w.user, proof).await;
    let achieved = match verified {
        Ok(a) => a,
        Err(SecondStepError::Wrong { left }) => {
            failed("wrong code");
            sign_in::record(&state, attempt(), LoginResult::WrongCode);
            let error = Msg::CodeWrong
                .text(lang)
                .replace("{left}", &left.to_string());
            return answer.refused(StatusCode::UNAUTHORIZED, error, focus).await;
        }
        Err(SecondStepError::TooMany) => {
            // The sign-in is void: whoever typed the codes must show the password again
            // before guessing more (and the account's count keeps running).
            failed("wrong code; the sign-in is void");
            sign_in::record(&state, attempt(), LoginResult::WrongCode);
            let again = format!("{}&again={AGAIN_AFTER_CODES}", to_login(tx));
            return see_other(&again, &[]);
        }
        Err(SecondStepError::Locked { until }) => {
            failed("wrong code; the second step locks");
            sign_in::record(&state, attempt(), LoginResult::WrongCode);
            return answer.locked(until, &[]).await;
        }
        Err(SecondStepError::CodeExpired) => {
            failed("email code expired or never sent");
            let error = Msg::CodeExpired.text(lang).to_owned();
            return answer.refused(StatusCode::BAD_REQUEST, error, focus).await;
        }
        Err(SecondStepError::NotEnrolled) => {
            failed("factor not enrolled");
            let error = Msg::MethodNotEnrolled.text(lang).to_owned();
            return answer.refused(StatusCode::BAD_REQUEST, error, "").await;
        }
        Err(SecondStepError::Expired) => return see_other(&to_login(tx), &[]),
        Err(SecondStepError::OtherBrowser) => {
            return Rejection::from(FlowError::OtherBrowser).respond(&state, &headers, request_id);
        }
        Err(e) => return failure(e, lang, &request_id),
    };

    // The atomic take: of two submits at once, one signs in; the other finds nothing.
    let pending = match second_step::finish(&state, &headers, tx, &w.pending).await {
        Ok(p) => p,
        Err(SecondStepError::Expired) => return see_other(&to_login(tx), &[]),
        Err(SecondStepError::OtherBrowser) => {
            return Rejection::from(FlowError::OtherBrowser).respond(&state, &headers, request_id);
        }
        Err(e) => return failure(e, lang, &request_id),
    };
    // Frozen (or deleted) between the page and the code: no session for it.
    let user = match state.db.users().find_by_id(pending.user_id()).await {
        Ok(Some(u)) if u.usable() => u,
        Ok(_) => {
            failed("account no longer usable");
            let notice = frozen_notice(&state.config.account.support_contact, lang);
            return answer
                .show(StatusCode::FORBIDDEN, Says::Closed(notice), "", &[])
                .await;
        }
        Err(e) => return failure(e.into(), lang, &request_id),
    };
    if factor == METHOD_RECOVERY_CODE {
        recovery_code_used(&state, &user, lang).await;
    }
    // A recovery code is the way back for a lost factor, not a reason to stop asking
    // for one on this device.
    let ticked = form.remember_device.as_deref() == Some("on") && factor != METHOD_RECOVERY_CODE;
    let cookies: Vec<String> = if ticked {
        remember_device(&state, &user, &pending)
            .await
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    tracing::info!(user = %user.id.0, ip = %ip, method = %achieved.method, "signed in with two steps");
    // The sign-in is recorded from where the password was typed (the same browser).
    let first_ip = pending.ip.parse().unwrap_or(ip);
    let target = w.target;
    complete_sign_in(
        &state,
        &headers,
        request_id,
        lang,
        target,
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
            cookies,
        },
    )
    .await
}

/// 「この端末では確認しない」: a new random secret in a cookie of its own, its hash kept
/// for this account and device until `remember_device_days` from now. Only for a device
/// the account knew before this sign-in (see `Answer::show`); a failure to remember costs
/// the member a second step next time, not this sign-in.
async fn remember_device(state: &AppState, user: &User, pending: &Pending) -> Option<String> {
    let days = state.config.account.remember_device_days;
    if !pending.known_device || days == 0 || pending.device.is_empty() {
        return None;
    }
    let secret = random_token(&mut rand::rng(), 32);
    let now = state.clock.now();
    let lifetime = Duration::days(i64::from(days));
    let stored = state
        .db
        .two_step()
        .remember_device(
            now,
            user.id,
            &pending.device,
            sha256_hex(&secret),
            now + lifetime,
        )
        .await;
    if let Err(e) = stored {
        tracing::error!(error = %e, user = %user.id.0, "cannot remember the device");
        return None;
    }
    Some(state.cookies.set(REMEMBER, &secret, Some(lifetime)))
}

/// Tells the member that a recovery code signed in (someone else holding one must not
/// go unnoticed), how many are left, and where to set the lost factor up again. The
/// sign-in goes on if the mail cannot be queued.
async fn recovery_code_used(state: &AppState, user: &User, page_lang: Lang) {
    let left = match state.db.two_step().factors(user.id).await {
        Ok(f) => f.recovery_left,
        Err(e) => {
            tracing::error!(error = %e, user = %user.id.0, "cannot count the recovery codes left");
            return;
        }
    };
    let mail = templates::recovery_code_used(
        user_lang(user, page_lang),
        user.email.display(),
        &user.display_name,
        left,
        &account::link(state, TWO_STEP, &[]),
        &account::link(state, FORGOT, &[]),
    );
    if let Err(e) = account::queue_mail(state, &mail).await {
        tracing::error!(error = %e, user = %user.id.0, "cannot queue the recovery-code mail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(method: &str, code: &str) -> Result<&'static str, Msg> {
        parse_proof(method, code).map(|(_, name)| name)
    }

    #[test]
    fn a_code_is_checked_for_its_shape_before_it_may_cost_a_try() {
        assert!(matches!(name_of("totp", "123456"), Ok(METHOD_TOTP)));
        assert!(matches!(name_of("totp", " 123 456 "), Ok(METHOD_TOTP)));
        assert!(matches!(name_of("email", "654321"), Ok(METHOD_EMAIL_CODE)));
        assert!(matches!(
            name_of("recovery", "abcde-fghij"),
            Ok(METHOD_RECOVERY_CODE)
        ));
        for (method, code) in [("totp", "12345"), ("totp", "1234567"), ("email", "12345x")] {
            assert!(
                matches!(name_of(method, code), Err(Msg::CodeNotDigits)),
                "{method} {code}"
            );
        }
        assert!(matches!(name_of("totp", "   "), Err(Msg::CodeEmpty)));
        assert!(matches!(name_of("sms", "123456"), Err(Msg::MethodUnknown)));
        // Read up to 64 characters (a recovery code padded with spaces), refused beyond.
        let longest = format!("{:<64}", "abcde-fghij");
        assert!(matches!(
            name_of("recovery", &longest),
            Ok(METHOD_RECOVERY_CODE)
        ));
        let over = format!("{longest} ");
        assert!(matches!(name_of("recovery", &over), Err(Msg::CodeTooLong)));
    }
}
