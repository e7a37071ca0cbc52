//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): each session keeps the
//! OP's session id (`sid` of its ID token) so a logout token naming that OP session
//! ends exactly the sessions started from it, and the logout tokens already acted on
//! are remembered by `jti` until they could no longer pass validation, so a replay is
//! refused on every replica.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MpSessions {
    Table,
    OpSid,
    MemberId,
}

#[derive(DeriveIden)]
enum MpLogoutTokens {
    Table,
    JtiHash,
    ExpiresAt,
}

const SESSIONS_OP_SID: &str = "mp_sessions_op_sid";
/// A logout token naming only `sub` ends every session of one member.
const SESSIONS_MEMBER_ID: &str = "mp_sessions_member_id";
const LOGOUT_TOKENS_EXPIRES_AT: &str = "mp_logout_tokens_expires_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Nullable: sessions from before this migration (and ID tokens without `sid`)
        // have none; they end only through a logout token naming their member.
        manager
            .alter_table(
                Table::alter()
                    .table(MpSessions::Table)
                    .add_column(string_null(MpSessions::OpSid))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            (SESSIONS_OP_SID, MpSessions::OpSid),
            (SESSIONS_MEMBER_ID, MpSessions::MemberId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(MpSessions::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        // The SHA-256 of the `jti`, not the `jti` itself: a fixed-width key however
        // long the OP's value (PostgreSQL refuses index entries of a few KiB).
        manager
            .create_table(
                Table::create()
                    .table(MpLogoutTokens::Table)
                    .col(string(MpLogoutTokens::JtiHash).primary_key())
                    .col(timestamp_with_time_zone(MpLogoutTokens::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(LOGOUT_TOKENS_EXPIRES_AT)
                    .table(MpLogoutTokens::Table)
                    .col(MpLogoutTokens::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MpLogoutTokens::Table).to_owned())
            .await?;
        for name in [SESSIONS_MEMBER_ID, SESSIONS_OP_SID] {
            manager
                .drop_index(Index::drop().name(name).table(MpSessions::Table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(MpSessions::Table)
                    .drop_column(MpSessions::OpSid)
                    .to_owned(),
            )
            .await
    }
}
