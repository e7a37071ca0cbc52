//! The marketplace's schema migrations, shared by SQLite and PostgreSQL. They keep
//! their own record table, `marketplace_migrations`, so the marketplace and the OP
//! (whose migrator records in `tobira_migrations`) can live in one database without
//! either taking the other's migrations for unknown ones. A released migration is
//! never edited; changes come as new migrations.

use sea_orm_migration::prelude::*;

mod m20261202_000001_adopt_schema;
mod m20261202_000002_session_lifetimes;
mod m20261204_000003_backchannel_logout;

pub struct Migrator;

/// Where this migrator records what it applied.
pub const TABLE: &str = "marketplace_migrations";

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261202_000001_adopt_schema::Migration),
            Box::new(m20261202_000002_session_lifetimes::Migration),
            Box::new(m20261204_000003_backchannel_logout::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        TABLE.into_iden()
    }
}
