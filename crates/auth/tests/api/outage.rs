//! With the ephemeral store down, pages say so kindly (503, a readable page,
//! `Retry-After`), the token endpoint keeps serving what needs no store, and readiness
//! takes the replica out of the load balancer.

use time::OffsetDateTime;
use tobira_auth::store::ephemeral::{
    Counter, Ephemeral, EphemeralError, EphemeralStore, Spent, Versioned,
};

use crate::helpers::{Browser, ClientOpts, Page, TestApp};
use crate::redis_server::OwnRedis;

#[tokio::test]
async fn pages_answer_503_and_the_token_endpoint_works_while_redis_is_down() {
    let Some(mut redis) = OwnRedis::start(false).await else {
        return;
    };
    let url = redis.url();
    let app = TestApp::spawn_with(|c| {
        c.ephemeral.url = tobira_auth::config::Secret::new(url);
    })
    .await;
    let (client_id, secret) = app
        .add_client(ClientOpts {
            client_credentials: true,
            ..Default::default()
        })
        .await;
    let authorize = format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&scope=openid"
    );
    assert_eq!(app.browser().get(&authorize).await.status, 303);
    let access: serde_json::Value = app
        .http
        .post(app.url.join("/token").unwrap())
        .basic_auth(&client_id, secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = access["access_token"].as_str().expect("an access token");

    redis.stop();

    // Whether a token was revoked is in the store: without it, no answer may say the
    // token is invalid, inactive or revoked (a 401, `active: false`, or a revocation's
    // 200 that revoked nothing), only that the check cannot be made now.
    let res = app
        .http
        .get(app.url.join("/userinfo").unwrap())
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    for endpoint in ["/introspect", "/revoke"] {
        let res = app
            .http
            .post(app.url.join(endpoint).unwrap())
            .basic_auth(&client_id, secret.as_deref())
            .form(&[("token", access)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 503, "{endpoint}");
        assert_eq!(res.headers()["retry-after"], "30", "{endpoint}");
    }

    unavailable_page(&app.browser().get(&authorize).await);
    let page = app.browser().get("/login?tx=abc").await;
    assert_eq!(page.status, 503, "{}", page.body);

    let res = app
        .http
        .post(app.url.join("/token").unwrap())
        .basic_auth(&client_id, secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["ephemeral"], "unavailable");
}

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const PASSWORD: &str = "correct horse battery staple 7";

fn authorize_url(client_id: &str) -> String {
    format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&scope=openid%20offline_access&state=s&nonce=n&code_challenge={CHALLENGE}&code_challenge_method=S256"
    )
}

/// The relying party's redemption of `code` at the token endpoint.
async fn redeem(app: &TestApp, client_id: &str, secret: &str, code: &str) -> reqwest::Response {
    app.http
        .post(app.url.join("/token").unwrap())
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "http://127.0.0.1:9/callback"),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap()
}

/// A new browser opening the authorization request, and the page it lands on (the
/// sign-in form, or the store's 503 page).
async fn open_authorize(app: &TestApp, client_id: &str) -> (Browser, Page) {
    let browser = app.browser();
    let page = browser
        .follow(browser.get(&authorize_url(client_id)).await)
        .await;
    (browser, page)
}

/// The code a sign-in of `email` in a new browser brings back to the client.
async fn code_of(app: &TestApp, client_id: &str, email: &str) -> String {
    let (browser, page) = open_authorize(app, client_id).await;
    let back = browser
        .follow(browser.post_login(&page, email, PASSWORD).await)
        .await;
    crate::helpers::callback_params(back.location.as_deref().expect("to the client"))
        .remove("code")
        .expect("a code")
}

/// A code flow as a browser and its relying party run it, any step of which may meet the
/// outage; every answer's status in order, and the browser (with its cookies).
async fn sign_in_once(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    email: &str,
) -> (Vec<(&'static str, u16)>, Browser) {
    let mut seen = Vec::new();
    let (browser, page) = open_authorize(app, client_id).await;
    seen.push(("authorize", page.status));
    if page.status != 200 {
        return (seen, browser);
    }
    let posted = browser.post_login(&page, email, PASSWORD).await;
    seen.push(("login", posted.status));
    if posted.status != 303 {
        return (seen, browser);
    }
    let back = browser.follow(posted).await;
    seen.push(("continue", back.status));
    let Some(code) = back
        .location
        .as_deref()
        .filter(|l| l.starts_with("http://127.0.0.1:9/callback"))
        .and_then(|l| crate::helpers::callback_params(l).remove("code"))
    else {
        return (seen, browser);
    };
    let res = redeem(app, client_id, secret, &code).await;
    seen.push(("code exchange", res.status().as_u16()));
    (seen, browser)
}

/// Redis killed while members sign in and a client takes tokens, then started again
/// (empty, as after a crash). Meanwhile every answer is a success or a 503 (never a 500),
/// client_credentials and refresh keep working and `/readyz` says the store is gone;
/// within 5 seconds of Redis returning, sign-ins work again; and no sign-in is left half
/// done: every live session is held by the cookie of a browser that signed in.
#[tokio::test]
async fn redis_killed_under_load_and_started_again() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    let Some(mut redis) = OwnRedis::start(false).await else {
        return;
    };
    let url = redis.url();
    let app = Arc::new(
        TestApp::spawn_with(|c| {
            c.ephemeral.url = tobira_auth::config::Secret::new(url);
        })
        .await,
    );
    let (client_id, secret) = app
        .add_client(ClientOpts {
            refresh: true,
            client_credentials: true,
            ..Default::default()
        })
        .await;
    let secret = secret.expect("a confidential client");
    let members: Vec<String> = (0..3).map(|i| format!("member{i}@example.jp")).collect();
    let mut users = Vec::new();
    for email in &members {
        users.push(app.add_user(email, PASSWORD).await);
    }
    // A refresh token from before the outage.
    let (seen, _) = sign_in_once(&app, &client_id, &secret, &members[0]).await;
    assert_eq!(seen.last(), Some(&("code exchange", 200)), "{seen:?}");
    let refresh = refresh_token_of(&app, &client_id, &secret, &members[0]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for email in members.clone() {
        let (app, stop, client_id, secret) =
            (app.clone(), stop.clone(), client_id.clone(), secret.clone());
        load.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut browsers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (statuses, browser) = sign_in_once(&app, &client_id, &secret, &email).await;
                seen.extend(statuses);
                browsers.push(browser);
            }
            (seen, browsers)
        }));
    }
    let tokens = client_credentials_until(&app, &stop, &client_id, &secret);

    tokio::time::sleep(Duration::from_millis(400)).await;
    redis.stop();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Down: readiness says so; what needs no store still works.
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(
        app.client_credentials_status(&client_id, &secret).await,
        200
    );
    let rotated = app
        .http
        .post(app.url.join("/token").unwrap())
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200, "{}", rotated.text().await.unwrap());

    redis.restart().await;
    let back = Instant::now();
    loop {
        let ready = app.get("/readyz").await.status() == 200;
        // members[0], whose sessions are not counted below (its browsers are dropped).
        let (seen, _) = sign_in_once(&app, &client_id, &secret, &members[0]).await;
        if ready && seen.last() == Some(&("code exchange", 200)) {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "not back 5 s after Redis returned: ready {ready}, {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut browsers = Vec::new();
    let mut statuses = Vec::new();
    for task in load {
        let (seen, held) = task.await.unwrap();
        statuses.extend(seen);
        browsers.extend(held);
    }
    let token_statuses = tokens.await.unwrap();
    assert!(
        token_statuses.iter().all(|s| *s == 200),
        "client_credentials needs no store: {token_statuses:?}"
    );
    for (step, status) in &statuses {
        // A page's 503 during the outage; a code lost with the store is invalid_grant.
        let expected = match *step {
            "code exchange" => [200, 400, 503].contains(status),
            _ => [200, 303, 503].contains(status),
        };
        assert!(expected, "{step}: {status} in {statuses:?}");
    }
    assert!(
        statuses.iter().any(|(_, s)| *s == 503),
        "the outage was met: {statuses:?}"
    );

    // No session without its cookie: every live session of these members is the one a
    // browser holds.
    let now = app.state.clock.now();
    let mut held = std::collections::HashSet::new();
    for browser in &browsers {
        let Some(secret) = browser.cookie(tobira_auth::web::cookies::SESSION) else {
            continue;
        };
        if let Some(session) = app
            .state
            .db
            .sessions()
            .find_live(&secret, now)
            .await
            .unwrap()
        {
            held.insert(session.id);
        }
    }
    for user in &users[1..] {
        for session in app
            .state
            .db
            .sessions()
            .list_live(user.id, now, app.state.sessions.idle)
            .await
            .unwrap()
        {
            assert!(
                held.contains(&session.id),
                "a session no browser holds (of {} sessions held)",
                held.len()
            );
        }
    }
}

/// An ephemeral store that refuses every write to a key containing `armed` (while set),
/// as a store that fails between two steps of one request (down, unless the test names
/// another error); and that can hold one request at its `swap` of a key, so that a test
/// acts while the request is in the middle.
#[derive(Debug)]
pub(crate) struct FailingWrites {
    inner: Ephemeral,
    armed: std::sync::Mutex<Option<(String, Failure)>>,
    held: std::sync::Mutex<Option<(String, std::sync::Arc<Hold>)>>,
}

/// The error a write fails with while armed.
type Failure = fn() -> EphemeralError;

/// A request held at a store call: `reached` when it arrives, going on at `release`.
#[derive(Debug, Default)]
pub(crate) struct Hold {
    reached: tokio::sync::Notify,
    go: tokio::sync::Notify,
}

impl Hold {
    /// Waits until the held request is at the store call (5 s at most).
    pub(crate) async fn reached(&self) {
        tokio::time::timeout(std::time::Duration::from_secs(5), self.reached.notified())
            .await
            .expect("the request reached the held store call");
    }

    /// Lets the held request go on.
    pub(crate) fn release(&self) {
        self.go.notify_one();
    }
}

impl FailingWrites {
    /// Awaits `request` while writes to keys containing `part` fail as a store that is
    /// down, then lets them pass.
    pub(crate) async fn during<T>(&self, part: &str, request: impl Future<Output = T>) -> T {
        let down = || EphemeralError::Unavailable("failing on cue".to_owned());
        self.during_failing_with(part, down, request).await
    }

    /// `during`, the writes failing with `error`'s error.
    pub(crate) async fn during_failing_with<T>(
        &self,
        part: &str,
        error: Failure,
        request: impl Future<Output = T>,
    ) -> T {
        *self.armed.lock().unwrap() = Some((part.to_owned(), error));
        let out = request.await;
        *self.armed.lock().unwrap() = None;
        out
    }

    /// Holds the next `swap` of a key containing `part` until released.
    pub(crate) fn hold_swap(&self, part: &str) -> std::sync::Arc<Hold> {
        let hold = std::sync::Arc::new(Hold::default());
        *self.held.lock().unwrap() = Some((part.to_owned(), hold.clone()));
        hold
    }

    fn check(&self, key: &str) -> Result<(), EphemeralError> {
        match &*self.armed.lock().unwrap() {
            Some((part, error)) if key.contains(part.as_str()) => Err(error()),
            _ => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl EphemeralStore for FailingWrites {
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        until: OffsetDateTime,
    ) -> Result<(), EphemeralError> {
        self.check(key)?;
        self.inner.put(key, value, until).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        self.inner.get(key).await
    }
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        self.check(key)?;
        self.inner.take(key).await
    }
    async fn put_bounded(
        &self,
        key: &str,
        value: &[u8],
        until: OffsetDateTime,
    ) -> Result<(), EphemeralError> {
        self.check(key)?;
        self.inner.put_bounded(key, value, until).await
    }
    async fn spend(
        &self,
        key: &str,
        spent_key: &str,
        until: OffsetDateTime,
    ) -> Result<Spent, EphemeralError> {
        self.check(key)?;
        self.inner.spend(key, spent_key, until).await
    }
    async fn delete(&self, key: &str) -> Result<(), EphemeralError> {
        self.check(key)?;
        self.inner.delete(key).await
    }
    async fn get_versioned(&self, key: &str) -> Result<Versioned, EphemeralError> {
        self.inner.get_versioned(key).await
    }
    async fn swap(
        &self,
        key: &str,
        read: Option<&[u8]>,
        value: &[u8],
        until: OffsetDateTime,
    ) -> Result<bool, EphemeralError> {
        self.check(key)?;
        let held = {
            let mut held = self.held.lock().unwrap();
            match &*held {
                Some((part, _)) if key.contains(part.as_str()) => held.take().map(|(_, h)| h),
                _ => None,
            }
        };
        if let Some(hold) = held {
            hold.reached.notify_one();
            hold.go.notified().await;
        }
        self.inner.swap(key, read, value, until).await
    }
    async fn incr(&self, key: &str, window: time::Duration) -> Result<Counter, EphemeralError> {
        self.check(key)?;
        self.inner.incr(key, window).await
    }
    async fn ping(&self) -> Result<(), EphemeralError> {
        self.inner.ping().await
    }
}

/// `page` is the page of a store that is down: 503, readable, and when to try again.
pub(crate) fn unavailable_page(page: &Page) {
    assert_eq!(page.status, 503, "{:?} {}", page.location, page.body);
    assert_eq!(
        page.headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("30")
    );
    assert!(
        page.body.contains("一時的に利用できません"),
        "{}",
        page.body
    );
}

/// An app whose ephemeral store fails (or holds a request) on cue.
pub(crate) async fn app_with_failing_store() -> (TestApp, std::sync::Arc<FailingWrites>) {
    app_with_failing_store_and(|_| {}).await
}

/// `app_with_failing_store` with configuration changes.
pub(crate) async fn app_with_failing_store_and(
    configure: impl FnOnce(&mut tobira_auth::Config),
) -> (TestApp, std::sync::Arc<FailingWrites>) {
    let slot = std::sync::Arc::new(std::sync::OnceLock::new());
    let made = slot.clone();
    let app = TestApp::spawn_wrapping(configure, move |inner| {
        let store = std::sync::Arc::new(FailingWrites {
            inner,
            armed: std::sync::Mutex::new(None),
            held: std::sync::Mutex::new(None),
        });
        made.set(store.clone()).unwrap();
        store
    })
    .await;
    let failing = slot.get().expect("the app opened its store").clone();
    (app, failing)
}

/// The ephemeral store fails after the password was checked and the session made, when
/// the parked request is carried on. The browser gets a 503 page with its session cookie
/// (before, the session was left without its cookie), and once the store is back the
/// same request signs in without the password.
#[tokio::test]
async fn a_sign_in_cut_after_its_session_leaves_the_browser_its_session() {
    let (app, failing) = app_with_failing_store().await;
    let (client_id, _) = app.add_client(ClientOpts::default()).await;
    let user = app.add_user("hanako@example.jp", PASSWORD).await;
    let (browser, login) = open_authorize(&app, &client_id).await;
    assert_eq!(login.status, 200, "{}", login.body);

    // The parked request (named by its tx) can be read, not written.
    let tx = login.field("tx").expect("a tx");
    let posted = failing
        .during(
            &tx,
            browser.post_login(&login, "hanako@example.jp", PASSWORD),
        )
        .await;
    assert_eq!(posted.status, 503, "{}", posted.body);

    let now = app.state.clock.now();
    let live = app
        .state
        .db
        .sessions()
        .list_live(user.id, now, app.state.sessions.idle)
        .await
        .unwrap();
    assert_eq!(live.len(), 1, "the sign-in made its session");
    let cookie = browser
        .cookie(tobira_auth::web::cookies::SESSION)
        .expect("the browser got the session's cookie with the 503");
    let held = app
        .state
        .db
        .sessions()
        .find_live(&cookie, now)
        .await
        .unwrap();
    assert_eq!(held.map(|s| s.id), Some(live[0].id));

    // The store is back: the same request signs in without the form.
    let back = browser
        .follow(browser.get(&authorize_url(&client_id)).await)
        .await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert!(
        back.location
            .as_deref()
            .is_some_and(|l| l.starts_with("http://127.0.0.1:9/callback") && l.contains("code=")),
        "{:?}",
        back.location
    );
}

/// The store fails when the code is kept, after the grant was made: a 503 (not a 500),
/// and the grant is taken back (no app left connected that never got a token).
#[tokio::test]
async fn a_code_the_store_cannot_keep_is_a_503_and_takes_its_grant_back() {
    let (app, failing) = app_with_failing_store().await;
    let (client_id, _) = app.add_client(ClientOpts::default()).await;
    let user = app.add_user("hanako@example.jp", PASSWORD).await;
    let (browser, login) = open_authorize(&app, &client_id).await;
    let posted = browser
        .post_login(&login, "hanako@example.jp", PASSWORD)
        .await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    // Codes are kept under `code:<hash>`.
    let answer = failing.during("code:", browser.follow(posted)).await;
    assert_eq!(answer.status, 503, "{:?} {}", answer.location, answer.body);
    // A grant made within the hour counts as a connected app until revoked.
    let connected = app
        .state
        .db
        .apps()
        .connected(user.id, app.state.clock.now(), time::Duration::hours(1))
        .await
        .unwrap();
    assert!(
        connected.is_empty(),
        "a grant without its code is taken back: {connected:?}"
    );
}

/// The store fails while a mailed code of the second step is counted: a 503 page saying
/// to try again (never an empty answer), and the pending sign-in waits for the next try.
#[tokio::test]
async fn a_second_step_send_the_store_cannot_count_is_a_503_and_works_after() {
    let (app, failing) = app_with_failing_store().await;
    let user = app.add_user("hanako@example.jp", PASSWORD).await;
    crate::two_step::enrol_totp(&app, &user).await;
    crate::two_step::enrol_email(&app, &user).await;
    let browser = app.browser();
    let login = crate::console::sent_to_sign_in(&browser, "/account").await;
    let posted = browser
        .post_login(&login, "hanako@example.jp", PASSWORD)
        .await;
    let page = browser
        .get(posted.location.as_deref().expect("to the second step"))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let refused = failing
        .during(
            "second_step_sends:",
            crate::two_step::send_email_code(&browser, &page),
        )
        .await;
    unavailable_page(&refused);
    let sent = crate::two_step::send_email_code(&browser, &page).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(
        sent.body.contains("確認コードを送信しました"),
        "{}",
        sent.body
    );
}

/// The store fails when a code is redeemed: the token endpoint answers 503
/// `temporarily_unavailable` with `Retry-After` (it was a 500), and the code, not spent,
/// works once the store is back.
#[tokio::test]
async fn a_code_redeemed_while_the_store_fails_is_a_503_and_still_works_after() {
    let (app, failing) = app_with_failing_store().await;
    let (client_id, secret) = app.add_client(ClientOpts::default()).await;
    let secret = secret.expect("a confidential client");
    app.add_user("hanako@example.jp", PASSWORD).await;
    let code = code_of(&app, &client_id, "hanako@example.jp").await;
    let res = failing
        .during("code:", redeem(&app, &client_id, &secret, &code))
        .await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "30");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    let res = redeem(&app, &client_id, &secret, &code).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

/// A client taking tokens with client_credentials until `stop`: every answer's status.
fn client_credentials_until(
    app: &std::sync::Arc<TestApp>,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    client_id: &str,
    secret: &str,
) -> tokio::task::JoinHandle<Vec<u16>> {
    let (app, stop) = (app.clone(), stop.clone());
    let (client_id, secret) = (client_id.to_owned(), secret.to_owned());
    tokio::spawn(async move {
        let mut statuses = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            statuses.push(app.client_credentials_status(&client_id, &secret).await);
        }
        statuses
    })
}

/// The code flow up to the token response (which `sign_in_once` does not keep): a
/// refresh token of `email` for `client_id`.
async fn refresh_token_of(app: &TestApp, client_id: &str, secret: &str, email: &str) -> String {
    let code = code_of(app, client_id, email).await;
    let tokens: serde_json::Value = redeem(app, client_id, secret, &code)
        .await
        .json()
        .await
        .unwrap();
    tokens["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}

/// One refresh: the status and, on success, the next token of the chain.
async fn refresh_once(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    token: &str,
) -> (u16, Option<String>) {
    let res = app
        .http
        .post(app.url.join("/token").unwrap())
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    (
        status,
        body["refresh_token"].as_str().map(ToOwned::to_owned),
    )
}

/// Every PostgreSQL connection of the app killed (`pg_terminate_backend`) again and again
/// while refresh chains rotate and clients take tokens. Requests that meet a dead
/// connection may fail; the next ones succeed; and a rotation cut in the middle writes
/// nothing: a chain whose last rotation failed still holds a working token.
#[tokio::test]
async fn postgres_connections_killed_under_load() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use sea_orm::ConnectionTrait;

    let app = Arc::new(TestApp::spawn().await);
    if app.state.db.backend() != sea_orm::DbBackend::Postgres {
        assert!(
            !crate::helpers::require_services(),
            "TEST_REQUIRE_SERVICES=1 but the app runs on SQLite"
        );
        eprintln!("skipping: needs PostgreSQL (TEST_DATABASE_URL)");
        return;
    }
    let (client_id, secret) = app
        .add_client(ClientOpts {
            refresh: true,
            client_credentials: true,
            ..Default::default()
        })
        .await;
    let secret = secret.expect("a confidential client");
    app.add_user("hanako@example.jp", PASSWORD).await;
    let mut chains = Vec::new();
    for _ in 0..4 {
        chains.push(refresh_token_of(&app, &client_id, &secret, "hanako@example.jp").await);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut rotating = Vec::new();
    for first in chains {
        let (app, stop, client_id, secret) =
            (app.clone(), stop.clone(), client_id.clone(), secret.clone());
        rotating.push(tokio::spawn(async move {
            let mut token = first;
            let mut failures = 0;
            while !stop.load(Ordering::Relaxed) {
                match refresh_once(&app, &client_id, &secret, &token).await {
                    (200, Some(next)) => token = next,
                    // The connection died during COMMIT, after PostgreSQL made it
                    // durable: the answer was an error, yet the token was spent (the
                    // one case where a client cannot know; reuse then ends the chain).
                    (400, _) if failures > 0 => return (None, failures),
                    (status, _) => {
                        assert!(status >= 500, "a refusal, not a fault: {status}");
                        failures += 1;
                    }
                }
            }
            (Some(token), failures)
        }));
    }
    let tokens = client_credentials_until(&app, &stop, &client_id, &secret);

    let killer = sea_orm::Database::connect(app.state.config.database.url.expose())
        .await
        .expect("a connection of the test's own");
    let mut killed = 0_i64;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let row = killer
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT COUNT(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    .to_owned(),
            ))
            .await
            .expect("terminate the app's connections")
            .expect("a count");
        killed += row.try_get::<i64>("", "n").expect("a number");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = killer.close().await;
    assert!(killed > 0, "no connection was killed");

    let statuses = tokens.await.unwrap();
    assert!(statuses.contains(&200), "{statuses:?}");
    // After the faults: every chain goes on from the token it holds, and a client
    // gets tokens, at the first try.
    let mut going_on = 0;
    for task in rotating {
        let (Some(token), failures) = task.await.unwrap() else {
            continue;
        };
        going_on += 1;
        let (status, next) = refresh_once(&app, &client_id, &secret, &token).await;
        assert_eq!(
            status, 200,
            "a chain after {failures} failed rotations lost its token"
        );
        assert!(next.is_some());
    }
    assert!(going_on >= 3, "only {going_on} of 4 chains survived");
    assert_eq!(
        app.client_credentials_status(&client_id, &secret).await,
        200
    );
}
