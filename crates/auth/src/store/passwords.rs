//! A member's change of their own password from the console: the new hash, the browser
//! session it is made from renewed, the other sessions and what hangs from them ended
//! when the member asks, and the notification mail, all in one transaction.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::AuditEvent;
use super::entity::{grants, password_resets, sessions, users};
use super::{MAIL_QUEUE, QueuedMail, StoreError, jobs, logouts};
use crate::domain::{UserId, UserStatus};

pub struct PasswordRepo<'c> {
    conn: &'c DatabaseConnection,
    /// Written with the next change (`audited`).
    audit: Option<AuditEvent>,
}

/// What a member's password change writes.
pub struct PasswordChange {
    pub user: UserId,
    /// The stored hash the member's current password was verified against: the change is
    /// made only while it is still the stored one, so that of two changes made at once
    /// with the same current password only one goes through.
    pub verified_hash: String,
    pub new_hash: String,
    /// The browser session the change is made from: it stays signed in, with a new
    /// cookie secret (the hash of it here), so that a copy of its cookie taken before the
    /// change is worthless after it.
    pub session: Uuid,
    pub session_secret_hash: String,
    /// End every other session of the account and revoke every grant that does not hang
    /// from `session`.
    pub sign_out_others: bool,
    pub mail: QueuedMail,
}

impl<'c> PasswordRepo<'c> {
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

    /// Changes the password of an active account; how many other sessions ended, or
    /// `None` (nothing changes) when the stored hash is no longer the verified one (a
    /// change or reset landed meanwhile) or the account is no longer active.
    ///
    /// Reset links mailed before are void: they were asked for while the old password was
    /// in force. With `sign_out_others`, the other sessions end with back-channel logouts
    /// to the clients they signed in to, and every grant not hanging from this session is
    /// revoked, offline ones too: a password changed after a scare must also stop refresh
    /// tokens held elsewhere. A grant whose session had ended before gets no logout now:
    /// its client heard of that session's end then, and a `sub`-only logout would also
    /// sign this browser out of that client.
    pub async fn change(
        &self,
        now: OffsetDateTime,
        change: PasswordChange,
    ) -> Result<Option<u64>, StoreError> {
        let user = change.user;
        let txn = self.conn.begin().await?;
        // Before the account's row, as an email confirmation locks them: one order, so
        // the two cannot deadlock on PostgreSQL (undone with the rest if nothing changes).
        super::email_changes::void_pending(&txn, user).await?;
        let changed = users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(change.new_hash))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(users::Column::Id.eq(user.0))
            .filter(users::Column::PasswordHash.eq(change.verified_hash))
            .filter(users::Column::Status.eq(UserStatus::Active.as_str()))
            .exec(&txn)
            .await?;
        if changed.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(None);
        }
        password_resets::Entity::delete_many()
            .filter(password_resets::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        // Whoever knew the old password may have had a device remembered.
        super::two_step::forget_devices(&txn, user, None).await?;
        sessions::Entity::update_many()
            .col_expr(
                sessions::Column::SecretHash,
                Expr::value(change.session_secret_hash),
            )
            .filter(sessions::Column::Id.eq(change.session))
            .filter(sessions::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        let mut ended = 0;
        if change.sign_out_others {
            let others = Condition::all()
                .add(sessions::Column::UserId.eq(user.0))
                .add(sessions::Column::Id.ne(change.session));
            let ended_sessions = super::sessions::end_where(&txn, now, others).await?;
            // Queued before the grants are revoked: the logouts go to the clients that
            // hold a live grant of an ended session.
            logouts::for_ended_sessions(&txn, now, &ended_sessions).await?;
            grants::Entity::update_many()
                .col_expr(grants::Column::RevokedAt, Expr::value(now))
                .filter(grants::Column::UserId.eq(user.0))
                .filter(grants::Column::RevokedAt.is_null())
                .filter(
                    Condition::any()
                        .add(grants::Column::SessionId.is_null())
                        .add(grants::Column::SessionId.ne(change.session)),
                )
                .exec(&txn)
                .await?;
            ended = ended_sessions.len() as u64;
        }
        if let Some(event) = &self.audit {
            super::audit::insert(&txn, event).await?;
        }
        jobs::add(&txn, now, MAIL_QUEUE, change.mail.payload).await?;
        txn.commit().await?;
        Ok(Some(ended))
    }
}
