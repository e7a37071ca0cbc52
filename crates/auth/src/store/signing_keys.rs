//! Signing keys at rest: the public JWK in the clear, the private JWK encrypted with the
//! master key (a compact JWE).

use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
};
use time::OffsetDateTime;

use super::StoreError;
use super::entity::signing_keys;

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

    /// Keys that are published in the JWKS (every state but `retired`), oldest first.
    pub async fn published(&self) -> Result<Vec<StoredKey>, StoreError> {
        Ok(signing_keys::Entity::find()
            .filter(signing_keys::Column::State.ne("retired"))
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

    pub async fn add(&self, key: &StoredKey) -> Result<(), StoreError> {
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
            .exec_without_returning(self.conn)
            .await?;
        Ok(())
    }
}
