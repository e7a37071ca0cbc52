//! The schema as the marketplace made it before it had migrations (tables created from
//! its entities at start-up), created only where missing. Installations that already
//! have these tables (such as the demo's `data/demo` database) are adopted as they are;
//! later migrations then change them like any other. Because adoption must match what
//! exists, this migration creates exactly the old columns and types, nothing newer.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MpMembers {
    Table,
    Id,
    Issuer,
    Sub,
    DisplayName,
    Email,
    ShowLastLogin,
    LastLoginAt,
    LastLoginMethod,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MpSessions {
    Table,
    IdHash,
    MemberId,
    Csrf,
    IdToken,
    AccessToken,
    RefreshToken,
    AccessExpiresAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MpLoginStates {
    Table,
    State,
    Nonce,
    PkceVerifier,
    BrowserHash,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MpMembers::Table)
                    .if_not_exists()
                    .col(string(MpMembers::Id).primary_key())
                    .col(string(MpMembers::Issuer))
                    .col(string(MpMembers::Sub))
                    .col(string(MpMembers::DisplayName))
                    .col(string(MpMembers::Email))
                    .col(boolean(MpMembers::ShowLastLogin))
                    .col(timestamp_with_time_zone_null(MpMembers::LastLoginAt))
                    .col(string(MpMembers::LastLoginMethod))
                    .col(timestamp_with_time_zone(MpMembers::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .unique()
                    .name("mp_members_issuer_sub")
                    .table(MpMembers::Table)
                    .col(MpMembers::Issuer)
                    .col(MpMembers::Sub)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MpSessions::Table)
                    .if_not_exists()
                    .col(string(MpSessions::IdHash).primary_key())
                    .col(string(MpSessions::MemberId))
                    .col(string(MpSessions::Csrf))
                    .col(string(MpSessions::IdToken))
                    .col(string(MpSessions::AccessToken))
                    .col(string_null(MpSessions::RefreshToken))
                    .col(timestamp_with_time_zone(MpSessions::AccessExpiresAt))
                    .col(timestamp_with_time_zone(MpSessions::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MpLoginStates::Table)
                    .if_not_exists()
                    .col(string(MpLoginStates::State).primary_key())
                    .col(string(MpLoginStates::Nonce))
                    .col(string(MpLoginStates::PkceVerifier))
                    .col(string(MpLoginStates::BrowserHash))
                    .col(timestamp_with_time_zone(MpLoginStates::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            MpLoginStates::Table.into_iden(),
            MpSessions::Table.into_iden(),
            MpMembers::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
