//! Mail through a real SMTP server (the aiosmtpd sink): delivered with credentials,
//! kept through an outage and sent when the server is back, given up after its tries with
//! the secret link wiped; and jobs claimed once however many replicas poll.

use std::time::Duration as StdDuration;

use time::Duration;
use tobira_auth::store::MAIL_QUEUE;

use crate::helpers::{Browser, TestApp, TestDb};
use crate::oidc::{EMAIL, PASSWORD};
use crate::smtp_sink::SmtpSink;

async fn forgot(browser: &Browser, email: &str) {
    let form = browser.get("/password/forgot").await;
    let csrf = form.field("csrf").unwrap();
    let page = browser
        .post_form("/password/forgot", &[("csrf", &csrf), ("email", email)])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
}

async fn app_sending_to(
    sink: &SmtpSink,
    configure: impl FnOnce(&mut tobira_auth::Config),
) -> TestApp {
    let url = sink.url();
    TestApp::spawn_with(|c| {
        c.mail.smtp.url = tobira_auth::config::Secret::new(url);
        c.mail.smtp.allow_insecure = true;
        c.mail.from = "Tobira <no-reply@example.jp>".to_owned();
        configure(c);
    })
    .await
}

#[tokio::test]
async fn mail_goes_out_by_smtp_with_credentials() {
    let Some(sink) = SmtpSink::start_with_credentials("tobira", "smtp-secret-1").await else {
        return;
    };
    let app = app_sending_to(&sink, |c| {
        c.mail.smtp.user = "tobira".to_owned();
        c.mail.smtp.password = tobira_auth::config::Secret::new("smtp-secret-1");
    })
    .await;
    app.add_user(EMAIL, PASSWORD).await;
    forgot(&app.browser(), EMAIL).await;
    let got = sink.wait_for(1, StdDuration::from_secs(10)).await;
    assert_eq!(got[0].rcpt_tos, vec![EMAIL.to_owned()]);
    assert_eq!(got[0].auth_user.as_deref(), Some("tobira"));
    assert_eq!(
        got[0].subject.as_deref(),
        Some("【Tobira】パスワードの再設定")
    );
    let text = got[0].text.clone().unwrap_or_default();
    assert!(
        text.contains(&format!("{}/password/reset?token=", app.issuer())),
        "{text}"
    );
    // Delivered: the queued body (with its secret link) is gone from the database (the
    // runner deletes it once the server accepted the mail, a moment after the sink saw it).
    let mut pending = app.pending_jobs(MAIL_QUEUE).await;
    for _ in 0..100 {
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
        pending = app.pending_jobs(MAIL_QUEUE).await;
    }
    assert!(pending.is_empty(), "{pending:?}");
}

#[tokio::test]
async fn an_smtp_outage_loses_no_mail() {
    let Some(mut sink) = SmtpSink::start().await else {
        return;
    };
    let app = app_sending_to(&sink, |_| {}).await;
    app.add_user(EMAIL, PASSWORD).await;
    sink.stop();
    forgot(&app.browser(), EMAIL).await;
    // The worker tried, failed, and keeps the mail for later.
    let mut tried = false;
    for _ in 0..100 {
        let pending = app.pending_jobs(MAIL_QUEUE).await;
        if pending.first().is_some_and(|j| j.attempts >= 1) {
            tried = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    assert!(tried, "the first delivery was attempted");
    sink.restart().await;
    // The retry waits for its backoff, by the app's clock.
    app.clock().advance(Duration::minutes(5));
    let got = sink.wait_for(1, StdDuration::from_secs(10)).await;
    assert_eq!(
        got[0].subject.as_deref(),
        Some("【Tobira】パスワードの再設定")
    );
    assert!(
        app.drained(MAIL_QUEUE).await,
        "the delivered job stayed in the queue"
    );
}

#[tokio::test]
async fn mails_wait_through_a_long_outage_and_each_arrives_once() {
    const MEMBERS: [&str; 4] = [
        "ichiro@example.jp",
        "jiro@example.jp",
        "saburo@example.jp",
        "shiro@example.jp",
    ];
    let Some(mut sink) = SmtpSink::start().await else {
        return;
    };
    let app = app_sending_to(&sink, |_| {}).await;
    for member in MEMBERS {
        app.add_user(member, PASSWORD).await;
    }
    sink.stop();
    for member in MEMBERS {
        forgot(&app.browser(), member).await;
    }
    // Down for three hours by the app's clock: every mail is tried again at least every
    // five minutes (far more than the ten tries that once gave a mail up after 17
    // minutes of outage), and none is given up.
    let mut pending = app.wait_until_tried(MAIL_QUEUE, MEMBERS.len(), 3).await;
    for _ in 0..36 {
        app.clock().advance(Duration::minutes(5));
        let least = pending.iter().map(|j| j.attempts).min().unwrap_or(0);
        pending = app
            .wait_until_tried(MAIL_QUEUE, MEMBERS.len(), least + 1)
            .await;
    }
    assert_eq!(
        pending.len(),
        MEMBERS.len(),
        "every mail waits: {pending:?}"
    );
    assert!(pending.iter().all(|j| j.attempts >= 3 + 36), "{pending:?}");
    assert_eq!(
        app.state.db.jobs().stats(MAIL_QUEUE).await.unwrap().failed,
        0
    );

    // Back: within five minutes each mail arrives, once, to its own member, and the
    // queue empties.
    sink.restart().await;
    app.clock().advance(tobira_auth::jobs::MAX_BACKOFF);
    let got = sink
        .wait_for(MEMBERS.len(), StdDuration::from_secs(10))
        .await;
    // Time for a duplicate to show.
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let mut to: Vec<String> = sink
        .messages()
        .iter()
        .flat_map(|m| m.rcpt_tos.clone())
        .collect();
    to.sort();
    assert_eq!(to, MEMBERS, "one mail each: {got:?}");
    assert!(app.drained(MAIL_QUEUE).await);
}

#[tokio::test]
async fn a_mail_is_given_up_after_its_time_and_its_secret_is_wiped() {
    let Some(mut sink) = SmtpSink::start().await else {
        return;
    };
    let app = app_sending_to(&sink, |c| c.jobs.give_up_after_hours = 1).await;
    app.add_user(EMAIL, PASSWORD).await;
    sink.stop();
    forgot(&app.browser(), EMAIL).await;
    // Tried at 50 minutes and kept: a job given up then would never be tried again, and
    // it is, at 55. (The runner dates each retry when it records the failure, a moment
    // after the try is counted, so the steps leave minutes of room; the unit test
    // `a_job_is_given_up_by_its_age_not_its_tries` holds the boundary to the millisecond.)
    let pending = app.wait_until_tried(MAIL_QUEUE, 1, 1).await;
    let queued = pending[0].created_at;
    app.clock()
        .advance(queued + Duration::minutes(50) - app.clock().now());
    let pending = app.wait_until_tried(MAIL_QUEUE, 1, 2).await;
    assert_eq!(pending.len(), 1, "tried again within its hour");
    app.clock().advance(Duration::minutes(5));
    let pending = app.wait_until_tried(MAIL_QUEUE, 1, 3).await;
    assert!(
        pending.len() == 1 && pending[0].attempts >= 3,
        "kept and tried again within its hour: {pending:?}"
    );
    // Past its hour, the next failed try gives it up.
    app.clock().advance(Duration::minutes(15));
    let mut given_up = false;
    for _ in 0..200 {
        let stats = app.state.db.jobs().stats(MAIL_QUEUE).await.unwrap();
        if stats.failed == 1 {
            given_up = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(30)).await;
    }
    assert!(given_up, "the job was given up");
    assert!(app.pending_jobs(MAIL_QUEUE).await.is_empty());
    // Kept for operators, with why, but without the sealed body and its reset link.
    let failed = app.state.db.jobs().given_up(MAIL_QUEUE).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].attempts >= 4, "{failed:?}");
    assert!(failed[0].payload.is_empty(), "the secret link was wiped");
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .is_some_and(|e| !e.is_empty())
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("tobira_jobs_failed_total"), "{metrics}");
    assert!(metrics.contains("tobira_jobs_queue_depth"), "{metrics}");
}

#[tokio::test]
async fn replicas_claim_each_job_once() {
    for db in TestDb::all().await {
        let (a, b) = (db.migrated().await, db.connect().await);
        let now = tobira_auth::Clock::manual_at_now().now();
        for i in 0..40 {
            a.jobs()
                .add(now, MAIL_QUEUE, format!("job {i}"))
                .await
                .unwrap();
        }
        let claim = |db: tobira_auth::store::Db| async move {
            let mut mine = Vec::new();
            loop {
                let batch = db
                    .jobs()
                    .claim(now, MAIL_QUEUE, Duration::minutes(5), 3)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|j| j.id));
            }
        };
        let (x, y) = tokio::join!(
            tokio::spawn(claim(a.clone())),
            tokio::spawn(claim(b.clone()))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let mut all: Vec<_> = x.iter().chain(&y).copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 40, "{:?}: every job claimed", db.backend);
        assert_eq!(
            x.len() + y.len(),
            40,
            "{:?}: no job claimed twice",
            db.backend
        );
        // A lease that ran out (a replica died mid-job) frees the job again.
        let later = now + Duration::minutes(6);
        let again = a
            .jobs()
            .claim(later, MAIL_QUEUE, Duration::minutes(5), 100)
            .await
            .unwrap();
        assert_eq!(again.len(), 40);
        assert!(again.iter().all(|j| j.attempts == 2));
    }
}
