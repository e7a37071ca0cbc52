//! Passkeys (issue 14): each member's WebAuthn credentials (webauthn-rs's `Passkey`, as
//! JSON: public key, counter, flags), with the name the member gave it and when it was
//! created and last used; and the member's WebAuthn user handle, a random id that
//! authenticators keep with a discoverable credential and hand back at a usernameless
//! sign-in (not the row id: a UUIDv7 would tell every authenticator when the account was
//! made).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    WebauthnHandle,
}

#[derive(DeriveIden)]
enum Passkeys {
    Table,
    /// The credential id, base64url: unique across accounts (webauthn-rs leaves that to us).
    CredId,
    UserId,
    Name,
    /// webauthn-rs's `Passkey` as JSON (public key, counter, backup flags).
    Credential,
    CreatedAt,
    LastUsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(uuid_null(Users::WebauthnHandle))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_webauthn_handle")
                    .table(Users::Table)
                    .col(Users::WebauthnHandle)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Passkeys::Table)
                    .col(string_len(Passkeys::CredId, 1400).primary_key())
                    .col(uuid(Passkeys::UserId))
                    .col(string_len(Passkeys::Name, 200))
                    .col(text(Passkeys::Credential))
                    .col(timestamp_with_time_zone(Passkeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(Passkeys::LastUsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Passkeys::Table, Passkeys::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("passkeys_user")
                    .table(Passkeys::Table)
                    .col(Passkeys::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Passkeys::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("users_webauthn_handle")
                    .table(Users::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::WebauthnHandle)
                    .to_owned(),
            )
            .await
    }
}
