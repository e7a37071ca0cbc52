//! Schema migrations of the Tobira OP, shared by SQLite and PostgreSQL.
//!
//! Applied by `tobira migrate` and at `tobira serve` (under a lock taken by the caller, so
//! replicas that start together do not race). Later capabilities add tables by new
//! migrations; a released migration is never edited.

pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::prelude::*;

mod m20261122_000001_users;
mod m20261122_000002_oidc;
mod m20261122_000003_consent_algs;
mod m20261202_000004_server_secrets;
mod m20261202_000005_jobs_and_resets;
mod m20261202_000006_email_verifications;
mod m20261204_000007_known_devices;
mod m20261204_000008_login_events;
mod m20261204_000009_backchannel_logout;
mod m20261204_000010_account_lifecycle;
mod m20261205_000011_two_step;
mod m20261205_000012_passkeys;
mod m20261206_000013_federated_links;
mod m20261207_000014_key_rotation;
mod m20261208_000015_admin;
mod m20261209_000016_unused_refresh_tokens;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_users::Migration),
            Box::new(m20261122_000002_oidc::Migration),
            Box::new(m20261122_000003_consent_algs::Migration),
            Box::new(m20261202_000004_server_secrets::Migration),
            Box::new(m20261202_000005_jobs_and_resets::Migration),
            Box::new(m20261202_000006_email_verifications::Migration),
            Box::new(m20261204_000007_known_devices::Migration),
            Box::new(m20261204_000008_login_events::Migration),
            Box::new(m20261204_000009_backchannel_logout::Migration),
            Box::new(m20261204_000010_account_lifecycle::Migration),
            Box::new(m20261205_000011_two_step::Migration),
            Box::new(m20261205_000012_passkeys::Migration),
            Box::new(m20261206_000013_federated_links::Migration),
            Box::new(m20261207_000014_key_rotation::Migration),
            Box::new(m20261208_000015_admin::Migration),
            Box::new(m20261209_000016_unused_refresh_tokens::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "tobira_migrations".into_iden()
    }
}
