//! Devices known to an account (see the `known_devices` migration).

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
};
use time::OffsetDateTime;

use super::StoreError;
use super::entity::known_devices;
use crate::domain::UserId;

/// What is stored of a user agent: enough to describe the device, bounded.
const USER_AGENT_MAX: usize = 512;

/// A device that signed in to an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownDevice {
    pub device_hash: String,
    pub first_sign_in_at: OffsetDateTime,
    pub last_sign_in_at: OffsetDateTime,
    pub last_ip: String,
    pub last_user_agent: String,
}

pub struct KnownDeviceRepo<'c> {
    conn: &'c DatabaseConnection,
}

impl<'c> KnownDeviceRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Whether the device (hash of its cookie) has signed in to the account.
    pub async fn is_known(&self, user: UserId, device_hash: &str) -> Result<bool, StoreError> {
        Ok(
            known_devices::Entity::find_by_id((user.0, device_hash.to_owned()))
                .one(self.conn)
                .await?
                .is_some(),
        )
    }

    /// Whether the account knows a device other than `device_hash` (one row at most read).
    pub async fn knows_another(&self, user: UserId, device_hash: &str) -> Result<bool, StoreError> {
        Ok(known_devices::Entity::find()
            .filter(known_devices::Column::UserId.eq(user.0))
            .filter(known_devices::Column::DeviceHash.ne(device_hash))
            .one(self.conn)
            .await?
            .is_some())
    }

    /// Records a successful sign-in of the device: known from now on (first time), or
    /// seen again (later times). True when it was new to the account.
    pub async fn signed_in(
        &self,
        now: OffsetDateTime,
        user: UserId,
        device_hash: &str,
        ip: &str,
        user_agent: &str,
    ) -> Result<bool, StoreError> {
        let known = self.is_known(user, device_hash).await?;
        let user_agent: String = user_agent.chars().take(USER_AGENT_MAX).collect();
        known_devices::Entity::insert(known_devices::ActiveModel {
            user_id: Set(user.0),
            device_hash: Set(device_hash.to_owned()),
            first_sign_in_at: Set(now),
            last_sign_in_at: Set(now),
            last_ip: Set(ip.chars().take(64).collect()),
            last_user_agent: Set(user_agent),
        })
        .on_conflict(
            OnConflict::columns([
                known_devices::Column::UserId,
                known_devices::Column::DeviceHash,
            ])
            .update_columns([
                known_devices::Column::LastSignInAt,
                known_devices::Column::LastIp,
                known_devices::Column::LastUserAgent,
            ])
            .to_owned(),
        )
        .exec_without_returning(self.conn)
        .await?;
        Ok(!known)
    }

    /// The account's devices, most recently used first.
    pub async fn list(&self, user: UserId) -> Result<Vec<KnownDevice>, StoreError> {
        let rows = known_devices::Entity::find()
            .filter(known_devices::Column::UserId.eq(user.0))
            .order_by_desc(known_devices::Column::LastSignInAt)
            .all(self.conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|m| KnownDevice {
                device_hash: m.device_hash,
                first_sign_in_at: m.first_sign_in_at,
                last_sign_in_at: m.last_sign_in_at,
                last_ip: m.last_ip,
                last_user_agent: m.last_user_agent,
            })
            .collect())
    }
}
