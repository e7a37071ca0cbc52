//! Facebook Login against a stand-in: the OAuth dialog, the token exchange by GET, the
//! Graph API's `/me` that checks `appsecret_proof` and answers errors as Graph error
//! JSON; the member's cancel (`error=access_denied&error_reason=user_denied`). Facebook
//! has no ID token and no verified-email claim: the account's address is unverified.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tobira_auth::config::{ProviderKind, Secret};

use super::stand_in::{Served, random, serve};
use super::{
    CANCELLED, MISCONFIGURED, REFUSED, callback, not_signed_in, nothing_made, offers_other_ways,
    provider, round_trip, signed_in,
};
use crate::helpers::{Browser, Page, TestApp};

const ID: &str = "facebook";
const APP_ID: &str = "1234567890123456";
const APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
/// An app-scoped user id.
const USER_ID: &str = "10229876543210987";
const EMAIL: &str = "jiro@example.jp";
const NAME: &str = "Jiro Suzuki";

/// `appsecret_proof`: lowercase hex of HMAC-SHA256(key = app secret, msg = access token).
fn proof(secret: &str, token: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(token.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Default)]
struct Knobs {
    cancel: bool,
    /// The app secret was reset in the dashboard after the token was issued: `/me`
    /// checks proofs against this one.
    rotated_secret: Option<String>,
    /// The member removed the app meanwhile: the access token no longer works.
    token_revoked: bool,
    /// The code expired before it was redeemed (Graph error code 100).
    code_expired: bool,
}

#[derive(Default)]
struct Fb {
    knobs: Mutex<Knobs>,
    redirect_uri: Mutex<Option<String>>,
    codes: Mutex<HashMap<String, String>>,
    tokens: Mutex<Vec<String>>,
    dialog: Mutex<Vec<HashMap<String, String>>>,
    token_requests: Mutex<Vec<HashMap<String, String>>>,
    me_requests: Mutex<Vec<HashMap<String, String>>>,
}

/// A Graph API error as Facebook writes it (HTTP 400).
fn graph_error(message: &str, kind: &str, code: u32, subcode: Option<u32>) -> Response {
    let mut error = json!({
        "message": message,
        "type": kind,
        "code": code,
        "fbtrace_id": "AbCdEfGhIjK",
    });
    if let Some(subcode) = subcode {
        error["error_subcode"] = json!(subcode);
    }
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": error })),
    )
        .into_response()
}

fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(uri).expect("an absolute redirect URI");
    url.query_pairs_mut().extend_pairs(params);
    // Facebook appends this fragment to every redirect back; browsers keep it to
    // themselves.
    format!("{url}#_=_")
}

async fn dialog(State(fb): State<Arc<Fb>>, Query(q): Query<HashMap<String, String>>) -> Response {
    fb.dialog.lock().unwrap().push(q.clone());
    let registered = fb.redirect_uri.lock().unwrap().clone();
    let (Some(redirect_uri), true) = (
        q.get("redirect_uri").cloned(),
        q.get("client_id").map(String::as_str) == Some(APP_ID),
    ) else {
        return (StatusCode::BAD_REQUEST, "Invalid App ID").into_response();
    };
    if registered.is_some_and(|r| r != redirect_uri) {
        return (
            StatusCode::BAD_REQUEST,
            "URL blocked: not a valid OAuth redirect URI",
        )
            .into_response();
    }
    let state = q.get("state").cloned().unwrap_or_default();
    if fb.knobs.lock().unwrap().cancel {
        return Redirect::to(&with_query(
            &redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_code", "200"),
                ("error_description", "Permissions error"),
                ("error_reason", "user_denied"),
                ("state", &state),
            ],
        ))
        .into_response();
    }
    let code = random();
    fb.codes
        .lock()
        .unwrap()
        .insert(code.clone(), redirect_uri.clone());
    Redirect::to(&with_query(
        &redirect_uri,
        &[("code", &code), ("state", &state)],
    ))
    .into_response()
}

async fn access_token(
    State(fb): State<Arc<Fb>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    fb.token_requests.lock().unwrap().push(q.clone());
    if q.get("client_id").map(String::as_str) != Some(APP_ID)
        || q.get("client_secret").map(String::as_str) != Some(APP_SECRET)
    {
        return graph_error("Error validating client secret.", "OAuthException", 1, None);
    }
    let redirect = q
        .get("code")
        .and_then(|c| fb.codes.lock().unwrap().remove(c));
    if fb.knobs.lock().unwrap().code_expired {
        return graph_error(
            "This authorization code has expired.",
            "OAuthException",
            100,
            None,
        );
    }
    if redirect.is_none() || redirect.as_ref() != q.get("redirect_uri") {
        return graph_error(
            "This authorization code has been used.",
            "OAuthException",
            100,
            None,
        );
    }
    let token = format!("EAA{}", random());
    fb.tokens.lock().unwrap().push(token.clone());
    axum::Json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": 5_183_944,
    }))
    .into_response()
}

async fn me(State(fb): State<Arc<Fb>>, Query(q): Query<HashMap<String, String>>) -> Response {
    fb.me_requests.lock().unwrap().push(q.clone());
    let token = q.get("access_token").cloned().unwrap_or_default();
    let knobs_revoked = fb.knobs.lock().unwrap().token_revoked;
    if !fb.tokens.lock().unwrap().contains(&token) || knobs_revoked {
        // Subcode 458: the member removed the app.
        return graph_error(
            "Error validating access token: The user has not authorized application 1234567890123456.",
            "OAuthException",
            190,
            Some(458),
        );
    }
    let secret = fb
        .knobs
        .lock()
        .unwrap()
        .rotated_secret
        .clone()
        .unwrap_or_else(|| APP_SECRET.to_owned());
    if q.get("appsecret_proof") != Some(&proof(&secret, &token)) {
        return graph_error(
            "Invalid appsecret_proof provided in the API argument",
            "OAuthException",
            190,
            None,
        );
    }
    let fields: Vec<&str> = q.get("fields").map_or(vec![], |f| f.split(',').collect());
    let mut answer = json!({ "id": USER_ID });
    if fields.contains(&"name") {
        answer["name"] = json!(NAME);
    }
    if fields.contains(&"email") {
        answer["email"] = json!(EMAIL);
    }
    axum::Json(answer).into_response()
}

struct Setup {
    fb: Arc<Fb>,
    server: Served,
    app: TestApp,
    browser: Browser,
}

async fn setup() -> Setup {
    let fb = Arc::new(Fb::default());
    let router = Router::new()
        .route("/v19.0/dialog/oauth", get(dialog))
        .route("/v19.0/oauth/access_token", get(access_token))
        .route("/v19.0/me", get(me))
        .with_state(fb.clone());
    let server = serve(router, "127.0.0.1").await;
    let base = server.url.clone();
    let app = TestApp::spawn_with(|c| {
        c.federation.timeout_ms = 2_000;
        let mut p = provider(ID, ProviderKind::Facebook, APP_ID);
        p.client_secret = Secret::new(APP_SECRET);
        p.authorization_endpoint = format!("{base}/v19.0/dialog/oauth");
        p.token_endpoint = format!("{base}/v19.0/oauth/access_token");
        p.graph_endpoint = format!("{base}/v19.0");
        c.federation.providers = vec![p];
    })
    .await;
    *fb.redirect_uri.lock().unwrap() = Some(callback(&app, ID));
    let browser = app.browser();
    Setup {
        fb,
        server,
        app,
        browser,
    }
}

/// What a page about a Graph error says: not available (our client's fault) or refused.
fn graph_refusal(page: &Page) -> &'static str {
    if page.body.contains(MISCONFIGURED) {
        MISCONFIGURED
    } else {
        REFUSED
    }
}

/// The issuer of Facebook identities: app-scoped ids belong to the app.
fn issuer() -> String {
    format!("https://www.facebook.com/{APP_ID}")
}

#[test]
fn the_stand_in_s_appsecret_proof_matches_a_known_vector() {
    // HMAC-SHA256 (RFC 4231 test case 2): key "Jefe", data "what do ya want for nothing?".
    assert_eq!(
        proof("Jefe", "what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[tokio::test]
async fn a_facebook_sign_in_proves_the_app_secret_and_makes_an_account_with_an_unverified_address()
{
    let s = setup().await;
    let landed = round_trip(&s.browser, ID).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    signed_in(&s.browser).await;

    let asked = s.fb.dialog.lock().unwrap()[0].clone();
    assert_eq!(asked["client_id"], APP_ID);
    assert_eq!(asked["redirect_uri"], callback(&s.app, ID));
    assert!(asked["scope"].contains("email"), "{asked:?}");
    assert!(!asked.contains_key("nonce"), "Facebook Login has no nonce");
    let me = s.fb.me_requests.lock().unwrap()[0].clone();
    let fields: Vec<&str> = me["fields"].split(',').collect();
    assert!(
        fields.contains(&"id") && fields.contains(&"email"),
        "{fields:?}"
    );

    let user = s.app.user(EMAIL).await.expect("an account was made");
    assert!(!user.email_verified, "Facebook verifies no address for us");
    assert!(user.display_name.contains("Jiro"), "{}", user.display_name);
    let link = s
        .app
        .state
        .db
        .links()
        .find(&issuer(), USER_ID)
        .await
        .unwrap()
        .expect("linked by (app, app-scoped id)");
    assert_eq!(link.user, user.id);
    drop(s.server);
}

#[tokio::test]
async fn cancelling_at_facebook_shows_the_cancel_page() {
    let s = setup().await;
    s.fb.knobs.lock().unwrap().cancel = true;
    let page: Page = round_trip(&s.browser, ID).await;
    offers_other_ways(&page, ID, CANCELLED);
    not_signed_in(&s.browser).await;
    nothing_made(&s.app, EMAIL, &issuer(), USER_ID).await;
    assert!(s.fb.token_requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_graph_error_for_a_revoked_token_shows_a_clear_page_and_nothing_is_made() {
    let s = setup().await;
    s.fb.knobs.lock().unwrap().token_revoked = true;
    let page = round_trip(&s.browser, ID).await;
    // Code 190 is "Graph will not take this access token": the downstream may count it
    // as its own client's fault or as a refused answer; either is a clear page.
    offers_other_ways(&page, ID, graph_refusal(&page));
    not_signed_in(&s.browser).await;
    nothing_made(&s.app, EMAIL, &issuer(), USER_ID).await;
    assert_eq!(s.fb.me_requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_wrong_appsecret_proof_is_answered_with_a_graph_error_and_nothing_is_made() {
    let s = setup().await;
    s.fb.knobs.lock().unwrap().rotated_secret = Some("a-secret-reset-meanwhile".to_owned());
    let page = round_trip(&s.browser, ID).await;
    // Graph says only "invalid appsecret_proof": our secret is wrong (or the answer is
    // refused); both are a clear page.
    offers_other_ways(&page, ID, graph_refusal(&page));
    not_signed_in(&s.browser).await;
    nothing_made(&s.app, EMAIL, &issuer(), USER_ID).await;
}

#[tokio::test]
async fn an_expired_code_is_refused_and_nothing_is_made() {
    let s = setup().await;
    s.fb.knobs.lock().unwrap().code_expired = true;
    let page = round_trip(&s.browser, ID).await;
    offers_other_ways(&page, ID, REFUSED);
    not_signed_in(&s.browser).await;
    nothing_made(&s.app, EMAIL, &issuer(), USER_ID).await;
    assert!(s.fb.me_requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_wrong_app_secret_is_refused_at_the_token_exchange_and_facebook_sign_in_is_unavailable() {
    let fb = Arc::new(Fb::default());
    let router = Router::new()
        .route("/v19.0/dialog/oauth", get(dialog))
        .route("/v19.0/oauth/access_token", get(access_token))
        .route("/v19.0/me", get(me))
        .with_state(fb.clone());
    let server = serve(router, "127.0.0.1").await;
    let base = server.url.clone();
    let app = TestApp::spawn_with(|c| {
        let mut p = provider(ID, ProviderKind::Facebook, APP_ID);
        p.client_secret = Secret::new("not-the-app-secret");
        p.authorization_endpoint = format!("{base}/v19.0/dialog/oauth");
        p.token_endpoint = format!("{base}/v19.0/oauth/access_token");
        p.graph_endpoint = format!("{base}/v19.0");
        c.federation.providers = vec![p];
    })
    .await;
    let browser = app.browser();
    let page = round_trip(&browser, ID).await;
    offers_other_ways(&page, ID, MISCONFIGURED);
    not_signed_in(&browser).await;
    nothing_made(&app, EMAIL, &issuer(), USER_ID).await;
    assert!(fb.me_requests.lock().unwrap().is_empty());
}
