//! Back-channel logout at the marketplace (OpenID Connect Back-Channel Logout 1.0): a
//! logout token signed with the OP's own keys ends exactly the sessions it names, for
//! every tab, and a token that breaks any rule of §2.6 gets a 400 that changes nothing.

use sea_orm::sea_query::value::prelude::serde_json::{self, Value, json};
use sea_orm::{ConnectionTrait, Statement};
use tobira_auth::crypto::{b64url, b64url_decode, random_token};
use tobira_auth::keys::{Alg, KeyRing};

use crate::world::time::Duration;
use crate::world::*;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The OP as the tests play it: its own signing keys, its issuer, and the marketplace's
/// client_id, to send logout tokens with chosen claims.
struct Op {
    keys: KeyRing,
    issuer: String,
    client_id: String,
}

impl Op {
    async fn of(w: &World) -> Self {
        // The client_id the marketplace sends members to the OP with.
        let login = get(&browser(), &format!("{}/login", w.mp)).await;
        let authorize = url::Url::parse(&login.location.unwrap()).unwrap();
        let client_id = authorize
            .query_pairs()
            .find(|(k, _)| k == "client_id")
            .unwrap()
            .1
            .into_owned();
        Self {
            keys: w.op_keys().await,
            issuer: w.op.clone(),
            client_id,
        }
    }

    /// A valid claim set, issued now by the marketplace's clock, with a fresh `jti`.
    fn claims(&self, w: &World, sub: Option<&str>, sid: Option<&str>) -> Value {
        let now = w.mp_clock.now().unix_timestamp();
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 120,
            "jti": random_token(&mut rand::rng(), 16),
            "events": { EVENT: {} },
        });
        if let Some(sub) = sub {
            claims["sub"] = json!(sub);
        }
        if let Some(sid) = sid {
            claims["sid"] = json!(sid);
        }
        claims
    }

    /// Signed as the OP signs logout tokens: RS256 (the client's ID token algorithm),
    /// `typ: logout+jwt`, the active key's `kid`.
    fn sign(&self, claims: &Value) -> String {
        self.keys.sign(Alg::RS256, "logout+jwt", claims).unwrap()
    }
}

/// A token's three parts, the first two decoded.
fn split(token: &str) -> (Value, Value, String) {
    let parts: Vec<&str> = token.split('.').collect();
    let json = |p: &str| serde_json::from_slice(&b64url_decode(p).unwrap()).unwrap();
    (json(parts[0]), json(parts[1]), parts[2].to_owned())
}

fn join(header: &Value, payload: &Value, signature: &str) -> String {
    let part = |v: &Value| b64url(v.to_string().as_bytes());
    format!("{}.{}.{signature}", part(header), part(payload))
}

/// Signing keys the OP never published (a ring of their own, under another master key).
async fn foreign_keys() -> (KeyRing, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = tobira_auth::Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let db = tobira_auth::startup::open_db(&config).await.unwrap();
    let master = tobira_auth::keys::MasterKey::from_bytes([7; 32]);
    let keys = KeyRing::load_or_init(
        &db,
        &master,
        &tobira_auth::Clock::system(),
        tobira_auth::keys::KeyPolicy::from_config(&config),
    )
    .await
    .unwrap();
    (keys, dir)
}

struct Answer {
    status: u16,
    cache_control: Option<String>,
    allow: Option<String>,
    body: String,
}

async fn answer(req: reqwest::RequestBuilder) -> Answer {
    let res = req.send().await.unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (cache_control, allow) = (header("cache-control"), header("allow"));
    Answer {
        status: res.status().as_u16(),
        cache_control,
        allow,
        body: res.text().await.unwrap(),
    }
}

/// What the OP does: POSTs the token as a form, with no cookie and no CSRF token.
async fn send(w: &World, token: &str) -> Answer {
    answer(
        reqwest::Client::new()
            .post(format!("{}/backchannel-logout", w.mp))
            .form(&[("logout_token", token)]),
    )
    .await
}

fn assert_accepted(a: &Answer) {
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.cache_control.as_deref(), Some("no-store"));
    assert_eq!(a.body, "");
}

/// A 400 with `Cache-Control: no-store` and a JSON `invalid_request` whose description
/// says `why`.
fn assert_refused(a: &Answer, why: &str) {
    assert_eq!(a.status, 400, "{why}: {}", a.body);
    assert_eq!(a.cache_control.as_deref(), Some("no-store"), "{why}");
    let error: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(error["error"], "invalid_request", "{why}: {error}");
    let description = error["error_description"].as_str().unwrap();
    assert!(description.contains(why), "{why}: {description}");
}

/// The marketplace's sessions: the OP's `sid` each keeps, and its ID token.
async fn sessions(w: &World) -> Vec<(Option<String>, String)> {
    let db = w.mp_db().await;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT op_sid, id_token FROM mp_sessions ORDER BY created_at",
        ))
        .await
        .unwrap();
    let sessions = rows
        .iter()
        .map(|r| {
            (
                r.try_get_by_index::<Option<String>>(0).unwrap(),
                r.try_get_by_index::<String>(1).unwrap(),
            )
        })
        .collect();
    db.close().await.unwrap();
    sessions
}

/// Signs in in a browser of its own; returns the browser and the OP's `sid` of the
/// session it started, checked against the ID token the marketplace received.
async fn signed_in(w: &World, email: &str) -> (reqwest::Client, String) {
    let before = sessions(w).await;
    let b = browser();
    assert!(!signed_out(&sign_in(w, &b, email).await));
    let (op_sid, id_token) = sessions(w)
        .await
        .into_iter()
        .find(|s| !before.contains(s))
        .unwrap();
    let op_sid = op_sid.expect("the session keeps the OP's sid");
    assert_eq!(split(&id_token).1["sid"], json!(op_sid));
    (b, op_sid)
}

async fn is_signed_in(w: &World, b: &reqwest::Client) -> bool {
    let page = get(b, &format!("{}/mypage", w.mp)).await;
    assert_eq!(page.status, 200);
    !signed_out(&page)
}

#[tokio::test]
async fn a_logout_token_naming_an_op_session_ends_only_the_sessions_started_from_it() {
    let w = world().await;
    let op = Op::of(&w).await;
    let hanako = w.sub_of(HANAKO).to_owned();
    // 花子 on two devices (two OP sessions), 太郎 on a third.
    let (phone, phone_sid) = signed_in(&w, HANAKO).await;
    let (laptop, laptop_sid) = signed_in(&w, HANAKO).await;
    let (taro, taro_sid) = signed_in(&w, TARO).await;
    assert_ne!(phone_sid, laptop_sid);

    let token = op.sign(&op.claims(&w, Some(&hanako), Some(&phone_sid)));
    assert_accepted(&send(&w, &token).await);
    assert!(!is_signed_in(&w, &phone).await, "the phone's session ended");
    assert!(
        is_signed_in(&w, &laptop).await,
        "her other OP session stays"
    );
    assert!(is_signed_in(&w, &taro).await);

    // `sid` with someone else's `sub` names nothing: both must match.
    let token = op.sign(&op.claims(&w, Some(&hanako), Some(&taro_sid)));
    assert_accepted(&send(&w, &token).await);
    assert!(is_signed_in(&w, &taro).await);

    // `sid` alone is enough.
    let token = op.sign(&op.claims(&w, None, Some(&laptop_sid)));
    assert_accepted(&send(&w, &token).await);
    assert!(!is_signed_in(&w, &laptop).await);
    assert!(is_signed_in(&w, &taro).await);
    assert_eq!(w.rows("mp_sessions").await, 1);
}

#[tokio::test]
async fn signing_out_at_the_op_ends_the_marketplace_session_through_the_back_channel() {
    let w = world().await;
    let (phone, _) = signed_in(&w, HANAKO).await;
    let (laptop, _) = signed_in(&w, HANAKO).await;
    // The OP's own sign-out page, not the marketplace's: only the OP's logout token can
    // tell the marketplace (the job runner delivers it in the background).
    sign_out_at_op(&w, &phone).await;
    let mut waited = 0;
    while w.rows("mp_sessions").await == 2 {
        assert!(waited < 150, "no back-channel logout arrived");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    assert!(!is_signed_in(&w, &phone).await);
    assert!(
        is_signed_in(&w, &laptop).await,
        "her other OP session stays"
    );
    assert_eq!(w.rows("mp_logout_tokens").await, 1);
}

#[tokio::test]
async fn a_logout_token_naming_only_the_member_ends_every_session_of_hers_in_every_tab() {
    let w = world().await;
    let op = Op::of(&w).await;
    let (phone, _) = signed_in(&w, HANAKO).await;
    let (laptop, _) = signed_in(&w, HANAKO).await;
    let (taro, _) = signed_in(&w, TARO).await;
    // Tokens about nobody the marketplace knows are valid, and end nothing.
    for (sub, sid) in [(Some("no-such-sub"), None), (None, Some("no-such-sid"))] {
        assert_accepted(&send(&w, &op.sign(&op.claims(&w, sub, sid))).await);
    }
    assert_eq!(w.rows("mp_sessions").await, 3);

    let token = op.sign(&op.claims(&w, Some(w.sub_of(HANAKO)), None));
    assert_accepted(&send(&w, &token).await);
    // Every tab of either device is signed out on its next request.
    for b in [&phone, &phone, &laptop] {
        assert!(!is_signed_in(&w, b).await);
    }
    assert!(is_signed_in(&w, &taro).await);
    assert_eq!(w.rows("mp_sessions").await, 1);
}

#[tokio::test]
async fn tokens_signed_with_any_of_the_ops_algorithms_are_accepted_but_never_across_keys() {
    let w = world().await;
    let op = Op::of(&w).await;
    let (b, _) = signed_in(&w, HANAKO).await;
    let sub = w.sub_of(TARO).to_owned();
    for alg in [Alg::ES256, Alg::EdDSA, Alg::RS256] {
        let token = op
            .keys
            .sign(alg, "logout+jwt", &op.claims(&w, Some(&sub), None))
            .unwrap();
        assert_accepted(&send(&w, &token).await);
    }
    // The ES256 key's kid, claiming RS256: the key is not for that algorithm.
    let es256 = op
        .keys
        .sign(Alg::ES256, "logout+jwt", &op.claims(&w, Some(&sub), None))
        .unwrap();
    let (mut header, payload, signature) = split(&es256);
    header["alg"] = json!("RS256");
    assert_refused(
        &send(&w, &join(&header, &payload, &signature)).await,
        "publishes no key",
    );
    assert!(is_signed_in(&w, &b).await);
}

#[tokio::test]
async fn every_refused_logout_token_is_a_400_that_changes_nothing() {
    let w = world().await;
    let op = Op::of(&w).await;
    let (b, sid) = signed_in(&w, HANAKO).await;
    let sub = w.sub_of(HANAKO).to_owned();
    // Each case would end 花子's session, were it accepted.
    let valid = || op.claims(&w, Some(&sub), Some(&sid));
    let with = |changes: &[(&str, Option<Value>)]| {
        let mut claims = valid();
        for (k, v) in changes {
            match v {
                Some(v) => claims[*k] = v.clone(),
                None => {
                    claims.as_object_mut().unwrap().remove(*k);
                }
            }
        }
        op.sign(&claims)
    };
    let now = w.mp_clock.now().unix_timestamp();
    let (foreign, _dir) = foreign_keys().await;
    let genuine = op.sign(&valid());
    let (header, payload, signature) = split(&genuine);

    let mut cases: Vec<(&str, String, &str)> = Vec::new();
    // Signed by a key the OP never published, under the OP's kid…
    let forged = foreign.sign(Alg::RS256, "logout+jwt", &payload).unwrap();
    let (_, _, forged_signature) = split(&forged);
    cases.push((
        "another key, the OP's kid",
        join(&header, &payload, &forged_signature),
        "signature does not verify",
    ));
    // …or under its own kid (the marketplace looks the OP's keys up once more, finds
    // no such key, and refuses).
    cases.push(("another key", forged, "publishes no key"));
    let mut tampered = payload.clone();
    tampered["sub"] = json!(w.sub_of(TARO));
    cases.push((
        "a changed payload",
        join(&header, &tampered, &signature),
        "signature does not verify",
    ));
    let mut none = header.clone();
    none["alg"] = json!("none");
    cases.push(("alg none", join(&none, &payload, ""), "unsigned (alg none)"));
    let mut hmac = header.clone();
    hmac["alg"] = json!("HS256");
    cases.push(("HMAC", join(&hmac, &payload, &signature), "shared-secret"));
    for typ in ["JWT", "at+jwt"] {
        let token = op.keys.sign(Alg::RS256, typ, &valid()).unwrap();
        cases.push(("an ID token's typ", token, "typ must be logout+jwt"));
    }
    let mut untyped = header.clone();
    untyped.as_object_mut().unwrap().remove("typ");
    cases.push((
        "no typ",
        join(&untyped, &payload, &signature),
        "typ must be logout+jwt",
    ));
    let other_op = format!("{}/", w.op);
    cases.push((
        "another issuer",
        with(&[("iss", Some(json!(other_op)))]),
        "iss is not",
    ));
    cases.push((
        "another audience",
        with(&[("aud", Some(json!(["another-client"])))]),
        "aud does not name this client",
    ));
    cases.push((
        "iat six minutes ago",
        with(&[("iat", Some(json!(now - 360)))]),
        "issued too long ago",
    ));
    cases.push((
        "iat two minutes ahead",
        with(&[
            ("iat", Some(json!(now + 120))),
            ("exp", Some(json!(now + 240))),
        ]),
        "issued in the future",
    ));
    cases.push((
        "expired",
        with(&[
            ("iat", Some(json!(now - 200))),
            ("exp", Some(json!(now - 61))),
        ]),
        "has expired",
    ));
    cases.push(("no exp", with(&[("exp", None)]), "exp is missing"));
    cases.push(("no events", with(&[("events", None)]), "events must hold"));
    cases.push((
        "another event",
        with(&[("events", Some(json!({ "urn:example:other": {} })))]),
        "events must hold",
    ));
    cases.push((
        "the event not an object",
        with(&[("events", Some(json!({ EVENT: true })))]),
        "events must hold",
    ));
    cases.push((
        "a nonce",
        with(&[("nonce", Some(json!("n-0S6_WzA2Mj")))]),
        "nonce",
    ));
    cases.push((
        "neither sid nor sub",
        with(&[("sid", None), ("sub", None)]),
        "neither sub nor sid",
    ));
    cases.push(("no jti", with(&[("jti", None)]), "has no jti"));
    cases.push(("not a JWT", "not-a-jwt".to_owned(), "not a compact JWS"));
    cases.push((
        "five parts (a JWE)",
        format!("{genuine}.e.f"),
        "not a compact JWS",
    ));
    cases.push((
        "a payload that is not JSON",
        format!(
            "{}.{}.{signature}",
            genuine.split('.').next().unwrap(),
            b64url(b"{")
        ),
        "payload is not",
    ));
    for (what, token, why) in &cases {
        let a = send(&w, token).await;
        assert_refused(&a, why);
        assert!(a.body.contains("error_description"), "{what}");
    }

    // Malformed requests.
    let url = format!("{}/backchannel-logout", w.mp);
    let http = reqwest::Client::new();
    let form = |body: String| {
        http.post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let requests = [
        (form(String::new()), "logout_token is missing"),
        (form("logout_token=".to_owned()), "logout_token is missing"),
        (form("token=x".to_owned()), "logout_token is missing"),
        (
            form(format!("logout_token={genuine}&logout_token={genuine}")),
            "more than once",
        ),
        (
            http.post(&url)
                .header("content-type", "application/json")
                .body(json!({ "logout_token": genuine }).to_string()),
            "application/x-www-form-urlencoded",
        ),
        (
            form(format!(
                "logout_token={genuine}&pad={}",
                "x".repeat(17 * 1024)
            )),
            "larger than 16 KiB",
        ),
        (
            http.post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(b"logout_token=\xff\xfe".to_vec()),
            "UTF-8",
        ),
    ];
    for (req, why) in requests {
        assert_refused(&answer(req).await, why);
    }
    let get = answer(http.get(format!("{url}?logout_token={genuine}"))).await;
    assert_eq!(get.status, 405, "{}", get.body);
    assert_eq!(get.allow.as_deref(), Some("POST"));
    assert_eq!(get.cache_control.as_deref(), Some("no-store"));

    // Nothing changed: the session lives, no jti was spent, and the genuine token
    // (never sent until now) still works.
    assert!(is_signed_in(&w, &b).await);
    assert_eq!(w.rows("mp_logout_tokens").await, 0);
    assert_accepted(&send(&w, &genuine).await);
    assert!(!is_signed_in(&w, &b).await);
}

#[tokio::test]
async fn a_replayed_logout_token_is_refused_and_ends_nothing_on_any_replica() {
    let w = world().await;
    let op = Op::of(&w).await;
    let (b, sid) = signed_in(&w, HANAKO).await;
    let token = op.sign(&op.claims(&w, Some(w.sub_of(HANAKO)), Some(&sid)));
    assert_accepted(&send(&w, &token).await);
    assert!(!is_signed_in(&w, &b).await);
    // She signs in again within the same OP session: the same sid, a new session here.
    assert!(!signed_out(&sign_in_again(&w, &b).await));
    assert_eq!(sessions(&w).await[0].0.as_deref(), Some(sid.as_str()));
    assert_refused(&send(&w, &token).await, "used before");
    assert!(is_signed_in(&w, &b).await, "the replay ended nothing");

    // A second replica on the same database knows the jti too.
    let replica = replica(&w, &op).await;
    let replayed = answer(
        reqwest::Client::new()
            .post(format!("{replica}/backchannel-logout"))
            .form(&[("logout_token", token.as_str())]),
    )
    .await;
    assert_refused(&replayed, "used before");
    assert!(is_signed_in(&w, &b).await);

    // Spent jtis are forgotten once their token could no longer pass anyway.
    assert_eq!(w.rows("mp_logout_tokens").await, 1);
    w.mp_clock.advance(Duration::minutes(7));
    let nobody = op.sign(&op.claims(&w, Some("nobody"), None));
    assert_accepted(&send(&w, &nobody).await);
    assert_eq!(
        w.rows("mp_logout_tokens").await,
        1,
        "the first one was pruned"
    );
}

/// Another marketplace process on the same database and clock (it needs no client
/// secret to receive logouts).
async fn replica(w: &World, op: &Op) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = tobira_marketplace::config::Config {
        public_url: w.mp_public.clone(),
        database: tobira_marketplace::config::DatabaseConfig {
            url: tobira_marketplace::config::Secret::new(w.mp_db_url.clone()),
        },
        oidc: tobira_marketplace::config::OidcConfig {
            issuer: w.op.clone(),
            client_id: op.client_id.clone(),
            client_secret: tobira_marketplace::config::Secret::default(),
        },
        ..Default::default()
    };
    let app = tobira_marketplace::App::build_on_with_clock(listener, config, w.mp_clock.clone())
        .await
        .unwrap();
    // Runs until the test's runtime ends.
    tokio::spawn(app.run_until(std::future::pending()));
    url
}
