//! Running Tobira: the management listener, draining on SIGTERM, the metrics beyond
//! HTTP, the access log, and `tobira migrate` / `migrate status`, through real requests
//! and the real binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use openidconnect::OAuth2TokenResponse;

use crate::helpers::{CapturedLogs, ClientOpts, TestApp, TestDb, metric};
use crate::oidc::{EMAIL, PASSWORD, authorize, exchange, setup, setup_with, sign_in_for_code};

const BIN: &str = env!("CARGO_BIN_EXE_tobira");

fn management_on_port_0(config: &mut tobira_auth::Config) {
    config.server.management_bind = Some("127.0.0.1:0".parse().unwrap());
}

async fn get(http: &reqwest::Client, url: url::Url, path: &str) -> reqwest::Response {
    http.get(url.join(path).unwrap()).send().await.unwrap()
}

#[tokio::test]
async fn the_management_listener_alone_serves_probes_metrics_and_the_admin_api() {
    let app = TestApp::spawn_with(management_on_port_0).await;
    let management = app.management_url();
    assert_ne!(management.port(), app.url.port());
    let api = app.admin_api().await;

    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/admin/api/v1/openapi.json",
    ] {
        let public = get(&app.http, app.url.clone(), path).await;
        assert_eq!(public.status(), 404, "{path} on the public listener");
        let res = get(&app.http, management.clone(), path).await;
        assert_eq!(res.status(), 200, "{path} on the management listener");
        // The same middleware on both listeners.
        assert_eq!(res.headers()["x-request-id"].len(), 36, "{path}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    }
    let keys = |base: &url::Url, token: Option<&str>| {
        let mut req = app.http.get(base.join("/admin/api/v1/keys").unwrap());
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    assert_eq!(
        keys(&management, Some(&api.token)).await.unwrap().status(),
        200
    );
    assert_eq!(keys(&management, None).await.unwrap().status(), 401);
    assert_eq!(
        keys(&app.url, Some(&api.token)).await.unwrap().status(),
        404,
        "an admin token gets nothing from the public listener"
    );

    // The protocol stays on the public listener only.
    let discovery = "/.well-known/openid-configuration";
    assert_eq!(
        get(&app.http, app.url.clone(), discovery).await.status(),
        200
    );
    assert_eq!(
        get(&app.http, management.clone(), discovery).await.status(),
        404
    );

    // Requests to either listener are counted, by route template.
    let text = get(&app.http, management.clone(), "/metrics")
        .await
        .text()
        .await
        .unwrap();
    let requests = |route: &str, status: &str| {
        metric(
            &text,
            "tobira_http_requests_total",
            &[("route", route), ("method", "GET"), ("status", status)],
        )
    };
    assert_eq!(requests(discovery, "200"), Some(1.0), "{text}");
    assert_eq!(requests("/healthz", "200"), Some(1.0), "{text}");
    assert!(requests("unmatched", "404").unwrap_or(0.0) >= 4.0, "{text}");
}

#[tokio::test]
async fn without_a_management_listener_everything_stays_on_the_public_one() {
    let app = TestApp::spawn().await;
    assert_eq!(app.state.management_addr, None);
    let api = app.admin_api().await;
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/admin/api/v1/openapi.json",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    assert_eq!(api.get("keys").await.status, 200);
    assert_eq!(
        app.get("/.well-known/openid-configuration").await.status(),
        200
    );
}

/// Reads a child's standard error on a thread, line by line.
fn lines_of(child: &mut std::process::Child) -> Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The URL a log line announces after `marker` (`listening on http://…`).
fn announced(rx: &Receiver<String>, marker: &str, seen: &mut Vec<String>) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("a `{marker}` line in {seen:#?}"));
        seen.push(line.clone());
        if let Some(i) = line.find(marker) {
            return line[i + marker.len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
        }
    }
}

#[tokio::test]
async fn sigterm_turns_readyz_to_503_while_requests_are_served_then_exits_after_the_drain() {
    const DRAIN_SECS: u64 = 3;
    let db = TestDb::preferred().await;
    let dir = tempfile::tempdir().unwrap();
    // A file, not `TOBIRA_SERVER__MANAGEMENT_BIND`: the environment layer can only set
    // keys the defaults have, and this one is unset by default.
    let config = dir.path().join("tobira.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\nmanagement_bind = \"127.0.0.1:0\"\n\
             drain_secs = {DRAIN_SECS}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TOBIRA_DATA_DIR", dir.path().join("data"))
        .env("TOBIRA_DATABASE__URL", &db.url)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = KillUnlessExited {
        pid: child.id(),
        exited: false,
    };
    let rx = lines_of(&mut child);
    let mut seen = Vec::new();
    let public = url::Url::parse(&announced(&rx, "listening on ", &mut seen)).unwrap();
    let management =
        url::Url::parse(&announced(&rx, "management listener on ", &mut seen)).unwrap();
    let http = reqwest::Client::new();
    assert_eq!(
        get(&http, management.clone(), "/readyz").await.status(),
        200
    );

    // Timed from before the signal: the drain cannot start earlier.
    let term = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    // Draining: not ready, yet alive and serving.
    let mut draining = None;
    for _ in 0..100 {
        let res = get(&http, management.clone(), "/readyz").await;
        if res.status() == 503 {
            draining = Some(res.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let draining = draining.expect("/readyz turns 503 after SIGTERM");
    assert_eq!(draining, serde_json::json!({ "status": "draining" }));
    assert!(
        term.elapsed() < Duration::from_secs(DRAIN_SECS),
        "the check ran inside the drain"
    );
    assert_eq!(
        get(&http, management.clone(), "/healthz").await.status(),
        200
    );
    assert_eq!(
        get(&http, public.clone(), "/.well-known/openid-configuration")
            .await
            .status(),
        200,
        "requests are still served while draining"
    );

    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    guard.exited = true;
    assert!(exit.success(), "a drained shutdown exits 0: {exit}");
    assert!(
        term.elapsed() >= Duration::from_millis(DRAIN_SECS * 1000 - 200),
        "it served for the drain time: {:?}",
        term.elapsed()
    );
    seen.extend(rx.try_iter());
    assert!(
        seen.iter().any(|l| l.contains("draining")),
        "the drain is logged: {seen:#?}"
    );
    // Both listeners are closed.
    assert!(http.get(public).send().await.is_err());
    assert!(http.get(management).send().await.is_err());
}

/// Kills the server (by its pid) unless it exited: a failed assertion must not leave it
/// running.
struct KillUnlessExited {
    pid: u32,
    exited: bool,
}

impl Drop for KillUnlessExited {
    fn drop(&mut self) {
        if !self.exited {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

/// Looks up a sample in `/metrics`, failing with the whole text when absent.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(text, name, labels).unwrap_or_else(|| panic!("{name}{labels:?} in\n{text}"))
}

#[tokio::test]
async fn metrics_count_sign_ins_locks_grants_reuse_mail_and_show_queue_and_pool_levels() {
    let s = setup_with(
        ClientOpts {
            refresh: true,
            ..Default::default()
        },
        |c| c.throttle.account_failures = 2,
    )
    .await;
    let taro = "taro@example.jp";
    s.app.add_user(taro, PASSWORD).await;

    // Wrong passwords: one for a member, one for nobody, two that lock Taro's account
    // (whose owner is mailed).
    let pending = authorize(&s.rp, &[]);
    let login = s.browser.follow(s.browser.get(&pending.url).await).await;
    for (email, status) in [
        (EMAIL, 401),
        ("nobody@example.jp", 401),
        (taro, 401),
        (taro, 401),
        (taro, 429),
    ] {
        let page = s
            .browser
            .post_login(&login, email, "wrong-password-1")
            .await;
        assert_eq!(page.status, status, "{email}");
    }

    // A sign-in, a code exchanged, a refresh, and the first refresh token again.
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let rt = tokens.refresh_token().unwrap().clone();
    s.rp.exchange_refresh_token(&rt)
        .unwrap()
        .request_async(&s.http)
        .await
        .unwrap();
    let reused =
        s.rp.exchange_refresh_token(&rt)
            .unwrap()
            .request_async(&s.http)
            .await;
    assert!(reused.is_err());
    // A grant type we do not have: counted as `other`, whatever the client sent.
    let odd = s
        .http
        .0
        .post(format!("{}/token", s.app.issuer()))
        .basic_auth(&s.client_id, s.secret.as_deref())
        .form(&[("grant_type", "urn:example:made-up")])
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), 400);
    // Every mail queued so far has been tried.
    let mails = s.app.settled().await;
    assert!(mails.iter().any(|m| m.to == taro), "the lock mail");

    let text = s.app.get("/metrics").await.text().await.unwrap();
    let sign_ins = |result: &str| {
        sample(
            &text,
            "tobira_sign_ins_total",
            &[("method", "password"), ("result", result)],
        )
    };
    assert_eq!(sign_ins("success"), 1.0);
    assert_eq!(sign_ins("wrong_password"), 3.0);
    assert_eq!(sign_ins("unknown_account"), 1.0);
    assert_eq!(sign_ins("throttled"), 1.0);
    assert_eq!(
        sample(&text, "tobira_sign_in_locks_total", &[("scope", "account")]),
        1.0
    );
    let grants = |grant_type: &str, result: &str| {
        sample(
            &text,
            "tobira_token_grants_total",
            &[("grant_type", grant_type), ("result", result)],
        )
    };
    assert_eq!(grants("authorization_code", "granted"), 1.0);
    assert_eq!(grants("refresh_token", "granted"), 1.0);
    assert_eq!(grants("refresh_token", "refused"), 1.0);
    assert_eq!(grants("other", "refused"), 1.0);
    assert!(
        !text.contains("made-up"),
        "a client's value is never a label"
    );
    assert_eq!(sample(&text, "tobira_refresh_token_reuse_total", &[]), 1.0);
    let queued = sample(&text, "tobira_mails_queued_total", &[]);
    assert!(queued >= 1.0, "{text}");
    assert_eq!(
        sample(&text, "tobira_mail_deliveries_total", &[("result", "sent")]),
        queued,
        "each queued mail was sent once"
    );
    assert_eq!(
        metric(
            &text,
            "tobira_mail_deliveries_total",
            &[("result", "failed")]
        ),
        None
    );
    assert_eq!(sample(&text, "tobira_password_hashes_waiting", &[]), 0.0);
    let pool = |state: &str| sample(&text, "tobira_db_pool_connections", &[("state", state)]);
    assert_eq!(
        pool("max"),
        f64::from(s.app.state.config.database.max_connections.max(2))
    );
    assert!(pool("in_use") + pool("idle") >= 1.0, "{text}");
    assert!(pool("in_use") + pool("idle") <= pool("max"));
    // The job runner's levels: the mail queue is empty now, so no job waits.
    assert_eq!(
        sample(
            &text,
            "tobira_jobs_oldest_age_seconds",
            &[("queue", "mail")]
        ),
        0.0
    );
}

#[tokio::test]
async fn a_mail_that_cannot_be_delivered_counts_as_failed_and_its_age_shows() {
    let blocked = tempfile::NamedTempFile::new().unwrap();
    let outbox = blocked.path().join("outbox").display().to_string();
    let s = setup_with(Default::default(), move |c| {
        c.throttle.account_failures = 1;
        // A directory under a file: every delivery to the outbox fails.
        c.mail.outbox_dir = outbox;
    })
    .await;
    let pending = authorize(&s.rp, &[]);
    let login = s.browser.follow(s.browser.get(&pending.url).await).await;
    let page = s
        .browser
        .post_login(&login, EMAIL, "wrong-password-1")
        .await;
    assert_eq!(page.status, 401);

    let mut text = String::new();
    for _ in 0..200 {
        text = s.app.get("/metrics").await.text().await.unwrap();
        if metric(
            &text,
            "tobira_mail_deliveries_total",
            &[("result", "failed")],
        )
        .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sample(
            &text,
            "tobira_mail_deliveries_total",
            &[("result", "failed")]
        ),
        1.0
    );
    assert_eq!(sample(&text, "tobira_mails_queued_total", &[]), 1.0);
    assert_eq!(
        metric(&text, "tobira_mail_deliveries_total", &[("result", "sent")]),
        None
    );

    // The failed mail waits for its retry: the queue's oldest job ages with the clock.
    s.app.clock().advance(time::Duration::seconds(1));
    let mut age = 0.0;
    for _ in 0..200 {
        let text = s.app.get("/metrics").await.text().await.unwrap();
        age = metric(
            &text,
            "tobira_jobs_oldest_age_seconds",
            &[("queue", "mail")],
        )
        .unwrap_or(0.0);
        if age >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(age >= 1.0, "{age}");
}

#[tokio::test]
async fn each_request_is_logged_once_with_its_route_status_time_and_id_but_no_query() {
    let logs = CapturedLogs::install();
    let app = TestApp::spawn().await;
    let secret_state = "state-that-must-stay-secret-4711";
    let res = app
        .get(&format!(
            "/authorize?client_id=nobody&response_type=code&state={secret_state}"
        ))
        .await;
    let status = res.status().as_u16();
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    app.get("/no/such/page").await;

    let access: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|l| l["target"] == "tobira::access")
        .collect();
    let line = access
        .iter()
        .find(|l| l["fields"]["request_id"] == request_id.as_str())
        .unwrap_or_else(|| panic!("an access line for {request_id}: {}", logs.text()));
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["method"], "GET");
    assert_eq!(line["fields"]["route"], "/authorize");
    assert_eq!(line["fields"]["status"], status);
    assert!(line["fields"]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        access
            .iter()
            .filter(|l| l["fields"]["request_id"] == request_id.as_str())
            .count(),
        1,
        "one line per request"
    );
    assert!(
        access
            .iter()
            .any(|l| l["fields"]["route"] == "unmatched" && l["fields"]["status"] == 404),
        "{}",
        logs.text()
    );
    // The request span names the path; nothing names the query.
    let text = logs.text();
    for never in [secret_state, "client_id=nobody"] {
        assert!(!text.contains(never), "{never} is logged");
    }
}

#[tokio::test]
async fn no_access_log_when_log_access_is_off() {
    let logs = CapturedLogs::install();
    let app = TestApp::spawn_with(|c| c.log.access = false).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert!(
        !logs.lines().iter().any(|l| l["target"] == "tobira::access"),
        "{}",
        logs.text()
    );
    // The log works: the start was logged.
    assert!(logs.text().contains("listening on"), "{}", logs.text());
}

/// `tobira migrate …` against `db`; standard output, and standard error on failure.
fn migrate(db: &TestDb, dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("migrate")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TOBIRA_DATA_DIR", dir.join("data"))
        .env("TOBIRA_DATABASE__URL", &db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "migrate {args:?} exits 0: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn migrate_names_each_migration_it_applies_and_status_lists_them_all() {
    for db in TestDb::all().await {
        let dir = tempfile::tempdir().unwrap();
        let before = migrate(&db, dir.path(), &["status"]);
        let listed: Vec<(&str, &str)> = before
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(word, _)| matches!(*word, "applied" | "pending"))
            .map(|(word, name)| (word, name.trim()))
            .collect();
        assert!(listed.len() >= 10, "{before}");
        assert!(listed.iter().all(|(w, _)| *w == "pending"), "{before}");
        assert!(
            before.contains(&format!("0 applied, {} pending", listed.len())),
            "{before}"
        );
        // Looking changed nothing: the schema is still missing.
        assert!(
            matches!(
                db.connect().await.check_schema().await,
                Err(tobira_auth::store::DbError::Outdated)
            ),
            "{:?}",
            db.backend
        );

        let applied = migrate(&db, dir.path(), &[]);
        let names: Vec<&str> = applied
            .lines()
            .filter_map(|l| l.strip_prefix("applied "))
            .collect();
        let expected: Vec<&str> = listed.iter().map(|(_, n)| *n).collect();
        assert_eq!(names, expected, "each one named, in order: {applied}");
        db.connect().await.check_schema().await.unwrap();

        let after = migrate(&db, dir.path(), &["status"]);
        for name in &expected {
            assert!(
                after
                    .lines()
                    .any(|l| l.starts_with("applied") && l.ends_with(name)),
                "{name}: {after}"
            );
        }
        assert!(!after.contains("pending "), "{after}");
        assert!(
            after.contains(&format!("{} applied, 0 pending", expected.len())),
            "{after}"
        );

        let again = migrate(&db, dir.path(), &[]);
        assert!(!again.contains("applied m"), "{again}");
        assert!(again.contains("nothing to apply"), "{again}");
    }
}

/// On SQLite, a refresh rotation that the writer's own connection cannot run (another
/// connection holds the file's write lock for longer than the writer waits) is answered
/// through the pool once the file is free, and counted in `tobira_sqlite_fallbacks_total`
/// for operators; nothing else is counted. (A read's fallback is counted by the same
/// code: `store::readers`' tests.)
#[tokio::test]
async fn a_sqlite_rotation_its_writer_cannot_run_is_run_on_the_pool_and_counted() {
    use sqlx::Connection;
    let s = setup(ClientOpts {
        refresh: true,
        ..Default::default()
    })
    .await;
    if s.app.state.db.backend() != sea_orm::DbBackend::Sqlite {
        eprintln!("skipping: SQLite alone has connections of its own beside the pool");
        return;
    }
    let url = s.app.state.config.database.url.expose().to_owned();
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let rt = tokens.refresh_token().unwrap().clone();
    let fallbacks = |text: &str, path: &str| {
        metric(text, "tobira_sqlite_fallbacks_total", &[("path", path)]).unwrap_or(0.0)
    };
    let text = s.app.get("/metrics").await.text().await.unwrap();
    assert_eq!(fallbacks(&text, "rotation"), 0.0, "{text}");
    assert_eq!(fallbacks(&text, "read"), 0.0, "{text}");

    // A write held until the writer has given up (after 200 ms) and the rotation went
    // to the pool, which waits for it (its busy timeout is 5 s).
    let mut holder = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let refresh = s.rp.exchange_refresh_token(&rt).unwrap();
    let release = async {
        let started = Instant::now();
        loop {
            let text = s.app.get("/metrics").await.text().await.unwrap();
            if fallbacks(&text, "rotation") >= 1.0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "the writer never gave the rotation to the pool"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    };
    let (refreshed, ()) = tokio::join!(refresh.request_async(&s.http), release);
    let refreshed = refreshed.expect("the refresh is answered once the file is free");
    assert_ne!(refreshed.refresh_token().unwrap().secret(), rt.secret());
    let text = s.app.get("/metrics").await.text().await.unwrap();
    assert_eq!(fallbacks(&text, "rotation"), 1.0, "{text}");
    assert_eq!(fallbacks(&text, "read"), 0.0, "{text}");

    holder.close().await.unwrap();
    // The new access token is read on SQLite's own connections again.
    assert_eq!(
        crate::oidc::userinfo_status(&s, refreshed.access_token()).await,
        200
    );
    let text = s.app.get("/metrics").await.text().await.unwrap();
    assert_eq!(fallbacks(&text, "read"), 0.0, "{text}");
    assert_eq!(fallbacks(&text, "rotation"), 1.0, "{text}");
}
