//! Social sign-in (issue 15): links of accounts to upstream identities. A link is the
//! upstream's (issuer, subject), unique across accounts, so two accounts can never share
//! an upstream identity and the index, not a check before the insert, decides a race.
//! Apple's refresh token is kept sealed with the master key so that deleting the account
//! can revoke it. `users.federated_unverified` marks an account a provider created
//! without verifying its address: the first verification of that address through a link
//! Tobira mailed removes every way in it had before.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    FederatedUnverified,
}

#[derive(DeriveIden)]
enum FederatedLinks {
    Table,
    Id,
    UserId,
    /// The configured provider id the link was made through (for the pages only).
    Provider,
    Issuer,
    Subject,
    /// The address the provider gave when the link was made.
    Email,
    /// JWE (`dir`, A256GCM) of Apple's refresh token under the master key.
    RefreshTokenSealed,
    CreatedAt,
    LastUsedAt,
}

const UNIQUE_IDENTITY: &str = "federated_links_identity";
const BY_USER: &str = "federated_links_user";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(boolean(Users::FederatedUnverified).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(FederatedLinks::Table)
                    .col(uuid(FederatedLinks::Id).primary_key())
                    .col(uuid(FederatedLinks::UserId))
                    .col(text(FederatedLinks::Provider))
                    .col(text(FederatedLinks::Issuer))
                    .col(text(FederatedLinks::Subject))
                    .col(text_null(FederatedLinks::Email))
                    .col(text_null(FederatedLinks::RefreshTokenSealed))
                    .col(timestamp_with_time_zone(FederatedLinks::CreatedAt))
                    .col(timestamp_with_time_zone_null(FederatedLinks::LastUsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(FederatedLinks::Table, FederatedLinks::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(UNIQUE_IDENTITY)
                    .table(FederatedLinks::Table)
                    .col(FederatedLinks::Issuer)
                    .col(FederatedLinks::Subject)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(BY_USER)
                    .table(FederatedLinks::Table)
                    .col(FederatedLinks::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(FederatedLinks::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::FederatedUnverified)
                    .to_owned(),
            )
            .await
    }
}
