//! The web side of social sign-in as an attacker tries it (`oidc::federation`): the
//! provider buttons, a start without its CSRF token, from another site, for an unknown
//! provider or a sign-in that does not resume; a callback with a missing, unknown,
//! replayed, another provider's or another browser's `state`; repeated and oversized
//! parameters; Apple's form post for a state that names no flow (nothing kept), and for
//! a live one (kept, and finished only in the browser that started).
//!
//! The provider is a second Tobira (kind `oidc`) on `127.0.0.1`; the downstream is on
//! `localhost`, so the two never share cookies. The full round trip is
//! `federation.rs`'s; here the provider is asked at most for a code it never issued.

use tobira_auth::admin::clients::{AddClient, add_client};
use tobira_auth::config::{Issuer, ProviderConfig, ProviderKind, Secret};
use tobira_auth::store::ephemeral::EphemeralError;

use crate::console::sent_to_sign_in;
use crate::helpers::{Browser, Page, TestApp};

const EXPIRED: &str = "ログインの有効期限が切れたか、すでに使われています";
const OTHER_BROWSER: &str = "別のブラウザで始められた";
const CLIENT_ID: &str = "downstream-op";
const CLIENT_SECRET: &str = "a-long-enough-client-secret-for-the-test-0123456789";

/// A provider entry with its id, kind and labels; the rest empty.
fn provider(id: &str, kind: ProviderKind, label: &str) -> ProviderConfig {
    ProviderConfig {
        id: id.to_owned(),
        kind,
        client_id: CLIENT_ID.to_owned(),
        client_secret: Secret::new(CLIENT_SECRET),
        client_secret_file: String::new(),
        team_id: String::new(),
        key_id: String::new(),
        private_key_file: String::new(),
        issuer: String::new(),
        scopes: Vec::new(),
        label: label.to_owned(),
        label_en: format!("{label} (en)"),
        authorization_endpoint: String::new(),
        token_endpoint: String::new(),
        userinfo_endpoint: String::new(),
        jwks_uri: String::new(),
        revocation_endpoint: String::new(),
        graph_endpoint: String::new(),
    }
}

/// An upstream Tobira on 127.0.0.1 (the downstream is on `localhost`).
async fn upstream() -> TestApp {
    TestApp::spawn_with(|c| {
        let port = c.server.bind.port();
        c.issuer = Issuer::parse(&format!("http://127.0.0.1:{port}")).expect("issuer");
    })
    .await
}

/// Registers the downstream as a client of `up`, answering at `callback`.
async fn register(up: &TestApp, callback: String) {
    add_client(
        &up.state.db,
        &up.state.clock,
        AddClient {
            name: "Downstream".to_owned(),
            redirect_uris: vec![callback],
            post_logout_redirect_uris: Vec::new(),
            public: false,
            first_party: true,
            extra_grants: Vec::new(),
            client_id: Some(CLIENT_ID.to_owned()),
            secret: Some(CLIENT_SECRET.to_owned()),
            id_token_alg: tobira_auth::keys::Alg::RS256,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            scopes: Vec::new(),
        },
    )
    .await
    .expect("client registered");
}

/// A downstream whose providers are `up` (id `up`) and, after it, the same issuer again
/// as `second`.
struct Fed {
    up: TestApp,
    app: TestApp,
}

async fn fed() -> Fed {
    let up = upstream().await;
    let issuer = up.issuer();
    let app = TestApp::spawn_with(|c| {
        let mut first = provider("up", ProviderKind::Oidc, "上流ID");
        first.issuer = issuer.clone();
        let mut second = provider("second", ProviderKind::Oidc, "二番目");
        second.issuer = issuer;
        c.federation.providers.push(first);
        c.federation.providers.push(second);
    })
    .await;
    register(&up, format!("{}/federation/up/callback", app.issuer())).await;
    Fed { up, app }
}

/// The fields of provider `id`'s button form on `page`.
fn button(page: &Page, id: &str) -> Vec<(String, String)> {
    let action = format!(r#"action="/federation/{id}/start""#);
    let start = page
        .body
        .find(&action)
        .unwrap_or_else(|| panic!("no button for {id}: {}", page.body));
    let form = &page.body[start..];
    let form = &form[..form.find("</form>").expect("the form ends")];
    assert!(form.contains(&format!(r#"id="federation-{id}""#)), "{form}");
    form.split("<input")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            let attr = |name: &str| {
                let marker = format!(r#" {name}=""#);
                let at = tag.find(&marker)? + marker.len();
                Some(tag[at..at + tag[at..].find('"')?].to_owned())
            };
            Some((attr("name")?, attr("value").unwrap_or_default()))
        })
        .collect()
}

fn pairs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Presses provider `id`'s button: the answer, not followed.
async fn press(browser: &Browser, page: &Page, id: &str) -> Page {
    let fields = button(page, id);
    browser
        .post_form(&format!("/federation/{id}/start"), &pairs(&fields))
        .await
}

/// The `state` of the authorization request a start sent the browser to.
fn state_of(sent: &Page) -> String {
    assert_eq!(sent.status, 303, "{}", sent.body);
    let location = sent.location.as_deref().expect("a Location");
    url::Url::parse(location)
        .expect("an absolute URL")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("a state")
}

/// A browser on the console's sign-in page, and the state of a flow it started at `up`.
async fn started(app: &TestApp) -> (Browser, Page, String) {
    let browser = app.browser();
    let page = sent_to_sign_in(&browser, "/account").await;
    let sent = press(&browser, &page, "up").await;
    let state = state_of(&sent);
    (browser, page, state)
}

fn is_expired_page(page: &Page) -> bool {
    page.status == 400 && page.body.contains(EXPIRED)
}

#[tokio::test]
async fn the_sign_in_page_has_one_button_per_provider_in_the_configurations_order() {
    let f = fed().await;
    let browser = f.app.browser();
    let page = sent_to_sign_in(&browser, "/account").await;
    let up = page
        .body
        .find(r#"id="federation-up""#)
        .expect("up's button");
    let second = page
        .body
        .find(r#"id="federation-second""#)
        .expect("second's button");
    assert!(up < second, "in the configuration's order");
    assert!(page.body.contains("上流ID"), "the label: {}", page.body);
    let fields = button(&page, "up");
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["csrf", "tx", "lang"]);
    assert_eq!(fields[1].1, page.field("tx").unwrap());
    assert!(!page.body.contains("<script>"), "no script of its own");
    // In English, the English label.
    let tx = page.field("tx").unwrap();
    let en = browser.get(&format!("/login?tx={tx}&lang=en")).await;
    assert!(en.body.contains("上流ID (en)"), "{}", en.body);
    // No provider, no button.
    let plain = TestApp::spawn().await;
    let page = sent_to_sign_in(&plain.browser(), "/account").await;
    assert!(!page.body.contains("/federation/"), "{}", page.body);
}

#[tokio::test]
async fn a_start_without_its_token_or_from_another_site_goes_nowhere() {
    let f = fed().await;
    let browser = f.app.browser();
    let page = sent_to_sign_in(&browser, "/account").await;
    let tx = page.field("tx").unwrap();
    let no_token = browser
        .post_form("/federation/up/start", &[("tx", tx.as_str())])
        .await;
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    assert!(no_token.location.is_none());
    let wrong = browser
        .post_form(
            "/federation/up/start",
            &[("tx", tx.as_str()), ("csrf", "x".repeat(43).as_str())],
        )
        .await;
    assert_eq!(wrong.status, 403);
    let fields = button(&page, "up");
    let cross = browser
        .post_form_with(
            "/federation/up/start",
            &pairs(&fields),
            &[
                ("origin", "https://attacker.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    assert!(cross.location.is_none());
    // The real button works.
    let sent = press(&browser, &page, "up").await;
    assert!(
        sent.location
            .as_deref()
            .unwrap()
            .starts_with(&f.up.issuer()),
        "to the provider: {:?}",
        sent.location
    );
}

#[tokio::test]
async fn a_start_for_an_unknown_provider_or_a_sign_in_that_does_not_resume_is_refused() {
    let f = fed().await;
    let browser = f.app.browser();
    let page = sent_to_sign_in(&browser, "/account").await;
    let fields = button(&page, "up");
    let unknown = browser
        .post_form("/federation/nope/start", &pairs(&fields))
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(unknown.location.is_none());
    let long = format!("/federation/{}/start", "a".repeat(5000));
    let long = browser.post_form(&long, &pairs(&fields)).await;
    assert!(long.location.is_none(), "{}", long.status);
    // A tx of another (or no) sign-in.
    let mut forged = fields.clone();
    forged[1].1 = "not-a-parked-sign-in".to_owned();
    let stale = browser
        .post_form("/federation/up/start", &pairs(&forged))
        .await;
    assert_eq!(stale.status, 400, "{}", stale.body);
    assert!(stale.location.is_none());
    // Another browser's sign-in: its tx, our own token.
    let other = f.app.browser();
    let theirs = sent_to_sign_in(&other, "/account").await;
    let mut foreign = fields.clone();
    foreign[1].1 = theirs.field("tx").unwrap();
    let refused = browser
        .post_form("/federation/up/start", &pairs(&foreign))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.location.is_none());
}

#[tokio::test]
async fn each_start_has_a_fresh_state_bound_to_the_browser() {
    let f = fed().await;
    let (browser, page, first) = started(&f.app).await;
    let second = state_of(&press(&browser, &page, "up").await);
    assert_ne!(first, second);
    assert_eq!(first.len(), 43, "256 bits, base64url");
    let kept = f
        .app
        .state
        .ephemeral
        .get(&format!("federation:{first}"))
        .await
        .unwrap()
        .expect("the flow is kept server-side");
    let kept: serde_json::Value = serde_json::from_slice(&kept).unwrap();
    assert_eq!(kept["provider"], "up");
    assert!(
        !String::from_utf8_lossy(&serde_json::to_vec(&kept).unwrap())
            .contains(&browser.cookie("tobira_bind").unwrap()),
        "the binding cookie's hash, never the cookie"
    );
}

#[tokio::test]
async fn a_callback_with_a_missing_unknown_or_malformed_state_finds_no_flow() {
    let f = fed().await;
    let (browser, _, _) = started(&f.app).await;
    for query in [
        "",
        "?code=abc",
        "?code=abc&state=",
        "?code=abc&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "?code=abc&state=a%2Fb",
        "?code=abc&state=%00",
        // Only a state, with no kept form post.
        "?state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let page = browser
            .get(&format!("/federation/up/callback{query}"))
            .await;
        assert!(
            is_expired_page(&page),
            "{query}: {} {}",
            page.status,
            page.body
        );
        assert!(page.location.is_none());
        assert!(browser.cookie("tobira_session").is_none());
    }
    let unknown = browser
        .get("/federation/nope/callback?code=a&state=b")
        .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn repeated_or_oversized_callback_parameters_are_refused() {
    let f = fed().await;
    let (browser, _, state) = started(&f.app).await;
    let code = "c".repeat(3000);
    let user = "u".repeat(5000);
    for query in [
        format!("state={state}&state={state}&code=a"),
        format!("state={state}&code=a&code=b"),
        format!("state={state}&code={code}"),
        format!("state={state}&error={}", "e".repeat(300)),
        format!(
            "state={state}&error=access_denied&error_description={}",
            "d".repeat(2000)
        ),
        format!("state={state}&code=a&user={user}"),
    ] {
        let page = browser
            .get(&format!("/federation/up/callback?{query}"))
            .await;
        assert_eq!(page.status, 400, "{}", &query[..query.len().min(80)]);
        assert!(page.location.is_none());
    }
    // None of them spent the flow.
    assert!(
        f.app
            .state
            .ephemeral
            .get(&format!("federation:{state}"))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn another_browsers_callback_is_refused_and_leaves_the_flow_to_its_own() {
    let f = fed().await;
    let (browser, _, state) = started(&f.app).await;
    let callback = format!("/federation/up/callback?code=never-issued&state={state}");
    // A browser without a binding cookie, and one with its own.
    let stranger = f.app.browser();
    let page = stranger.get(&callback).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains(OTHER_BROWSER), "{}", page.body);
    let other = f.app.browser();
    sent_to_sign_in(&other, "/account").await;
    assert!(other.cookie("tobira_bind").is_some());
    let page = other.get(&callback).await;
    assert_eq!(page.status, 403, "{}", page.body);
    // Another provider's callback does not spend it either.
    let page = browser
        .get(&format!("/federation/second/callback?code=x&state={state}"))
        .await;
    assert!(is_expired_page(&page), "{} {}", page.status, page.body);
    // The starting browser's callback reaches the provider, which never issued the
    // code: the sign-in page again, with the other ways in.
    let page = browser.get(&callback).await;
    assert!(!is_expired_page(&page), "{}", page.body);
    assert!(page.body.contains(r#"action="/login""#), "{}", page.body);
    assert!(page.body.contains(r#"id="federation-up""#));
    assert!(browser.cookie("tobira_session").is_none());
    // Spent: a replay is told so, with the way back to this sign-in.
    let replay = browser.get(&callback).await;
    assert!(
        is_expired_page(&replay),
        "{} {}",
        replay.status,
        replay.body
    );
    assert!(
        replay.body.contains(r#"href="/login?tx="#),
        "{}",
        replay.body
    );
    // A stranger replaying it learns nothing of where.
    let replay = stranger.get(&callback).await;
    assert!(is_expired_page(&replay));
    assert!(!replay.body.contains("/login?tx="), "{}", replay.body);
}

#[tokio::test]
async fn a_cancel_at_the_provider_shows_the_sign_in_page_again_and_spends_the_flow() {
    let f = fed().await;
    let (browser, _, state) = started(&f.app).await;
    let page = browser
        .get(&format!(
            "/federation/up/callback?error=access_denied&state={state}"
        ))
        .await;
    assert!(
        page.body.contains("上流IDでのログインをキャンセルしました"),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"action="/login""#));
    let again = browser
        .get(&format!(
            "/federation/up/callback?error=access_denied&state={state}"
        ))
        .await;
    assert!(is_expired_page(&again));
    assert!(again.body.contains(r#"href="/login?tx="#), "{}", again.body);
    // A spent flow is remembered under its own state: in the same browser, a state
    // never issued is no replay of it and offers no way back to its sign-in.
    let unknown = browser
        .get("/federation/up/callback?code=x&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .await;
    assert!(is_expired_page(&unknown), "{}", unknown.body);
    assert!(!unknown.body.contains("/login?tx="), "{}", unknown.body);
}

/// A downstream with an Apple provider (form post) whose endpoints are a port where
/// nothing listens: starting needs no network, finishing fails as Unavailable.
async fn with_apple() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let key =
        josekit::jwk::alg::ec::EcKeyPair::generate(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
    let path = dir.path().join("AuthKey.p8");
    std::fs::write(&path, key.to_pem_private_key()).unwrap();
    let app = TestApp::spawn_with(|c| {
        let mut apple = provider("apple", ProviderKind::Apple, "Appleでサインイン");
        apple.client_secret = Secret::new("");
        apple.team_id = "TEAM123456".to_owned();
        apple.key_id = "KEY1234567".to_owned();
        apple.private_key_file = path.to_string_lossy().into_owned();
        apple.issuer = "http://127.0.0.1:9".to_owned();
        apple.authorization_endpoint = "http://127.0.0.1:9/auth/authorize".to_owned();
        apple.token_endpoint = "http://127.0.0.1:9/auth/token".to_owned();
        apple.jwks_uri = "http://127.0.0.1:9/auth/keys".to_owned();
        apple.revocation_endpoint = "http://127.0.0.1:9/auth/revoke".to_owned();
        c.federation.providers.push(apple);
    })
    .await;
    (app, dir)
}

/// Apple's form post: from appleid.apple.com, with none of our cookies.
async fn form_post(app: &TestApp, id: &str, form: &[(&str, &str)]) -> reqwest::Response {
    app.http
        .post(format!(
            "{}/federation/{id}/callback",
            app.url.as_str().trim_end_matches('/')
        ))
        .header("origin", "https://appleid.apple.com")
        .header("sec-fetch-site", "cross-site")
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn kept_answer(app: &TestApp, state: &str) -> Option<Vec<u8>> {
    app.state
        .ephemeral
        .get(&format!("federation-answer:{state}"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_form_post_for_a_state_that_names_no_flow_keeps_nothing() {
    let (app, _dir) = with_apple().await;
    let unknown = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let res = form_post(&app, "apple", &[("code", "c"), ("state", unknown)]).await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    assert!(kept_answer(&app, unknown).await.is_none());
    // Not a form, or an unknown provider.
    let res = app
        .http
        .post(format!(
            "{}/federation/apple/callback",
            app.url.as_str().trim_end_matches('/')
        ))
        .header("content-type", "application/json")
        .body(format!(r#"{{"state":"{unknown}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = form_post(&app, "nope", &[("state", unknown)]).await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn only_a_form_post_provider_takes_a_post() {
    let f = fed().await;
    let (_, _, state) = started(&f.app).await;
    let res = form_post(&f.app, "up", &[("code", "c"), ("state", &state)]).await;
    assert_eq!(res.status(), 400);
    assert!(kept_answer(&f.app, &state).await.is_none());
}

#[tokio::test]
async fn a_form_post_is_kept_for_its_flow_and_finished_only_in_the_starting_browser() {
    let (app, _dir) = with_apple().await;
    let browser = app.browser();
    let page = sent_to_sign_in(&browser, "/account").await;
    assert!(page.body.contains("Appleでサインイン"));
    let sent = press(&browser, &page, "apple").await;
    let state = state_of(&sent);
    // Oversized and repeated fields are refused, and keep nothing.
    let big = "u".repeat(5000);
    let res = form_post(
        &app,
        "apple",
        &[("state", &state), ("code", "c"), ("user", &big)],
    )
    .await;
    assert_eq!(res.status(), 400);
    let res = form_post(&app, "apple", &[("state", &state), ("state", &state)]).await;
    assert_eq!(res.status(), 400);
    assert!(kept_answer(&app, &state).await.is_none());
    let user =
        r#"{"name":{"firstName":"花子","lastName":"山田"},"email":"h@privaterelay.appleid.com"}"#;
    let res = form_post(
        &app,
        "apple",
        &[
            ("code", "c.0.never"),
            ("state", &state),
            ("user", user),
            ("id_token", "e30"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        location,
        format!("/federation/apple/callback?state={state}")
    );
    assert!(
        !location.contains("code"),
        "the code never travels in a URL"
    );
    assert!(kept_answer(&app, &state).await.is_some());
    // Another browser neither takes the kept answer nor spends the flow.
    let stranger = app.browser();
    sent_to_sign_in(&stranger, "/account").await;
    let page = stranger.get(&location).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(kept_answer(&app, &state).await.is_some());
    // The starting browser finishes it (Apple cannot be reached: the page says so and
    // offers the other ways in).
    let page = browser.get(&location).await;
    assert!(!is_expired_page(&page), "{}", page.body);
    assert!(page.body.contains(r#"action="/login""#), "{}", page.body);
    assert!(kept_answer(&app, &state).await.is_none());
    // Nothing is left to replay.
    let page = browser.get(&location).await;
    assert!(is_expired_page(&page), "{} {}", page.status, page.body);
    assert!(browser.cookie("tobira_session").is_none());
}

#[tokio::test]
async fn one_sign_in_starts_a_bounded_number_of_flows() {
    let f = fed().await;
    let browser = f.app.browser();
    let page = sent_to_sign_in(&browser, "/account").await;
    for _ in 0..30 {
        let sent = press(&browser, &page, "up").await;
        assert_eq!(sent.status, 303, "{}", sent.body);
    }
    let refused = press(&browser, &page, "up").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.location.is_none());
    // Another sign-in of the same browser starts afresh.
    let other = sent_to_sign_in(&browser, "/account").await;
    assert_eq!(press(&browser, &other, "up").await.status, 303);
}

#[tokio::test]
async fn one_address_cannot_start_flows_without_end() {
    let f = fed().await;
    // Each start keeps a record server-side for ten minutes: an attacker pressing the
    // button in a loop (new sign-ins for new parked requests, new browsers) from one
    // address is stopped after 60, and the records stop growing.
    let mut started = 0;
    let mut refused = None;
    'pressing: for _ in 0..4 {
        let browser = f.app.browser();
        let page = sent_to_sign_in(&browser, "/account").await;
        for _ in 0..25 {
            let sent = press(&browser, &page, "up").await;
            if sent.status == 303 {
                started += 1;
            } else {
                refused = Some(sent);
                break 'pressing;
            }
        }
    }
    assert_eq!(started, 60);
    let refused = refused.expect("the 61st start is refused");
    assert_eq!(refused.status, 429, "{}", refused.body);
}

/// The store fails when a start keeps its flow (under `federation:<state>`, after the
/// provider's metadata was read): a store that is down gives the 503 page saying to try
/// again, one that answers nonsense is a fault of ours, a 500 page with the request's id.
/// Neither sends the browser to the provider, and the next press, with the store back,
/// starts.
#[tokio::test]
async fn a_start_whose_flow_the_store_cannot_keep_is_a_503_when_down_and_a_500_when_broken() {
    let up = upstream().await;
    let issuer = up.issuer();
    let (app, failing) = crate::outage::app_with_failing_store_and(|c| {
        let mut first = provider("up", ProviderKind::Oidc, "上流ID");
        first.issuer = issuer;
        c.federation.providers.push(first);
    })
    .await;
    register(&up, format!("{}/federation/up/callback", app.issuer())).await;
    let browser = app.browser();
    let page = sent_to_sign_in(&browser, "/account").await;

    let down = failing
        .during("federation:", press(&browser, &page, "up"))
        .await;
    crate::outage::unavailable_page(&down);
    assert!(down.location.is_none());

    let broken = failing
        .during_failing_with(
            "federation:",
            || EphemeralError::Malformed,
            press(&browser, &page, "up"),
        )
        .await;
    assert_eq!(broken.status, 500, "{}", broken.body);
    assert!(broken.location.is_none());
    assert!(broken.headers.get("retry-after").is_none());
    assert!(
        broken.body.contains("問題が発生しました"),
        "{}",
        broken.body
    );
    let id = broken.headers["x-request-id"].to_str().unwrap();
    assert!(
        broken.body.contains("お問い合わせ番号") && broken.body.contains(id),
        "{}",
        broken.body
    );

    let sent = press(&browser, &page, "up").await;
    let state = state_of(&sent);
    assert!(
        app.state
            .ephemeral
            .get(&format!("federation:{state}"))
            .await
            .unwrap()
            .is_some(),
        "the flow is kept once the store is back"
    );
}
