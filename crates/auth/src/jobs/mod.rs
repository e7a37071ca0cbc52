//! The job runner inside `tobira serve`: each replica polls the durable job table,
//! claims due jobs under a lease (once across replicas), runs them, and retries failures
//! with exponential backoff (at most [`MAX_BACKOFF`] apart) for `jobs.give_up_after_hours`
//! from when each was queued, then gives up with an error log and a metric. Queue depth,
//! failures and the oldest job's age are metrics. Back-channel logout tokens, mail,
//! support's unlocks, upstream token revocations (social sign-in) and the "earlier ways
//! in removed" notices are the queues. The signing-key schedule is one recurring row
//! (`keys::schedule::JOB_ID`) that never ends: whichever replica claims it moves the keys
//! along and sets it to run again a minute later.

use std::time::Duration as StdDuration;

use time::Duration;

use crate::admin::audit::{self, Context, Target};
use crate::admin::unlock::{self, SUPPORT_QUEUE};
use crate::domain::{UserId, UserStatus};
use crate::federation::UpstreamError;
use crate::keys::KeyPolicy;
use crate::keys::schedule;
use crate::mail::Mail;
use crate::mail::templates::{self, WaysInRemovedMail};
use crate::state::AppState;
use crate::store::{BACKCHANNEL_QUEUE, Job, LinkRepo, MAIL_QUEUE};
use crate::web::i18n::Lang;

/// How long a claimed job is ours; a replica that dies mid-job frees it after this.
const LEASE: Duration = Duration::minutes(5);
/// Jobs claimed per poll.
const BATCH: u64 = 16;

/// The longest wait between two tries: what waited through an SMTP outage or a client's
/// downtime leaves within this of its return (a sign-in code mailed lives 10 minutes).
pub const MAX_BACKOFF: Duration = Duration::minutes(5);

/// The delay before try `attempts + 1`: 2, 4, 8 … seconds, at most [`MAX_BACKOFF`].
pub fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 12)).unwrap_or(12);
    Duration::seconds(2_i64.pow(exp)).min(MAX_BACKOFF)
}

/// Whether a job that just failed has been tried long enough: `jobs.give_up_after_hours`
/// since it was queued, however many tries that took (a count of tries would give up
/// after a fixed few minutes of outage).
fn tried_long_enough(job: &Job, now: time::OffsetDateTime, config: &crate::Config) -> bool {
    now - job.created_at >= Duration::hours(config.jobs.give_up_after_hours.into())
}

/// Runs the worker until the process stops (aborting the returned task stops every
/// queue's loop with it). Each queue has its own loop, and the jobs of a claimed batch
/// run together, so a client slow to take its logout token (or an SMTP server slow to
/// answer) holds up neither the other queues nor the rest of its batch.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = StdDuration::from_millis(state.config.jobs.poll_interval_ms.max(10));
        // Every replica makes sure the schedule's row exists; the fixed id keeps it one.
        if let Err(e) = state
            .db
            .jobs()
            .ensure_recurring(schedule::JOB_ID, schedule::QUEUE, state.clock.now())
            .await
        {
            tracing::warn!(error = %e, "job runner: cannot add the signing-key schedule; another replica may run it");
        }
        // Dropped with this task: its loops end with it.
        let mut loops = tokio::task::JoinSet::new();
        for queue in QUEUES {
            let state = state.clone();
            loops.spawn(async move {
                loop {
                    if let Err(e) = drain(&state, queue).await {
                        tracing::warn!(error = %e, queue, "job runner: cannot reach the job table");
                    }
                    tokio::time::sleep(every).await;
                }
            });
        }
        let mut last_purge = None;
        loop {
            if let Err(e) = record_stats(&state).await {
                tracing::warn!(error = %e, "job runner: cannot read the queues' depth");
            }
            let now = state.clock.now();
            if last_purge.is_none_or(|at| now - at >= PURGE_EVERY) {
                last_purge = Some(now);
                if let Err(e) = purge(&state).await {
                    tracing::warn!(error = %e, "job runner: purge failed");
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// How often each replica removes what has outlived its time (idempotent, so replicas
/// doing it at once do no harm).
const PURGE_EVERY: Duration = Duration::minutes(10);

/// Removes sign-ups never verified within `signup.unverified_max_age_hours`, sign-in
/// history older than `account.history_days`, remembered devices past their time, and the
/// personal data of accounts deleted more than `account.retention_days` ago (each
/// recorded as a `user.purge` by `system`; with re-registration blocks that ran out, and
/// jobs given up that long ago: their error may name an address), and audit events older
/// than `admin.audit_retention_days`; how many rows went. `tobira maintenance purge` runs
/// the same.
pub async fn purge(state: &AppState) -> Result<u64, crate::store::StoreError> {
    purge_store(&state.db, state.clock.now(), &state.config).await
}

/// [`purge`] on a bare store, for the CLI.
pub async fn purge_store(
    db: &crate::store::Db,
    now: time::OffsetDateTime,
    config: &crate::Config,
) -> Result<u64, crate::store::StoreError> {
    let age = Duration::hours(config.signup.unverified_max_age_hours.into());
    let removed = db.signups().purge_unverified(now - age).await?;
    if removed > 0 {
        tracing::info!(removed, "removed sign-ups that were never verified");
    }
    let kept = Duration::days(config.account.history_days.into());
    let forgotten = db.login_events().purge(now - kept).await?;
    if forgotten > 0 {
        tracing::info!(
            forgotten,
            "removed sign-in history past account.history_days"
        );
    }
    // An expired one already skips nothing (`is_remembered` checks the date): this only
    // keeps the table from growing.
    let expired_devices = db.two_step().purge_expired(now).await?;
    if expired_devices > 0 {
        tracing::info!(
            expired_devices,
            "removed remembered devices past their time"
        );
    }
    let retention = Duration::days(config.account.retention_days.into());
    let system = Context::system();
    let detail = serde_json::json!({ "retention_days": config.account.retention_days });
    let purged = db
        .accounts()
        .purge(now, now - retention, |user: UserId| {
            audit::event(
                now,
                &system,
                "user.purge",
                Target::User(user),
                detail.clone(),
            )
        })
        .await?;
    let forgotten_jobs = db.jobs().forget_given_up(now - retention).await?;
    if forgotten_jobs > 0 {
        tracing::info!(
            forgotten_jobs,
            "forgot jobs given up more than account.retention_days ago"
        );
    }
    if purged > 0 {
        tracing::info!(
            purged,
            "purged the personal data of accounts deleted more than account.retention_days ago"
        );
    }
    let audit_kept = Duration::days(config.admin.audit_retention_days.into());
    let audit_forgotten = db.audit().purge(now - audit_kept).await?;
    if audit_forgotten > 0 {
        tracing::info!(
            audit_forgotten,
            "removed audit events past admin.audit_retention_days"
        );
    }
    Ok(removed + forgotten + expired_devices + purged + forgotten_jobs + audit_forgotten)
}

/// The queues every replica works on.
const QUEUES: [&str; 6] = [
    BACKCHANNEL_QUEUE,
    MAIL_QUEUE,
    SUPPORT_QUEUE,
    LinkRepo::REVOKE_QUEUE,
    LinkRepo::WAYS_IN_REMOVED_QUEUE,
    schedule::QUEUE,
];

/// How often the signing-key schedule runs. Its steps are minutes apart at the least
/// (`keys.publish_ahead_secs` is at least the JWKS max-age), so a minute late is on time.
const SCHEDULE_EVERY: Duration = Duration::minutes(1);

/// Claims and runs the due jobs of one queue, a batch at a time.
async fn drain(state: &AppState, queue: &'static str) -> Result<usize, crate::store::StoreError> {
    let mut ran = 0;
    loop {
        let now = state.clock.now();
        let jobs = state.db.jobs().claim(now, queue, LEASE, BATCH).await?;
        if jobs.is_empty() {
            return Ok(ran);
        }
        let mut batch = tokio::task::JoinSet::new();
        for job in jobs {
            let state = state.clone();
            batch.spawn(async move { run_one(&state, &job).await });
        }
        // The whole batch finishes (a job cut off half-way would run again after its
        // lease: a mail sent twice); the first error is reported after.
        let mut failed = None;
        while let Some(done) = batch.join_next().await {
            match done {
                Ok(Ok(())) => ran += 1,
                Ok(Err(e)) => failed = failed.or(Some(e)),
                // Its lease runs out and it is tried again; the loop lives on.
                Err(e) => tracing::error!(error = %e, queue, "job runner: a job panicked"),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
}

async fn run_one(state: &AppState, job: &Job) -> Result<(), crate::store::StoreError> {
    if job.queue == schedule::QUEUE {
        return run_schedule(state, job).await;
    }
    let result = match job.queue.as_str() {
        SUPPORT_QUEUE => unlock::apply(state, &job.payload).await,
        BACKCHANNEL_QUEUE => crate::oidc::backchannel::deliver(state, &job.payload).await,
        LinkRepo::REVOKE_QUEUE => revoke_upstream(state, job).await,
        LinkRepo::WAYS_IN_REMOVED_QUEUE => tell_ways_in_removed(state, job).await,
        _ => match Mail::unseal(&job.payload, &state.master) {
            Ok(mail) => state
                .mailer
                .deliver(&job.id.to_string(), &mail)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
    };
    if job.queue == MAIL_QUEUE {
        crate::ops::mail_delivery(result.is_ok());
    }
    let now = state.clock.now();
    match result {
        Ok(()) => {
            metrics::counter!(JOBS_DONE, "queue" => job.queue.clone()).increment(1);
            state.db.jobs().done(job.id).await
        }
        Err(error) if tried_long_enough(job, now, &state.config) => {
            tracing::error!(job = %job.id, queue = %job.queue, attempts = job.attempts, error = %error, "job given up");
            metrics::counter!(JOBS_FAILED, "queue" => job.queue.clone()).increment(1);
            state.db.jobs().give_up(job.id, now, &error).await
        }
        Err(error) => {
            let at = now + backoff(job.attempts);
            tracing::warn!(job = %job.id, queue = %job.queue, attempts = job.attempts, error = %error, "job failed; will retry");
            metrics::counter!(JOBS_RETRIED, "queue" => job.queue.clone()).increment(1);
            state.db.jobs().retry(job.id, at, &error).await
        }
    }
}

/// Runs the signing-key schedule and sets its row to run again: in a minute, or sooner
/// after a failure (2, 4, 8 … seconds, never later than the minute). Never given up.
async fn run_schedule(state: &AppState, job: &Job) -> Result<(), crate::store::StoreError> {
    let policy = KeyPolicy::from_config(&state.config);
    let result = schedule::tick(&state.db, &state.master, state.clock.now(), &policy).await;
    let now = state.clock.now();
    match result {
        Ok(report) => {
            if report.changed() {
                tracing::info!(?report, "signing-key schedule ran");
            }
            metrics::counter!(JOBS_DONE, "queue" => job.queue.clone()).increment(1);
            state
                .db
                .jobs()
                .reschedule(job.id, now + SCHEDULE_EVERY, None)
                .await
        }
        Err(e) => {
            let error = e.to_string();
            tracing::error!(job = %job.id, attempts = job.attempts, error = %error, "signing-key schedule failed; will retry");
            metrics::counter!(JOBS_RETRIED, "queue" => job.queue.clone()).increment(1);
            let at = now + backoff(job.attempts).min(SCHEDULE_EVERY);
            state.db.jobs().reschedule(job.id, at, Some(&error)).await
        }
    }
}

/// Revokes an upstream refresh token whose link went away (Apple requires it when a
/// member deletes their account). Only a provider that cannot be reached is tried again;
/// a token the provider refuses, a provider no longer configured or a payload that cannot
/// be read will not get better with time, so they are logged and dropped.
async fn revoke_upstream(state: &AppState, job: &Job) -> Result<(), String> {
    let revocation = match LinkRepo::revocation(&job.payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(job = %job.id, error = %e, "upstream revocation: unreadable job dropped");
            return Ok(());
        }
    };
    let Some(provider) = state.federation.find(&revocation.provider) else {
        tracing::warn!(job = %job.id, provider = %revocation.provider, "upstream revocation: the provider is no longer configured; its token is not revoked");
        return Ok(());
    };
    let token = match state.master.decrypt(&revocation.sealed_token) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(job = %job.id, provider = %revocation.provider, error = %e, "upstream revocation: the sealed token cannot be opened (another master key?); dropped");
            return Ok(());
        }
    };
    let Ok(token) = std::str::from_utf8(&token) else {
        tracing::error!(job = %job.id, provider = %revocation.provider, "upstream revocation: the sealed token is not text; dropped");
        return Ok(());
    };
    match provider.revoke(token).await {
        Ok(()) => {
            tracing::info!(job = %job.id, provider = %revocation.provider, "upstream refresh token revoked");
            Ok(())
        }
        Err(UpstreamError::Unavailable(e)) => Err(format!("{}: {e}", revocation.provider)),
        Err(e) => {
            tracing::warn!(job = %job.id, provider = %revocation.provider, error = %e, "upstream revocation refused; dropped");
            Ok(())
        }
    }
}

/// Mails the member of an account that lost every earlier way in on the first
/// verification of its address (`store::links::first_verification` queued the job with
/// the change). Rendered now, in the account's language, to the address it has now; an
/// account deleted since is not mailed.
async fn tell_ways_in_removed(state: &AppState, job: &Job) -> Result<(), String> {
    let notice = match LinkRepo::ways_in_removed(&job.payload) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(job = %job.id, error = %e, "ways-in-removed notice: unreadable job dropped");
            return Ok(());
        }
    };
    let user = state
        .db
        .users()
        .find_by_id(UserId(notice.user))
        .await
        .map_err(|e| e.to_string())?;
    let Some(user) = user.filter(|u| u.status != UserStatus::Deleted) else {
        tracing::info!(job = %job.id, user = %notice.user, "ways-in-removed notice: the account is gone; not mailed");
        return Ok(());
    };
    let lang = crate::account::user_lang(&user, Lang::Ja);
    let at =
        time::OffsetDateTime::from_unix_timestamp(notice.at).unwrap_or_else(|_| state.clock.now());
    let at = crate::account::delete::in_words(at, state.config.throttle.display_offset(), lang);
    let mail = templates::ways_in_removed(
        lang,
        user.email.display(),
        &user.display_name,
        &WaysInRemovedMail {
            at: &at,
            password: user.password_hash.is_some(),
            console: &crate::account::link(state, crate::account::LINKED, &[]),
            reset: &crate::account::link(state, crate::account::FORGOT, &[]),
        },
    );
    state
        .mailer
        .deliver(&job.id.to_string(), &mail)
        .await
        .map_err(|e| e.to_string())
}

async fn record_stats(state: &AppState) -> Result<(), crate::store::StoreError> {
    // The schedule's row always waits for its next run: as depth it would read as one
    // job stuck forever, and its age as the age of the installation.
    for queue in QUEUES.into_iter().filter(|&q| q != schedule::QUEUE) {
        let stats = state.db.jobs().stats(queue).await?;
        let age = stats
            .oldest
            .map_or(0.0, |t| (state.clock.now() - t).as_seconds_f64().max(0.0));
        metrics::gauge!(JOBS_DEPTH, "queue" => queue).set(stats.depth as f64);
        metrics::gauge!(JOBS_GIVEN_UP, "queue" => queue).set(stats.failed as f64);
        metrics::gauge!(JOBS_OLDEST_AGE, "queue" => queue).set(age);
    }
    Ok(())
}

const JOBS_DONE: &str = "tobira_jobs_done_total";
const JOBS_RETRIED: &str = "tobira_jobs_retried_total";
const JOBS_FAILED: &str = "tobira_jobs_failed_total";
const JOBS_DEPTH: &str = "tobira_jobs_queue_depth";
const JOBS_GIVEN_UP: &str = "tobira_jobs_given_up";
const JOBS_OLDEST_AGE: &str = "tobira_jobs_oldest_age_seconds";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_five_minutes() {
        assert_eq!(backoff(0), Duration::seconds(2));
        assert_eq!(backoff(1), Duration::seconds(2));
        assert_eq!(backoff(2), Duration::seconds(4));
        assert_eq!(backoff(5), Duration::seconds(32));
        assert_eq!(backoff(8), Duration::seconds(256));
        assert_eq!(backoff(9), Duration::minutes(5));
        assert_eq!(backoff(1000), Duration::minutes(5));
    }

    #[test]
    fn a_job_is_given_up_by_its_age_not_its_tries() {
        let queued = time::macros::datetime!(2026-12-06 09:00 UTC);
        let job = |attempts| Job {
            id: uuid::Uuid::nil(),
            queue: MAIL_QUEUE.to_owned(),
            payload: String::new(),
            attempts,
            created_at: queued,
        };
        let mut config = crate::Config::default();
        config.jobs.give_up_after_hours = 2;
        let window = Duration::hours(2);
        // Hundreds of tries within the time: kept.
        assert!(!tried_long_enough(
            &job(500),
            queued + window - Duration::milliseconds(1),
            &config
        ));
        // One try, at the time: given up.
        assert!(tried_long_enough(&job(1), queued + window, &config));
        assert!(tried_long_enough(
            &job(1),
            queued + window + Duration::seconds(1),
            &config
        ));
    }
}
