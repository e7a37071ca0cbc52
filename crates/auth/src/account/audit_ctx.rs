//! Where a member's own change to their account came from, for the audit log: the client
//! address and the request id Tobira gave the request. The member is known only once the
//! session (or the link) is, so the extractor holds the origin and names the actor later.

use std::convert::Infallible;
use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use time::OffsetDateTime;

use crate::admin::audit::{self, Context, Target};
use crate::domain::UserId;
use crate::state::AppState;
use crate::store::AuditEvent;
use crate::web::client_ip::ClientAddr;

/// The header `startup::assign_request_id` sets on every request (its own id, never the
/// client's).
const REQUEST_ID: &str = "x-request-id";

/// The request id Tobira gave this request, or empty.
pub fn request_id_of(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// The origin of a member's change: client address and request id.
#[derive(Clone, Debug)]
pub struct AuditOrigin {
    pub ip: IpAddr,
    pub request_id: String,
}

impl AuditOrigin {
    /// The member `user` acting from here.
    pub fn member(&self, user: UserId) -> Context {
        audit::member(user, self.ip.to_string(), self.request_id.clone())
    }

    /// The audit row of the member's change `action` to their own account, for the
    /// store to write in the change's transaction. `detail` never holds an address, a
    /// password, a code, a token or a hash.
    pub fn event(
        &self,
        at: OffsetDateTime,
        user: UserId,
        action: &str,
        detail: serde_json::Value,
    ) -> AuditEvent {
        audit::event(at, &self.member(user), action, Target::User(user), detail)
    }

    /// Records a change that was made without a transaction of its own (the session
    /// store, the throttle), right after it succeeded. A failure is logged, not answered:
    /// the change is done, and telling the member it failed would be untrue.
    pub async fn record(
        &self,
        state: &AppState,
        user: UserId,
        action: &str,
        detail: serde_json::Value,
    ) {
        let ctx = self.member(user);
        let recorded = audit::record(
            &state.db,
            &state.clock,
            &ctx,
            action,
            Target::User(user),
            detail,
        )
        .await;
        if let Err(e) = recorded {
            tracing::error!(error = %e, user = %user.0, action, "cannot record an audit event");
        }
    }
}

impl FromRequestParts<AppState> for AuditOrigin {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ClientAddr(ip) = ClientAddr::from_request_parts(parts, state).await?;
        Ok(Self {
            ip,
            request_id: request_id_of(&parts.headers),
        })
    }
}
