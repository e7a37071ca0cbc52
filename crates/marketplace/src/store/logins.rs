//! Pending sign-ins: what the marketplace keeps between sending a browser to the OP and
//! its return (state, nonce, PKCE verifier, and the hash of the cookie that ties the
//! return to the same browser). Single use; expired ones are pruned in bounded batches
//! as new ones are added, since anyone can start a sign-in.

use sea_orm::sea_query::Query;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use time::{Duration, OffsetDateTime};

use super::PRUNE_BATCH;
use super::entity::login_states;

/// A sign-in must come back within this long (the OP's own sign-in transactions last
/// as long).
pub const LOGIN_LIFETIME: Duration = Duration::minutes(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub browser_hash: String,
    pub created_at: OffsetDateTime,
}

impl PendingLogin {
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        now < self.created_at + LOGIN_LIFETIME
    }
}

pub struct LoginRepo<'c> {
    conn: &'c DatabaseConnection,
}

impl<'c> LoginRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Records a sign-in in progress, after pruning a batch of expired ones.
    pub async fn add(&self, pending: PendingLogin) -> Result<(), DbErr> {
        self.prune(pending.created_at).await?;
        login_states::Entity::insert(login_states::ActiveModel {
            state: Set(pending.state),
            nonce: Set(pending.nonce),
            pkce_verifier: Set(pending.pkce_verifier),
            browser_hash: Set(pending.browser_hash),
            created_at: Set(pending.created_at),
        })
        .exec_without_returning(self.conn)
        .await?;
        Ok(())
    }

    /// Takes the pending sign-in for `state`: single use, the row is deleted by whoever
    /// reads it first, so a replayed callback finds nothing.
    pub async fn take(&self, state: &str) -> Result<Option<PendingLogin>, DbErr> {
        let mut rows = login_states::Entity::delete_many()
            .filter(login_states::Column::State.eq(state))
            .exec_with_returning(self.conn)
            .await?;
        Ok(rows.pop().map(|m| PendingLogin {
            state: m.state,
            nonce: m.nonce,
            pkce_verifier: m.pkce_verifier,
            browser_hash: m.browser_hash,
            created_at: m.created_at,
        }))
    }

    /// Deletes up to one batch of expired pending sign-ins; returns how many went.
    pub async fn prune(&self, now: OffsetDateTime) -> Result<u64, DbErr> {
        let expired = Query::select()
            .column(login_states::Column::State)
            .from(login_states::Entity)
            .and_where(login_states::Column::CreatedAt.lte(now - LOGIN_LIFETIME))
            .limit(PRUNE_BATCH)
            .to_owned();
        let done = login_states::Entity::delete_many()
            .filter(login_states::Column::State.in_subquery(expired))
            .exec(self.conn)
            .await?;
        Ok(done.rows_affected)
    }
}
