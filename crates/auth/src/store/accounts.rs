//! What happens to a whole account: its creation by support, support's freeze and
//! unfreeze, signing out everywhere, deletion (with the re-registration block of its
//! address) and the purge of a deleted account's personal data. Each change and
//! everything it causes (sessions ended, grants revoked, back-channel logouts, mail
//! queued and its audit record) is one transaction.

use std::collections::BTreeSet;

use rand::CryptoRng;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QuerySelect, QueryTrait, TransactionTrait,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::entity::{
    consents, email_changes, email_factors, email_undos, email_verifications, federated_links,
    grants, known_devices, login_events, passkeys, password_resets, recovery_codes, refresh_tokens,
    remembered_devices, reregistration_blocks, sessions, totp_factors, users,
};
use super::users::{NewUser, new_row, to_user};
use super::{AuditEvent, MAIL_QUEUE, QueuedMail, StoreError, jobs, logouts, on_unique_violation};
use crate::clock::Clock;
use crate::domain::{User, UserId, UserStatus};

/// Accounts purged per query (each in its own transaction).
const PURGE_BATCH: u64 = 500;

pub struct AccountRepo<'c> {
    conn: &'c DatabaseConnection,
}

/// Held back from signing up again: a keyed hash of the normalised address (never the
/// address) and until when.
pub struct ReregistrationBlock {
    pub email_digest: String,
    pub until: OffsetDateTime,
}

/// Ends every session of the account, revokes every grant (offline ones too: refresh
/// tokens die with them) and queues a back-channel logout to every client that held
/// one; how many sessions had not ended yet. Runs on the caller's transaction.
pub(super) async fn end_everything(
    conn: &impl ConnectionTrait,
    now: OffsetDateTime,
    user: UserId,
) -> Result<u64, StoreError> {
    let ended = super::sessions::end_where(conn, now, sessions::Column::UserId.eq(user.0)).await?;
    logouts::for_ended_sessions(conn, now, &ended).await?;
    // Grants no ended session covered (offline grants, grants of sessions that had ended
    // before): their clients hear of the account's end too.
    let ended_ids: Vec<Uuid> = ended.iter().map(|s| s.id).collect();
    let rest: Vec<(String, Option<Uuid>)> = grants::Entity::find()
        .select_only()
        .column(grants::Column::ClientId)
        .column(grants::Column::SessionId)
        .filter(grants::Column::UserId.eq(user.0))
        .filter(grants::Column::RevokedAt.is_null())
        .into_tuple()
        .all(conn)
        .await?;
    let rest: Vec<(String, Option<Uuid>)> = rest
        .into_iter()
        .filter(|(_, s)| !s.is_some_and(|s| ended_ids.contains(&s)))
        .collect();
    let clients: BTreeSet<&str> = rest.iter().map(|(c, _)| c.as_str()).collect();
    for client in clients {
        let session_ids: Vec<Uuid> = rest
            .iter()
            .filter(|(c, _)| c == client)
            .filter_map(|(_, s)| *s)
            .collect();
        let with_sid = super::sessions::sids(conn, session_ids, false).await?;
        logouts::for_removed_access(conn, now, user, client, &with_sid).await?;
    }
    grants::Entity::update_many()
        .col_expr(grants::Column::RevokedAt, Expr::value(now))
        .filter(grants::Column::UserId.eq(user.0))
        .filter(grants::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(ended.len() as u64)
}

/// Voids every link mailed for the account (reset, email change, undo).
pub(super) async fn void_links(
    conn: &impl ConnectionTrait,
    user: UserId,
) -> Result<(), StoreError> {
    password_resets::Entity::delete_many()
        .filter(password_resets::Column::UserId.eq(user.0))
        .exec(conn)
        .await?;
    email_changes::Entity::delete_many()
        .filter(email_changes::Column::UserId.eq(user.0))
        .exec(conn)
        .await?;
    email_undos::Entity::delete_many()
        .filter(email_undos::Column::UserId.eq(user.0))
        .exec(conn)
        .await?;
    Ok(())
}

impl<'c> AccountRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Creates an active account with the audit record `audit` makes of its id, in one
    /// transaction. `EmailTaken` (nothing written, nothing recorded) when a live account
    /// has the same normalised address: decided by the unique index, so two concurrent
    /// creations cannot both win.
    ///
    /// The ids, timestamps and the record are made before the returned future first
    /// runs, so the future does not hold the random source (a thread-local RNG is not
    /// `Send`).
    pub fn add(
        &self,
        clock: &Clock,
        rng: &mut impl CryptoRng,
        new: NewUser,
        audit: impl FnOnce(UserId) -> AuditEvent,
    ) -> impl Future<Output = Result<User, StoreError>> + Send + 'c {
        let row = new_row(clock, rng, new, UserStatus::Active);
        let event = row.id.clone().take().map(|id| audit(UserId(id)));
        let conn = self.conn;
        async move {
            // `new_row` always sets the id: this is never the answer.
            let event = event
                .ok_or_else(|| StoreError::Corrupt("a new account without an id".to_owned()))?;
            let txn = conn.begin().await?;
            let model = users::Entity::insert(row)
                .exec_with_returning(&txn)
                .await
                .map_err(|e| on_unique_violation(e, StoreError::EmailTaken))?;
            super::audit::insert(&txn, &event).await?;
            txn.commit().await?;
            to_user(model)
        }
    }

    /// Ends every session and grant of the account (with back-channel logouts), without
    /// changing the account; how many sessions were live. `mail` is queued with it, and
    /// the audit record `audit` makes of that count is written with it.
    pub async fn sign_out_everywhere(
        &self,
        now: OffsetDateTime,
        user: UserId,
        mail: Option<QueuedMail>,
        audit: impl FnOnce(u64) -> AuditEvent + Send,
    ) -> Result<u64, StoreError> {
        let txn = self.conn.begin().await?;
        let ended = end_everything(&txn, now, user).await?;
        super::email_changes::void_pending(&txn, user).await?;
        super::two_step::forget_devices(&txn, user, None).await?;
        if let Some(mail) = mail {
            jobs::add(&txn, now, MAIL_QUEUE, mail.payload).await?;
        }
        super::audit::insert(&txn, &audit(ended)).await?;
        txn.commit().await?;
        Ok(ended)
    }

    /// Queues a job for the job runner with its audit record, in one transaction: an
    /// unlock support asked for is recorded exactly when it is queued.
    pub async fn queue_recorded(
        &self,
        now: OffsetDateTime,
        queue: &str,
        payload: String,
        audit: &AuditEvent,
    ) -> Result<Uuid, StoreError> {
        let txn = self.conn.begin().await?;
        let id = jobs::add(&txn, now, queue, payload).await?;
        super::audit::insert(&txn, audit).await?;
        txn.commit().await?;
        Ok(id)
    }

    /// Freezes an active account: sign-in is refused from now on, every session, grant
    /// and refresh token ends, clients are told, the member is mailed. `false` (nothing
    /// changes, nothing is recorded) when the account is not active (already frozen,
    /// deleted, unverified).
    pub async fn freeze(
        &self,
        now: OffsetDateTime,
        user: UserId,
        reason: &str,
        mail: QueuedMail,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await?;
        // Before the account's row, as an email confirmation locks them (one order: no
        // deadlock on PostgreSQL); undone with the rest if nothing changes.
        super::email_changes::void_pending(&txn, user).await?;
        let changed = users::Entity::update_many()
            .col_expr(
                users::Column::Status,
                Expr::value(UserStatus::Frozen.as_str()),
            )
            .col_expr(users::Column::FrozenReason, Expr::value(reason))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(users::Column::Id.eq(user.0))
            .filter(users::Column::Status.eq(UserStatus::Active.as_str()))
            .filter(users::Column::AwaitingVerification.eq(false))
            .exec(&txn)
            .await?;
        if changed.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        end_everything(&txn, now, user).await?;
        password_resets::Entity::delete_many()
            .filter(password_resets::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        // A freeze may answer a stolen account: after it is lifted, no device skips the
        // second step on the strength of a choice made before.
        super::two_step::forget_devices(&txn, user, None).await?;
        jobs::add(&txn, now, MAIL_QUEUE, mail.payload).await?;
        super::audit::insert(&txn, audit).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Lifts a freeze. `false` (nothing changes, nothing is recorded) when the account is
    /// not frozen.
    pub async fn unfreeze(
        &self,
        now: OffsetDateTime,
        user: UserId,
        mail: QueuedMail,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await?;
        let changed = users::Entity::update_many()
            .col_expr(
                users::Column::Status,
                Expr::value(UserStatus::Active.as_str()),
            )
            .col_expr(users::Column::FrozenReason, Expr::value(None::<String>))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(users::Column::Id.eq(user.0))
            .filter(users::Column::Status.eq(UserStatus::Frozen.as_str()))
            .exec(&txn)
            .await?;
        if changed.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        jobs::add(&txn, now, MAIL_QUEUE, mail.payload).await?;
        super::audit::insert(&txn, audit).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Deletes an account (active, frozen or awaiting verification): sign-in is refused
    /// at once, every session, grant and token ends with back-channel logouts, every
    /// mailed link is void, no device skips the second step any more, the address is held back from re-registration until
    /// `block.until`, and `mail` confirms it. The row keeps its personal data until the
    /// purge; `audit` records it. `false` (nothing changes) when it was deleted already: a
    /// second submission deletes, mails and records nothing twice.
    pub async fn delete(
        &self,
        now: OffsetDateTime,
        user: UserId,
        block: ReregistrationBlock,
        mail: Option<QueuedMail>,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await?;
        let changed = users::Entity::update_many()
            .col_expr(
                users::Column::Status,
                Expr::value(UserStatus::Deleted.as_str()),
            )
            .col_expr(users::Column::DeletedAt, Expr::value(now))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(users::Column::Id.eq(user.0))
            .filter(users::Column::Status.ne(UserStatus::Deleted.as_str()))
            .exec(&txn)
            .await?;
        if changed.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        end_everything(&txn, now, user).await?;
        void_links(&txn, user).await?;
        super::two_step::forget_devices(&txn, user, None).await?;
        // The member's upstream tokens (Apple's) are revoked at the provider, as Apple
        // requires of an app whose member deletes their account; the links themselves
        // stay until the purge, like the rest of the personal data.
        super::links::revoke_tokens_of(&txn, now, user).await?;
        email_verifications::Entity::delete_many()
            .filter(email_verifications::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        // A later deletion of an account with the same address extends the block; one
        // that sets none (an address never verified) leaves an earlier block in force.
        if block.until > now {
            reregistration_blocks::Entity::delete_many()
                .filter(reregistration_blocks::Column::EmailDigest.eq(block.email_digest.as_str()))
                .exec(&txn)
                .await?;
            reregistration_blocks::Entity::insert(reregistration_blocks::ActiveModel {
                email_digest: Set(block.email_digest),
                until: Set(block.until),
                created_at: Set(now),
            })
            .exec_without_returning(&txn)
            .await?;
        }
        if let Some(mail) = mail {
            jobs::add(&txn, now, MAIL_QUEUE, mail.payload).await?;
        }
        super::audit::insert(&txn, audit).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Until when an address (by its keyed hash) is held back from signing up, if it is.
    pub async fn reregistration_block(
        &self,
        email_digest: &str,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        Ok(
            reregistration_blocks::Entity::find_by_id(email_digest.to_owned())
                .one(self.conn)
                .await?
                .map(|b| b.until)
                .filter(|until| *until > now),
        )
    }

    /// Purges the personal data of accounts deleted at or before `deleted_before`: the
    /// address, name and password hash are blanked, and history, devices, sessions,
    /// grants, consents, links and second steps removed. The row stays (without anything personal) so
    /// that its `sub` is never given to anyone else. Each account's purge is recorded by
    /// the event `audit` makes of its id, in that purge's transaction (an account another
    /// replica purged first is neither purged nor recorded twice). Also drops
    /// re-registration blocks that have run out. How many accounts were purged.
    pub async fn purge(
        &self,
        now: OffsetDateTime,
        deleted_before: OffsetDateTime,
        audit: impl Fn(UserId) -> AuditEvent + Send + Sync,
    ) -> Result<u64, StoreError> {
        let mut purged = 0;
        // In batches, until none is due: one pass must leave nothing behind however many
        // accounts were deleted that day.
        loop {
            let due: Vec<Uuid> = users::Entity::find()
                .select_only()
                .column(users::Column::Id)
                .filter(users::Column::Status.eq(UserStatus::Deleted.as_str()))
                .filter(users::Column::PurgedAt.is_null())
                .filter(users::Column::DeletedAt.lte(deleted_before))
                .limit(PURGE_BATCH)
                .into_tuple()
                .all(self.conn)
                .await?;
            if due.is_empty() {
                break;
            }
            for id in due {
                purged += self.purge_one(now, id, &audit(UserId(id))).await?;
            }
        }
        reregistration_blocks::Entity::delete_many()
            .filter(reregistration_blocks::Column::Until.lte(now))
            .exec(self.conn)
            .await?;
        Ok(purged)
    }

    /// Purges one deleted account in its own transaction with its record `audit`; 1 if
    /// it was not purged yet (0, and nothing recorded, if it was).
    async fn purge_one(
        &self,
        now: OffsetDateTime,
        id: Uuid,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError> {
        let txn = self.conn.begin().await?;
        let of_user = grants::Entity::find()
            .select_only()
            .column(grants::Column::Id)
            .filter(grants::Column::UserId.eq(id))
            .into_query();
        refresh_tokens::Entity::delete_many()
            .filter(refresh_tokens::Column::GrantId.in_subquery(of_user))
            .exec(&txn)
            .await?;
        delete_of_user(&txn, grants::Column::UserId, id).await?;
        delete_of_user(&txn, sessions::Column::UserId, id).await?;
        delete_of_user(&txn, consents::Column::UserId, id).await?;
        delete_of_user(&txn, known_devices::Column::UserId, id).await?;
        delete_of_user(&txn, login_events::Column::UserId, id).await?;
        delete_of_user(&txn, email_verifications::Column::UserId, id).await?;
        // The second steps: the authenticator secret, the recovery codes' hashes and the
        // remembered devices are the member's as much as the address is.
        delete_of_user(&txn, totp_factors::Column::UserId, id).await?;
        delete_of_user(&txn, email_factors::Column::UserId, id).await?;
        delete_of_user(&txn, recovery_codes::Column::UserId, id).await?;
        delete_of_user(&txn, remembered_devices::Column::UserId, id).await?;
        // Passkeys, and the handle that named the member to their authenticators.
        delete_of_user(&txn, passkeys::Column::UserId, id).await?;
        // The upstream identities it was linked to (their tokens were revoked at the
        // deletion).
        delete_of_user(&txn, federated_links::Column::UserId, id).await?;
        void_links(&txn, UserId(id)).await?;
        let blanked = users::Entity::update_many()
            .col_expr(users::Column::Email, Expr::value(""))
            .col_expr(users::Column::EmailDisplay, Expr::value(""))
            .col_expr(users::Column::DisplayName, Expr::value(""))
            .col_expr(users::Column::PasswordHash, Expr::value(None::<String>))
            .col_expr(users::Column::WebauthnHandle, Expr::value(None::<Uuid>))
            .col_expr(users::Column::FrozenReason, Expr::value(None::<String>))
            .col_expr(users::Column::PurgedAt, Expr::value(now))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(users::Column::Id.eq(id))
            .filter(users::Column::PurgedAt.is_null())
            .exec(&txn)
            .await?;
        if blanked.rows_affected != 1 {
            // Purged meanwhile (another replica's run): what it removed is gone either
            // way, and its record is that run's.
            txn.rollback().await?;
            return Ok(0);
        }
        super::audit::insert(&txn, audit).await?;
        txn.commit().await?;
        Ok(1)
    }

    /// Whether the account's personal data has been purged.
    pub async fn purged(&self, user: UserId) -> Result<bool, StoreError> {
        let at: Option<Option<OffsetDateTime>> = users::Entity::find_by_id(user.0)
            .select_only()
            .column(users::Column::PurgedAt)
            .into_tuple()
            .one(self.conn)
            .await?;
        Ok(at.flatten().is_some())
    }
}

/// Deletes the rows of `column`'s table that belong to the account `user` (`column` is
/// the table's user id).
async fn delete_of_user<C>(
    conn: &impl ConnectionTrait,
    column: C,
    user: Uuid,
) -> Result<(), StoreError>
where
    C: ColumnTrait,
    C::EntityName: EntityTrait<Column = C>,
{
    <C::EntityName as EntityTrait>::delete_many()
        .filter(column.eq(user))
        .exec(conn)
        .await?;
    Ok(())
}
