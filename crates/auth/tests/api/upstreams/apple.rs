//! Sign in with Apple against a stand-in: `response_mode=form_post` (a cross-site POST
//! that carries no cookie, turned into a GET by the downstream), the `user` field on the
//! first authorization only, the ES256 client-secret JWT checked as Apple checks it,
//! `email_verified`/`is_private_email` as strings, the refresh token revoked when the
//! account is deleted.

use std::time::Duration as StdDuration;

use time::Duration;
use tobira_auth::config::ProviderKind;

use super::stand_in::{APPLE_AUDIENCE, ClientAuth, Flavor, Member, Op, SigningKey};
use super::{
    CANCELLED, MISCONFIGURED, asks_to_sign_in_first, at_provider, attr, back, callback,
    hidden_fields, not_signed_in, nothing_made, offers_other_ways, plain, press, provider,
    sign_in_page, signed_in,
};
use crate::helpers::{Browser, Page, TestApp};

const ID: &str = "apple";
/// A Services ID.
const CLIENT_ID: &str = "jp.example.tobira.signin";
const TEAM_ID: &str = "TEAM123456";
const KEY_ID: &str = "KEY1234567";
const RELAY: &str = "x7k2m9q4pz@privaterelay.appleid.com";
const SUB: &str = "000792.d71059495fa24644b94e4a644e2e3b4a.0638";

fn member() -> Member {
    Member {
        sub: SUB.to_owned(),
        email: RELAY.to_owned(),
        email_verified: true,
        given_name: "太郎".to_owned(),
        family_name: "山田".to_owned(),
    }
}

struct Setup {
    op: Op,
    app: TestApp,
    browser: Browser,
    _keys: tempfile::TempDir,
}

/// Apple knows the team key `registered`; the downstream signs its client secrets with
/// `used` (the `.p8` file it is configured with).
async fn setup_keys(registered: &SigningKey, used: &SigningKey) -> Setup {
    let op = Op::start(
        Flavor::Apple,
        CLIENT_ID,
        ClientAuth::AppleKey {
            team_id: TEAM_ID.to_owned(),
            key_id: KEY_ID.to_owned(),
            public: registered.public.clone(),
        },
        member(),
    )
    .await;
    let keys = tempfile::tempdir().expect("a temporary directory");
    let p8 = keys.path().join(format!("AuthKey_{KEY_ID}.p8"));
    std::fs::write(&p8, &used.private_pem).expect("the key file");
    let base = op.base().to_owned();
    let issuer = op.issuer().to_owned();
    let app = TestApp::spawn_with(|c| {
        c.federation.timeout_ms = 2_000;
        let mut p = provider(ID, ProviderKind::Apple, CLIENT_ID);
        p.team_id = TEAM_ID.to_owned();
        p.key_id = KEY_ID.to_owned();
        p.private_key_file = p8.to_string_lossy().into_owned();
        p.issuer = issuer;
        p.authorization_endpoint = format!("{base}/auth/authorize");
        p.token_endpoint = format!("{base}/auth/token");
        p.jwks_uri = format!("{base}/auth/keys");
        p.revocation_endpoint = format!("{base}/auth/revoke");
        c.federation.providers = vec![p];
    })
    .await;
    op.use_clock(app.clock());
    op.register_redirect(&callback(&app, ID));
    let browser = app.browser();
    Setup {
        op,
        app,
        browser,
        _keys: keys,
    }
}

async fn setup() -> Setup {
    let team_key = SigningKey::es256(KEY_ID);
    setup_keys(&team_key, &team_key).await
}

/// What Apple's page made the browser post.
struct Posted {
    fields: Vec<(String, String)>,
}

impl Posted {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// From the sign-in page to Apple, whose page posts the answer to the callback from
/// another site (no cookies, `Origin` Apple's); the downstream's 303 is followed with
/// the browser's cookies. The page it ends on, and what was posted.
async fn apple_round_trip(s: &Setup, browser: &Browser) -> (Page, Posted) {
    let page = sign_in_page(browser).await;
    let to = press(browser, &page, ID).await;
    let at_apple = at_provider(&to).await;
    assert_eq!(at_apple.status(), 200, "Apple's page posts the answer back");
    let html = at_apple.text().await.expect("Apple's page");
    let form_tag = &html[html.find("<form").expect("a form")..];
    let action = attr(&form_tag[..form_tag.find('>').unwrap()], "action").expect("an action");
    assert_eq!(action, callback(&s.app, ID));
    let fields = hidden_fields(form_tag);

    let posted = plain()
        .post(&action)
        .header("origin", s.op.base())
        .header("sec-fetch-site", "cross-site")
        .form(&fields)
        .send()
        .await
        .expect("the callback answers");
    assert_eq!(
        posted.status(),
        303,
        "{}",
        posted.text().await.unwrap_or_default()
    );
    assert!(
        posted.headers().get("set-cookie").is_none(),
        "the cookieless post changes no cookie"
    );
    let location = posted.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains(&format!("/federation/{ID}/callback?")),
        "{location}"
    );
    // Only the handle: the code and the member's name stay out of URLs and logs.
    assert!(!location.contains("code="), "{location}");
    assert!(!location.contains("user="), "{location}");
    let landed = back(browser, &location).await;
    (landed, Posted { fields })
}

#[tokio::test]
async fn apple_s_form_post_signs_in_and_names_the_account_from_the_first_user_field() {
    let s = setup().await;
    let (landed, posted) = apple_round_trip(&s, &s.browser).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    signed_in(&s.browser).await;
    assert!(
        posted.get("user").is_some(),
        "the first authorization has `user`"
    );

    let seen = s.op.seen();
    let asked = &seen.authorize[0];
    assert_eq!(asked["response_mode"], "form_post");
    assert_eq!(asked["client_id"], CLIENT_ID);
    assert!(!asked["nonce"].is_empty());
    let scopes: Vec<&str> = asked["scope"].split(' ').collect();
    assert!(
        scopes.contains(&"name") && scopes.contains(&"email"),
        "{scopes:?}"
    );

    // The client secret: posted in the body, and it passed Apple's checks (ES256 with the
    // team key, kid, iss, sub, aud, not expired); its claims as Apple saw them.
    let redeemed = &seen.token[0];
    assert!(
        redeemed.basic.is_none(),
        "Apple takes the secret in the body"
    );
    assert_eq!(redeemed.form["client_id"], CLIENT_ID);
    assert_eq!(redeemed.form["redirect_uri"], callback(&s.app, ID));
    let claims = seen.client_secrets.first().expect("a client secret passed");
    assert_eq!(claims["iss"], TEAM_ID);
    assert_eq!(claims["sub"], CLIENT_ID);
    assert_eq!(claims["aud"], APPLE_AUDIENCE);

    // The private relay address, verified (Apple said "true", a string).
    let user = s.app.user(RELAY).await.expect("an account was made");
    assert!(user.email_verified);
    assert!(user.password_hash.is_none());
    // The name came from `user` (Apple's ID token has none).
    assert!(
        user.display_name == "山田 太郎" || user.display_name == "太郎 山田",
        "named from the user field: {}",
        user.display_name
    );
    let link = s
        .app
        .state
        .db
        .links()
        .find(s.op.issuer(), SUB)
        .await
        .unwrap()
        .expect("linked");
    assert_eq!(link.user, user.id);

    // The second authorization brings no `user`: the same account, its name kept.
    let again = s.app.browser();
    let (landed, posted) = apple_round_trip(&s, &again).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    signed_in(&again).await;
    assert!(posted.get("user").is_none(), "no `user` the second time");
    let after = s.app.user(RELAY).await.unwrap();
    assert_eq!(after.id, user.id);
    assert_eq!(after.display_name, user.display_name);
}

#[tokio::test]
async fn a_client_secret_signed_with_another_key_is_refused_and_apple_sign_in_is_unavailable() {
    let s = setup_keys(&SigningKey::es256(KEY_ID), &SigningKey::es256(KEY_ID)).await;
    let (page, _) = apple_round_trip(&s, &s.browser).await;
    offers_other_ways(&page, ID, MISCONFIGURED);
    not_signed_in(&s.browser).await;
    nothing_made(&s.app, RELAY, s.op.issuer(), SUB).await;
    assert!(s.op.seen().client_secrets.is_empty());
}

#[tokio::test]
async fn an_expired_client_secret_is_refused_by_apple_and_nothing_is_made() {
    let s = setup().await;
    // Apple's clock is past any client secret's life (at most six months).
    s.op.run_ahead(Duration::days(190));
    let (page, _) = apple_round_trip(&s, &s.browser).await;
    offers_other_ways(&page, ID, MISCONFIGURED);
    not_signed_in(&s.browser).await;
    nothing_made(&s.app, RELAY, s.op.issuer(), SUB).await;
}

#[tokio::test]
async fn cancelling_at_apple_posts_back_an_error_and_shows_the_other_ways() {
    let s = setup().await;
    s.op.knobs(|k| k.cancel = true);
    let (page, posted) = apple_round_trip(&s, &s.browser).await;
    assert_eq!(posted.get("error"), Some("user_cancelled_authorize"));
    offers_other_ways(&page, ID, CANCELLED);
    not_signed_in(&s.browser).await;
    nothing_made(&s.app, RELAY, s.op.issuer(), SUB).await;
    assert!(s.op.seen().token.is_empty());
}

#[tokio::test]
async fn deleting_the_account_revokes_its_apple_refresh_token() {
    let s = setup().await;
    let (landed, _) = apple_round_trip(&s, &s.browser).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    let issued =
        s.op.seen()
            .refresh_tokens
            .last()
            .cloned()
            .expect("a refresh token");

    let page = s.browser.get("/account/delete").await;
    assert_eq!(page.status, 200, "{:?} {}", page.location, page.body);
    let csrf = page.field("csrf").expect("a CSRF field");
    let done = s
        .browser
        .post_form("/account/delete", &[("csrf", &csrf), ("confirm", RELAY)])
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains(r#"id="account-deleted""#),
        "{}",
        done.body
    );

    // The job worker revokes it at Apple (it polls every 50 ms).
    let mut revoked = Vec::new();
    for _ in 0..200 {
        revoked = s.op.seen().revoked;
        if !revoked.is_empty() {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    let revocation = revoked
        .first()
        .expect("Apple was asked to revoke the token");
    assert_eq!(revocation["token"], issued);
    assert_eq!(revocation["client_id"], CLIENT_ID);
    assert_eq!(
        revocation.get("token_type_hint").map(String::as_str),
        Some("refresh_token")
    );
    assert_eq!(revoked.len(), 1, "once");
}

/// An Apple identity whose address an account already uses waits for that account's
/// sign-in in the ephemeral store, and Apple's refresh token is not kept there in the
/// clear (nor linked from it: the next sign-in through the link brings a new one).
#[tokio::test]
async fn a_pending_link_keeps_no_apple_refresh_token() {
    let s = setup().await;
    s.app.add_user(RELAY, "harbor-maple-quartz-77").await;
    let (asked, _) = apple_round_trip(&s, &s.browser).await;
    asks_to_sign_in_first(&asked);
    let issued =
        s.op.seen()
            .refresh_tokens
            .last()
            .cloned()
            .expect("Apple issued a refresh token");
    let tx = asked.field("tx").expect("the sign-in goes on");
    let kept = s
        .app
        .state
        .ephemeral
        .get(&format!("federation-pending:{tx}"))
        .await
        .unwrap()
        .expect("the pending link");
    let kept = String::from_utf8(kept).unwrap();
    assert!(kept.contains(SUB), "the identity waits: {kept}");
    assert!(!kept.contains(&issued), "{kept}");
}

#[tokio::test]
async fn the_client_secret_is_renewed_before_it_expires() {
    let s = setup().await;
    let (landed, _) = apple_round_trip(&s, &s.browser).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    let first = s.op.seen().client_secrets[0].clone();
    let (iat, exp) = (
        first["iat"].as_i64().unwrap(),
        first["exp"].as_i64().unwrap(),
    );

    // Both sides' clocks move to a minute before that secret expires: the next token
    // request must carry a fresh one (Apple would refuse the old one a minute later).
    let left = Duration::seconds(exp - s.app.clock().now().unix_timestamp());
    s.app.clock().advance(left - Duration::minutes(1));
    let again = s.app.browser();
    let (landed, _) = apple_round_trip(&s, &again).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    let renewed = s.op.seen().client_secrets.last().cloned().unwrap();
    assert!(
        renewed["iat"].as_i64().unwrap() > iat,
        "a new client secret, not the one about to expire: {first} then {renewed}"
    );
    assert!(renewed["exp"].as_i64().unwrap() > exp);
}

#[tokio::test]
async fn the_unsigned_user_field_names_the_account_but_never_gives_its_address() {
    let s = setup().await;
    s.op.knobs(|k| {
        k.apple_user = Some(
            r#"{"name":{"firstName":"<script>x</script>","lastName":"山田"},"email":"victim@example.jp"}"#
                .to_owned(),
        );
    });
    let (landed, _) = apple_round_trip(&s, &s.browser).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    // The address is the signed ID token's, not the one the browser posted.
    assert!(s.app.user("victim@example.jp").await.is_none());
    let user = s.app.user(RELAY).await.expect("the ID token's address");
    assert!(user.display_name.contains("山田"), "{}", user.display_name);
    let overview = signed_in(&s.browser).await;
    assert!(
        (overview.body.contains("&lt;script&gt;x") || overview.body.contains("&#60;script&#62;x"))
            && !overview.body.contains("<script>x</script>"),
        "the name is shown, escaped: {}",
        overview.body
    );
}

#[tokio::test]
async fn a_malformed_user_field_is_ignored_and_the_sign_in_goes_on() {
    let s = setup().await;
    s.op.knobs(|k| k.apple_user = Some("{\"name\": not json".to_owned()));
    let (landed, _) = apple_round_trip(&s, &s.browser).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    signed_in(&s.browser).await;
    let user = s.app.user(RELAY).await.expect("an account was made");
    assert!(!user.display_name.is_empty());
    assert!(
        !user.display_name.contains("not json"),
        "{}",
        user.display_name
    );
}
