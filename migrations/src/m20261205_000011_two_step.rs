//! Two-step verification (issue 13): the authenticator-app secret of an account (encrypted
//! with the master key) with the last time step accepted, so a code is never accepted
//! twice; the email-code factor; the recovery codes (hashed, each single use); and the
//! devices a member asked not to be asked again on (a hashed random secret per account and
//! device, until a date).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum TotpFactors {
    Table,
    UserId,
    /// JWE (`dir`, A256GCM) of the raw secret under the master key.
    SecretEnc,
    /// The RFC 6238 time step of the last code accepted (the enrolment's first code).
    LastStep,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EmailFactors {
    Table,
    UserId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RecoveryCodes {
    Table,
    CodeHash,
    UserId,
    UsedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RememberedDevices {
    Table,
    SecretHash,
    UserId,
    DeviceHash,
    ExpiresAt,
    CreatedAt,
}

fn owned_by(from: (impl IntoIden, impl IntoIden)) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from.0, from.1)
        .to(Users::Table, Users::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TotpFactors::Table)
                    .col(uuid(TotpFactors::UserId).primary_key())
                    .col(text(TotpFactors::SecretEnc))
                    .col(big_integer(TotpFactors::LastStep))
                    .col(timestamp_with_time_zone(TotpFactors::CreatedAt))
                    .foreign_key(&mut owned_by((TotpFactors::Table, TotpFactors::UserId)))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EmailFactors::Table)
                    .col(uuid(EmailFactors::UserId).primary_key())
                    .col(timestamp_with_time_zone(EmailFactors::CreatedAt))
                    .foreign_key(&mut owned_by((EmailFactors::Table, EmailFactors::UserId)))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RecoveryCodes::Table)
                    .col(string_len(RecoveryCodes::CodeHash, 64).primary_key())
                    .col(uuid(RecoveryCodes::UserId))
                    .col(timestamp_with_time_zone_null(RecoveryCodes::UsedAt))
                    .col(timestamp_with_time_zone(RecoveryCodes::CreatedAt))
                    .foreign_key(&mut owned_by((RecoveryCodes::Table, RecoveryCodes::UserId)))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("recovery_codes_user")
                    .table(RecoveryCodes::Table)
                    .col(RecoveryCodes::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RememberedDevices::Table)
                    .col(string_len(RememberedDevices::SecretHash, 64).primary_key())
                    .col(uuid(RememberedDevices::UserId))
                    .col(string_len(RememberedDevices::DeviceHash, 64))
                    .col(timestamp_with_time_zone(RememberedDevices::ExpiresAt))
                    .col(timestamp_with_time_zone(RememberedDevices::CreatedAt))
                    .foreign_key(&mut owned_by((
                        RememberedDevices::Table,
                        RememberedDevices::UserId,
                    )))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("remembered_devices_user")
                    .table(RememberedDevices::Table)
                    .col(RememberedDevices::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RememberedDevices::Table.into_iden(),
            RecoveryCodes::Table.into_iden(),
            EmailFactors::Table.into_iden(),
            TotpFactors::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
