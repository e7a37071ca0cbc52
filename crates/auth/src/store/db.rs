//! The durable store's connection, migrations (under a lock shared by replicas) and
//! readiness check.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend};
use tobira_migrations::{Migrator, MigratorTrait};

use super::{
    ClientRepo, ConsentRepo, GrantRepo, JobRepo, KnownDeviceRepo, LoginEventRepo,
    PasswordResetRepo, RefreshTokenRepo, ServerSecretRepo, SessionRepo, SigningKeyRepo, SignupRepo,
    UserRepo,
};

#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
    /// For SQLite files: the database file, beside which lock files live.
    lock_path: Option<PathBuf>,
    /// Clients as the hot paths read them (see [`super::clients::ClientCache`]).
    clients: Arc<super::clients::ClientCache>,
    /// On a SQLite file, the connections of the grant lookup (see [`super::readers`]).
    readers: Option<Arc<super::readers::Readers>>,
    /// On a SQLite file, the connection of the refresh rotation (see [`super::writer`]).
    writer: Option<Arc<super::writer::Writer>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database ({target}): {source}")]
    Connect {
        target: String,
        source: sea_orm::DbErr,
    },
    #[error("cannot create the directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the database file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot take the migration lock: {0}")]
    Lock(String),
    #[error("migration failed: {0}")]
    Migrate(sea_orm::DbErr),
    #[error("the database schema is behind this version of tobira: run `tobira migrate`")]
    Outdated,
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// One migration and whether the database has it (`tobira migrate status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationState {
    pub name: String,
    pub applied: bool,
}

/// Connections of the pool: checked out by a query or transaction, open and idle, and
/// the most it opens (`database.max_connections`, at least 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUse {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// The locks replicas share.
#[derive(Clone, Copy, Debug)]
pub enum Lock {
    Migrations,
    /// Creating the first signing key, so two replicas starting at once agree on one.
    SigningKeys,
}

impl Lock {
    /// PostgreSQL advisory lock keys: fixed numbers, the same in every replica
    /// ("tobira" in ASCII, then a counter).
    fn key(self) -> i64 {
        match self {
            Self::Migrations => 0x746f_6269_7261,
            Self::SigningKeys => 0x0074_6f62_6972_6101,
        }
    }

    fn file_extension(self) -> &'static str {
        match self {
            Self::Migrations => "migrate.lock",
            Self::SigningKeys => "keys.lock",
        }
    }
}

/// How long a PostgreSQL connection may sit in the pool and still be handed out without a
/// ping (HikariCP's "alive bypass window" is 500 ms). Under load connections come back
/// within milliseconds, so nearly every statement skips the ping; an idle replica pings.
const PING_AFTER_IDLE: Duration = Duration::from_millis(100);

impl Db {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        timeout: Duration,
    ) -> Result<Self, DbError> {
        let lock_path = sqlite_file(url);
        if let Some(parent) = lock_path.as_ref().and_then(|p| p.parent())
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| DbError::Directory {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        if let Some(file) = lock_path.as_deref().filter(|_| sqlite_may_create(url)) {
            create_private(file).map_err(|source| DbError::File {
                path: file.to_path_buf(),
                source,
            })?;
        }
        let mut options = ConnectOptions::new(url.to_owned());
        options
            // Migrations hold one connection for the lock and need another to work.
            .max_connections(max_connections.max(2))
            .connect_timeout(timeout)
            .acquire_timeout(timeout)
            .sqlx_logging(false)
            // In WAL mode `synchronous = NORMAL` syncs the log at checkpoints, not at every
            // commit: a commit survives a crash of Tobira (the log is in the OS's hands)
            // but the last ones before a power loss or kernel crash may be lost, never
            // corrupting the file. FULL (SQLite's default) costs an fsync per commit, the
            // largest part of a refresh on SQLite. Per connection, so set on each.
            .map_sqlx_sqlite_opts(|o| {
                // WAL lets readers run while a writer commits (persistent for the file;
                // set on every connection so that none runs before it is).
                o.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            });
        if url.starts_with("sqlite:") {
            // A SQLite connection cannot go stale under us (there is no server to restart),
            // and the check before each use is a round trip to the connection's thread:
            // as much as the query itself for the reads of a token request.
            options.test_before_acquire(false);
        } else {
            // A PostgreSQL connection is checked (a round trip) before use only when it sat
            // unused for PING_AFTER_IDLE: one in constant use showed it was alive with its
            // last answer, and a ping before every statement doubled the round trips of a
            // token check. One killed in between (a restart, `pg_terminate_backend`) fails
            // the statement that meets it and is dropped; the next one gets a live one.
            options.test_before_acquire_if_idle_for(PING_AFTER_IDLE);
        }
        let conn = Database::connect(options)
            .await
            .map_err(|source| DbError::Connect {
                target: redact_url(url),
                source,
            })?;
        // A file (an in-memory database is the pool's alone): the file sqlx opened, unless
        // the URL opens it read-only (the writer would write all the same).
        let (readers, writer) = if conn.get_database_backend() == DbBackend::Sqlite
            && lock_path.is_some()
            && !url.contains("mode=ro")
        {
            let pool = conn.get_sqlite_connection_pool();
            let file = pool.connect_options().get_filename().to_path_buf();
            (
                Some(Arc::new(super::readers::Readers::new(
                    file.clone(),
                    pool.options().get_max_connections() as usize,
                ))),
                Some(Arc::new(super::writer::Writer::new(file))),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            conn,
            lock_path,
            clients: Arc::default(),
            readers,
            writer,
        })
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Applies pending migrations, each logged as it is applied. Replicas starting
    /// together queue on a lock; whoever comes second finds nothing left to do.
    pub async fn migrate(&self) -> Result<(), DbError> {
        self.migrate_reporting(|name| tracing::info!(migration = name, "migration applied"))
            .await
            .map(drop)
    }

    /// Applies pending migrations one at a time under the lock, calling `applied` with
    /// each one's name once it is committed (so an operator watching `tobira migrate`
    /// sees which one a long or failing run is at); the names applied.
    pub async fn migrate_reporting(
        &self,
        mut applied: impl FnMut(&str),
    ) -> Result<Vec<String>, DbError> {
        let work = async {
            let mut names = Vec::new();
            loop {
                let pending = Migrator::get_pending_migrations(&self.conn).await?;
                let Some(next) = pending.first() else {
                    return Ok(names);
                };
                let name = next.name().to_owned();
                Migrator::up(&self.conn, Some(1)).await?;
                applied(&name);
                names.push(name);
            }
        };
        self.locked(Lock::Migrations, work)
            .await?
            .map_err(DbError::Migrate)
    }

    /// Every migration this binary knows, oldest first, and whether it is applied. Reads
    /// only: a database never migrated shows them all pending, and gains no table.
    pub async fn migration_status(&self) -> Result<Vec<MigrationState>, DbError> {
        let applied: std::collections::HashSet<String> =
            Migrator::get_applied_migrations_read_only(&self.conn)
                .await?
                .iter()
                .map(|m| m.name().to_owned())
                .collect();
        Ok(Migrator::get_migration_files()
            .iter()
            .map(|m| MigrationState {
                name: m.name().to_owned(),
                applied: applied.contains(m.name()),
            })
            .collect())
    }

    /// The connection pool's use now, for metrics.
    pub fn pool_use(&self) -> PoolUse {
        fn of<D: sqlx::Database>(pool: &sqlx::Pool<D>) -> PoolUse {
            let open = pool.size();
            let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
            PoolUse {
                in_use: open.saturating_sub(idle),
                idle,
                max: pool.options().get_max_connections(),
            }
        }
        match self.backend() {
            DbBackend::Postgres => of(self.conn.get_postgres_connection_pool()),
            _ => of(self.conn.get_sqlite_connection_pool()),
        }
    }

    /// Runs `work` while holding a lock shared by every replica: an advisory lock on
    /// PostgreSQL, a file lock beside a SQLite file (one machine).
    pub async fn locked<T>(&self, lock: Lock, work: impl Future<Output = T>) -> Result<T, DbError> {
        match self.backend() {
            DbBackend::Postgres => {
                let pool = self.conn.get_postgres_connection_pool();
                let mut lock_conn = pool
                    .acquire()
                    .await
                    .map_err(|e| DbError::Lock(e.to_string()))?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(lock.key())
                    .execute(&mut *lock_conn)
                    .await
                    .map_err(|e| DbError::Lock(e.to_string()))?;
                let result = work.await;
                let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(lock.key())
                    .execute(&mut *lock_conn)
                    .await;
                if unlocked.is_err() {
                    // Closing the session releases the lock for certain.
                    lock_conn.close_on_drop();
                }
                Ok(result)
            }
            _ => {
                let _guard = match &self.lock_path {
                    Some(path) => {
                        Some(lock_file(path.with_extension(lock.file_extension())).await?)
                    }
                    None => None,
                };
                Ok(work.await)
            }
        }
    }

    /// Fails unless every migration this binary knows has been applied.
    pub async fn check_schema(&self) -> Result<(), DbError> {
        let pending = Migrator::get_pending_migrations(&self.conn).await?;
        if pending.is_empty() {
            Ok(())
        } else {
            Err(DbError::Outdated)
        }
    }

    /// Readiness: the database answers a query.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.conn.ping().await?;
        Ok(())
    }

    /// SQLite's writer of refresh rotations (`None` on PostgreSQL).
    #[cfg(test)]
    pub(super) fn writer(&self) -> Option<&super::writer::Writer> {
        self.writer.as_deref()
    }

    /// SQLite's reading connections (`None` on PostgreSQL).
    pub(super) fn readers(&self) -> Option<&super::readers::Readers> {
        self.readers.as_deref()
    }

    /// The connection itself, for `store::bench` only (bulk writes of a benchmark).
    pub(super) fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn users(&self) -> UserRepo<'_> {
        UserRepo::new(&self.conn)
    }

    pub fn accounts(&self) -> super::AccountRepo<'_> {
        super::AccountRepo::new(&self.conn)
    }

    pub fn audit(&self) -> super::AuditRepo<'_> {
        super::AuditRepo::new(&self.conn)
    }

    pub fn clients(&self) -> ClientRepo<'_> {
        ClientRepo::new(&self.conn, &self.clients)
    }

    pub fn apps(&self) -> super::AppRepo<'_> {
        super::AppRepo::new(&self.conn)
    }

    pub fn consents(&self) -> ConsentRepo<'_> {
        ConsentRepo::new(&self.conn)
    }

    pub fn sessions(&self) -> SessionRepo<'_> {
        SessionRepo::new(&self.conn)
    }

    pub fn grants(&self) -> GrantRepo<'_> {
        GrantRepo::new(&self.conn, self.readers())
    }

    pub fn refresh_tokens(&self) -> RefreshTokenRepo<'_> {
        RefreshTokenRepo::new(&self.conn, self.writer.as_deref())
    }

    pub fn login_events(&self) -> LoginEventRepo<'_> {
        LoginEventRepo::new(&self.conn)
    }

    pub fn known_devices(&self) -> KnownDeviceRepo<'_> {
        KnownDeviceRepo::new(&self.conn)
    }

    pub fn jobs(&self) -> JobRepo<'_> {
        JobRepo::new(&self.conn)
    }

    pub fn email_changes(&self) -> super::EmailChangeRepo<'_> {
        super::EmailChangeRepo::new(&self.conn)
    }

    pub fn password_resets(&self) -> PasswordResetRepo<'_> {
        PasswordResetRepo::new(&self.conn)
    }

    pub fn passwords(&self) -> super::PasswordRepo<'_> {
        super::PasswordRepo::new(&self.conn)
    }

    pub fn signups(&self) -> SignupRepo<'_> {
        SignupRepo::new(&self.conn)
    }

    pub fn server_secrets(&self) -> ServerSecretRepo<'_> {
        ServerSecretRepo::new(&self.conn)
    }

    pub fn links(&self) -> super::LinkRepo<'_> {
        super::LinkRepo::new(&self.conn)
    }

    pub fn passkeys(&self) -> super::PasskeyRepo<'_> {
        super::PasskeyRepo::new(&self.conn)
    }

    pub fn two_step(&self) -> super::TwoStepRepo<'_> {
        super::TwoStepRepo::new(&self.conn)
    }

    pub fn signing_keys(&self) -> SigningKeyRepo<'_> {
        SigningKeyRepo::new(&self.conn)
    }

    /// Every value sealed with the master key (master-key rotation).
    pub fn sealed(&self) -> super::SealedRepo<'_> {
        super::SealedRepo::new(&self.conn)
    }

    pub async fn close(self) -> Result<(), DbError> {
        if let Some(readers) = &self.readers {
            readers.close();
        }
        if let Some(writer) = &self.writer {
            writer.close();
        }
        self.conn.close().await?;
        Ok(())
    }
}

/// Holds an exclusive `flock` on the file until dropped.
async fn lock_file(path: PathBuf) -> Result<std::fs::File, DbError> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| DbError::Lock(format!("{}: {e}", path.display())))?;
        file.lock()
            .map_err(|e| DbError::Lock(format!("{}: {e}", path.display())))?;
        Ok(file)
    })
    .await
    .map_err(|e| DbError::Lock(e.to_string()))?
}

/// Creates an empty SQLite file readable by its owner only (like `master.key`: it holds
/// password hashes and sessions), unless it exists. SQLite would create it with the
/// umask's mode (usually 0644), and gives its `-wal` and `-shm` files the mode of the
/// database file, so creating it first is enough. An existing file is left as it is.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether the URL lets SQLite create a missing file (`mode=rwc`); otherwise a missing
/// file must stay an error, not become an empty database.
fn sqlite_may_create(url: &str) -> bool {
    url.split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p == "mode=rwc"))
}

/// The file behind a `sqlite:` URL, if it names one (not `sqlite::memory:`).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        None
    } else {
        Some(PathBuf::from(path))
    }
}

/// A database URL fit for an error message: the password replaced.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://./data/tobira.db?mode=rwc"),
            Some("./data/tobira.db".into())
        );
        assert_eq!(sqlite_file("sqlite:/tmp/x.db"), Some("/tmp/x.db".into()));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://localhost/x"), None);
    }

    #[test]
    fn only_rwc_urls_may_create_the_file() {
        assert!(sqlite_may_create("sqlite://./data/tobira.db?mode=rwc"));
        assert!(sqlite_may_create("sqlite:/x.db?cache=shared&mode=rwc"));
        assert!(!sqlite_may_create("sqlite:/x.db"));
        assert!(!sqlite_may_create("sqlite:/x.db?mode=rw"));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_sqlite_database_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("tobira.db");
        let db = Db::connect(
            &format!("sqlite://{}?mode=rwc", path.display()),
            2,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        db.migrate().await.unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "the database file");
        // WAL mode: recent writes live in the -wal file until a checkpoint.
        let wal = path.with_extension("db-wal");
        assert!(wal.exists());
        assert_eq!(mode(&wal), 0o600, "the WAL file");
        db.close().await.unwrap();

        // An operator's own mode on an existing file is kept.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let db = Db::connect(
            &format!("sqlite://{}?mode=rwc", path.display()),
            2,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        db.check_schema().await.unwrap();
        assert_eq!(mode(&path), 0o640);
        db.close().await.unwrap();
    }

    /// Every pooled connection runs in WAL mode with `synchronous = NORMAL` (a per
    /// connection setting: one `PRAGMA` after connecting would reach only one of them).
    #[tokio::test]
    async fn every_sqlite_connection_syncs_at_checkpoints_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = Db::connect(&url, 3, Duration::from_secs(5)).await.unwrap();
        // Hold three connections at once so that three distinct ones answer.
        let pool = db.conn.get_sqlite_connection_pool();
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut conn = pool.acquire().await.unwrap();
            let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            let (journal,): (String,) = sqlx::query_as("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(sync, 1, "synchronous = NORMAL");
            assert_eq!(journal, "wal");
            held.push(conn);
        }
        drop(held);
        db.close().await.unwrap();
    }

    #[test]
    fn passwords_never_reach_error_messages() {
        assert_eq!(
            redact_url("postgres://u:hunter2@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
    }
}
