//! Sign-ups: unverified accounts and the links that verify them, each change written
//! with its mail and its audit record in one transaction.

use rand::CryptoRng;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait,
};
use time::OffsetDateTime;

use super::entity::{email_verifications, users};
use super::users::{NewUser, new_row};
use super::{AuditEvent, MAIL_QUEUE, QueuedMail, StoreError, jobs, on_unique_violation};
use crate::clock::Clock;
use crate::domain::{UserId, UserStatus};

/// A verification link to record (the token only as its hash).
pub struct NewVerification {
    pub token_hash: String,
    pub binding_hash: String,
    pub park: String,
    pub expires_at: OffsetDateTime,
}

/// A live verification link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub user: UserId,
    pub binding_hash: String,
    pub park: String,
}

pub struct SignupRepo<'c> {
    conn: &'c DatabaseConnection,
    /// Written with the next change (`audited`).
    audit: Option<AuditEvent>,
}

fn verification_row(
    now: OffsetDateTime,
    user: UserId,
    v: NewVerification,
) -> email_verifications::ActiveModel {
    email_verifications::ActiveModel {
        token_hash: Set(v.token_hash),
        user_id: Set(user.0),
        binding_hash: Set(v.binding_hash),
        park: Set(v.park),
        expires_at: Set(v.expires_at),
        created_at: Set(now),
    }
}

impl<'c> SignupRepo<'c> {
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

    /// A new unverified account, its link, its mail and the audit record `audit` makes
    /// of its id. `EmailTaken` (nothing written, nothing recorded) if the address was
    /// taken meanwhile.
    pub fn register(
        &self,
        clock: &Clock,
        rng: &mut impl CryptoRng,
        new: NewUser,
        verification: NewVerification,
        mail: QueuedMail,
        audit: impl FnOnce(UserId) -> AuditEvent,
    ) -> impl Future<Output = Result<UserId, StoreError>> + Send + 'c {
        let now = clock.now();
        // Made before the future runs: it must not hold the (thread-local) RNG.
        let row = new_row(clock, rng, new, UserStatus::Unverified);
        let event = row.id.clone().take().map(|id| audit(UserId(id)));
        let conn = self.conn;
        async move {
            // `new_row` always sets the id: this is never the answer.
            let event = event
                .ok_or_else(|| StoreError::Corrupt("a new account without an id".to_owned()))?;
            let txn = conn.begin().await?;
            let user = users::Entity::insert(row)
                .exec_with_returning(&txn)
                .await
                .map_err(|e| on_unique_violation(e, StoreError::EmailTaken))?;
            let id = UserId(user.id);
            email_verifications::Entity::insert(verification_row(now, id, verification))
                .exec_without_returning(&txn)
                .await?;
            jobs::add(&txn, now, MAIL_QUEUE, mail.payload).await?;
            super::audit::insert(&txn, &event).await?;
            txn.commit().await?;
            Ok(id)
        }
    }

    /// A sign-up again for an address whose account is still unverified: the new
    /// password replaces the old (an earlier sign-up by someone else holds nothing) and
    /// older links are void; recorded when `audited`. `false` (nothing recorded) if the
    /// account was verified meanwhile.
    pub async fn renew(
        &self,
        now: OffsetDateTime,
        user: UserId,
        password_hash: Option<String>,
        display_name: Option<String>,
        verification: NewVerification,
        mail: QueuedMail,
    ) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await?;
        let mut update = users::Entity::update_many()
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(users::Column::Id.eq(user.0))
            .filter(users::Column::AwaitingVerification.eq(true))
            .filter(users::Column::Status.eq(UserStatus::Active.as_str()));
        if let Some(hash) = password_hash {
            update = update.col_expr(users::Column::PasswordHash, Expr::value(hash));
        }
        if let Some(name) = display_name {
            update = update.col_expr(users::Column::DisplayName, Expr::value(name));
        }
        if update.exec(&txn).await?.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        email_verifications::Entity::delete_many()
            .filter(email_verifications::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        email_verifications::Entity::insert(verification_row(now, user, verification))
            .exec_without_returning(&txn)
            .await?;
        jobs::add(&txn, now, MAIL_QUEUE, mail.payload).await?;
        if let Some(event) = &self.audit {
            super::audit::insert(&txn, event).await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    pub async fn lookup(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Verification>, StoreError> {
        Ok(
            email_verifications::Entity::find_by_id(token_hash.to_owned())
                .one(self.conn)
                .await?
                .filter(|v| v.expires_at > now)
                .map(|v| Verification {
                    user: UserId(v.user_id),
                    binding_hash: v.binding_hash,
                    park: v.park,
                }),
        )
    }

    /// Spends the link and activates the account. `false` if the link was spent,
    /// voided or expired meanwhile.
    pub async fn verify(
        &self,
        now: OffsetDateTime,
        token_hash: &str,
        user: UserId,
    ) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await?;
        // The account's row before its links, in the order a confirmed email change
        // removes a sign-up that never verified (the row, then its links by cascade): two
        // orders could deadlock on PostgreSQL.
        let activated = users::Entity::update_many()
            .col_expr(users::Column::AwaitingVerification, Expr::value(false))
            .col_expr(users::Column::EmailVerified, Expr::value(true))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(users::Column::Id.eq(user.0))
            .filter(users::Column::AwaitingVerification.eq(true))
            .filter(users::Column::Status.eq(UserStatus::Active.as_str()))
            .exec(&txn)
            .await?;
        let spent = email_verifications::Entity::delete_many()
            .filter(email_verifications::Column::TokenHash.eq(token_hash))
            .filter(email_verifications::Column::UserId.eq(user.0))
            .filter(email_verifications::Column::ExpiresAt.gt(now))
            .exec(&txn)
            .await?;
        if spent.rows_affected != 1 || activated.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        email_verifications::Entity::delete_many()
            .filter(email_verifications::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        // An address verified through a link Tobira mailed: an account a provider made
        // without verifying it loses every earlier way in (a no-op for any other).
        super::links::first_verification(&txn, now, user).await?;
        if let Some(event) = &self.audit {
            super::audit::insert(&txn, event).await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Removes sign-ups not verified and not renewed since `before` (their links go with
    /// them). An account linked to a provider is never one: it has a way in that does not
    /// wait for the mail.
    pub async fn purge_unverified(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(users::Entity::delete_many()
            .filter(users::Column::AwaitingVerification.eq(true))
            .filter(users::Column::Status.eq(UserStatus::Active.as_str()))
            .filter(users::Column::Id.not_in_subquery(super::links::linked_users()))
            // Last signed up (or resent) before it: a fresh link keeps the account.
            .filter(users::Column::UpdatedAt.lt(before))
            .exec(self.conn)
            .await?
            .rows_affected)
    }
}
