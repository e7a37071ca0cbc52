//! Builds the app from a configuration: stores, migrations, state, router, listener.
//! `main` and the tests go through the same `Application::build`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::PropagateRequestIdLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use url::Url;

use crate::authn::password::{Password, PasswordHasher};
use crate::authn::session::SessionPolicy;
use crate::authn::throttle::Throttle;
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::random_token;
use crate::keys::{IdentifierHasher, KeyError, KeyPolicy, KeyRing, MasterKey};
use crate::mail::Mailer;
use crate::ops::{self, Metrics};
use crate::state::{AppState, Shared};
use crate::store::{Db, DbError, Ephemeral, EphemeralError, ephemeral};
use crate::web::cookies::CookiePolicy;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Ephemeral(#[from] EphemeralError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// Connects the durable store and brings its schema up to date (or checks it is, when
/// `database.migrate_on_start` is off). Shared by `serve` and the CLI's admin commands.
pub async fn open_db(config: &Config) -> Result<Db, DbError> {
    let db = Db::connect(
        &config.database_url(),
        config.database.max_connections,
        Duration::from_secs(config.database.connect_timeout_secs),
    )
    .await?;
    if config.database.migrate_on_start {
        db.migrate().await?;
    } else {
        db.check_schema().await?;
    }
    Ok(db)
}

pub async fn open_ephemeral(config: &Config, clock: &Clock) -> Result<Ephemeral, EphemeralError> {
    let url = config.ephemeral.url.expose();
    Ok(if url.is_empty() {
        Arc::new(ephemeral::MemoryStore::with_quota(
            clock.clone(),
            config.limits.max_parked,
        ))
    } else {
        let ca_file = Some(config.ephemeral.tls_ca_file.as_str())
            .filter(|f| !f.is_empty())
            .map(std::path::Path::new);
        Arc::new(
            ephemeral::RedisStore::connect_trusting(
                url,
                &config.ephemeral.key_prefix,
                ca_file,
                clock.clone(),
            )
            .await?,
        )
    })
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    /// `server.management_bind`'s listener and what it serves (operations and the admin
    /// API), when configured.
    management: Option<(TcpListener, Router)>,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config, clock: Clock) -> Result<Self, StartError> {
        let listener = TcpListener::bind(config.server.bind)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.server.bind,
                source,
            })?;
        Self::build_on(listener, config, clock).await
    }

    /// Builds on a listener bound by the caller (tests bind port 0 first, to derive the
    /// issuer from the real port).
    pub async fn build_on(
        listener: TcpListener,
        config: Config,
        clock: Clock,
    ) -> Result<Self, StartError> {
        Self::build_sharing(listener, config, clock, None).await
    }

    /// Like [`Self::build_on`], with an ephemeral store shared with another instance in
    /// this process (tests run two replicas on one in-process store); `None` opens the
    /// configured one.
    pub async fn build_sharing(
        listener: TcpListener,
        config: Config,
        clock: Clock,
        ephemeral: Option<Ephemeral>,
    ) -> Result<Self, StartError> {
        // Bound first: a port already taken fails the start before any other work.
        let management = match config.server.management_bind {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        let management_addr = management
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
            .map_err(|e| StartError::Other(e.to_string()))?;
        let db = open_db(&config).await?;
        let ephemeral = match ephemeral {
            Some(shared) => shared,
            None => open_ephemeral(&config, &clock).await?,
        };
        let hasher = PasswordHasher::new(
            &config.password,
            config.max_concurrent_hashes(),
            config.max_waiting_hashes(),
        )
        .map_err(|e| StartError::Other(e.to_string()))?;
        let master = MasterKey::load_or_create(&config)?;
        let keys =
            KeyRing::load_or_init(&db, &master, &clock, KeyPolicy::from_config(&config)).await?;
        let identifiers = IdentifierHasher::load_or_init(&db, &master, &clock).await?;
        let mailer = Mailer::from_config(&config).map_err(|e| StartError::Other(e.to_string()))?;
        let dummy = Password::for_verification(&random_token(&mut rand::rng(), 24));
        let dummy_hash: Arc<str> = hasher
            .hash(&dummy)
            .await
            .map_err(|e| StartError::Other(e.to_string()))?
            .into();
        hasher.release_memory();
        let throttle = Throttle::new(ephemeral.clone(), clock.clone(), config.throttle.clone());
        let federation = Arc::new(
            crate::federation::Providers::build(&config, clock.clone())
                .map_err(StartError::Other)?,
        );
        let state = AppState::new(Shared {
            db,
            ephemeral,
            throttle,
            clock,
            hasher,
            dummy_hash,
            discovery: crate::oidc::discovery::Published::new(&config, &keys),
            keys,
            master: Arc::new(master),
            mailer,
            backchannel: crate::oidc::backchannel::Sender::new(&config.backchannel)
                .map_err(|e| StartError::Other(e.to_string()))?,
            identifiers,
            sessions: SessionPolicy::from(&config.session),
            cookies: CookiePolicy {
                secure: config.secure_cookies(),
            },
            issuer_origin: Url::parse(config.issuer.as_str())
                .map(|u| u.origin().ascii_serialization())
                .map_err(|e| StartError::Other(e.to_string()))?
                .into(),
            metrics: Metrics::install(),
            background: tokio_util::task::TaskTracker::new(),
            webauthn: match crate::authn::passkey::relying_party(config.issuer.as_str()) {
                Ok(rp) => Some(rp),
                Err(why) => {
                    tracing::warn!("{why}");
                    None
                }
            },
            federation,
            draining: Arc::new(AtomicBool::new(false)),
            management_addr,
            config: Arc::new(config),
        });
        let (router, management_router) = routers(&state);
        Ok(Self {
            listener,
            router,
            management: management.zip(management_router),
            state,
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// `http://<bound address>`: where this process answers.
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}", self.local_addr())).expect("socket address forms a URL")
    }

    /// The bound address of the management listener (the real port when configured
    /// with port 0); `None` without `server.management_bind`.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.state.management_addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// What the public listener serves, to call in process without a socket (the fuzz
    /// targets); a request needs a `ConnectInfo<SocketAddr>` extension as a served one has.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting and finishes in-flight
    /// requests at once. For instances stopped inside a process (tests, the demo);
    /// `tobira serve` drains first ([`Self::run_draining`]).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve(shutdown, Duration::ZERO).await
    }

    /// Serves until `shutdown` completes (SIGTERM, ctrl-c), then drains: `/readyz`
    /// answers 503 while everything else is still served for `server.drain_secs`, so a
    /// load balancer takes the replica out before it closes; then stops accepting and
    /// finishes in-flight requests.
    pub async fn run_draining(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let drain = Duration::from_secs(self.state.config.server.drain_secs);
        self.serve(shutdown, drain).await
    }

    async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        drain: Duration,
    ) -> std::io::Result<()> {
        tracing::info!(issuer = %self.state.config.issuer, "listening on http://{}", self.local_addr());
        if let Some(addr) = self.state.management_addr {
            tracing::info!("management listener on http://{addr}");
        }
        let worker = crate::jobs::spawn(self.state.clone());
        // Rotations made through any replica (or the CLI) reach this one within an
        // interval, without a restart.
        let reloader = self.state.keys.spawn_reloader(
            self.state.db.clone(),
            self.state.master.clone(),
            self.state.config.keys.reload_interval().unsigned_abs(),
        );
        // One shutdown for both listeners; the draining flag is set before the wait.
        let (closing, closed) = tokio::sync::watch::channel(false);
        let draining = self.state.draining.clone();
        tokio::spawn(async move {
            shutdown.await;
            draining.store(true, Ordering::Release);
            if !drain.is_zero() {
                tracing::info!(
                    secs = drain.as_secs(),
                    "draining: /readyz answers 503, requests are still served"
                );
                tokio::time::sleep(drain).await;
            }
            tracing::info!("shutting down: finishing requests in flight");
            let _ = closing.send(true);
        });
        let until_closed = move || {
            let mut closed = closed.clone();
            async move {
                // An error means the sender is gone: stop as well.
                let _ = closed.wait_for(|done| *done).await;
            }
        };
        let serve = |listener: TcpListener, router: Router| {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(until_closed())
            .into_future()
        };
        let public = serve(self.listener, self.router);
        let served = match self.management {
            Some((listener, router)) => {
                let management = serve(listener, router);
                tokio::try_join!(public, management).map(drop)
            }
            None => public.await,
        };
        // A job cut off here runs again when its lease ends, on this or another replica.
        worker.abort();
        reloader.abort();
        // Writes handlers left behind (a reset request, a sign-up) finish first.
        self.state.background.close();
        if tokio::time::timeout(Duration::from_secs(10), self.state.background.wait())
            .await
            .is_err()
        {
            tracing::error!("shutting down with background writes unfinished");
        }
        served
    }
}

/// The public router and, with `server.management_bind`, the management one: the
/// operations endpoints and the admin API move there, and the public listener answers
/// 404 for them (a probe or an admin token never needs to reach the internet side).
/// Both get the same middleware: request id, trace, metrics, access log, headers.
fn routers(state: &AppState) -> (Router, Option<Router>) {
    let public = Router::new()
        .merge(crate::oidc::router())
        .merge(crate::account::router())
        .merge(crate::web::pages::router());
    let operations = Router::new()
        .merge(ops::router())
        .merge(crate::admin::api::router());
    if state.management_addr.is_some() {
        (
            with_middleware(public, state),
            Some(with_middleware(operations, state)),
        )
    } else {
        (with_middleware(public.merge(operations), state), None)
    }
}

fn with_middleware(routes: Router<AppState>, state: &AppState) -> Router {
    let server = &state.config.server;
    let request_id = HeaderName::from_static(REQUEST_ID);
    let middleware = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        .layer(middleware::from_fn_with_state(state.clone(), assign_request_id))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let header = |name: &str| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                };
                tracing::info_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id = %header(REQUEST_ID),
                    upstream_request_id = %header(UPSTREAM_REQUEST_ID),
                )
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Not `no-referrer`: with it, browsers send `Origin: null` on our own form posts,
        // which the origin check must refuse. `same-origin` still sends nothing to others.
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        // Scripts and styles only from us (the passkey script), no framing
        // (clickjacking). No `form-action`: browsers apply it to the redirect that follows
        // a form post.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(server.request_timeout_secs),
        ))
        .layer(RequestBodyLimitLayer::new(server.max_body_bytes));
    // HSTS only when the issuer is https: sent over plain http it would be ignored, and
    // on a `localhost` demo it would pin a name that other local apps use.
    let hsts = state.config.secure_cookies().then(|| {
        SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        )
    });
    routes
        .layer(middleware::from_fn_with_state(state.clone(), ops::track))
        .layer(middleware)
        .layer(tower::util::option_layer(hsts))
        .with_state(state.clone())
}

const REQUEST_ID: &str = "x-request-id";
/// Internal only: where a trusted proxy's own request id travels to the log.
const UPSTREAM_REQUEST_ID: &str = "x-tobira-upstream-request-id";

/// Every request gets an id made here, returned in `X-Request-Id` and shown on error
/// pages. An id sent by a trusted proxy is logged beside ours, never instead of it: a
/// client-chosen id could collide with another request's, or forge a log line's key.
async fn assign_request_id(
    State(state): State<AppState>,
    mut req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let trusted = peer.is_some_and(|ip| {
        state
            .config
            .server
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&ip))
    });
    let headers = req.headers_mut();
    let incoming = headers.remove(REQUEST_ID);
    headers.remove(UPSTREAM_REQUEST_ID);
    if let Some(upstream) = incoming.filter(|v| trusted && v.len() <= 200) {
        headers.insert(UPSTREAM_REQUEST_ID, upstream);
    }
    // From the thread's generator, not a system call per request.
    let ours = uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string();
    if let Ok(v) = HeaderValue::from_str(&ours) {
        headers.insert(REQUEST_ID, v);
    }
    next.run(req).await
}

/// Completes on ctrl-c or SIGTERM (what orchestrators send before killing a replica).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}
