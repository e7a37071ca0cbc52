//! Operations endpoints: liveness, readiness (503 while draining), Prometheus metrics;
//! the middleware that counts and logs every request; and the metrics beyond HTTP, each
//! with a helper the code that does the thing calls. Label values come from fixed sets
//! (grant types, results, configured providers), never from what a request carries.
//!
//! | metric | labels | where |
//! |---|---|---|
//! | `tobira_sign_ins_total` | `method` (`password`, `password+totp`, `passkey`, `fed:<provider>` …), `result` (`success`, `wrong_password`, `unknown_account`, `throttled` …) | each attempt on the sign-in paths (`authn::sign_in`) |
//! | `tobira_sign_in_locks_total`, `tobira_sign_in_throttled_total` | `scope` | a failure that sets a lock, a refused attempt (`account::unlock`) |
//! | `tobira_token_grants_total` | `grant_type`, `result` (`granted`, `refused`) | `/token`, after client authentication |
//! | `tobira_refresh_token_reuse_total` | | a rotated refresh token came back (its grant is revoked) |
//! | `tobira_mails_queued_total` | | a mail sealed for the job queue |
//! | `tobira_mail_deliveries_total` | `result` (`sent`, `failed`) | each try of the job runner (a failed one is retried) |
//! | `tobira_backchannel_logouts_total` | `result` | each back-channel delivery (`oidc::backchannel`) |
//! | `tobira_jobs_*` | `queue` | the job runner, including `tobira_jobs_oldest_age_seconds` |
//! | `tobira_password_hashes_waiting` | | hashes waiting for an argon2 thread, at scrape time |
//! | `tobira_db_pool_connections` | `state` (`in_use`, `idle`, `max`) | the database pool, at scrape time |
//! | `tobira_sqlite_fallbacks_total` | `path` (`read`, `rotation`) | a grant read or a refresh rotation that SQLite's own connections could not run, run on the pool instead (`store::readers`, `store::writer`) |

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::state::AppState;
use crate::store::LoginResult;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Alive: the process serves requests. Deliberately checks nothing else, so an
/// orchestrator does not restart replicas because the database is down.
async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// Ready: both stores answer, and the replica is not shutting down. A load balancer
/// sends no traffic to a replica that answers 503: while draining (after SIGTERM, for
/// `server.drain_secs`) it still serves what reaches it, so the balancer has that long to
/// notice and no request is cut off. Causes are logged, not sent.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "draining" })),
        )
            .into_response();
    }
    let (db, eph) = tokio::join!(state.db.ping(), state.ephemeral.ping());
    if let Err(e) = &db {
        tracing::warn!(error = %e, "readiness: database unavailable");
    }
    if let Err(e) = &eph {
        tracing::warn!(error = %e, "readiness: ephemeral store unavailable");
    }
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let ready = db.is_ok() && eph.is_ok();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": word(ready),
        "checks": { "database": word(db.is_ok()), "ephemeral": word(eph.is_ok()) },
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Levels, not events: read now, so a scrape sees this moment's queue and pool.
    metrics::gauge!(HASHES_WAITING).set(state.hasher.waiting() as f64);
    let pool = state.db.pool_use();
    for (label, n) in [
        ("in_use", pool.in_use),
        ("idle", pool.idle),
        ("max", pool.max),
    ] {
        metrics::gauge!(POOL_CONNECTIONS, "state" => label).set(f64::from(n));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// The Prometheus recorder. `metrics` allows one global recorder per process, and one
/// process may hold several apps (the demo, a test binary), so it is installed once and
/// every app shares the handle.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    /// This app's request metrics (handles into the shared recorder).
    requests: Arc<RequestMetrics>,
}

impl Metrics {
    pub fn install() -> Self {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        let handle = HANDLE.get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(REQUEST_SECONDS.to_owned()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    ],
                )
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            spawn_upkeep(handle.clone());
            // Fails only if something else installed a recorder first; then our
            // numbers go there and /metrics shows what this handle sees.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            describe();
            handle
        });
        Self {
            handle: handle.clone(),
            requests: Arc::default(),
        }
    }

    fn render(&self) -> String {
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// How often the recorder folds recorded histogram samples into its buckets.
pub const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The upkeep interval in effect, in milliseconds: `UPKEEP_EVERY`, unless a test set a
/// shorter one.
static UPKEEP_EVERY_MS: AtomicU64 = AtomicU64::new(UPKEEP_EVERY.as_millis() as u64);

/// The interval the upkeep thread sleeps between two upkeeps.
pub fn upkeep_every() -> std::time::Duration {
    std::time::Duration::from_millis(UPKEEP_EVERY_MS.load(Ordering::Relaxed))
}

/// Test seam: a shorter upkeep interval, so that the test of the upkeep waits for a few
/// of them in seconds rather than half a minute. The thread reads it before each sleep.
#[doc(hidden)]
pub fn set_upkeep_every(every: std::time::Duration) {
    let ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
    UPKEEP_EVERY_MS.store(ms, Ordering::Relaxed);
}

/// The recorder keeps every histogram sample until upkeep runs, and nothing else runs it
/// but a scrape: without a scraper, memory grew with every request (19 → 62 MiB in 60 s
/// of load). A plain thread, because the recorder is process-wide and outlives any one
/// runtime (tests and the demo start several).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(upkeep_every());
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start metrics upkeep: memory grows until /metrics is scraped");
    }
}

/// Records one request latency sample, as the request middleware does (for tests and
/// benchmarks of the recorder itself).
pub fn record_request_seconds(route: &str, seconds: f64) {
    metrics::histogram!(REQUEST_SECONDS, "route" => route.to_owned(), "method" => "GET")
        .record(seconds);
}

const REQUESTS_TOTAL: &str = "tobira_http_requests_total";
const REQUEST_SECONDS: &str = "tobira_http_request_duration_seconds";
const SIGN_INS: &str = "tobira_sign_ins_total";
const TOKEN_GRANTS: &str = "tobira_token_grants_total";
const REFRESH_REUSE: &str = "tobira_refresh_token_reuse_total";
const MAILS_QUEUED: &str = "tobira_mails_queued_total";
const MAIL_DELIVERIES: &str = "tobira_mail_deliveries_total";
const HASHES_WAITING: &str = "tobira_password_hashes_waiting";
const POOL_CONNECTIONS: &str = "tobira_db_pool_connections";
const SQLITE_FALLBACKS: &str = "tobira_sqlite_fallbacks_total";

fn describe() {
    metrics::describe_counter!(REQUESTS_TOTAL, "HTTP requests answered");
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "HTTP request latency"
    );
    metrics::describe_counter!(SIGN_INS, "Sign-in attempts by method and result");
    metrics::describe_counter!(TOKEN_GRANTS, "Token requests by grant type and result");
    metrics::describe_counter!(
        REFRESH_REUSE,
        "Rotated refresh tokens presented again (their grant is revoked)"
    );
    metrics::describe_counter!(MAILS_QUEUED, "Mails sealed into the job queue");
    metrics::describe_counter!(MAIL_DELIVERIES, "Tries to deliver a queued mail");
    metrics::describe_gauge!(
        HASHES_WAITING,
        "Password hashes waiting for an argon2 thread"
    );
    metrics::describe_gauge!(
        POOL_CONNECTIONS,
        "Database pool connections in use, idle, and the most it opens"
    );
    metrics::describe_counter!(
        SQLITE_FALLBACKS,
        "SQLite statements run on the pool because their own connection could not run them"
    );
}

/// One sign-in attempt and how it ended. `known_account`: whether the typed identifier
/// names an account (an unknown one's wrong password is `unknown_account`). `method` is
/// one of the history's method names, a fixed set given the configured providers.
pub fn sign_in_attempt(method: &str, result: LoginResult, known_account: bool) {
    let result = match result {
        LoginResult::WrongPassword if !known_account => "unknown_account",
        other => other.as_str(),
    };
    metrics::counter!(SIGN_INS, "method" => method.to_owned(), "result" => result).increment(1);
}

/// One token request by a client that authenticated: its grant type (anything else
/// than the three we know is `other`) and whether tokens were issued.
pub fn token_grant(grant_type: Option<&str>, granted: bool) {
    let grant_type = match grant_type {
        Some("authorization_code") => "authorization_code",
        Some("refresh_token") => "refresh_token",
        Some("client_credentials") => "client_credentials",
        Some(_) => "other",
        None => "none",
    };
    let result = if granted { "granted" } else { "refused" };
    metrics::counter!(TOKEN_GRANTS, "grant_type" => grant_type, "result" => result).increment(1);
}

/// A rotated refresh token came back: its family leaked, and its grant was revoked.
pub fn refresh_token_reused() {
    metrics::counter!(REFRESH_REUSE).increment(1);
}

/// A mail was sealed for the queue, to be written with the change that causes it (a
/// change that then fails leaves it counted: such failures are errors, logged apart).
pub fn mail_queued() {
    metrics::counter!(MAILS_QUEUED).increment(1);
}

/// One try of delivering a queued mail (a failed one is retried with backoff; one given
/// up shows in `tobira_jobs_failed_total{queue="mail"}`).
pub fn mail_delivery(sent: bool) {
    let result = if sent { "sent" } else { "failed" };
    metrics::counter!(MAIL_DELIVERIES, "result" => result).increment(1);
}

/// A statement SQLite's own connections could not run (the file busy for longer than the
/// writer waits, the database closing, an error) ran on the pool instead. A few are
/// harmless; a steady rate means the fast paths stand idle (see `store::writer`).
pub fn sqlite_fallback(path: &'static str) {
    metrics::counter!(SQLITE_FALLBACKS, "path" => path).increment(1);
}

/// The method as a label: HTTP lets a client invent any method name, and each new one
/// would be a new series (review: `curl -X X1`, `-X X2` … grew `/metrics` without bound).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts requests by route template (never the raw path: unbounded label values would
/// let anyone blow up the metric store), method and status; and writes the access log
/// line (`log.access`): method, route template, status, milliseconds and request id.
/// Never the query string (codes, tokens and states travel in it) nor any header.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    // Cloned out of the request before it moves on: a reference count, not a copy.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = method_label(req.method());
    // Ours, set by the request id middleware (a client's own was replaced).
    let request_id = state
        .config
        .log
        .access
        .then(|| req.headers().get("x-request-id").cloned())
        .flatten();
    let response = next.run(req).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    if state.config.log.access {
        tracing::info!(
            target: "tobira::access",
            method,
            route,
            status,
            latency_ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            request_id = request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
            "request"
        );
    }
    state
        .metrics
        .requests
        .record(route, method, status, elapsed.as_secs_f64());
    response
}

/// The request counter and duration histogram of each route, method and status, made
/// once: a request finds its handles by the route's text (one hash, nothing copied),
/// where `metrics::counter!` with labels copies route, method and status into owned
/// strings and builds and hashes a metric key, twice a request. As bounded as the
/// labels: route templates, eight method names, the statuses Tobira answers with.
#[derive(Default)]
struct RequestMetrics(RwLock<HashMap<Box<str>, RouteMetrics>>);

#[derive(Default)]
struct RouteMetrics {
    counters: Vec<(&'static str, u16, metrics::Counter)>,
    histograms: Vec<(&'static str, metrics::Histogram)>,
}

impl RouteMetrics {
    /// Counts and times one request, if this route has its handles yet.
    fn record(&self, method: &str, status: u16, seconds: f64) -> bool {
        let counter = self
            .counters
            .iter()
            .find(|(m, s, _)| *m == method && *s == status);
        let histogram = self.histograms.iter().find(|(m, _)| *m == method);
        let (Some((_, _, counter)), Some((_, histogram))) = (counter, histogram) else {
            return false;
        };
        counter.increment(1);
        histogram.record(seconds);
        true
    }
}

impl RequestMetrics {
    fn record(&self, route: &str, method: &'static str, status: u16, seconds: f64) {
        let known = self.0.read().unwrap_or_else(PoisonError::into_inner);
        if known
            .get(route)
            .is_some_and(|handles| handles.record(method, status, seconds))
        {
            return;
        }
        drop(known);
        // A new route, method or status: registered once, under the write lock (a
        // second request racing for it finds it there).
        let mut known = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let handles = known.entry(route.into()).or_default();
        if !handles
            .counters
            .iter()
            .any(|(m, s, _)| *m == method && *s == status)
        {
            let counter = metrics::counter!(
                REQUESTS_TOTAL,
                "route" => route.to_owned(),
                "method" => method,
                "status" => status.to_string()
            );
            handles.counters.push((method, status, counter));
        }
        if !handles.histograms.iter().any(|(m, _)| *m == method) {
            let histogram = metrics::histogram!(REQUEST_SECONDS, "route" => route.to_owned(), "method" => method);
            handles.histograms.push((method, histogram));
        }
        handles.record(method, status, seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handles kept for a route count each method and status apart, and time each
    /// method apart, as the labelled macros did for every request.
    #[test]
    fn request_metrics_keep_one_series_per_route_method_and_status() {
        let metrics = Metrics::install();
        let route = "/unit/{id}";
        for (method, status) in [("GET", 200), ("GET", 200), ("GET", 404), ("POST", 200)] {
            metrics.requests.record(route, method, status, 0.002);
        }
        metrics.requests.record("/unit/other", "GET", 200, 0.5);
        let text = metrics.render();
        for (series, value) in [
            (
                r#"tobira_http_requests_total{route="/unit/{id}",method="GET",status="200"}"#,
                2,
            ),
            (
                r#"tobira_http_requests_total{route="/unit/{id}",method="GET",status="404"}"#,
                1,
            ),
            (
                r#"tobira_http_requests_total{route="/unit/{id}",method="POST",status="200"}"#,
                1,
            ),
            (
                r#"tobira_http_requests_total{route="/unit/other",method="GET",status="200"}"#,
                1,
            ),
            (
                r#"tobira_http_request_duration_seconds_count{route="/unit/{id}",method="GET"}"#,
                3,
            ),
            (
                r#"tobira_http_request_duration_seconds_count{route="/unit/{id}",method="POST"}"#,
                1,
            ),
            (
                r#"tobira_http_request_duration_seconds_bucket{route="/unit/{id}",method="GET",le="0.0025"}"#,
                3,
            ),
            (
                r#"tobira_http_request_duration_seconds_bucket{route="/unit/other",method="GET",le="0.25"}"#,
                0,
            ),
        ] {
            let line = format!("{series} {value}\n");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }
}
