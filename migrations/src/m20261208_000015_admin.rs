//! What the admin API needs: the audit log (operators' record of every
//! security-relevant change: who, what, on which account or client, when, from where,
//! with the request id), API scopes a client may ask for with client_credentials
//! (`admin`), and a client's previous secret, valid until its grace period ends after a
//! rotation.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    At,
    ActorKind,
    Actor,
    Action,
    TargetKind,
    Target,
    Ip,
    RequestId,
    Detail,
}

#[derive(DeriveIden, Clone, Copy)]
enum Clients {
    Table,
    Scopes,
    PreviousSecretHash,
    PreviousSecretExpiresAt,
}

const CLIENT_COLUMNS: [Clients; 3] = [
    Clients::Scopes,
    Clients::PreviousSecretHash,
    Clients::PreviousSecretExpiresAt,
];

fn client_column(column: Clients) -> ColumnDef {
    match column {
        // A JSON list, like the other list columns of `clients`.
        Clients::Scopes => text(column).default("[]").to_owned(),
        Clients::PreviousSecretHash => string_len_null(column, 64),
        _ => timestamp_with_time_zone_null(column),
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    // UUIDv7: ordered by time, so the id is the listing's cursor.
                    .col(uuid(AuditEvents::Id).primary_key())
                    .col(timestamp_with_time_zone(AuditEvents::At))
                    .col(string_len(AuditEvents::ActorKind, 16))
                    .col(string_len(AuditEvents::Actor, 200))
                    .col(string_len(AuditEvents::Action, 64))
                    .col(string_len(AuditEvents::TargetKind, 16))
                    .col(string_len(AuditEvents::Target, 200))
                    .col(string_len(AuditEvents::Ip, 64))
                    .col(string_len(AuditEvents::RequestId, 64))
                    .col(text(AuditEvents::Detail))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("audit_events_at", AuditEvents::At),
            ("audit_events_target", AuditEvents::Target),
            ("audit_events_actor", AuditEvents::Actor),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AuditEvents::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in CLIENT_COLUMNS {
            manager
                .alter_table(
                    Table::alter()
                        .table(Clients::Table)
                        .add_column(client_column(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in CLIENT_COLUMNS {
            manager
                .alter_table(
                    Table::alter()
                        .table(Clients::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}
