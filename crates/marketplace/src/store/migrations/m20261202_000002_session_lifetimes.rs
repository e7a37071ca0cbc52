//! Sessions get a last-seen time, for the idle lifetime; with `created_at` (the
//! absolute lifetime) it is what expiry and pruning look at, so both are indexed, as is
//! the age of pending sign-ins. The lifetimes themselves are configuration, not data:
//! shortening them in the config takes effect for existing sessions at once.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MpSessions {
    Table,
    CreatedAt,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum MpLoginStates {
    Table,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds a NOT NULL column only with a constant default. The placeholder is
        // replaced at once: a session from before this migration was last seen, as far
        // as anyone knows, when it was created (so old sessions expire rather than live
        // on with a fresh idle period).
        manager
            .alter_table(
                Table::alter()
                    .table(MpSessions::Table)
                    .add_column(
                        timestamp_with_time_zone(MpSessions::LastSeenAt)
                            .default("1970-01-01 00:00:00+00:00"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(MpSessions::Table)
                    .value(MpSessions::LastSeenAt, Expr::col(MpSessions::CreatedAt))
                    .to_owned(),
            )
            .await?;
        for (name, table, column) in [
            (
                "mp_sessions_last_seen_at",
                MpSessions::Table.into_iden(),
                MpSessions::LastSeenAt.into_iden(),
            ),
            (
                "mp_sessions_created_at",
                MpSessions::Table.into_iden(),
                MpSessions::CreatedAt.into_iden(),
            ),
            (
                "mp_login_states_created_at",
                MpLoginStates::Table.into_iden(),
                MpLoginStates::CreatedAt.into_iden(),
            ),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            (
                "mp_login_states_created_at",
                MpLoginStates::Table.into_iden(),
            ),
            ("mp_sessions_created_at", MpSessions::Table.into_iden()),
            ("mp_sessions_last_seen_at", MpSessions::Table.into_iden()),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(MpSessions::Table)
                    .drop_column(MpSessions::LastSeenAt)
                    .to_owned(),
            )
            .await
    }
}
