//! The admin API's clients: registration, listing, changes, secret rotation with a grace
//! period, removal, their audit records, and the rules the CLI shares with it.

use openidconnect::OAuth2TokenResponse;
use reqwest::Method;
use serde_json::{Value, json};
use time::Duration;
use tobira_auth::admin::audit::{self, AuditView};
use tobira_auth::crypto::sha256_hex;
use tobira_auth::store::AuditFilter;

use crate::cli::{Tobira, stderr, stdout};
use crate::helpers::{AdminApi, ApiResponse, ClientOpts, TestApp, TestDb, jwt_part};
use crate::oidc::{assert_tokens_dead, authorize, exchange, setup, sign_in_for_code, with_param};

/// A confidential client_credentials client without API scopes (to be rotated, used at
/// `/token`).
fn service(name: &str) -> Value {
    json!({
        "name": name,
        "redirect_uris": ["https://svc.example.jp/cb"],
        "grant_types": ["client_credentials"],
    })
}

/// Registers `body` through the API, expecting 201; the client_id and secret.
async fn create(api: &AdminApi, body: Value) -> (String, String) {
    let res = api.post("clients", body).await;
    assert_eq!(res.status, 201, "{}", res.body);
    (
        res.body["client_id"].as_str().unwrap().to_owned(),
        res.body["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// Moves the app's clock on a second: events made at one instant have ids (UUIDv7) in
/// no particular order, and these tests read them in order.
fn tick(app: &TestApp) {
    app.clock().advance(Duration::seconds(1));
}

/// Audit events about `client_id`, oldest first.
async fn events_of(app: &TestApp, client_id: &str) -> Vec<AuditView> {
    let filter = AuditFilter {
        target: Some(client_id.to_owned()),
        ..Default::default()
    };
    let (mut events, _) = audit::list(&app.state.db, &filter, 200).await.unwrap();
    events.reverse();
    events
}

/// Every endpoint, with a body where it takes one.
fn endpoints(client_id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::POST, "clients".to_owned(), Some(service("X"))),
        (Method::GET, "clients".to_owned(), None),
        (Method::GET, format!("clients/{client_id}"), None),
        (
            Method::PATCH,
            format!("clients/{client_id}"),
            Some(json!({"name": "Y"})),
        ),
        (
            Method::POST,
            format!("clients/{client_id}/rotate-secret"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("clients/{client_id}"), None),
    ]
}

#[tokio::test]
async fn every_client_endpoint_refuses_callers_without_an_admin_token() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let (target, _) = create(&api, service("Target")).await;
    // A client_credentials client the admin scope was never registered for.
    let (plain_id, plain_secret) = create(&api, service("Plain")).await;
    let plain = app
        .client_credentials_token(&plain_id, &plain_secret, "")
        .await;

    for (method, path, body) in endpoints(&target) {
        let none = api.call_as(None, method.clone(), &path, body.clone()).await;
        none.assert_problem(401);
        assert!(
            none.headers.contains_key("www-authenticate"),
            "{method} {path}"
        );
        let forged = api
            .call_as(Some("not.a.token"), method.clone(), &path, body.clone())
            .await;
        forged.assert_problem(401);
        api.call_as(Some(&plain), method.clone(), &path, body)
            .await
            .assert_problem(403);
    }
    // None of it did anything.
    let shown = api.get(&format!("clients/{target}")).await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body["name"], "Target");
    assert_eq!(events_of(&app, &target).await.len(), 1, "only its creation");
}

#[tokio::test]
async fn malformed_and_hostile_requests_are_refused_with_problems_that_say_why() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let (target, _) = create(&api, service("Target")).await;

    // Not JSON at all.
    let res = app
        .http
        .post(api.url("clients"))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = app
        .http
        .post(api.url("clients"))
        .bearer_auth(&api.token)
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415, "a body that is not JSON is refused");

    let base = || service("Bad");
    let with = |key: &str, value: Value| {
        let mut body = base();
        body[key] = value;
        body
    };
    for (body, says) in [
        (with("secret", json!("x".repeat(40))), "unknown field"),
        (with("grant_types", json!(["implicit"])), "unknown variant"),
        (with("id_token_alg", json!("none")), "unknown variant"),
        (
            with("redirect_uris", json!(["https://svc.example.jp/cb#frag"])),
            "fragment",
        ),
        (
            with("redirect_uris", json!(["http://svc.example.jp/cb"])),
            "plain http",
        ),
        (
            with("post_logout_redirect_uris", json!(["javascript:alert(1)"])),
            "post-logout redirect URI",
        ),
        (
            json!({"name": "Bad", "redirect_uris": []}),
            "at least one redirect URI",
        ),
        (
            with(
                "redirect_uris",
                json!([format!("https://svc.example.jp/{}", "a".repeat(3000))]),
            ),
            "longer than 2000",
        ),
        (
            with(
                "redirect_uris",
                json!(
                    (0..21)
                        .map(|i| format!("https://svc.example.jp/{i}"))
                        .collect::<Vec<_>>()
                ),
            ),
            "at most 20",
        ),
        (with("client_id", json!("bad id!")), "client_id must be"),
        (
            with("client_id", json!("a".repeat(129))),
            "client_id must be",
        ),
        (with("scopes", json!(["openid"])), "unknown scope"),
        (with("name", json!("名".repeat(201))), "name must be"),
        (with("name", json!("line\nbreak")), "name must be"),
        (with("public", json!(true)), "confidential client"),
        (
            with("backchannel_logout_session_required", json!(true)),
            "needs a back-channel logout URI",
        ),
    ] {
        let res = api.post("clients", body.clone()).await;
        res.assert_problem(422);
        let detail = res.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{body}: {detail}");
    }
    let mut no_name = base();
    no_name.as_object_mut().unwrap().remove("name");
    api.post("clients", no_name).await.assert_problem(422);

    // A taken client_id.
    api.post("clients", with("client_id", json!(target)))
        .await
        .assert_problem(409);

    // Changes follow the same rules.
    for (body, status, says) in [
        (
            json!({"redirect_uris": ["https://x.example/cb#f"]}),
            422,
            "fragment",
        ),
        // Without client_credentials, a client needs somewhere to send its codes.
        (
            json!({"redirect_uris": [], "grant_types": []}),
            422,
            "at least one",
        ),
        (
            json!({"scopes": ["admin"], "grant_types": []}),
            422,
            "client_credentials",
        ),
        (json!({"name": ""}), 422, "name must be"),
        (json!({"secret_hash": "00"}), 422, "unknown field"),
        (json!({"public": true}), 422, "unknown field"),
    ] {
        let res = api
            .call(
                Method::PATCH,
                &format!("clients/{target}"),
                Some(body.clone()),
            )
            .await;
        res.assert_problem(status);
        let detail = res.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{body}: {detail}");
    }
    // Rotation bounds its grace; a public client has nothing to rotate.
    for body in [
        json!({"grace_hours": 2161}),
        json!({"grace_hours": -1}),
        json!({"grace": 1}),
    ] {
        api.post(&format!("clients/{target}/rotate-secret"), body)
            .await
            .assert_problem(422);
    }
    let public = api
        .post(
            "clients",
            json!({"name": "App", "redirect_uris": ["https://app.example.jp/cb"], "public": true}),
        )
        .await;
    assert_eq!(public.status, 201, "{}", public.body);
    assert!(
        public.body.get("client_secret").is_none(),
        "{}",
        public.body
    );
    let public_id = public.body["client_id"].as_str().unwrap();
    let res = api
        .post(&format!("clients/{public_id}/rotate-secret"), json!({}))
        .await;
    res.assert_problem(422);
    assert!(
        res.body["detail"]
            .as_str()
            .unwrap()
            .contains("public client")
    );

    // Unknown ids, and ids no client could have.
    for id in ["nobody", "..%2F..%2Fkeys", "%00"] {
        for (method, path, body) in endpoints(id).into_iter().skip(2) {
            api.call(method.clone(), &path, body)
                .await
                .assert_problem(404);
        }
    }
    // Cursors and limits the API never gave.
    // A cursor of ours in form, naming no position a client_id can have.
    let forged = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, "a\0");
    api.get(&format!("clients?cursor={forged}"))
        .await
        .assert_problem(400);
    // A NUL (which PostgreSQL refuses in text) names no client at the token endpoint.
    assert_eq!(app.client_credentials_status("a\0b", "secret").await, 401);
    for query in [
        "clients?cursor=!!!",
        "clients?limit=0",
        "clients?limit=201",
        "clients?sort=name",
    ] {
        api.get(query).await.assert_problem(400);
    }

    // Nothing of it changed the target.
    let shown = api.get(&format!("clients/{target}")).await;
    assert_eq!(shown.body["name"], "Target");
    assert_eq!(
        shown.body["redirect_uris"],
        json!(["https://svc.example.jp/cb"])
    );
    assert_eq!(events_of(&app, &target).await.len(), 1);
}

#[tokio::test]
async fn a_new_client_gets_its_secret_once_and_is_listed_page_by_page_without_it() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let res = api
        .post(
            "clients",
            json!({
                "name": "パートナー",
                "client_id": "partner.site",
                "redirect_uris": ["https://partner.example.jp/cb", "http://127.0.0.1:3000/cb"],
                "post_logout_redirect_uris": ["https://partner.example.jp/"],
                "grant_types": ["refresh_token", "client_credentials"],
                "id_token_alg": "ES256",
                "backchannel_logout_uri": "https://partner.example.jp/bc",
                "backchannel_logout_session_required": true,
                "scopes": ["admin"],
            }),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    assert_eq!(
        res.headers.get("location").unwrap(),
        "/admin/api/v1/clients/partner.site"
    );
    assert_eq!(res.headers.get("cache-control").unwrap(), "no-store");
    let secret = res.body["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 43);
    assert_eq!(
        res.body["grant_types"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    assert_eq!(res.body["id_token_signed_response_alg"], "ES256");
    assert_eq!(res.body["scopes"], json!(["admin"]));
    assert_eq!(
        app.client_credentials_status("partner.site", &secret).await,
        200
    );

    // Shown and listed, never with the secret or its hash.
    let shown = api.get("clients/partner.site").await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body["name"], "パートナー");
    let text = shown.body.to_string();
    assert!(
        !text.contains(&secret) && !text.contains("secret\""),
        "{text}"
    );

    for i in 0..4 {
        create(&api, service(&format!("Service {i}"))).await;
    }
    let mut seen = Vec::new();
    let mut path = "clients?limit=2".to_owned();
    loop {
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        for item in items {
            assert!(item.get("client_secret").is_none());
            seen.push(item["client_id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => path = format!("clients?limit=2&cursor={next}"),
            None => break,
        }
    }
    // The admin client, the partner and four services: each once.
    assert_eq!(seen.len(), 6, "{seen:?}");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "{seen:?}");
}

#[tokio::test]
async fn a_rotated_secret_leaves_the_old_one_working_until_the_grace_period_ends() {
    let app = TestApp::spawn_with(|c| c.admin.client_secret_grace_hours = 5).await;
    let api = app.admin_api().await;
    let (id, first) = create(&api, service("Billing")).await;
    let rotate = format!("clients/{id}/rotate-secret");

    let res = api.post(&rotate, json!({"grace_hours": 2})).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.headers.get("cache-control").unwrap(), "no-store");
    let second = res.body["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let until = time::OffsetDateTime::parse(
        res.body["previous_secret_expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(until, app.clock().now() + Duration::hours(2));
    assert_eq!(
        res.body["previous_credential_expires_at"],
        res.body["previous_secret_expires_at"]
    );

    // Both work during the grace period: at the token endpoint and at introspection.
    assert_eq!(app.client_credentials_status(&id, &first).await, 200);
    assert_eq!(app.client_credentials_status(&id, &second).await, 200);
    let introspect = app
        .http
        .post(app.url.join("/introspect").unwrap())
        .basic_auth(&id, Some(&first))
        .form(&[("token", "whatever")])
        .send()
        .await
        .unwrap();
    assert_eq!(introspect.status(), 200);

    // Not a moment after.
    app.clock().advance(Duration::hours(2));
    assert_eq!(app.client_credentials_status(&id, &first).await, 401);
    assert_eq!(app.client_credentials_status(&id, &second).await, 200);
    // The admin's own token expired meanwhile: a fresh one.
    let admin = app
        .client_credentials_token(&api.client_id, &api.secret, "admin")
        .await;
    let shown = api
        .call_as(Some(&admin), Method::GET, &format!("clients/{id}"), None)
        .await;
    assert_eq!(shown.body["previous_credential_expires_at"], Value::Null);

    // The configured grace by default; a second rotation retires the kept secret at once.
    let res = api.call_as(Some(&admin), Method::POST, &rotate, None).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let third = res.body["client_secret"].as_str().unwrap().to_owned();
    let res = api
        .call_as(Some(&admin), Method::POST, &rotate, Some(json!({})))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let fourth = res.body["client_secret"].as_str().unwrap().to_owned();
    let until = time::OffsetDateTime::parse(
        res.body["previous_secret_expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(until, app.clock().now() + Duration::hours(5));
    assert_eq!(
        app.client_credentials_status(&id, &second).await,
        401,
        "replaced"
    );
    assert_eq!(
        app.client_credentials_status(&id, &third).await,
        200,
        "in its grace"
    );
    assert_eq!(app.client_credentials_status(&id, &fourth).await, 200);

    // A grace of 0 (a leaked secret): the old one stops now.
    let res = api
        .call_as(
            Some(&admin),
            Method::POST,
            &rotate,
            Some(json!({"grace_hours": 0})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["previous_secret_expires_at"], Value::Null);
    let fifth = res.body["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(app.client_credentials_status(&id, &fourth).await, 401);
    assert_eq!(app.client_credentials_status(&id, &third).await, 401);
    assert_eq!(app.client_credentials_status(&id, &fifth).await, 200);
}

#[tokio::test]
async fn an_update_changes_what_it_names_keeps_the_secret_and_records_old_and_new_values() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let mut body = service("Shop");
    body["backchannel_logout_uri"] = json!("https://svc.example.jp/bc");
    let (id, secret) = create(&api, body).await;
    let path = format!("clients/{id}");

    tick(&app);
    let res = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({
                "name": "Shop (new)",
                "redirect_uris": ["https://shop.example.jp/cb", "https://shop.example.jp/cb2"],
                "post_logout_redirect_uris": ["https://shop.example.jp/bye"],
                "id_token_alg": "EdDSA",
                "grant_types": ["client_credentials", "refresh_token"],
                "scopes": ["admin"],
            })),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["name"], "Shop (new)");
    assert_eq!(
        res.body["redirect_uris"],
        json!(["https://shop.example.jp/cb", "https://shop.example.jp/cb2"])
    );
    assert_eq!(res.body["id_token_signed_response_alg"], "EdDSA");
    assert_eq!(
        res.body["grant_types"],
        json!(["authorization_code", "client_credentials", "refresh_token"])
    );
    // Untouched fields stay.
    assert_eq!(
        res.body["backchannel_logout_uri"],
        "https://svc.example.jp/bc"
    );
    assert_eq!(res.body["first_party"], false);
    assert_eq!(
        app.client_credentials_status(&id, &secret).await,
        200,
        "the secret stays"
    );

    // `null` removes the back-channel URI; the rule about `sid` applies to the result.
    tick(&app);
    let res = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({"backchannel_logout_session_required": true})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    tick(&app);
    let res = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({"backchannel_logout_uri": null})),
        )
        .await;
    res.assert_problem(422);
    assert!(
        res.body["detail"]
            .as_str()
            .unwrap()
            .contains("back-channel")
    );
    tick(&app);
    let res = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({"backchannel_logout_uri": null, "backchannel_logout_session_required": false})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["backchannel_logout_uri"], Value::Null);

    // A change to nothing is no change.
    tick(&app);
    let res = api
        .call(Method::PATCH, &path, Some(json!({"name": "Shop (new)"})))
        .await;
    assert_eq!(res.status, 200);

    let updates: Vec<Value> = events_of(&app, &id)
        .await
        .into_iter()
        .filter(|e| e.action == "client.update")
        .map(|e| e.detail)
        .collect();
    // Each changed setting with its value before and after, so the log says which URI
    // or scope came or went.
    assert_eq!(
        updates,
        vec![
            json!({"changed": {
                "name": {"old": "Shop", "new": "Shop (new)"},
                "redirect_uris": {
                    "old": ["https://svc.example.jp/cb"],
                    "new": ["https://shop.example.jp/cb", "https://shop.example.jp/cb2"],
                },
                "post_logout_redirect_uris": {"old": [], "new": ["https://shop.example.jp/bye"]},
                "grant_types": {
                    "old": ["authorization_code", "client_credentials"],
                    "new": ["authorization_code", "client_credentials", "refresh_token"],
                },
                "id_token_signed_response_alg": {"old": "RS256", "new": "EdDSA"},
                "scopes": {"old": [], "new": ["admin"]},
            }}),
            json!({"changed": {
                "backchannel_logout_session_required": {"old": false, "new": true},
            }}),
            json!({"changed": {
                "backchannel_logout_uri": {"old": "https://svc.example.jp/bc", "new": null},
                "backchannel_logout_session_required": {"old": true, "new": false},
            }}),
        ]
    );
}

#[tokio::test]
async fn deleting_a_client_ends_its_grants_and_tokens() {
    let s = setup(ClientOpts {
        refresh: true,
        ..Default::default()
    })
    .await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let api = s.app.admin_api().await;

    // Another admin client, with a live token.
    let mut body = service("Second console");
    body["scopes"] = json!(["admin"]);
    let (other, other_secret) = create(&api, body).await;
    let other_token = s
        .app
        .client_credentials_token(&other, &other_secret, "admin")
        .await;
    assert_eq!(
        api.call_as(Some(&other_token), Method::GET, "clients", None)
            .await
            .status,
        200
    );

    // An admin client cannot remove itself (its request would cut its own access).
    let res = api
        .call(Method::DELETE, &format!("clients/{}", api.client_id), None)
        .await;
    res.assert_problem(409);

    for id in [&s.client_id, &other] {
        let res = api
            .call(Method::DELETE, &format!("clients/{id}"), None)
            .await;
        assert_eq!(res.status, 204, "{}", res.body);
        api.get(&format!("clients/{id}")).await.assert_problem(404);
        api.call(Method::DELETE, &format!("clients/{id}"), None)
            .await
            .assert_problem(404);
    }
    assert_tokens_dead(&s, &tokens).await;
    // The removed admin client's token is revoked, as every token issued to it.
    api.call_as(Some(&other_token), Method::GET, "clients", None)
        .await
        .assert_problem(401);
    assert_eq!(
        s.app.client_credentials_status(&other, &other_secret).await,
        401
    );
}

#[tokio::test]
async fn every_change_is_audited_with_the_caller_and_never_a_secret() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let (id, first) = create(&api, service("Audited")).await;
    tick(&app);
    let res = api
        .call(
            Method::PATCH,
            &format!("clients/{id}"),
            Some(json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(res.status, 200);
    tick(&app);
    let res = api
        .post(
            &format!("clients/{id}/rotate-secret"),
            json!({"grace_hours": 3}),
        )
        .await;
    let second = res.body["client_secret"].as_str().unwrap().to_owned();
    tick(&app);
    let res = api
        .call(Method::DELETE, &format!("clients/{id}"), None)
        .await;
    assert_eq!(res.status, 204);

    let events = events_of(&app, &id).await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "client.create",
            "client.update",
            "client.secret_rotate",
            "client.delete"
        ]
    );
    for e in &events {
        assert_eq!(e.actor_kind, "client");
        assert_eq!(e.actor, api.client_id);
        assert_eq!(e.target_kind, "client");
        assert_eq!(e.ip, "127.0.0.1");
        assert!(e.detail.is_object());
    }
    assert_eq!(
        events[1].detail,
        json!({"changed": {"name": {"old": "Audited", "new": "Renamed"}}})
    );
    assert_eq!(events[2].detail["grace_hours"], 3);
    let until = time::OffsetDateTime::parse(
        events[2].detail["previous_secret_expires_at"]
            .as_str()
            .unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    // The row's time may be cut to the database's precision.
    assert!((until - (events[2].at + Duration::hours(3))).abs() < Duration::seconds(1));
    assert_eq!(events[3].detail["name"], "Renamed");

    let all = serde_json::to_string(&events.iter().map(|e| &e.detail).collect::<Vec<_>>()).unwrap();
    for secret in [&first, &second] {
        assert!(!all.contains(secret.as_str()), "{all}");
        assert!(!all.contains(&sha256_hex(secret)), "{all}");
    }
    assert!(!all.contains("secret_hash"), "{all}");
}

#[tokio::test]
async fn admin_is_never_granted_through_authorize_even_to_an_admin_client() {
    // The client may use `admin` by client_credentials; a member's authorization must
    // still never carry it.
    let s = setup(ClientOpts {
        client_credentials: true,
        scopes: vec!["admin".to_owned()],
        ..Default::default()
    })
    .await;
    let pending = authorize(&s.rp, &[]);
    let url = with_param(&pending.url, "scope", "openid admin");
    let back = s
        .browser
        .sign_in(&url, crate::oidc::EMAIL, crate::oidc::PASSWORD, false)
        .await;
    let code = crate::oidc::code_from(&s, &back, &pending);
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let access = tokens.access_token().secret().clone();
    let claims = jwt_part(&access, 1);
    let scope = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(!scope.split(' ').any(|s| s == "admin"), "{scope}");
    if let Some(granted) = tokens.scopes() {
        assert!(granted.iter().all(|s| s.as_str() != "admin"), "{granted:?}");
    }

    let api = s.app.admin_api().await;
    for (method, path, body) in endpoints(&s.client_id) {
        let res: ApiResponse = api.call_as(Some(&access), method, &path, body).await;
        res.assert_problem(403);
    }
    // The client's own client_credentials token does get in.
    let own = s
        .app
        .client_credentials_token(&s.client_id, s.secret.as_deref().unwrap(), "admin")
        .await;
    assert_eq!(
        api.call_as(Some(&own), Method::GET, "clients", None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_cli_and_the_api_apply_one_rule_and_both_record_the_creation() {
    let db = TestDb::preferred().await;
    let url = db.url.clone();
    let app = TestApp::spawn_with(move |c| {
        c.database.url = tobira_auth::config::Secret::new(url);
    })
    .await;
    let api = app.admin_api().await;
    let tobira = Tobira::new(Some(&db));

    for bad in [
        "https://x.example/cb#frag",
        "http://x.example/cb",
        "ftp://x.example/cb",
    ] {
        let cli = tobira
            .run_off_thread(
                &["clients", "add", "--name", "X", "--redirect-uri", bad],
                None,
            )
            .await;
        assert!(!cli.status.success());
        let res = api
            .post("clients", json!({"name": "X", "redirect_uris": [bad]}))
            .await;
        res.assert_problem(422);
        let detail = res.body["detail"].as_str().unwrap();
        assert!(
            stderr(&cli).contains(detail),
            "the CLI says {:?}, the API {detail:?}",
            stderr(&cli)
        );
    }

    let cli = tobira
        .run_off_thread(
            &[
                "clients",
                "add",
                "--name",
                "From CLI",
                "--redirect-uri",
                "https://cli.example.jp/cb",
                "--client-id",
                "from-cli",
                "--json",
            ],
            None,
        )
        .await;
    assert!(cli.status.success(), "{}", stderr(&cli));
    assert!(stdout(&cli).contains("client_secret"));
    create(
        &api,
        json!({"name": "From API", "client_id": "from-api", "redirect_uris": ["https://api.example.jp/cb"]}),
    )
    .await;

    let cli_events = events_of(&app, "from-cli").await;
    assert_eq!(cli_events.len(), 1);
    assert_eq!(cli_events[0].action, "client.create");
    assert_eq!(cli_events[0].actor_kind, "support");
    let api_events = events_of(&app, "from-api").await;
    assert_eq!(api_events.len(), 1);
    assert_eq!(api_events[0].action, "client.create");
    assert_eq!(api_events[0].actor_kind, "client");
    assert_eq!(api_events[0].actor, api.client_id);
    // And a client_id taken through one is taken for the other.
    let dup = tobira
        .run_off_thread(
            &[
                "clients",
                "add",
                "--name",
                "Y",
                "--redirect-uri",
                "https://y.example/cb",
                "--client-id",
                "from-api",
            ],
            None,
        )
        .await;
    assert!(stderr(&dup).contains("exists"), "{}", stderr(&dup));
    api.post(
        "clients",
        json!({"name": "Y", "client_id": "from-cli", "redirect_uris": ["https://y.example/cb"]}),
    )
    .await
    .assert_problem(409);
}

/// A service that only uses client_credentials (an operations console, a reporting job)
/// has nowhere to send a code: it registers without a redirect URI, at the CLI and
/// through the API alike, and gets no authorization code flow.
#[tokio::test]
async fn a_client_credentials_client_needs_no_redirect_uri_and_gets_no_code_flow() {
    let db = TestDb::preferred().await;
    let url = db.url.clone();
    let app = TestApp::spawn_with(move |c| {
        c.database.url = tobira_auth::config::Secret::new(url);
    })
    .await;
    let api = app.admin_api().await;
    let tobira = Tobira::new(Some(&db));

    let (id, secret) = create(
        &api,
        json!({"name": "Console", "grant_types": ["client_credentials"], "scopes": ["admin"]}),
    )
    .await;
    let shown = api.get(&format!("clients/{id}")).await.body;
    assert_eq!(shown["redirect_uris"], json!([]));
    assert_eq!(shown["grant_types"], json!(["client_credentials"]));
    let token = app.client_credentials_token(&id, &secret, "admin").await;
    let res = api.call_as(Some(&token), Method::GET, "keys", None).await;
    assert_eq!(res.status, 200, "{}", res.body);
    // It may not redeem codes: it has no authorization_code grant.
    let res = app
        .http
        .post(app.url.join("/token").unwrap())
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "whatever"),
            ("redirect_uri", "https://console.example.jp/cb"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized_client", "{body}");

    let cli = tobira
        .run_off_thread(
            &[
                "clients",
                "add",
                "--name",
                "Console (CLI)",
                "--grant",
                "client_credentials",
                "--scope",
                "admin",
                "--json",
            ],
            None,
        )
        .await;
    assert!(cli.status.success(), "{}", stderr(&cli));
    let added: Value = serde_json::from_str(stdout(&cli).trim()).unwrap();
    assert_eq!(added["grant_types"], shown["grant_types"]);
    assert_eq!(added["redirect_uris"], shown["redirect_uris"]);

    // A redirect URI stays required wherever the code flow is granted, and refresh
    // tokens (which come from that flow) need one too: refused alike, in the same words.
    for (args, body) in [
        (vec!["--name", "X"], json!({"name": "X"})),
        (
            vec!["--name", "X", "--grant", "refresh_token"],
            json!({"name": "X", "grant_types": ["refresh_token"]}),
        ),
        (
            vec![
                "--name",
                "X",
                "--grant",
                "client_credentials",
                "--grant",
                "refresh_token",
            ],
            json!({"name": "X", "grant_types": ["client_credentials", "refresh_token"]}),
        ),
    ] {
        let res = api.post("clients", body.clone()).await;
        res.assert_problem(422);
        let detail = res.body["detail"].as_str().unwrap();
        assert!(detail.contains("redirect URI"), "{detail}");
        let mut all = vec!["clients", "add"];
        all.extend_from_slice(&args);
        let cli = tobira.run_off_thread(&all, None).await;
        assert!(!cli.status.success(), "{args:?}");
        assert!(
            stderr(&cli).contains(detail),
            "the CLI says {:?}, the API {detail:?}",
            stderr(&cli)
        );
    }

    // Its redirect URIs taken away, a client_credentials client leaves the code flow;
    // given one again, it is back.
    let (other, _) = create(&api, service("Other")).await;
    let path = format!("clients/{other}");
    let res = api
        .call(Method::PATCH, &path, Some(json!({"redirect_uris": []})))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["grant_types"], json!(["client_credentials"]));
    let res = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({"redirect_uris": ["https://svc.example.jp/cb"]})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(
        res.body["grant_types"],
        json!(["authorization_code", "client_credentials"])
    );
    // A client without client_credentials cannot lose its last redirect URI.
    let (member_app, _) = create(
        &api,
        json!({"name": "Shop", "redirect_uris": ["https://shop.example.jp/cb"]}),
    )
    .await;
    api.call(
        Method::PATCH,
        &format!("clients/{member_app}"),
        Some(json!({"redirect_uris": []})),
    )
    .await
    .assert_problem(422);
}

/// A leaked admin secret rotated with no grace: tokens already got with it stop at the
/// admin API at once, not when they expire (review: the attacker kept ten minutes to
/// register an admin client of their own).
#[tokio::test]
async fn rotating_an_admin_secret_without_grace_ends_the_tokens_got_with_it() {
    let app = TestApp::spawn().await;
    let operator = app.admin_api().await;
    let leaked = app.admin_api().await;
    assert_eq!(leaked.get("clients").await.status, 200);

    app.clock().advance(Duration::seconds(2));
    let rotate = format!("clients/{}/rotate-secret", leaked.client_id);
    let res = operator.post(&rotate, json!({"grace_hours": 0})).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let new_secret = res.body["client_secret"].as_str().unwrap().to_owned();

    leaked.get("clients").await.assert_problem(403);
    let attack = leaked
        .post(
            "clients",
            json!({
                "name": "x",
                "redirect_uris": ["https://a.example/cb"],
                "grant_types": ["client_credentials"],
                "scopes": ["admin"],
            }),
        )
        .await;
    attack.assert_problem(403);

    // The owner, redeployed with the new secret, carries on.
    app.clock().advance(Duration::seconds(2));
    let fresh = app
        .client_credentials_token(&leaked.client_id, &new_secret, "admin")
        .await;
    let res = leaked
        .call_as(Some(&fresh), Method::GET, "clients", None)
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
}

/// An update computed from an older read changes nothing (review: a concurrent update
/// put back an `admin` scope another operator had just removed).
#[tokio::test]
async fn an_update_from_a_stale_read_changes_nothing() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let (id, _) = create(
        &api,
        json!({
            "name": "Reports",
            "redirect_uris": ["https://svc.example.jp/cb"],
            "grant_types": ["client_credentials"],
            "scopes": ["admin"],
        }),
    )
    .await;
    let db = &app.state.db;
    let stale = db.clients().find(&id).await.unwrap().unwrap();

    let res = api
        .call(
            Method::PATCH,
            &format!("clients/{id}"),
            Some(json!({"scopes": []})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);

    let mut renamed = stale.clone();
    renamed.name = "Reports (renamed)".to_owned();
    let event = audit::event(
        app.clock().now(),
        &audit::Context::cli(),
        "client.update",
        audit::Target::Client(id.clone()),
        json!({ "changed": { "name": { "old": "Reports", "new": "Reports (renamed)" } } }),
    );
    assert!(!db.clients().update(&stale, &renamed, &event).await.unwrap());
    let now = db.clients().find(&id).await.unwrap().unwrap();
    assert!(now.scopes.is_empty(), "the removed scope stays removed");
    assert_eq!(now.name, "Reports");
}
