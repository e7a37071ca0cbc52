//! Signing-key rotation (issue 16): when a published `next` key may start signing, when a
//! `retiring` key has outlived every token it signed, and when a key was revoked (an
//! emergency: it leaves the JWKS and verification at once), which is a new state.
//!
//! The state's CHECK constraint cannot change on SQLite without rebuilding the table, so
//! there the table is rebuilt (nothing references it; it holds a handful of rows);
//! PostgreSQL alters it in place.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
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
    /// A `next` key signs from this time on (publication + `keys.publish_ahead`).
    ActivateAfter,
    /// A `retiring` key retires at this time (every token it signed has expired).
    RetireAfter,
    RevokedAt,
}

#[derive(DeriveIden)]
enum SigningKeysOld {
    Table,
}

const KEPT: [SigningKeys; 9] = [
    SigningKeys::Kid,
    SigningKeys::Alg,
    SigningKeys::State,
    SigningKeys::PrivateJwe,
    SigningKeys::PublicJwk,
    SigningKeys::MasterKeyId,
    SigningKeys::CreatedAt,
    SigningKeys::ActivatedAt,
    SigningKeys::RetiredAt,
];

const ROTATION: [SigningKeys; 3] = [
    SigningKeys::ActivateAfter,
    SigningKeys::RetireAfter,
    SigningKeys::RevokedAt,
];

fn table(name: impl IntoIden, states: &[&str], with_rotation: bool) -> TableCreateStatement {
    let mut t = Table::create();
    t.table(name)
        .col(string_len(SigningKeys::Kid, 64).primary_key())
        .col(string_len(SigningKeys::Alg, 16))
        .col(
            string_len(SigningKeys::State, 16)
                .check(Expr::col(SigningKeys::State).is_in(states.iter().copied())),
        )
        .col(text(SigningKeys::PrivateJwe))
        .col(text(SigningKeys::PublicJwk))
        .col(string_len(SigningKeys::MasterKeyId, 32))
        .col(timestamp_with_time_zone(SigningKeys::CreatedAt))
        .col(timestamp_with_time_zone_null(SigningKeys::ActivatedAt))
        .col(timestamp_with_time_zone_null(SigningKeys::RetiredAt));
    if with_rotation {
        for column in ROTATION {
            t.col(timestamp_with_time_zone_null(column));
        }
    }
    t.to_owned()
}

/// Rebuilds `signing_keys` as `new` describes, keeping its rows (SQLite): the rows wait
/// in a copy while the table is made again.
async fn rebuild(
    manager: &SchemaManager<'_>,
    new: TableCreateStatement,
    drop_state: Option<&str>,
) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    conn.execute_unprepared("CREATE TABLE signing_keys_old AS SELECT * FROM signing_keys")
        .await?;
    conn.execute_unprepared("DROP TABLE signing_keys").await?;
    manager.create_table(new).await?;
    let mut select = Query::select();
    select.columns(KEPT).from(SigningKeysOld::Table);
    if let Some(state) = drop_state {
        // Going down: a revoked key has no place in the old schema; it must not come back.
        select.and_where(Expr::col(SigningKeys::State).ne(state));
    }
    let copy = Query::insert()
        .into_table(SigningKeys::Table)
        .columns(KEPT)
        .select_from(select)
        .map_err(|e| DbErr::Migration(e.to_string()))?
        .to_owned();
    manager.exec_stmt(copy).await?;
    conn.execute_unprepared("DROP TABLE signing_keys_old")
        .await?;
    Ok(())
}

/// Adds (or drops) the rotation's columns on PostgreSQL, one statement each.
async fn rotation_columns_pg(manager: &SchemaManager<'_>, add: bool) -> Result<(), DbErr> {
    for column in ROTATION {
        let mut alter = Table::alter();
        alter.table(SigningKeys::Table);
        if add {
            alter.add_column(timestamp_with_time_zone_null(column));
        } else {
            alter.drop_column(column);
        }
        manager.alter_table(alter.to_owned()).await?;
    }
    Ok(())
}

/// PostgreSQL named the column's CHECK `signing_keys_state_check` when the table was made.
async fn set_states_pg(manager: &SchemaManager<'_>, states: &[&str]) -> Result<(), DbErr> {
    let list = states
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "ALTER TABLE signing_keys DROP CONSTRAINT signing_keys_state_check, \
             ADD CONSTRAINT signing_keys_state_check CHECK (state IN ({list}))"
        ))
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// On SQLite too: a crash between dropping the table and copying its rows back must
    /// leave the old table, not a half-done rebuild.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let states = ["next", "active", "retiring", "retired", "revoked"];
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            rotation_columns_pg(manager, true).await?;
            return set_states_pg(manager, &states).await;
        }
        rebuild(manager, table(SigningKeys::Table, &states, true), None).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let states = ["next", "active", "retiring", "retired"];
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            // A revoked key has no place in the old schema; it must not come back.
            manager
                .get_connection()
                .execute_unprepared("DELETE FROM signing_keys WHERE state = 'revoked'")
                .await?;
            rotation_columns_pg(manager, false).await?;
            return set_states_pg(manager, &states).await;
        }
        rebuild(
            manager,
            table(SigningKeys::Table, &states, false),
            Some("revoked"),
        )
        .await
    }
}
