//! Key rotation as operators drive it: the `tobira keys` commands as real processes, and
//! the schedule (`keys::schedule::tick`) moving keys along their life on a manual clock;
//! each change recorded in the audit log in the transaction that makes it.

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use serde_json::{Value, json};
use time::Duration;
use tobira_auth::admin::audit::{self, Context, Target};
use tobira_auth::keys::schedule::{self, KeyChange, ReplacedBy, RotationError, TickReport};
use tobira_auth::keys::{Alg, KeyPolicy, KeyRing, KeyState, MasterKey};
use tobira_auth::store::{AuditEvent, AuditFilter, Db, StoredKey};
use tobira_auth::{Clock, Config};

use crate::cli::{stderr, stdout};
use crate::helpers::{TestApp, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_tobira");

/// `tobira` run against one data directory (so one master key) and one database.
#[derive(Clone)]
struct KeysCli {
    data_dir: std::path::PathBuf,
    db_url: String,
    env: Vec<(&'static str, String)>,
}

impl KeysCli {
    fn new(data_dir: &std::path::Path, db_url: &str) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            db_url: db_url.to_owned(),
            env: Vec::new(),
        }
    }

    /// The same configuration as the CLI, for an in-process first start.
    fn config(&self) -> Config {
        let mut config = Config {
            data_dir: self.data_dir.clone(),
            ..Config::default()
        };
        config.database.url = tobira_auth::config::Secret::new(self.db_url.clone());
        config
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(&self.data_dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TOBIRA_DATA_DIR", &self.data_dir)
            .env("TOBIRA_DATABASE__URL", &self.db_url)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `run` off the test thread (which may be serving an app).
    async fn run_blocking(&self, args: &[&str]) -> Output {
        let cli = self.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli.run(&args)
        })
        .await
        .unwrap()
    }

    /// What `tobira serve` does first: the first key of every algorithm.
    async fn first_start(&self, test_db: &TestDb) {
        let config = self.config();
        let db = test_db.migrated().await;
        let master = MasterKey::load_or_create(&config).unwrap();
        KeyRing::load_or_init(
            &db,
            &master,
            &Clock::system(),
            KeyPolicy::from_config(&config),
        )
        .await
        .unwrap();
    }

    /// `keys list --json`, which must succeed.
    fn list(&self) -> Vec<Value> {
        let out = self.run(&["keys", "list", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str::<Value>(stdout(&out).trim())
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

fn in_state<'a>(keys: &'a [Value], state: &str) -> Vec<&'a Value> {
    keys.iter().filter(|k| k["state"] == state).collect()
}

fn algs_of(keys: &[&Value]) -> Vec<String> {
    let mut algs: Vec<String> = keys
        .iter()
        .map(|k| k["alg"].as_str().unwrap().to_owned())
        .collect();
    algs.sort();
    algs
}

const ALL_ALGS: [&str; 3] = ["ES256", "EdDSA", "RS256"];

#[tokio::test]
async fn keys_list_shows_the_three_active_keys_after_the_first_start() {
    for test_db in TestDb::all().await {
        let dir = tempfile::tempdir().unwrap();
        let cli = KeysCli::new(dir.path(), &test_db.url);
        assert!(cli.list().is_empty(), "{:?}: no keys yet", test_db.backend);
        let human = cli.run(&["keys", "list"]);
        assert!(human.status.success());
        assert!(stderr(&human).contains("no signing keys yet"));

        cli.first_start(&test_db).await;

        let keys = cli.list();
        assert_eq!(keys.len(), 3, "{:?}: {keys:?}", test_db.backend);
        assert_eq!(algs_of(&in_state(&keys, "active")), ALL_ALGS);
        for key in &keys {
            assert!(key["activated_at"].is_string(), "{key}");
            assert!(key["activate_after"].is_null(), "{key}");
            // The private half never leaves the store.
            assert!(key.get("private_jwe").is_none(), "{key}");
        }
        let human = cli.run(&["keys", "list"]);
        let text = stdout(&human);
        assert_eq!(text.lines().count(), 3, "{text}");
        for key in &keys {
            assert!(text.contains(key["kid"].as_str().unwrap()), "{text}");
        }
        assert!(
            !text.contains("eyJ"),
            "nothing JOSE-encoded is printed: {text}"
        );
    }
}

#[tokio::test]
async fn keys_rotate_publishes_next_keys_that_a_running_server_publishes_after_a_refresh() {
    let app = TestApp::spawn().await;
    let config = &app.state.config;
    let cli = KeysCli::new(&config.data_dir, &config.database_url());
    let before = cli.list();
    assert_eq!(algs_of(&in_state(&before, "active")), ALL_ALGS);

    let out = cli.run(&["keys", "rotate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert_eq!(printed.lines().count(), 3, "{printed}");

    let keys = cli.list();
    let next = in_state(&keys, "next");
    assert_eq!(algs_of(&next), ALL_ALGS);
    // Still the same keys sign.
    assert_eq!(in_state(&keys, "active").len(), 3);
    let publish_ahead = Duration::seconds(2 * i64::from(config.keys.jwks_max_age_secs));
    for key in &next {
        let kid = key["kid"].as_str().unwrap();
        assert!(printed.contains(kid), "{printed}");
        let parse = |field: &str| {
            time::OffsetDateTime::parse(
                key[field].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        };
        // Published ahead by twice the JWKS max-age (the default `publish_ahead_secs`).
        assert_eq!(parse("activate_after") - parse("created_at"), publish_ahead);
        assert!(key["activated_at"].is_null());
    }

    // The running server's JWKS has them once its ring reloads.
    app.state
        .keys
        .refresh(&app.state.db, &app.state.master)
        .await
        .unwrap();
    let jwks: Value = app.get("/jwks").await.json().await.unwrap();
    let published: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    for key in next.iter().chain(in_state(&keys, "active").iter()) {
        assert!(
            published.contains(&key["kid"].as_str().unwrap()),
            "{key} not in {jwks}"
        );
    }
}

#[tokio::test]
async fn a_second_rotate_is_refused_while_a_next_key_waits() {
    for test_db in TestDb::all().await {
        let dir = tempfile::tempdir().unwrap();
        let cli = KeysCli::new(dir.path(), &test_db.url);
        let first = cli.run(&["keys", "rotate", "--alg", "ES256"]);
        assert!(first.status.success(), "{}", stderr(&first));
        let waiting = in_state(&cli.list(), "next")
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>();
        assert_eq!(waiting.len(), 1);

        // Every algorithm, ES256 among them: refused as a whole, nothing published.
        for args in [
            &["keys", "rotate", "--alg", "ES256"][..],
            &["keys", "rotate"][..],
        ] {
            let again = cli.run(args);
            assert!(!again.status.success(), "{args:?}");
            let message = stderr(&again);
            assert!(
                message.contains("already waits") && message.contains(&waiting[0]),
                "{message}"
            );
        }
        let keys = cli.list();
        assert_eq!(in_state(&keys, "next").len(), 1, "{keys:?}");
        assert_eq!(keys.len(), 4, "{:?}: {keys:?}", test_db.backend);
        // Another algorithm has none waiting: that one goes ahead.
        let other = cli.run(&["keys", "rotate", "--alg", "EdDSA"]);
        assert!(other.status.success(), "{}", stderr(&other));
        assert_eq!(in_state(&cli.list(), "next").len(), 2);
    }
}

#[tokio::test]
async fn revoking_an_unknown_kid_fails_with_a_clear_message() {
    for test_db in TestDb::all().await {
        let dir = tempfile::tempdir().unwrap();
        let cli = KeysCli::new(dir.path(), &test_db.url);
        cli.first_start(&test_db).await;
        let out = cli.run(&["keys", "revoke", "--kid", "no-such-key"]);
        assert!(!out.status.success());
        let message = stderr(&out);
        assert!(
            message.contains("no signing key has the kid \"no-such-key\""),
            "{message}"
        );
        // Nothing was revoked or replaced.
        let keys = cli.list();
        assert_eq!(in_state(&keys, "active").len(), 3, "{keys:?}");
        assert!(in_state(&keys, "revoked").is_empty());
    }
}

#[tokio::test]
async fn keys_revoke_replaces_the_signing_key_and_says_so() {
    let test_db = TestDb::preferred().await;
    let dir = tempfile::tempdir().unwrap();
    let cli = KeysCli::new(dir.path(), &test_db.url);
    // ES256 has no next key and no retiring key: a new one signs instead.
    let rotate = cli.run(&["keys", "rotate", "--alg", "RS256"]);
    assert!(rotate.status.success(), "{}", stderr(&rotate));
    let keys = cli.list();
    let active = in_state(&keys, "active");
    let es256 = active.iter().find(|k| k["alg"] == "ES256").unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = cli.run(&["keys", "revoke", &format!("--kid={es256}")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&es256) && said.contains("a new key") && said.contains("reload interval"),
        "{said}"
    );
    let keys = cli.list();
    let revoked = in_state(&keys, "revoked");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["kid"], es256.as_str());
    assert!(revoked[0]["revoked_at"].is_string());
    assert_eq!(algs_of(&in_state(&keys, "active")), ALL_ALGS);

    let again = cli.run(&["keys", "revoke", &format!("--kid={es256}")]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("revoked already"),
        "{}",
        stderr(&again)
    );
}

#[tokio::test]
async fn an_emergency_revoke_needs_no_key_this_master_key_can_open() {
    // A key sealed under a master key the operator's CLI lacks (made by a replica
    // configured otherwise): revoking it must not need to open it, or any other key.
    let test_db = TestDb::preferred().await;
    let dir = tempfile::tempdir().unwrap();
    let cli = KeysCli::new(dir.path(), &test_db.url);
    cli.first_start(&test_db).await;
    let stranger = MasterKey::from_bytes([9; 32]);
    let foreign =
        tobira_auth::keys::generate_for_tests(Alg::RS256, &stranger, &Clock::system()).unwrap();
    test_db
        .connect()
        .await
        .signing_keys()
        .add(&foreign)
        .await
        .unwrap();

    let out = cli.run(&["keys", "revoke", &format!("--kid={}", foreign.kid)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let keys = cli.list();
    assert_eq!(in_state(&keys, "revoked")[0]["kid"], foreign.kid.as_str());
    assert_eq!(algs_of(&in_state(&keys, "active")), ALL_ALGS);
}

#[tokio::test]
async fn keys_rotate_now_returns_once_the_new_key_signs() {
    let app = TestApp::spawn_with(|c| c.keys.reload_interval_ms = 200).await;
    let config = &app.state.config;
    let mut cli = KeysCli::new(&config.data_dir, &config.database_url());
    cli.env
        .push(("TOBIRA_KEYS__RELOAD_INTERVAL_MS", "200".to_owned()));
    let old = in_state(&cli.list(), "active")
        .iter()
        .find(|k| k["alg"] == "ES256")
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .unwrap();

    let out = cli.run(&["keys", "rotate", "--now", "--alg", "ES256"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    let kid = said
        .trim()
        .strip_suffix(" signs now")
        .unwrap_or_else(|| panic!("{said}"));
    assert!(stderr(&out).contains("published"), "{}", stderr(&out));

    let keys = cli.list();
    let es256: HashMap<&str, &str> = keys
        .iter()
        .filter(|k| k["alg"] == "ES256")
        .map(|k| (k["kid"].as_str().unwrap(), k["state"].as_str().unwrap()))
        .collect();
    assert_eq!(es256.get(kid), Some(&"active"), "{keys:?}");
    assert_eq!(es256.get(old.as_str()), Some(&"retiring"), "{keys:?}");
    assert_eq!(es256.len(), 2);
    // The other algorithms were left alone.
    assert_eq!(in_state(&keys, "active").len(), 3);
    assert!(in_state(&keys, "next").is_empty());
}

#[tokio::test]
async fn generate_master_prints_a_new_usable_master_key_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let cli = KeysCli::new(dir.path(), "sqlite::memory:");
    let keys: Vec<String> = (0..2)
        .map(|_| {
            let out = cli.run(&["keys", "generate-master"]);
            assert!(out.status.success(), "{}", stderr(&out));
            stdout(&out).trim().to_owned()
        })
        .collect();
    assert_ne!(keys[0], keys[1]);
    for key in &keys {
        assert_eq!(key.len(), 43, "{key}");
        let mut config = Config::default();
        config.keys.master_key = tobira_auth::config::Secret::new(key.clone());
        let master = MasterKey::load_or_create(&config).unwrap();
        let sealed = master.encrypt(b"x").unwrap();
        assert_eq!(master.decrypt(&sealed).unwrap().as_slice(), b"x");
    }
    // It touched nothing: no master key file was written.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

// The schedule, in process, on a clock that moves only when told.

fn policy() -> KeyPolicy {
    KeyPolicy {
        publish_ahead: Duration::minutes(10),
        reload: Duration::seconds(5),
        rotate_every: None,
        retiring_for: Duration::hours(1),
        keep_retired: Duration::days(30),
    }
}

struct Keys {
    db: Db,
    master: Arc<MasterKey>,
    clock: Clock,
    policy: KeyPolicy,
    _test_db: TestDb,
}

impl Keys {
    /// A store with the first three active keys, made at the clock's start.
    async fn started(test_db: TestDb, policy: KeyPolicy) -> Self {
        let db = test_db.migrated().await;
        let master = Arc::new(MasterKey::from_bytes([4; 32]));
        let clock = Clock::manual_at_now();
        KeyRing::load_or_init(&db, &master, &clock, policy)
            .await
            .unwrap();
        Self {
            db,
            master,
            clock,
            policy,
            _test_db: test_db,
        }
    }

    async fn tick(&self) -> TickReport {
        schedule::tick(&self.db, &self.master, self.clock.now(), &self.policy)
            .await
            .unwrap()
    }

    async fn rotate(&self, alg: Alg) -> StoredKey {
        let mut keys = schedule::rotate(
            &self.db,
            &self.master,
            self.clock.now(),
            &self.policy,
            &[alg],
            false,
            &Context::cli(),
        )
        .await
        .unwrap();
        assert_eq!(keys.len(), 1);
        keys.remove(0)
    }

    async fn key(&self, kid: &str) -> Option<StoredKey> {
        self.db.signing_keys().lookup(kid).await.unwrap()
    }

    async fn state(&self, kid: &str) -> String {
        self.key(kid).await.map_or("gone".to_owned(), |k| k.state)
    }

    async fn of(&self, alg: Alg, state: &str) -> Vec<StoredKey> {
        schedule::list(&self.db)
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.alg == alg.as_str() && k.state == state)
            .collect()
    }

    async fn active(&self, alg: Alg) -> StoredKey {
        let mut active = self.of(alg, "active").await;
        assert_eq!(active.len(), 1, "one active {alg:?} key: {active:?}");
        active.remove(0)
    }

    /// Moves the clock to one second before `at`, ticks (nothing may change), then to
    /// `at` and ticks again.
    async fn tick_around(&self, at: time::OffsetDateTime) -> TickReport {
        let second = Duration::seconds(1);
        self.clock.advance(at - second - self.clock.now());
        let early = self.tick().await;
        assert!(!early.changed(), "one second early: {early:?}");
        self.clock.advance(second);
        let report = self.tick().await;
        assert!(report.changed(), "at the time: {report:?}");
        report
    }
}

#[tokio::test]
async fn a_key_lives_next_active_retiring_retired_and_goes_at_exactly_the_policy_times() {
    for test_db in TestDb::all().await {
        let backend = test_db.backend;
        let keys = Keys::started(test_db, policy()).await;
        let p = keys.policy;
        let old = keys.active(Alg::ES256).await;
        let start = keys.clock.now();
        let next = keys.rotate(Alg::ES256).await;
        assert_eq!(next.state, "next");
        assert_eq!(next.activate_after, Some(start + p.publish_ahead));
        assert_eq!(keys.state(&next.kid).await, "next");

        // next → active; the key it replaces → retiring.
        let report = keys.tick_around(start + p.publish_ahead).await;
        assert_eq!(
            report,
            TickReport {
                activated: 1,
                retiring: 1,
                ..TickReport::default()
            },
            "{backend:?}"
        );
        let promoted = keys.active(Alg::ES256).await;
        assert_eq!(promoted.kid, next.kid);
        assert_eq!(promoted.activated_at, Some(start + p.publish_ahead));
        let retiring = keys.key(&old.kid).await.unwrap();
        assert_eq!(retiring.state, "retiring");
        let retire_at = start + p.publish_ahead + p.retiring_for;
        assert_eq!(retiring.retire_after, Some(retire_at));
        assert!(!retiring.private_jwe.is_empty());
        // Again at the same time: nothing more.
        assert!(!keys.tick().await.changed());

        // retiring → retired, its private half wiped.
        let report = keys.tick_around(retire_at).await;
        assert_eq!(
            report,
            TickReport {
                retired: 1,
                ..TickReport::default()
            }
        );
        let retired = keys.key(&old.kid).await.unwrap();
        assert_eq!(retired.state, "retired");
        assert_eq!(retired.retired_at, Some(retire_at));
        assert_eq!(retired.private_jwe, "");
        assert!(
            !retired.public_jwk.is_empty(),
            "still checks id_token_hints"
        );

        // retired → gone.
        let report = keys.tick_around(retire_at + p.keep_retired).await;
        assert_eq!(
            report,
            TickReport {
                deleted: 1,
                ..TickReport::default()
            }
        );
        assert!(keys.key(&old.kid).await.is_none());
        // The other algorithms never moved.
        for alg in [Alg::RS256, Alg::EdDSA] {
            assert_eq!(keys.active(alg).await.activated_at, Some(start));
        }
        assert_eq!(schedule::list(&keys.db).await.unwrap().len(), 3);
    }
}

#[tokio::test]
async fn of_two_next_keys_due_at_once_the_newest_signs_and_the_other_goes_unused() {
    // `rotate` refuses a second next key, but a store written by hand (or by another
    // version) may hold two: the newest signs, the other never will, so it is retired at
    // once (its private half wiped), counted, and every change is logged.
    let logs = crate::helpers::CapturedLogs::install();
    for test_db in TestDb::all().await {
        let backend = test_db.backend;
        let keys = Keys::started(test_db, policy()).await;
        let p = keys.policy;
        let old = keys.active(Alg::ES256).await;
        let start = keys.clock.now();
        let first = keys.rotate(Alg::ES256).await;
        keys.clock.advance(Duration::seconds(1));
        let mut second =
            tobira_auth::keys::generate_for_tests(Alg::ES256, &keys.master, &keys.clock).unwrap();
        second.state = "next".to_owned();
        second.activated_at = None;
        second.activate_after = first.activate_after;
        let add = [KeyChange::Add(second.clone())];
        assert!(keys.db.signing_keys().apply(&add, &[]).await.unwrap());

        let report = keys.tick_around(start + p.publish_ahead).await;
        assert_eq!(
            report,
            TickReport {
                activated: 1,
                retiring: 1,
                retired: 1,
                ..TickReport::default()
            },
            "{backend:?}"
        );
        assert_eq!(keys.active(Alg::ES256).await.kid, second.kid);
        assert_eq!(keys.state(&old.kid).await, "retiring");
        let passed_over = keys.key(&first.kid).await.unwrap();
        assert_eq!(passed_over.state, "retired");
        assert_eq!(passed_over.private_jwe, "");
        for (kid, from, to) in [
            (&second.kid, "next", "active"),
            (&old.kid, "active", "retiring"),
            (&first.kid, "next", "retired"),
        ] {
            let logged = logs.lines().into_iter().any(|l| {
                l["fields"]["message"] == "signing key changed state"
                    && l["fields"]["kid"] == kid.as_str()
                    && l["fields"]["alg"] == "ES256"
                    && l["fields"]["from"] == from
                    && l["fields"]["to"] == to
            });
            assert!(logged, "{backend:?}: {kid} {from} → {to} not logged");
        }
    }
}

#[tokio::test]
async fn rotate_every_publishes_each_successor_publish_ahead_before_it_is_due() {
    for test_db in TestDb::all().await {
        let every = Duration::days(90);
        let keys = Keys::started(
            test_db,
            KeyPolicy {
                rotate_every: Some(every),
                ..policy()
            },
        )
        .await;
        let p = keys.policy;
        let start = keys.clock.now();
        let report = keys.tick_around(start + every - p.publish_ahead).await;
        assert_eq!(
            report,
            TickReport {
                published: 3,
                ..TickReport::default()
            }
        );
        for alg in Alg::ALL {
            let next = keys.of(alg, "next").await;
            assert_eq!(next.len(), 1, "{alg:?}");
            assert_eq!(next[0].activate_after, Some(start + every));
            assert_eq!(next[0].created_at, keys.clock.now());
            // Recorded as the schedule's, with when the key starts signing.
            let rotated = recorded(&keys.db, "key.rotate", &next[0].kid).await;
            assert_eq!(rotated.len(), 1, "{alg:?}");
            assert_eq!(rotated[0].actor_kind, "system");
            assert_eq!(rotated[0].detail["scheduled"], true);
            assert_eq!(time_in(&rotated[0].detail["activate_after"]), start + every);
        }
        // One successor each, however often the schedule runs.
        keys.clock.advance(Duration::minutes(1));
        assert!(!keys.tick().await.changed());

        let report = keys.tick_around(start + every).await;
        assert_eq!(report.activated, 3);
        assert_eq!(report.retiring, 3);
        // The new keys' clock starts when they start signing.
        assert!(!keys.tick().await.changed());
        // Their predecessors retire, then go, long before the next round.
        keys.clock.advance(Duration::days(31));
        assert_eq!(keys.tick().await.retired, 3);
        keys.clock.advance(Duration::days(31));
        assert_eq!(keys.tick().await.deleted, 3);
        let report = keys
            .tick_around(start + every + every - p.publish_ahead)
            .await;
        assert_eq!(report.published, 3);
    }
}

#[tokio::test]
async fn ticks_running_at_once_change_every_key_once() {
    for test_db in TestDb::all().await {
        let every = Duration::days(90);
        let keys = Arc::new(
            Keys::started(
                test_db,
                KeyPolicy {
                    rotate_every: Some(every),
                    ..policy()
                },
            )
            .await,
        );
        let at_once = |keys: &Arc<Keys>| {
            let runs: Vec<_> = (0..4)
                .map(|_| {
                    let keys = keys.clone();
                    tokio::spawn(async move { keys.tick().await })
                })
                .collect();
            async move {
                let mut total = TickReport::default();
                for run in runs {
                    let r = run.await.unwrap();
                    total.published += r.published;
                    total.activated += r.activated;
                    total.retiring += r.retiring;
                    total.retired += r.retired;
                    total.deleted += r.deleted;
                }
                total
            }
        };
        keys.clock.advance(every - keys.policy.publish_ahead);
        assert_eq!(at_once(&keys).await.published, 3);
        for alg in Alg::ALL {
            assert_eq!(keys.of(alg, "next").await.len(), 1, "{alg:?}");
        }
        keys.clock.advance(keys.policy.publish_ahead);
        let total = at_once(&keys).await;
        assert_eq!(
            total,
            TickReport {
                activated: 3,
                retiring: 3,
                ..TickReport::default()
            }
        );
        for alg in Alg::ALL {
            keys.active(alg).await;
            assert_eq!(keys.of(alg, "retiring").await.len(), 1);
        }
    }
}

#[tokio::test]
async fn revoking_the_active_key_promotes_the_next_then_a_retiring_then_a_new_key() {
    for test_db in TestDb::all().await {
        let keys = Keys::started(test_db, policy()).await;
        let (db, master, p, clock) = (&keys.db, &*keys.master, &keys.policy, &keys.clock);
        let revoke = |kid: String| async move {
            schedule::revoke(db, master, clock.now(), p, &kid, &Context::cli()).await
        };

        // A next key waits: it signs at once.
        let first = keys.active(Alg::EdDSA).await;
        let next = keys.rotate(Alg::EdDSA).await;
        let r = revoke(first.kid.clone()).await.unwrap();
        let replacement = r.replacement.unwrap();
        assert_eq!(
            (replacement.kid.as_str(), replacement.from),
            (next.kid.as_str(), ReplacedBy::Next)
        );
        assert!(!replacement.clients_must_refetch());
        assert_eq!(keys.active(Alg::EdDSA).await.kid, next.kid);
        let revoked = keys.key(&first.kid).await.unwrap();
        assert_eq!(revoked.state, "revoked");
        assert_eq!(revoked.revoked_at, Some(keys.clock.now()));
        assert_eq!(revoked.private_jwe, "");
        assert_eq!(r.effective_by, keys.clock.now() + p.reload);

        // No next key, a retiring one: it signs again.
        let third = keys.rotate(Alg::EdDSA).await;
        keys.clock.advance(p.publish_ahead);
        keys.tick().await;
        assert_eq!(keys.state(&next.kid).await, "retiring");
        let r = revoke(third.kid.clone()).await.unwrap();
        let replacement = r.replacement.unwrap();
        assert_eq!(
            (replacement.kid.as_str(), replacement.from),
            (next.kid.as_str(), ReplacedBy::Retiring)
        );
        let back = keys.active(Alg::EdDSA).await;
        assert_eq!(back.kid, next.kid);
        assert_eq!(back.retire_after, None, "it no longer retires");

        // Neither: a new key signs, and clients must fetch the JWKS for it.
        let r = revoke(next.kid.clone()).await.unwrap();
        assert!(r.to_string().contains("fetch the JWKS again"), "{r}");
        let replacement = r.replacement.unwrap();
        assert_eq!(replacement.from, ReplacedBy::Generated);
        assert!(replacement.clients_must_refetch());
        let new = keys.active(Alg::EdDSA).await;
        assert_eq!(new.kid, replacement.kid);
        assert!(!new.private_jwe.is_empty());

        // A key that was not signing is revoked without a replacement.
        let waiting = keys.rotate(Alg::EdDSA).await;
        let r = revoke(waiting.kid.clone()).await.unwrap();
        assert_eq!(r.replacement, None);
        assert_eq!(keys.active(Alg::EdDSA).await.kid, new.kid);

        // Twice, or a kid that does not exist: refused.
        assert!(matches!(
            revoke(first.kid.clone()).await,
            Err(RotationError::AlreadyRevoked { .. })
        ));
        assert!(matches!(
            revoke("nope".to_owned()).await,
            Err(RotationError::UnknownKid(_))
        ));
        // Revoked keys stay revoked: the schedule never moves them.
        keys.clock.advance(Duration::days(365));
        keys.tick().await;
        assert_eq!(keys.state(&first.kid).await, "revoked");
        // Every other algorithm kept its key throughout.
        for alg in [Alg::RS256, Alg::ES256] {
            keys.active(alg).await;
        }
    }
}

#[tokio::test]
async fn rotate_at_once_brings_a_waiting_key_forward_instead_of_making_another() {
    for test_db in TestDb::all().await {
        let keys = Keys::started(test_db, policy()).await;
        let waiting = keys.rotate(Alg::RS256).await;
        let now = keys.clock.now();
        let keys_now = schedule::rotate(
            &keys.db,
            &keys.master,
            now,
            &keys.policy,
            &[Alg::RS256, Alg::ES256],
            true,
            &Context::cli(),
        )
        .await
        .unwrap();
        assert_eq!(keys_now.len(), 2);
        assert_eq!(keys_now[0].kid, waiting.kid);
        for key in &keys_now {
            assert_eq!(key.activate_after, Some(now + keys.policy.reload));
            assert_eq!(
                keys.key(&key.kid).await.unwrap().activate_after,
                Some(now + keys.policy.reload)
            );
        }
        assert_eq!(keys.of(Alg::RS256, "next").await.len(), 1);
        let report = keys.tick_around(now + keys.policy.reload).await;
        assert_eq!(report.activated, 2);
    }
}

/// A time an audit record's detail holds as RFC 3339 text.
fn time_in(value: &Value) -> time::OffsetDateTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The audit events of `action` (an action, or a prefix ending in `.`) about `target`
/// (any when empty), newest first.
async fn recorded(db: &Db, action: &str, target: &str) -> Vec<AuditEvent> {
    let filter = AuditFilter {
        action: Some(action.to_owned()),
        target: (!target.is_empty()).then(|| target.to_owned()),
        ..Default::default()
    };
    db.audit().list(&filter, 200).await.unwrap()
}

#[tokio::test]
async fn rotate_master_is_recorded_once_per_run_as_the_operators_with_what_it_resealed() {
    for test_db in TestDb::all().await {
        let backend = test_db.backend;
        let dir = tempfile::tempdir().unwrap();
        let mut cli = KeysCli::new(dir.path(), &test_db.url);
        cli.first_start(&test_db).await;
        // The key the first start made becomes the previous one; a new one is current.
        let old = MasterKey::load_or_create(&cli.config()).unwrap();
        let old_text = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
        let new_bytes = [7; 32];
        let new_text = tobira_auth::crypto::b64url(&new_bytes);
        let new = MasterKey::from_bytes(new_bytes);
        cli.env.push(("TOBIRA_KEYS__MASTER_KEY", new_text.clone()));
        cli.env.push((
            "TOBIRA_KEYS__PREVIOUS_MASTER_KEYS",
            old_text.trim().to_owned(),
        ));
        cli.env.push(("USER", "operator".to_owned()));

        let out = cli.run_blocking(&["keys", "rotate-master"]).await;
        assert!(out.status.success(), "{backend:?}: {}", stderr(&out));
        let db = test_db.connect().await;
        let events = recorded(&db, "key.master_rotate", "").await;
        assert_eq!(events.len(), 1, "{backend:?}: {events:?}");
        let event = &events[0];
        assert_eq!(
            (event.actor_kind.as_str(), event.actor.as_str()),
            ("support", "operator")
        );
        assert_eq!(
            (event.target_kind.as_str(), event.target.as_str()),
            ("", "")
        );
        assert_eq!((event.ip.as_str(), event.request_id.as_str()), ("", ""));
        let detail = &event.detail;
        assert_eq!(detail["master_key"], new.id(), "{detail}");
        assert_eq!(detail["previous"], json!([old.id()]), "{detail}");
        // The three signing keys the first start sealed, and nothing left for the old key.
        let signing = &detail["tables"]["signing_keys.private_jwe"];
        assert_eq!(signing["resealed"], 3, "{detail}");
        assert_eq!(signing["skipped"], 0, "{detail}");
        assert_eq!(detail["resealed"], 3, "{detail}");
        assert_eq!(detail["left_under_previous"], 0, "{detail}");
        // Ids and counts only: neither key is in it.
        let text = detail.to_string();
        assert!(
            !text.contains(old_text.trim()) && !text.contains(&new_text),
            "{text}"
        );

        // Another run finds everything current: recorded too, as re-sealing nothing.
        let again = cli.run_blocking(&["keys", "rotate-master"]).await;
        assert!(again.status.success(), "{}", stderr(&again));
        let events = recorded(&db, "key.master_rotate", "").await;
        assert_eq!(events.len(), 2, "{backend:?}: {events:?}");
        let resealed: Vec<&Value> = events.iter().map(|e| &e.detail["resealed"]).collect();
        assert!(resealed.contains(&&json!(0)), "{events:?}");
    }
}

#[tokio::test]
async fn every_step_of_a_keys_life_is_recorded_with_who_made_it() {
    for test_db in TestDb::all().await {
        let backend = test_db.backend;
        let keys = Keys::started(test_db, policy()).await;
        let old = keys.active(Alg::ES256).await;
        // The operator publishes a successor (`tobira keys rotate`'s function).
        let new = keys.rotate(Alg::ES256).await;
        let actors = |events: &[AuditEvent]| -> Vec<(String, String)> {
            let mut pairs: Vec<(String, String)> = events
                .iter()
                .map(|e| (e.action.clone(), e.actor_kind.clone()))
                .collect();
            pairs.sort();
            pairs
        };
        let pair = |action: &str, actor: &str| (action.to_owned(), actor.to_owned());
        assert_eq!(
            actors(&recorded(&keys.db, "key.", &new.kid).await),
            [pair("key.rotate", "support")],
            "{backend:?}"
        );

        // The schedule makes it sign, retires the old key, and forgets it at last.
        keys.clock.advance(keys.policy.publish_ahead);
        assert_eq!(keys.tick().await.activated, 1, "{backend:?}");
        keys.clock.advance(keys.policy.retiring_for);
        assert_eq!(keys.tick().await.retired, 1, "{backend:?}");
        let retired_at = keys.key(&old.kid).await.unwrap().retired_at.unwrap();
        keys.clock.advance(keys.policy.keep_retired);
        assert_eq!(keys.tick().await.deleted, 1, "{backend:?}");
        assert_eq!(keys.state(&old.kid).await, "gone");
        // The deletion's record keeps when the key retired, as RFC 3339.
        let deleted = recorded(&keys.db, "key.delete", &old.kid).await;
        assert_eq!(deleted[0].detail["from"], "retired", "{backend:?}");
        assert_eq!(time_in(&deleted[0].detail["retired_at"]), retired_at);

        assert_eq!(
            actors(&recorded(&keys.db, "key.", &new.kid).await),
            [pair("key.promote", "system"), pair("key.rotate", "support")],
            "{backend:?}"
        );
        let promoted = recorded(&keys.db, "key.promote", &new.kid).await;
        assert_eq!(promoted[0].detail["replaces"], json!([old.kid]));
        let old_events = recorded(&keys.db, "key.", &old.kid).await;
        assert_eq!(
            actors(&old_events),
            [pair("key.delete", "system"), pair("key.retire", "system")],
            "{backend:?}"
        );
        for event in &old_events {
            assert_eq!(event.target_kind, "key");
            assert_eq!(event.detail["kid"], old.kid.as_str());
            assert_eq!(event.detail["alg"], "ES256");
        }
        // Nothing but these two keys changed: the other algorithms were left alone.
        assert_eq!(recorded(&keys.db, "key.", "").await.len(), 4, "{backend:?}");
    }
}

#[tokio::test]
async fn a_key_change_and_its_record_are_written_together_or_not_at_all() {
    for test_db in TestDb::all().await {
        let backend = test_db.backend;
        let keys = Keys::started(test_db, policy()).await;
        let active = keys.active(Alg::RS256).await;
        let now = keys.clock.now();
        let record = |action: &str| {
            let target = Target::Key(active.kid.clone());
            audit::event(now, &Context::cli(), action, target, json!({}))
        };
        let retiring = KeyChange::Retiring {
            kid: active.kid.clone(),
            retire_after: now + Duration::hours(1),
        };

        // A change refused by its compare-and-set (the key is not the `next` key this
        // change expects): nothing changes, and nothing is recorded.
        let stale = KeyChange::Retire {
            kid: active.kid.clone(),
            from: KeyState::Next,
            at: now,
        };
        let repo = keys.db.signing_keys();
        let applied = repo.apply(&[stale], &[record("key.retire")]).await;
        assert!(!applied.unwrap(), "{backend:?}");
        assert_eq!(keys.state(&active.kid).await, "active");
        assert!(recorded(&keys.db, "key.", &active.kid).await.is_empty());

        // A record that cannot be written (its id is taken) undoes the change with it.
        let taken = record("key.retire");
        keys.db.audit().record(&taken).await.unwrap();
        let applied = repo.apply(std::slice::from_ref(&retiring), &[taken]).await;
        assert!(applied.is_err(), "{backend:?}");
        assert_eq!(keys.state(&active.kid).await, "active", "{backend:?}");
        assert_eq!(recorded(&keys.db, "key.", &active.kid).await.len(), 1);

        // Both possible: both written.
        let applied = repo.apply(&[retiring], &[record("key.retiring")]).await;
        assert!(applied.unwrap(), "{backend:?}");
        assert_eq!(keys.state(&active.kid).await, "retiring");
        assert_eq!(
            recorded(&keys.db, "key.retiring", &active.kid).await.len(),
            1
        );
    }
}
