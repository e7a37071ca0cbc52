//! The members' sign-in history: every attempt on an account (successful, failed,
//! throttled) with its time, client address, user agent, device (hash of its cookie),
//! method, result and whether the device was new to the account. Kept for
//! `account.history_days`, then purged by the job runner.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LoginEvents {
    Table,
    Id,
    UserId,
    CreatedAt,
    Ip,
    UserAgent,
    DeviceHash,
    Method,
    Result,
    NewDevice,
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
                    .table(LoginEvents::Table)
                    .col(uuid(LoginEvents::Id).primary_key())
                    .col(uuid(LoginEvents::UserId))
                    .col(timestamp_with_time_zone(LoginEvents::CreatedAt))
                    .col(string_len(LoginEvents::Ip, 64))
                    .col(string_len(LoginEvents::UserAgent, 512))
                    .col(string_len(LoginEvents::DeviceHash, 64))
                    .col(string_len(LoginEvents::Method, 32))
                    .col(string_len(LoginEvents::Result, 32))
                    .col(boolean(LoginEvents::NewDevice))
                    .foreign_key(
                        ForeignKey::create()
                            .from(LoginEvents::Table, LoginEvents::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("login_events_user_time")
                    .table(LoginEvents::Table)
                    .col(LoginEvents::UserId)
                    .col(LoginEvents::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // The purge deletes by age across accounts.
        manager
            .create_index(
                Index::create()
                    .name("login_events_time")
                    .table(LoginEvents::Table)
                    .col(LoginEvents::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(LoginEvents::Table).to_owned())
            .await
    }
}
