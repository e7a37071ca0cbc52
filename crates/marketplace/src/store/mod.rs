//! The marketplace's own data: members (keyed by issuer + `sub`, with their own public
//! member id), server-side sessions holding the tokens, pending sign-ins, and the
//! back-channel logout tokens already acted on. One implementation over SQLite and
//! PostgreSQL; sea-orm entities stay in here and the rest of the app sees the domain
//! types of `members`, `sessions`, `logins` and `logouts`.

mod entity;
pub mod logins;
pub mod logouts;
pub mod members;
pub mod migrations;
pub mod sessions;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use self::migrations::Migrator;

/// PostgreSQL advisory lock held while migrating, so replicas that start together do
/// not both apply a migration. "mplace" in ASCII: apart from the OP's key, so the two
/// apps do not wait for each other in a shared database.
const MIGRATION_LOCK: i64 = 0x6d70_6c61_6365;

/// Expired rows are deleted a batch at a time by the writes that add rows, so a
/// request never does unbounded work, yet pruning keeps up: each write adds one row
/// and may remove this many.
pub(crate) const PRUNE_BATCH: u64 = 100;

#[derive(Clone, Debug)]
pub struct Store {
    conn: DatabaseConnection,
}

impl Store {
    /// Connects and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Self, DbErr> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .and_then(|r| r.split('?').next())
            && let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| DbErr::Custom(format!("{}: {e}", dir.display())))?;
        }
        let mut options = ConnectOptions::new(url.to_owned());
        options.max_connections(8).sqlx_logging(false);
        let conn = Database::connect(options).await?;
        if conn.get_database_backend() == DbBackend::Sqlite {
            // WAL lets readers run while a writer commits; persistent for the file.
            conn.execute_unprepared("PRAGMA journal_mode=WAL").await?;
        }
        let store = Self { conn };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations; on PostgreSQL under a transaction-scoped advisory
    /// lock (each migration then runs in a savepoint of that transaction).
    pub async fn migrate(&self) -> Result<(), DbErr> {
        if self.conn.get_database_backend() != DbBackend::Postgres {
            return Migrator::up(&self.conn, None).await;
        }
        let txn = self.conn.begin().await?;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await?;
        Migrator::up(&txn, None).await?;
        txn.commit().await
    }

    pub fn members(&self) -> members::MemberRepo<'_> {
        members::MemberRepo::new(&self.conn)
    }

    pub fn sessions(&self) -> sessions::SessionRepo<'_> {
        sessions::SessionRepo::new(&self.conn)
    }

    pub fn logins(&self) -> logins::LoginRepo<'_> {
        logins::LoginRepo::new(&self.conn)
    }

    pub fn logouts(&self) -> logouts::LogoutRepo<'_> {
        logouts::LogoutRepo::new(&self.conn)
    }
}
