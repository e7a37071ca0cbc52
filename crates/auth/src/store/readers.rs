//! SQLite connections of their own for the read every use of an access token makes (the
//! grant with its session and member: each `/userinfo`, introspection, access-token check;
//! a refresh reads it inside its rotation's transaction, see [`super::writer`]), run on
//! the calling thread.
//!
//! sqlx runs each SQLite connection on a thread of its own: a query is handed to that
//! thread and its rows handed back, and its pool pings every connection it gets back
//! (`PoolConnection::return_to_pool` in sqlx-core 0.9, unconditional), a second trip.
//! On this read, one indexed statement whose pages are in memory, those thread hand-offs
//! cost several times the query (`benches/store.rs`, in the process's CPU time). Here the
//! statement runs where the request runs, as a signature check does, on connections
//! opened with `query_only` (they cannot write) and kept with their prepared statement.
//!
//! Nothing here waits: in WAL mode a reader never waits for a writer, and the busy
//! timeout is zero, so the rare case where SQLite would make a reader wait (a connection
//! recovering the log after a crash, one holding the file in exclusive mode) is an error
//! at once, and the caller reads on the pool instead, which waits on its own thread. What
//! can take time is the disk, when a page is in neither SQLite's cache nor the kernel's;
//! a grant is a few pages of a small file, and every token use keeps them warm.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// At most this many idle connections are kept (one per thread reading at once).
    keep: usize,
    closed: AtomicBool,
    /// Reads that failed here and were read on the pool instead (see the module's doc).
    pub(crate) fallbacks: Fallbacks,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("path", &self.path)
            .field("idle", &self.idle_count())
            .field("fallbacks", &self.fallbacks.get())
            .finish()
    }
}

/// Why a statement did not run on a connection of its own (a reader, the writer): the
/// caller runs it on the pool instead.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotHere {
    #[error("the database is closed")]
    Closed,
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// How many statements ran on the pool instead (see [`NotHere`]), each logged and
/// counted in `tobira_sqlite_fallbacks_total` under `path` (`read`, `rotation`).
#[derive(Debug)]
pub(crate) struct Fallbacks {
    n: AtomicU64,
    path: &'static str,
}

impl Fallbacks {
    pub(crate) fn new(path: &'static str) -> Self {
        Self {
            n: AtomicU64::new(0),
            path,
        }
    }

    pub(crate) fn count(&self, error: &NotHere) {
        self.n.fetch_add(1, Ordering::Relaxed);
        crate::ops::sqlite_fallback(self.path);
        // Busy is SQLite asking to wait (see the module's doc); anything else (a value
        // this module cannot read, an I/O error) is worth a look.
        if matches!(error, NotHere::Closed) || matches!(error, NotHere::Sqlite(e) if is_busy(e)) {
            tracing::debug!(%error, "run on the pool instead");
        } else {
            tracing::warn!(%error, "SQLite statement failed on its own connection, run on the pool instead");
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.n.load(Ordering::Relaxed)
    }
}

impl Readers {
    /// Readers of the SQLite file at `path` (a database the pool has opened and
    /// migrated), keeping at most `keep` idle connections.
    pub(crate) fn new(path: PathBuf, keep: usize) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
            keep: keep.max(1),
            closed: AtomicBool::new(false),
            fallbacks: Fallbacks::new("read"),
        }
    }

    /// Runs `read` on an idle reading connection (one is opened if none is idle; at most
    /// `keep` are kept). An error other than busy drops the connection: a new one is
    /// opened next time.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, NotHere> {
        if self.closed.load(Ordering::Acquire) {
            return Err(NotHere::Closed);
        }
        let idle = self.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let answer = match read(&conn) {
            Ok(answer) => answer,
            Err(e) => {
                // A busy file is no fault of the connection's: it is kept.
                if is_busy(&e) {
                    self.put_back(conn);
                }
                return Err(e.into());
            }
        };
        self.put_back(conn);
        Ok(answer)
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self.lock();
        // Closed meanwhile: checked under the lock `close` clears the list under, so no
        // connection is kept after it.
        if idle.len() < self.keep && !self.closed.load(Ordering::Acquire) {
            idle.push(conn);
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = open_unwaiting(&self.path)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }

    /// Closes every idle connection; one in use is closed when its read ends. A read
    /// after this answers `Closed` (and the pool, closed too, fails it).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A panic while pushing or popping leaves a valid list.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections open and waiting for a reader.
    pub(crate) fn idle_count(&self) -> usize {
        self.lock().len()
    }
}

/// A connection to the SQLite file at `path` (not created: the pool made and migrated
/// it) that never waits for a lock: SQLite answers busy at once (rusqlite's default is
/// to wait 5 s, on the caller's thread).
pub(crate) fn open_unwaiting(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::ZERO)?;
    Ok(conn)
}

/// Whether SQLite asked to wait for a lock (see [`open_unwaiting`]).
pub(crate) fn is_busy(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}

/// A time as sqlx binds an `OffsetDateTime` on SQLite (RFC 3339 text): what the pool's
/// statements compare with.
pub(crate) fn sqlite_time(at: time::OffsetDateTime) -> rusqlite::Result<String> {
    at.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))
}

/// The values of one row, read in the order of its statement's columns, each checked
/// against the column's name (a statement whose columns moved is an error, never a value
/// put in the wrong field).
pub(crate) struct Columns<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    next: usize,
}

impl<'r, 's> Columns<'r, 's> {
    pub(crate) fn new(row: &'r rusqlite::Row<'s>) -> Self {
        Self { row, next: 0 }
    }

    fn value(&mut self, name: &str) -> rusqlite::Result<rusqlite::types::ValueRef<'r>> {
        let at = self.next;
        self.next += 1;
        let column = self.row.as_ref().column_name(at)?;
        if column != name {
            return Err(rusqlite::Error::InvalidColumnName(format!(
                "column {at} is {column}, expected {name}"
            )));
        }
        self.row.get_ref(at)
    }

    fn failed(
        &self,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(
            self.next - 1,
            rusqlite::types::Type::Text,
            error.into(),
        )
    }

    /// Passes over `count` columns (a joined row that is all NULL).
    pub(crate) fn skip(&mut self, count: usize) {
        self.next += count;
    }

    /// Every column was read: a statement with more columns than its reader is an error.
    pub(crate) fn end(&self) -> rusqlite::Result<()> {
        let count = self.row.as_ref().column_count();
        if self.next == count {
            Ok(())
        } else {
            Err(rusqlite::Error::InvalidColumnIndex(self.next))
        }
    }

    /// Whether the next column is NULL, consuming it if so.
    pub(crate) fn null(&mut self, name: &str) -> rusqlite::Result<bool> {
        let at = self.next;
        let null = matches!(self.value(name)?, rusqlite::types::ValueRef::Null);
        if !null {
            self.next = at;
        }
        Ok(null)
    }

    pub(crate) fn text(&mut self, name: &str) -> rusqlite::Result<String> {
        let value = self.value(name)?;
        Ok(value.as_str()?.to_owned())
    }

    pub(crate) fn opt_text(&mut self, name: &str) -> rusqlite::Result<Option<String>> {
        Ok(if self.null(name)? {
            None
        } else {
            Some(self.text(name)?)
        })
    }

    pub(crate) fn bool(&mut self, name: &str) -> rusqlite::Result<bool> {
        Ok(self.value(name)?.as_i64()? != 0)
    }

    /// A UUID as sqlx binds one on SQLite: its 16 bytes.
    pub(crate) fn uuid(&mut self, name: &str) -> rusqlite::Result<uuid::Uuid> {
        let value = self.value(name)?;
        uuid::Uuid::from_slice(value.as_blob()?).map_err(|e| self.failed(e))
    }

    pub(crate) fn opt_uuid(&mut self, name: &str) -> rusqlite::Result<Option<uuid::Uuid>> {
        Ok(if self.null(name)? {
            None
        } else {
            Some(self.uuid(name)?)
        })
    }

    /// A time as sqlx binds an `OffsetDateTime` on SQLite: RFC 3339 text.
    pub(crate) fn time(&mut self, name: &str) -> rusqlite::Result<time::OffsetDateTime> {
        let value = self.value(name)?;
        time::OffsetDateTime::parse(
            value.as_str()?,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| self.failed(e))
    }

    pub(crate) fn opt_time(
        &mut self,
        name: &str,
    ) -> rusqlite::Result<Option<time::OffsetDateTime>> {
        Ok(if self.null(name)? {
            None
        } else {
            Some(self.time(name)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use crate::clock::Clock;
    use crate::store::Db;

    /// A SQLite database in WAL mode, as the server opens it, with a member's `sessions`
    /// live sessions and their grants; the grants' ids.
    async fn seeded(dir: &tempfile::TempDir, sessions: usize) -> (Db, Clock, Vec<Uuid>) {
        let url = format!("sqlite://{}/tobira.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url, 4, Duration::from_secs(5)).await.unwrap();
        db.migrate().await.unwrap();
        let clock = Clock::system();
        let fixture = crate::store::bench::fixture(&db, &clock, sessions)
            .await
            .unwrap();
        use crate::store::entity::grants;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let grants: Vec<Uuid> = grants::Entity::find()
            .filter(grants::Column::UserId.eq(fixture.user_id.0))
            .all(db.conn())
            .await
            .unwrap()
            .into_iter()
            .map(|g| g.id)
            .collect();
        assert_eq!(grants.len(), sessions);
        (db, clock, grants)
    }

    async fn same_as_the_pool(db: &Db, id: Uuid) -> crate::store::FullGrant {
        let read = db.grants().find_full(id).await.unwrap().expect("found");
        let pooled = crate::store::bench::find_full_pooled(db, id)
            .await
            .unwrap()
            .expect("found");
        assert_eq!(format!("{read:?}"), format!("{pooled:?}"));
        read
    }

    /// What a reading connection answers is what sea-orm's pool answers, every column
    /// (a session ended, a member frozen, a grant without a session, with the optional
    /// columns set), and a write is seen by the next read on a connection that read
    /// before it (no read transaction is left open to pin an old snapshot: a revoked
    /// grant must stop counting at once).
    #[tokio::test]
    async fn reads_answer_as_the_pool_does_and_see_each_write_at_once() {
        use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait};
        let dir = tempfile::tempdir().unwrap();
        let (db, clock, grants) = seeded(&dir, 3).await;
        for &id in &grants {
            let read = same_as_the_pool(&db, id).await;
            assert!(read.session.is_some() && read.grant.revoked_at.is_none());
        }
        assert!(
            db.grants()
                .find_full(Uuid::new_v4())
                .await
                .unwrap()
                .is_none()
        );
        let readers = db.readers().unwrap();
        assert_eq!(readers.idle_count(), 1, "one kept");

        db.grants().revoke(grants[0], clock.now()).await.unwrap();
        let after = same_as_the_pool(&db, grants[0]).await;
        assert!(after.grant.revoked_at.is_some(), "the revocation is seen");
        let session = after.session.unwrap();
        db.sessions().end(session.id, clock.now()).await.unwrap();
        let after = same_as_the_pool(&db, grants[0]).await;
        assert!(
            after.session.unwrap().ended_at.is_some(),
            "the sign-out is seen"
        );

        // Every optional column of the member set, and a grant without a session.
        use crate::store::entity::users;
        let user = after.user.id.0;
        users::ActiveModel {
            id: sea_orm::ActiveValue::Unchanged(user),
            password_hash: Set(None),
            status: Set("frozen".to_owned()),
            deleted_at: Set(Some(clock.now())),
            frozen_reason: Set(Some("調査中 / under review".to_owned())),
            purged_at: Set(Some(clock.now())),
            webauthn_handle: Set(Some(Uuid::new_v4())),
            federated_unverified: Set(true),
            ..Default::default()
        }
        .update(db.conn())
        .await
        .unwrap();
        db.conn()
            .execute_unprepared(&format!(
                "UPDATE grants SET session_id = NULL WHERE id = x'{}'",
                grants[1].simple()
            ))
            .await
            .unwrap();
        let read = same_as_the_pool(&db, grants[1]).await;
        assert!(read.session.is_none());
        // Every column of the three rows, as sea-orm reads them (the domain types leave
        // some out).
        for &id in &grants[..2] {
            let here = readers
                .read(|c| crate::store::sessions::read_full_grant(c, id))
                .unwrap()
                .unwrap();
            let pooled = crate::store::sessions::full_grant_select(id)
                .one(db.conn())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(here, pooled);
        }
        assert_eq!(
            read.user.frozen_reason.as_deref(),
            Some("調査中 / under review")
        );
        assert_eq!(readers.fallbacks.get(), 0, "{readers:?}");
    }

    /// A read SQLite would make wait (here another connection holds the file in exclusive
    /// mode) fails at once: nothing waits on the caller's thread.
    #[test]
    fn a_read_sqlite_would_make_wait_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.db");
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (x); \
                 PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);",
            )
            .unwrap();
        let readers = super::Readers::new(path, 1);
        let started = std::time::Instant::now();
        let read =
            readers.read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)));
        let Err(super::NotHere::Sqlite(error)) = read else {
            panic!("{read:?}");
        };
        assert_eq!(
            error.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy)
        );
        assert!(started.elapsed() < Duration::from_secs(1), "it waited");
        holder.execute_batch("COMMIT;").unwrap();
        drop(holder);
        assert_eq!(
            readers
                .read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
                .unwrap(),
            1
        );
    }

    /// A read the reading connections cannot answer (here: closed alone) is read on the
    /// pool, counted.
    #[tokio::test]
    async fn a_read_that_fails_here_is_read_on_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _, grants) = seeded(&dir, 1).await;
        let readers = db.readers().unwrap();
        readers.close();
        assert_eq!(readers.fallbacks.get(), 0);
        let read = same_as_the_pool(&db, grants[0]).await;
        assert_eq!(read.grant.id, grants[0]);
        assert_eq!(readers.fallbacks.get(), 1, "{readers:?}");
    }

    /// Each fallback is counted for operators under its path, whatever the cause.
    #[test]
    fn each_fallback_is_counted_in_the_metric_under_its_path() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let (read, rotation) = (
                super::Fallbacks::new("read"),
                super::Fallbacks::new("rotation"),
            );
            read.count(&super::NotHere::Closed);
            read.count(&super::NotHere::Sqlite(rusqlite::Error::InvalidQuery));
            rotation.count(&super::NotHere::Closed);
            assert_eq!((read.get(), rotation.get()), (2, 1));
        });
        let text = handle.render();
        assert!(
            text.contains("tobira_sqlite_fallbacks_total{path=\"read\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("tobira_sqlite_fallbacks_total{path=\"rotation\"} 1"),
            "{text}"
        );
    }

    /// However many threads read at once, at most `keep` connections stay open after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keeps_at_most_its_bound_of_idle_connections() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _, grants) = seeded(&dir, 16).await;
        let readers = std::sync::Arc::new(super::Readers::new(dir.path().join("tobira.db"), 2));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let readers = readers.clone();
                let grants = grants.clone();
                std::thread::spawn(move || {
                    for id in grants {
                        let found: bool = readers
                            .read(|c| {
                                c.query_row(
                                    "SELECT count(*) FROM grants WHERE id = ?1",
                                    [id.as_bytes()],
                                    |r| r.get::<_, i64>(0),
                                )
                            })
                            .unwrap()
                            == 1;
                        assert!(found);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!((1..=2).contains(&readers.idle_count()), "{readers:?}");
        drop(db);
    }

    /// Reading connections cannot write.
    #[tokio::test]
    async fn reading_connections_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, _, grants) = seeded(&dir, 1).await;
        let readers = super::Readers::new(dir.path().join("tobira.db"), 1);
        let wrote =
            readers.read(|c| c.execute("DELETE FROM grants WHERE id = ?1", [grants[0].as_bytes()]));
        assert!(wrote.is_err(), "{wrote:?}");
    }

    /// Closing the database closes its reading connections: a read then fails, as one on
    /// the closed pool does (readiness and the token checks report the store gone).
    #[tokio::test]
    async fn closed_with_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _, grants) = seeded(&dir, 1).await;
        assert!(db.grants().find_full(grants[0]).await.unwrap().is_some());
        db.clone().close().await.unwrap();
        assert!(db.grants().find_full(grants[0]).await.is_err());
        assert_eq!(db.readers().unwrap().idle_count(), 0);
    }

    /// A statement whose columns are not where its reader expects them is an error (and
    /// read on the pool), never a value in the wrong field.
    #[tokio::test]
    async fn columns_are_read_by_name_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, _, _) = seeded(&dir, 1).await;
        let readers = super::Readers::new(dir.path().join("tobira.db"), 1);
        let read = |sql: &'static str| {
            readers.read(|c| {
                c.query_row(sql, [], |row| {
                    let mut cols = super::Columns::new(row);
                    let id = cols.text("a")?;
                    cols.end()?;
                    Ok(id)
                })
            })
        };
        assert_eq!(read("SELECT 'x' AS a").unwrap(), "x");
        assert!(read("SELECT 'x' AS b").is_err(), "another name");
        assert!(read("SELECT 'x' AS a, 'y' AS b").is_err(), "a column more");
        assert!(read("SELECT 1 AS a").is_err(), "another type");
    }
}
