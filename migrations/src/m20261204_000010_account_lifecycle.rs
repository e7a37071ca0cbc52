//! What happens to accounts (issue 12): an email change waiting for its new address to be
//! verified, the link that undoes a change from the old address, the durable
//! "reset required" state an undo leaves, support's freeze reason, the purge of a deleted
//! account's personal data, and the keyed hashes that hold a deleted address back from
//! re-registration for the cooldown. (Purged is a column, not a `status` value: the
//! status CHECK constraint cannot change on SQLite without rebuilding `users`.)

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    ResetRequired,
    FrozenReason,
    PurgedAt,
}

#[derive(DeriveIden)]
enum EmailChanges {
    Table,
    TokenHash,
    UserId,
    Email,
    EmailDisplay,
    ExpiresAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EmailUndos {
    Table,
    TokenHash,
    UserId,
    /// The address the change left (normalised and as typed): what an undo restores.
    Email,
    EmailDisplay,
    /// The normalised address the change set.
    ChangedTo,
    ExpiresAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ReregistrationBlocks {
    Table,
    EmailDigest,
    Until,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            boolean(Users::ResetRequired).default(false).to_owned(),
            string_len_null(Users::FrozenReason, 500).to_owned(),
            timestamp_with_time_zone_null(Users::PurgedAt).to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(EmailChanges::Table)
                    .col(string_len(EmailChanges::TokenHash, 64).primary_key())
                    .col(uuid(EmailChanges::UserId))
                    .col(string_len(EmailChanges::Email, 320))
                    .col(string_len(EmailChanges::EmailDisplay, 320))
                    .col(timestamp_with_time_zone(EmailChanges::ExpiresAt))
                    .col(timestamp_with_time_zone(EmailChanges::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(EmailChanges::Table, EmailChanges::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("email_changes_user")
                    .table(EmailChanges::Table)
                    .col(EmailChanges::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EmailUndos::Table)
                    .col(string_len(EmailUndos::TokenHash, 64).primary_key())
                    .col(uuid(EmailUndos::UserId))
                    .col(string_len(EmailUndos::Email, 320))
                    .col(string_len(EmailUndos::EmailDisplay, 320))
                    .col(string_len(EmailUndos::ChangedTo, 320))
                    .col(timestamp_with_time_zone(EmailUndos::ExpiresAt))
                    .col(timestamp_with_time_zone(EmailUndos::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(EmailUndos::Table, EmailUndos::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("email_undos_user")
                    .table(EmailUndos::Table)
                    .col(EmailUndos::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReregistrationBlocks::Table)
                    .col(string_len(ReregistrationBlocks::EmailDigest, 64).primary_key())
                    .col(timestamp_with_time_zone(ReregistrationBlocks::Until))
                    .col(timestamp_with_time_zone(ReregistrationBlocks::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ReregistrationBlocks::Table.into_iden(),
            EmailUndos::Table.into_iden(),
            EmailChanges::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        for column in [Users::PurgedAt, Users::FrozenReason, Users::ResetRequired] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
