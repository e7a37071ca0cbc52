//! Browser sessions (single sign-on) and grants (what a client received, the unit of
//! revocation).

use time::OffsetDateTime;
use uuid::Uuid;

use super::UserId;

/// How the member proved who they are (RFC 8176 `amr` values).
pub const AMR_PASSWORD: &str = "pwd";

#[derive(Clone, Debug)]
pub struct BrowserSession {
    pub id: Uuid,
    /// Public session id: the `sid` claim of ID tokens and of back-channel logout.
    pub sid: String,
    pub user_id: UserId,
    pub auth_time: OffsetDateTime,
    pub amr: Vec<String>,
    pub acr: String,
    /// SHA-256 (hex) of the browser's device cookie; the cookie itself is never stored.
    pub device_id: String,
    pub ip: String,
    pub user_agent: String,
    /// "Keep me signed in": a persistent cookie and the longer lifetime.
    pub remember: bool,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    /// Absolute end, whatever the activity.
    pub expires_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
}

#[derive(Clone, Debug)]
pub struct Grant {
    pub id: Uuid,
    pub user_id: UserId,
    pub client_id: String,
    /// The browser session it came from; offline grants outlive it.
    pub session_id: Option<Uuid>,
    pub scope: String,
    pub offline: bool,
    pub auth_time: OffsetDateTime,
    pub amr: Vec<String>,
    pub acr: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

impl Grant {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }
}
