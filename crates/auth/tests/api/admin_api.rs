//! The admin API as a whole (its OpenAPI document covers every route, and every route
//! wants an admin client's token), its signing-key and audit-log endpoints, and their
//! parity with `tobira keys` and `tobira audit list`.

use std::collections::HashSet;
use std::process::{Command, Output, Stdio};

use reqwest::Method;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use tobira_auth::admin::audit::{self, Actor, Context, Target};
use tobira_auth::clock::rfc3339;
use tobira_auth::store::{AuditFilter, StoreError};

use crate::admin_support::{member_token, non_admin_token};
use crate::cli::{stderr, stdout};
use crate::helpers::{AdminApi, TestApp, kid_of};

const BIN: &str = env!("CARGO_BIN_EXE_tobira");

/// Every method an OpenAPI path item can hold an operation under.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The operations issue 17 asks for. Users and clients are written beside keys and
/// audit; this list is what the merged API must document.
const EXPECTED_OPERATIONS: [&str; 20] = [
    "GET /users",
    "GET /users/{id}",
    "POST /users/{id}/freeze",
    "POST /users/{id}/unfreeze",
    "POST /users/{id}/unlock",
    "POST /users/{id}/sign-out",
    "POST /users/{id}/reset-2fa",
    "DELETE /users/{id}",
    "GET /users/{id}/sessions",
    "DELETE /users/{id}/sessions/{session_id}",
    "POST /clients",
    "GET /clients",
    "GET /clients/{client_id}",
    "PATCH /clients/{client_id}",
    "POST /clients/{client_id}/rotate-secret",
    "DELETE /clients/{client_id}",
    "GET /keys",
    "POST /keys/rotate",
    "POST /keys/{kid}/revoke",
    "GET /audit-events",
];

/// The OpenAPI document, fetched without a token (it is public: it holds no data).
async fn document(app: &TestApp) -> Value {
    let response = app.get("/admin/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("the document is JSON")
}

/// `METHOD path` of every operation in the document.
fn operations(doc: &Value) -> Vec<(Method, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut ops = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method).is_some() {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                ops.push((method, path.clone()));
            }
        }
    }
    ops
}

/// `path` with every `{parameter}` replaced by a value that parses as any id (a UUID is
/// also a fine kid or client_id), so the request reaches the authentication check.
fn with_dummy_parameters(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').expect("a closed parameter") + open;
        out.push_str("00000000-0000-7000-8000-000000000000");
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

fn query_value(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_every_route_in_it_exists_and_wants_a_token() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().expect("openapi");
    assert!(version.starts_with("3.1"), "{version}");
    assert!(
        doc["components"]["securitySchemes"]["bearer"].is_object(),
        "{}",
        doc["components"]
    );
    let ops = operations(&doc);
    assert!(ops.len() >= 4, "{ops:?}");
    for (method, path) in ops {
        let url = with_dummy_parameters(&path);
        // A body where one is expected, so that only the missing token can refuse it.
        let body = matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
        let response = api.call_as(None, method.clone(), &url, body).await;
        assert_eq!(
            response.status, 401,
            "{method} {path} answers without a token: {}",
            response.body
        );
        response.assert_problem(401);
        assert!(
            response
                .headers
                .get(reqwest::header::WWW_AUTHENTICATE)
                .is_some(),
            "{method} {path}"
        );
    }
}

/// Strips `//` comments, so prose about `.route(` does not count as code.
fn code_of(source: &str) -> String {
    source
        .lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_admin_route_is_registered_through_utoipa_so_the_document_cannot_miss_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/admin/api");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("src/admin/api")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    // Plain axum routing needs `.route(`, a `MethodRouter` or the `axum::routing`
    // functions (`get(`, `post(`…, whether imported or spelled out); utoipa's
    // `routes!` needs none of them.
    let forbidden = [
        ".route(",
        ".route_service(",
        ".nest(",
        ".nest_service(",
        "axum::routing",
        "MethodRouter",
    ];
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let mut found: Vec<&str> = forbidden
            .iter()
            .copied()
            .filter(|f| code.contains(f))
            .collect();
        if name == "mod.rs" {
            // The document's own route, and the API nested under its base, are the
            // only ones allowed (the document cannot describe itself).
            let compact: String = code.split_whitespace().collect();
            assert_eq!(compact.matches(".route(").count(), 1, "mod.rs");
            assert!(
                compact.contains(".route(\"/openapi.json\",axum::routing::get("),
                "mod.rs routes something other than /openapi.json"
            );
            assert_eq!(compact.matches("axum::routing").count(), 1, "mod.rs");
            assert_eq!(compact.matches(".nest(").count(), 1, "mod.rs");
            assert!(compact.contains(".nest(BASE,"), "mod.rs");
            found.retain(|f| ![".route(", "axum::routing", ".nest("].contains(f));
        }
        assert!(
            found.is_empty(),
            "{name} registers routes with plain axum ({found:?}): use utoipa_axum::routes! \
             so that the OpenAPI document has them"
        );
    }
}

/// WAITS FOR THE USERS AND CLIENTS ENDPOINTS (issue 17, written beside this module): it
/// fails until `admin/api/users.rs` and `admin/api/clients.rs` are merged.
#[tokio::test]
async fn the_document_has_every_operation_issue_17_asks_for_once_users_and_clients_land() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let documented: HashSet<String> = operations(&doc)
        .into_iter()
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    let missing: Vec<&str> = EXPECTED_OPERATIONS
        .iter()
        .copied()
        .filter(|op| !documented.contains(*op))
        .collect();
    assert!(missing.is_empty(), "not in the document: {missing:?}");
    // Every operation is in its area's tag.
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][method.as_str().to_lowercase()];
        assert!(
            op["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{method} {path} has no tag"
        );
    }
}

#[tokio::test]
async fn an_unknown_admin_path_is_a_404_problem() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    api.get("nope").await.assert_problem(404);
    api.call_as(None, Method::GET, "nope", None)
        .await
        .assert_problem(404);
}

/// `token` with the first character of its signature changed (so its first byte).
fn tampered(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').unwrap();
    let first = if sig.starts_with('A') { 'B' } else { 'A' };
    format!("{head}.{first}{}", &sig[1..])
}

#[tokio::test]
async fn only_a_live_admin_clients_token_is_let_in() {
    let (s, member) = member_token().await;
    let app = &s.app;
    let api = app.admin_api().await;
    assert_eq!(api.get("keys").await.status, 200);

    let as_token = |token: String| {
        let api = &api;
        async move { api.call_as(Some(&token), Method::GET, "keys", None).await }
    };
    as_token(tampered(&api.token)).await.assert_problem(401);
    as_token("not-a-jwt".to_owned()).await.assert_problem(401);
    as_token(member).await.assert_problem(403);
    as_token(non_admin_token(app).await)
        .await
        .assert_problem(403);
    // The admin client itself, asking for no scope: not an admin token.
    let unscoped = app
        .client_credentials_token(&api.client_id, &api.secret, "")
        .await;
    as_token(unscoped).await.assert_problem(403);

    // The admin scope taken away: its tokens stop at once.
    let second = app.admin_api().await;
    assert_eq!(second.get("keys").await.status, 200);
    let db = &app.state.db;
    let before = db.clients().find(&second.client_id).await.unwrap().unwrap();
    let mut client = before.clone();
    client.scopes.clear();
    let event = audit::event(
        app.clock().now(),
        &Context::cli(),
        "client.update",
        Target::Client(second.client_id.clone()),
        json!({}),
    );
    assert!(db.clients().update(&before, &client, &event).await.unwrap());
    second.get("keys").await.assert_problem(403);

    // The client removed: its tokens are revoked, as every token issued to it.
    let event = audit::event(
        app.clock().now(),
        &Context::cli(),
        "client.delete",
        Target::Client(api.client_id.clone()),
        json!({}),
    );
    assert!(db.clients().remove(&api.client_id, &event).await.unwrap());
    api.get("keys").await.assert_problem(401);

    // An expired admin token.
    let third = app.admin_api().await;
    assert_eq!(third.get("keys").await.status, 200);
    let lifetime = app.state.config.tokens.access_token_secs;
    app.clock()
        .advance(Duration::seconds(i64::from(lifetime) + 60));
    third.get("keys").await.assert_problem(401);
}

/// Every refusal a keys or audit endpoint owes a caller that is not an admin client.
async fn assert_refuses_non_admins(app: &TestApp, member: &str, method: Method, path: &str) {
    let api = app.admin_api().await;
    let body = (method == Method::POST).then(|| json!({}));
    let non_admin = non_admin_token(app).await;
    api.call_as(None, method.clone(), path, body.clone())
        .await
        .assert_problem(401);
    api.call_as(Some(&non_admin), method.clone(), path, body.clone())
        .await
        .assert_problem(403);
    api.call_as(Some(member), method.clone(), path, body)
        .await
        .assert_problem(403);
}

#[tokio::test]
async fn keys_and_audit_endpoints_refuse_everyone_but_an_admin_client() {
    let (s, member) = member_token().await;
    let app = &s.app;
    let kid = app.state.keys.signing_kid(tobira_auth::keys::Alg::RS256);
    for (method, path) in [
        (Method::GET, "keys".to_owned()),
        (Method::POST, "keys/rotate".to_owned()),
        (Method::POST, format!("keys/{kid}/revoke")),
        (Method::GET, "audit-events".to_owned()),
    ] {
        assert_refuses_non_admins(app, &member, method, &path).await;
    }
    // Nothing was changed by the refused calls.
    let keys = app.admin_api().await.get("keys").await;
    assert!(
        keys.body
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["state"] == "active"),
        "{}",
        keys.body
    );
}

/// The kids `/jwks` publishes now.
async fn jwks_kids(app: &TestApp) -> Vec<String> {
    let jwks: Value = app.get("/jwks").await.json().await.unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn keys_are_listed_without_private_material() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let response = api.get("keys").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let keys = response.body.as_array().expect("an array");
    assert_eq!(keys.len(), 3, "{keys:?}");
    let mut algs: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    algs.sort();
    assert_eq!(algs, ["ES256", "EdDSA", "RS256"]);
    let allowed: HashSet<&str> = [
        "kid",
        "alg",
        "state",
        "created_at",
        "activate_after",
        "activated_at",
        "retire_after",
        "retired_at",
        "revoked_at",
    ]
    .into();
    for key in keys {
        let fields: HashSet<&str> = key
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert!(fields.is_subset(&allowed), "{key}");
        assert_eq!(key["state"], "active");
    }
    let text = response.body.to_string();
    assert!(
        !text.contains("\"d\"") && !text.contains("private"),
        "{text}"
    );
    let mut listed: Vec<String> = keys
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    let mut published = jwks_kids(&app).await;
    listed.sort();
    published.sort();
    assert_eq!(listed, published);
}

/// The events the API lists for `query` (one page of at most 200).
async fn events(api: &AdminApi, query: &str) -> Vec<Value> {
    let response = api.get(&format!("audit-events?limit=200&{query}")).await;
    assert_eq!(response.status, 200, "{query}: {}", response.body);
    response.body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn rotating_publishes_a_next_key_at_once_and_refuses_while_one_waits() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let before = jwks_kids(&app).await;

    let response = api.post("keys/rotate", json!({ "alg": "ES256" })).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let published = response.body.as_array().unwrap();
    assert_eq!(published.len(), 1, "{published:?}");
    let next = &published[0];
    assert_eq!(next["alg"], "ES256");
    assert_eq!(next["state"], "next");
    let signs_from =
        OffsetDateTime::parse(next["activate_after"].as_str().unwrap(), &Rfc3339).unwrap();
    assert!(signs_from > app.clock().now(), "{next}");
    let kid = next["kid"].as_str().unwrap().to_owned();
    // This replica reloaded its ring: the key is in the JWKS now, not after a reload.
    let after = jwks_kids(&app).await;
    assert!(after.contains(&kid), "{after:?}");
    assert_eq!(after.len(), before.len() + 1);

    // A next ES256 key waits: another rotation of ES256, or of every algorithm, is
    // refused and publishes nothing.
    let again = api.post("keys/rotate", json!({ "alg": "ES256" })).await;
    again.assert_problem(409);
    assert!(
        again.body["detail"].as_str().unwrap().contains(&kid),
        "{}",
        again.body
    );
    api.post("keys/rotate", json!({})).await.assert_problem(409);
    assert_eq!(jwks_kids(&app).await.len(), after.len());

    // Every other algorithm still rotates.
    let rs = api.post("keys/rotate", json!({ "alg": "RS256" })).await;
    assert_eq!(rs.status, 200, "{}", rs.body);
    let rs_kid = rs.body[0]["kid"].as_str().unwrap().to_owned();

    // Malformed requests change nothing.
    api.post("keys/rotate", json!({ "alg": "HS256" }))
        .await
        .assert_problem(422);
    api.post("keys/rotate", json!({ "alg": "es256" }))
        .await
        .assert_problem(422);
    api.post("keys/rotate", json!({ "alg": "EdDSA", "now": true }))
        .await
        .assert_problem(422);
    // Not even a name: serde_json counts it as a syntax error.
    api.post("keys/rotate", json!({ "alg": 256 }))
        .await
        .assert_problem(400);
    let raw = app
        .http
        .post(api.url("keys/rotate"))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{\"alg\":")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let untyped = app
        .http
        .post(api.url("keys/rotate"))
        .bearer_auth(&api.token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(untyped.status(), 415);
    assert_eq!(jwks_kids(&app).await.len(), after.len() + 1);

    // Each published key is recorded as rotated by this client, from its address.
    let rotations = events(&api, "action=key.rotate").await;
    assert_eq!(rotations.len(), 2, "{rotations:?}");
    // Made at the same instant of the test's clock: in either order.
    for (kid, alg) in [(&rs_kid, "RS256"), (&kid, "ES256")] {
        let event = rotations
            .iter()
            .find(|e| e["target"] == kid.as_str())
            .unwrap_or_else(|| panic!("no key.rotate of {kid}: {rotations:?}"));
        assert_eq!(event["actor_kind"], "client");
        assert_eq!(event["actor"], api.client_id.as_str());
        assert_eq!(event["target_kind"], "key");
        assert_eq!(event["target"], kid.as_str());
        assert_eq!(event["detail"]["kid"], kid.as_str());
        assert_eq!(event["detail"]["alg"], alg);
        assert_eq!(event["ip"], "127.0.0.1");
        assert!(!event["request_id"].as_str().unwrap().is_empty(), "{event}");
    }
}

#[tokio::test]
async fn revoking_takes_a_key_out_of_the_jwks_and_says_what_signs_instead() {
    let app = TestApp::spawn().await;
    let mut api = app.admin_api().await;
    // The key that signed the caller's own token: revoking it ends that token too.
    let rs256 = kid_of(&api.token);
    let keys = api.get("keys").await.body;
    let alg = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == rs256.as_str())
        .unwrap()["alg"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(jwks_kids(&app).await.contains(&rs256));

    let response = api.post(&format!("keys/{rs256}/revoke"), json!({})).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let body = &response.body;
    assert_eq!(body["kid"], rs256.as_str());
    assert_eq!(body["alg"], alg.as_str());
    assert_eq!(body["was"], "active");
    // No next or retiring key of its algorithm: a new one signs, which clients have to fetch.
    assert_eq!(body["replacement"]["from"], "generated");
    assert_eq!(body["replacement"]["clients_must_refetch"], true);
    let replacement = body["replacement"]["kid"].as_str().unwrap().to_owned();
    assert!(OffsetDateTime::parse(body["effective_by"].as_str().unwrap(), &Rfc3339).is_ok());
    // This replica stopped at once: no longer published, no longer signing.
    let published = jwks_kids(&app).await;
    assert!(!published.contains(&rs256), "{published:?}");
    assert!(published.contains(&replacement), "{published:?}");
    let parsed = tobira_auth::keys::Alg::parse(&alg).unwrap();
    assert_eq!(app.state.keys.signing_kid(parsed), replacement);
    // Nothing it signed is accepted any more: the caller needs a new token.
    api.get("keys").await.assert_problem(401);
    api.token = app
        .client_credentials_token(&api.client_id, &api.secret, "admin")
        .await;
    assert_eq!(kid_of(&api.token), replacement);

    // Again: refused, changing nothing. An unknown kid, or a hostile one: not found.
    api.post(&format!("keys/{rs256}/revoke"), json!({}))
        .await
        .assert_problem(409);
    api.post("keys/no-such-kid/revoke", json!({}))
        .await
        .assert_problem(404);
    let long = "k".repeat(4000);
    api.post(&format!("keys/{long}/revoke"), json!({}))
        .await
        .assert_problem(404);
    api.post("keys/%00%0a/revoke", json!({}))
        .await
        .assert_problem(404);
    assert_eq!(jwks_kids(&app).await, published);

    // Recorded: the revoke and the key that took over, by this client.
    let revoked = events(&api, &format!("target={rs256}")).await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["action"], "key.revoke");
    assert_eq!(revoked[0]["actor"], api.client_id.as_str());
    assert_eq!(revoked[0]["detail"]["alg"], alg.as_str());
    assert_eq!(revoked[0]["detail"]["was"], "active");
    assert_eq!(revoked[0]["detail"]["replaced_by"], replacement.as_str());
    let promoted = events(&api, "action=key.promote").await;
    assert_eq!(promoted.len(), 1, "{promoted:?}");
    assert_eq!(promoted[0]["target"], replacement.as_str());
    assert_eq!(promoted[0]["detail"]["replaces"], rs256.as_str());
    assert_eq!(promoted[0]["actor_kind"], "client");
}

#[tokio::test]
async fn the_schedule_records_what_it_publishes_promotes_and_retires_as_system() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let state = &app.state;
    let policy = tobira_auth::keys::KeyPolicy::from_config(&state.config);
    let tick = |at: OffsetDateTime| {
        tobira_auth::keys::schedule::tick(&state.db, &state.master, at, &policy)
    };
    let old = state.keys.signing_kid(tobira_auth::keys::Alg::EdDSA);
    let rotated = api.post("keys/rotate", json!({ "alg": "EdDSA" })).await;
    let next = rotated.body[0]["kid"].as_str().unwrap().to_owned();
    let signs_from = OffsetDateTime::parse(
        rotated.body[0]["activate_after"].as_str().unwrap(),
        &Rfc3339,
    )
    .unwrap();
    let report = tick(signs_from).await.unwrap();
    assert_eq!(report.activated, 1, "{report:?}");
    let report = tick(signs_from + Duration::days(2)).await.unwrap();
    assert_eq!(report.retired, 1, "{report:?}");

    let promote = events(&api, "action=key.promote").await;
    assert_eq!(promote.len(), 1, "{promote:?}");
    assert_eq!(promote[0]["actor_kind"], "system");
    assert_eq!(promote[0]["target"], next.as_str());
    assert_eq!(promote[0]["detail"]["alg"], "EdDSA");
    assert_eq!(promote[0]["detail"]["replaces"], json!([old]));
    let retire = events(&api, "action=key.retire").await;
    assert_eq!(retire.len(), 1, "{retire:?}");
    assert_eq!(retire[0]["actor_kind"], "system");
    assert_eq!(retire[0]["target"], old.as_str());
    assert_eq!(retire[0]["detail"]["from"], "retiring");

    // Published by the schedule itself (`keys.rotate_every_days` ran out): a rotation
    // by `system`.
    let every = policy
        .rotate_every
        .expect("keys.rotate_every_days is 90 by default");
    tick(signs_from + every).await.unwrap();
    let scheduled: Vec<Value> = events(&api, "action=key.rotate")
        .await
        .into_iter()
        .filter(|e| e["actor_kind"] == "system")
        .collect();
    assert_eq!(scheduled.len(), 3, "one per algorithm: {scheduled:?}");
    assert!(scheduled.iter().all(|e| e["detail"]["scheduled"] == true));
}

/// Records `n` events of `action` by `ctx`, on targets `<prefix>1`…`<prefix>n`.
async fn record(app: &TestApp, ctx: &Context, action: &str, prefix: &str, n: usize) {
    for i in 1..=n {
        audit::record(
            &app.state.db,
            app.clock(),
            ctx,
            action,
            Target::Client(format!("{prefix}{i}")),
            json!({ "i": i }),
        )
        .await
        .unwrap();
    }
}

fn by(actor: Actor) -> Context {
    Context {
        actor,
        ip: "192.0.2.1".to_owned(),
        request_id: "req".to_owned(),
    }
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every page of `query` with `limit`, following `next_cursor`; the items in order.
async fn all_pages(api: &AdminApi, query: &str, limit: u32) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("audit-events?limit={limit}&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", query_value(c)));
        }
        let response = api.get(&path).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        pages += 1;
        let page = response.body["items"].as_array().unwrap();
        assert!(page.len() <= limit as usize);
        items.extend(page.iter().cloned());
        match response.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (items, pages),
        }
        assert!(pages < 50, "paging does not end");
    }
}

#[tokio::test]
async fn audit_events_filter_and_page_newest_first_without_duplicates() {
    let app = TestApp::spawn().await;
    let alice = by(Actor::Support("alice".to_owned()));
    let bob = by(Actor::Support("bob".to_owned()));
    let ops = by(Actor::Client("ops".to_owned()));
    let t0 = app.clock().now();
    record(&app, &alice, "user.freeze", "u", 5).await;
    app.clock().advance(Duration::hours(1));
    let t1 = app.clock().now();
    record(&app, &ops, "client.update", "c", 4).await;
    app.clock().advance(Duration::hours(1));
    let t2 = app.clock().now();
    record(&app, &bob, "user.unfreeze", "u", 3).await;
    // Registered last: its token would have expired while the clock moved.
    let api = app.admin_api().await;

    let count = |query: &'static str| {
        let api = &api;
        async move { events(api, query).await.len() }
    };
    assert_eq!(count("action=user.").await, 8);
    assert_eq!(count("action=user").await, 0, "an exact action");
    assert_eq!(count("action=user.freeze").await, 5);
    assert_eq!(count("action=user.freeze.").await, 0);
    assert_eq!(count("actor=alice").await, 5);
    assert_eq!(count("actor=bob&action=user.").await, 3);
    assert_eq!(count("actor=ops").await, 4);
    let u1 = events(&api, "target=u1").await;
    assert_eq!(u1.len(), 2);
    assert_eq!(u1[0]["action"], "user.unfreeze", "newest first");
    assert_eq!(u1[1]["action"], "user.freeze");
    assert_eq!(u1[0]["ip"], "192.0.2.1");
    assert_eq!(u1[0]["actor_kind"], "support");

    let window = format!(
        "since={}&until={}",
        query_value(&rfc3339(t1)),
        query_value(&rfc3339(t2))
    );
    let between = events(&api, &window).await;
    assert_eq!(between.len(), 4, "since is inclusive, until exclusive");
    assert!(between.iter().all(|e| e["action"] == "client.update"));
    let since_t2 = events(
        &api,
        &format!("action=user.&since={}", query_value(&rfc3339(t2))),
    )
    .await;
    assert_eq!(since_t2.len(), 3);
    // An offset other than Z names the same instant.
    let tokyo = t1.to_offset(time::UtcOffset::from_hms(9, 0, 0).unwrap());
    let in_tokyo = events(&api, &format!("until={}", query_value(&rfc3339(tokyo)))).await;
    assert!(in_tokyo.iter().all(|e| e["action"] != "client.update"));
    assert!(in_tokyo.iter().any(|e| e["action"] == "user.freeze"));
    // The store itself compares in UTC, whatever offset its caller gives.
    let db = &app.state.db;
    for (since, until) in [(t1, t2), (tokyo, t2.to_offset(tokyo.offset()))] {
        let filter = AuditFilter {
            since: Some(since),
            until: Some(until),
            ..Default::default()
        };
        let (found, _) = audit::list(db, &filter, 200).await.unwrap();
        assert_eq!(found.len(), 4, "{since} – {until}");
    }
    let before_t0 = events(&api, &format!("until={}", query_value(&rfc3339(t0)))).await;
    assert!(before_t0.iter().all(|e| e["action"] != "user.freeze"));

    // Pages: newest first, together exactly the one long listing, none twice.
    let everything = events(&api, "").await;
    assert!(everything.len() >= 12);
    for limit in [1, 3, 4, 5] {
        let (paged, pages) = all_pages(&api, "", limit).await;
        assert_eq!(ids(&paged), ids(&everything), "limit {limit}");
        assert!(pages >= everything.len() / limit as usize);
    }
    let (users, pages) = all_pages(&api, "action=user.", 3).await;
    assert_eq!(pages, 3);
    assert_eq!(users.len(), 8);
    let unique: HashSet<String> = ids(&users).into_iter().collect();
    assert_eq!(unique.len(), 8);
    let times: Vec<OffsetDateTime> = users
        .iter()
        .map(|e| OffsetDateTime::parse(e["at"].as_str().unwrap(), &Rfc3339).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    // A page that ends the list exactly still says so with the next (empty) one.
    let (fours, _) = all_pages(&api, "action=user.", 4).await;
    assert_eq!(fours.len(), 8);
    // The default page is 50.
    let first = api.get("audit-events").await;
    assert_eq!(first.status, 200);
    assert!(first.body["items"].as_array().unwrap().len() <= 50);
}

#[tokio::test]
async fn audit_events_refuse_bad_times_cursors_limits_and_filters() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let long = "a".repeat(201);
    let not_uuid: String = base64_url("not-a-uuid");
    for query in [
        "since=yesterday",
        "since=2026-04-01",
        "until=2026-04-01T09:00:00",
        "until=1712000000",
        "cursor=!!!",
        "cursor=",
        &format!("cursor={not_uuid}"),
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=ten",
        "limit=99999999999",
        &format!("actor={long}"),
        &format!("target={long}"),
        "action=",
        "colour=red",
    ] {
        api.get(&format!("audit-events?{query}"))
            .await
            .assert_problem(400);
    }
    let ok = api.get("audit-events?limit=200&action=key.").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

/// Review: the prefix was a SQL `LIKE` pattern, so `_` and `%` in it were wildcards (and
/// `\` an escape on PostgreSQL), and SQLite's `LIKE` ignored case where PostgreSQL's
/// did not.
#[tokio::test]
async fn an_action_prefix_is_matched_character_for_character_on_every_database() {
    let app = TestApp::spawn().await;
    let alice = by(Actor::Support("alice".to_owned()));
    record(&app, &alice, "users.merge", "plural", 2).await;
    record(&app, &alice, "user.freeze", "user", 1).await;
    record(&app, &alice, r"back\slash.x", "escaped", 1).await;
    record(&app, &alice, "backslash.x", "plain", 1).await;
    let api = app.admin_api().await;

    for (prefix, expected) in [
        ("users.", &["plural1", "plural2"][..]),
        ("user.", &["user1"]),
        // `_` and `%` are characters like any other, not "any character".
        ("user_.", &[]),
        ("_ser.", &[]),
        ("%.", &[]),
        ("u%.", &[]),
        // A backslash is a backslash, not PostgreSQL's escape character.
        (r"back\slash.", &["escaped1"]),
        ("backslash.", &["plain1"]),
        // Actions are compared as written, on SQLite as on PostgreSQL.
        ("USER.", &[]),
    ] {
        let query = format!("action={}", query_value(prefix));
        let mut found: Vec<String> = events(&api, &query)
            .await
            .iter()
            .map(|e| e["target"].as_str().unwrap().to_owned())
            .collect();
        found.sort();
        assert_eq!(found, expected, "{prefix}");
        // The store itself, as any caller reaches it.
        let filter = AuditFilter {
            action: Some(prefix.to_owned()),
            ..Default::default()
        };
        let (stored, _) = audit::list(&app.state.db, &filter, 200).await.unwrap();
        assert_eq!(stored.len(), expected.len(), "{prefix}");
    }
}

/// Review: on PostgreSQL a NUL in a filter reached the database, which refused it, and
/// the API answered 500; control characters have no place in a filter at all.
#[tokio::test]
async fn a_filter_with_a_control_character_is_refused_as_a_bad_request_not_a_server_error() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    for (query, says) in [
        ("actor=%00", "actor must not contain control characters"),
        ("target=u%00", "target must not contain control characters"),
        (
            "action=user.%00.",
            "action must not contain control characters",
        ),
        (
            "actor=alice%0Abob",
            "actor must not contain control characters",
        ),
        (
            "action=%1B%5B31m.",
            "action must not contain control characters",
        ),
        (
            "since=2026-04-01T09:00:00Z%00",
            "since must be an RFC 3339 time",
        ),
        ("until=%00", "until must be an RFC 3339 time"),
    ] {
        let res = api.get(&format!("audit-events?{query}")).await;
        res.assert_problem(400);
        let detail = res.body["detail"].as_str().unwrap();
        assert!(detail.starts_with(says), "{query}: {detail}");
    }

    // The store refuses them too, whoever calls it: a clear refusal, never the
    // database's error, and nothing is written.
    let filter = AuditFilter {
        target: Some("u\0".to_owned()),
        ..Default::default()
    };
    let refused = audit::list(&app.state.db, &filter, 10).await.unwrap_err();
    assert!(matches!(refused, StoreError::Refused(_)), "{refused:?}");
    let before = audit::list(&app.state.db, &AuditFilter::default(), 200)
        .await
        .unwrap()
        .0
        .len();
    for target in ["u\0", "line\nbreak"] {
        let refused = audit::record(
            &app.state.db,
            app.clock(),
            &Context::cli(),
            "user.freeze",
            Target::Client(target.to_owned()),
            json!({ "note": "a NUL \0 in JSON is escaped, and fine" }),
        )
        .await
        .unwrap_err();
        assert!(matches!(refused, StoreError::Refused(_)), "{refused:?}");
    }
    let after = audit::list(&app.state.db, &AuditFilter::default(), 200)
        .await
        .unwrap()
        .0
        .len();
    assert_eq!(after, before, "nothing written");
    // Free text goes in `detail`, whose JSON escapes control characters.
    audit::record(
        &app.state.db,
        app.clock(),
        &Context::cli(),
        "user.freeze",
        Target::Client("u1".to_owned()),
        json!({ "reason": "two\nlines and a NUL \0" }),
    )
    .await
    .unwrap();
    let found = events(&api, "target=u1").await;
    assert_eq!(found[0]["detail"]["reason"], "two\nlines and a NUL \0");
}

/// One parser for both (review: the API and the CLI each had theirs): each bad value is
/// refused by both, in the same words.
#[tokio::test]
async fn the_cli_and_the_api_refuse_the_same_filters_in_the_same_words() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let long = "a".repeat(201);
    for (option, value) in [
        ("actor", ""),
        ("actor", long.as_str()),
        ("actor", "alice\nbob"),
        ("action", ""),
        ("action", "user.\u{1b}[31m."),
        ("target", long.as_str()),
        ("target", "tab\there"),
        ("since", "yesterday"),
        ("since", "2026-04-01"),
        ("until", "2026-04-01T09:00:00"),
        ("until", "1712000000"),
    ] {
        let res = api
            .get(&format!("audit-events?{option}={}", query_value(value)))
            .await;
        res.assert_problem(400);
        let detail = res.body["detail"].as_str().unwrap().to_owned();
        assert!(detail.starts_with(option), "{option}={value:?}: {detail}");
        let flag = format!("--{option}");
        let out = cli(&app, &["audit", "list", &flag, value]).await;
        assert!(!out.status.success(), "{option}={value:?}");
        assert!(
            stderr(&out).contains(&detail),
            "{option}={value:?}: the CLI says {:?}, the API {detail:?}",
            stderr(&out)
        );
    }
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// Runs `tobira` against the app's database and data directory (so its master key), as
/// the operator `operator`, off the test's thread: the app serves on that thread, and a
/// command that waits for a lock the app holds (the key schedule's) would otherwise wait
/// for ever.
async fn cli(app: &TestApp, args: &[&str]) -> Output {
    let config = &app.state.config;
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(&config.data_dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("USER", "operator")
        .env("TOBIRA_DATA_DIR", &config.data_dir)
        .env("TOBIRA_DATABASE__URL", config.database_url())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

async fn cli_events(app: &TestApp, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "list", "--json"];
    all.extend_from_slice(args);
    let out = cli(app, &all).await;
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str::<Value>(stdout(&out).trim())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn the_cli_and_the_api_list_the_same_events_for_the_same_filter() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let alice = by(Actor::Support("alice".to_owned()));
    record(&app, &alice, "user.freeze", "u", 3).await;
    record(&app, &by(Actor::System), "user.delete", "u", 2).await;
    record(&app, &alice, "client.update", "c", 2).await;
    let since = rfc3339(app.clock().now() - Duration::minutes(5));

    for (cli_args, query) in [
        (vec![], String::new()),
        (vec!["--action", "user."], "action=user.".to_owned()),
        (vec!["--actor", "alice"], "actor=alice".to_owned()),
        (
            vec![
                "--actor",
                "alice",
                "--action",
                "user.freeze",
                "--target",
                "u2",
            ],
            "actor=alice&action=user.freeze&target=u2".to_owned(),
        ),
        (
            vec!["--since", since.as_str(), "--limit", "4"],
            format!("since={}&limit=4", query_value(&since)),
        ),
    ] {
        let from_cli = cli_events(&app, &cli_args).await;
        let response = api
            .get(&format!(
                "audit-events?{query}{}",
                if query.contains("limit") {
                    ""
                } else {
                    "&limit=50"
                }
            ))
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
        let from_api = response.body["items"].as_array().unwrap();
        assert!(!from_api.is_empty(), "{query}");
        assert_eq!(&from_cli, from_api, "{cli_args:?} / {query}");
    }

    // The human listing: one line per event, with its fields.
    let out = cli(
        &app,
        &["audit", "list", "--action", "user.freeze", "--target", "u1"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let fields: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(fields.len(), 7, "{}", lines[0]);
    assert!(
        OffsetDateTime::parse(fields[0], &Rfc3339).is_ok(),
        "{}",
        lines[0]
    );
    assert_eq!(
        fields[1..6],
        [
            "support:alice",
            "user.freeze",
            "client:u1",
            "192.0.2.1",
            "req"
        ]
    );
    assert_eq!(fields[6], r#"{"i":1}"#);
    let system = cli(
        &app,
        &["audit", "list", "--action", "user.delete", "--limit", "1"],
    )
    .await;
    assert!(stdout(&system).starts_with(|c: char| c.is_ascii_digit()));
    assert_eq!(stdout(&system).split('\t').nth(1), Some("system"));
    assert!(stderr(&system).contains("--limit"), "{}", stderr(&system));

    // Bad filters: refused with a reason, as the API does.
    for args in [
        &["--since", "yesterday"][..],
        &["--until", "2026-04-01"],
        &["--limit", "0"],
        &["--limit", "201"],
        &["--action", ""],
    ] {
        let mut all = vec!["audit", "list"];
        all.extend_from_slice(args);
        let out = cli(&app, &all).await;
        assert!(!out.status.success(), "{args:?}");
        assert!(!stderr(&out).is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn a_key_rotated_at_the_cli_and_one_rotated_through_the_api_are_both_recorded() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let out = cli(&app, &["keys", "rotate", "--alg", "ES256"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let cli_kid = stdout(&out).split('\t').next().unwrap().to_owned();
    let response = api.post("keys/rotate", json!({ "alg": "EdDSA" })).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let api_kid = response.body[0]["kid"].as_str().unwrap().to_owned();

    let rotations = cli_events(&app, &["--action", "key.rotate"]).await;
    assert_eq!(rotations.len(), 2, "{rotations:?}");
    let of = |kid: &str| {
        rotations
            .iter()
            .find(|e| e["target"] == kid)
            .unwrap_or_else(|| panic!("no key.rotate of {kid}: {rotations:?}"))
            .clone()
    };
    let at_cli = of(&cli_kid);
    assert_eq!(at_cli["actor_kind"], "support");
    assert_eq!(at_cli["actor"], "operator");
    assert_eq!(at_cli["ip"], "");
    assert_eq!(at_cli["detail"]["alg"], "ES256");
    let through_api = of(&api_kid);
    assert_eq!(through_api["actor_kind"], "client");
    assert_eq!(through_api["actor"], api.client_id.as_str());
    assert_eq!(through_api["detail"]["alg"], "EdDSA");
    assert_eq!(
        events(&api, "action=key.rotate").await,
        rotations,
        "the API lists the same"
    );

    // A CLI revoke is recorded the same way as an API one.
    let out = cli(&app, &["keys", "revoke", &format!("--kid={api_kid}")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let revoked = events(&api, "action=key.revoke").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["actor"], "operator");
    assert_eq!(revoked[0]["target"], api_kid.as_str());
    assert_eq!(revoked[0]["detail"]["was"], "next");
}
