//! Password resets: single-use tokens (stored as SHA-256), and the one transaction that
//! spends a token, sets the new password, ends every session and grant of the account,
//! and queues the "your password was changed" mail.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    TransactionTrait,
};
use time::OffsetDateTime;

use super::AuditEvent;
use super::entity::{grants, password_resets, sessions, users};
use super::{StoreError, jobs};
use crate::domain::UserId;

pub struct PasswordResetRepo<'c> {
    conn: &'c DatabaseConnection,
    /// Written with the next change (`audited`).
    audit: Option<AuditEvent>,
}

/// A mail to queue with a change, in the same transaction.
pub struct QueuedMail {
    pub payload: String,
}

pub const MAIL_QUEUE: &str = "mail";

/// Records a reset token for `user`, voiding older ones, on the caller's transaction
/// (a reset started with another change, like an email change's undo).
pub(super) async fn replace(
    conn: &impl ConnectionTrait,
    now: OffsetDateTime,
    user: UserId,
    token_hash: String,
    expires_at: OffsetDateTime,
) -> Result<(), StoreError> {
    password_resets::Entity::delete_many()
        .filter(password_resets::Column::UserId.eq(user.0))
        .exec(conn)
        .await?;
    password_resets::Entity::insert(password_resets::ActiveModel {
        token_hash: Set(token_hash),
        user_id: Set(user.0),
        expires_at: Set(expires_at),
        created_at: Set(now),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

impl<'c> PasswordResetRepo<'c> {
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

    /// Records a reset token for `user` (voiding older ones) and queues its mail.
    pub async fn start(
        &self,
        now: OffsetDateTime,
        user: UserId,
        token_hash: String,
        expires_at: OffsetDateTime,
        mail: QueuedMail,
    ) -> Result<(), StoreError> {
        let txn = self.conn.begin().await?;
        replace(&txn, now, user, token_hash, expires_at).await?;
        jobs::add(&txn, now, MAIL_QUEUE, mail.payload).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The account a live token resets.
    pub async fn lookup(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<UserId>, StoreError> {
        Ok(password_resets::Entity::find_by_id(token_hash.to_owned())
            .one(self.conn)
            .await?
            .filter(|r| r.expires_at > now)
            .map(|r| UserId(r.user_id)))
    }

    /// Spends the token and sets the password; every session and grant of the account
    /// ends (refresh tokens die with their grants) and `mail` is queued. An account a
    /// provider made without verifying its address also loses its links, passkeys and
    /// second steps, with a mail of its own. `false` when the
    /// token was spent, voided or expired meanwhile (nothing changes then).
    pub async fn complete(
        &self,
        now: OffsetDateTime,
        token_hash: &str,
        user: UserId,
        password_hash: String,
        mail: QueuedMail,
    ) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await?;
        let spent = password_resets::Entity::delete_many()
            .filter(password_resets::Column::TokenHash.eq(token_hash))
            .filter(password_resets::Column::UserId.eq(user.0))
            .filter(password_resets::Column::ExpiresAt.gt(now))
            .exec(&txn)
            .await?;
        if spent.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        password_resets::Entity::delete_many()
            .filter(password_resets::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        super::email_changes::void_pending(&txn, user).await?;
        super::two_step::forget_devices(&txn, user, None).await?;
        users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(password_hash))
            // The reset an undone email change asked for (`email_changes::undo`).
            .col_expr(users::Column::ResetRequired, Expr::value(false))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(users::Column::Id.eq(user.0))
            .exec(&txn)
            .await?;
        // The link proved the mailbox: an account a provider made without verifying the
        // address loses every way in it had before (the new password stays), and its
        // owner is told.
        super::links::first_verification(&txn, now, user).await?;
        let ended =
            super::sessions::end_where(&txn, now, sessions::Column::UserId.eq(user.0)).await?;
        super::logouts::for_ended_sessions(&txn, now, &ended).await?;
        grants::Entity::update_many()
            .col_expr(grants::Column::RevokedAt, Expr::value(now))
            .filter(grants::Column::UserId.eq(user.0))
            .filter(grants::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        if let Some(event) = &self.audit {
            super::audit::insert(&txn, event).await?;
        }
        jobs::add(&txn, now, MAIL_QUEUE, mail.payload).await?;
        txn.commit().await?;
        Ok(true)
    }
}
