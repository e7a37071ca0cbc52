//! A grant's unused refresh tokens found without reading its spent ones: every rotation
//! leaves the spent token behind (kept to detect its reuse until it expires), so a grant
//! rotated every few minutes holds thousands of them, and `grant_id` alone made the
//! connected-apps query read them all (the soak: the console's p99 doubled in 30 minutes).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    GrantId,
    UsedAt,
}

const INDEX: &str = "refresh_tokens_grant_unused";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::GrantId)
                    .col(RefreshTokens::UsedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(RefreshTokens::Table)
                    .to_owned(),
            )
            .await
    }
}
