//! Browser sessions (single sign-on) and grants (what a client received, the unit of
//! revocation).

use time::OffsetDateTime;
use uuid::Uuid;

use super::UserId;

/// How the member proved who they are (RFC 8176 `amr` values).
pub const AMR_PASSWORD: &str = "pwd";
/// A one-time code: an authenticator app's, or a recovery code.
pub const AMR_OTP: &str = "otp";
/// More than one factor (RFC 8176 §2: with the methods that made it so).
pub const AMR_MFA: &str = "mfa";
/// Proof of possession of a key (a passkey), and user presence / verification by the
/// authenticator (RFC 8176 §2: `user` is presence; verification by PIN or biometrics
/// makes the passkey two factors in one, `mfa`).
pub const AMR_POP: &str = "pop";
pub const AMR_USER: &str = "user";
/// A code sent through another channel (the member's mailbox). Not counted as a second
/// factor: NIST SP 800-63B §5.1.3.3 does not accept email as out-of-band.
pub const AMR_MCA: &str = "mca";
/// A sign-in through an upstream provider (social sign-in). Tobira's own value, not one
/// of RFC 8176's: the upstream's own `amr` is not trusted, so all that is claimed is that
/// the member came through a federated identity (documented in the README).
pub const AMR_FED: &str = "fed";

/// The assurance levels Tobira reports (`acr`, advertised in discovery): one factor, and
/// two factors of which the second is not email.
pub const ACR_ONE: &str = "1";
pub const ACR_TWO: &str = "2";

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
