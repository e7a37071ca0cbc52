//! One SQLite connection of its own for the refresh token's rotation (spend, read of the
//! grant, successor or revocation, commit), run as one transaction in the calling thread.
//!
//! Through sqlx the rotation is five statements (begin, spend, read, insert, commit), each
//! handed to the connection's thread and back, with the file's write lock held across
//! every hand-off: concurrent rotations then wait for it in SQLite's busy handler, which
//! sleeps between tries. Here the transaction holds the write lock only while its
//! statements run, tens of microseconds, and rotations of this process queue for the
//! connection on a mutex held for no longer (its checkpoints run elsewhere, below). A
//! fair async mutex was tried and measured worse: it hands the connection to the next
//! waiter, which runs only when its thread is free, after the current task's signatures
//! (hundreds of µs), so the connection stood unused while others queued (load.sh:
//! 1,429–1,502 rotations/s with the server's CPU at 116 %, against 2,055–2,115).
//!
//! Nor for the file: the busy timeout is zero, so while another connection writes (a
//! pool's transaction, `tobira` on the command line) beginning fails at once, and the
//! rotation sleeps and tries again, for at most [`BUSY_PATIENCE`], then runs on the pool,
//! which waits off the runtime's thread. Once begun, a transaction cannot be made to wait
//! (WAL: readers never block a writer). A failure of SQLite's rolls it back and the
//! rotation runs on the pool; nothing was committed.
//!
//! The writer does not checkpoint the log itself (a checkpoint syncs the file, which could
//! hold a runtime thread for milliseconds): every [`CHECKPOINT_EVERY`] commits a passive
//! checkpoint runs on the blocking pool, beside the automatic ones of the pool's
//! connections.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use rusqlite::{Connection, TransactionBehavior};

use super::readers::{Fallbacks, NotHere, is_busy, open_unwaiting};

/// How long a transaction waits for another connection's write before it goes to the
/// pool (a pool's transaction lasts milliseconds; `tobira` on the command line may hold
/// the file longer).
pub(crate) const BUSY_PATIENCE: std::time::Duration = std::time::Duration::from_millis(200);

/// The pause between two tries (tokio's timer counts in milliseconds).
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Commits between two checkpoints: a rotation adds a few pages to the log, so about
/// SQLite's own 1,000-page threshold.
pub(crate) const CHECKPOINT_EVERY: u32 = 256;

pub(crate) struct Writer {
    path: PathBuf,
    conn: std::sync::Mutex<Option<Connection>>,
    closed: AtomicBool,
    /// Transactions that could not run here and ran on the pool instead.
    pub(crate) fallbacks: Fallbacks,
    commits: AtomicU32,
    /// Passive checkpoints run (tests read it).
    checkpoints: Arc<AtomicU32>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.path)
            .field("fallbacks", &self.fallbacks.get())
            .finish()
    }
}

impl Writer {
    /// The writer of the SQLite file at `path` (a database the pool has opened and
    /// migrated).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            conn: std::sync::Mutex::new(None),
            closed: AtomicBool::new(false),
            fallbacks: Fallbacks::new("rotation"),
            commits: AtomicU32::new(0),
            checkpoints: Arc::default(),
        }
    }

    /// Runs `work` in an immediate transaction, committed if it answers `Ok((_, true))`,
    /// rolled back otherwise, waiting while another connection writes: asleep between
    /// tries (never in SQLite's busy handler), for at most [`BUSY_PATIENCE`]. `Err` when it
    /// could not begin (nothing was done); the inner result is the work's.
    ///
    /// Sending every rotation that meets a busy file to the pool at once would feed on
    /// itself: a rotation there holds the write lock across its hand-offs, so the next
    /// ones find the file busy and follow it, and the writer stood idle for whole load
    /// runs.
    pub(crate) async fn transaction<T, E: From<rusqlite::Error>>(
        &self,
        mut work: impl FnMut(&rusqlite::Transaction<'_>) -> Result<(T, bool), E>,
    ) -> Result<Result<T, E>, NotHere> {
        let started = tokio::time::Instant::now();
        loop {
            match self.try_once(&mut work) {
                Err(NotHere::Sqlite(e)) if is_busy(&e) && started.elapsed() < BUSY_PATIENCE => {
                    tokio::time::sleep(BUSY_PAUSE).await;
                }
                done => return done,
            }
        }
    }

    fn try_once<T, E: From<rusqlite::Error>>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(T, bool), E>,
    ) -> Result<Result<T, E>, NotHere> {
        // A panic in a transaction dropped it (rolled back) and its connection.
        let mut slot = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Checked under the lock `close` takes: after it, nothing is opened or kept.
        if self.closed.load(Ordering::Acquire) {
            *slot = None;
            return Err(NotHere::Closed);
        }
        let mut conn = match slot.take() {
            Some(conn) => conn,
            None => self.open().map_err(NotHere::Sqlite)?,
        };
        let (outcome, committed) = match run(&mut conn, work) {
            Ok(done) => done,
            Err(e) => {
                // A busy file is no fault of the connection's: it is kept.
                if is_busy(&e) {
                    *slot = Some(conn);
                }
                return Err(NotHere::Sqlite(e));
            }
        };
        // Kept only after a transaction that ended cleanly (committed or rolled back).
        if outcome.is_ok() && conn.is_autocommit() {
            *slot = Some(conn);
        }
        drop(slot);
        if committed {
            self.after_commit();
        }
        Ok(outcome)
    }

    /// Every [`CHECKPOINT_EVERY`] commits, a passive checkpoint on the blocking pool (it
    /// copies what no reader still needs from the log into the file, and syncs it).
    fn after_commit(&self) {
        let commits = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        if !commits.is_multiple_of(CHECKPOINT_EVERY) {
            return;
        }
        let (path, done) = (self.path.clone(), self.checkpoints.clone());
        tokio::task::spawn_blocking(move || {
            let checkpoint = open_unwaiting(&path)
                .and_then(|conn| conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())));
            match checkpoint {
                Ok(()) => {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                // The pool's connections still checkpoint on their own.
                Err(error) => tracing::debug!(%error, "passive checkpoint failed"),
            }
        });
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = open_unwaiting(&self.path)?;
        // As the pool's connections (`Db::connect`; foreign keys are sqlx's default),
        // except that its commits never checkpoint (see the module's doc).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(conn)
    }

    /// Closes the connection; one in a transaction is closed when it ends (the next
    /// transaction finds `closed` under the lock).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut slot) = self.conn.try_lock() {
            *slot = None;
        }
    }

    #[cfg(test)]
    pub(crate) fn checkpoints(&self) -> u32 {
        self.checkpoints.load(Ordering::Relaxed)
    }
}

/// `work` in an immediate transaction on `conn`, and whether it committed: `Err` when it
/// could not begin. A rollback that fails is the work's error.
fn run<T, E: From<rusqlite::Error>>(
    conn: &mut Connection,
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(T, bool), E>,
) -> rusqlite::Result<(Result<T, E>, bool)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    Ok(match work(&tx) {
        Ok((answer, true)) => match tx.commit() {
            Ok(()) => (Ok(answer), true),
            Err(e) => (Err(E::from(e)), false),
        },
        Ok((answer, false)) => (tx.rollback().map(|()| answer).map_err(E::from), false),
        // Dropped: rolled back.
        Err(e) => (Err(e), false),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration as StdDuration;

    use time::Duration;
    use uuid::Uuid;

    use crate::clock::Clock;
    use crate::store::{Db, Decision, Rotated};

    /// A SQLite file as the server opens it, with one member's live session and grant;
    /// the grant's id.
    async fn seeded(dir: &tempfile::TempDir) -> (Db, Clock, Uuid) {
        let url = format!("sqlite://{}/tobira.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url, 4, StdDuration::from_secs(5))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let clock = Clock::manual_at_now();
        let fixture = crate::store::bench::fixture(&db, &clock, 1).await.unwrap();
        use crate::store::entity::grants;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let grant = grants::Entity::find()
            .filter(grants::Column::UserId.eq(fixture.user_id.0))
            .one(db.conn())
            .await
            .unwrap()
            .unwrap()
            .id;
        (db, clock, grant)
    }

    async fn issue(db: &Db, clock: &Clock, grant: Uuid) -> String {
        let issued = db
            .refresh_tokens()
            .issue(clock, &mut rand::rng(), grant, Duration::days(1));
        issued.await.unwrap()
    }

    async fn present(
        db: &Db,
        clock: &Clock,
        token: &str,
        decision: fn(&crate::store::FullGrant) -> Decision<&'static str>,
    ) -> Rotated<&'static str> {
        let rotation = db
            .refresh_tokens()
            .rotate(&mut rand::rng(), token, clock.now(), decision);
        rotation.await.unwrap()
    }

    /// A transaction of the pool's that has written (so holds the file's write lock),
    /// committed after `for_how_long`.
    async fn hold_a_write(db: &Db, for_how_long: StdDuration) -> tokio::task::JoinHandle<()> {
        use sea_orm::{ConnectionTrait, TransactionTrait};
        let txn = db.conn().begin().await.unwrap();
        txn.execute_unprepared("UPDATE users SET locale = 'en'")
            .await
            .unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(for_how_long).await;
            txn.commit().await.unwrap();
        })
    }

    fn issue_for_a_week(_: &crate::store::FullGrant) -> Decision<&'static str> {
        Decision::Issue(Duration::days(7))
    }

    /// Every outcome of a rotation, written by the writer (no fallback) and read back
    /// through sea-orm as the pool's rotation writes it: a successor live for its
    /// lifetime, the spend, a kept token untouched, a revoked grant, and a reused, an
    /// expired and an unknown token told apart.
    #[tokio::test]
    async fn rotations_on_the_writer_write_what_the_pool_would() {
        let dir = tempfile::tempdir().unwrap();
        let (db, clock, grant) = seeded(&dir).await;
        let writer = db.writer().unwrap();

        let first = issue(&db, &clock, grant).await;
        clock.advance(Duration::seconds(5));
        let Rotated::Issued {
            token: second,
            grant: full,
        } = present(&db, &clock, &first, issue_for_a_week).await
        else {
            panic!("not issued");
        };
        assert_eq!(full.grant.id, grant);
        let old = db.refresh_tokens().find(&first).await.unwrap().unwrap();
        assert!(old.spent, "the presented token is spent");
        let new = db.refresh_tokens().find(&second).await.unwrap().unwrap();
        assert!(!new.spent);
        assert_eq!((new.grant_id, new.created_at), (grant, clock.now()));
        assert_eq!(new.expires_at, clock.now() + Duration::days(7));
        // Stored as the pool stores the same instant, character for character (the
        // spend compares `expires_at` as text).
        let pooled = issue(&db, &clock, grant).await;
        let stored = |token: &str| {
            let conn = rusqlite::Connection::open(dir.path().join("tobira.db")).unwrap();
            conn.query_row(
                "SELECT created_at, typeof(grant_id) FROM refresh_tokens WHERE token_hash = ?1",
                [crate::crypto::sha256_hex(token)],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
            )
            .unwrap()
        };
        assert_eq!(stored(&second), stored(&pooled));
        assert_eq!(stored(&second).1, "blob");

        // Kept: nothing written.
        let kept = present(&db, &clock, &second, |_| Decision::Keep("no")).await;
        assert!(matches!(kept, Rotated::Kept("no")));
        assert!(
            !db.refresh_tokens()
                .find(&second)
                .await
                .unwrap()
                .unwrap()
                .spent
        );

        // Reused: the spent one again (nothing written).
        let reused = present(&db, &clock, &first, issue_for_a_week).await;
        assert!(matches!(reused, Rotated::Reused { grant_id } if grant_id == grant));

        // Unknown, expired.
        let unknown = present(&db, &clock, "no-such-token", issue_for_a_week).await;
        assert!(matches!(unknown, Rotated::Unknown));
        let third = issue(&db, &clock, grant).await;
        clock.advance(Duration::days(2));
        let expired = present(&db, &clock, &third, issue_for_a_week).await;
        assert!(matches!(expired, Rotated::Expired));
        assert!(
            !db.refresh_tokens()
                .find(&third)
                .await
                .unwrap()
                .unwrap()
                .spent
        );

        // Revoked: spent, and the grant ends.
        let fourth = issue(&db, &clock, grant).await;
        let revoked = present(&db, &clock, &fourth, |_| Decision::Revoke("leak")).await;
        assert!(matches!(revoked, Rotated::Revoked("leak")));
        assert!(
            db.refresh_tokens()
                .find(&fourth)
                .await
                .unwrap()
                .unwrap()
                .spent
        );
        let full = db.grants().find_full(grant).await.unwrap().unwrap();
        assert_eq!(full.grant.revoked_at, Some(clock.now()));
        assert_eq!(writer.fallbacks.get(), 0, "{writer:?}");
    }

    /// While another connection writes for longer than the writer waits (a transaction
    /// of the pool's held open), the rotation runs on the pool, which waits its turn off
    /// the runtime's thread, and answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn while_another_connection_writes_the_rotation_runs_on_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let (db, clock, grant) = seeded(&dir).await;
        let token = issue(&db, &clock, grant).await;
        let writer = db.writer().unwrap();

        let holder = hold_a_write(&db, super::BUSY_PATIENCE * 3).await;
        let started = std::time::Instant::now();
        let rotated = present(&db, &clock, &token, issue_for_a_week).await;
        assert!(matches!(rotated, Rotated::Issued { .. }));
        assert_eq!(writer.fallbacks.get(), 1, "{writer:?}");
        assert!(
            started.elapsed() >= super::BUSY_PATIENCE * 2,
            "it did not wait"
        );
        holder.await.unwrap();
    }

    /// A write of another connection's that ends within the writer's patience is waited
    /// for (asleep, the runtime free meanwhile), and the rotation runs on the writer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_write_elsewhere_is_waited_for_and_the_writer_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let (db, clock, grant) = seeded(&dir).await;
        let token = issue(&db, &clock, grant).await;
        let writer = db.writer().unwrap();

        let holder = hold_a_write(&db, super::BUSY_PATIENCE / 10).await;
        let started = std::time::Instant::now();
        let rotated = present(&db, &clock, &token, issue_for_a_week).await;
        assert!(matches!(rotated, Rotated::Issued { .. }));
        assert!(
            started.elapsed() >= super::BUSY_PATIENCE / 20,
            "it did not wait"
        );
        assert_eq!(writer.fallbacks.get(), 0, "{writer:?}");
        holder.await.unwrap();
    }

    /// Of many concurrent presentations of one token exactly one is issued a successor;
    /// every other one finds it spent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_concurrent_presentations_exactly_one_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let (db, clock, grant) = seeded(&dir).await;
        let token = issue(&db, &clock, grant).await;
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (db, clock, token) = (db.clone(), clock.clone(), token.clone());
                tokio::spawn(async move { present(&db, &clock, &token, issue_for_a_week).await })
            })
            .collect();
        let mut issued = 0;
        for task in tasks {
            match task.await.unwrap() {
                Rotated::Issued { .. } => issued += 1,
                Rotated::Reused { .. } => {}
                _ => panic!("neither issued nor reused"),
            }
        }
        assert_eq!(issued, 1);
    }

    /// The writer's commits do not checkpoint the log on the caller's thread: every
    /// `CHECKPOINT_EVERY` commits one runs on the blocking pool.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_checkpointed_off_the_thread_every_so_many_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (db, clock, grant) = seeded(&dir).await;
        let writer = db.writer().unwrap();
        let mut token = issue(&db, &clock, grant).await;
        for _ in 0..super::CHECKPOINT_EVERY {
            let Rotated::Issued { token: next, .. } =
                present(&db, &clock, &token, issue_for_a_week).await
            else {
                panic!("not issued");
            };
            token = next;
        }
        for _ in 0..100 {
            if writer.checkpoints() > 0 {
                break;
            }
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
        assert_eq!(writer.checkpoints(), 1, "{writer:?}");
        assert_eq!(writer.fallbacks.get(), 0, "{writer:?}");
    }

    /// Closed with the database: a rotation then fails as one on the closed pool does.
    #[tokio::test]
    async fn closed_with_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let (db, clock, grant) = seeded(&dir).await;
        let token = issue(&db, &clock, grant).await;
        db.clone().close().await.unwrap();
        let rotation =
            db.refresh_tokens()
                .rotate(&mut rand::rng(), &token, clock.now(), issue_for_a_week);
        assert!(rotation.await.is_err());
    }
}
