//! What a grant's tokens may do over time: a narrowing refresh narrows the access token
//! everywhere it is read, offline grants end at an absolute lifetime whatever the
//! rotations, and a replayed code revokes its grant even when the replay races the first
//! redemption.

use openidconnect::{OAuth2TokenResponse, RefreshToken};
use serde_json::Value;
use time::Duration;

use crate::helpers::ClientOpts;
use crate::oidc::{Setup, authorize, exchange, setup, setup_with, sign_in_for_code, with_param};
use crate::protocol::post_token_endpoint;

fn refreshing() -> ClientOpts {
    ClientOpts {
        refresh: true,
        ..Default::default()
    }
}

async fn refresh(s: &Setup, token: &str, scope: Option<&str>) -> (u16, Value) {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    post_token_endpoint(s, "/token", &form).await
}

async fn userinfo(s: &Setup, access_token: &str) -> (u16, Value) {
    let res = s
        .http
        .0
        .get(format!("{}/userinfo", s.app.issuer()))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Signs in with `scope` and returns the first refresh token.
async fn first_refresh_token(s: &Setup, scope: &str) -> String {
    let mut pending = authorize(&s.rp, &[]);
    pending.url = with_param(&pending.url, "scope", scope);
    let code = sign_in_for_code(s, &pending).await;
    let tokens = exchange(s, code, pending.verifier).await.unwrap();
    tokens
        .refresh_token()
        .expect("a refresh token")
        .secret()
        .clone()
}

#[tokio::test]
async fn a_narrowing_refresh_narrows_the_access_token_everywhere_but_not_the_grant() {
    let s = setup(refreshing()).await;
    let rt = first_refresh_token(&s, "openid email profile").await;

    let (status, narrow) = refresh(&s, &rt, Some("openid profile")).await;
    assert_eq!(status, 200, "{narrow}");
    assert_eq!(narrow["scope"], "openid profile");
    let at = narrow["access_token"].as_str().unwrap();
    let (status, claims) = userinfo(&s, at).await;
    assert_eq!(status, 200);
    assert!(claims.get("email").is_none(), "userinfo narrowed: {claims}");
    assert!(claims.get("name").is_some());
    let (_, info) = post_token_endpoint(&s, "/introspect", &[("token", at)]).await;
    assert_eq!(info["active"], true);
    assert_eq!(
        info["scope"], "openid profile",
        "introspection narrowed: {info}"
    );

    // The rotated refresh token keeps the original scope.
    let rt2 = narrow["refresh_token"].as_str().unwrap();
    let (status, full) = refresh(&s, rt2, None).await;
    assert_eq!(status, 200, "{full}");
    assert_eq!(full["scope"], "openid profile email");
    let (_, claims) = userinfo(&s, full["access_token"].as_str().unwrap()).await;
    assert!(claims.get("email").is_some(), "{claims}");

    // Wider than the grant is refused.
    let rt3 = full["refresh_token"].as_str().unwrap();
    let (status, err) = refresh(&s, rt3, Some("openid email offline_access")).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    // …without spending the token: the client's retry is not a reuse.
    let (status, body) = refresh(&s, rt3, None).await;
    assert_eq!(status, 200, "{body}");

    // An ID token comes with `openid` in the scope, alone too, and only then.
    let rt4 = body["refresh_token"].as_str().unwrap();
    let (status, only_openid) = refresh(&s, rt4, Some("openid")).await;
    assert_eq!(status, 200, "{only_openid}");
    assert!(only_openid["id_token"].is_string(), "{only_openid}");
    let rt5 = only_openid["refresh_token"].as_str().unwrap();
    let (status, no_openid) = refresh(&s, rt5, Some("email")).await;
    assert_eq!(status, 200, "{no_openid}");
    assert!(no_openid.get("id_token").is_none(), "{no_openid}");
}

#[tokio::test]
async fn an_offline_grant_ends_at_its_absolute_lifetime_however_often_it_rotates() {
    let s = setup_with(refreshing(), |c| {
        c.tokens.refresh_token_days = 2;
        c.tokens.offline_max_days = 5;
    })
    .await;
    let mut rt = first_refresh_token(&s, "openid offline_access").await;
    // Rotating every day keeps it alive up to the absolute lifetime…
    for day in 1..5 {
        s.app.clock().advance(Duration::days(1));
        let (status, body) = refresh(&s, &rt, None).await;
        assert_eq!(status, 200, "day {day}: {body}");
        rt = body["refresh_token"].as_str().unwrap().to_owned();
    }
    // …and not past it, though this token is only a day old.
    s.app.clock().advance(Duration::days(1));
    let (status, body) = refresh(&s, &rt, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn an_access_token_dies_with_its_grant_at_the_very_instant_the_grant_ends() {
    // An offline grant ends `offline_max_days` after it was made; an access token issued
    // a minute before is refused from that instant on, though it has not expired.
    let s = setup_with(refreshing(), |c| c.tokens.offline_max_days = 5).await;
    let rt = first_refresh_token(&s, "openid offline_access").await;
    s.app
        .clock()
        .advance(Duration::days(5) - Duration::minutes(1));
    let (status, body) = refresh(&s, &rt, None).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&s, access).await.0, 200);
    s.app.clock().advance(Duration::minutes(1));
    assert_eq!(userinfo(&s, access).await.0, 401, "the grant ended now");

    // A grant that lives as long as its browser session: refused from the instant the
    // session expires.
    let s = setup(refreshing()).await;
    let rt = first_refresh_token(&s, "openid").await;
    let user = s.app.user(crate::oidc::EMAIL).await.unwrap();
    let now = s.app.clock().now();
    let idle = Duration::minutes(i64::from(s.app.state.config.session.idle_timeout_mins));
    let sessions = s.app.state.db.sessions();
    let session = sessions.list_live(user.id, now, idle).await.unwrap();
    let ends = session[0].expires_at;
    s.app.clock().advance(ends - now - Duration::minutes(1));
    let (status, body) = refresh(&s, &rt, None).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&s, access).await.0, 200);
    s.app.clock().advance(Duration::minutes(1));
    assert_eq!(s.app.clock().now(), ends);
    assert_eq!(userinfo(&s, access).await.0, 401, "the session ended now");
}

#[tokio::test]
async fn an_unused_refresh_token_expires_after_the_idle_window() {
    let s = setup_with(refreshing(), |c| c.tokens.refresh_token_days = 2).await;
    let rt = first_refresh_token(&s, "openid offline_access").await;
    s.app
        .clock()
        .advance(Duration::days(2) + Duration::seconds(1));
    let (status, body) = refresh(&s, &rt, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn a_code_replayed_while_its_first_redemption_runs_still_revokes_the_grant() {
    let s = setup(refreshing()).await;
    for _ in 0..8 {
        let pending = authorize(&s.rp, &[("prompt", "login")]);
        let code = sign_in_for_code(&s, &pending).await;
        let verifier = pending.verifier.secret().clone();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.secret().as_str()),
            ("redirect_uri", crate::oidc::REDIRECT),
            ("code_verifier", verifier.as_str()),
        ];
        let (a, b) = tokio::join!(
            post_token_endpoint(&s, "/token", &form),
            post_token_endpoint(&s, "/token", &form)
        );
        let winners: Vec<&Value> = [&a, &b]
            .into_iter()
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
            .collect();
        // At most one redemption gives tokens (none, when the replay revoked the grant
        // before the first finished issuing), and the replay revokes what it gave.
        assert!(winners.len() <= 1, "{a:?} {b:?}");
        let losers = [&a, &b].into_iter().filter(|(status, _)| *status != 200);
        assert!(losers.clone().count() >= 1);
        assert!(
            losers
                .into_iter()
                .all(|(_, body)| body["error"] == "invalid_grant")
        );
        let Some(winner) = winners.first() else {
            continue;
        };
        let (status, _) = userinfo(&s, winner["access_token"].as_str().unwrap()).await;
        assert_eq!(status, 401, "the grant was revoked");
        let rt = RefreshToken::new(winner["refresh_token"].as_str().unwrap().to_owned());
        let (status, _) = refresh(&s, rt.secret(), None).await;
        assert_eq!(status, 400);
    }
}
