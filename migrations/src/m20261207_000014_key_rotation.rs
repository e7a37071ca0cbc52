//! Signing-key rotation (issue 16): when a published `next` key may start signing, when a
//! `retiring` key has outlived every token it signed, and when a key was revoked (an
//! emergency: it leaves the JWKS and verification at once).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    /// A `next` key signs from this time on (publication + `keys.publish_ahead`).
    ActivateAfter,
    /// A `retiring` key retires at this time (every token it signed has expired).
    RetireAfter,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        for column in [
            SigningKeys::ActivateAfter,
            SigningKeys::RetireAfter,
            SigningKeys::RevokedAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(SigningKeys::Table)
                        .add_column(timestamp_with_time_zone_null(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            SigningKeys::ActivateAfter,
            SigningKeys::RetireAfter,
            SigningKeys::RevokedAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(SigningKeys::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
