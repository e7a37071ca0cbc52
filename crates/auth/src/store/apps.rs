//! Connected apps: the clients that can act for a member now (a remembered consent, or a
//! grant that still has a usable token), and removing one's access.

use std::collections::BTreeMap;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::entity::{clients, consents, grants, refresh_tokens};
use super::logouts;
use super::{AuditEvent, StoreError};
use crate::domain::UserId;

/// A client with access to the account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectedApp {
    pub client_id: String,
    pub name: String,
    /// What it may see: the remembered consent and the scopes of its live grants, without
    /// repeats, in the order first granted.
    pub scopes: Vec<String>,
    /// Since the consent or the oldest live grant.
    pub since: OffsetDateTime,
    /// When tokens were last issued to it (a sign-in or a refresh).
    pub last_used: OffsetDateTime,
}

pub struct AppRepo<'c> {
    conn: &'c DatabaseConnection,
    /// Written with the next change (`audited`).
    audit: Option<AuditEvent>,
}

/// A grant of the account's, with the last time it issued a refresh token.
struct Live {
    client_id: String,
    scope: String,
    created_at: OffsetDateTime,
    last_used: OffsetDateTime,
}

impl<'c> AppRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn, audit: None }
    }

    /// Records `event` in the audit log with the change this repository makes next, in
    /// that change's transaction: a change and its record are written together, and
    /// nothing is recorded when nothing changes (a dead link, a refused removal).
    pub fn audited(mut self, event: AuditEvent) -> Self {
        self.audit = Some(event);
        self
    }

    /// The apps connected to the account, the most recently used first. A grant counts
    /// while it is not revoked and has a refresh token that can still be used or an
    /// access token that may still be (issued within `access_token_life`).
    pub async fn connected(
        &self,
        user: UserId,
        now: OffsetDateTime,
        access_token_life: Duration,
    ) -> Result<Vec<ConnectedApp>, StoreError> {
        use sea_orm::{Condition, QueryTrait};
        // Live refresh tokens of the account's grants first: old grants whose sessions
        // simply expired stay unrevoked in the table, and are never read.
        let of_account = grants::Entity::find()
            .select_only()
            .column(grants::Column::Id)
            .filter(grants::Column::UserId.eq(user.0))
            .filter(grants::Column::RevokedAt.is_null())
            .into_query();
        let live_tokens = || {
            refresh_tokens::Entity::find()
                .select_only()
                .column(refresh_tokens::Column::GrantId)
                .filter(refresh_tokens::Column::GrantId.in_subquery(of_account.clone()))
                .filter(refresh_tokens::Column::UsedAt.is_null())
                .filter(refresh_tokens::Column::ExpiresAt.gt(now))
        };
        let tokens: Vec<(Uuid, OffsetDateTime)> = live_tokens()
            .column(refresh_tokens::Column::CreatedAt)
            .into_tuple()
            .all(self.conn)
            .await?;
        let mut refreshed: BTreeMap<Uuid, OffsetDateTime> = BTreeMap::new();
        for (grant, at) in tokens {
            let last = refreshed.entry(grant).or_insert(at);
            *last = (*last).max(at);
        }
        let granted: Vec<(Uuid, String, String, OffsetDateTime)> = grants::Entity::find()
            .select_only()
            .column(grants::Column::Id)
            .column(grants::Column::ClientId)
            .column(grants::Column::Scope)
            .column(grants::Column::CreatedAt)
            .filter(grants::Column::UserId.eq(user.0))
            .filter(grants::Column::RevokedAt.is_null())
            .filter(
                Condition::any()
                    .add(grants::Column::CreatedAt.gt(now - access_token_life))
                    // The same tokens again as a subquery, not as a list of their
                    // grants' ids: a statement whose text grew with the account's
                    // grants was prepared (and cached by every connection) anew for
                    // each length, which the soak showed as memory and CPU that grew
                    // with every sign-in.
                    .add(grants::Column::Id.in_subquery(live_tokens().into_query())),
            )
            .into_tuple()
            .all(self.conn)
            .await?;
        let live: Vec<Live> = granted
            .into_iter()
            .filter_map(|(id, client_id, scope, created_at)| {
                let refresh = refreshed.get(&id).copied();
                (refresh.is_some() || now < created_at + access_token_life).then(|| Live {
                    client_id,
                    scope,
                    created_at,
                    last_used: refresh.map_or(created_at, |r| r.max(created_at)),
                })
            })
            .collect();
        let consents_rows: Vec<(String, String, OffsetDateTime, OffsetDateTime)> =
            consents::Entity::find()
                .select_only()
                .column(consents::Column::ClientId)
                .column(consents::Column::Scope)
                .column(consents::Column::CreatedAt)
                .column(consents::Column::UpdatedAt)
                .filter(consents::Column::UserId.eq(user.0))
                .into_tuple()
                .all(self.conn)
                .await?;

        let mut apps: BTreeMap<String, ConnectedApp> = BTreeMap::new();
        for (client_id, scope, created_at, updated_at) in consents_rows {
            apps.insert(
                client_id.clone(),
                ConnectedApp {
                    client_id,
                    name: String::new(),
                    scopes: words(&scope).collect(),
                    since: created_at,
                    last_used: updated_at,
                },
            );
        }
        let mut ordered = live;
        ordered.sort_by_key(|g| g.created_at);
        for g in ordered {
            let app = apps
                .entry(g.client_id.clone())
                .or_insert_with(|| ConnectedApp {
                    client_id: g.client_id.clone(),
                    name: String::new(),
                    scopes: Vec::new(),
                    since: g.created_at,
                    last_used: g.last_used,
                });
            app.since = app.since.min(g.created_at);
            app.last_used = app.last_used.max(g.last_used);
            // What the consent allows, and what live grants hold beyond it (offline
            // access is asked each time and never remembered).
            for s in words(&g.scope) {
                if !app.scopes.contains(&s) {
                    app.scopes.push(s);
                }
            }
        }
        if apps.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<(String, String)> = clients::Entity::find()
            .select_only()
            .column(clients::Column::ClientId)
            .column(clients::Column::Name)
            .filter(clients::Column::ClientId.is_in(apps.keys().cloned()))
            .into_tuple()
            .all(self.conn)
            .await?;
        let mut listed: Vec<ConnectedApp> = names
            .into_iter()
            .filter_map(|(id, name)| {
                apps.remove(&id).map(|mut app| {
                    app.name = name;
                    app
                })
            })
            .collect();
        listed.sort_by(|a, b| b.last_used.cmp(&a.last_used).then(a.name.cmp(&b.name)));
        Ok(listed)
    }

    /// Removes `client_id`'s access to the account in one transaction: its grants are
    /// revoked (their refresh and access tokens stop working), the consent is forgotten,
    /// and the client's back-channel logout is queued. `false` when the client had no
    /// access to remove (nothing changes then).
    pub async fn remove_access(
        &self,
        user: UserId,
        client_id: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await?;
        let of_client = || {
            grants::Entity::find()
                .filter(grants::Column::UserId.eq(user.0))
                .filter(grants::Column::ClientId.eq(client_id))
                .filter(grants::Column::RevokedAt.is_null())
        };
        let session_ids: Vec<Uuid> = of_client()
            .select_only()
            .column(grants::Column::SessionId)
            .filter(grants::Column::SessionId.is_not_null())
            .distinct()
            .into_tuple::<Option<Uuid>>()
            .all(&txn)
            .await?
            .into_iter()
            .flatten()
            .collect();
        let sessions = super::sessions::sids(&txn, session_ids, true).await?;
        let revoked = grants::Entity::update_many()
            .col_expr(grants::Column::RevokedAt, Expr::value(now))
            .filter(grants::Column::UserId.eq(user.0))
            .filter(grants::Column::ClientId.eq(client_id))
            .filter(grants::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        let forgotten = consents::Entity::delete_many()
            .filter(consents::Column::UserId.eq(user.0))
            .filter(consents::Column::ClientId.eq(client_id))
            .exec(&txn)
            .await?;
        if revoked.rows_affected == 0 && forgotten.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        logouts::for_removed_access(&txn, now, user, client_id, &sessions).await?;
        if let Some(event) = &self.audit {
            super::audit::insert(&txn, event).await?;
        }
        txn.commit().await?;
        Ok(true)
    }
}

fn words(scope: &str) -> impl Iterator<Item = String> + '_ {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}
