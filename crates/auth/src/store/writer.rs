//! One SQLite connection of its own for the refresh token's rotation (spend, read of the
//! grant, successor or revocation, commit), run as one transaction in the calling thread.
//!
//! Through sqlx the rotation is five statements (begin, spend, read, insert, commit), each
//! handed to the connection's thread and back, with the file's write lock held across
//! every hand-off: concurrent rotations then wait for it in SQLite's busy handler, which
//! sleeps between tries. Here the transaction holds the write lock only while its
//! statements run, tens of microseconds, and rotations of this process queue on a mutex
//! instead of sleeping.
//!
//! It never waits for the file: the busy timeout is zero, so when another connection
//! writes (a pool's transaction, `tobira` on the command line) beginning fails at once and
//! the caller rotates on the pool instead, which waits off the runtime's thread. Once
//! begun, a transaction cannot be made to wait (WAL: readers never block a writer), and
//! any failure rolls it back and is the caller's error.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, TransactionBehavior};

use super::readers::{Fallbacks, NotHere, is_busy, open_unwaiting};

/// How long a transaction waits for another connection's write before it goes to the
/// pool (a pool's transaction lasts milliseconds; `tobira` on the command line may hold
/// the file longer).
pub(crate) const BUSY_PATIENCE: std::time::Duration = std::time::Duration::from_millis(100);

/// The pause between two tries (tokio's timer counts in milliseconds).
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

pub(crate) struct Writer {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
    closed: AtomicBool,
    /// Transactions that could not begin here and ran on the pool instead.
    pub(crate) fallbacks: Fallbacks,
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
            conn: Mutex::new(None),
            closed: AtomicBool::new(false),
            fallbacks: Fallbacks::default(),
        }
    }

    /// Runs `work` in an immediate transaction, committed if it answers `Ok((_, true))`,
    /// rolled back otherwise. `Err(NotHere)` when the transaction could not begin
    /// (nothing was done); the inner result is the work's.
    pub(crate) fn transaction<T, E: From<rusqlite::Error>>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(T, bool), E>,
    ) -> Result<Result<T, E>, NotHere> {
        if self.closed.load(Ordering::Acquire) {
            return Err(NotHere::Closed);
        }
        let mut slot = self.lock();
        let mut conn = match slot.take() {
            Some(conn) => conn,
            None => self.open().map_err(NotHere::Sqlite)?,
        };
        let outcome = match run(&mut conn, work) {
            Ok(outcome) => outcome,
            Err(e) => {
                // A busy file is no fault of the connection's: it is kept.
                if is_busy(&e) {
                    *slot = Some(conn);
                }
                return Err(NotHere::Sqlite(e));
            }
        };
        // After a failure, whatever state it is in, it is not lent again; nor after close.
        if outcome.is_ok() && !self.closed.load(Ordering::Acquire) {
            *slot = Some(conn);
        }
        Ok(outcome)
    }

    /// [`Writer::transaction`], waiting while another connection writes: asleep between
    /// tries (off the thread, never in SQLite's busy handler), for at most
    /// [`BUSY_PATIENCE`]. Past it, or for any other reason it cannot begin, `Err`.
    ///
    /// Sending every rotation that meets a busy file to the pool instead would feed on
    /// itself: a rotation there holds the write lock across its hand-offs, so the next
    /// ones find the file busy and follow it, and the writer stays idle for as long as
    /// rotations keep coming.
    pub(crate) async fn transaction_waiting<T, E: From<rusqlite::Error>>(
        &self,
        mut work: impl FnMut(&rusqlite::Transaction<'_>) -> Result<(T, bool), E>,
    ) -> Result<Result<T, E>, NotHere> {
        let started = tokio::time::Instant::now();
        loop {
            match self.transaction(&mut work) {
                Err(NotHere::Sqlite(e)) if is_busy(&e) && started.elapsed() < BUSY_PATIENCE => {
                    tokio::time::sleep(BUSY_PAUSE).await;
                }
                done => return done,
            }
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = open_unwaiting(&self.path)?;
        // As the pool's connections (`Db::connect`; foreign keys are sqlx's default).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        Ok(conn)
    }

    /// Closes the connection (one in a transaction, when it ends).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut slot) = self.conn.try_lock() {
            *slot = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Connection>> {
        // A panic in a transaction drops it (rolled back): the connection is usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `work` in an immediate transaction on `conn`: `Err` when it could not begin.
fn run<T, E: From<rusqlite::Error>>(
    conn: &mut Connection,
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(T, bool), E>,
) -> rusqlite::Result<Result<T, E>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    Ok(match work(&tx) {
        Ok((answer, true)) => tx.commit().map(|()| answer).map_err(E::from),
        // Dropped: rolled back.
        Ok((answer, false)) => Ok(answer),
        Err(e) => Err(e),
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

        let holder = hold_a_write(&db, StdDuration::from_millis(300)).await;
        let started = std::time::Instant::now();
        let rotated = present(&db, &clock, &token, issue_for_a_week).await;
        assert!(matches!(rotated, Rotated::Issued { .. }));
        assert_eq!(writer.fallbacks.get(), 1, "{writer:?}");
        assert!(
            started.elapsed() >= StdDuration::from_millis(250),
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

        let holder = hold_a_write(&db, super::BUSY_PATIENCE / 4).await;
        let started = std::time::Instant::now();
        let rotated = present(&db, &clock, &token, issue_for_a_week).await;
        assert!(matches!(rotated, Rotated::Issued { .. }));
        assert!(
            started.elapsed() >= super::BUSY_PATIENCE / 5,
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
