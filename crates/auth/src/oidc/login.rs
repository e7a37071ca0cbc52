//! The sign-in page of an authorization flow: email + password, "keep me signed in".

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use std::net::SocketAddr;

use super::authorize::{Rejection, see_other};
use super::paths;
use crate::account::unlock::{locked_now, refused, throttled_message};
use crate::admin::support::frozen_notice;
use crate::authn::session::{self, SignIn};
use crate::authn::sign_in::{PasswordAttempt, SignInError, with_password};
use crate::crypto::random_token;
use crate::domain::{AMR_PASSWORD, UserId};
use crate::flow::{self, SignInFor, Stage};
use crate::state::AppState;
use crate::web::client_ip::client_ip;
use crate::web::cookies::SESSION;
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
}

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
        notice: notice(&target, lang),
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
    let mut cookies: Vec<String> = new_device_cookie.into_iter().collect();
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
    let user = match signed_in {
        Ok(user) => user,
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
    let previous = match session::current(
        &state.db,
        &state.clock,
        &state.sessions,
        state.cookies.get(&headers, SESSION).as_deref(),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "session lookup failed");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                Msg::ServerError,
                request_id.0,
            );
        }
    };
    let signed_in = session::sign_in(
        &state.db,
        &state.clock,
        &state.sessions,
        previous,
        SignIn {
            user_id: user.id,
            amr: vec![AMR_PASSWORD.to_owned()],
            acr: "1".to_owned(),
            device_id,
            ip: ip.clone(),
            user_agent,
            remember,
        },
    )
    .await;
    let (session, secret) = match signed_in {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot create a session");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                Msg::ServerError,
                request_id.0,
            );
        }
    };
    let next = match target {
        // The park remembers which session signed in for it (prompt=login, max_age).
        SignInFor::Authorize(mut park) => flow::advance(
            &state,
            &form.tx,
            &mut park,
            Stage::SignedIn {
                session: session.id,
            },
        )
        .await
        .map(|()| format!("{}?tx={}", paths::AUTHORIZE_CONTINUE, form.tx)),
        SignInFor::Console(_) => flow::finish_console(&state, &headers, &form.tx).await,
    };
    let next = match next {
        Ok(next) => next,
        Err(e) => return Rejection::from(e).respond(&state, &headers, request_id),
    };
    tracing::info!(user = %user.id.0, ip = %ip, client_id = %client_id, "signed in with a password");
    cookies.push(
        state
            .cookies
            .set(SESSION, &secret, state.sessions.cookie_max_age(remember)),
    );
    see_other(&next, &cookies)
}

/// The languages the client asked for, if a client asked.
fn ui_locales(target: &SignInFor) -> Option<&str> {
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
fn purpose(target: &SignInFor, lang: Lang) -> String {
    match target {
        SignInFor::Authorize(park) => park.request.client_name.clone(),
        SignInFor::Console(_) => Msg::AccountConsole.text(lang).to_owned(),
    }
}
