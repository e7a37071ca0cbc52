//! FOUNDATION PLACEHOLDER (helper H3 implements): social sign-in's web side. The sign-in
//! page's provider buttons post to `/federation/{id}/start`; the provider answers at
//! `/federation/{id}/callback` (a GET, or Apple's cross-site form POST, kept server-side
//! under its `state` and finished by a 303 to the GET).

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::federation::{Provider, UpstreamError};
use crate::state::AppState;

/// Why an authorization request was sent to a provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// Signing in for the parked request (or console sign-in) `tx`.
    SignIn { tx: String },
    /// Linking the provider to the signed-in account `user` from the console
    /// (`account::linked`); `session` is the console session that asked.
    Link { user: Uuid, session: Uuid },
}

/// Why a request to a provider could not be started.
#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("the flow state cannot be kept: {0}")]
    Store(String),
}

/// Starts an authorization request at `provider` for `purpose`, bound to this browser
/// (the binding cookie): the flow's state is kept server-side under a fresh `state`.
/// Gives the URL to send the browser to, and the `Set-Cookie` values to send with it
/// (a new binding cookie).
pub async fn begin(
    state: &AppState,
    headers: &HeaderMap,
    provider: &Provider,
    purpose: Purpose,
) -> Result<(String, Vec<String>), BeginError> {
    let _ = (state, headers, provider, purpose);
    todo!("H3")
}
