//! Back-channel logouts from the OP: the logout tokens already acted on (by the hash of
//! their `jti`, until a replay could no longer pass validation anyway), and the sessions
//! each one ends. Recording the token and ending its sessions is one transaction, so a
//! token is either spent with its sessions gone or not spent at all, on every replica.

use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, TransactionTrait,
};
use time::OffsetDateTime;

use super::PRUNE_BATCH;
use super::entity::logout_tokens;
use super::sessions::end_matching;
use crate::state::hash;

/// Which marketplace sessions a logout token ends (Back-Channel Logout §2.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ends {
    /// The sessions started from the OP session `sid`; with `sub`, only the member's.
    OpSession { sid: String, sub: Option<String> },
    /// Every session of the member whose OP subject is `sub`.
    Member { sub: String },
}

/// A validated logout token, as far as the store is concerned.
pub struct Logout<'a> {
    /// The OP the member belongs to (members are keyed by issuer and `sub`).
    pub issuer: &'a str,
    pub jti: &'a str,
    /// Until then a replay of the token could pass every other check.
    pub remember_until: OffsetDateTime,
    pub ends: &'a Ends,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The token was new: this many sessions ended (none is a valid answer too).
    Ended(u64),
    /// The token's `jti` was already spent: nothing changed.
    Replayed,
}

pub struct LogoutRepo<'c> {
    conn: &'c DatabaseConnection,
}

impl<'c> LogoutRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Spends the token's `jti` and ends the sessions it names, in one transaction.
    /// Two replicas given the same token at once both insert the same key: the second
    /// waits for the first to commit, inserts nothing, and answers `Replayed`.
    pub async fn accept(&self, now: OffsetDateTime, logout: Logout<'_>) -> Result<Outcome, DbErr> {
        let txn = self.conn.begin().await?;
        prune(&txn, now).await?;
        // ON CONFLICT DO NOTHING rather than catching the unique violation: on
        // PostgreSQL an error would abort the whole transaction.
        let inserted = logout_tokens::Entity::insert(logout_tokens::ActiveModel {
            jti_hash: Set(hash(logout.jti)),
            expires_at: Set(logout.remember_until),
        })
        .on_conflict(
            OnConflict::column(logout_tokens::Column::JtiHash)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        if inserted == 0 {
            txn.rollback().await?;
            return Ok(Outcome::Replayed);
        }
        let ended = end_matching(&txn, logout.issuer, logout.ends).await?;
        txn.commit().await?;
        Ok(Outcome::Ended(ended))
    }

    /// Forgets up to one batch of tokens that could no longer be replayed; returns how
    /// many went.
    pub async fn prune(&self, now: OffsetDateTime) -> Result<u64, DbErr> {
        prune(self.conn, now).await
    }
}

async fn prune(conn: &impl ConnectionTrait, now: OffsetDateTime) -> Result<u64, DbErr> {
    let expired = Query::select()
        .column(logout_tokens::Column::JtiHash)
        .from(logout_tokens::Entity)
        .and_where(logout_tokens::Column::ExpiresAt.lte(now))
        .limit(PRUNE_BATCH)
        .to_owned();
    let done = logout_tokens::Entity::delete_many()
        .filter(logout_tokens::Column::JtiHash.in_subquery(expired))
        .exec(conn)
        .await?;
    Ok(done.rows_affected)
}
