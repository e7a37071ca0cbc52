//! The audit log: operators' record of every security-relevant change (who, what, on
//! which account or client, when, from where, with the request id). Sign-ins are not
//! here: they stay in the members' history. The CLI (`tobira audit list`) and the admin
//! API (`GET /admin/api/v1/audit-events`) list it through [`list`].

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::{UserId, row_id};
use crate::store::{AuditEvent, AuditFilter, Db, StoreError};

/// Who made a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A member, in the account console.
    Member(UserId),
    /// Support or an operator at the `tobira` CLI, by login name.
    Support(String),
    /// An admin API client, by client_id.
    Client(String),
    /// Tobira itself (the key schedule, the purge job).
    System,
}

impl Actor {
    fn parts(&self) -> (&'static str, String) {
        match self {
            Self::Member(id) => ("member", id.0.to_string()),
            Self::Support(name) => ("support", name.clone()),
            Self::Client(id) => ("client", id.clone()),
            Self::System => ("system", String::new()),
        }
    }
}

/// Who is acting and from where: what every recorded change carries.
#[derive(Clone, Debug)]
pub struct Context {
    pub actor: Actor,
    /// The client address of the request; empty at the CLI.
    pub ip: String,
    pub request_id: String,
}

impl Context {
    /// The operator at the CLI, named by the login that ran it (`SUDO_USER` first: the
    /// person behind `sudo`), else `cli`.
    pub fn cli() -> Self {
        let name = ["SUDO_USER", "USER", "LOGNAME"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|v| !v.is_empty() && v.len() <= 64 && !v.chars().any(char::is_control))
            .unwrap_or_else(|| "cli".to_owned());
        Self {
            actor: Actor::Support(name),
            ip: String::new(),
            request_id: String::new(),
        }
    }

    pub fn system() -> Self {
        Self {
            actor: Actor::System,
            ip: String::new(),
            request_id: String::new(),
        }
    }
}

/// What a change was made to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    User(UserId),
    Client(String),
    Key(String),
    None,
}

impl Target {
    fn parts(&self) -> (&'static str, String) {
        match self {
            Self::User(id) => ("user", id.0.to_string()),
            Self::Client(id) => ("client", id.clone()),
            Self::Key(kid) => ("key", kid.clone()),
            Self::None => ("", String::new()),
        }
    }
}

/// Records one change. `detail` is a JSON object of what else matters; never a secret.
pub async fn record(
    db: &Db,
    clock: &Clock,
    ctx: &Context,
    action: &str,
    target: Target,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    db.audit()
        .record(&event(clock.now(), ctx, action, target, detail))
        .await
}

/// The row [`record`] writes, for repositories that write it in the transaction of the
/// change itself.
pub fn event(
    at: OffsetDateTime,
    ctx: &Context,
    action: &str,
    target: Target,
    detail: serde_json::Value,
) -> AuditEvent {
    let (actor_kind, actor) = ctx.actor.parts();
    let (target_kind, target) = target.parts();
    AuditEvent {
        id: row_id(at),
        at,
        actor_kind: actor_kind.to_owned(),
        actor,
        action: action.to_owned(),
        target_kind: target_kind.to_owned(),
        target,
        ip: ctx.ip.clone(),
        request_id: ctx.request_id.clone(),
        detail,
    }
}

/// An event as operators see it (CLI `--json`, admin API).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// `member`, `support`, `client` or `system`.
    pub actor_kind: String,
    pub actor: String,
    pub action: String,
    /// `user`, `client`, `key` or empty.
    pub target_kind: String,
    pub target: String,
    pub ip: String,
    pub request_id: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<AuditEvent> for AuditView {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor_kind: e.actor_kind,
            actor: e.actor,
            action: e.action,
            target_kind: e.target_kind,
            target: e.target,
            ip: e.ip,
            request_id: e.request_id,
            detail: e.detail,
        }
    }
}

/// The most events one page holds.
pub const MAX_PAGE: u64 = 200;

/// One page of events, newest first, and the cursor of the next (the id of its last
/// event) when there may be more.
pub async fn list(
    db: &Db,
    filter: &AuditFilter,
    limit: u64,
) -> Result<(Vec<AuditView>, Option<Uuid>), StoreError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let events = db.audit().list(filter, limit).await?;
    let next = (events.len() as u64 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok((events.into_iter().map(AuditView::from).collect(), next))
}

/// A member changing their own account (the console, the ways back in), from `ip`, in the
/// request `request_id`.
pub fn member(user: UserId, ip: String, request_id: String) -> Context {
    Context {
        actor: Actor::Member(user),
        ip,
        request_id,
    }
}
