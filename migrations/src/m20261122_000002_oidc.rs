//! The OpenID Connect core: clients, signing keys, browser sessions, grants and refresh
//! tokens. Secrets are stored only as SHA-256 (client secrets, session cookies, refresh
//! tokens) or encrypted with the master key (private signing keys).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    ClientId,
    Name,
    SecretHash,
    RedirectUris,
    PostLogoutRedirectUris,
    GrantTypes,
    Public,
    FirstParty,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Alg,
    State,
    PrivateJwe,
    PublicJwk,
    MasterKeyId,
    CreatedAt,
    ActivatedAt,
    RetiredAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    SecretHash,
    Sid,
    UserId,
    AuthTime,
    Amr,
    Acr,
    DeviceId,
    Ip,
    UserAgent,
    Remember,
    CreatedAt,
    LastSeenAt,
    ExpiresAt,
    EndedAt,
}

#[derive(DeriveIden)]
enum Grants {
    Table,
    Id,
    UserId,
    ClientId,
    SessionId,
    Scope,
    Offline,
    AuthTime,
    Amr,
    Acr,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    TokenHash,
    GrantId,
    CreatedAt,
    ExpiresAt,
    UsedAt,
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
                    .table(Clients::Table)
                    .col(string_len(Clients::ClientId, 128).primary_key())
                    .col(string_len(Clients::Name, 200))
                    .col(string_len_null(Clients::SecretHash, 64))
                    .col(text(Clients::RedirectUris))
                    .col(text(Clients::PostLogoutRedirectUris))
                    .col(text(Clients::GrantTypes))
                    .col(boolean(Clients::Public))
                    .col(boolean(Clients::FirstParty))
                    .col(timestamp_with_time_zone(Clients::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .col(string_len(SigningKeys::Kid, 64).primary_key())
                    .col(string_len(SigningKeys::Alg, 16))
                    .col(
                        string_len(SigningKeys::State, 16).check(
                            Expr::col(SigningKeys::State)
                                .is_in(["next", "active", "retiring", "retired"]),
                        ),
                    )
                    .col(text(SigningKeys::PrivateJwe))
                    .col(text(SigningKeys::PublicJwk))
                    .col(string_len(SigningKeys::MasterKeyId, 32))
                    .col(timestamp_with_time_zone(SigningKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(SigningKeys::ActivatedAt))
                    .col(timestamp_with_time_zone_null(SigningKeys::RetiredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(uuid(Sessions::Id).primary_key())
                    .col(string_len_uniq(Sessions::SecretHash, 64))
                    .col(string_len_uniq(Sessions::Sid, 64))
                    .col(uuid(Sessions::UserId))
                    .col(timestamp_with_time_zone(Sessions::AuthTime))
                    .col(text(Sessions::Amr))
                    .col(string_len(Sessions::Acr, 64))
                    .col(string_len(Sessions::DeviceId, 64))
                    .col(string_len(Sessions::Ip, 64))
                    .col(string_len(Sessions::UserAgent, 512))
                    .col(boolean(Sessions::Remember))
                    .col(timestamp_with_time_zone(Sessions::CreatedAt))
                    .col(timestamp_with_time_zone(Sessions::LastSeenAt))
                    .col(timestamp_with_time_zone(Sessions::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Sessions::EndedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Sessions::Table, Sessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("sessions_user")
                    .table(Sessions::Table)
                    .col(Sessions::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Grants::Table)
                    .col(uuid(Grants::Id).primary_key())
                    .col(uuid(Grants::UserId))
                    .col(string_len(Grants::ClientId, 128))
                    .col(uuid_null(Grants::SessionId))
                    .col(text(Grants::Scope))
                    .col(boolean(Grants::Offline))
                    .col(timestamp_with_time_zone(Grants::AuthTime))
                    .col(text(Grants::Amr))
                    .col(string_len(Grants::Acr, 64))
                    .col(timestamp_with_time_zone(Grants::CreatedAt))
                    .col(timestamp_with_time_zone_null(Grants::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Grants::Table, Grants::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Grants::Table, Grants::ClientId)
                            .to(Clients::Table, Clients::ClientId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("grants_user", Grants::UserId),
            ("grants_session", Grants::SessionId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Grants::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(string_len(RefreshTokens::TokenHash, 64).primary_key())
                    .col(uuid(RefreshTokens::GrantId))
                    .col(timestamp_with_time_zone(RefreshTokens::CreatedAt))
                    .col(timestamp_with_time_zone(RefreshTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(RefreshTokens::UsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RefreshTokens::Table, RefreshTokens::GrantId)
                            .to(Grants::Table, Grants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("refresh_tokens_grant")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::GrantId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RefreshTokens::Table.into_iden(),
            Grants::Table.into_iden(),
            Sessions::Table.into_iden(),
            SigningKeys::Table.into_iden(),
            Clients::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
