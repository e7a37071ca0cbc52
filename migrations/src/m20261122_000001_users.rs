//! Accounts. `sub` is random and never the row id (a UUIDv7 would leak the sign-up time);
//! the normalised email is unique only among accounts that are not deleted, so an address
//! can come back after the retention period of a deleted account.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Sub,
    Email,
    EmailDisplay,
    EmailVerified,
    PasswordHash,
    DisplayName,
    Locale,
    Status,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(uuid(Users::Id).primary_key())
                    .col(string_len_uniq(Users::Sub, 64))
                    .col(string_len(Users::Email, 320))
                    .col(string_len(Users::EmailDisplay, 320))
                    .col(boolean(Users::EmailVerified))
                    .col(text_null(Users::PasswordHash))
                    .col(string_len(Users::DisplayName, 100))
                    .col(string_len(Users::Locale, 16))
                    .col(
                        string_len(Users::Status, 16)
                            .check(Expr::col(Users::Status).is_in(["active", "frozen", "deleted"])),
                    )
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Users::DeletedAt))
                    .to_owned(),
            )
            .await?;
        // A partial unique index: same SQL on SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX users_email_live ON users (email) WHERE status <> 'deleted'",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_email")
                    .table(Users::Table)
                    .col(Users::Email)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}
