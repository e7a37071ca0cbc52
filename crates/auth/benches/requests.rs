//! What the OP itself spends on a request, in process: the router and every middleware
//! (request id, trace span, access log, metrics, headers) and the handler, without the
//! socket, hyper's parsing and the kernel's loopback (which `scripts/load.sh` measures
//! with them).
//!
//! Run: `cargo bench -p tobira-auth --bench requests -j1`
//! (shorten with `-- --measurement-time 3`).
//!
//! The OP runs as `tobira serve` does by default: SQLite in WAL mode, the in-process
//! store, a two-thread runtime, the access log on (its lines go to a writer that drops
//! them, through the same buffer as standard error). `userinfo` presents an access token
//! the token endpoint issued for a refresh of one of 1,000 seeded live sessions. Each is
//! measured in wall time, then in the process's CPU time (`request (CPU)`: every
//! thread's, as `scripts/load.sh` counts it, without the socket).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use criterion::measurement::Measurement;
use criterion::{Criterion, criterion_group, criterion_main};
use tobira_auth::config::{Issuer, Secret};
use tobira_auth::store::bench::fixture;
use tobira_auth::{Application, Clock, Config, telemetry};
use tower::ServiceExt;

#[path = "common/cpu.rs"]
mod cpu;
use cpu::ProcessCpu;

struct Fixture {
    rt: tokio::runtime::Runtime,
    router: Router,
    access_token: String,
    _logs: telemetry::Logs,
    // Kept alive until the benchmarks end: the database file lives here.
    _dir: tempfile::TempDir,
}

fn setup() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut config = Config {
        issuer: Issuer::parse("http://127.0.0.1:9").expect("issuer"),
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.database.url = Secret::new(format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("tobira.db").display()
    ));
    assert!(config.log.access, "the access log is on by default");
    let logs = telemetry::init_writing_to(&config.log, std::io::sink(), false);
    let (router, access_token) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        config.server.bind = listener.local_addr().expect("bound");
        let app = Application::build_on(listener, config, Clock::system())
            .await
            .expect("the OP starts");
        let state = app.state().clone();
        let bench = fixture(&state.db, &state.clock, 1000).await.expect("seed");
        let router = app.router();
        // A real access token: the token endpoint's answer to a refresh.
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", bench.client_id, bench.client_secret));
        let form = format!(
            "grant_type=refresh_token&refresh_token={}",
            bench.seeded.sample[0].refresh_token
        );
        let answer = send(
            &router,
            Request::post("/token")
                .header(header::AUTHORIZATION, format!("Basic {basic}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .expect("request"),
        )
        .await;
        assert_eq!(answer.0, StatusCode::OK, "{:?}", answer.1);
        let tokens: serde_json::Value = serde_json::from_slice(&answer.1).expect("JSON");
        let access_token = tokens["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned();
        (router, access_token)
    });
    Fixture {
        rt,
        router,
        access_token,
        _logs: logs,
        _dir: dir,
    }
}

/// One request through the router as a served connection makes it; its status and body.
async fn send(router: &Router, mut request: Request<Body>) -> (StatusCode, Bytes) {
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the body");
    (status, body)
}

fn get(path: &str, bearer: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::empty()).expect("request")
}

fn requests(c: &mut Criterion) {
    measure(c, "request");
}

fn requests_cpu(c: &mut Criterion<ProcessCpu>) {
    measure(c, "request (CPU)");
}

/// The fixture (and the OP's log subscriber) is made once, for both groups.
static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();

fn measure<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let f = FIXTURE.get_or_init(setup);
    let cases: [(&str, &str, Option<&str>); 3] = [
        ("jwks", "/jwks", None),
        ("discovery", "/.well-known/openid-configuration", None),
        ("userinfo", "/userinfo", Some(&f.access_token)),
    ];
    let mut group = c.benchmark_group(name);
    for (name, path, bearer) in cases {
        let answer = f.rt.block_on(send(&f.router, get(path, bearer)));
        assert_eq!(answer.0, StatusCode::OK, "{name}: {:?}", answer.1);
        group.bench_function(name, |b| {
            b.iter(|| f.rt.block_on(send(&f.router, black_box(get(path, bearer)))))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(10));
    targets = requests
}
criterion_group! {
    name = cpu_benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(10))
        .with_measurement(ProcessCpu);
    targets = requests_cpu
}
criterion_main!(benches, cpu_benches);
