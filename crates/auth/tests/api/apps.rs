//! `/account/apps`, as a member meets it: the apps connected to the account with what
//! each may see, and "remove access", which revokes the app's tokens, forgets the consent
//! and signs the member out of the app by back-channel logout; and as an attacker would
//! try it: another member's app, a made-up one, a replayed or cross-site form.

use openidconnect::{OAuth2TokenResponse, TokenResponse as _};
use tobira_auth::keys::Alg;

use crate::backchannel::{Receiver, checked};
use crate::helpers::{ClientOpts, Page};
use crate::oidc::{Setup, authorize, code_from, exchange, setup};
use crate::protocol::{consent_page, decide};

fn apps(page: &Page) -> Vec<&str> {
    page.body
        .split(r#"<li data-testid="app">"#)
        .skip(1)
        .map(|item| item.split("</form>").next().unwrap())
        .collect()
}

async fn list(s: &Setup) -> Page {
    let page = s.browser.get("/account/apps").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page
}

async fn remove(s: &Setup, page: &Page, client_id: &str) -> Page {
    let csrf = page.field("csrf").unwrap();
    s.browser
        .post_form(
            "/account/apps/remove",
            &[("csrf", &csrf), ("client_id", client_id)],
        )
        .await
}

/// A third-party client with consent and refresh tokens, listening for logouts.
async fn partner(receiver: &Receiver, session_required: bool) -> Setup {
    setup(ClientOpts {
        first_party: false,
        refresh: true,
        backchannel_logout_uri: Some(receiver.uri()),
        backchannel_logout_session_required: session_required,
        scopes: Vec::new(),
        ..Default::default()
    })
    .await
}

/// Signs in to the partner, allowing it on the consent page; its tokens.
async fn connect(s: &Setup) -> crate::rp::TokenResponse {
    let mut pending = authorize(&s.rp, &[]);
    pending.url =
        crate::oidc::with_param(&pending.url, "scope", "openid email profile offline_access");
    let page = consent_page(s, &pending.url).await;
    let back = decide(s, &page, "allow").await;
    let code = code_from(s, &back, &pending);
    exchange(s, code, pending.verifier).await.unwrap()
}

#[tokio::test]
async fn the_connected_apps_are_listed_with_what_they_may_see() {
    let receiver = Receiver::start().await;
    let s = partner(&receiver, false).await;
    // Signed in to the console only: nothing is connected.
    let page = s.browser.get("/account/apps").await;
    assert_eq!(page.status, 303, "the console needs a sign-in first");
    connect(&s).await;
    let page = list(&s).await;
    let listed = apps(&page);
    assert_eq!(listed.len(), 1, "{}", page.body);
    assert!(listed[0].contains("Partner Site"));
    assert!(listed[0].contains("メールアドレス"), "{}", listed[0]);
    assert!(listed[0].contains("表示名と言語の設定"));
    assert!(
        listed[0].contains("ログアウト中も"),
        "offline access is named"
    );
    assert!(listed[0].contains(&format!(r#"name="client_id" value="{}""#, s.client_id)));
    assert!(listed[0].contains("連携開始") && listed[0].contains("最終利用"));

    // A first-party app signed in from the same session is listed too.
    let (mp_id, mp_secret) = s
        .app
        .add_client(ClientOpts {
            name: "スキルマーケット",
            ..Default::default()
        })
        .await;
    let mp = crate::rp::client(
        &s.http,
        &s.app.issuer(),
        &mp_id,
        crate::rp::Auth::Basic(mp_secret.unwrap()),
        crate::oidc::REDIRECT,
    )
    .await;
    let back = s.browser.get(&authorize(&mp, &[]).url).await;
    assert!(back.location.unwrap().contains("code="));
    let page = list(&s).await;
    assert_eq!(apps(&page).len(), 2);
    assert!(page.body.contains("スキルマーケット"));
    // The overview links here.
    let overview = s.browser.get("/account").await;
    assert!(overview.body.contains(r#"href="/account/apps""#));

    // Once its access token has expired, an app without a refresh token or a consent has
    // nothing left to act with and leaves the list; the partner (consent, refresh) stays.
    let life = s.app.state.config.tokens.access_token_secs;
    s.app
        .clock()
        .advance(time::Duration::seconds(i64::from(life) + 1));
    let page = list(&s).await;
    assert_eq!(apps(&page).len(), 1, "{}", page.body);
    assert!(!page.body.contains("スキルマーケット"));
    assert!(page.body.contains("Partner Site"));
}

#[tokio::test]
async fn a_first_party_app_stays_listed_while_its_refresh_token_lives() {
    // No consent row to list it by: only its live refresh token keeps it on the list
    // once its access token has expired.
    let (s, tokens) = crate::oidc::signed_in_with_refresh().await;
    let life = s.app.state.config.tokens.access_token_secs;
    s.app
        .clock()
        .advance(time::Duration::seconds(i64::from(life) + 1));
    assert_eq!(
        apps(&list(&s).await).len(),
        1,
        "listed by its refresh token"
    );
    // Spent by a refresh: the new token keeps it listed.
    s.rp.exchange_refresh_token(tokens.refresh_token().unwrap())
        .unwrap()
        .request_async(&s.http)
        .await
        .unwrap();
    s.app
        .clock()
        .advance(time::Duration::seconds(i64::from(life) + 1));
    assert_eq!(
        apps(&list(&s).await).len(),
        1,
        "listed by the rotated token"
    );
}

#[tokio::test]
async fn removing_access_revokes_tokens_forgets_consent_and_logs_the_app_out() {
    let receiver = Receiver::start().await;
    let s = partner(&receiver, false).await;
    let tokens = connect(&s).await;
    let id = payload(&tokens.id_token().unwrap().to_string());
    let page = list(&s).await;

    let done = remove(&s, &page, &s.client_id).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let page = s.browser.follow(done).await;
    assert!(page.body.contains("アクセスを解除し"), "{}", page.body);
    assert!(apps(&page).is_empty());
    assert!(page.body.contains("連携中のアプリはありません"));

    // The refresh token (offline, too) is dead; the access token is inactive.
    crate::oidc::assert_tokens_dead(&s, &tokens).await;
    // The app heard about it: sub only (the member left the app, not a session).
    let got = receiver.wait_for(1).await;
    let claims = checked(&s.app, &got[0], &s.client_id, Alg::RS256);
    assert_eq!(claims["sub"], id["sub"]);
    assert!(!claims.contains_key("sid"));
    // The consent is forgotten: the app has to ask again.
    let pending = authorize(&s.rp, &[]);
    let page = consent_page(&s, &pending.url).await;
    assert!(page.body.contains(r#"value="allow""#), "{}", page.body);
    // The member's own session at the OP is untouched.
    assert_eq!(s.browser.get("/account").await.status, 200);
}

#[tokio::test]
async fn a_client_that_requires_sid_gets_a_logout_for_the_session_holding_its_grant() {
    let receiver = Receiver::start().await;
    let s = partner(&receiver, true).await;
    let tokens = connect(&s).await;
    let id = payload(&tokens.id_token().unwrap().to_string());
    let page = list(&s).await;
    assert_eq!(remove(&s, &page, &s.client_id).await.status, 303);
    let got = receiver.wait_for(1).await;
    let claims = checked(&s.app, &got[0], &s.client_id, Alg::RS256);
    assert_eq!(claims["sub"], id["sub"]);
    assert_eq!(claims["sid"], id["sid"]);
}

#[tokio::test]
async fn another_members_made_up_replayed_or_forged_removals_change_nothing() {
    let receiver = Receiver::start().await;
    let s = partner(&receiver, false).await;
    let tokens = connect(&s).await;
    let page = list(&s).await;
    // Another client of the OP that this member never used: not theirs to remove.
    let (stranger, _) = s
        .app
        .add_client(ClientOpts {
            name: "Stranger",
            ..Default::default()
        })
        .await;
    for id in [stranger.as_str(), "no-such-client", "", &"x".repeat(5000)] {
        let refused = remove(&s, &page, id).await;
        assert_eq!(refused.status, 404, "{id}: {}", refused.body);
        assert!(
            refused.body.contains("連携していません"),
            "{}",
            refused.body
        );
    }
    // Another member, signed in to their own console, names this member's app: not
    // connected to them, so nothing happens to this member's access.
    s.app
        .add_user("taro@example.jp", crate::oidc::PASSWORD)
        .await;
    let taro = crate::sessions::signed_in(&s.app, "taro@example.jp", "tests").await;
    let theirs = taro.get("/account/apps").await;
    assert_eq!(theirs.status, 200);
    assert!(apps(&theirs).is_empty());
    // (An empty list has no form; the profile page's token is this browser's too.)
    let csrf = taro.get("/account/profile").await.field("csrf").unwrap();
    let refused = taro
        .post_form(
            "/account/apps/remove",
            &[("csrf", &csrf), ("client_id", &s.client_id)],
        )
        .await;
    assert_eq!(refused.status, 404, "{}", refused.body);
    // Without the CSRF token, or from another site: refused.
    let no_csrf = s
        .browser
        .post_form("/account/apps/remove", &[("client_id", &s.client_id)])
        .await;
    assert_eq!(no_csrf.status, 403);
    let csrf = page.field("csrf").unwrap();
    let cross = s
        .browser
        .post_form_with(
            "/account/apps/remove",
            &[("csrf", &csrf), ("client_id", &s.client_id)],
            &[
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(cross.status, 403);
    // Without a session: to sign in, nothing removed.
    let anonymous = s.app.browser();
    let form = anonymous
        .post_form(
            "/account/apps/remove",
            &[("csrf", "x"), ("client_id", &s.client_id)],
        )
        .await;
    assert!(matches!(form.status, 303 | 403), "{}", form.body);
    // Nothing changed: the app is still listed and its tokens work.
    assert_eq!(apps(&list(&s).await).len(), 1);
    assert_eq!(
        crate::oidc::userinfo_status(&s, tokens.access_token()).await,
        200
    );
    assert!(receiver.tokens().is_empty());
    // Removed once; the same form again finds nothing.
    assert_eq!(remove(&s, &page, &s.client_id).await.status, 303);
    assert_eq!(remove(&s, &page, &s.client_id).await.status, 404);
    // A GET of the form's address shows the list.
    let get = s.browser.get("/account/apps/remove").await;
    assert_eq!(get.location.as_deref(), Some("/account/apps"));
}

fn payload(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part).unwrap(),
    )
    .unwrap()
}
