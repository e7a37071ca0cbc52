//! Two `tobira serve` processes behind a proxy of the test's own, the way an operator runs
//! replicas: one PostgreSQL database, one Redis key prefix, one master key, one issuer.
//! The proxy sends each request to the replica the test picks, so every check starts
//! something on one replica and finishes it on the other. Needs PostgreSQL and Redis:
//! skipped without them, failing under `TEST_REQUIRE_SERVICES=1`.

use std::collections::BTreeSet;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use openidconnect::{
    AuthorizationCode, Nonce, OAuth2TokenResponse, RefreshToken, TokenResponse as _,
};
use serde_json::Value;
use tobira_auth::store::{BACKCHANNEL_QUEUE, Db, MAIL_QUEUE};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use crate::backchannel::Receiver;
use crate::helpers::{
    Browser, OutboxMail, Page, TestDb, TestRedis, callback_params, jwt_part, kid_of,
};
use crate::oidc::{EMAIL, PASSWORD, Pending, REDIRECT, authorize, token_error};
use crate::rp::{self, Auth, Http, Rp, TokenResponse};

const BIN: &str = env!("CARGO_BIN_EXE_tobira");
/// Short, so that a rotation reaches both replicas within a moment.
const RELOAD_MS: u32 = 300;
/// How often each replica's job worker looks for work.
const POLL_MS: u64 = 50;
/// The member whose account the throttling check locks (the other one keeps signing in).
const GUESSED: &str = "guessed@example.jp";
const WRONG: &str = "not-the-password-1";
const LOCKED: &str =
    "ログインの失敗が続いたため、このアカウントへのログインを一時的に制限しています。";
const LOCK_SUBJECT: &str = "【Tobira】ログインを一時的に制限しました";
const RESET_SUBJECT: &str = "【Tobira】パスワードの再設定";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    A = 0,
    B = 1,
}

// ------------------------------------------------------------------------- proxy

/// What the proxy shares with its handler: where the replicas are, which one answers
/// now, and how many requests each has answered (so a check can tell that its requests
/// really went where it meant them to).
struct Switch {
    upstreams: OnceLock<[String; 2]>,
    route: AtomicUsize,
    served: [AtomicUsize; 2],
    http: reqwest::Client,
}

/// A reverse proxy on 127.0.0.1: every request goes, unchanged (Host, cookies, Origin
/// and body included), to the replica `route` names, and its answer comes back
/// unchanged; redirects are the browser's business, never followed here.
struct Proxy {
    url: String,
    switch: Arc<Switch>,
}

/// Headers that describe one connection (RFC 9110 §7.6.1), not the message: a proxy
/// does not pass them on. `content-length` is set again from the body forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    for name in HOP_BY_HOP {
        kept.remove(*name);
    }
    kept
}

async fn forward(State(switch): State<Arc<Switch>>, request: Request) -> Response {
    let side = switch.route.load(Ordering::SeqCst);
    let Some(upstreams) = switch.upstreams.get() else {
        return (StatusCode::BAD_GATEWAY, "no replicas yet").into_response();
    };
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let answer = switch
        .http
        .request(parts.method, format!("{}{path}", upstreams[side]))
        .headers(end_to_end(&parts.headers))
        .body(body)
        .send()
        .await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    switch.served[side].fetch_add(1, Ordering::SeqCst);
    let status = answer.status();
    let headers = end_to_end(answer.headers());
    let body = match answer.bytes().await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

impl Proxy {
    async fn start() -> Self {
        let switch = Arc::new(Switch {
            upstreams: OnceLock::new(),
            route: AtomicUsize::new(Side::A as usize),
            served: [AtomicUsize::new(0), AtomicUsize::new(0)],
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("HTTP client"),
        });
        let app = Router::new().fallback(forward).with_state(switch.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let port = listener.local_addr().expect("bound").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        // `localhost`, as browsers need for passkeys; it resolves to 127.0.0.1 here.
        Self {
            url: format!("http://localhost:{port}"),
            switch,
        }
    }

    fn route(&self, side: Side) {
        self.switch.route.store(side as usize, Ordering::SeqCst);
    }

    fn served(&self, side: Side) -> usize {
        self.switch.served[side as usize].load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------- replicas

/// One `tobira serve` process; killed when dropped. Its log is kept to show when a
/// check fails.
struct Replica {
    _child: Child,
    origin: String,
    log: Arc<Mutex<Vec<String>>>,
}

/// The two replicas, their proxy, their stores and the configuration they share.
struct Cluster {
    proxy: Proxy,
    replicas: Vec<Replica>,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    db: Db,
    http: Http,
    _pg: TestDb,
    _redis: TestRedis,
}

fn master_key() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

impl Cluster {
    /// Migrates the database through the CLI, then starts both replicas; `None` when
    /// PostgreSQL or Redis is not configured (the helpers print why, or fail when
    /// services are required).
    async fn start() -> Option<Self> {
        let pg = TestDb::postgres().await?;
        let redis = TestRedis::new().await?;
        let proxy = Proxy::start().await;
        let dir = tempfile::tempdir().expect("temporary directory");
        let outbox = dir.path().join("outbox");
        let env: Vec<(String, String)> = [
            ("TOBIRA_ISSUER", proxy.url.clone()),
            ("TOBIRA_DATABASE__URL", pg.url.clone()),
            ("TOBIRA_EPHEMERAL__URL", redis.url.clone()),
            ("TOBIRA_EPHEMERAL__KEY_PREFIX", redis.prefix.clone()),
            ("TOBIRA_KEYS__MASTER_KEY", master_key()),
            ("TOBIRA_KEYS__RELOAD_INTERVAL_MS", RELOAD_MS.to_string()),
            ("TOBIRA_JOBS__POLL_INTERVAL_MS", POLL_MS.to_string()),
            // One outbox for both, as a shared mail server would be: a mail sent twice
            // shows as two files.
            ("TOBIRA_MAIL__OUTBOX_DIR", outbox.display().to_string()),
            // Long enough that the lock still holds when the check looks at it.
            ("TOBIRA_THROTTLE__LOCK_MINUTES", "30".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let db = pg.connect().await;
        let mut cluster = Self {
            proxy,
            replicas: Vec::new(),
            env,
            dir,
            db,
            http: Http::new(),
            _pg: pg,
            _redis: redis,
        };
        cluster.ok(&["migrate"], None).await;
        let (a, b) = tokio::join!(cluster.spawn("a"), cluster.spawn("b"));
        cluster.replicas = vec![a, b];
        let origins = [
            cluster.replicas[0].origin.clone(),
            cluster.replicas[1].origin.clone(),
        ];
        assert!(cluster.proxy.switch.upstreams.set(origins).is_ok());
        Some(cluster)
    }

    fn command(&self, data_dir: &str) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TOBIRA_DATA_DIR", self.dir.path().join(data_dir))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .kill_on_drop(true);
        cmd
    }

    /// Starts `tobira serve` on a port of the OS's choosing, known from its log.
    async fn spawn(&self, name: &str) -> Replica {
        let mut child = self
            .command(name)
            .arg("serve")
            .env("TOBIRA_SERVER__BIND", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tobira serve starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let kept = log.clone();
        // Reads the log to its end, so the process never blocks on a full pipe.
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(i) = line.find("listening on http://") {
                    let url = line[i + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url);
                    }
                }
                kept.lock().unwrap().push(line);
            }
        });
        let origin = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| {
                panic!(
                    "replica {name} never said where it listens:\n{}",
                    log.lock().unwrap().join("\n")
                )
            });
        Replica {
            _child: child,
            origin,
            log,
        }
    }

    /// A `tobira` command with the replicas' configuration, as an operator runs it on
    /// one of their machines.
    async fn tobira(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self
            .command("cli")
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tobira runs");
        let mut input = child.stdin.take().expect("piped");
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .await
            .expect("stdin takes the input");
        drop(input);
        child.wait_with_output().await.expect("tobira ends")
    }

    /// Runs a command that must succeed; its standard output.
    async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.tobira(args, stdin).await;
        assert!(
            out.status.success(),
            "tobira {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn add_member(&self, email: &str) {
        self.ok(
            &[
                "users",
                "add",
                "--email",
                email,
                "--password-stdin",
                "--verified",
            ],
            Some(PASSWORD),
        )
        .await;
    }

    /// Registers a first-party client; its id and secret.
    async fn add_client(&self, name: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec![
            "clients",
            "add",
            "--name",
            name,
            "--redirect-uri",
            REDIRECT,
            "--first-party",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = self.ok(&args, None).await;
        let added: Value = serde_json::from_str(out.trim()).expect("one JSON object");
        (
            added["client_id"].as_str().expect("a client_id").to_owned(),
            added["client_secret"]
                .as_str()
                .expect("a secret")
                .to_owned(),
        )
    }

    fn issuer(&self) -> &str {
        &self.proxy.url
    }

    /// A browser of its own, visiting the OP through the proxy.
    fn browser(&self) -> Browser {
        Browser::new(url::Url::parse(self.issuer()).expect("the issuer is a URL"))
    }

    /// A relying party that discovers the OP (and fetches its JWKS) now, through `side`.
    async fn rp(&self, side: Side, client: &(String, String)) -> Rp {
        self.proxy.route(side);
        rp::client(
            &self.http,
            self.issuer(),
            &client.0,
            Auth::Basic(client.1.clone()),
            REDIRECT,
        )
        .await
    }

    /// The key ids `side` publishes, with their algorithms.
    async fn jwks(&self, side: Side) -> BTreeSet<(String, String)> {
        self.proxy.route(side);
        let res = self
            .http
            .0
            .get(format!("{}/jwks", self.issuer()))
            .send()
            .await
            .expect("the JWKS answers");
        assert_eq!(res.status(), 200);
        let jwks: Value = res.json().await.expect("a JWK set");
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| {
                (
                    k["kid"].as_str().expect("a kid").to_owned(),
                    k["alg"].as_str().expect("an alg").to_owned(),
                )
            })
            .collect()
    }

    async fn userinfo_status(&self, side: Side, token: &str) -> u16 {
        self.proxy.route(side);
        self.http
            .0
            .get(format!("{}/userinfo", self.issuer()))
            .bearer_auth(token)
            .send()
            .await
            .expect("userinfo answers")
            .status()
            .as_u16()
    }

    /// The mails in the shared outbox.
    fn outbox(&self) -> Vec<OutboxMail> {
        let Ok(dir) = std::fs::read_dir(self.dir.path().join("outbox")) else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .map(|p| OutboxMail::parse(&std::fs::read(p).expect("a mail file")))
            .collect()
    }

    fn mails(&self, to: &str, subject: &str) -> usize {
        self.outbox()
            .iter()
            .filter(|m| m.to == to && m.subject == subject)
            .count()
    }

    /// Waits until no mail or logout is left in the job table, then a few more polls of
    /// both workers: a job that either replica was going to run twice has run by then.
    async fn settled(&self) {
        for _ in 0..400 {
            let mails = self.db.jobs().pending(MAIL_QUEUE).await.expect("jobs");
            let logouts = self
                .db
                .jobs()
                .pending(BACKCHANNEL_QUEUE)
                .await
                .expect("jobs");
            if mails.is_empty() && logouts.is_empty() {
                tokio::time::sleep(Duration::from_millis(10 * POLL_MS)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        panic!("the job table does not empty");
    }

    /// Waits (a few seconds at most) until `ready` holds.
    async fn until(&self, what: &str, ready: impl Fn() -> bool) {
        for _ in 0..200 {
            if ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        panic!("{what} never happened");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (replica, name) in self.replicas.iter().zip(["A", "B"]) {
            let log = replica.log.lock().unwrap();
            let tail = &log[log.len().saturating_sub(40)..];
            eprintln!("--- replica {name}, last lines:\n{}", tail.join("\n"));
        }
    }
}

// ----------------------------------------------------------------- the RP's side

/// The code of a redirect back to the client, with `state` and `iss` checked.
fn code_from(issuer: &str, back: &Page, pending: &Pending) -> AuthorizationCode {
    assert_eq!(back.status, 303, "{}", back.body);
    let location = back.location.as_deref().expect("a redirect");
    assert!(
        location.starts_with(REDIRECT),
        "not to the client: {location}"
    );
    let params = callback_params(location);
    assert_eq!(params.get("state"), Some(pending.state.secret()));
    assert_eq!(params.get("iss").map(String::as_str), Some(issuer));
    AuthorizationCode::new(params.get("code").expect("a code").clone())
}

async fn exchange(
    c: &Cluster,
    side: Side,
    rp: &Rp,
    code: AuthorizationCode,
    pending: Pending,
) -> TokenResponse {
    c.proxy.route(side);
    rp.exchange_code(code)
        .expect("a token endpoint")
        .set_pkce_verifier(pending.verifier)
        .request_async(&c.http)
        .await
        .map_err(token_error)
        .expect("the code is redeemed")
}

async fn refresh(
    c: &Cluster,
    side: Side,
    rp: &Rp,
    token: &RefreshToken,
) -> Result<TokenResponse, String> {
    c.proxy.route(side);
    rp.exchange_refresh_token(token)
        .expect("a token endpoint")
        .request_async(&c.http)
        .await
        .map_err(token_error)
}

/// An authorization of a browser already signed in, answered by `side` at once.
async fn single_sign_on(c: &Cluster, side: Side, browser: &Browser, rp: &Rp) -> TokenResponse {
    c.proxy.route(side);
    let pending = authorize(rp, &[]);
    let back = browser.get(&pending.url).await;
    let code = code_from(c.issuer(), &back, &pending);
    exchange(c, side, rp, code, pending).await
}

fn id_token_kid(tokens: &TokenResponse) -> String {
    kid_of(&tokens.id_token().expect("an ID token").to_string())
}

/// Checks the ID token's signature and claims as the relying party `rp` does.
fn verified_sid(rp: &Rp, tokens: &TokenResponse, nonce: Option<&Nonce>) -> String {
    let verifier = rp.id_token_verifier();
    let id_token = tokens.id_token().expect("an ID token");
    let claims = match nonce {
        Some(nonce) => id_token.claims(&verifier, nonce),
        None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
    }
    .expect("the ID token verifies");
    claims.additional_claims().sid.clone().expect("a sid")
}

// ------------------------------------------------------------------------ checks

#[tokio::test]
async fn two_replica_processes_behind_a_proxy_act_as_one_provider() {
    let Some(c) = Cluster::start().await else {
        eprintln!("skipping: replicas as processes need PostgreSQL and Redis");
        return;
    };
    let receiver = Receiver::start().await;
    let logout_uri = receiver.uri();
    let refreshing = ["--grant", "refresh_token"];
    let listening = ["--backchannel-logout-uri", logout_uri.as_str()];
    let (_, _, app, listener) = tokio::join!(
        c.add_member(EMAIL),
        c.add_member(GUESSED),
        c.add_client("Partner Site", &refreshing),
        c.add_client("Listening Site", &listening),
    );
    let rp = c.rp(Side::A, &app).await;
    let browser = c.browser();

    let first = session_made_on_a_signs_in_on_b(&c, &rp, &browser).await;
    refresh_token_from_a_rotates_on_b_and_its_reuse_is_caught_on_a(&c, &rp, &first).await;
    failed_passwords_on_both_replicas_count_towards_one_lock(&c, &rp).await;
    key_rotated_by_the_cli_signs_on_both_replicas(&c, &app, &browser).await;
    mail_and_logout_are_each_delivered_once(&c, &browser, &listener, &receiver).await;
}

/// A session made through A gives single sign-on through B: B reads the session A wrote.
async fn session_made_on_a_signs_in_on_b(c: &Cluster, rp: &Rp, browser: &Browser) -> TokenResponse {
    c.proxy.route(Side::A);
    let pending = authorize(rp, &[]);
    let back = browser.sign_in(&pending.url, EMAIL, PASSWORD, false).await;
    let code = code_from(c.issuer(), &back, &pending);
    let nonce = pending.nonce.clone();
    let first = exchange(c, Side::A, rp, code, pending).await;
    let sid = verified_sid(rp, &first, Some(&nonce));

    let before = c.proxy.served(Side::B);
    c.proxy.route(Side::B);
    let pending = authorize(rp, &[]);
    let back = browser.get(&pending.url).await;
    assert!(
        back.location
            .as_deref()
            .is_some_and(|l| l.starts_with(REDIRECT)),
        "B answers at once, without a sign-in page: {:?} {}",
        back.location,
        back.body
    );
    let code = code_from(c.issuer(), &back, &pending);
    let nonce = pending.nonce.clone();
    let second = exchange(c, Side::B, rp, code, pending).await;
    assert_eq!(
        verified_sid(rp, &second, Some(&nonce)),
        sid,
        "the same session"
    );
    assert!(c.proxy.served(Side::B) > before, "B answered");
    first
}

/// A refresh token issued by A rotates on B; the spent one, shown to A again, is a reuse
/// (RFC 9700 §4.14.2): refused, and the token B rotated to dies with the grant.
async fn refresh_token_from_a_rotates_on_b_and_its_reuse_is_caught_on_a(
    c: &Cluster,
    rp: &Rp,
    first: &TokenResponse,
) {
    let spent = first.refresh_token().expect("a refresh token");
    let rotated = refresh(c, Side::B, rp, spent)
        .await
        .expect("B rotates A's token");
    let successor = rotated.refresh_token().expect("rotated").clone();
    assert_ne!(successor.secret(), spent.secret());
    let access = rotated.access_token().secret();
    assert_eq!(c.userinfo_status(Side::A, access).await, 200);

    assert_eq!(
        refresh(c, Side::A, rp, spent).await.unwrap_err(),
        "invalid_grant",
        "A sees that B spent it"
    );
    assert_eq!(
        refresh(c, Side::B, rp, &successor).await.unwrap_err(),
        "invalid_grant",
        "the grant is revoked on B too"
    );
    assert_eq!(c.userinfo_status(Side::B, access).await, 401);
}

/// Failed passwords alternating between A and B reach the lock (five by default) that
/// neither replica would reach alone: the counts live in Redis.
async fn failed_passwords_on_both_replicas_count_towards_one_lock(c: &Cluster, rp: &Rp) {
    let attacker = c.browser();
    c.proxy.route(Side::A);
    let pending = authorize(rp, &[("prompt", "login")]);
    let login = attacker.follow(attacker.get(&pending.url).await).await;
    assert_eq!(login.status, 200, "{}", login.body);
    for guess in 0..5 {
        c.proxy
            .route(if guess % 2 == 0 { Side::A } else { Side::B });
        let page = attacker.post_login(&login, GUESSED, WRONG).await;
        assert_eq!(page.status, 401, "guess {guess}: {}", page.body);
    }
    for side in [Side::B, Side::A] {
        c.proxy.route(side);
        let page = attacker.post_login(&login, GUESSED, PASSWORD).await;
        assert_eq!(page.status, 429, "{side:?}: {}", page.body);
        assert!(page.body.contains(LOCKED), "{side:?}: {}", page.body);
    }
}

/// `tobira keys rotate --now` returns once the new key signs: at once both replicas
/// publish it beside the old one, and their next ID tokens carry its kid and verify
/// against the JWKS a relying party fetches now.
async fn key_rotated_by_the_cli_signs_on_both_replicas(
    c: &Cluster,
    app: &(String, String),
    browser: &Browser,
) {
    let before = c.jwks(Side::B).await;
    assert_eq!(c.jwks(Side::A).await, before, "both publish the same keys");
    let rp = c.rp(Side::A, app).await;
    let old = id_token_kid(&single_sign_on(c, Side::A, browser, &rp).await);
    assert!(before.iter().any(|(kid, _)| *kid == old));

    c.ok(&["keys", "rotate", "--now", "--alg", "RS256"], None)
        .await;

    let after = c.jwks(Side::B).await;
    assert!(
        after.is_superset(&before),
        "the old keys stay published: {before:?} → {after:?}"
    );
    let added: Vec<&(String, String)> = after.difference(&before).collect();
    let [(new, alg)] = added.as_slice() else {
        panic!("one new key, not {added:?}");
    };
    assert_eq!(alg, "RS256");
    assert_eq!(c.jwks(Side::A).await, after, "A publishes it too");

    for side in [Side::B, Side::A] {
        let rp = c.rp(side, app).await;
        let tokens = single_sign_on(c, side, browser, &rp).await;
        assert_eq!(
            &id_token_kid(&tokens),
            new,
            "{side:?} signs with the new key"
        );
        verified_sid(&rp, &tokens, None);
    }
}

/// Both replicas run the job worker; a password-reset mail (and the lock mail of the
/// throttling check) and a back-channel logout are each sent once all the same.
async fn mail_and_logout_are_each_delivered_once(
    c: &Cluster,
    browser: &Browser,
    listener: &(String, String),
    receiver: &Receiver,
) {
    // The form from A, posted to B: its CSRF token holds on both.
    let stranger = c.browser();
    c.proxy.route(Side::A);
    let form = stranger.get("/password/forgot").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.field("csrf").expect("a CSRF field");
    c.proxy.route(Side::B);
    let sent = stranger
        .post_form("/password/forgot", &[("csrf", &csrf), ("email", EMAIL)])
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);

    // The member signs in to the listening client (from the session made on A), then
    // signs out through B.
    let rp = c.rp(Side::A, listener).await;
    let tokens = single_sign_on(c, Side::A, browser, &rp).await;
    let sid = verified_sid(&rp, &tokens, None);
    c.proxy.route(Side::B);
    let mut end = url::Url::parse(&format!("{}/end-session", c.issuer())).expect("a URL");
    end.query_pairs_mut().append_pair(
        "id_token_hint",
        &tokens.id_token().expect("an ID token").to_string(),
    );
    let page = browser.get(end.as_str()).await;
    assert!(matches!(page.status, 200 | 303), "{}", page.body);

    c.until("the reset mail", || c.mails(EMAIL, RESET_SUBJECT) >= 1)
        .await;
    receiver.wait_for(1).await;
    c.settled().await;
    assert_eq!(c.mails(EMAIL, RESET_SUBJECT), 1, "one reset mail");
    assert_eq!(c.mails(GUESSED, LOCK_SUBJECT), 1, "one lock mail");
    assert_eq!(receiver.inner.hits.load(Ordering::SeqCst), 1, "one logout");
    let logout = jwt_part(&receiver.tokens()[0], 1);
    assert_eq!(logout["aud"], listener.0.as_str());
    assert_eq!(logout["sid"], sid.as_str());
}
