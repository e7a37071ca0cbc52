//! Back-channel logouts to deliver (OpenID Connect Back-Channel Logout 1.0): jobs written
//! in the same transaction that ends a session or removes a client's access, so that a
//! logout is never lost and never sent for a change that did not commit. The job names
//! the client, the subject and the session; the token itself is signed when it is sent.

use std::collections::BTreeSet;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use super::entity::{clients, grants, users};
use super::jobs;
use crate::domain::UserId;

/// The job queue of logout tokens.
pub const BACKCHANNEL_QUEUE: &str = "backchannel";

/// One logout token to send: to `client_id`, about `sub`, and (when the logout is about
/// one browser session) that session's public `sid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logout {
    pub client_id: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl Logout {
    pub fn to_payload(&self) -> String {
        serde_json::to_string(self).expect("a logout serialises")
    }

    pub fn from_payload(payload: &str) -> Result<Self, String> {
        serde_json::from_str(payload).map_err(|e| format!("logout job payload: {e}"))
    }
}

/// A browser session that just ended: its row id and public `sid`.
#[derive(Clone, Debug)]
pub struct Ended {
    pub id: Uuid,
    pub sid: String,
    pub user_id: Uuid,
}

/// Queues a logout with `sub` and `sid` for every client with a back-channel logout URI
/// that holds a grant not yet revoked from one of the `ended` sessions (callers queue
/// before they revoke; an app whose access the member removed was told then); how many
/// were queued. Runs on the caller's transaction.
pub async fn for_ended_sessions(
    conn: &impl ConnectionTrait,
    now: OffsetDateTime,
    ended: &[Ended],
) -> Result<usize, StoreError> {
    if ended.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = ended.iter().map(|s| s.id).collect();
    let pairs: Vec<(Option<Uuid>, String)> = grants::Entity::find()
        .select_only()
        .column(grants::Column::SessionId)
        .column(grants::Column::ClientId)
        .distinct()
        .filter(grants::Column::SessionId.is_in(ids))
        .filter(grants::Column::RevokedAt.is_null())
        .into_tuple()
        .all(conn)
        .await?;
    let listening = listening_clients(conn, pairs.iter().map(|(_, c)| c.as_str())).await?;
    let mut queued = 0;
    let mut subs = Subjects::default();
    for (session, client_id) in pairs {
        let Some(session) = ended.iter().find(|s| Some(s.id) == session) else {
            continue;
        };
        if !listening.iter().any(|(c, _)| *c == client_id) {
            continue;
        }
        let logout = Logout {
            client_id,
            sub: subs.of(conn, session.user_id).await?,
            sid: Some(session.sid.clone()),
        };
        jobs::add(conn, now, BACKCHANNEL_QUEUE, logout.to_payload()).await?;
        queued += 1;
    }
    Ok(queued)
}

/// Queues the logout for a client whose access the member removed: `sub` alone, or, for a
/// client registered with `backchannel_logout_session_required`, `sub` and `sid` for each
/// session (not ended) holding one of `grant_ids`; how many were queued. Nothing for a
/// client without a back-channel logout URI. Runs on the caller's transaction.
pub async fn for_removed_access(
    conn: &impl ConnectionTrait,
    now: OffsetDateTime,
    user: UserId,
    client_id: &str,
    sessions: &[(Uuid, String)],
) -> Result<usize, StoreError> {
    let listening = listening_clients(conn, std::iter::once(client_id)).await?;
    let Some((_, session_required)) = listening.first() else {
        return Ok(0);
    };
    let sub = Subjects::default().of(conn, user.0).await?;
    let logouts: Vec<Logout> = if *session_required {
        let sids: BTreeSet<&str> = sessions.iter().map(|(_, sid)| sid.as_str()).collect();
        sids.into_iter()
            .map(|sid| Logout {
                client_id: client_id.to_owned(),
                sub: sub.clone(),
                sid: Some(sid.to_owned()),
            })
            .collect()
    } else {
        vec![Logout {
            client_id: client_id.to_owned(),
            sub,
            sid: None,
        }]
    };
    for logout in &logouts {
        jobs::add(conn, now, BACKCHANNEL_QUEUE, logout.to_payload()).await?;
    }
    Ok(logouts.len())
}

/// Of `client_ids`, those registered with a back-channel logout URI, with whether they
/// require `sid`.
async fn listening_clients<'a>(
    conn: &impl ConnectionTrait,
    client_ids: impl Iterator<Item = &'a str>,
) -> Result<Vec<(String, bool)>, StoreError> {
    let ids: BTreeSet<&str> = client_ids.collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(clients::Entity::find()
        .select_only()
        .column(clients::Column::ClientId)
        .column(clients::Column::BackchannelLogoutSessionRequired)
        .filter(clients::Column::ClientId.is_in(ids))
        .filter(clients::Column::BackchannelLogoutUri.is_not_null())
        .into_tuple()
        .all(conn)
        .await?)
}

/// Subjects looked up once per account within one change.
#[derive(Default)]
struct Subjects(Vec<(Uuid, String)>);

impl Subjects {
    async fn of(&mut self, conn: &impl ConnectionTrait, user: Uuid) -> Result<String, StoreError> {
        if let Some((_, sub)) = self.0.iter().find(|(u, _)| *u == user) {
            return Ok(sub.clone());
        }
        let sub: String = users::Entity::find_by_id(user)
            .select_only()
            .column(users::Column::Sub)
            .into_tuple()
            .one(conn)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("session of a missing account {user}")))?;
        self.0.push((user, sub.clone()));
        Ok(sub)
    }
}
