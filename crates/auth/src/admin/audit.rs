//! The audit log: operators' record of every security-relevant change (who, what, on
//! which account or client, when, from where, with the request id). Sign-ins are not
//! here: they stay in the members' history. The CLI (`tobira audit list`) and the admin
//! API (`GET /admin/api/v1/audit-events`) list it through [`list`].

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
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

/// The longest filter value: the widest column it is compared with (a longer one
/// matches nothing, and is more likely a mistake than a question).
pub const MAX_FILTER: usize = 200;

/// A listing's filter as an operator writes it, every value still text: the options of
/// `tobira audit list` and the query parameters of `GET /audit-events`, which both parse
/// it with [`FilterText::parse`], so a value one refuses the other refuses in the same
/// words.
#[derive(Clone, Copy, Debug, Default)]
pub struct FilterText<'a> {
    /// Who acted: a member's id, an operator's login name, an admin client's id.
    pub actor: Option<&'a str>,
    /// An action (`user.freeze`), or a prefix ending in `.` (`user.`).
    pub action: Option<&'a str>,
    /// What was changed: a member's id, a client's id, a key's kid.
    pub target: Option<&'a str>,
    /// Events at or after this time (RFC 3339).
    pub since: Option<&'a str>,
    /// Events before this time (RFC 3339).
    pub until: Option<&'a str>,
}

/// A filter value refused, by the name the CLI option and the query parameter share.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{0} must be 1 to {MAX_FILTER} characters")]
    Length(&'static str),
    /// Nothing recorded holds one (the store refuses them), and PostgreSQL refuses a NUL
    /// in text outright.
    #[error("{0} must not contain control characters")]
    Control(&'static str),
    #[error("{0} must be an RFC 3339 time, such as 2026-04-01T09:00:00Z")]
    Time(&'static str),
}

impl FilterText<'_> {
    /// The store's filter, or the first value at fault. Times keep their offset: the
    /// store compares them in UTC whatever offset they were given in.
    pub fn parse(&self) -> Result<AuditFilter, FilterError> {
        Ok(AuditFilter {
            actor: filter_text("actor", self.actor)?,
            action: filter_text("action", self.action)?,
            target: filter_text("target", self.target)?,
            since: filter_time("since", self.since)?,
            until: filter_time("until", self.until)?,
            before: None,
        })
    }
}

fn filter_text(name: &'static str, value: Option<&str>) -> Result<Option<String>, FilterError> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.is_empty() || value.chars().count() > MAX_FILTER {
        return Err(FilterError::Length(name));
    }
    if value.chars().any(char::is_control) {
        return Err(FilterError::Control(name));
    }
    Ok(Some(value.to_owned()))
}

fn filter_time(
    name: &'static str,
    value: Option<&str>,
) -> Result<Option<OffsetDateTime>, FilterError> {
    value
        .map(|v| OffsetDateTime::parse(v, &Rfc3339).map_err(|_| FilterError::Time(name)))
        .transpose()
}

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
