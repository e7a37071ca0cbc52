//! Re-authentication: changing the email address or the password, or deleting the
//! account, needs a recent sign-in (`auth_time` within `account.reauth_minutes`), so that
//! a browser left signed in, or a stolen session cookie, cannot take the account over.
//! Otherwise the member signs in again (the console sign-in, with their address filled
//! in) and comes back to the same page.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;
use time::Duration;

use super::ACCOUNT;
use super::console::CurrentSession;
use crate::domain::BrowserSession;
use crate::flow::{self, Binding};
use crate::oidc::authorize::{Rejection, see_other};
use crate::state::AppState;
use crate::web::pages::RequestId;

/// A console page's session, signed in within `account.reauth_minutes`. A page that
/// takes this must answer its form's POST on the same path as its GET: a stale POST
/// comes back to the page (a GET) after the sign-in.
pub struct RecentSession(pub CurrentSession);

/// Whether the session's last sign-in is recent enough for a sensitive change.
pub fn is_recent(state: &AppState, session: &BrowserSession) -> bool {
    let window = Duration::minutes(state.config.account.reauth_minutes.into());
    state.clock.now() - session.auth_time <= window
}

impl FromRequestParts<AppState> for RecentSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let current = CurrentSession::from_request_parts(parts, state).await?;
        if is_recent(state, &current.session) {
            return Ok(Self(current));
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
            Err(e) => {
                let request_id = RequestId(
                    parts
                        .headers
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                );
                Err(Rejection::from(e).respond(state, &parts.headers, request_id))
            }
        }
    }
}
