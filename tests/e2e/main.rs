//! The OP and the marketplace as two servers on two origins (the OP on `localhost`, the
//! marketplace on `127.0.0.1`), a member signing in through the real forms with a
//! cookie-keeping HTTP client, and the hostile callbacks the marketplace must refuse.

use reqwest::redirect::Policy;
use tobira_auth::admin::clients::{AddClient, add_client};
use tobira_auth::admin::users::{AddUser, add_user};
use tobira_auth::domain::GrantType;
use tobira_auth::keys::Alg;
use tobira_auth::web::i18n::Lang;
use tobira_auth::{Application, Clock, Config};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const PASSWORD: &str = "violet-tunnel-ramen-42";

struct World {
    op: String,
    mp: String,
    _data: tempfile::TempDir,
    _databases: Vec<FreshDb>,
    _stop: Vec<oneshot::Sender<()>>,
}

/// With `TEST_DATABASE_URL`, both apps run on PostgreSQL: a database each, made for the
/// test and dropped after it (`TEST_REQUIRE_SERVICES=1` makes an unreachable server fail).
struct FreshDb {
    admin_url: String,
    name: String,
}

impl FreshDb {
    async fn create() -> Option<(Self, String)> {
        let admin_url = match std::env::var("TEST_DATABASE_URL") {
            Ok(u) if !u.is_empty() => u,
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
        sea_orm::ConnectionTrait::execute_unprepared(&admin, &format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&name);
        Some((Self { admin_url, name }, url.to_string()))
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let admin = sea_orm::Database::connect(admin_url.as_str()).await.ok()?;
                sea_orm::ConnectionTrait::execute_unprepared(
                    &admin,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )
                .await
                .ok()
            })
        })
        .join();
    }
}

fn uuid_like() -> String {
    let mut bytes = [0u8; 12];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn world() -> World {
    world_with(|_| {}).await
}

async fn world_with(configure: impl FnOnce(&mut Config)) -> World {
    let data = tempfile::tempdir().unwrap();
    let op_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let op_port = op_listener.local_addr().unwrap().port();
    let mp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mp = format!("http://{}", mp_listener.local_addr().unwrap());

    let mut databases = Vec::new();
    let mut config = Config::default();
    if let Some((db, url)) = FreshDb::create().await {
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
    configure(&mut config);
    let op_app = Application::build_on(op_listener, config, Clock::system())
        .await
        .unwrap();
    let state = op_app.state().clone();
    for (email, name) in [
        ("hanako@example.jp", "山田花子"),
        ("taro@example.jp", "佐藤太郎"),
    ] {
        add_user(
            &state.db,
            &state.hasher,
            &state.clock,
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
    }
    let client = add_client(
        &state.db,
        &state.clock,
        AddClient {
            name: "マーケット".to_owned(),
            redirect_uris: vec![format!("{mp}/callback")],
            post_logout_redirect_uris: vec![format!("{mp}/")],
            public: false,
            first_party: true,
            extra_grants: vec![GrantType::RefreshToken],
            id_token_alg: Alg::RS256,
            client_id: None,
            secret: None,
        },
    )
    .await
    .unwrap();
    let op = state.config.issuer.as_str().to_owned();
    let (op_stop, op_stopped) = oneshot::channel::<()>();
    tokio::spawn(op_app.run_until(async {
        let _ = op_stopped.await;
    }));

    let mp_database = match FreshDb::create().await {
        Some((db, url)) => {
            databases.push(db);
            tobira_marketplace::config::DatabaseConfig {
                url: tobira_marketplace::config::Secret::new(url),
            }
        }
        None => Default::default(),
    };
    let mp_config = tobira_marketplace::config::Config {
        public_url: mp.clone(),
        database: mp_database,
        data_dir: data.path().join("mp"),
        oidc: tobira_marketplace::config::OidcConfig {
            issuer: op.clone(),
            client_id: client.client.client_id.clone(),
            client_secret: tobira_marketplace::config::Secret::new(client.secret.unwrap()),
        },
        ..Default::default()
    };
    let mp_app = tobira_marketplace::App::build_on(mp_listener, mp_config)
        .await
        .unwrap();
    let (mp_stop, mp_stopped) = oneshot::channel::<()>();
    tokio::spawn(mp_app.run_until(async {
        let _ = mp_stopped.await;
    }));
    World {
        op,
        mp,
        _data: data,
        _databases: databases,
        _stop: vec![op_stop, mp_stop],
    }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

struct Hop {
    status: u16,
    location: Option<String>,
    body: String,
}

async fn get(b: &reqwest::Client, url: &str) -> Hop {
    let res = b
        .get(url)
        .header("accept-language", "ja")
        .send()
        .await
        .unwrap();
    hop(res).await
}

async fn hop(res: reqwest::Response) -> Hop {
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.text().await.unwrap();
    Hop {
        status,
        location,
        body,
    }
}

fn absolute(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

fn field(body: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = body.find(&marker).unwrap() + marker.len();
    body[start..start + body[start..].find('"').unwrap()].to_owned()
}

/// From the marketplace's sign-in link to the OP's sign-in form: the authorize URL, and
/// the form page.
async fn to_op_form(w: &World, b: &reqwest::Client) -> (String, Hop) {
    let start = get(b, &format!("{}/login", w.mp)).await;
    assert_eq!(start.status, 303);
    let authorize = start.location.unwrap();
    assert!(
        authorize.starts_with(&format!("{}/authorize?", w.op)),
        "{authorize}"
    );
    let to_login = get(b, &authorize).await;
    let form = get(b, &absolute(&w.op, &to_login.location.unwrap())).await;
    assert_eq!(form.status, 200);
    (authorize, form)
}

/// Submits the OP's form and follows the OP's redirects; returns the callback URL.
async fn submit(w: &World, b: &reqwest::Client, form: &Hop, email: &str) -> String {
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
        callback.starts_with(&format!("{}/callback?", w.mp)),
        "{callback}"
    );
    callback
}

async fn sign_in(w: &World, b: &reqwest::Client, email: &str) -> Hop {
    let (_, form) = to_op_form(w, b).await;
    let callback = submit(w, b, &form, email).await;
    let landed = get(b, &callback).await;
    assert_eq!(landed.status, 303, "{}", landed.body);
    assert_eq!(landed.location.as_deref(), Some("/mypage"));
    get(b, &format!("{}/mypage", w.mp)).await
}

#[tokio::test]
async fn a_member_signs_in_at_the_marketplace_through_the_op_and_out_again() {
    let w = world().await;
    let b = browser();
    let mypage = sign_in(&w, &b, "hanako@example.jp").await;
    assert_eq!(mypage.status, 200);
    assert!(
        mypage.body.contains("マイページ")
            && mypage.body.contains("山田花子")
            && mypage.body.contains("hanako@example.jp")
    );
    assert!(mypage.body.contains("(パスワード)"), "how they signed in");
    assert!(
        mypage
            .body
            .contains(&format!(r#"href="{}/account/password""#, w.op))
    );

    // Public profile, as seen by another member; hidden at once when turned off.
    let profile_path = {
        let at = mypage
            .body
            .find(r#"data-testid="profile-link" href=""#)
            .unwrap()
            + 33;
        mypage.body[at..at + mypage.body[at..].find('"').unwrap()].to_owned()
    };
    assert!(profile_path.starts_with("/users/"), "{profile_path}");
    let other = browser();
    sign_in(&w, &other, "taro@example.jp").await;
    let seen = get(&other, &format!("{}{profile_path}", w.mp)).await;
    assert!(
        seen.body.contains("山田花子") && seen.body.contains("最終ログイン: たった今"),
        "{}",
        seen.body
    );
    let settings = get(&b, &format!("{}/settings/privacy", w.mp)).await;
    let csrf = field(&settings.body, "csrf");
    let saved = hop(b
        .post(format!("{}/settings/privacy", w.mp))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(saved.status, 303);
    let seen = get(&other, &format!("{}{profile_path}", w.mp)).await;
    assert!(!seen.body.contains("最終ログイン"), "{}", seen.body);
    // A settings POST without the session's token is refused.
    let forged = hop(b
        .post(format!("{}/settings/privacy", w.mp))
        .form(&[("show_last_login", "on")])
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(forged.status, 403);

    // Sign out: the marketplace session, then the OP's.
    let csrf = field(&get(&b, &format!("{}/mypage", w.mp)).await.body, "csrf");
    let out = hop(b
        .post(format!("{}/logout", w.mp))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(out.status, 303);
    let end_session = out.location.unwrap();
    assert!(
        end_session.starts_with(&format!("{}/end-session?", w.op)),
        "{end_session}"
    );
    let back = get(&b, &end_session).await;
    assert!(
        back.location
            .as_deref()
            .unwrap()
            .starts_with(&format!("{}/?state=", w.mp)),
        "{:?}",
        back.location
    );
    let mypage = get(&b, &format!("{}/mypage", w.mp)).await;
    assert!(mypage.body.contains(r#"data-testid="signin-required""#));
    // No OP session either: signing in again shows the form.
    let (_, form) = to_op_form(&w, &b).await;
    assert!(form.body.contains(r#"name="password""#));
}

#[tokio::test]
async fn the_callback_refuses_wrong_missing_replayed_and_foreign_states() {
    let w = world().await;
    let b = browser();
    let (_, form) = to_op_form(&w, &b).await;
    let callback = submit(&w, &b, &form, "hanako@example.jp").await;
    let tampered = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = tampered.query_pairs().into_owned().collect();
    let with = |key: &str, value: Option<&str>| {
        let mut u = tampered.clone();
        let mut q = u.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            if k != key {
                q.append_pair(k, v);
            }
        }
        if let Some(v) = value {
            q.append_pair(key, v);
        }
        drop(q);
        u.to_string()
    };
    for bad in [
        with("state", Some("forged")),
        with("state", None),
        with("iss", Some("http://evil.example")),
    ] {
        let res = get(&b, &bad).await;
        assert_eq!(res.status, 400, "{bad}");
        assert!(res.body.contains(r#"data-testid="signin-failed""#));
    }
    // Another browser cannot finish a sign-in it did not start.
    let b = browser();
    let (_, form) = to_op_form(&w, &b).await;
    let callback = submit(&w, &b, &form, "hanako@example.jp").await;
    let stranger = browser();
    let res = get(&stranger, &callback).await;
    assert_eq!(res.status, 400);
    // The right browser, once; the replay is refused (the state is single use).
    let b = browser();
    let (_, form) = to_op_form(&w, &b).await;
    let callback = submit(&w, &b, &form, "hanako@example.jp").await;
    let ok = get(&b, &callback).await;
    assert_eq!(ok.status, 303);
    let replay = get(&b, &callback).await;
    assert_eq!(replay.status, 400);
}

#[tokio::test]
async fn an_id_token_that_fails_validation_gives_no_session() {
    let w = world().await;
    let b = browser();
    let start = get(&b, &format!("{}/login", w.mp)).await;
    // Someone swapped the nonce on the way to the OP: the ID token will not match.
    let mut authorize = url::Url::parse(&start.location.unwrap()).unwrap();
    let pairs: Vec<(String, String)> = authorize
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != "nonce")
        .collect();
    authorize
        .query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair("nonce", "attacker-nonce");
    let to_login = get(&b, authorize.as_str()).await;
    let form = get(&b, &absolute(&w.op, &to_login.location.unwrap())).await;
    let callback = submit(&w, &b, &form, "hanako@example.jp").await;
    let res = get(&b, &callback).await;
    assert_eq!(res.status, 400);
    assert!(res.body.contains(r#"data-testid="signin-failed""#));
    let mypage = get(&b, &format!("{}/mypage", w.mp)).await;
    assert!(mypage.body.contains(r#"data-testid="signin-required""#));
}

#[tokio::test]
async fn tabs_refreshing_at_once_do_not_trip_the_ops_reuse_detection() {
    // Access tokens that are always due for a refresh: every My page load refreshes.
    let w = world_with(|c| c.tokens.access_token_secs = 1).await;
    let b = browser();
    let first = sign_in(&w, &b, "hanako@example.jp").await;
    assert!(first.body.contains("山田花子"));
    for _ in 0..3 {
        // Five tabs at once: one refresh, the others wait for it and use its result.
        let tabs: Vec<_> = (0..5)
            .map(|_| {
                let (b, url) = (b.clone(), format!("{}/mypage", w.mp));
                tokio::spawn(async move { get(&b, &url).await })
            })
            .collect();
        for tab in tabs {
            let page = tab.await.unwrap();
            assert!(
                page.body.contains("山田花子"),
                "a tab was signed out: {}",
                page.body
            );
        }
    }
}
