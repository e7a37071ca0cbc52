//! The world the tests run in: the OP and the marketplace as two servers on two origins
//! (the OP on `localhost`, the marketplace on `127.0.0.1`), a fresh database each (or
//! one shared), two members, and helpers that act as a member's browser does.

use std::sync::Arc;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::redirect::Policy;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tobira_auth::admin::clients::{AddClient, add_client};
use tobira_auth::admin::users::{AddUser, add_user};
use tobira_auth::domain::GrantType;
use tobira_auth::keys::Alg;
use tobira_auth::web::i18n::Lang;
use tobira_auth::{Application, Clock, Config};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[path = "../../crates/auth/tests/support/test_databases.rs"]
mod test_databases;

/// `time`, as sea-orm re-exports it (the tests crate does not depend on it directly).
pub use sea_orm::sea_query::value::prelude::time;

pub const PASSWORD: &str = "violet-tunnel-ramen-42";
pub const HANAKO: &str = "hanako@example.jp";
pub const TARO: &str = "taro@example.jp";

pub struct World {
    pub op: String,
    /// Where the tests reach the marketplace.
    pub mp: String,
    /// Where the marketplace believes it is reached (its `public_url`).
    pub mp_public: String,
    pub op_db_url: String,
    pub mp_db_url: String,
    /// The marketplace's clock: tests move it to expire sessions and sign-ins.
    pub mp_clock: tobira_marketplace::Clock,
    /// (email, sub at the OP) of each member.
    pub subs: Vec<(&'static str, String)>,
    _data: tempfile::TempDir,
    _databases: Vec<FreshDb>,
    _stop: Vec<oneshot::Sender<()>>,
}

/// How a test wants its world.
pub struct Setup {
    pub op: Box<dyn FnOnce(&mut Config)>,
    pub mp: Box<dyn FnOnce(&mut tobira_marketplace::config::Config)>,
    /// The marketplace keeps its tables in the OP's database.
    pub shared_database: bool,
    /// The marketplace's public URL is https (it is still reached over http).
    pub https: bool,
    /// Before the marketplace starts, its database gets the tables of the marketplace
    /// from before migrations, with a member and a session in them.
    pub legacy_schema: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            op: Box::new(|_| {}),
            mp: Box::new(|_| {}),
            shared_database: false,
            https: false,
            legacy_schema: false,
        }
    }
}

/// With `TEST_DATABASE_URL`, both apps run on PostgreSQL: a database each, made for the
/// test and dropped after it, by a later test (`test_databases::mark_done`);
/// `TEST_REQUIRE_SERVICES=1` makes an unreachable server fail.
struct FreshDb {
    admin_url: String,
    name: String,
}

impl FreshDb {
    /// An empty database: the marketplace's, and the OP's when the two share it (the
    /// test of that lets the OP's migrator fill it).
    async fn create() -> Option<(Self, String)> {
        Self::create_with(false).await
    }

    /// The OP's database with its migrations applied: a copy of a template built once
    /// per migration set, much cheaper than migrating it in every test.
    async fn create_migrated() -> Option<(Self, String)> {
        Self::create_with(true).await
    }

    async fn create_with(migrated: bool) -> Option<(Self, String)> {
        let admin_url = match std::env::var("TEST_DATABASE_URL") {
            Ok(u) if !u.is_empty() => test_databases::server_url(&u),
            _ => {
                assert!(
                    std::env::var("TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "TEST_REQUIRE_SERVICES=1 but TEST_DATABASE_URL is not set"
                );
                return None;
            }
        };
        let name = format!("tobira_e2e_{}", uuid_like());
        let admin = sea_orm::Database::connect(admin_url.as_str())
            .await
            .expect("PostgreSQL reachable");
        if migrated {
            let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations");
            test_databases::create_migrated(&admin, &admin_url, &name, migrations.as_ref()).await;
        } else {
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
        }
        let _ = admin.close().await;
        test_databases::reap_in_background(&admin_url);
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&name);
        Some((Self { admin_url, name }, url.to_string()))
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        test_databases::mark_done(&self.admin_url, &self.name);
    }
}

fn uuid_like() -> String {
    let mut bytes = [0u8; 12];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn world() -> World {
    World::start(Setup::default()).await
}

pub async fn world_with(configure: impl FnOnce(&mut Config) + 'static) -> World {
    World::start(Setup {
        op: Box::new(configure),
        ..Setup::default()
    })
    .await
}

impl World {
    pub async fn start(setup: Setup) -> World {
        let data = tempfile::tempdir().unwrap();
        let op_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let op_port = op_listener.local_addr().unwrap().port();
        let mp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mp_addr = mp_listener.local_addr().unwrap();
        let mp = format!("http://{mp_addr}");
        let mp_public = if setup.https {
            format!("https://{mp_addr}")
        } else {
            mp.clone()
        };

        let mut databases = Vec::new();
        let mut config = Config::default();
        let op_db = if setup.shared_database {
            FreshDb::create().await
        } else {
            FreshDb::create_migrated().await
        };
        if let Some((db, url)) = op_db {
            config.database.url = tobira_auth::config::Secret::new(url);
            databases.push(db);
        }
        if let Ok(redis) = std::env::var("TEST_REDIS_URL")
            && !redis.is_empty()
        {
            config.ephemeral.url = tobira_auth::config::Secret::new(redis);
            config.ephemeral.key_prefix = format!("tobira-e2e:{}:", uuid_like());
        }
        config.issuer =
            tobira_auth::config::Issuer::parse(&format!("http://localhost:{op_port}")).unwrap();
        config.data_dir = data.path().join("op");
        // Back-channel logouts leave within a moment, so tests wait little.
        config.jobs.poll_interval_ms = 50;
        (setup.op)(&mut config);
        let op_db_url = config.database_url();
        let op_app = Application::build_on(op_listener, config, Clock::system())
            .await
            .unwrap();
        let state = op_app.state().clone();
        let mut subs = Vec::new();
        for (email, name) in [(HANAKO, "山田花子"), (TARO, "佐藤太郎")] {
            let user = add_user(
                &state.db,
                &state.hasher,
                &state.clock,
                &tobira_auth::admin::audit::Context::cli(),
                AddUser {
                    email,
                    password: Some(PASSWORD),
                    email_verified: true,
                    display_name: name.to_owned(),
                    locale: Lang::Ja,
                },
            )
            .await
            .unwrap();
            subs.push((email, user.sub.as_str().to_owned()));
        }
        let client = add_client(
            &state.db,
            &state.clock,
            AddClient {
                name: "マーケット".to_owned(),
                redirect_uris: vec![format!("{mp_public}/callback")],
                post_logout_redirect_uris: vec![format!("{mp_public}/")],
                public: false,
                first_party: true,
                extra_grants: vec![GrantType::RefreshToken],
                id_token_alg: Alg::RS256,
                // Reached over plain http on loopback even when its public URL is https.
                backchannel_logout_uri: Some(format!("{mp}/backchannel-logout")),
                backchannel_logout_session_required: false,
                client_id: None,
                secret: None,
                scopes: Vec::new(),
            },
        )
        .await
        .unwrap();
        let op = state.config.issuer.as_str().to_owned();
        let (op_stop, op_stopped) = oneshot::channel::<()>();
        tokio::spawn(op_app.run_until(async {
            let _ = op_stopped.await;
        }));

        let mut mp_config = tobira_marketplace::config::Config {
            public_url: mp_public.clone(),
            data_dir: data.path().join("mp"),
            oidc: tobira_marketplace::config::OidcConfig {
                issuer: op.clone(),
                client_id: client.client.client_id.clone(),
                client_secret: tobira_marketplace::config::Secret::new(client.secret.unwrap()),
            },
            ..Default::default()
        };
        if setup.shared_database {
            mp_config.database.url = tobira_marketplace::config::Secret::new(op_db_url.clone());
        } else if let Some((db, url)) = FreshDb::create().await {
            mp_config.database.url = tobira_marketplace::config::Secret::new(url);
            databases.push(db);
        }
        (setup.mp)(&mut mp_config);
        let mp_db_url = mp_config.database_url();
        let mp_clock = tobira_marketplace::Clock::manual_at_now();
        if setup.legacy_schema {
            std::fs::create_dir_all(data.path().join("mp")).unwrap();
            let conn = sea_orm::Database::connect(mp_db_url.as_str())
                .await
                .unwrap();
            crate::schema::create_legacy_tables(&conn, &op, &subs[0].1, mp_clock.now()).await;
            conn.close().await.unwrap();
        }
        let mp_app =
            tobira_marketplace::App::build_on_with_clock(mp_listener, mp_config, mp_clock.clone())
                .await
                .unwrap();
        let (mp_stop, mp_stopped) = oneshot::channel::<()>();
        tokio::spawn(mp_app.run_until(async {
            let _ = mp_stopped.await;
        }));
        World {
            op,
            mp,
            mp_public,
            op_db_url,
            mp_db_url,
            mp_clock,
            subs,
            _data: data,
            _databases: databases,
            _stop: vec![op_stop, mp_stop],
        }
    }

    pub fn sub_of(&self, email: &str) -> &str {
        &self.subs.iter().find(|(e, _)| *e == email).unwrap().1
    }

    /// A connection of the test's own to the marketplace's database.
    pub async fn mp_db(&self) -> DatabaseConnection {
        sea_orm::Database::connect(self.mp_db_url.as_str())
            .await
            .unwrap()
    }

    pub async fn op_db(&self) -> DatabaseConnection {
        sea_orm::Database::connect(self.op_db_url.as_str())
            .await
            .unwrap()
    }

    /// Rows in one of the marketplace's tables.
    pub async fn rows(&self, table: &str) -> i64 {
        let db = self.mp_db().await;
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        let n = row.try_get::<i64>("", "n").unwrap();
        db.close().await.unwrap();
        n
    }
}

/// A member's browser: it keeps cookies and follows no redirects on its own.
pub fn browser() -> reqwest::Client {
    browser_with_jar().0
}

/// A browser whose cookies the test can read.
pub fn browser_with_jar() -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(Policy::none())
        .build()
        .unwrap();
    (client, jar)
}

/// The value of the cookie `name` that `jar` would send to `url`.
pub fn cookie_in(jar: &Jar, url: &str, name: &str) -> Option<String> {
    let header = jar.cookies(&url.parse().unwrap())?;
    header
        .to_str()
        .unwrap()
        .split("; ")
        .find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

pub struct Hop {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

pub async fn get(b: &reqwest::Client, url: &str) -> Hop {
    let res = b
        .get(url)
        .header("accept-language", "ja")
        .send()
        .await
        .unwrap();
    hop(res).await
}

pub async fn hop(res: reqwest::Response) -> Hop {
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let set_cookies = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = res.text().await.unwrap();
    Hop {
        status,
        location,
        set_cookies,
        body,
    }
}

/// Posts a form with extra request headers (`Origin`, `Sec-Fetch-Site`, …).
pub async fn post(
    b: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Hop {
    let mut req = b.post(url).header("accept-language", "ja").form(form);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    hop(req.send().await.unwrap()).await
}

pub fn absolute(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

pub fn field(body: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = body.find(&marker).unwrap() + marker.len();
    body[start..start + body[start..].find('"').unwrap()].to_owned()
}

pub fn signed_out(page: &Hop) -> bool {
    page.body.contains(r#"data-testid="signin-required""#)
}

/// From the marketplace's sign-in link to the OP's sign-in form: the authorize URL, and
/// the form page.
pub async fn to_op_form(w: &World, b: &reqwest::Client) -> (String, Hop) {
    let start = get(b, &format!("{}/login", w.mp)).await;
    assert_eq!(start.status, 303);
    let authorize = start.location.unwrap();
    op_form_at(w, b, &authorize).await
}

/// The OP's sign-in form, reached from an authorize URL.
pub async fn op_form_at(w: &World, b: &reqwest::Client, authorize: &str) -> (String, Hop) {
    assert!(
        authorize.starts_with(&format!("{}/authorize?", w.op)),
        "{authorize}"
    );
    let to_login = get(b, authorize).await;
    let form = get(b, &absolute(&w.op, &to_login.location.unwrap())).await;
    assert_eq!(form.status, 200);
    (authorize.to_owned(), form)
}

/// Submits the OP's form and follows the OP's redirects; returns the callback URL.
pub async fn submit(w: &World, b: &reqwest::Client, form: &Hop, email: &str) -> String {
    let posted = b
        .post(format!("{}/login", w.op))
        .form(&[
            ("csrf", field(&form.body, "csrf")),
            ("tx", field(&form.body, "tx")),
            ("email", email.to_owned()),
            ("password", PASSWORD.to_owned()),
        ])
        .send()
        .await
        .unwrap();
    let posted = hop(posted).await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let back = get(b, &absolute(&w.op, &posted.location.unwrap())).await;
    let callback = back.location.unwrap();
    assert!(
        callback.starts_with(&format!("{}/callback?", w.mp_public)),
        "{callback}"
    );
    callback
}

/// Signs in through the OP's form; returns My page.
pub async fn sign_in(w: &World, b: &reqwest::Client, email: &str) -> Hop {
    let (_, form) = to_op_form(w, b).await;
    let callback = submit(w, b, &form, email).await;
    land(w, b, &callback).await
}

/// Signs in again while the browser is still signed in at the OP: no form, the OP
/// sends the browser straight back. Returns My page.
pub async fn sign_in_again(w: &World, b: &reqwest::Client) -> Hop {
    let mut next = get(b, &format!("{}/login", w.mp)).await.location.unwrap();
    for _ in 0..5 {
        if next.starts_with(&format!("{}/callback?", w.mp)) {
            return land(w, b, &next).await;
        }
        next = absolute(&w.op, &get(b, &next).await.location.unwrap());
    }
    panic!("the OP did not send the browser back: {next}");
}

async fn land(w: &World, b: &reqwest::Client, callback: &str) -> Hop {
    let landed = get(b, callback).await;
    assert_eq!(landed.status, 303, "{}", landed.body);
    assert_eq!(landed.location.as_deref(), Some("/mypage"));
    get(b, &format!("{}/mypage", w.mp)).await
}

/// Signs out at the OP itself (its own sign-out page, as from another tab), leaving
/// the marketplace's session in place.
pub async fn sign_out_at_op(w: &World, b: &reqwest::Client) {
    let ask = get(b, &format!("{}/end-session", w.op)).await;
    assert_eq!(ask.status, 200, "{}", ask.body);
    let done = b
        .post(format!("{}/end-session/confirm", w.op))
        .form(&[
            ("csrf", field(&ask.body, "csrf")),
            ("tx", field(&ask.body, "tx")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status().as_u16(), 200);
}

/// The path of a member's public profile, from their My page.
pub fn profile_path(mypage: &Hop) -> String {
    let marker = r#"data-testid="profile-link" href=""#;
    let at = mypage.body.find(marker).unwrap() + marker.len();
    mypage.body[at..at + mypage.body[at..].find('"').unwrap()].to_owned()
}

impl World {
    /// The OP's signing keys, loaded as the OP loads them (its database, and the master
    /// key in its data directory): tests sign logout tokens with chosen claims.
    pub async fn op_keys(&self) -> tobira_auth::keys::KeyRing {
        let mut config = Config {
            data_dir: self._data.path().join("op"),
            ..Config::default()
        };
        config.database.url = tobira_auth::config::Secret::new(self.op_db_url.clone());
        let db = tobira_auth::startup::open_db(&config).await.unwrap();
        let master = tobira_auth::keys::MasterKey::load_or_create(&config).unwrap();
        tobira_auth::keys::KeyRing::load_or_init(
            &db,
            &master,
            &Clock::system(),
            tobira_auth::keys::KeyPolicy::from_config(&config),
        )
        .await
        .unwrap()
    }
}
