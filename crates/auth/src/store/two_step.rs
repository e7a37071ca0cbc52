//! The second steps of an account (see the `two_step` migration): the authenticator-app
//! secret with the last time step it accepted, the email-code factor, the recovery codes
//! and the devices a member asked not to be asked again on. Every change to them writes
//! its history entry and its mail in the same transaction.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, TransactionTrait,
};
use time::OffsetDateTime;

use super::AuditEvent;
use super::entity::{email_factors, recovery_codes, remembered_devices, totp_factors};
use super::{LoginEvent, MAIL_QUEUE, QueuedMail, StoreError, jobs};
use crate::domain::UserId;

/// What an account has enrolled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Factors {
    pub totp: bool,
    pub email: bool,
    /// Recovery codes not used yet.
    pub recovery_left: u64,
}

impl Factors {
    /// Whether sign-in asks for a second step. Recovery codes alone are not a second
    /// step: they are the way back when the real one is lost.
    pub fn any(&self) -> bool {
        self.totp || self.email
    }
}

/// The authenticator-app secret as stored: encrypted, and the last step accepted.
#[derive(Clone, Debug)]
pub struct StoredTotp {
    pub secret_enc: String,
    pub last_step: i64,
}

/// A change to the factors, with what it causes: the history entry and the mail.
pub struct FactorChange {
    pub event: LoginEvent,
    pub mail: Option<QueuedMail>,
}

/// A second step an account can turn on and off on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Factor {
    /// An authenticator app.
    Totp,
    /// Codes by email.
    Email,
}

/// Recovery codes to store when a first factor is turned on (hashes only).
pub type CodeHashes = Vec<String>;

pub struct TwoStepRepo<'c> {
    conn: &'c DatabaseConnection,
    /// Written with the next change (`audited`).
    audit: Option<AuditEvent>,
}

/// Forgets every remembered device of the account but `keep` (the device hash of the
/// browser the change is made from, if any), on the caller's transaction: a password
/// change, a reset, "sign out all other devices" and any change to the factors.
pub(super) async fn forget_devices(
    conn: &impl ConnectionTrait,
    user: UserId,
    keep: Option<&str>,
) -> Result<(), StoreError> {
    let mut delete = remembered_devices::Entity::delete_many()
        .filter(remembered_devices::Column::UserId.eq(user.0));
    if let Some(device) = keep.filter(|d| !d.is_empty()) {
        delete = delete.filter(remembered_devices::Column::DeviceHash.ne(device));
    }
    delete.exec(conn).await?;
    Ok(())
}

async fn finish(
    txn: sea_orm::DatabaseTransaction,
    now: OffsetDateTime,
    change: FactorChange,
    audit: Option<&AuditEvent>,
) -> Result<(), StoreError> {
    super::history::insert(&txn, &change.event).await?;
    if let Some(event) = audit {
        super::audit::insert(&txn, event).await?;
    }
    if let Some(mail) = change.mail {
        jobs::add(&txn, now, MAIL_QUEUE, mail.payload).await?;
    }
    txn.commit().await?;
    Ok(())
}

async fn add_codes(
    conn: &impl ConnectionTrait,
    now: OffsetDateTime,
    user: UserId,
    codes: CodeHashes,
) -> Result<(), StoreError> {
    if codes.is_empty() {
        return Ok(());
    }
    // New codes replace any others: two first factors turned on at once (two tabs) must
    // not leave twenty codes that work.
    recovery_codes::Entity::delete_many()
        .filter(recovery_codes::Column::UserId.eq(user.0))
        .exec(conn)
        .await?;
    recovery_codes::Entity::insert_many(codes.into_iter().map(|hash| {
        recovery_codes::ActiveModel {
            code_hash: Set(hash),
            user_id: Set(user.0),
            used_at: Set(None),
            created_at: Set(now),
        }
    }))
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

impl<'c> TwoStepRepo<'c> {
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

    pub async fn factors(&self, user: UserId) -> Result<Factors, StoreError> {
        let totp = totp_factors::Entity::find_by_id(user.0)
            .one(self.conn)
            .await?
            .is_some();
        let email = email_factors::Entity::find_by_id(user.0)
            .one(self.conn)
            .await?
            .is_some();
        let recovery_left = recovery_codes::Entity::find()
            .filter(recovery_codes::Column::UserId.eq(user.0))
            .filter(recovery_codes::Column::UsedAt.is_null())
            .count(self.conn)
            .await?;
        Ok(Factors {
            totp,
            email,
            recovery_left,
        })
    }

    /// Whether sign-in asks the account for a second step (`Factors::any`), without
    /// counting recovery codes: every password sign-in asks this, most accounts have none.
    pub async fn enrolled(&self, user: UserId) -> Result<bool, StoreError> {
        if totp_factors::Entity::find_by_id(user.0)
            .one(self.conn)
            .await?
            .is_some()
        {
            return Ok(true);
        }
        Ok(email_factors::Entity::find_by_id(user.0)
            .one(self.conn)
            .await?
            .is_some())
    }

    pub async fn totp(&self, user: UserId) -> Result<Option<StoredTotp>, StoreError> {
        Ok(totp_factors::Entity::find_by_id(user.0)
            .one(self.conn)
            .await?
            .map(|m| StoredTotp {
                secret_enc: m.secret_enc,
                last_step: m.last_step,
            }))
    }

    /// Turns the authenticator app on (or replaces its secret), having accepted a first
    /// code at `totp.last_step`. `codes` are stored when the account had no recovery codes
    /// (a first factor); the remembered devices are forgotten but `keep`.
    pub async fn enable_totp(
        &self,
        now: OffsetDateTime,
        user: UserId,
        totp: StoredTotp,
        codes: CodeHashes,
        keep: Option<&str>,
        change: FactorChange,
    ) -> Result<(), StoreError> {
        let txn = self.conn.begin().await?;
        totp_factors::Entity::insert(totp_factors::ActiveModel {
            user_id: Set(user.0),
            secret_enc: Set(totp.secret_enc),
            last_step: Set(totp.last_step),
            created_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(totp_factors::Column::UserId)
                .update_columns([
                    totp_factors::Column::SecretEnc,
                    totp_factors::Column::LastStep,
                    totp_factors::Column::CreatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        add_codes(&txn, now, user, codes).await?;
        forget_devices(&txn, user, keep).await?;
        finish(txn, now, change, self.audit.as_ref()).await
    }

    /// Turns email codes on as a second step (nothing changes if already on).
    pub async fn enable_email(
        &self,
        now: OffsetDateTime,
        user: UserId,
        codes: CodeHashes,
        keep: Option<&str>,
        change: FactorChange,
    ) -> Result<(), StoreError> {
        let txn = self.conn.begin().await?;
        email_factors::Entity::insert(email_factors::ActiveModel {
            user_id: Set(user.0),
            created_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(email_factors::Column::UserId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        add_codes(&txn, now, user, codes).await?;
        forget_devices(&txn, user, keep).await?;
        finish(txn, now, change, self.audit.as_ref()).await
    }

    /// Turns one factor off. When no factor is left, the recovery codes and the
    /// remembered devices go too (two-step is off); otherwise the remembered devices but
    /// `keep`.
    pub async fn disable(
        &self,
        now: OffsetDateTime,
        user: UserId,
        factor: Factor,
        keep: Option<&str>,
        change: FactorChange,
    ) -> Result<(), StoreError> {
        let txn = self.conn.begin().await?;
        match factor {
            Factor::Totp => {
                totp_factors::Entity::delete_by_id(user.0)
                    .exec(&txn)
                    .await?
            }
            Factor::Email => {
                email_factors::Entity::delete_by_id(user.0)
                    .exec(&txn)
                    .await?
            }
        };
        after_removal(&txn, user, keep).await?;
        finish(txn, now, change, self.audit.as_ref()).await
    }

    /// Turns two-step off altogether: every factor, recovery code and remembered device
    /// (the member's "turn off", and support's `users reset-2fa`).
    pub async fn disable_all(
        &self,
        now: OffsetDateTime,
        user: UserId,
        change: FactorChange,
    ) -> Result<(), StoreError> {
        let txn = self.conn.begin().await?;
        totp_factors::Entity::delete_by_id(user.0)
            .exec(&txn)
            .await?;
        email_factors::Entity::delete_by_id(user.0)
            .exec(&txn)
            .await?;
        recovery_codes::Entity::delete_many()
            .filter(recovery_codes::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        forget_devices(&txn, user, None).await?;
        finish(txn, now, change, self.audit.as_ref()).await
    }

    /// Replaces every recovery code with `codes`.
    pub async fn replace_recovery_codes(
        &self,
        now: OffsetDateTime,
        user: UserId,
        codes: CodeHashes,
        change: FactorChange,
    ) -> Result<(), StoreError> {
        let txn = self.conn.begin().await?;
        recovery_codes::Entity::delete_many()
            .filter(recovery_codes::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        add_codes(&txn, now, user, codes).await?;
        finish(txn, now, change, self.audit.as_ref()).await
    }

    /// Accepts an authenticator code of time step `step`: only if no code of this step
    /// or a later one was accepted before (RFC 6238 §5.2: a code is accepted once), in one
    /// conditional write, so two replicas cannot both accept the same code.
    pub async fn accept_totp_step(&self, user: UserId, step: i64) -> Result<bool, StoreError> {
        let done = totp_factors::Entity::update_many()
            .col_expr(totp_factors::Column::LastStep, Expr::value(step))
            .filter(totp_factors::Column::UserId.eq(user.0))
            .filter(totp_factors::Column::LastStep.lt(step))
            .exec(self.conn)
            .await?;
        Ok(done.rows_affected == 1)
    }

    /// Spends a recovery code (its hash): true once, false ever after or for a code of
    /// another account.
    pub async fn use_recovery_code(
        &self,
        now: OffsetDateTime,
        user: UserId,
        code_hash: &str,
    ) -> Result<bool, StoreError> {
        let done = recovery_codes::Entity::update_many()
            .col_expr(recovery_codes::Column::UsedAt, Expr::value(now))
            .filter(recovery_codes::Column::CodeHash.eq(code_hash))
            .filter(recovery_codes::Column::UserId.eq(user.0))
            .filter(recovery_codes::Column::UsedAt.is_null())
            .exec(self.conn)
            .await?;
        Ok(done.rows_affected == 1)
    }

    /// Remembers this device for the account until `expires_at` (the secret's hash is
    /// what its cookie must present).
    pub async fn remember_device(
        &self,
        now: OffsetDateTime,
        user: UserId,
        device_hash: &str,
        secret_hash: String,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        remembered_devices::Entity::insert(remembered_devices::ActiveModel {
            secret_hash: Set(secret_hash),
            user_id: Set(user.0),
            device_hash: Set(device_hash.to_owned()),
            expires_at: Set(expires_at),
            created_at: Set(now),
        })
        .exec_without_returning(self.conn)
        .await?;
        Ok(())
    }

    /// Whether the cookie secret (its hash) remembers this device for this account now.
    pub async fn is_remembered(
        &self,
        now: OffsetDateTime,
        user: UserId,
        device_hash: &str,
        secret_hash: &str,
    ) -> Result<bool, StoreError> {
        if device_hash.is_empty() {
            return Ok(false);
        }
        Ok(
            remembered_devices::Entity::find_by_id(secret_hash.to_owned())
                .one(self.conn)
                .await?
                .is_some_and(|m| {
                    m.user_id == user.0 && m.device_hash == device_hash && m.expires_at > now
                }),
        )
    }

    /// Forgets the account's remembered devices but `keep` (outside another change).
    pub async fn forget_devices(&self, user: UserId, keep: Option<&str>) -> Result<(), StoreError> {
        forget_devices(self.conn, user, keep).await
    }

    /// Removes remembered devices that expired before `before`; how many.
    pub async fn purge_expired(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let done = remembered_devices::Entity::delete_many()
            .filter(remembered_devices::Column::ExpiresAt.lt(before))
            .exec(self.conn)
            .await?;
        Ok(done.rows_affected)
    }
}

/// After a factor is removed: with none left, the recovery codes and every remembered
/// device go (two-step is off); otherwise the remembered devices but `keep`.
async fn after_removal(
    conn: &impl ConnectionTrait,
    user: UserId,
    keep: Option<&str>,
) -> Result<(), StoreError> {
    let left = totp_factors::Entity::find_by_id(user.0)
        .one(conn)
        .await?
        .is_some()
        || email_factors::Entity::find_by_id(user.0)
            .one(conn)
            .await?
            .is_some();
    if left {
        return forget_devices(conn, user, keep).await;
    }
    recovery_codes::Entity::delete_many()
        .filter(recovery_codes::Column::UserId.eq(user.0))
        .exec(conn)
        .await?;
    forget_devices(conn, user, None).await
}
