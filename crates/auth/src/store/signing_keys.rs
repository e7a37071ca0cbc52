//! Signing keys at rest: the public JWK in the clear, the private JWK encrypted with the
//! master key (a compact JWE). State changes are compare-and-set on the state a key was
//! read in, a batch in one transaction with its audit records, so replicas and the CLI
//! changing keys at once change each key once, and a change is recorded exactly when it
//! is made.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, TransactionTrait,
};
use time::OffsetDateTime;

use super::entity::signing_keys;
use super::{AuditEvent, StoreError};
use crate::keys::KeyState;
use crate::keys::schedule::KeyChange;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    /// `next`, `active`, `retiring`, `retired` or `revoked` (see `keys::KeyState`).
    pub state: String,
    pub private_jwe: String,
    pub public_jwk: String,
    pub master_key_id: String,
    pub created_at: OffsetDateTime,
    pub activated_at: Option<OffsetDateTime>,
    pub retired_at: Option<OffsetDateTime>,
    /// A `next` key signs from this time on.
    pub activate_after: Option<OffsetDateTime>,
    /// A `retiring` key retires at this time.
    pub retire_after: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<signing_keys::Model> for StoredKey {
    fn from(m: signing_keys::Model) -> Self {
        Self {
            kid: m.kid,
            alg: m.alg,
            state: m.state,
            private_jwe: m.private_jwe,
            public_jwk: m.public_jwk,
            master_key_id: m.master_key_id,
            created_at: m.created_at,
            activated_at: m.activated_at,
            retired_at: m.retired_at,
            activate_after: m.activate_after,
            retire_after: m.retire_after,
            revoked_at: m.revoked_at,
        }
    }
}

pub struct SigningKeyRepo<'c> {
    conn: &'c DatabaseConnection,
}

impl<'c> SigningKeyRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Keys that are published in the JWKS (`next`, `active`, `retiring`), oldest first.
    pub async fn published(&self) -> Result<Vec<StoredKey>, StoreError> {
        let published = KeyState::ALL
            .into_iter()
            .filter(|s| s.is_published())
            .map(KeyState::as_str);
        Ok(signing_keys::Entity::find()
            .filter(signing_keys::Column::State.is_in(published))
            .order_by_asc(signing_keys::Column::CreatedAt)
            // Keys made in one transaction share a time: one order on every replica, so
            // their JWKS bytes (and ETag) are the same.
            .order_by_asc(signing_keys::Column::Kid)
            .all(self.conn)
            .await?
            .into_iter()
            .map(StoredKey::from)
            .collect())
    }

    /// Every key row (revoked and retired ones too), oldest first, in the same order as
    /// `published`.
    pub async fn all(&self) -> Result<Vec<StoredKey>, StoreError> {
        Ok(signing_keys::Entity::find()
            .order_by_asc(signing_keys::Column::CreatedAt)
            .order_by_asc(signing_keys::Column::Kid)
            .all(self.conn)
            .await?
            .into_iter()
            .map(StoredKey::from)
            .collect())
    }

    /// The key with this kid, in whatever state.
    pub async fn lookup(&self, kid: &str) -> Result<Option<StoredKey>, StoreError> {
        Ok(signing_keys::Entity::find_by_id(kid)
            .one(self.conn)
            .await?
            .map(StoredKey::from))
    }

    pub async fn add(&self, key: &StoredKey) -> Result<(), StoreError> {
        add(self.conn, key).await
    }

    /// Applies `changes` and writes their audit records `events` in one transaction, all
    /// or nothing: `false` (nothing changed, nothing recorded) when a key is no longer in
    /// the state a change expects (someone else changed it first: every change is a
    /// compare-and-set on the state). A record that cannot be written undoes the change,
    /// so no key changes without its record.
    pub async fn apply(
        &self,
        changes: &[KeyChange],
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await?;
        for change in changes {
            if !apply_one(&txn, change).await? {
                txn.rollback().await?;
                return Ok(false);
            }
        }
        for event in events {
            super::audit::insert(&txn, event).await?;
        }
        txn.commit().await?;
        Ok(true)
    }
}

/// Makes one change; whether the key was in the expected state (and so changed).
async fn apply_one(conn: &impl ConnectionTrait, change: &KeyChange) -> Result<bool, StoreError> {
    use signing_keys::Column as C;
    let update = |kid: &str, from: KeyState| {
        signing_keys::Entity::update_many()
            .filter(C::Kid.eq(kid))
            .filter(C::State.eq(from.as_str()))
    };
    let none = Expr::value(None::<OffsetDateTime>);
    let changed = match change {
        KeyChange::Add(key) => {
            add(conn, key).await?;
            return Ok(true);
        }
        KeyChange::Activate { kid, from, at } => {
            update(kid, *from)
                .col_expr(C::State, Expr::value(KeyState::Active.as_str()))
                .col_expr(C::ActivatedAt, Expr::value(*at))
                .col_expr(C::ActivateAfter, none.clone())
                .col_expr(C::RetireAfter, none)
                .exec(conn)
                .await?
                .rows_affected
        }
        KeyChange::Retiring { kid, retire_after } => {
            update(kid, KeyState::Active)
                .col_expr(C::State, Expr::value(KeyState::Retiring.as_str()))
                .col_expr(C::RetireAfter, Expr::value(*retire_after))
                .exec(conn)
                .await?
                .rows_affected
        }
        KeyChange::Retire { kid, from, at } | KeyChange::Revoke { kid, from, at } => {
            // Either way it never signs again: its private half is wiped.
            let (to, when) = match change {
                KeyChange::Retire { .. } => (KeyState::Retired, C::RetiredAt),
                _ => (KeyState::Revoked, C::RevokedAt),
            };
            update(kid, *from)
                .col_expr(C::State, Expr::value(to.as_str()))
                .col_expr(when, Expr::value(*at))
                .col_expr(C::PrivateJwe, Expr::value(""))
                .exec(conn)
                .await?
                .rows_affected
        }
        KeyChange::Reschedule {
            kid,
            activate_after,
        } => {
            update(kid, KeyState::Next)
                .col_expr(C::ActivateAfter, Expr::value(*activate_after))
                .exec(conn)
                .await?
                .rows_affected
        }
        KeyChange::Delete { kid } => {
            signing_keys::Entity::delete_many()
                .filter(C::Kid.eq(kid.as_str()))
                .filter(C::State.eq(KeyState::Retired.as_str()))
                .exec(conn)
                .await?
                .rows_affected
        }
    };
    Ok(changed == 1)
}

async fn add(conn: &impl ConnectionTrait, key: &StoredKey) -> Result<(), StoreError> {
    let row = signing_keys::ActiveModel {
        kid: Set(key.kid.clone()),
        alg: Set(key.alg.clone()),
        state: Set(key.state.clone()),
        private_jwe: Set(key.private_jwe.clone()),
        public_jwk: Set(key.public_jwk.clone()),
        master_key_id: Set(key.master_key_id.clone()),
        created_at: Set(key.created_at),
        activated_at: Set(key.activated_at),
        retired_at: Set(key.retired_at),
        activate_after: Set(key.activate_after),
        retire_after: Set(key.retire_after),
        revoked_at: Set(key.revoked_at),
    };
    signing_keys::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}
