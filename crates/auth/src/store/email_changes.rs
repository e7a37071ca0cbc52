//! Email changes: the change waiting for the new address's link, the change itself (with
//! the undo link for the address it left), and the undo that gives the account back to
//! that address. Each step and its mail is one transaction; tokens are stored only as
//! their SHA-256.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    TransactionTrait,
};
use time::{Duration, OffsetDateTime};

use super::AuditEvent;
use super::entity::{email_changes, email_undos, users};
use super::{MAIL_QUEUE, QueuedMail, StoreError, jobs, on_unique_violation};
use crate::domain::{Email, UserId, UserStatus};

pub struct EmailChangeRepo<'c> {
    conn: &'c DatabaseConnection,
    /// Written with the next change (`audited`).
    audit: Option<AuditEvent>,
}

/// A link to record: its token's hash and until when it works.
pub struct NewLink {
    pub token_hash: String,
    pub expires_at: OffsetDateTime,
}

/// A change waiting for its new address's link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingChange {
    pub user: UserId,
    /// The new address.
    pub email: Email,
}

/// A live undo link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailUndo {
    pub user: UserId,
    /// The address the change left: what the undo restores, and where the link went.
    pub email: Email,
    /// The normalised address the change set.
    pub changed_to: String,
    pub created_at: OffsetDateTime,
}

/// What became of a change's confirmation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmed {
    Changed,
    /// The link was spent, replaced or expired meanwhile.
    LinkDead,
    /// The account is not active (frozen, deleted), must reset its password first, or
    /// its address changed since the caller looked: nothing changed.
    AccountUnavailable,
}

/// What became of an undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undone {
    Restored,
    LinkDead,
    /// The account is frozen or deleted: nothing changed.
    AccountUnavailable,
}

/// The account's row, when it may still change its address: active and verified.
/// (Frozen and deleted accounts keep what they have until support or the purge acts.)
fn changeable(user: UserId) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(users::Column::Id.eq(user.0))
        .add(users::Column::Status.eq(UserStatus::Active.as_str()))
        .add(users::Column::AwaitingVerification.eq(false))
}

/// The account's undo links (few: one per change within 7 days). Their order is decided
/// here, never by SQL: SQLite keeps times as RFC 3339 text, where `…:14.12Z` sorts after
/// `…:14.121Z` (the `Z` sorts above every digit), so `ORDER BY`/`>=` on them can be wrong
/// within a second.
async fn undos_of(
    conn: &impl ConnectionTrait,
    user: UserId,
) -> Result<Vec<email_undos::Model>, StoreError> {
    Ok(email_undos::Entity::find()
        .filter(email_undos::Column::UserId.eq(user.0))
        .all(conn)
        .await?)
}

/// When a new undo link of the account counts as made: now, but always after the
/// account's newest one, so that "made later" orders a chain of changes even when two
/// land within the clock's resolution (an undo voids the links made after its own).
async fn undo_made_at(
    conn: &impl ConnectionTrait,
    now: OffsetDateTime,
    user: UserId,
) -> Result<OffsetDateTime, StoreError> {
    let newest = undos_of(conn, user)
        .await?
        .into_iter()
        .map(|u| u.created_at)
        .max();
    Ok(match newest {
        Some(n) if n >= now => n + Duration::MILLISECOND,
        _ => now,
    })
}

impl<'c> EmailChangeRepo<'c> {
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

    /// Records the account's change to `email` (replacing any change still waiting: one
    /// link at a time) and queues the mail with its link to the new address.
    pub async fn start(
        &self,
        now: OffsetDateTime,
        user: UserId,
        email: &Email,
        link: NewLink,
        mail: QueuedMail,
    ) -> Result<(), StoreError> {
        let txn = self.conn.begin().await?;
        email_changes::Entity::delete_many()
            .filter(email_changes::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        email_changes::Entity::insert(email_changes::ActiveModel {
            token_hash: Set(link.token_hash),
            user_id: Set(user.0),
            email: Set(email.normalized().to_owned()),
            email_display: Set(email.display().to_owned()),
            expires_at: Set(link.expires_at),
            created_at: Set(now),
        })
        .exec_without_returning(&txn)
        .await?;
        if let Some(event) = &self.audit {
            super::audit::insert(&txn, event).await?;
        }
        jobs::add(&txn, now, MAIL_QUEUE, mail.payload).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The change a live confirmation link names.
    pub async fn lookup(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<PendingChange>, StoreError> {
        Ok(email_changes::Entity::find_by_id(token_hash.to_owned())
            .one(self.conn)
            .await?
            .filter(|c| c.expires_at > now)
            .map(|c| PendingChange {
                user: UserId(c.user_id),
                email: Email::from_stored(c.email, c.email_display),
            }))
    }

    /// Spends the confirmation link and moves the account from `from` to the change's
    /// address (verified: the link proved the mailbox); other waiting changes die, and
    /// `undo` is recorded for `from` with `mail` (which carries its link). `EmailTaken`
    /// (nothing changes, the link stays live) when a live account has the address.
    pub async fn confirm(
        &self,
        now: OffsetDateTime,
        token_hash: &str,
        change: &PendingChange,
        from: &Email,
        undo: NewLink,
        mail: QueuedMail,
    ) -> Result<Confirmed, StoreError> {
        let user = change.user;
        let txn = self.conn.begin().await?;
        let spent = email_changes::Entity::delete_many()
            .filter(email_changes::Column::TokenHash.eq(token_hash))
            .filter(email_changes::Column::UserId.eq(user.0))
            .filter(email_changes::Column::ExpiresAt.gt(now))
            .exec(&txn)
            .await?;
        if spent.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(Confirmed::LinkDead);
        }
        release_from_unverified(&txn, user, &change.email).await?;
        // Only from the address the old one's mail names, so that the undo link goes to
        // the address the change really left.
        let moved = users::Entity::update_many()
            .col_expr(users::Column::Email, Expr::value(change.email.normalized()))
            .col_expr(
                users::Column::EmailDisplay,
                Expr::value(change.email.display()),
            )
            .col_expr(users::Column::EmailVerified, Expr::value(true))
            // The member proved the new address: an account a provider made with an
            // unverified one now has a verified address of its own, and a later reset
            // there must not remove the member's own ways in (`store::links`).
            .col_expr(users::Column::FederatedUnverified, Expr::value(false))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(changeable(user))
            .filter(users::Column::ResetRequired.eq(false))
            .filter(users::Column::Email.eq(from.normalized()))
            .exec(&txn)
            .await
            .map_err(|e| on_unique_violation(e, StoreError::EmailTaken))?;
        if moved.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(Confirmed::AccountUnavailable);
        }
        email_changes::Entity::delete_many()
            .filter(email_changes::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        let made_at = undo_made_at(&txn, now, user).await?;
        email_undos::Entity::insert(email_undos::ActiveModel {
            token_hash: Set(undo.token_hash),
            user_id: Set(user.0),
            email: Set(from.normalized().to_owned()),
            email_display: Set(from.display().to_owned()),
            changed_to: Set(change.email.normalized().to_owned()),
            expires_at: Set(undo.expires_at),
            created_at: Set(made_at),
        })
        .exec_without_returning(&txn)
        .await?;
        if let Some(event) = &self.audit {
            super::audit::insert(&txn, event).await?;
        }
        jobs::add(&txn, now, MAIL_QUEUE, mail.payload).await?;
        txn.commit().await?;
        Ok(Confirmed::Changed)
    }

    /// Until when the account has an undo link that works (the latest expiry of its live
    /// undo links), if it has one: while it does, the old address's owner may still take
    /// the account back, so the account must not be deleted from under them.
    pub async fn undo_open_until(
        &self,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        Ok(undos_of(self.conn, user)
            .await?
            .into_iter()
            .map(|u| u.expires_at)
            .filter(|at| *at > now)
            .max())
    }

    /// Voids the account's change still waiting for its link (the member signed other
    /// browsers out: one of them may have asked for it).
    pub async fn void(&self, user: UserId) -> Result<(), StoreError> {
        void_pending(self.conn, user).await
    }

    /// The undo a live undo link names.
    pub async fn lookup_undo(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<EmailUndo>, StoreError> {
        Ok(email_undos::Entity::find_by_id(token_hash.to_owned())
            .one(self.conn)
            .await?
            .filter(|u| u.expires_at > now)
            .map(|u| EmailUndo {
                user: UserId(u.user_id),
                email: Email::from_stored(u.email, u.email_display),
                changed_to: u.changed_to,
                created_at: u.created_at,
            }))
    }

    /// Spends the undo link and gives the account back to `undo.email`, whatever it was
    /// changed to since: the address is verified again and the account needs a password
    /// reset before it signs in (whoever changed it may know the password). Every
    /// session, grant and refresh token ends with back-channel logouts; waiting changes
    /// die, and so do the undo links made after this one (they would give the account
    /// back to the addresses it is taken from); `reset` is recorded (replacing older
    /// reset links) and `mail` carries it to the restored address. `EmailTaken` (nothing
    /// changes, the link stays live) when another live account has the address now.
    ///
    /// Undo links made before this one stay: an earlier address is the owner's more
    /// surely than a later one, so an undo from an address the account moved to cannot
    /// take the owner's undo away.
    pub async fn undo(
        &self,
        now: OffsetDateTime,
        token_hash: &str,
        undo: &EmailUndo,
        reset: NewLink,
        mail: QueuedMail,
    ) -> Result<Undone, StoreError> {
        let user = undo.user;
        let txn = self.conn.begin().await?;
        let spent = email_undos::Entity::delete_many()
            .filter(email_undos::Column::TokenHash.eq(token_hash))
            .filter(email_undos::Column::UserId.eq(user.0))
            .filter(email_undos::Column::ExpiresAt.gt(now))
            .exec(&txn)
            .await?;
        if spent.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(Undone::LinkDead);
        }
        // The waiting change first, as a confirmation locks them (one order: no deadlock
        // on PostgreSQL); undone with the rest if the address cannot be restored.
        email_changes::Entity::delete_many()
            .filter(email_changes::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        release_from_unverified(&txn, user, &undo.email).await?;
        let restored = users::Entity::update_many()
            .col_expr(users::Column::Email, Expr::value(undo.email.normalized()))
            .col_expr(
                users::Column::EmailDisplay,
                Expr::value(undo.email.display()),
            )
            .col_expr(users::Column::EmailVerified, Expr::value(true))
            .col_expr(users::Column::ResetRequired, Expr::value(true))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(changeable(user))
            .exec(&txn)
            .await
            .map_err(|e| on_unique_violation(e, StoreError::EmailTaken))?;
        if restored.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(Undone::AccountUnavailable);
        }
        let later: Vec<String> = undos_of(&txn, user)
            .await?
            .into_iter()
            .filter(|u| u.created_at >= undo.created_at)
            .map(|u| u.token_hash)
            .collect();
        email_undos::Entity::delete_many()
            .filter(email_undos::Column::TokenHash.is_in(later))
            .exec(&txn)
            .await?;
        // The owner takes the account back: every way in whoever moved it away could have
        // added goes (linked providers, passkeys, second steps, remembered devices,
        // sessions), and the reset sets a new password (its mail says so).
        super::links::remove_ways_in(&txn, now, user).await?;
        super::resets::replace(&txn, now, user, reset.token_hash, reset.expires_at).await?;
        if let Some(event) = &self.audit {
            super::audit::insert(&txn, event).await?;
        }
        jobs::add(&txn, now, MAIL_QUEUE, mail.payload).await?;
        txn.commit().await?;
        Ok(Undone::Restored)
    }
}

/// Removes a sign-up that never verified `email` (another row than `user`'s): whoever
/// proves the mailbox now (the confirmation link, or the owner's undo) wins over it, or
/// someone could sign up with the owner's old address right after taking the account
/// over and so keep the undo from ever working.
async fn release_from_unverified(
    conn: &impl ConnectionTrait,
    user: UserId,
    email: &Email,
) -> Result<(), StoreError> {
    users::Entity::delete_many()
        .filter(users::Column::Email.eq(email.normalized()))
        .filter(users::Column::AwaitingVerification.eq(true))
        .filter(users::Column::Status.eq(UserStatus::Active.as_str()))
        .filter(users::Column::Id.ne(user.0))
        .exec(conn)
        .await?;
    Ok(())
}

/// Voids the account's email change still waiting for its link: a password change, a
/// reset, a freeze or support's sign-out is a moment to stop anything a session started
/// (whoever held the session may have asked to move the account to their own address).
pub(super) async fn void_pending(
    conn: &impl ConnectionTrait,
    user: UserId,
) -> Result<(), StoreError> {
    email_changes::Entity::delete_many()
        .filter(email_changes::Column::UserId.eq(user.0))
        .exec(conn)
        .await?;
    Ok(())
}
