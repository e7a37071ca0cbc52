//! The account console (`/account…`): the member's own view of their account. Every page
//! needs a signed-in browser session ([`CurrentSession`]); without one the browser is
//! sent to sign in (a console sign-in, parked like an authorization request and bound to
//! the browser) and comes back to the page it asked for.

use super::ACCOUNT;
use askama::Template;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::authn::session;
use crate::domain::{BrowserSession, User};
use crate::flow::{self, Binding};
use crate::oidc::authorize::{Rejection, see_other};
use crate::state::AppState;
use crate::store::{LoginEvent, LoginResult};
use crate::web::cookies::SESSION;
use crate::web::device::Device;
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render};

/// How many of the latest sign-ins the overview shows.
const RECENT: u64 = 5;

/// The signed-in browser session of a console page and its (active) account.
pub struct CurrentSession {
    pub session: BrowserSession,
    pub user: User,
}

impl FromRequestParts<AppState> for CurrentSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let headers = &parts.headers;
        let lang = page_lang(None, None, headers);
        let request_id = RequestId(
            headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        );
        let failed = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "console: session lookup failed");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                Msg::ServerError,
                request_id.0.clone(),
            )
        };
        let secret = state.cookies.get(headers, SESSION);
        let found = session::current(&state.db, &state.clock, &state.sessions, secret.as_deref())
            .await
            .map_err(|e| failed(&e))?;
        if let Some(session) = found {
            let user = state
                .db
                .users()
                .find_by_id(session.user_id)
                .await
                .map_err(|e| failed(&e))?;
            // Not a frozen or deleted account, nor one waiting for a password reset: a
            // session that slipped past their end (created while the change committed)
            // opens nothing.
            if let Some(user) = user.filter(User::usable) {
                return Ok(Self { session, user });
            }
        }
        // Sign in first, then come back here.
        let path = parts.uri.path_and_query().map_or(ACCOUNT, |p| p.as_str());
        let return_to = if flow::console_path(path) {
            path
        } else {
            ACCOUNT
        };
        let binding = Binding::of(state.cookies, headers);
        match flow::park_console(state, &binding, return_to, None).await {
            Ok(tx) => Err(see_other(
                &format!("/login?tx={tx}"),
                binding.set_cookie.as_slice(),
            )),
            Err(e) => Err(Rejection::from(e).respond(state, headers, request_id)),
        }
    }
}

/// "2026-12-04 15:42" in the pages' offset (times of the console's lists).
pub fn minute(t: time::OffsetDateTime, offset: time::UtcOffset) -> String {
    let t = t.to_offset(offset);
    format!(
        "{}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// One line of a sign-in list, in words (the overview; the history page).
pub struct SignInLine {
    pub at: String,
    pub ip: String,
    /// The device in words ("Chrome（Windows 10・パソコン）").
    pub device: String,
    pub result: &'static str,
    pub failed: bool,
    pub new_device: bool,
}

impl SignInLine {
    pub fn of(state: &AppState, e: &LoginEvent, lang: Lang) -> Self {
        let offset = state.config.throttle.display_offset();
        let result = match e.result {
            LoginResult::Success => Msg::ResultSuccess,
            LoginResult::WrongPassword => Msg::ResultWrongPassword,
            LoginResult::Throttled => Msg::ResultThrottled,
            LoginResult::Unverified => Msg::ResultUnverified,
            LoginResult::Frozen => Msg::ResultFrozen,
            LoginResult::ResetRequired => Msg::ResultResetRequired,
            LoginResult::WrongCode => Msg::ResultWrongCode,
            LoginResult::Enrolled => Msg::ResultEnrolled,
            LoginResult::Removed => Msg::ResultRemoved,
            LoginResult::PasskeyRefused => Msg::ResultPasskeyRefused,
        };
        Self {
            at: minute(e.at, offset),
            ip: e.ip.clone(),
            device: Device::of(&e.user_agent).describe(lang),
            result: result.text(lang),
            failed: !matches!(
                e.result,
                LoginResult::Success | LoginResult::Enrolled | LoginResult::Removed
            ),
            new_device: e.new_device,
        }
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct OverviewPage<'a> {
    lang: Lang,
    name: &'a str,
    email: &'a str,
    email_verified: bool,
    has_password: bool,
    devices: u64,
    recent: Vec<SignInLine>,
    /// Two-step verification is on, and its recovery codes are running out.
    two_step: bool,
    few_codes_left: bool,
    /// How many passkeys the member has.
    passkeys: u64,
}

impl OverviewPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// `/account`: who, how the account is protected, the latest sign-ins, the devices
/// signed in now.
pub async fn overview(
    State(state): State<AppState>,
    current: CurrentSession,
    headers: HeaderMap,
    request_id: RequestId,
) -> Response {
    let user = &current.user;
    let lang = page_lang(None, Some(&user.locale), &headers);
    let now = state.clock.now();
    let loaded = async {
        let recent = state.db.login_events().page(user.id, None, RECENT).await?;
        let devices = state
            .db
            .sessions()
            .count_live(user.id, now, state.sessions.idle)
            .await?;
        let factors = state.db.two_step().factors(user.id).await?;
        let passkeys = state.db.passkeys().count(user.id).await?;
        Ok::<_, crate::store::StoreError>((recent, devices, factors, passkeys))
    }
    .await;
    let (recent, devices, factors, passkeys) = match loaded {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "console: overview failed");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                Msg::ServerError,
                request_id.0,
            );
        }
    };
    let page = OverviewPage {
        lang,
        name: &user.display_name,
        email: user.email.display(),
        email_verified: user.email_verified,
        has_password: user.password_hash.is_some(),
        devices,
        recent: recent
            .iter()
            .map(|e| SignInLine::of(&state, e, lang))
            .collect(),
        two_step: factors.any(),
        few_codes_left: super::two_step::few_codes_left(&factors),
        passkeys,
    };
    render(StatusCode::OK, &page, &[]).into_response()
}
