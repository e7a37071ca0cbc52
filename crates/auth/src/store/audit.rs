//! The audit log (see the `admin` migration): operators' record of security-relevant
//! changes. Written by `admin::audit`; kept `admin.audit_retention_days`.

use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use super::StoreError;
use super::entity::audit_events;

/// One recorded change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// UUIDv7: newer events have greater ids.
    pub id: Uuid,
    pub at: OffsetDateTime,
    /// `member`, `support` (the CLI), `client` (an admin API client) or `system`.
    pub actor_kind: String,
    /// The member's id, the operator's login name, the admin client's id; empty for `system`.
    pub actor: String,
    /// What happened, such as `user.freeze` or `client.secret_rotate`.
    pub action: String,
    /// `user`, `client`, `key` or empty.
    pub target_kind: String,
    pub target: String,
    /// The client address of the request, or empty (the CLI).
    pub ip: String,
    pub request_id: String,
    /// A JSON object with what else matters (never a secret).
    pub detail: serde_json::Value,
}

/// Which events a listing returns. Empty fields match everything.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// An exact action, or a prefix ending in `.` (`user.` is every action on accounts).
    pub action: Option<String>,
    pub target: Option<String>,
    /// Inclusive; in any offset (compared in UTC).
    pub since: Option<OffsetDateTime>,
    /// Exclusive; in any offset (compared in UTC).
    pub until: Option<OffsetDateTime>,
    /// Only events older than this one (the last of the previous page).
    pub before: Option<Uuid>,
}

pub struct AuditRepo<'c> {
    conn: &'c DatabaseConnection,
}

impl<'c> AuditRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    pub async fn record(&self, event: &AuditEvent) -> Result<(), StoreError> {
        insert(self.conn, event).await
    }

    /// Newest first, at most `limit`. Refused (`StoreError::Refused`) when a filter
    /// value holds a control character: no event holds one.
    pub async fn list(
        &self,
        filter: &AuditFilter,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        for (name, value) in [
            ("actor", &filter.actor),
            ("action", &filter.action),
            ("target", &filter.target),
        ] {
            if let Some(value) = value {
                refuse_control(name, value)?;
            }
        }
        let mut query = audit_events::Entity::find()
            .order_by_desc(audit_events::Column::Id)
            .limit(limit);
        if let Some(actor) = &filter.actor {
            query = query.filter(audit_events::Column::Actor.eq(actor.as_str()));
        }
        match filter.action.as_deref() {
            Some(prefix) if prefix.ends_with('.') => {
                query = query.filter(starts_with(audit_events::Column::Action, prefix));
            }
            Some(action) => query = query.filter(audit_events::Column::Action.eq(action)),
            None => {}
        }
        if let Some(target) = &filter.target {
            query = query.filter(audit_events::Column::Target.eq(target.as_str()));
        }
        // In UTC, as `insert` writes them: SQLite compares times as text, where
        // 09:00+09:00 sorts after 01:00Z although it is the same instant.
        if let Some(since) = filter.since {
            query = query.filter(audit_events::Column::At.gte(since.to_offset(UtcOffset::UTC)));
        }
        if let Some(until) = filter.until {
            query = query.filter(audit_events::Column::At.lt(until.to_offset(UtcOffset::UTC)));
        }
        if let Some(before) = filter.before {
            query = query.filter(audit_events::Column::Id.lt(before));
        }
        query
            .all(self.conn)
            .await?
            .into_iter()
            .map(|m| {
                Ok(AuditEvent {
                    detail: serde_json::from_str(&m.detail).map_err(|e| {
                        StoreError::Corrupt(format!("audit_events.detail of {}: {e}", m.id))
                    })?,
                    id: m.id,
                    at: m.at,
                    actor_kind: m.actor_kind,
                    actor: m.actor,
                    action: m.action,
                    target_kind: m.target_kind,
                    target: m.target,
                    ip: m.ip,
                    request_id: m.request_id,
                })
            })
            .collect()
    }

    /// Removes events older than `before`; how many.
    pub async fn purge(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let done = audit_events::Entity::delete_many()
            .filter(audit_events::Column::At.lt(before))
            .exec(self.conn)
            .await?;
        Ok(done.rows_affected)
    }
}

/// `column` starts with `prefix`, character for character. Not `LIKE`: `%`, `_` (as in
/// `client.secret_rotate`) and, on PostgreSQL, `\` are patterns there, so a filter
/// `user_.` would also match `users.…`; and SQLite's `LIKE` ignores case where
/// PostgreSQL's does not. Escaping would fix the first only; comparing the leading
/// characters fixes both, alike on both databases (`substr` counts characters on both).
fn starts_with(column: audit_events::Column, prefix: &str) -> Expr {
    // At most `MAX_FILTER` characters in practice; a longer prefix matches nothing.
    let length = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
    Expr::expr(
        Func::cust("substr")
            .arg(Expr::col(column))
            .arg(1)
            .arg(length),
    )
    .eq(prefix)
}

/// Refuses text with a control character where the audit log keeps or searches text:
/// nothing recorded should hold one (they would reach an operator's terminal), and
/// PostgreSQL fails on a NUL with an error that would surface as a server error.
fn refuse_control(name: &str, value: &str) -> Result<(), StoreError> {
    if value.chars().any(char::is_control) {
        return Err(StoreError::Refused(format!(
            "{name} must not contain control characters"
        )));
    }
    Ok(())
}

/// Records `event` on the caller's connection or transaction, so that a change and its
/// record are written together. Text is cut to its column; text with a control
/// character is refused, and with it the change (`detail` is JSON, which escapes them).
pub(super) async fn insert(
    conn: &impl sea_orm::ConnectionTrait,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    for (name, value) in [
        ("actor_kind", &event.actor_kind),
        ("actor", &event.actor),
        ("action", &event.action),
        ("target_kind", &event.target_kind),
        ("target", &event.target),
        ("ip", &event.ip),
        ("request_id", &event.request_id),
    ] {
        refuse_control(&format!("the audit event's {name}"), value)?;
    }
    let cut = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    audit_events::Entity::insert(audit_events::ActiveModel {
        id: Set(event.id),
        // In UTC, so that times compare as instants on SQLite too (see `list`).
        at: Set(event.at.to_offset(UtcOffset::UTC)),
        actor_kind: Set(cut(&event.actor_kind, 16)),
        actor: Set(cut(&event.actor, 200)),
        action: Set(cut(&event.action, 64)),
        target_kind: Set(cut(&event.target_kind, 16)),
        target: Set(cut(&event.target, 200)),
        ip: Set(cut(&event.ip, 64)),
        request_id: Set(cut(&event.request_id, 64)),
        detail: Set(event.detail.to_string()),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}
