//! The token endpoint's bookkeeping: every code, access token and refresh request is
//! looked up by its own key, so one client's many tokens never stand in for each other;
//! and no token outlives its client, even when the client_id is registered again.

use openidconnect::{OAuth2TokenResponse, RefreshToken, Scope};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{AdminApi, ClientOpts, TestApp};
use crate::oidc::{
    REDIRECT, Setup, authorize, code_from, exchange, setup, sign_in_for_code, token_error,
    userinfo_status, verify_id_token,
};
use crate::protocol::post_token_endpoint;
use crate::rp::TokenResponse;

/// Another authorization by the signed-in member: answered at once (SSO) with a new
/// code, redeemed for a new grant's tokens.
async fn authorize_again(s: &Setup) -> TokenResponse {
    let pending = authorize(&s.rp, &[]);
    let back = s.browser.follow(s.browser.get(&pending.url).await).await;
    let code = code_from(s, &back, &pending);
    exchange(s, code, pending.verifier).await.unwrap()
}

#[tokio::test]
async fn two_codes_for_one_member_and_client_are_each_redeemable_oldest_first() {
    let s = setup(ClientOpts::default()).await;
    let first = authorize(&s.rp, &[]);
    let older = sign_in_for_code(&s, &first).await;
    // Signed in now: the second request gets its code at once, before the first is used.
    let second = authorize(&s.rp, &[]);
    let back = s.browser.follow(s.browser.get(&second.url).await).await;
    let newer = code_from(&s, &back, &second);
    assert_ne!(older.secret(), newer.secret());

    let older_tokens = exchange(&s, older.clone(), first.verifier)
        .await
        .expect("the older code, redeemed first");
    let newer_tokens = exchange(&s, newer, second.verifier)
        .await
        .expect("the newer code, still redeemable after the older one");
    // Each code carried its own request: its own nonce in its own ID token.
    verify_id_token(&s, &older_tokens, &first.nonce);
    verify_id_token(&s, &newer_tokens, &second.nonce);
    assert_eq!(userinfo_status(&s, older_tokens.access_token()).await, 200);
    assert_eq!(userinfo_status(&s, newer_tokens.access_token()).await, 200);

    // A made-up code is refused and revokes nothing.
    let made_up = openidconnect::AuthorizationCode::new("never-issued".to_owned());
    let verifier = openidconnect::PkceCodeVerifier::new("v".repeat(43));
    assert_eq!(
        exchange(&s, made_up, verifier).await.unwrap_err(),
        "invalid_grant"
    );
    assert_eq!(userinfo_status(&s, older_tokens.access_token()).await, 200);
    assert_eq!(userinfo_status(&s, newer_tokens.access_token()).await, 200);

    // Replaying the older code revokes what it issued, and only that.
    let verifier = openidconnect::PkceCodeVerifier::new("w".repeat(43));
    assert_eq!(
        exchange(&s, older, verifier).await.unwrap_err(),
        "invalid_grant"
    );
    assert_eq!(userinfo_status(&s, older_tokens.access_token()).await, 401);
    assert_eq!(userinfo_status(&s, newer_tokens.access_token()).await, 200);
}

#[tokio::test]
async fn revoking_one_access_token_leaves_the_others_valid() {
    let s = setup(ClientOpts {
        refresh: true,
        ..Default::default()
    })
    .await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let first = exchange(&s, code, pending.verifier).await.unwrap();
    // A second access token of the same grant, from a refresh…
    let rt = first.refresh_token().unwrap();
    let refreshed =
        s.rp.exchange_refresh_token(rt)
            .unwrap()
            .request_async(&s.http)
            .await
            .unwrap();
    // …and one of another grant of the same member and client.
    let other_grant = authorize_again(&s).await;
    let (a, b, c) = (
        first.access_token(),
        refreshed.access_token(),
        other_grant.access_token(),
    );
    assert!(a.secret() != b.secret() && b.secret() != c.secret());
    for token in [a, b, c] {
        assert_eq!(userinfo_status(&s, token).await, 200);
    }

    let (status, _) = post_token_endpoint(&s, "/revoke", &[("token", a.secret())]).await;
    assert_eq!(status, 200);
    assert_eq!(userinfo_status(&s, a).await, 401, "the revoked token");
    assert_eq!(
        userinfo_status(&s, b).await,
        200,
        "same grant, another token"
    );
    assert_eq!(userinfo_status(&s, c).await, 200, "another grant");
    let (_, body) = post_token_endpoint(&s, "/introspect", &[("token", b.secret())]).await;
    assert_eq!(body["active"], true, "{body}");

    // Each token's revocation is its own: revoking the second now takes it too.
    let (status, _) = post_token_endpoint(&s, "/revoke", &[("token", b.secret())]).await;
    assert_eq!(status, 200);
    assert_eq!(userinfo_status(&s, b).await, 401);
    assert_eq!(userinfo_status(&s, c).await, 200);
}

#[tokio::test]
async fn a_refresh_asking_for_more_than_the_grant_is_refused_with_invalid_scope() {
    let s = setup(ClientOpts {
        refresh: true,
        ..Default::default()
    })
    .await;
    // The grant holds `openid email profile` (see `authorize`).
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    // A narrower scope is allowed (RFC 6749 §6).
    let narrower =
        s.rp.exchange_refresh_token(tokens.refresh_token().unwrap())
            .unwrap()
            .add_scope(Scope::new("openid".to_owned()))
            .request_async(&s.http)
            .await
            .expect("a narrower scope");
    assert!(narrower.refresh_token().is_some());

    for wider in [
        &["openid", "email", "profile", "phone"][..],
        &["address"],
        &["openid", "offline_access"],
    ] {
        // A fresh grant each time, so one refusal cannot taint the next attempt.
        let tokens = authorize_again(&s).await;
        let rt: &RefreshToken = tokens.refresh_token().unwrap();
        let mut request = s.rp.exchange_refresh_token(rt).unwrap();
        for scope in wider {
            request = request.add_scope(Scope::new((*scope).to_owned()));
        }
        let err = request.request_async(&s.http).await.unwrap_err();
        assert_eq!(token_error(err), "invalid_scope", "{wider:?}");
        // The refusal rolled the spend back: the same token still rotates, once.
        let rotated =
            s.rp.exchange_refresh_token(rt)
                .unwrap()
                .request_async(&s.http)
                .await
                .expect("the refused token is still live");
        assert!(rotated.refresh_token().is_some());
        let replay = s.rp.exchange_refresh_token(rt).unwrap();
        let err = replay.request_async(&s.http).await.unwrap_err();
        assert_eq!(token_error(err), "invalid_grant", "{wider:?}");
    }
}

#[tokio::test]
async fn of_concurrent_presentations_of_one_refresh_token_exactly_one_rotates() {
    let s = setup(ClientOpts {
        refresh: true,
        ..Default::default()
    })
    .await;
    let tokens = authorize_again_after_sign_in(&s).await;
    let rt: &RefreshToken = tokens.refresh_token().unwrap();
    // Four at once, as a client retrying on a flaky network (or a thief racing it)
    // would send them: one spend wins, the others find the token spent.
    let attempt = || async {
        s.rp.exchange_refresh_token(rt)
            .unwrap()
            .request_async(&s.http)
            .await
    };
    let (a, b, c, d) = tokio::join!(attempt(), attempt(), attempt(), attempt());
    let (rotated, refused): (Vec<_>, Vec<_>) = [a, b, c, d].into_iter().partition(Result::is_ok);
    assert_eq!(rotated.len(), 1, "{refused:?}");
    for err in refused {
        assert_eq!(token_error(err.unwrap_err()), "invalid_grant");
    }
    // A spent token came back, so the grant is revoked (RFC 9700 §4.14.2): the winner's
    // successor is dead too, and nothing was left half-written.
    let successor = rotated.into_iter().next().unwrap().unwrap();
    let err =
        s.rp.exchange_refresh_token(successor.refresh_token().unwrap())
            .unwrap()
            .request_async(&s.http)
            .await
            .unwrap_err();
    assert_eq!(token_error(err), "invalid_grant");
}

async fn authorize_again_after_sign_in(s: &Setup) -> TokenResponse {
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(s, &pending).await;
    exchange(s, code, pending.verifier).await.unwrap()
}

#[tokio::test]
async fn basic_credentials_with_another_client_id_in_the_body_are_refused() {
    let s = setup(ClientOpts::default()).await;
    let (other_id, _) = s
        .app
        .add_client(ClientOpts {
            name: "Other",
            ..Default::default()
        })
        .await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let redeem = |client_id: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.secret().clone()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", pending.verifier.secret().clone()),
            ("client_id", client_id.to_owned()),
        ]
    };
    // RFC 6749 §2.3: one client per request. Basic says one client, the body another.
    for body_client in [other_id.as_str(), "no-such-client"] {
        let form = redeem(body_client);
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = post_token_endpoint(&s, "/token", &form).await;
        assert_eq!(status, 400, "{body_client}: {body}");
        assert_eq!(body["error"], "invalid_request", "{body_client}: {body}");
        assert!(body.get("access_token").is_none());
    }
    // The same client named twice is fine, and the refusals above left the code unspent.
    let form = redeem(&s.client_id);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = post_token_endpoint(&s, "/token", &form).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string(), "{body}");
}

/// What `/introspect` says of `token` to the client `client_id` with `secret`.
async fn introspect_as(app: &TestApp, client_id: &str, secret: &str, token: &str) -> Value {
    let res = app
        .http
        .post(app.url.join("/introspect").unwrap())
        .basic_auth(client_id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Registers, through the admin API, a client_credentials client with the admin scope
/// under `client_id`; its secret.
async fn register_service(api: &AdminApi, client_id: &str) -> String {
    let res = api
        .post(
            "clients",
            json!({
                "name": "Reports",
                "client_id": client_id,
                "redirect_uris": ["https://reports.example.jp/cb"],
                "grant_types": ["client_credentials"],
                "scopes": ["admin"],
            }),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body["client_secret"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_deleted_clients_tokens_stay_dead_even_when_its_client_id_is_registered_again() {
    let s = setup(ClientOpts::default()).await;
    let app = &s.app;
    let api = app.admin_api().await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let member = exchange(&s, code, pending.verifier).await.unwrap();

    let old_secret = register_service(&api, "reports").await;
    let token = app
        .client_credentials_token("reports", &old_secret, "admin")
        .await;
    let seen = introspect_as(app, "reports", &old_secret, &token).await;
    assert_eq!(seen["active"], true, "{seen}");
    let as_reports = |token: String| {
        let api = &api;
        async move { api.call_as(Some(&token), Method::GET, "keys", None).await }
    };
    assert_eq!(as_reports(token.clone()).await.status, 200);

    // Both clients removed, then registered again under the same ids a second later
    // (someone else's app, or the same one set up anew): the new registrations must
    // not inherit what was issued to the old ones.
    for id in ["reports", s.client_id.as_str()] {
        let res = api
            .call(Method::DELETE, &format!("clients/{id}"), None)
            .await;
        assert_eq!(res.status, 204, "{}", res.body);
    }
    app.clock().advance(time::Duration::seconds(1));
    let new_secret = register_service(&api, "reports").await;
    let res = api
        .post(
            "clients",
            json!({
                "name": "Partner Site",
                "client_id": s.client_id,
                "redirect_uris": [REDIRECT],
                "first_party": true,
            }),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let partner_secret = res.body["client_secret"].as_str().unwrap().to_owned();

    let seen = introspect_as(app, "reports", &new_secret, &token).await;
    assert_eq!(seen, json!({ "active": false }));
    as_reports(token.clone()).await.assert_problem(401);
    let access = member.access_token().secret();
    let seen = introspect_as(app, &s.client_id, &partner_secret, access).await;
    assert_eq!(seen, json!({ "active": false }));
    assert_eq!(userinfo_status(&s, member.access_token()).await, 401);

    // What the new registration gets itself works.
    let fresh = app
        .client_credentials_token("reports", &new_secret, "admin")
        .await;
    let seen = introspect_as(app, "reports", &new_secret, &fresh).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(as_reports(fresh).await.status, 200);
}
