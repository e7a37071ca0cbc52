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

#[path = "../support/test_databases.rs"]
mod test_databases;

/// The migrations crate, whose files name the templates (see `test_databases`).
const MIGRATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");

pub fn require_services() -> bool {
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
/// PostgreSQL database created for the test and dropped after it, by a later test
/// (`test_databases::mark_done`).
///
/// The plain constructors (`sqlite`, `postgres`, `all`, `preferred`) give an empty
/// database, for tests of migrating itself (`connect` + `migrate`, `tobira migrate`, a
/// first start); `migrated()` and the `_migrated` constructors give one with every
/// migration applied: a copy of a template built once per migration set (a PostgreSQL
/// database, see `test_databases`; a SQLite file, see `sqlite_template`).
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

/// What a new test database holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Schema {
    Empty,
    Migrated,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join(SQLITE_FILE).display()
        );
        Self {
            backend: Backend::Sqlite,
            url,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A fresh, empty PostgreSQL database, or `None` (skip) when `TEST_DATABASE_URL` is
    /// unset.
    pub async fn postgres() -> Option<Self> {
        Self::postgres_with(Schema::Empty).await
    }

    /// A fresh PostgreSQL database with every migration applied, or `None` (skip).
    pub async fn postgres_migrated() -> Option<Self> {
        Self::postgres_with(Schema::Migrated).await
    }

    async fn postgres_with(schema: Schema) -> Option<Self> {
        let admin_url = test_databases::server_url(&service_url("TEST_DATABASE_URL")?);
        let admin = match Database::connect(admin_url.as_str()).await {
            Ok(c) => c,
            Err(e) => {
                unreachable("PostgreSQL", &e);
                return None;
            }
        };
        let name = format!("tobira_test_{}", uuid::Uuid::new_v4().simple());
        match schema {
            Schema::Empty => {
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create a test database");
            }
            Schema::Migrated => {
                test_databases::create_migrated(&admin, &admin_url, &name, MIGRATIONS.as_ref())
                    .await;
            }
        }
        let _ = admin.close().await;
        test_databases::reap_in_background(&admin_url);
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

    /// The database an app test uses: PostgreSQL when configured, else SQLite; empty.
    pub async fn preferred() -> Self {
        match Self::postgres().await {
            Some(db) => db,
            None => Self::sqlite().await,
        }
    }

    /// Like `preferred`, migrated.
    pub async fn preferred_migrated() -> Self {
        match Self::postgres_migrated().await {
            Some(db) => db,
            None => {
                let sqlite = Self::sqlite().await;
                sqlite.copy_sqlite_template_if_unused().await;
                sqlite
            }
        }
    }

    pub async fn connect(&self) -> Db {
        Db::connect(&self.url, 5, Duration::from_secs(5))
            .await
            .expect("connect to the test database")
    }

    /// A connection to this database with every migration applied. A database that
    /// nothing has used yet becomes a copy of the migrated template first, which is what
    /// migrating it would make of it, for a fraction of the time.
    pub async fn migrated(&self) -> Db {
        match &self.pg {
            Some((admin_url, name)) => self.copy_pg_template_if_unused(admin_url, name).await,
            None => self.copy_sqlite_template_if_unused().await,
        }
        let db = self.connect().await;
        db.migrate().await.expect("migrations apply");
        db
    }

    /// Replaces this PostgreSQL database with a copy of the template under the same name,
    /// provided it holds no table and nobody is connected to it: then nothing the test
    /// did can be lost. Otherwise it stays, and `migrated` migrates it in place.
    async fn copy_pg_template_if_unused(&self, admin_url: &str, name: &str) {
        let conn = Database::connect(self.url.as_str())
            .await
            .expect("connect to the test database");
        let relations = conn
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT COUNT(*) AS n FROM pg_class c \
                 JOIN pg_namespace s ON s.oid = c.relnamespace \
                 WHERE s.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND s.nspname NOT LIKE 'pg\\_toast%'"
                    .to_owned(),
            ))
            .await
            .expect("count the relations")
            .expect("a count")
            .try_get::<i64>("", "n")
            .expect("a number");
        let _ = conn.close().await;
        if relations > 0 {
            return;
        }
        let admin = Database::connect(admin_url)
            .await
            .expect("connect to PostgreSQL");
        // Our own connection may take a moment to end on the server's side. Anyone else
        // connected keeps the database (renaming it would wait for them, then fail).
        let mut unused = false;
        for _ in 0..25 {
            let sessions = admin
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    format!("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = '{name}'"),
                ))
                .await
                .expect("count the sessions")
                .expect("a count")
                .try_get::<i64>("", "n")
                .expect("a number");
            if sessions == 0 {
                unused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The empty one moves aside, for a later test to drop (dropping costs a
        // checkpoint; renaming does not).
        let aside = format!("{name}_empty");
        if unused
            && admin
                .execute_unprepared(&format!("ALTER DATABASE {name} RENAME TO {aside}"))
                .await
                .is_ok()
        {
            test_databases::retire(&admin, &aside).await;
            test_databases::create_migrated(&admin, admin_url, name, MIGRATIONS.as_ref()).await;
        }
        let _ = admin.close().await;
    }
}

impl TestDb {
    /// Copies the SQLite template into this database's file, provided the file does not
    /// exist yet: whatever connects to the database creates it, so nothing used it.
    async fn copy_sqlite_template_if_unused(&self) {
        let Some(dir) = &self._dir else {
            return;
        };
        let file = dir.path().join(SQLITE_FILE);
        if !file.exists() {
            std::fs::copy(sqlite_template().await, &file).expect("copy the SQLite template");
        }
    }
}

/// The test database's file in its temporary directory.
const SQLITE_FILE: &str = "tobira.db";

/// The migrated SQLite template of the current migration set, in the target directory's
/// scratch space, built first if missing. It is built under a name of its own and then
/// renamed into place, so a test copies either nothing or the whole file; tests that
/// start together may each build one. Other sets' templates are removed.
async fn sqlite_template() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sqlite-templates");
    let name = test_databases::template_name(MIGRATIONS.as_ref());
    let template = dir.join(format!("{name}.db"));
    if template.exists() {
        return template;
    }
    std::fs::create_dir_all(&dir).expect("create the SQLite template directory");
    let building = dir.join(format!("{name}-{}.building", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}?mode=rwc", building.display());
    let db = Db::connect(&url, 2, Duration::from_secs(5))
        .await
        .expect("create the SQLite template");
    db.migrate()
        .await
        .expect("migrations apply to the template");
    db.close().await.expect("close the SQLite template");
    // Everything in the main file: a copy of that file alone is the whole database.
    let conn = Database::connect(url.as_str())
        .await
        .expect("open the SQLite template");
    conn.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
        .await
        .expect("checkpoint the SQLite template");
    let _ = conn.close().await;
    std::fs::rename(&building, &template).expect("put the SQLite template in place");
    let own = format!(
        "{}.",
        building
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    );
    for entry in std::fs::read_dir(&dir).expect("list the SQLite templates") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        // This build's lock files; another set's template; what another build left
        // behind (its lock files, or all of it if it died): builds take well under a
        // minute.
        let stale = name.starts_with(&own)
            || (name.ends_with(".db") && path != template)
            || (!name.ends_with(".db")
                && std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(60))));
        if stale {
            let _ = std::fs::remove_file(&path);
        }
    }
    template
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg.take() {
            test_databases::mark_done(&admin_url, &name);
        }
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
    /// The status of a client_credentials request at `/token` with these credentials
    /// (HTTP Basic).
    pub async fn client_credentials_status(&self, client_id: &str, secret: &str) -> u16 {
        self.http
            .post(self.url.join("/token").unwrap())
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// PostgreSQL + Redis when configured, else SQLite + in-process store.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Like `spawn`, with configuration changes applied last.
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_wrapping(configure, |store| store).await
    }

    /// Like `spawn_with`, with the ephemeral store the configuration opens handed to
    /// `wrap` first (a test's store that fails on cue).
    pub async fn spawn_wrapping(
        configure: impl FnOnce(&mut Config),
        wrap: impl FnOnce(
            tobira_auth::store::ephemeral::Ephemeral,
        ) -> tobira_auth::store::ephemeral::Ephemeral,
    ) -> Self {
        // Migrated already: the app's start finds nothing to apply.
        let db = TestDb::preferred_migrated().await;
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
        // Mail leaves within a moment, so tests wait little.
        config.jobs.poll_interval_ms = 50;
        if let Some(r) = &redis {
            config.ephemeral.url = tobira_auth::config::Secret::new(r.url.clone());
            config.ephemeral.key_prefix = r.prefix.clone();
        }
        configure(&mut config);
        let clock = Clock::manual_at_now();
        let store = tobira_auth::startup::open_ephemeral(&config, &clock)
            .await
            .expect("the ephemeral store opens");
        let app = Application::build_sharing(listener, config, clock.clone(), Some(wrap(store)))
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

    pub fn issuer(&self) -> String {
        self.state.config.issuer.as_str().to_owned()
    }

    /// Whether `password` signs in to `email` (through the throttled sign-in, from a
    /// device of the test's own).
    pub async fn password_works(&self, email: &str, password: &str) -> bool {
        tobira_auth::authn::sign_in::with_password(
            &self.state,
            tobira_auth::authn::sign_in::PasswordAttempt {
                email,
                password,
                ip: std::net::Ipv4Addr::LOCALHOST.into(),
                device: "test-device",
                user_agent: "tests",
            },
        )
        .await
        .is_ok()
    }

    /// A second replica of this OP: the same configuration, database, ephemeral store
    /// (and key prefix), data directory and clock, on its own port.
    pub async fn replica(&self) -> Replica {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let mut config = (*self.state.config).clone();
        config.server.bind = listener.local_addr().expect("bound");
        let app = Application::build_on(listener, config, self.state.clock.clone())
            .await
            .expect("the replica starts");
        let url = app.url();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        Replica { url, _shutdown: tx }
    }

    /// A second instance in this process that shares everything with this one: the
    /// database, the ephemeral store itself (the in-process one too), the configuration
    /// and the clock. Two replicas a test can reach inside (their states).
    pub async fn replica_sharing(&self) -> SharedReplica {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let mut config = (*self.state.config).clone();
        config.server.bind = listener.local_addr().expect("bound");
        let app = Application::build_sharing(
            listener,
            config,
            self.state.clock.clone(),
            Some(self.state.ephemeral.clone()),
        )
        .await
        .expect("the replica starts");
        let url = app.url();
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        SharedReplica {
            url,
            state,
            _shutdown: tx,
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.state.clock
    }

    /// The jobs of `queue` waiting or running (not given up), oldest first.
    pub async fn pending_jobs(&self, queue: &str) -> Vec<tobira_auth::store::Job> {
        self.state.db.jobs().pending(queue).await.unwrap()
    }

    /// Awaits `request` while `table` is renamed away (every query touching it fails, as
    /// in a database that fails midway through a request), then puts it back.
    pub async fn without_table<T>(&self, table: &str, request: impl Future<Output = T>) -> T {
        let db = Database::connect(&self.state.config.database_url())
            .await
            .unwrap();
        let away = format!("{table}_away");
        db.execute_unprepared(&format!("ALTER TABLE {table} RENAME TO {away}"))
            .await
            .unwrap();
        let out = request.await;
        db.execute_unprepared(&format!("ALTER TABLE {away} RENAME TO {table}"))
            .await
            .unwrap();
        out
    }

    /// Whether every job of `queue` is done (none waits, none is being tried) within 5
    /// seconds, polling: a delivery is seen by its receiver before its worker deletes it.
    pub async fn drained(&self, queue: &str) -> bool {
        for _ in 0..100 {
            if self.pending_jobs(queue).await.is_empty() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }

    /// Moves the clock to a minute past the system clock, unless it is there already: a
    /// CLI command, a process of its own, dates the job it queues by the system clock,
    /// while this clock stands still unless moved; the command must start within the
    /// minute.
    pub fn ahead_of_the_system_clock(&self) {
        let lag = Clock::system().now() + time::Duration::minutes(1) - self.clock().now();
        if lag.is_positive() {
            self.clock().advance(lag);
        }
    }

    /// Moves the clock on, 2 s at a time (the first retries' backoff), until `n` jobs of
    /// `queue` wait, each has been tried at least `tries` times and no try is still
    /// running, or 200 polls have passed; the jobs as they are then. A try is counted
    /// when it starts and judged (retried, or given up) by the clock when it ends, so the
    /// clock stays put while one runs: a try judged later than it ran would be dated
    /// wrong, and a test moving the clock on after this returns moves it past every try.
    pub async fn wait_until_tried(
        &self,
        queue: &str,
        n: usize,
        tries: i32,
    ) -> Vec<tobira_auth::store::Job> {
        let mut jobs = Vec::new();
        for _ in 0..200 {
            jobs = self.pending_jobs(queue).await;
            let running = self.state.db.jobs().running(queue).await.unwrap() > 0;
            if !running && jobs.len() == n && jobs.iter().all(|j| j.attempts >= tries) {
                break;
            }
            if !running {
                self.clock().advance(time::Duration::seconds(2));
            }
            tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        }
        jobs
    }

    /// The account registered with `email`, if any.
    pub async fn user(&self, email: &str) -> Option<tobira_auth::domain::User> {
        self.state
            .db
            .users()
            .find_by_email(&tobira_auth::domain::Email::parse(email).unwrap())
            .await
            .unwrap()
    }

    /// The account as the database holds it now (`user` as it was read earlier).
    pub async fn reload(&self, user: &tobira_auth::domain::User) -> tobira_auth::domain::User {
        self.state
            .db
            .users()
            .find_by_id(user.id)
            .await
            .unwrap()
            .expect("the account's row stays")
    }

    /// Registers a client; returns its id and (for confidential clients) its secret.
    pub async fn add_client(&self, opts: ClientOpts) -> (String, Option<String>) {
        let added = tobira_auth::admin::clients::add_client(
            &self.state.db,
            &self.state.clock,
            tobira_auth::admin::clients::AddClient {
                name: opts.name.to_owned(),
                redirect_uris: vec![opts.redirect_uri.to_owned()],
                post_logout_redirect_uris: opts
                    .post_logout_redirect_uri
                    .iter()
                    .map(|u| (*u).to_owned())
                    .collect(),
                public: opts.public,
                first_party: opts.first_party,
                extra_grants: opts.grants(),
                client_id: None,
                secret: None,
                id_token_alg: opts.id_token_alg,
                backchannel_logout_uri: opts.backchannel_logout_uri.clone(),
                backchannel_logout_session_required: opts.backchannel_logout_session_required,
                scopes: opts.scopes.clone(),
            },
        )
        .await
        .expect("client registered");
        (added.client.client_id, added.secret)
    }

    /// Creates a verified member with a password.
    pub async fn add_user(&self, email: &str, password: &str) -> tobira_auth::domain::User {
        tobira_auth::admin::users::add_user(
            &self.state.db,
            &self.state.hasher,
            &self.state.clock,
            &tobira_auth::admin::audit::Context::cli(),
            tobira_auth::admin::users::AddUser {
                email,
                password: Some(password),
                email_verified: true,
                display_name: "山田 花子".to_owned(),
                locale: tobira_auth::web::i18n::Lang::Ja,
            },
        )
        .await
        .expect("member created")
    }

    /// Mails written to the outbox (the embedded default), oldest first.
    pub fn outbox(&self) -> Vec<OutboxMail> {
        let dir = self.state.config.outbox_dir();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files
            .iter()
            .map(|p| OutboxMail::parse(&std::fs::read(p).expect("a mail file")))
            .collect()
    }

    /// Waits until the outbox holds `n` mails (the job worker polls every 50 ms).
    pub async fn wait_for_mails(&self, n: usize) -> Vec<OutboxMail> {
        for _ in 0..100 {
            let mails = self.outbox();
            if mails.len() >= n {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} mails, found {:?}", self.outbox());
    }

    /// The outbox once everything the last answers left behind is done: the work after
    /// the answer (history, the mail's job row) has finished and the worker has sent every
    /// queued mail. A mail that is due is in it; one that is not never will be.
    pub async fn settled(&self) -> Vec<OutboxMail> {
        for _ in 0..200 {
            // In this order: once the work after the answers is done, every job it wrote
            // is in the table or (the file written before the row goes) in the outbox.
            if self.state.background.is_empty()
                && self
                    .state
                    .db
                    .jobs()
                    .pending(tobira_auth::store::MAIL_QUEUE)
                    .await
                    .unwrap()
                    .is_empty()
            {
                return self.outbox();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the work after the answers does not settle");
    }

    pub fn browser(&self) -> Browser {
        Browser::new(self.url.clone())
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

/// A replica started by `TestApp::replica`; stops when dropped.
pub struct Replica {
    pub url: Url,
    _shutdown: oneshot::Sender<()>,
}

/// An instance started by `TestApp::replica_sharing`; stops when dropped.
pub struct SharedReplica {
    pub url: Url,
    pub state: tobira_auth::state::AppState,
    _shutdown: oneshot::Sender<()>,
}

/// The JSON of part `index` of a compact JWS (0: the header, 1: the claims).
pub fn jwt_part(jwt: &str, index: usize) -> serde_json::Map<String, serde_json::Value> {
    use base64::Engine as _;
    let part = jwt.split('.').nth(index).expect("a compact JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("a JSON object")
}

/// The `kid` in a compact JWS's header.
pub fn kid_of(jwt: &str) -> String {
    jwt_part(jwt, 0)["kid"].as_str().expect("a kid").to_owned()
}

/// A mail as the member reads it.
#[derive(Debug, Clone)]
pub struct OutboxMail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl OutboxMail {
    pub fn parse(raw: &[u8]) -> Self {
        let msg = mail_parser::MessageParser::default()
            .parse(raw)
            .expect("a mail");
        let to = msg
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_owned();
        Self {
            to,
            subject: msg.subject().unwrap_or_default().to_owned(),
            text: msg.body_text(0).unwrap_or_default().into_owned(),
            html: msg.body_html(0).unwrap_or_default().into_owned(),
        }
    }

    /// The first link in the text that starts with `prefix`.
    pub fn link(&self, prefix: &str) -> String {
        self.text
            .split_whitespace()
            .find(|w| w.starts_with(prefix))
            .unwrap_or_else(|| panic!("no link {prefix} in {}", self.text))
            .to_owned()
    }
}

pub struct ClientOpts {
    pub name: &'static str,
    pub redirect_uri: &'static str,
    pub public: bool,
    pub first_party: bool,
    pub refresh: bool,
    pub client_credentials: bool,
    pub id_token_alg: tobira_auth::keys::Alg,
    pub post_logout_redirect_uri: Option<&'static str>,
    pub backchannel_logout_uri: Option<String>,
    pub backchannel_logout_session_required: bool,
    /// API scopes for client_credentials (`admin`).
    pub scopes: Vec<String>,
}

impl ClientOpts {
    fn grants(&self) -> Vec<tobira_auth::domain::GrantType> {
        use tobira_auth::domain::GrantType;
        let mut grants = Vec::new();
        if self.refresh {
            grants.push(GrantType::RefreshToken);
        }
        if self.client_credentials {
            grants.push(GrantType::ClientCredentials);
        }
        grants
    }
}

impl Default for ClientOpts {
    fn default() -> Self {
        Self {
            name: "Partner Site",
            redirect_uri: "http://127.0.0.1:9/callback",
            public: false,
            // Most flows are about protocol, not consent: the consent tests opt out.
            first_party: true,
            refresh: false,
            client_credentials: false,
            id_token_alg: tobira_auth::keys::Alg::RS256,
            post_logout_redirect_uri: None,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            scopes: Vec::new(),
        }
    }
}

/// A browser: keeps cookies, never follows redirects (tests look at each hop).
pub struct Browser {
    base: Url,
    http: reqwest::Client,
    jar: std::sync::Mutex<Vec<(String, String)>>,
}

/// What a browser saw: status, `Location`, `Set-Cookie` lines, headers and body.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of a hidden form field.
    pub fn field(&self, name: &str) -> Option<String> {
        let marker = format!(r#"name="{name}" value=""#);
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')?;
        Some(self.body[start..start + end].to_owned())
    }
}

impl Browser {
    pub fn new(base: Url) -> Self {
        Self {
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("HTTP client"),
            jar: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn absolute(&self, url: &str) -> Url {
        self.base.join(url).expect("URL")
    }

    fn cookie_header(&self) -> String {
        let jar = self.jar.lock().unwrap();
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Page {
        let res = req
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let location = headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let set_cookies: Vec<String> = headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        {
            let mut jar = self.jar.lock().unwrap();
            for line in &set_cookies {
                let pair = line.split(';').next().unwrap();
                let (name, value) = pair.split_once('=').unwrap();
                jar.retain(|(k, _)| k != name);
                let expired = line.contains("Max-Age=0");
                if !expired && !value.is_empty() {
                    jar.push((name.to_owned(), value.to_owned()));
                }
            }
        }
        let body = res.text().await.unwrap_or_default();
        Page {
            status,
            location,
            set_cookies,
            headers,
            body,
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        self.send(self.http.get(self.absolute(url))).await
    }

    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Page {
        self.send(self.http.post(self.absolute(url)).form(form))
            .await
    }

    /// A form post with extra request headers (`Origin`, `Sec-Fetch-Site`, …), as a
    /// browser sends them when another site's page submits the form.
    pub async fn post_form_with(
        &self,
        url: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = self.http.post(self.absolute(url)).form(form);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    /// Follows redirects within the OP until one leaves it (to a client) or a page shows.
    pub async fn follow(&self, mut page: Page) -> Page {
        while let Some(loc) = page.location.clone() {
            let next = self.absolute(&loc);
            if next.origin() != self.base.origin() {
                break;
            }
            page = self.get(next.as_str()).await;
        }
        page
    }

    /// Opens an authorization URL and signs in through the real form; returns the
    /// redirect back to the client.
    pub async fn sign_in(
        &self,
        authorize_url: &str,
        email: &str,
        password: &str,
        remember: bool,
    ) -> Page {
        let login = self.follow(self.get(authorize_url).await).await;
        assert_eq!(
            login.status, 200,
            "expected the sign-in page: {:?} {}",
            login.location, login.body
        );
        self.submit_login(&login, email, password, remember).await
    }

    pub async fn submit_login(
        &self,
        login: &Page,
        email: &str,
        password: &str,
        remember: bool,
    ) -> Page {
        let extra: &[(&str, &str)] = if remember { &[("remember", "on")] } else { &[] };
        let posted = self.post_login_with(login, email, password, extra).await;
        assert_eq!(posted.status, 303, "sign-in failed: {}", posted.body);
        self.follow(posted).await
    }

    /// Posts the sign-in form of the page `login`; the OP's answer, not followed.
    pub async fn post_login(&self, login: &Page, email: &str, password: &str) -> Page {
        self.post_login_with(login, email, password, &[]).await
    }

    /// Like `post_login`, with more fields in the form (`remember`, `lang`, …).
    pub async fn post_login_with(
        &self,
        login: &Page,
        email: &str,
        password: &str,
        extra: &[(&str, &str)],
    ) -> Page {
        let csrf = login.field("csrf").expect("a CSRF field");
        let tx = login.field("tx").expect("a tx field");
        let mut form = vec![
            ("csrf", csrf.as_str()),
            ("tx", tx.as_str()),
            ("email", email),
            ("password", password),
        ];
        form.extend_from_slice(extra);
        self.post_form("/login", &form).await
    }
}

/// The query parameters of a redirect back to a client.
pub fn callback_params(location: &str) -> std::collections::HashMap<String, String> {
    Url::parse(location)
        .expect("absolute callback URL")
        .query_pairs()
        .into_owned()
        .collect()
}

/// A browser that visits several sites (a marketplace's OP and the upstream OP it signs
/// in through): it keeps cookies per host, ignoring the port, as browsers do (RFC 6265
/// §8.5), so two OPs on `localhost` and `127.0.0.1` never see each other's cookies; it
/// resolves a relative `Location` against the page it came from; it never follows a
/// redirect by itself.
pub struct SiteBrowser {
    http: reqwest::Client,
    jars: std::sync::Mutex<std::collections::HashMap<String, Vec<(String, String)>>>,
    /// The URL of the last request: where a relative URL points.
    here: std::sync::Mutex<Option<Url>>,
}

impl Default for SiteBrowser {
    fn default() -> Self {
        Self::new()
    }
}

impl SiteBrowser {
    pub fn new() -> Self {
        let loopback: std::net::SocketAddr = (std::net::Ipv4Addr::LOCALHOST, 0).into();
        Self {
            // `localhost` goes to 127.0.0.1, where the test servers listen (not ::1).
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .resolve("localhost", loopback)
                .build()
                .expect("HTTP client"),
            jars: std::sync::Mutex::new(std::collections::HashMap::new()),
            here: std::sync::Mutex::new(None),
        }
    }

    /// `url` made absolute against the last page visited.
    pub fn absolute(&self, url: &str) -> Url {
        match Url::parse(url) {
            Ok(u) => u,
            Err(_) => self
                .here
                .lock()
                .unwrap()
                .as_ref()
                .expect("a relative URL needs a page visited before")
                .join(url)
                .expect("URL"),
        }
    }

    fn host_of(url: &Url) -> String {
        url.host_str().expect("a host").to_owned()
    }

    /// The cookie `name` this browser holds for `host`.
    pub fn cookie_at(&self, host: &str, name: &str) -> Option<String> {
        self.jars
            .lock()
            .unwrap()
            .get(host)?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// Every cookie this browser holds for `host`.
    pub fn cookies_at(&self, host: &str) -> Vec<(String, String)> {
        self.jars
            .lock()
            .unwrap()
            .get(host)
            .cloned()
            .unwrap_or_default()
    }

    async fn send(&self, url: Url, req: reqwest::RequestBuilder) -> Page {
        let host = Self::host_of(&url);
        let cookie = self
            .cookies_at(&host)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = if cookie.is_empty() {
            req
        } else {
            req.header("cookie", cookie)
        };
        let res = req.send().await.expect("request");
        *self.here.lock().unwrap() = Some(url);
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let location = headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let set_cookies: Vec<String> = headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        {
            let mut jars = self.jars.lock().unwrap();
            let jar = jars.entry(host).or_default();
            for line in &set_cookies {
                let pair = line.split(';').next().unwrap();
                let (name, value) = pair.split_once('=').unwrap();
                jar.retain(|(k, _)| k != name);
                let expired = line.contains("Max-Age=0");
                if !expired && !value.is_empty() {
                    jar.push((name.to_owned(), value.to_owned()));
                }
            }
        }
        let body = res.text().await.unwrap_or_default();
        Page {
            status,
            location,
            set_cookies,
            headers,
            body,
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        let url = self.absolute(url);
        self.send(url.clone(), self.http.get(url)).await
    }

    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Page {
        let url = self.absolute(url);
        self.send(url.clone(), self.http.post(url).form(form)).await
    }

    /// Follows redirects (across sites) until one points at a URL that starts with
    /// `stop` (not followed; its page is returned) or a page shows.
    pub async fn follow_until(&self, mut page: Page, stop: &str) -> Page {
        for _ in 0..20 {
            let Some(loc) = page.location.clone() else {
                return page;
            };
            let next = self.absolute(&loc);
            if next.as_str().starts_with(stop) {
                return page;
            }
            page = self.get(next.as_str()).await;
        }
        panic!("more than 20 redirects");
    }

    /// The absolute URL a redirect `page` points at.
    pub fn next_url(&self, page: &Page) -> Url {
        self.absolute(page.location.as_deref().expect("a redirect"))
    }
}

/// A caller of the admin API: a client registered with client_credentials and the
/// `admin` scope, and an access token it got from `/token`.
pub struct AdminApi {
    pub client_id: String,
    pub secret: String,
    pub token: String,
    base: Url,
    http: reqwest::Client,
}

impl TestApp {
    /// Registers an admin client and gets it a token (`scope=admin`).
    pub async fn admin_api(&self) -> AdminApi {
        let (client_id, secret) = self
            .add_client(ClientOpts {
                name: "Operations console",
                client_credentials: true,
                scopes: vec!["admin".to_owned()],
                ..Default::default()
            })
            .await;
        let secret = secret.expect("a confidential client");
        let token = self
            .client_credentials_token(&client_id, &secret, "admin")
            .await;
        AdminApi {
            client_id,
            secret,
            token,
            base: self.url.join("/admin/api/v1/").expect("base URL"),
            http: self.http.clone(),
        }
    }

    /// An access token by client_credentials; panics unless `/token` answers 200.
    pub async fn client_credentials_token(
        &self,
        client_id: &str,
        secret: &str,
        scope: &str,
    ) -> String {
        let response = self
            .http
            .post(self.url.join("/token").expect("URL"))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
            .send()
            .await
            .expect("token request");
        let status = response.status();
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(status, 200, "{body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }
}

/// An admin API answer: status, headers and the body as JSON (`Null` when empty or not
/// JSON).
pub struct ApiResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

impl AdminApi {
    /// `path` is relative to `/admin/api/v1/` (`"users?limit=2"`).
    pub fn url(&self, path: &str) -> Url {
        self.base
            .join(path.trim_start_matches('/'))
            .expect("admin API URL")
    }

    /// A request with this caller's token; `body` is sent as JSON.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> ApiResponse {
        self.call_as(Some(&self.token), method, path, body).await
    }

    /// Like [`Self::call`] with another token, or none.
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> ApiResponse {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin API request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        ApiResponse {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        }
    }

    pub async fn get(&self, path: &str) -> ApiResponse {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> ApiResponse {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

impl ApiResponse {
    /// Asserts an RFC 9457 problem with this status.
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.headers
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{}",
            self.body
        );
        assert_eq!(self.body["status"], status, "{}", self.body);
        assert!(self.body["title"].is_string(), "{}", self.body);
    }
}

impl TestApp {
    /// `http://<management listener>/`, for an app spawned with
    /// `server.management_bind` (port 0 gives a free port; this is the bound one).
    pub fn management_url(&self) -> Url {
        let addr = self
            .state
            .management_addr
            .expect("spawned with server.management_bind");
        Url::parse(&format!("http://{addr}/")).expect("socket address forms a URL")
    }
}

/// The `tracing` lines this process writes, as JSON objects: installed as the global
/// subscriber, so one per test process (nextest runs each test in its own).
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// Captures lines at info and above.
    pub fn install() -> Self {
        let captured = Self::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .init();
        captured
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// The value of the Prometheus sample `name` whose labels are exactly `labels` (in any
/// order), if `/metrics` text `text` has it.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, found) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if series_name != name {
            return None;
        }
        let mut found: Vec<(&str, &str)> = found
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k, v.trim_matches('"')))
            })
            .collect();
        let mut wanted = labels.to_vec();
        found.sort_unstable();
        wanted.sort_unstable();
        (found == wanted).then(|| value.parse().ok()).flatten()
    })
}
