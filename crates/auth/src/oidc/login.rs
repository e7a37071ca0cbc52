//! The sign-in page of an authorization flow: email + password, "keep me signed in".

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

use super::authorize::{Rejection, see_other, with_cookies};
use super::paths;
use super::second_step;
use crate::account::unlock::{locked_now, refused, throttled_message};
use crate::admin::support::frozen_notice;
use crate::authn::second_step::Pending;
use crate::authn::session::{self, SignIn};
use crate::authn::sign_in::{
    self, Attempted, METHOD_PASSWORD, PasswordAttempt, SignInError, with_password,
};
use crate::crypto::{random_token, sha256_hex};
use crate::domain::{ACR_ONE, AMR_PASSWORD, User, UserId};
use crate::flow::{self, Binding, SignInFor, Stage};
use crate::state::AppState;
use crate::web::client_ip::client_ip;
use crate::web::cookies::{REMEMBER, SESSION};
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render, unavailable_page};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    lang: Lang,
    client_name: &'a str,
    tx: &'a str,
    csrf: &'a str,
    email: &'a str,
    remember: bool,
    /// Already in the page's language.
    error: Option<String>,
    /// The error is a throttling one: the page offers the reset.
    throttled: bool,
    /// The password must be reset before it works again: the page links to the reset.
    reset: bool,
    focus_email: bool,
    /// After the right password of an unverified sign-up: the handle that lets this
    /// browser ask for the verification mail again.
    resend: Option<String>,
    /// Why the member is asked to sign in (again).
    notice: Option<&'static str>,
    /// The passkey form (the button and the autofill), when passkeys are on.
    passkey: Option<super::passkey::Offer>,
    /// One button per configured provider, in the configuration's order.
    providers: Vec<ProviderButton>,
    /// After a provider gave an address an account uses: sign in to link it.
    linking: Option<String>,
}

/// A provider's button on the sign-in page.
struct ProviderButton {
    id: String,
    label: String,
}

/// The buttons of every configured provider, in their words for `lang`.
fn provider_buttons(state: &AppState, lang: Lang) -> Vec<ProviderButton> {
    state
        .federation
        .all()
        .iter()
        .map(|p| ProviderButton {
            id: p.id.clone(),
            label: p.label(lang).to_owned(),
        })
        .collect()
}

impl LoginPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    tx: Option<String>,
    lang: Option<String>,
    /// Why the member is back on the first page: `code` after too many wrong second-step
    /// codes voided the sign-in (`oidc::second_step`).
    again: Option<String>,
}

/// The `again` flag of a sign-in the second step voided.
pub(super) const AGAIN_AFTER_CODES: &str = "code";

pub async fn get_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Query(q): Query<LoginQuery>,
) -> Response {
    let tx_id = q.tx.unwrap_or_default();
    let target = match flow::resume_sign_in(&state, &headers, &tx_id).await {
        Ok(target) => target,
        Err(e) => return Rejection::from(e).respond(&state, &headers, request_id),
    };
    let lang = page_lang(q.lang.as_deref(), ui_locales(&target), &headers);
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    // login_hint pre-fills the address when it is one (OIDC Core §3.1.2.1).
    let hint = match &target {
        SignInFor::Authorize(park) => park.request.login_hint.as_deref(),
        SignInFor::Console(c) => c.reauth.as_deref(),
    }
    .filter(|h| crate::domain::Email::parse(h).is_ok())
    .unwrap_or("");
    let page = LoginPage {
        lang,
        client_name: &purpose(&target, lang),
        tx: &tx_id,
        csrf: &csrf,
        email: hint,
        remember: false,
        error: None,
        throttled: false,
        reset: false,
        focus_email: hint.is_empty(),
        resend: None,
        notice: notice(&target, lang).or_else(|| {
            (q.again.as_deref() == Some(AGAIN_AFTER_CODES)).then(|| Msg::SecondStepVoid.text(lang))
        }),
        passkey: super::passkey::sign_in_offer(&state, &headers, &tx_id).await,
        providers: provider_buttons(&state, lang),
        linking: None,
    };
    render(StatusCode::OK, &page, set_cookie.as_slice())
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    tx: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    remember: Option<String>,
    lang: Option<String>,
}

pub async fn post_login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Response {
    let target = match flow::resume_sign_in(&state, &headers, &form.tx).await {
        Ok(target) => target,
        Err(e) => return Rejection::from(e).respond(&state, &headers, request_id),
    };
    let lang = page_lang(form.lang.as_deref(), ui_locales(&target), &headers);
    let client_name = purpose(&target, lang);
    let client_id = match &target {
        SignInFor::Authorize(park) => park.request.client_id.clone(),
        SignInFor::Console(_) => String::new(),
    };
    let remember = form.remember.as_deref() == Some("on");
    // The form again, as it was filled in, with `error` above it.
    let refused_page = |error: String| LoginPage {
        lang,
        client_name: &client_name,
        tx: &form.tx,
        csrf: &form.csrf,
        email: &form.email,
        remember,
        throttled: false,
        reset: false,
        error: Some(error),
        focus_email: false,
        resend: None,
        notice: None,
        passkey: None,
        providers: provider_buttons(&state, lang),
        linking: None,
    };
    let again = |status: StatusCode,
                 error: String,
                 focus_email: bool,
                 throttled: bool,
                 cookies: &[String]| {
        let page = LoginPage {
            throttled,
            focus_email,
            notice: notice(&target, lang),
            ..refused_page(error)
        };
        render(status, &page, cookies)
    };
    let client_addr = client_ip(peer, &headers, &state.config.server.trusted_proxies);
    let ip = client_addr.to_string();
    // Failures name the account, or a keyed pseudonym of what was typed; never the
    // address or a password (one is sometimes typed into the other's field).
    let failed = |reason: &str, account: Option<UserId>| {
        tracing::warn!(
            account = account.map(|a| a.0.to_string()),
            identifier = %state.identifiers.pseudonym(&form.email),
            client_id = %client_id,
            ip = %ip,
            reason,
            "sign-in failed"
        );
    };
    if form.email.trim().is_empty() {
        return again(
            StatusCode::BAD_REQUEST,
            Msg::EmailEmpty.text(lang).to_owned(),
            true,
            false,
            &[],
        );
    }
    if form.password.is_empty() {
        return again(
            StatusCode::BAD_REQUEST,
            Msg::PasswordRequired.text(lang).to_owned(),
            false,
            false,
            &[],
        );
    }
    // The device cookie vouches for a known device (throttling, the new-device mail).
    // Made before the password is checked, so a first failure already comes from a
    // device.
    let (device_id, new_device_cookie) = state.cookies.device(&headers);
    let cookies: Vec<String> = new_device_cookie.into_iter().collect();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let signed_in = with_password(
        &state,
        PasswordAttempt {
            email: &form.email,
            password: &form.password,
            ip: client_addr,
            device: &device_id,
            user_agent: &user_agent,
        },
    )
    .await;
    let first = match signed_in {
        Ok(first) => first,
        Err(SignInError::InvalidCredentials { account, locked }) => {
            let reason = if account.is_some() {
                "wrong password"
            } else {
                "unknown account"
            };
            failed(reason, account);
            let Some(lock) = locked else {
                let error = Msg::InvalidCredentials.text(lang).to_owned();
                return again(StatusCode::UNAUTHORIZED, error, false, false, &cookies);
            };
            locked_now(&state, account, lock, lang);
            let error = throttled_message(&state, &lock, lang);
            return again(StatusCode::UNAUTHORIZED, error, false, true, &cookies);
        }
        Err(SignInError::Throttled(lock)) => {
            failed("throttled", None);
            let message = throttled_message(&state, &lock, lang);
            let mut res = again(
                StatusCode::TOO_MANY_REQUESTS,
                message,
                false,
                true,
                &cookies,
            );
            refused(&state, &lock, &mut res);
            return res;
        }
        Err(SignInError::Unverified { user }) => {
            failed("address not verified", Some(user));
            let handle = random_token(&mut rand::rng(), 24);
            let stored = state
                .ephemeral
                .put(
                    &crate::account::signup::resend_key(&handle),
                    user.0.to_string().as_bytes(),
                    state.clock.now() + time::Duration::minutes(10),
                )
                .await;
            if let Err(e) = stored {
                return Rejection::from(e).respond(&state, &headers, request_id);
            }
            let page = LoginPage {
                resend: Some(handle),
                ..refused_page(Msg::NotVerified.text(lang).to_owned())
            };
            return render(StatusCode::FORBIDDEN, &page, &cookies);
        }
        Err(SignInError::AccountUnavailable) => {
            failed("account not active", None);
            return again(
                StatusCode::FORBIDDEN,
                frozen_notice(&state.config.account.support_contact, lang),
                false,
                false,
                &cookies,
            );
        }
        Err(SignInError::ResetRequired) => {
            failed("password reset required", None);
            let page = LoginPage {
                reset: true,
                ..refused_page(Msg::ResetRequiredSignIn.text(lang).to_owned())
            };
            return render(StatusCode::FORBIDDEN, &page, &cookies);
        }
        Err(SignInError::Busy) => {
            tracing::warn!("sign-in refused: too many password hashes waiting");
            return unavailable_page(lang);
        }
        Err(SignInError::Unavailable(cause)) => {
            tracing::warn!(error = %cause, "sign-in refused: the ephemeral store is unavailable");
            return unavailable_page(lang);
        }
        Err(SignInError::Internal(cause)) => {
            tracing::error!(error = %cause, "sign-in failed");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                Msg::ServerError,
                request_id.0,
            );
        }
    };
    let user = first.user;
    let skip = match skips_second_step(&state, &headers, &target, &user, &device_id).await {
        Ok(skip) => skip,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the account's second step");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                Msg::ServerError,
                request_id.0,
            );
        }
    };
    if !skip {
        // The password alone signs nothing in: the second step continues from here, on
        // the same parked request and in the same browser.
        let pending = Pending::new(
            state.clock.now(),
            &Binding::of(state.cookies, &headers),
            user.id,
            vec![AMR_PASSWORD.to_owned()],
            METHOD_PASSWORD,
            remember,
            &device_id,
            first.known_device,
            &ip,
            &user_agent,
        );
        return match second_step::begin(&state, &form.tx, pending, &user, lang).await {
            Ok(()) => {
                tracing::info!(user = %user.id.0, ip = %ip, client_id = %client_id, "password right; second step asked");
                see_other(&format!("{}?tx={}", paths::SECOND_STEP, form.tx), &cookies)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the second step");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    lang,
                    Msg::ServerError,
                    request_id.0,
                )
            }
        };
    }
    tracing::info!(user = %user.id.0, ip = %ip, client_id = %client_id, "signed in with a password");
    complete_sign_in(
        &state,
        &headers,
        request_id,
        lang,
        target,
        &form.tx,
        Completed {
            user: &user,
            amr: vec![AMR_PASSWORD.to_owned()],
            acr: ACR_ONE,
            method: METHOD_PASSWORD,
            device_id,
            known_device: first.known_device,
            ip: client_addr,
            user_agent,
            remember,
            cookies,
        },
    )
    .await
}

/// Whether a member whose password was right signs in without a second step: the account
/// has none, or this device is remembered for it and nothing asks for every factor (a
/// re-authentication in the console, `prompt=login`, `max_age`, `acr_values=2`).
pub(super) async fn skips_second_step(
    state: &AppState,
    headers: &HeaderMap,
    target: &SignInFor,
    user: &User,
    device_id: &str,
) -> Result<bool, crate::store::StoreError> {
    if !state.db.two_step().enrolled(user.id).await? {
        return Ok(true);
    }
    let every_factor = match target {
        SignInFor::Authorize(park) => park.request.asks_every_factor(),
        SignInFor::Console(c) => c.reauth.is_some(),
    };
    if every_factor {
        return Ok(false);
    }
    let Some(secret) = state.cookies.get(headers, REMEMBER) else {
        return Ok(false);
    };
    state
        .db
        .two_step()
        .is_remembered(state.clock.now(), user.id, device_id, &sha256_hex(&secret))
        .await
}

/// The sign-in page again after a refused passkey (or a refusal after one), with the
/// status and the error above the form, and a new passkey ceremony.
pub(super) async fn page_again(
    state: &AppState,
    headers: &HeaderMap,
    request_id: &RequestId,
    tx: &str,
    lang: Lang,
    (status, error): (StatusCode, String),
    cookies: &[String],
) -> Response {
    let again = Again {
        status,
        error: Some(error),
        email: "",
        linking: None,
    };
    sign_in_page(state, headers, request_id, tx, lang, again, cookies).await
}

/// The sign-in page after a provider gave an address that the account `email` uses: the
/// address filled in, and `notice` asking to sign in to it (the link is made when that
/// account signs in, `federation::link_pending`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn page_to_link(
    state: &AppState,
    headers: &HeaderMap,
    request_id: &RequestId,
    tx: &str,
    lang: Lang,
    email: &str,
    notice: String,
    cookies: &[String],
) -> Response {
    let again = Again {
        status: StatusCode::OK,
        error: None,
        email,
        linking: Some(notice),
    };
    sign_in_page(state, headers, request_id, tx, lang, again, cookies).await
}

/// What a sign-in page shown again says.
struct Again<'a> {
    status: StatusCode,
    error: Option<String>,
    email: &'a str,
    linking: Option<String>,
}

async fn sign_in_page(
    state: &AppState,
    headers: &HeaderMap,
    request_id: &RequestId,
    tx: &str,
    lang: Lang,
    again: Again<'_>,
    cookies: &[String],
) -> Response {
    let target = match flow::resume_sign_in(state, headers, tx).await {
        Ok(target) => target,
        Err(e) => return Rejection::from(e).respond(state, headers, request_id.clone()),
    };
    let (csrf, set_cookie) = csrf::token(state.cookies, headers);
    let mut cookies = cookies.to_vec();
    cookies.extend(set_cookie);
    let page = LoginPage {
        lang,
        client_name: &purpose(&target, lang),
        tx,
        csrf: &csrf,
        email: again.email,
        remember: false,
        error: again.error,
        throttled: false,
        reset: false,
        focus_email: again.email.is_empty(),
        resend: None,
        notice: notice(&target, lang),
        passkey: super::passkey::sign_in_offer(state, headers, tx).await,
        providers: provider_buttons(state, lang),
        linking: again.linking,
    };
    render(again.status, &page, &cookies)
}

/// A sign-in whose every step passed.
pub(crate) struct Completed<'a> {
    pub user: &'a User,
    pub amr: Vec<String>,
    pub acr: &'a str,
    /// The history's name of the method ("password", "password+totp").
    pub method: &'a str,
    pub device_id: String,
    pub known_device: bool,
    pub ip: IpAddr,
    pub user_agent: String,
    /// "Keep me signed in".
    pub remember: bool,
    /// `Set-Cookie` values to send with the answer (a new device cookie, the
    /// remembered-device cookie); the session's is added.
    pub cookies: Vec<String>,
}

/// Finishes a sign-in whose every step passed (the password page, the second-step page):
/// records it, creates the session (or renews this member's), and sends the browser on to
/// the parked request or back to the console page, with `done.cookies` and the session's.
pub(crate) async fn complete_sign_in(
    state: &AppState,
    headers: &HeaderMap,
    request_id: RequestId,
    lang: Lang,
    target: SignInFor,
    tx: &str,
    done: Completed<'_>,
) -> Response {
    let mut cookies = done.cookies;
    let server_error = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "{what}");
        error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            lang,
            Msg::ServerError,
            request_id.0.clone(),
        )
    };
    let attempt = Attempted {
        user: done.user.id,
        ip: done.ip,
        device: &done.device_id,
        user_agent: &done.user_agent,
        method: done.method,
        known_device: done.known_device,
    };
    if let Err(e) = sign_in::completed(state, done.user, attempt).await {
        return server_error("cannot record a sign-in", &e);
    }
    // A provider whose address is this account's waits for exactly this sign-in.
    let ctx = crate::account::linked::LinkContext {
        ip: done.ip,
        user_agent: &done.user_agent,
        device: &done.device_id,
        lang,
    };
    super::federation::link_pending(state, headers, tx, done.user, ctx).await;
    let previous = match session::current(
        &state.db,
        &state.clock,
        &state.sessions,
        state.cookies.get(headers, SESSION).as_deref(),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return server_error("session lookup failed", &e),
    };
    let signed_in = session::sign_in(
        &state.db,
        &state.clock,
        &state.sessions,
        previous,
        SignIn {
            user_id: done.user.id,
            amr: done.amr,
            acr: done.acr.to_owned(),
            device_id: done.device_id,
            ip: done.ip.to_string(),
            user_agent: done.user_agent,
            remember: done.remember,
        },
    )
    .await;
    let (session, secret) = match signed_in {
        Ok(s) => s,
        Err(e) => return server_error("cannot create a session", &e),
    };
    let next = match target {
        // The park remembers which session signed in for it (prompt=login, max_age).
        SignInFor::Authorize(mut park) => flow::advance(
            state,
            tx,
            &mut park,
            Stage::SignedIn {
                session: session.id,
            },
        )
        .await
        .map(|()| format!("{}?tx={}", paths::AUTHORIZE_CONTINUE, tx)),
        SignInFor::Console(_) => flow::finish_console(state, headers, tx).await,
    };
    cookies.push(state.cookies.set(
        SESSION,
        &secret,
        state.sessions.cookie_max_age(done.remember),
    ));
    match next {
        Ok(next) => see_other(&next, &cookies),
        // Signed in all the same (the request could not be carried on, say with the
        // ephemeral store down): the browser gets its session with the error, so that no
        // session is left without its cookie and the member is not asked again.
        Err(e) => with_cookies(
            Rejection::from(e).respond(state, headers, request_id),
            &cookies,
        ),
    }
}

/// The languages the client asked for, if a client asked.
pub(super) fn ui_locales(target: &SignInFor) -> Option<&str> {
    match target {
        SignInFor::Authorize(park) => park.request.ui_locales.as_deref(),
        SignInFor::Console(_) => None,
    }
}

/// The word above the form of a re-authentication.
fn notice(target: &SignInFor, lang: Lang) -> Option<&'static str> {
    match target {
        SignInFor::Console(c) if c.reauth.is_some() => Some(Msg::ReauthNeeded.text(lang)),
        _ => None,
    }
}

/// What the member signs in to: the client, or their Tobira account.
pub(super) fn purpose(target: &SignInFor, lang: Lang) -> String {
    match target {
        SignInFor::Authorize(park) => park.request.client_name.clone(),
        SignInFor::Console(_) => Msg::AccountConsole.text(lang).to_owned(),
    }
}
