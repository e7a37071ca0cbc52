//! Operations endpoints: liveness, readiness, Prometheus metrics; and the middleware that
//! counts every request.

use std::sync::OnceLock;
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

/// Ready: both stores answer. A load balancer sends no traffic to a replica that
/// answers 503. Causes are logged, not sent.
async fn readyz(State(state): State<AppState>) -> Response {
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
pub struct Metrics(PrometheusHandle);

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
            metrics::describe_counter!(REQUESTS_TOTAL, "HTTP requests answered");
            metrics::describe_histogram!(
                REQUEST_SECONDS,
                metrics::Unit::Seconds,
                "HTTP request latency"
            );
            handle
        });
        Self(handle.clone())
    }

    fn render(&self) -> String {
        self.0.run_upkeep();
        self.0.render()
    }
}

/// How often the recorder folds recorded histogram samples into its buckets.
pub const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The recorder keeps every histogram sample until upkeep runs, and nothing else runs it
/// but a scrape: without a scraper, memory grew with every request (19 → 62 MiB in 60 s
/// of load). A plain thread, because the recorder is process-wide and outlives any one
/// runtime (tests and the demo start several).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
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

/// Counts requests by route template (never the raw path: unbounded label values would
/// let anyone blow up the metric store), method and status.
pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!(REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(REQUEST_SECONDS, &labels[..2]).record(start.elapsed().as_secs_f64());
    response
}
