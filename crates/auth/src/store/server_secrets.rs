//! Secrets the server makes for itself once and keeps sealed with the master key.

use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait, SqlErr};
use time::OffsetDateTime;

use super::StoreError;
use super::entity::server_secrets;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedSecret {
    pub sealed: String,
    pub master_key_id: String,
}

pub struct ServerSecretRepo<'c> {
    conn: &'c DatabaseConnection,
}

impl<'c> ServerSecretRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    pub async fn lookup(&self, name: &str) -> Result<Option<SealedSecret>, StoreError> {
        Ok(server_secrets::Entity::find_by_id(name.to_owned())
            .one(self.conn)
            .await?
            .map(|m| SealedSecret {
                sealed: m.sealed,
                master_key_id: m.master_key_id,
            }))
    }

    /// Stores `secret` under `name` unless one is there: `false` when another replica
    /// was first (the caller then reads theirs).
    pub async fn add(
        &self,
        now: OffsetDateTime,
        name: &str,
        secret: &SealedSecret,
    ) -> Result<bool, StoreError> {
        let row = server_secrets::ActiveModel {
            name: Set(name.to_owned()),
            sealed: Set(secret.sealed.clone()),
            master_key_id: Set(secret.master_key_id.clone()),
            created_at: Set(now),
        };
        match server_secrets::Entity::insert(row)
            .exec_without_returning(self.conn)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}
