//! SQLite connections of their own for the read every use of an access token makes (the
//! grant with its session and member: each `/userinfo`, introspection, access-token check;
//! a refresh reads it inside its rotation's transaction, on the pool).
//!
//! sqlx's pool pings every connection it gets back (`PoolConnection::return_to_pool` in
//! sqlx-core 0.9, unconditional: a connection dropped in the middle of a query must not be
//! lent out again): a task spawned for it, and on SQLite a second trip to the
//! connection's own thread, after the query's. On this read, a single statement on a
//! two-core machine, those thread hand-offs cost more than the query (`benches/store.rs`:
//! 96 µs of the process's CPU per lookup here, 153 on the pool). Here a connection
//! goes back only after its query completed; one whose future was dropped mid-query goes
//! with it, closed, so no connection is ever lent in an unknown state.
//!
//! Opened on first use with the pool's own options (WAL, `synchronous = NORMAL`, busy
//! timeout, foreign keys), at most `max` at a time; readers wait for one beyond that.

use std::sync::{Mutex, PoisonError};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{ConnectOptions, Sqlite};

/// A statement with its values: its text is kept for the life of the process (sqlx
/// prepares it once per connection).
pub(crate) type ReadQuery = sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments>;

pub(crate) struct Readers {
    options: SqliteConnectOptions,
    idle: Mutex<Vec<SqliteConnection>>,
    permits: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("idle", &self.idle_count())
            .field("free", &self.permits.available_permits())
            .finish()
    }
}

impl Readers {
    pub(crate) fn new(options: SqliteConnectOptions, max: usize) -> Self {
        Self {
            options,
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(max.max(1)),
        }
    }

    /// The row of `sql` with its values bound by `bind`, if any (a select by a unique key:
    /// the first row is the answer).
    pub(crate) async fn fetch_optional(
        &self,
        sql: &'static str,
        bind: impl FnOnce(ReadQuery) -> ReadQuery,
    ) -> Result<Option<SqliteRow>, sqlx::Error> {
        // Closed only with the database (`Db::close`).
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.lock().pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.options.connect().await?,
        };
        // An error drops the connection (closed): a new one is opened next time.
        let row = bind(sqlx::query(sql)).fetch_optional(&mut conn).await?;
        // Closed meanwhile: the connection goes with the others. Checked under the lock
        // that `close` clears the list under, so none is kept after it.
        let mut idle = self.lock();
        if !self.permits.is_closed() {
            idle.push(conn);
        }
        Ok(row)
    }

    /// Closes every connection, idle now or in use, as the pool closes: a read after this
    /// fails as a read on the closed pool does.
    pub(crate) fn close(&self) {
        self.permits.close();
        // After the permits closed: a reader finishing now sees it under this lock.
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SqliteConnection>> {
        // A panic while pushing or popping leaves a valid list.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections open and waiting for a reader.
    pub(crate) fn idle_count(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;
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

    fn readers_of(db: &Db, max: usize) -> Readers {
        let options = db.conn().get_sqlite_connection_pool().connect_options();
        Readers::new((*options).clone(), max)
    }

    /// What a reading connection answers is what sea-orm's pool answers, and a write is
    /// seen by the next read on a connection that read before it (no read transaction is
    /// left open to pin an old snapshot: a revoked grant must stop counting at once).
    #[tokio::test]
    async fn reads_answer_as_the_pool_does_and_see_each_write_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (db, clock, grants) = seeded(&dir, 3).await;
        for &id in &grants {
            let read = db.grants().find_full(id).await.unwrap().expect("found");
            let pooled = crate::store::bench::find_full_pooled(&db, id)
                .await
                .unwrap()
                .expect("found");
            assert_eq!(format!("{read:?}"), format!("{pooled:?}"));
            assert!(read.session.is_some() && read.grant.revoked_at.is_none());
        }
        assert!(
            db.grants()
                .find_full(Uuid::new_v4())
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(db.readers().unwrap().idle_count(), 1, "one kept");

        db.grants().revoke(grants[0], clock.now()).await.unwrap();
        let after = db.grants().find_full(grants[0]).await.unwrap().unwrap();
        assert!(after.grant.revoked_at.is_some(), "the revocation is seen");
        let session = after.session.unwrap();
        db.sessions().end(session.id, clock.now()).await.unwrap();
        let after = db.grants().find_full(grants[0]).await.unwrap().unwrap();
        assert!(
            after.session.unwrap().ended_at.is_some(),
            "the sign-out is seen"
        );
    }

    /// A read cut off while its connection works (a client gone, a timeout) takes its
    /// connection with it: none is ever lent again in the middle of a statement.
    #[tokio::test]
    async fn a_read_cut_off_mid_query_never_lends_its_connection_again() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _, grants) = seeded(&dir, 1).await;
        let readers = readers_of(&db, 2);
        let grant = grants[0];
        let read = || {
            readers.fetch_optional(crate::store::sessions::full_grant_text(), move |q| {
                q.bind(grant)
            })
        };
        assert!(read().await.unwrap().is_some());
        assert_eq!(readers.idle_count(), 1);
        let mut cut = 0;
        for _ in 0..100 {
            // Polled once, then dropped: the statement was sent, its answer not taken.
            if tokio::time::timeout(Duration::ZERO, read()).await.is_err() {
                cut += 1;
                assert_eq!(readers.idle_count(), 0, "the cut connection was kept");
                assert!(read().await.unwrap().is_some(), "a new one answers");
                assert_eq!(readers.idle_count(), 1);
            }
        }
        assert!(cut > 0, "no read was ever cut off mid-query");
    }

    /// However many read at once, at most `max` connections are open; the others wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_max_connections_however_many_read_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _, grants) = seeded(&dir, 16).await;
        let readers = std::sync::Arc::new(readers_of(&db, 2));
        let tasks: Vec<_> = grants
            .iter()
            .map(|&id| {
                let readers = readers.clone();
                tokio::spawn(async move {
                    readers
                        .fetch_optional(crate::store::sessions::full_grant_text(), move |q| {
                            q.bind(id)
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().unwrap().is_some());
        }
        assert!(readers.idle_count() <= 2, "{readers:?}");
        assert!(readers.idle_count() >= 1);
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
}
