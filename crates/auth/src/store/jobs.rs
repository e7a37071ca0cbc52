//! Durable jobs: rows that a worker in every replica claims, runs, and deletes. A claim
//! is a lease (`locked_until`), taken with `FOR UPDATE SKIP LOCKED` on PostgreSQL so
//! replicas never take the same row; a replica that dies mid-job leaves a lease that
//! runs out, and the job runs again. Jobs are written with the change that causes them
//! (`add` takes any connection, a transaction included).

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, Statement,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::StoreError;
use super::entity::jobs;

/// A job a worker holds.
#[derive(Clone, Debug, PartialEq, Eq, FromQueryResult)]
pub struct Job {
    pub id: Uuid,
    pub queue: String,
    pub payload: String,
    /// Including this run.
    pub attempts: i32,
    /// When it was queued (how long it has been tried, for giving it up).
    pub created_at: OffsetDateTime,
}

/// What the queue holds, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueStats {
    /// Jobs waiting or running.
    pub depth: u64,
    /// Jobs given up after their last try.
    pub failed: u64,
    /// Since when the oldest waiting job waits.
    pub oldest: Option<OffsetDateTime>,
}

/// Adds a job to `queue`, due now, on `conn` (a transaction, to commit it with its cause).
pub async fn add(
    conn: &impl ConnectionTrait,
    now: OffsetDateTime,
    queue: &str,
    payload: String,
) -> Result<Uuid, StoreError> {
    let id = Uuid::new_v4();
    jobs::Entity::insert(jobs::ActiveModel {
        id: Set(id),
        queue: Set(queue.to_owned()),
        payload: Set(payload),
        run_at: Set(now),
        attempts: Set(0),
        locked_until: Set(None),
        last_error: Set(None),
        failed_at: Set(None),
        created_at: Set(now),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(id)
}

pub struct JobRepo<'c> {
    conn: &'c DatabaseConnection,
}

impl<'c> JobRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Adds a job on its own (when no other write causes it).
    pub async fn add(
        &self,
        now: OffsetDateTime,
        queue: &str,
        payload: String,
    ) -> Result<Uuid, StoreError> {
        add(self.conn, now, queue, payload).await
    }

    /// Adds the recurring job `id` of `queue`, due now, unless it exists: every replica
    /// calls this when it starts, and the fixed id keeps it one row across all of them.
    /// Whether it was added.
    pub async fn ensure_recurring(
        &self,
        id: Uuid,
        queue: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let inserted = jobs::Entity::insert(jobs::ActiveModel {
            id: Set(id),
            queue: Set(queue.to_owned()),
            payload: Set(String::new()),
            run_at: Set(now),
            attempts: Set(0),
            locked_until: Set(None),
            last_error: Set(None),
            failed_at: Set(None),
            created_at: Set(now),
        })
        .on_conflict(OnConflict::column(jobs::Column::Id).do_nothing().to_owned())
        .exec_without_returning(self.conn)
        .await?;
        Ok(inserted == 1)
    }

    /// Runs a recurring job again at `run_at`, its lease ended (it is never deleted,
    /// never given up). After a good run its tries start over; after a failed one
    /// (`failure`: why) they are kept, for the caller's backoff, with the reason.
    pub async fn reschedule(
        &self,
        id: Uuid,
        run_at: OffsetDateTime,
        failure: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut update = jobs::Entity::update_many()
            .col_expr(jobs::Column::RunAt, Expr::value(run_at))
            .col_expr(
                jobs::Column::LockedUntil,
                Expr::value(None::<OffsetDateTime>),
            )
            .col_expr(jobs::Column::LastError, Expr::value(failure.map(truncate)));
        if failure.is_none() {
            update = update.col_expr(jobs::Column::Attempts, Expr::value(0));
        }
        update
            .filter(jobs::Column::Id.eq(id))
            .exec(self.conn)
            .await?;
        Ok(())
    }

    /// Claims up to `limit` due jobs of `queue` for `lease`.
    pub async fn claim(
        &self,
        now: OffsetDateTime,
        queue: &str,
        lease: Duration,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        let backend = self.conn.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => {
                "UPDATE jobs SET locked_until = $1, attempts = attempts + 1 \
                 WHERE id IN (SELECT id FROM jobs WHERE queue = $2 AND failed_at IS NULL \
                 AND run_at <= $3 AND (locked_until IS NULL OR locked_until <= $3) \
                 ORDER BY run_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, queue, payload, attempts, created_at"
            }
            // One writer at a time: the UPDATE itself is the lock.
            _ => {
                "UPDATE jobs SET locked_until = ?, attempts = attempts + 1 \
                 WHERE id IN (SELECT id FROM jobs WHERE queue = ? AND failed_at IS NULL \
                 AND run_at <= ? AND (locked_until IS NULL OR locked_until <= ?) \
                 ORDER BY run_at LIMIT ?) \
                 RETURNING id, queue, payload, attempts, created_at"
            }
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let values: Vec<sea_orm::Value> = match backend {
            DbBackend::Postgres => {
                vec![(now + lease).into(), queue.into(), now.into(), limit.into()]
            }
            _ => vec![
                (now + lease).into(),
                queue.into(),
                now.into(),
                now.into(),
                limit.into(),
            ],
        };
        Ok(
            Job::find_by_statement(Statement::from_sql_and_values(backend, sql, values))
                .all(self.conn)
                .await?,
        )
    }

    /// The job is done: it goes (and with it any secret in its payload).
    pub async fn done(&self, id: Uuid) -> Result<(), StoreError> {
        jobs::Entity::delete_by_id(id).exec(self.conn).await?;
        Ok(())
    }

    /// Runs the job again at `run_at`, remembering why it failed.
    pub async fn retry(
        &self,
        id: Uuid,
        run_at: OffsetDateTime,
        error: &str,
    ) -> Result<(), StoreError> {
        jobs::Entity::update_many()
            .col_expr(jobs::Column::RunAt, Expr::value(run_at))
            .col_expr(
                jobs::Column::LockedUntil,
                Expr::value(None::<OffsetDateTime>),
            )
            .col_expr(jobs::Column::LastError, Expr::value(truncate(error)))
            .filter(jobs::Column::Id.eq(id))
            .exec(self.conn)
            .await?;
        Ok(())
    }

    /// Gives the job up: it stays for operators to see, its payload (which may hold a
    /// secret link) is wiped.
    pub async fn give_up(
        &self,
        id: Uuid,
        now: OffsetDateTime,
        error: &str,
    ) -> Result<(), StoreError> {
        jobs::Entity::update_many()
            .col_expr(jobs::Column::FailedAt, Expr::value(now))
            .col_expr(
                jobs::Column::LockedUntil,
                Expr::value(None::<OffsetDateTime>),
            )
            .col_expr(jobs::Column::Payload, Expr::value(""))
            .col_expr(jobs::Column::LastError, Expr::value(truncate(error)))
            .filter(jobs::Column::Id.eq(id))
            .exec(self.conn)
            .await?;
        Ok(())
    }

    /// How many jobs of `queue` a worker holds now: tried (counted in `attempts`), the
    /// outcome not yet recorded.
    pub async fn running(&self, queue: &str) -> Result<u64, StoreError> {
        Ok(jobs::Entity::find()
            .filter(jobs::Column::Queue.eq(queue))
            .filter(jobs::Column::LockedUntil.is_not_null())
            .count(self.conn)
            .await?)
    }

    /// Forgets jobs given up at or before `before` (their error text may name a member's
    /// address: kept as long as personal data is, `account.retention_days`); how many.
    pub async fn forget_given_up(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(jobs::Entity::delete_many()
            .filter(jobs::Column::FailedAt.lte(before))
            .exec(self.conn)
            .await?
            .rows_affected)
    }

    pub async fn stats(&self, queue: &str) -> Result<QueueStats, StoreError> {
        let of_queue = || jobs::Entity::find().filter(jobs::Column::Queue.eq(queue));
        let depth = of_queue()
            .filter(jobs::Column::FailedAt.is_null())
            .count(self.conn)
            .await?;
        let failed = of_queue()
            .filter(jobs::Column::FailedAt.is_not_null())
            .count(self.conn)
            .await?;
        let oldest = of_queue()
            .filter(jobs::Column::FailedAt.is_null())
            .order_by_asc(jobs::Column::RunAt)
            .one(self.conn)
            .await?
            .map(|j| j.created_at);
        Ok(QueueStats {
            depth,
            failed,
            oldest,
        })
    }

    /// Every job of `queue` not given up, oldest first (for tests and operators).
    pub async fn pending(&self, queue: &str) -> Result<Vec<Job>, StoreError> {
        Ok(jobs::Entity::find()
            .filter(jobs::Column::Queue.eq(queue))
            .filter(jobs::Column::FailedAt.is_null())
            .order_by_asc(jobs::Column::CreatedAt)
            .all(self.conn)
            .await?
            .into_iter()
            .map(|m| Job {
                id: m.id,
                queue: m.queue,
                payload: m.payload,
                attempts: m.attempts,
                created_at: m.created_at,
            })
            .collect())
    }
}

impl JobRepo<'_> {
    /// Why the waiting jobs of `queue` failed their last try (those that did).
    pub async fn last_errors(&self, queue: &str) -> Result<Vec<String>, StoreError> {
        Ok(jobs::Entity::find()
            .filter(jobs::Column::Queue.eq(queue))
            .filter(jobs::Column::FailedAt.is_null())
            .filter(jobs::Column::LastError.is_not_null())
            .order_by_asc(jobs::Column::CreatedAt)
            .all(self.conn)
            .await?
            .into_iter()
            .filter_map(|m| m.last_error)
            .collect())
    }
}

/// A job given up after its last try, as operators see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GivenUp {
    pub id: Uuid,
    /// Empty: a given-up payload (which may hold a secret link) is wiped.
    pub payload: String,
    pub attempts: i32,
    pub last_error: Option<String>,
}

impl JobRepo<'_> {
    /// Jobs of `queue` given up, oldest first.
    pub async fn given_up(&self, queue: &str) -> Result<Vec<GivenUp>, StoreError> {
        Ok(jobs::Entity::find()
            .filter(jobs::Column::Queue.eq(queue))
            .filter(jobs::Column::FailedAt.is_not_null())
            .order_by_asc(jobs::Column::CreatedAt)
            .all(self.conn)
            .await?
            .into_iter()
            .map(|m| GivenUp {
                id: m.id,
                payload: m.payload,
                attempts: m.attempts,
                last_error: m.last_error,
            })
            .collect())
    }
}

fn truncate(error: &str) -> String {
    error.chars().take(1000).collect()
}
