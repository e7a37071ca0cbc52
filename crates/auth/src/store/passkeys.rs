//! A member's passkeys (see the `passkeys` migration) and their WebAuthn user handle.
//! The credential itself is webauthn-rs's `Passkey` as JSON: this module stores it and
//! never looks inside. Adding and removing write the history line and the mail in the
//! same transaction, and every change its audit record; the last way in to an account is
//! never removed.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, TransactionTrait,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::entity::{passkeys, users};
use super::links::WayIn;
use super::{AuditEvent, FactorChange, MAIL_QUEUE, StoreError, jobs, on_unique_violation};
use crate::domain::UserId;

/// Longest name a member may give a passkey (characters).
pub const NAME_MAX: usize = 64;
/// Passkeys an account may have: each is listed in every second-step ceremony and in the
/// registration's exclusion list, so the number must be bounded.
pub const PER_ACCOUNT: u64 = 25;

/// One passkey as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPasskey {
    /// The credential id, base64url.
    pub cred_id: String,
    pub user: UserId,
    pub name: String,
    /// webauthn-rs's `Passkey`, JSON.
    pub credential: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

/// What a removal did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasskeyRemoval {
    Removed,
    /// No such passkey of this member.
    NotFound,
    /// It is the account's only way in (no password, no other passkey, no link): kept.
    LastWayIn,
}

fn to_domain(m: passkeys::Model) -> StoredPasskey {
    StoredPasskey {
        cred_id: m.cred_id,
        user: UserId(m.user_id),
        name: m.name,
        credential: m.credential,
        created_at: m.created_at,
        last_used_at: m.last_used_at,
    }
}

pub struct PasskeyRepo<'c> {
    conn: &'c DatabaseConnection,
    /// Written with the next change (`audited`).
    audit: Option<AuditEvent>,
}

impl<'c> PasskeyRepo<'c> {
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

    /// The member's WebAuthn user handle, made (random) the first time it is asked for.
    /// Two first registrations at once agree on one handle (the write is conditional).
    pub async fn handle(&self, user: UserId) -> Result<Option<Uuid>, StoreError> {
        let read = || async {
            Ok::<_, StoreError>(
                users::Entity::find_by_id(user.0)
                    .one(self.conn)
                    .await?
                    .map(|u| u.webauthn_handle),
            )
        };
        match read().await? {
            None => return Ok(None),
            Some(Some(handle)) => return Ok(Some(handle)),
            Some(None) => {}
        }
        users::Entity::update_many()
            .col_expr(users::Column::WebauthnHandle, Expr::value(Uuid::new_v4()))
            .filter(users::Column::Id.eq(user.0))
            .filter(users::Column::WebauthnHandle.is_null())
            .exec(self.conn)
            .await?;
        Ok(read().await?.flatten())
    }

    /// The account a user handle belongs to.
    pub async fn user_by_handle(&self, handle: Uuid) -> Result<Option<UserId>, StoreError> {
        Ok(users::Entity::find()
            .filter(users::Column::WebauthnHandle.eq(handle))
            .one(self.conn)
            .await?
            .map(|u| UserId(u.id)))
    }

    /// The member's passkeys, oldest first.
    pub async fn list(&self, user: UserId) -> Result<Vec<StoredPasskey>, StoreError> {
        Ok(passkeys::Entity::find()
            .filter(passkeys::Column::UserId.eq(user.0))
            .order_by_asc(passkeys::Column::CreatedAt)
            .order_by_asc(passkeys::Column::CredId)
            .all(self.conn)
            .await?
            .into_iter()
            .map(to_domain)
            .collect())
    }

    pub async fn count(&self, user: UserId) -> Result<u64, StoreError> {
        Ok(passkeys::Entity::find()
            .filter(passkeys::Column::UserId.eq(user.0))
            .count(self.conn)
            .await?)
    }

    pub async fn find(&self, cred_id: &str) -> Result<Option<StoredPasskey>, StoreError> {
        Ok(passkeys::Entity::find_by_id(cred_id.to_owned())
            .one(self.conn)
            .await?
            .map(to_domain))
    }

    /// Adds a passkey with its history line and mail. `PasskeyTaken` when the credential
    /// id is registered already (to any account); `TooManyPasskeys` beyond `PER_ACCOUNT`.
    pub async fn add(
        &self,
        now: OffsetDateTime,
        passkey: StoredPasskey,
        change: FactorChange,
    ) -> Result<(), StoreError> {
        let txn = self.conn.begin().await?;
        // Takes the account's row first (a no-op write): two registrations at once queue
        // up behind it, so the count below holds until the insert; and on SQLite a
        // transaction that read before writing would fail as soon as another write
        // committed in between, where one that writes first waits its turn.
        users::Entity::update_many()
            .col_expr(
                users::Column::UpdatedAt,
                Expr::col(users::Column::UpdatedAt),
            )
            .filter(users::Column::Id.eq(passkey.user.0))
            .exec(&txn)
            .await?;
        let held = passkeys::Entity::find()
            .filter(passkeys::Column::UserId.eq(passkey.user.0))
            .count(&txn)
            .await?;
        if held >= PER_ACCOUNT {
            txn.rollback().await?;
            return Err(StoreError::TooManyPasskeys);
        }
        passkeys::Entity::insert(passkeys::ActiveModel {
            cred_id: Set(passkey.cred_id),
            user_id: Set(passkey.user.0),
            name: Set(passkey.name),
            credential: Set(passkey.credential),
            created_at: Set(now),
            last_used_at: Set(None),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(|e| on_unique_violation(e, StoreError::PasskeyTaken))?;
        super::history::insert(&txn, &change.event).await?;
        if let Some(event) = &self.audit {
            super::audit::insert(&txn, event).await?;
        }
        if let Some(mail) = change.mail {
            jobs::add(&txn, now, MAIL_QUEUE, mail.payload).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Renames a passkey of the member, recorded when `audited`, in one transaction;
    /// false (nothing changed, nothing recorded) when it is not theirs (or gone).
    pub async fn rename(
        &self,
        user: UserId,
        cred_id: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await?;
        let done = passkeys::Entity::update_many()
            .col_expr(passkeys::Column::Name, Expr::value(name))
            .filter(passkeys::Column::CredId.eq(cred_id))
            .filter(passkeys::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        if done.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        if let Some(event) = &self.audit {
            super::audit::insert(&txn, event).await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Removes a passkey of the member, unless it is the account's last way in (no
    /// password, no other passkey, no linked provider: `links::other_ways_in`). Decided
    /// in the transaction that removes it, after taking the account's row, so two
    /// removals at once (of two passkeys, or of a passkey and a link) cannot each leave
    /// the other as the last.
    pub async fn remove(
        &self,
        now: OffsetDateTime,
        user: UserId,
        cred_id: &str,
        change: FactorChange,
    ) -> Result<PasskeyRemoval, StoreError> {
        let txn = self.conn.begin().await?;
        // Takes the account's row (a no-op write) so concurrent removals queue up.
        let account = users::Entity::update_many()
            .col_expr(
                users::Column::UpdatedAt,
                Expr::col(users::Column::UpdatedAt),
            )
            .filter(users::Column::Id.eq(user.0))
            .exec(&txn)
            .await?;
        if account.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(PasskeyRemoval::NotFound);
        }
        let kept = super::links::other_ways_in(&txn, user, WayIn::Passkey(cred_id)).await?;
        let removed = passkeys::Entity::delete_many()
            .filter(passkeys::Column::CredId.eq(cred_id))
            .filter(passkeys::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        if removed.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(PasskeyRemoval::NotFound);
        }
        if !kept {
            txn.rollback().await?;
            return Ok(PasskeyRemoval::LastWayIn);
        }
        super::history::insert(&txn, &change.event).await?;
        if let Some(event) = &self.audit {
            super::audit::insert(&txn, event).await?;
        }
        if let Some(mail) = change.mail {
            jobs::add(&txn, now, MAIL_QUEUE, mail.payload).await?;
        }
        txn.commit().await?;
        Ok(PasskeyRemoval::Removed)
    }

    /// Records a sign-in with the passkey: when, and its credential as updated by the
    /// ceremony (the counter) when it changed — only while the stored credential is still
    /// `read` (what the ceremony was checked against): of two answers at once with the same
    /// counter, or a slow one carrying an older counter, only one is written. False when
    /// it was removed or used meanwhile.
    pub async fn used(
        &self,
        now: OffsetDateTime,
        cred_id: &str,
        read: &str,
        credential: Option<String>,
    ) -> Result<bool, StoreError> {
        let mut update = passkeys::Entity::update_many()
            .col_expr(passkeys::Column::LastUsedAt, Expr::value(now))
            .filter(passkeys::Column::CredId.eq(cred_id))
            .filter(passkeys::Column::Credential.eq(read));
        if let Some(credential) = credential {
            update = update.col_expr(passkeys::Column::Credential, Expr::value(credential));
        }
        Ok(update.exec(self.conn).await?.rows_affected == 1)
    }
}
