//! Sign-up and address verification (`/signup`, `/verify-email`, `/signup/resend`).
//!
//! The page always says "we sent you a mail", whoever asks: a new address gets a link,
//! an address with an account gets a mail telling its owner, and the address of an
//! account deleted within `account.reregister_cooldown_days` gets a mail saying from when
//! it can sign up again (and nothing is created). Pre-hijacking (an attacker
//! signing up with someone's address before they do) gains nothing: an unverified account
//! cannot sign in anywhere, a new sign-up for it replaces its password and voids older
//! links, and the link signs in only the browser that signed up; in any other browser it
//! asks for the password first.

use std::net::IpAddr;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use time::Duration;

use super::audit_ctx::AuditOrigin;
use super::delete::in_words;
use super::unlock::{locked_now, throttled_page};
use super::{
    FORGOT, FormError, PageQuery, VERIFY, display_name, link, mail_allowed, park_of, queue_mail,
    user_lang,
};
use crate::authn::password::{HashError, Password, PasswordPolicyError};
use crate::authn::session::{self, SignIn};
use crate::authn::sign_in::{PasswordAttempt, SignInError, with_password};
use crate::crypto::{constant_time_eq, random_token, sha256_hex};
use crate::domain::{AMR_PASSWORD, Email, User, UserId, UserStatus};
use crate::flow::{self, Binding, Stage};
use crate::mail::templates;
use crate::oidc::authorize::{see_other, with_cookies};
use crate::oidc::paths;
use crate::state::AppState;
use crate::store::{NewUser, NewVerification, QueuedMail, StoreError, Verification};
use crate::web::client_ip::ClientAddr;
use crate::web::cookies::{BIND, DEVICE, SESSION};
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render, unavailable_page};

/// How long a verification link works.
pub const VERIFY_LIFETIME: Duration = Duration::hours(24);

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage<'a> {
    lang: Lang,
    csrf: &'a str,
    tx: &'a str,
    email: &'a str,
    display_name: &'a str,
    error: Option<FormError>,
    sent: bool,
}

impl SignupPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

#[derive(Template)]
#[template(path = "verify.html")]
struct VerifyPage<'a> {
    lang: Lang,
    csrf: &'a str,
    token: &'a str,
    wrong: bool,
    done: bool,
}

impl VerifyPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

fn server_error(lang: Lang, request_id: &RequestId, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "sign-up failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        lang,
        Msg::ServerError,
        request_id.0.clone(),
    )
}

pub async fn get_signup(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let lang = page_lang(q.lang.as_deref(), None, &headers);
    let tx = park_of(&state, &headers, &q.tx).await;
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    let page = SignupPage {
        lang,
        csrf: &csrf,
        tx: &tx,
        email: "",
        display_name: "",
        error: None,
        sent: false,
    };
    render(StatusCode::OK, &page, set_cookie.as_slice())
}

#[derive(Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    tx: String,
    lang: Option<String>,
}

pub async fn post_signup(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    request_id: RequestId,
    origin: AuditOrigin,
    CsrfForm(form): CsrfForm<SignupForm>,
) -> Response {
    let lang = page_lang(form.lang.as_deref(), None, &headers);
    let tx = park_of(&state, &headers, &form.tx).await;
    let again = |error: Msg, policy: Option<&PasswordPolicyError>| {
        let page = SignupPage {
            lang,
            csrf: &form.csrf,
            tx: &tx,
            email: &form.email,
            display_name: &form.display_name,
            error: Some(FormError::new(error, policy, lang)),
            sent: false,
        };
        render(StatusCode::BAD_REQUEST, &page, &[])
    };
    let email = match Email::parse(&form.email) {
        Ok(e) => e,
        Err(e) => return again(Msg::from(e), None),
    };
    let Some(name) = display_name(&form.display_name) else {
        return again(Msg::DisplayNameInvalid, None);
    };
    let password = match Password::new(&form.password, &email) {
        Ok(p) => p,
        Err(e) => return again(Msg::from(&e), Some(&e)),
    };
    // Hashed whatever happens next, so every answer costs the same.
    let hash = match state.hasher.hash(&password).await {
        Ok(h) => h,
        Err(HashError::Busy) => return unavailable_page(lang),
        Err(e) => return server_error(lang, &request_id, &e),
    };
    let binding = Binding::of(state.cookies, &headers);
    // What the address holds decides which writes follow; they happen after the answer,
    // so its timing tells nothing. The page does not depend on the outcome.
    let signup = Signup {
        email,
        display_name: name.to_owned(),
        password_hash: hash,
        binding_hash: binding.hash(),
        park: tx.clone(),
        lang,
        origin,
    };
    let background = state.clone();
    state.background.spawn(async move {
        if let Err(e) = sign_up(&background, ip, signup).await {
            tracing::error!(error = %e, request_id = ?request_id.0, "sign-up failed");
        }
    });
    let page = SignupPage {
        lang,
        csrf: &form.csrf,
        tx: &tx,
        email: "",
        display_name: "",
        error: None,
        sent: true,
    };
    let cookies: Vec<String> = binding.set_cookie.iter().cloned().collect();
    render(StatusCode::OK, &page, &cookies)
}

struct Signup {
    email: Email,
    display_name: String,
    password_hash: String,
    binding_hash: String,
    park: String,
    lang: Lang,
    /// Where the sign-up came from, for the audit record of the account it makes or
    /// renews.
    origin: AuditOrigin,
}

/// A verification record and its mail for `user`, bound to this browser and park.
fn verification(
    state: &AppState,
    binding_hash: &str,
    park: &str,
    lang: Lang,
    to: &str,
) -> Result<(NewVerification, QueuedMail), String> {
    let token = random_token(&mut rand::rng(), 32);
    // Greeted by address, never by the display name typed on the form: whoever signs up
    // with someone else's address must not get words of their own into that inbox.
    let mail = templates::verify(lang, to, "", &link(state, VERIFY, &[("token", &token)]));
    let payload = mail.seal(&state.master).map_err(|e| e.to_string())?;
    Ok((
        NewVerification {
            token_hash: sha256_hex(&token),
            binding_hash: binding_hash.to_owned(),
            park: park.to_owned(),
            expires_at: state.clock.now() + VERIFY_LIFETIME,
        },
        QueuedMail { payload },
    ))
}

async fn sign_up(state: &AppState, ip: IpAddr, s: Signup) -> Result<(), String> {
    if !mail_allowed(state, &s.email, ip).await? {
        tracing::warn!(identifier = %state.identifiers.pseudonym(s.email.normalized()), ip = %ip, "sign-up: mail cap reached");
        return Ok(());
    }
    let existing = state
        .db
        .users()
        .find_by_email(&s.email)
        .await
        .map_err(|e| e.to_string())?;
    let now = state.clock.now();
    match existing {
        None => {
            // A recently deleted account's address: nothing is created, and the mail (not
            // the page, which says the same to everyone) tells from when it can sign up.
            let digest = state.identifiers.email_digest(&s.email);
            let blocked = state
                .db
                .accounts()
                .reregistration_block(&digest, now)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(until) = blocked {
                let offset = state.config.throttle.display_offset();
                let again_from = in_words(until, offset, s.lang);
                let mail = templates::signup_cooldown(s.lang, s.email.display(), &again_from);
                queue_mail(state, &mail).await?;
                tracing::info!(ip = %ip, "sign-up with a recently deleted account's address: refused until the cooldown ends, the address told");
                return Ok(());
            }
            let (v, mail) =
                verification(state, &s.binding_hash, &s.park, s.lang, s.email.display())?;
            let new = NewUser {
                email: s.email.clone(),
                email_verified: false,
                password_hash: Some(s.password_hash),
                display_name: s.display_name.clone(),
                locale: s.lang.tag().to_owned(),
            };
            // Recorded in the account's transaction as the member's own act (as every
            // change a member makes), from the request that signed up.
            let origin = &s.origin;
            let audit = |user| {
                origin.event(
                    now,
                    user,
                    "user.create",
                    serde_json::json!({ "method": "signup" }),
                )
            };
            let register =
                state
                    .db
                    .signups()
                    .register(&state.clock, &mut rand::rng(), new, v, mail, audit);
            match register.await {
                // Taken meanwhile by a concurrent sign-up: that one's mail went out.
                Ok(_) | Err(StoreError::EmailTaken) => {}
                Err(e) => return Err(e.to_string()),
            }
            tracing::info!(ip = %ip, "sign-up: verification mail queued");
        }
        Some(user) if user.status == UserStatus::Unverified => {
            // Whoever signed up first, the address's owner wins: new password, new link.
            let (v, mail) = verification(
                state,
                &s.binding_hash,
                &s.park,
                s.lang,
                user.email.display(),
            )?;
            // The account's password is replaced: recorded with the request that did it.
            let audit = s.origin.event(
                now,
                user.id,
                "user.signup_again",
                serde_json::json!({ "method": "signup", "password_replaced": true }),
            );
            state
                .db
                .signups()
                .audited(audit)
                .renew(
                    now,
                    user.id,
                    Some(s.password_hash),
                    Some(s.display_name.to_owned()),
                    v,
                    mail,
                )
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(user = %user.id.0, ip = %ip, "sign-up again for an unverified address: password replaced, older links void");
        }
        Some(user) if user.status == UserStatus::Active => {
            let mail = templates::signup_exists(
                user_lang(&user, s.lang),
                user.email.display(),
                &user.display_name,
                &link(state, FORGOT, &[]),
            );
            let payload = mail.seal(&state.master).map_err(|e| e.to_string())?;
            state
                .db
                .jobs()
                .add(now, crate::store::MAIL_QUEUE, payload)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(user = %user.id.0, ip = %ip, "sign-up for a registered address: its owner is told");
        }
        // Frozen or deleted: nothing to tell, nothing to change.
        Some(_) => {}
    }
    Ok(())
}

/// The live verification a link's token names, with the token's hash.
async fn live_link(
    state: &AppState,
    token: &str,
) -> Result<Option<(String, Verification)>, StoreError> {
    if token.is_empty() || token.len() > 64 {
        return Ok(None);
    }
    let hash = sha256_hex(token);
    let found = state.db.signups().lookup(&hash, state.clock.now()).await?;
    Ok(found.map(|v| (hash, v)))
}

fn invalid_link(lang: Lang) -> Response {
    error_page(StatusCode::BAD_REQUEST, lang, Msg::VerifyLinkInvalid, None)
}

/// The audit row of an address verified at sign-up: by the link in the browser that
/// signed up, or by the link and the password in another.
fn verified_event(
    origin: &AuditOrigin,
    now: time::OffsetDateTime,
    user: UserId,
    method: &str,
) -> crate::store::AuditEvent {
    origin.event(
        now,
        user,
        "user.verify_email",
        serde_json::json!({ "method": method }),
    )
}

pub async fn get_verify(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    request_id: RequestId,
    origin: AuditOrigin,
    Query(q): Query<PageQuery>,
) -> Response {
    let lang = page_lang(q.lang.as_deref(), None, &headers);
    let now = state.clock.now();
    let (token_hash, v) = match live_link(&state, &q.token).await {
        Ok(Some(found)) => found,
        Ok(None) => return invalid_link(lang),
        Err(e) => return server_error(lang, &request_id, &e),
    };
    let presented = state
        .cookies
        .get(&headers, BIND)
        .map(|b| sha256_hex(&b))
        .unwrap_or_default();
    if !constant_time_eq(presented.as_bytes(), v.binding_hash.as_bytes()) {
        // Another browser: the link alone proves only access to the mailbox.
        let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
        let page = VerifyPage {
            lang,
            csrf: &csrf,
            token: &q.token,
            wrong: false,
            done: false,
        };
        return render(StatusCode::OK, &page, set_cookie.as_slice());
    }
    let audit = verified_event(&origin, now, v.user, "link_in_signup_browser");
    match state
        .db
        .signups()
        .audited(audit)
        .verify(now, &token_hash, v.user)
        .await
    {
        Ok(true) => {}
        Ok(false) => return invalid_link(lang),
        Err(e) => return server_error(lang, &request_id, &e),
    }
    tracing::info!(user = %v.user.0, ip = %ip, "address verified in the browser that signed up");
    // The browser that signed up is signed in and goes on to the client that sent it.
    match sign_in_and_continue(&state, &headers, ip, v.user, &v.park).await {
        Ok(res) => res,
        Err(e) => server_error(lang, &request_id, &e),
    }
}

async fn sign_in_and_continue(
    state: &AppState,
    headers: &HeaderMap,
    ip: IpAddr,
    user: UserId,
    park_id: &str,
) -> Result<Response, String> {
    let lang = page_lang(None, None, headers);
    let mut park = flow::resume(state, headers, park_id).await.ok();
    let Some(park) = park.as_mut() else {
        return Ok(done_page(lang));
    };
    let previous = session::current(
        &state.db,
        &state.clock,
        &state.sessions,
        state.cookies.get(headers, SESSION).as_deref(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let user_agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // The browser that signed up is the account's first known device (so that its own
    // later sign-ins are not news to the member, and it is exempt from the account lock);
    // a browser that came straight to sign-up gets its device cookie now.
    let (device, new_device_cookie) = state.cookies.device(headers);
    state
        .db
        .known_devices()
        .signed_in(
            state.clock.now(),
            user,
            &device,
            &ip.to_string(),
            &user_agent,
        )
        .await
        .map_err(|e| e.to_string())?;
    let (session, secret) = session::sign_in(
        &state.db,
        &state.clock,
        &state.sessions,
        previous,
        SignIn {
            user_id: user,
            amr: vec![AMR_PASSWORD.to_owned()],
            acr: "1".to_owned(),
            device_id: device,
            ip: ip.to_string(),
            user_agent,
            remember: false,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut cookies =
        vec![
            state
                .cookies
                .set(SESSION, &secret, state.sessions.cookie_max_age(false)),
        ];
    cookies.extend(new_device_cookie);
    let advanced = flow::advance(
        state,
        park_id,
        park,
        Stage::SignedIn {
            session: session.id,
        },
    )
    .await;
    Ok(match advanced {
        Ok(()) => see_other(
            &format!("{}?tx={park_id}", paths::AUTHORIZE_CONTINUE),
            &cookies,
        ),
        // Verified and signed in all the same (the request could not be carried on, say
        // with the ephemeral store down): the browser keeps its session, never a session
        // without its cookie, and the member goes back to the client on their own.
        Err(e) => {
            tracing::warn!(error = %e, "the parked request cannot go on after sign-up");
            with_cookies(done_page(lang), &cookies)
        }
    })
}

fn done_page(lang: Lang) -> Response {
    render(
        StatusCode::OK,
        &VerifyPage {
            lang,
            csrf: "",
            token: "",
            wrong: false,
            done: true,
        },
        &[],
    )
}

#[derive(Deserialize)]
pub struct VerifyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    lang: Option<String>,
}

/// The link opened in another browser: the address is verified once the password the
/// sign-up chose is given (someone who only reads the mailbox cannot take the account).
pub async fn post_verify(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    request_id: RequestId,
    origin: AuditOrigin,
    CsrfForm(form): CsrfForm<VerifyForm>,
) -> Response {
    let lang = page_lang(form.lang.as_deref(), None, &headers);
    let now = state.clock.now();
    let (token_hash, v) = match live_link(&state, &form.token).await {
        Ok(Some(found)) => found,
        Ok(None) => return invalid_link(lang),
        Err(e) => return server_error(lang, &request_id, &e),
    };
    let user: Option<User> = match state.db.users().find_by_id(v.user).await {
        Ok(u) => u,
        Err(e) => return server_error(lang, &request_id, &e),
    };
    let Some(user) = user.filter(|u| u.password_hash.is_some()) else {
        return invalid_link(lang);
    };
    // The same throttled check as the sign-in page: a link in hand must not become a
    // way to guess the sign-up's password without limit.
    let device = state
        .cookies
        .get(&headers, DEVICE)
        .map(|d| sha256_hex(&d))
        .unwrap_or_default();
    let checked = with_password(
        &state,
        PasswordAttempt {
            email: user.email.normalized(),
            password: &form.password,
            ip,
            device: &device,
            user_agent: "",
        },
    )
    .await;
    let right = match checked {
        // The right password of an account that awaits this very verification.
        Ok(_) | Err(SignInError::Unverified { .. }) => true,
        Err(SignInError::InvalidCredentials { account, locked }) => {
            if let Some(lock) = locked {
                locked_now(&state, account, lock, lang);
            }
            false
        }
        Err(SignInError::Throttled(lock)) => {
            tracing::warn!(user = %v.user.0, ip = %ip, "address verification throttled");
            return throttled_page(&state, &lock, lang);
        }
        Err(SignInError::Busy | SignInError::Unavailable(_)) => return unavailable_page(lang),
        Err(SignInError::AccountUnavailable | SignInError::ResetRequired) => {
            return invalid_link(lang);
        }
        Err(SignInError::Internal(e)) => return server_error(lang, &request_id, &e),
    };
    if !right {
        tracing::warn!(user = %v.user.0, ip = %ip, reason = "wrong password", "address verification refused");
        let page = VerifyPage {
            lang,
            csrf: &form.csrf,
            token: &form.token,
            wrong: true,
            done: false,
        };
        return render(StatusCode::UNAUTHORIZED, &page, &[]);
    }
    let audit = verified_event(&origin, now, v.user, "link_and_password");
    match state
        .db
        .signups()
        .audited(audit)
        .verify(now, &token_hash, v.user)
        .await
    {
        Ok(true) => {}
        Ok(false) => return invalid_link(lang),
        Err(e) => return server_error(lang, &request_id, &e),
    }
    tracing::info!(user = %v.user.0, ip = %ip, "address verified with the password in another browser");
    done_page(lang)
}

#[derive(Deserialize)]
pub struct ResendForm {
    #[serde(default)]
    handle: String,
    #[serde(default)]
    tx: String,
    lang: Option<String>,
}

/// A resend handle, made by the sign-in page after the right password of an unverified
/// account (so only whoever knows the password can ask).
pub fn resend_key(handle: &str) -> String {
    format!("signup_resend:{}", sha256_hex(handle))
}

pub async fn post_resend(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<ResendForm>,
) -> Response {
    let lang = page_lang(form.lang.as_deref(), None, &headers);
    let tx = park_of(&state, &headers, &form.tx).await;
    let user_id = match state.ephemeral.take(&resend_key(&form.handle)).await {
        Ok(Some(bytes)) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.parse::<uuid::Uuid>().ok())
            .map(UserId),
        Ok(None) => None,
        Err(e) => return server_error(lang, &request_id, &e),
    };
    let Some(user_id) = user_id else {
        return error_page(StatusCode::BAD_REQUEST, lang, Msg::FormExpired, None);
    };
    let user = match state.db.users().find_by_id(user_id).await {
        Ok(Some(u)) if u.status == UserStatus::Unverified => u,
        Ok(_) => return error_page(StatusCode::BAD_REQUEST, lang, Msg::FormExpired, None),
        Err(e) => return server_error(lang, &request_id, &e),
    };
    let binding = Binding::of(state.cookies, &headers);
    let resent = async {
        if !mail_allowed(&state, &user.email, ip).await? {
            return Ok(());
        }
        let (v, mail) = verification(
            &state,
            &binding.hash(),
            &tx,
            user_lang(&user, lang),
            user.email.display(),
        )?;
        state
            .db
            .signups()
            .renew(state.clock.now(), user.id, None, None, v, mail)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = resent {
        return server_error(lang, &request_id, &e);
    }
    let page = SignupPage {
        lang,
        csrf: "",
        tx: &tx,
        email: "",
        display_name: "",
        error: None,
        sent: true,
    };
    let cookies: Vec<String> = binding.set_cookie.iter().cloned().collect();
    render(StatusCode::OK, &page, &cookies)
}
