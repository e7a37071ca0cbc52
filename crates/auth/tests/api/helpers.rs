//! Test fixtures: fresh databases and Redis prefixes per test, and `TestApp`, the OP
//! running on 127.0.0.1:0 with a movable clock.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database};
use tobira_auth::store::{Db, Ephemeral, EphemeralStore, ephemeral};
use tobira_auth::{Application, Clock, Config};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use url::Url;

fn require_services() -> bool {
    std::env::var("TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !require_services(),
                "TEST_REQUIRE_SERVICES=1 but {var} is not set"
            );
            None
        }
    }
}

/// Reports an unreachable service: a failure when services are required, else a skip.
fn unreachable(service: &str, error: &dyn std::fmt::Display) {
    assert!(
        !require_services(),
        "{service} unreachable with TEST_REQUIRE_SERVICES=1: {error}"
    );
    eprintln!("skipping {service}: unreachable ({error})");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test: a SQLite file in a temporary directory, or a
/// PostgreSQL database created for the test and dropped after it.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("tobira.db").display()
        );
        Self {
            backend: Backend::Sqlite,
            url,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` (skip) when `TEST_DATABASE_URL` is unset.
    pub async fn postgres() -> Option<Self> {
        let admin_url = service_url("TEST_DATABASE_URL")?;
        let admin = match Database::connect(admin_url.as_str()).await {
            Ok(c) => c,
            Err(e) => {
                unreachable("PostgreSQL", &e);
                return None;
            }
        };
        let name = format!("tobira_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        let _ = admin.close().await;
        let mut url = Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Some(Self {
            backend: Backend::Postgres,
            url: url.to_string(),
            _dir: None,
            pg: Some((admin_url, name)),
        })
    }

    /// SQLite always, PostgreSQL when configured.
    pub async fn all() -> Vec<Self> {
        let mut dbs = vec![Self::sqlite().await];
        dbs.extend(Self::postgres().await);
        dbs
    }

    /// The database an app test uses: PostgreSQL when configured, else SQLite.
    pub async fn preferred() -> Self {
        match Self::postgres().await {
            Some(db) => db,
            None => Self::sqlite().await,
        }
    }

    pub async fn connect(&self) -> Db {
        Db::connect(&self.url, 5, Duration::from_secs(5))
            .await
            .expect("connect to the test database")
    }

    pub async fn migrated(&self) -> Db {
        let db = self.connect().await;
        db.migrate().await.expect("migrations apply");
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.pg.take() else {
            return;
        };
        // Drop runs outside async; a short-lived runtime on its own thread does the I/O.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let admin = Database::connect(admin_url.as_str()).await.ok()?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
    }
}

/// A Redis key prefix that exists for one test; its keys are deleted afterwards.
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
}

impl TestRedis {
    pub async fn new() -> Option<Self> {
        let url = service_url("TEST_REDIS_URL")?;
        let reachable = async {
            let client = redis::Client::open(url.as_str())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        if let Err(e) = tokio::time::timeout(Duration::from_secs(5), reachable)
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            unreachable("Redis", &e);
            return None;
        }
        Some(Self {
            url,
            prefix: format!("tobira-test:{}:", uuid::Uuid::new_v4().simple()),
        })
    }

    pub async fn store(&self, clock: &Clock) -> Ephemeral {
        Arc::new(
            ephemeral::RedisStore::connect(&self.url, &self.prefix, clock.clone())
                .await
                .expect("connect to Redis"),
        )
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let (url, pattern) = (self.url.clone(), format!("{}*", self.prefix));
        let _ = std::thread::spawn(move || {
            let client = redis::Client::open(url.as_str()).ok()?;
            let mut conn = client.get_connection().ok()?;
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut conn).ok()?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(keys).query::<()>(&mut conn).ok()?;
            }
            Some(())
        })
        .join();
    }
}

/// Every ephemeral store available: in-process always, Redis when configured. The
/// `TestRedis` guard keeps the prefix alive until the test ends.
pub async fn ephemeral_stores(clock: &Clock) -> Vec<(&'static str, Ephemeral, Option<TestRedis>)> {
    let mut stores: Vec<(&'static str, Ephemeral, Option<TestRedis>)> = vec![(
        "memory",
        Arc::new(ephemeral::MemoryStore::new(clock.clone())) as Arc<dyn EphemeralStore>,
        None,
    )];
    if let Some(redis) = TestRedis::new().await {
        stores.push(("redis", redis.store(clock).await, Some(redis)));
    }
    stores
}

/// The OP, running in this process on 127.0.0.1 with a port chosen by the OS.
pub struct TestApp {
    pub url: Url,
    pub state: tobira_auth::state::AppState,
    pub http: reqwest::Client,
    _db: TestDb,
    _redis: Option<TestRedis>,
    _data: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestApp {
    /// PostgreSQL + Redis when configured, else SQLite + in-process store.
    pub async fn spawn() -> Self {
        let db = TestDb::preferred().await;
        let redis = TestRedis::new().await;
        let data = tempfile::tempdir().expect("temporary directory");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let port = listener.local_addr().expect("bound").port();
        let mut config = Config::default();
        // Browsers treat `localhost` as a secure context; the name resolves to 127.0.0.1.
        config.issuer = tobira_auth::config::Issuer::parse(&format!("http://localhost:{port}"))
            .expect("issuer URL");
        config.data_dir = data.path().to_path_buf();
        config.server.bind = listener.local_addr().expect("bound");
        config.database.url = tobira_auth::config::Secret::new(db.url.clone());
        if let Some(r) = &redis {
            config.ephemeral.url = tobira_auth::config::Secret::new(r.url.clone());
            config.ephemeral.key_prefix = r.prefix.clone();
        }
        let clock = Clock::manual_at_now();
        let app = Application::build_on(listener, config, clock.clone())
            .await
            .expect("the app starts");
        let url = app.url();
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        Self {
            url,
            state,
            http,
            _db: db,
            _redis: redis,
            _data: data,
            shutdown: Some(tx),
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url.join(path).expect("path joins the base URL"))
            .send()
            .await
            .expect("request reaches the app")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
