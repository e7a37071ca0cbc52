//! Back-channel logout, the way a client meets it: a real HTTP endpoint of the test's own
//! receives the logout tokens when the member's session ends (RP-initiated logout, the
//! devices page, a password reset), each checked as a relying party must (Back-Channel
//! Logout 1.0 §2.6); delivery survives a client that is down, is sent once with two
//! replicas, follows no redirect and reaches no private address.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration as StdDuration;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::routing::post;
use base64::Engine;
use openidconnect::TokenResponse as _;
use serde_json::{Map, Value};
use time::Duration;
use tobira_auth::keys::Alg;
use tobira_auth::store::BACKCHANNEL_QUEUE;
use tokio::net::TcpListener;

use crate::helpers::{Browser, ClientOpts, TestApp};
use crate::oidc::{
    EMAIL, PASSWORD, Setup, authorize, exchange, setup, setup_with, sign_in_for_code,
};
use crate::rp::IdClaims;

/// A client's back-channel logout endpoint: keeps every token posted to `/bc`, answers
/// 503 while `down`, and redirects `/moved` to `/bc`.
pub struct Receiver {
    url: String,
    pub inner: Arc<Inner>,
}

#[derive(Default)]
pub struct Inner {
    tokens: std::sync::Mutex<Vec<String>>,
    /// Every POST to `/bc`, taken or not.
    pub hits: AtomicUsize,
    down: AtomicBool,
    /// Each answer waits this long (ms), so that replicas overlap.
    slow_ms: AtomicUsize,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    /// A receiver on a port chosen before (where connections were refused until now).
    pub async fn start_on_port(port: u16) -> Self {
        Self::start_on(TcpListener::bind(("127.0.0.1", port)).await.unwrap())
    }

    fn start_on(listener: TcpListener) -> Self {
        async fn take(
            State(inner): State<Arc<Inner>>,
            Form(form): Form<Vec<(String, String)>>,
        ) -> StatusCode {
            // Whether it is down is decided as the request arrives.
            let down = inner.down.load(Ordering::SeqCst);
            inner.hits.fetch_add(1, Ordering::SeqCst);
            let wait = inner.slow_ms.load(Ordering::SeqCst);
            tokio::time::sleep(StdDuration::from_millis(wait as u64)).await;
            if down {
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            match form.as_slice() {
                [(name, token)] if name == "logout_token" => {
                    inner.tokens.lock().unwrap().push(token.clone());
                    StatusCode::OK
                }
                _ => StatusCode::BAD_REQUEST,
            }
        }
        async fn moved() -> (StatusCode, [(&'static str, &'static str); 1]) {
            (StatusCode::TEMPORARY_REDIRECT, [("location", "/bc")])
        }
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/bc", post(take))
            .route("/moved", post(moved))
            .with_state(inner.clone());
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, inner }
    }

    pub fn uri(&self) -> String {
        format!("{}/bc", self.url)
    }

    pub fn tokens(&self) -> Vec<String> {
        self.inner.tokens.lock().unwrap().clone()
    }

    /// Waits (a few seconds at most) until `n` requests arrived, taken or not.
    pub async fn wait_for_hits(&self, n: usize) {
        for _ in 0..400 {
            if self.inner.hits.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(StdDuration::from_millis(25)).await;
        }
        panic!(
            "expected {n} requests, got {}",
            self.inner.hits.load(Ordering::SeqCst)
        );
    }

    /// The tokens that arrived once `n` did, or when `limit` ran out.
    pub async fn wait_for_at_most(&self, n: usize, limit: StdDuration) -> Vec<String> {
        let until = std::time::Instant::now() + limit;
        loop {
            let got = self.tokens();
            if got.len() >= n || std::time::Instant::now() >= until {
                return got;
            }
            tokio::time::sleep(StdDuration::from_millis(25)).await;
        }
    }

    /// Waits (a few seconds at most) until `n` tokens arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..400 {
            let got = self.tokens();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(StdDuration::from_millis(25)).await;
        }
        panic!("expected {n} logout tokens, got {}", self.tokens().len());
    }
}

fn decode(part: &str) -> Map<String, Value> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Checks a logout token as a relying party must (§2.6) and returns its claims.
pub fn checked(app: &TestApp, token: &str, client_id: &str, alg: Alg) -> Map<String, Value> {
    let now = app.clock().now().unix_timestamp();
    checked_signed_since(app, token, client_id, alg, now - 5)
}

/// [`checked`], for a token signed at any time since `earliest` (a Unix time): a test whose
/// clock moves on while deliveries are retried sees tokens signed before its last move.
fn checked_signed_since(
    app: &TestApp,
    token: &str,
    client_id: &str,
    alg: Alg,
    earliest: i64,
) -> Map<String, Value> {
    let header = decode(token.split('.').next().unwrap());
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(
        header["alg"],
        alg.as_str(),
        "the client's ID-token algorithm"
    );
    let kid = header["kid"].as_str().unwrap();
    assert!(
        app.state.keys.jwks().contains(kid),
        "kid {kid} is published"
    );
    let (claims, typ) = app.state.keys.verify(token).expect("the signature holds");
    assert_eq!(typ.as_deref(), Some("logout+jwt"));
    assert_eq!(claims["iss"], app.issuer());
    assert_eq!(claims["aud"], client_id);
    let now = app.clock().now().unix_timestamp();
    let iat = claims["iat"].as_i64().unwrap();
    assert!(
        (earliest..=now).contains(&iat),
        "iat {iat} since {earliest} now {now}"
    );
    assert!(claims["exp"].as_i64().unwrap() > now);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert_eq!(
        claims["events"],
        serde_json::json!({ "http://schemas.openid.net/event/backchannel-logout": {} })
    );
    assert!(!claims.contains_key("nonce"), "a logout token has no nonce");
    claims
}

/// A client of the OP's with its logout endpoint at `uri`, as its own relying party.
async fn setup_listening(uri: String, alg: Alg) -> Setup {
    setup(ClientOpts {
        id_token_alg: alg,
        backchannel_logout_uri: Some(uri),
        ..Default::default()
    })
    .await
}

/// Signs in through the relying party and returns the ID token's claims.
async fn sign_in(s: &Setup) -> (IdClaims, String) {
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(s, &pending).await;
    let tokens = exchange(s, code, pending.verifier).await.unwrap();
    let id_token = tokens.id_token().unwrap().to_string();
    let claims = crate::oidc::verify_id_token(s, &tokens, &pending.nonce);
    (claims, id_token)
}

/// RP-initiated logout of `browser`'s session (with the member's own hint it ends at once).
async fn end_session(s: &Setup, browser: &Browser, hint: &str) {
    let mut url = url::Url::parse(&format!("{}/end-session", s.app.issuer())).unwrap();
    url.query_pairs_mut().append_pair("id_token_hint", hint);
    let page = browser.get(url.as_str()).await;
    assert!(matches!(page.status, 200 | 303), "{}", page.body);
    assert!(page.field("tx").is_none(), "no confirmation: {}", page.body);
}

#[tokio::test]
async fn discovery_advertises_back_channel_logout_with_sessions() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["backchannel_logout_supported"], true);
    assert_eq!(doc["backchannel_logout_session_supported"], true);
}

#[tokio::test]
async fn signing_out_sends_the_client_a_logout_token_with_sub_and_sid() {
    let receiver = Receiver::start().await;
    let s = setup_listening(receiver.uri(), Alg::ES256).await;
    let (id, hint) = sign_in(&s).await;
    // A client signed in from the same session but without a logout URI hears nothing.
    let quiet = s.another_client("Quiet", crate::rp::Auth::Basic).await;
    let pending = authorize(&quiet, &[]);
    let back = s.browser.get(&pending.url).await;
    assert!(back.location.unwrap().contains("code="), "single sign-on");

    end_session(&s, &s.browser, &hint).await;
    let tokens = receiver.wait_for(1).await;
    assert_eq!(tokens.len(), 1);
    let claims = checked(&s.app, &tokens[0], &s.client_id, Alg::ES256);
    assert_eq!(claims["sub"], id.subject().as_str());
    let sid = id
        .additional_claims()
        .sid
        .clone()
        .expect("the ID token has sid");
    assert_eq!(claims["sid"], sid.as_str());
    // Delivered: nothing left in the queue, and nothing queued for the quiet client.
    assert!(s.app.drained(BACKCHANNEL_QUEUE).await);
    assert_eq!(receiver.tokens().len(), 1);
    // Ending an ended session again sends nothing more.
    end_session(&s, &s.browser, &hint).await;
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(receiver.inner.hits.load(Ordering::SeqCst), 1);

    // A logout token is no ID token: as an id_token_hint it signs nobody out.
    sign_in(&s).await;
    let mut url = url::Url::parse(&format!("{}/end-session", s.app.issuer())).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", &tokens[0]);
    let page = s.browser.get(url.as_str()).await;
    assert_eq!(page.status, 400, "{}", page.body);
    let still = s.browser.get("/account").await;
    assert_eq!(still.status, 200, "the session lives on");
}

#[tokio::test]
async fn a_client_that_is_down_gets_the_logout_when_it_is_back_as_a_fresh_token() {
    let receiver = Receiver::start().await;
    receiver.inner.down.store(true, Ordering::SeqCst);
    let s = setup_listening(receiver.uri(), Alg::RS256).await;
    let (id, hint) = sign_in(&s).await;
    end_session(&s, &s.browser, &hint).await;

    // The first try fails; the job waits for its retry with the reason.
    receiver.wait_for_hits(1).await;
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(
        receiver.inner.hits.load(Ordering::SeqCst),
        1,
        "retried only after its backoff"
    );
    let waiting = s.app.pending_jobs(BACKCHANNEL_QUEUE).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].attempts, 1);

    // Down for a second try, then back.
    s.app.clock().advance(Duration::seconds(3));
    receiver.wait_for_hits(2).await;
    receiver.inner.down.store(false, Ordering::SeqCst);
    // The runner dates the retry when it records the failure, which may come after the
    // receiver saw the try: move the clock on until the retry, however dated, is due.
    let mut tokens = Vec::new();
    for _ in 0..5 {
        s.app.clock().advance(Duration::seconds(5));
        tokens = receiver
            .wait_for_at_most(1, StdDuration::from_secs(2))
            .await;
        if !tokens.is_empty() {
            break;
        }
    }
    assert_eq!(tokens.len(), 1, "delivered once the client is back");
    let claims = checked(&s.app, &tokens[0], &s.client_id, Alg::RS256);
    assert_eq!(claims["sub"], id.subject().as_str());
    assert_eq!(receiver.inner.hits.load(Ordering::SeqCst), 3);
    assert!(s.app.drained(BACKCHANNEL_QUEUE).await);
    // Operators see both outcomes: two refused, one delivered.
    let metrics = s.app.get("/metrics").await.text().await.unwrap();
    for (result, n) in [("refused", 2), ("delivered", 1)] {
        let line = format!("tobira_backchannel_logouts_total{{result=\"{result}\"}} {n}");
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn two_replicas_deliver_each_logout_exactly_once() {
    const SESSIONS: usize = 8;
    let receiver = Receiver::start().await;
    receiver.inner.slow_ms.store(150, Ordering::SeqCst);
    let s = setup_listening(receiver.uri(), Alg::RS256).await;
    let _replica = s.app.replica().await;
    let since = s.app.clock().now().unix_timestamp();
    let sids = sessions_ended(&s, SESSIONS).await;

    let tokens = receiver.wait_for(SESSIONS).await;
    // Both replicas poll every 50 ms; give a duplicate every chance to show.
    tokio::time::sleep(StdDuration::from_millis(800)).await;
    assert_eq!(receiver.inner.hits.load(Ordering::SeqCst), SESSIONS);
    assert_eq!(sids_of(&s, &tokens, since), sids, "one logout per session");
}

/// The member signs in on `n` browsers, then support ends all their sessions at once:
/// the sessions' `sid`s.
async fn sessions_ended(s: &Setup, n: usize) -> BTreeSet<String> {
    let mut sids = BTreeSet::new();
    for _ in 0..n {
        let browser = s.app.browser();
        let pending = authorize(&s.rp, &[]);
        let back = browser.sign_in(&pending.url, EMAIL, PASSWORD, false).await;
        let code = crate::oidc::code_from(s, &back, &pending);
        let tokens = exchange(s, code, pending.verifier).await.unwrap();
        let claims = crate::oidc::verify_id_token(s, &tokens, &pending.nonce);
        sids.insert(claims.additional_claims().sid.clone().unwrap());
    }
    let user = s.app.user(EMAIL).await.unwrap();
    let ended = s
        .app
        .state
        .db
        .sessions()
        .end_all(user.id, s.app.clock().now())
        .await
        .unwrap();
    assert_eq!(ended, n as u64);
    sids
}

/// The `sid` of each logout token, each checked as the client must, signed at `earliest`
/// (a Unix time) or later.
fn sids_of(s: &Setup, tokens: &[String], earliest: i64) -> BTreeSet<String> {
    tokens
        .iter()
        .map(|t| {
            checked_signed_since(&s.app, t, &s.client_id, Alg::RS256, earliest)["sid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_client_refusing_connections_gets_every_logout_once_it_listens_again() {
    const SESSIONS: usize = 3;
    // A port nothing listens on: every connection is refused (the client's server is
    // down, not answering 503).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = setup_listening(format!("http://127.0.0.1:{port}/bc"), Alg::RS256).await;
    let sids = sessions_ended(&s, SESSIONS).await;

    // Each logout is tried, refused, and tried again after its backoff, several times.
    let tried = s.app.wait_until_tried(BACKCHANNEL_QUEUE, SESSIONS, 3).await;
    assert_eq!(tried.len(), SESSIONS, "every logout waits: {tried:?}");
    assert!(tried.iter().all(|j| j.attempts >= 3), "{tried:?}");

    // The client's server comes back on its port: every logout arrives, once. The clock
    // moves on a minute at a time until each retry is due, so a token may be signed
    // minutes before the last move.
    let since = s.app.clock().now().unix_timestamp();
    let receiver = Receiver::start_on_port(port).await;
    for _ in 0..40 {
        s.app.clock().advance(Duration::minutes(1));
        let tokens = receiver
            .wait_for_at_most(SESSIONS, StdDuration::from_millis(250))
            .await;
        if tokens.len() == SESSIONS {
            break;
        }
    }
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(receiver.inner.hits.load(Ordering::SeqCst), SESSIONS);
    assert_eq!(
        sids_of(&s, &receiver.tokens(), since),
        sids,
        "one logout per session"
    );
    assert!(s.app.drained(BACKCHANNEL_QUEUE).await);
}

#[tokio::test]
async fn signing_out_other_devices_and_resetting_the_password_log_out_each_session() {
    let receiver = Receiver::start().await;
    let s = setup_listening(receiver.uri(), Alg::RS256).await;
    let (first, _) = sign_in(&s).await;
    // A second browser signs in to the client too.
    let other = s.app.browser();
    let pending = authorize(&s.rp, &[]);
    let back = other.sign_in(&pending.url, EMAIL, PASSWORD, false).await;
    let code = crate::oidc::code_from(&s, &back, &pending);
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let second = crate::oidc::verify_id_token(&s, &tokens, &pending.nonce);

    // From the first browser's devices page: sign out every other device.
    let page = s.browser.get("/account/sessions").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.field("csrf").unwrap();
    let done = s
        .browser
        .post_form("/account/sessions/end-others", &[("csrf", &csrf)])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let tokens = receiver.wait_for(1).await;
    let claims = checked(&s.app, &tokens[0], &s.client_id, Alg::RS256);
    assert_eq!(
        claims["sid"].as_str(),
        second.additional_claims().sid.as_deref()
    );

    // A password reset ends the remaining session: its logout follows.
    let helper = s.app.browser();
    crate::recovery::forgot(&helper, EMAIL).await;
    let mut mail = None;
    for _ in 0..200 {
        mail = s
            .app
            .outbox()
            .into_iter()
            .find(|m| m.subject == "【Tobira】パスワードの再設定");
        if mail.is_some() {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    let link = crate::recovery::reset_link(&s.app, &mail.expect("the reset mail"));
    let reset = crate::recovery::reset_with(
        &helper,
        &link,
        crate::recovery::NEW_PASSWORD,
        crate::recovery::NEW_PASSWORD,
    )
    .await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    let tokens = receiver.wait_for(2).await;
    let claims = checked(&s.app, &tokens[1], &s.client_id, Alg::RS256);
    assert_eq!(
        claims["sid"].as_str(),
        first.additional_claims().sid.as_deref()
    );
}

#[tokio::test]
async fn no_redirect_is_followed_no_private_address_is_reached_and_each_failure_says_why() {
    let receiver = Receiver::start().await;
    let s = setup_listening(format!("{}/moved", receiver.url), Alg::RS256).await;
    // A port nothing listens on: the client cannot be reached at all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_uri = format!(
        "http://127.0.0.1:{}/bc",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let (_, hint) = sign_in(&s).await;
    for (name, uri) in [
        ("Inside", "https://10.0.0.7/bc".to_owned()),
        ("Gone", closed_uri),
    ] {
        let (id, _) = s
            .app
            .add_client(ClientOpts {
                name,
                backchannel_logout_uri: Some(uri),
                ..Default::default()
            })
            .await;
        // Sign in to this client too, from the same session.
        let rp = crate::rp::client(
            &s.http,
            &s.app.issuer(),
            &id,
            crate::rp::Auth::None,
            crate::oidc::REDIRECT,
        )
        .await;
        let back = s.browser.get(&authorize(&rp, &[]).url).await;
        let code = crate::helpers::callback_params(&back.location.unwrap())["code"].clone();
        assert!(!code.is_empty());
    }
    // The code is enough: the grant from this session exists once it is issued.
    end_session(&s, &s.browser, &hint).await;

    let mut reasons = Vec::new();
    for _ in 0..200 {
        reasons = s
            .app
            .state
            .db
            .jobs()
            .last_errors(BACKCHANNEL_QUEUE)
            .await
            .unwrap();
        if reasons.len() == 3 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    assert_eq!(reasons.len(), 3, "every try failed and waits for a retry");
    assert!(
        receiver.tokens().is_empty(),
        "the redirect was not followed"
    );
    assert_eq!(receiver.inner.hits.load(Ordering::SeqCst), 0);
    assert!(reasons.iter().any(|r| r.contains("307")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("not a public address")),
        "{reasons:?}"
    );
    // Unreachable: the cause itself, not only reqwest's "error sending request".
    assert!(
        reasons.iter().any(|r| r.contains("Connection refused")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_slow_client_holds_up_neither_mail_nor_other_logouts() {
    let slow = Receiver::start().await;
    slow.inner.slow_ms.store(8000, Ordering::SeqCst);
    let s = setup_with(
        ClientOpts {
            backchannel_logout_uri: Some(slow.uri()),
            ..Default::default()
        },
        |c| c.backchannel.timeout_ms = 20_000,
    )
    .await;
    let (_, hint) = sign_in(&s).await;
    end_session(&s, &s.browser, &hint).await;
    // The slow client has its token in hand and keeps the runner waiting for its answer.
    slow.wait_for_hits(1).await;
    crate::recovery::forgot(&s.app.browser(), EMAIL).await;
    let mut mailed = false;
    while slow.tokens().is_empty() {
        if s.app
            .outbox()
            .iter()
            .any(|m| m.subject == "【Tobira】パスワードの再設定")
        {
            mailed = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert!(
        mailed,
        "the reset mail waited until the slow client answered"
    );
}
