//! Devices known to an account: a device (its long-lived device cookie, stored as a
//! SHA-256) becomes known when it signs in to the account successfully. Throttling
//! exempts a known device from the account's lock; later issues use the same table for
//! the new-device mail, the device list and step-up.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KnownDevices {
    Table,
    UserId,
    DeviceHash,
    FirstSignInAt,
    LastSignInAt,
    LastIp,
    LastUserAgent,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KnownDevices::Table)
                    .col(uuid(KnownDevices::UserId))
                    .col(string_len(KnownDevices::DeviceHash, 64))
                    .col(timestamp_with_time_zone(KnownDevices::FirstSignInAt))
                    .col(timestamp_with_time_zone(KnownDevices::LastSignInAt))
                    .col(string_len(KnownDevices::LastIp, 64))
                    .col(string_len(KnownDevices::LastUserAgent, 512))
                    .primary_key(
                        Index::create()
                            .col(KnownDevices::UserId)
                            .col(KnownDevices::DeviceHash),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(KnownDevices::Table, KnownDevices::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(KnownDevices::Table).to_owned())
            .await
    }
}
