//! Re-authentication: changing the email address, the password or the second steps, or
//! deleting the account, needs a recent sign-in (`auth_time` within
//! `account.reauth_minutes`) that passed every step the account has (a password alone
//! does not open these pages of an account with two-step verification), so that a browser
//! left signed in, a stolen session cookie or a stolen password cannot take the account
//! over. Otherwise the member signs in again (the console sign-in, with their address
//! filled in, which never skips the second step) and comes back to the same page.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;
use time::Duration;

use axum::http::StatusCode;

use super::ACCOUNT;
use super::console::CurrentSession;
use crate::authn::second_step::session_passed_second_step;
use crate::domain::BrowserSession;
use crate::flow::{self, Binding};
use crate::oidc::authorize::{Rejection, see_other};
use crate::state::AppState;
use crate::store::StoreError;
use crate::web::i18n::Msg;
use crate::web::pages::{RequestId, error_page, page_lang};

/// A console page's session, signed in within `account.reauth_minutes` with every step
/// the account has now. A page that takes this must answer its form's POST on the same
/// path as its GET: a stale POST comes back to the page (a GET) after the sign-in.
pub struct RecentSession(pub CurrentSession);

/// Whether the session's last sign-in is recent enough for a sensitive change.
pub fn is_recent(state: &AppState, session: &BrowserSession) -> bool {
    let window = Duration::minutes(state.config.account.reauth_minutes.into());
    state.clock.now() - session.auth_time <= window
}

/// Whether the session's sign-in passed what the account asks for now: a second step
/// when the account has one. A session that signed in with the password alone (on a
/// remembered device, or before a factor was turned on, in this browser or another) must
/// not be able to change or remove a factor: that would let a stolen password undo
/// two-step verification.
pub async fn has_every_step(
    state: &AppState,
    current: &CurrentSession,
) -> Result<bool, StoreError> {
    let factors = state.db.two_step().factors(current.user.id).await?;
    Ok(session_passed_second_step(&current.session.amr, &factors))
}

impl FromRequestParts<AppState> for RecentSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let current = CurrentSession::from_request_parts(parts, state).await?;
        let request_id = || {
            RequestId(
                parts
                    .headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            )
        };
        if is_recent(state, &current.session) {
            match has_every_step(state, &current).await {
                Ok(true) => return Ok(Self(current)),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "console: cannot read the account's second steps");
                    let lang = page_lang(None, Some(&current.user.locale), &parts.headers);
                    return Err(error_page(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        lang,
                        Msg::ServerError,
                        request_id().0,
                    ));
                }
            }
        }
        let path = parts.uri.path();
        let return_to = if flow::console_path(path) {
            path
        } else {
            ACCOUNT
        };
        let binding = Binding::of(state.cookies, &parts.headers);
        let email = current.user.email.display().to_owned();
        match flow::park_console(state, &binding, return_to, Some(email)).await {
            Ok(tx) => Err(see_other(
                &format!("/login?tx={tx}"),
                binding.set_cookie.as_slice(),
            )),
            Err(e) => Err(Rejection::from(e).respond(state, &parts.headers, request_id())),
        }
    }
}
