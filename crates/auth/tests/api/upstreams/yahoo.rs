//! Yahoo! JAPAN ID連携 v2 against a stand-in: `bail=1` in the authorization request (so
//! that 「同意しない」 comes back with the state and no code), PKCE, `client_secret_basic`,
//! an ID token with `aud` as an array and no email, the email from the 属性取得API on
//! another host (whose `sub` must be the ID token's).

use tobira_auth::config::{ProviderKind, Secret};

use super::stand_in::{ClientAuth, Flavor, Member, Op};
use super::{
    CANCELLED, REFUSED, at_provider, callback, not_signed_in, nothing_made, offers_other_ways,
    provider, redirect_back, round_trip, sign_in_page, signed_in,
};
use crate::helpers::{Browser, TestApp};

const ID: &str = "yahoo";
const CLIENT_ID: &str = "dj00aiZpPXRvYmlyYS10ZXN0";
const SECRET: &str = "yahoo-client-secret";
const EMAIL: &str = "hanako.yahoo@example.jp";
/// A GUID-style `sub` (26 characters, [0-9A-Z]).
const SUB: &str = "ABCDEFGHIJKLMNOPQRSTUV2345";

fn member() -> Member {
    Member {
        sub: SUB.to_owned(),
        email: EMAIL.to_owned(),
        email_verified: true,
        given_name: "花子".to_owned(),
        family_name: "佐藤".to_owned(),
    }
}

struct Setup {
    op: Op,
    app: TestApp,
    browser: Browser,
}

async fn setup() -> Setup {
    let op = Op::start(
        Flavor::Yahoo,
        CLIENT_ID,
        ClientAuth::Secret(SECRET.to_owned()),
        member(),
    )
    .await;
    let base = op.base().to_owned();
    let issuer = op.issuer().to_owned();
    let userinfo = op.userinfo_url();
    let app = TestApp::spawn_with(|c| {
        c.federation.timeout_ms = 2_000;
        let mut p = provider(ID, ProviderKind::YahooJapan, CLIENT_ID);
        p.client_secret = Secret::new(SECRET);
        p.issuer = issuer;
        p.authorization_endpoint = format!("{base}/yconnect/v2/authorization");
        p.token_endpoint = format!("{base}/yconnect/v2/token");
        p.jwks_uri = format!("{base}/yconnect/v2/jwks");
        p.userinfo_endpoint = userinfo;
        c.federation.providers = vec![p];
    })
    .await;
    op.use_clock(app.clock());
    op.register_redirect(&callback(&app, ID));
    let browser = app.browser();
    Setup { op, app, browser }
}

#[tokio::test]
async fn a_yahoo_japan_sign_in_takes_the_address_from_userinfo_on_another_host() {
    let s = setup().await;
    assert!(s.op.userinfo_url().starts_with("http://localhost:"));
    let landed = round_trip(&s.browser, ID).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    signed_in(&s.browser).await;

    let seen = s.op.seen();
    let asked = &seen.authorize[0];
    assert_eq!(asked.get("bail").map(String::as_str), Some("1"));
    assert_eq!(asked["code_challenge_method"], "S256");
    let scopes: Vec<&str> = asked["scope"].split(' ').collect();
    for scope in ["openid", "profile", "email"] {
        assert!(scopes.contains(&scope), "{scopes:?}");
    }
    assert_eq!(
        seen.token[0].basic,
        Some((CLIENT_ID.to_owned(), SECRET.to_owned())),
        "client_secret_basic, as Yahoo! asks of server-side apps"
    );
    assert_eq!(seen.userinfo_hosts.len(), 1, "userinfo was asked once");
    assert!(
        seen.userinfo_hosts[0].starts_with("localhost:"),
        "{:?}",
        seen.userinfo_hosts
    );

    let user = s
        .app
        .user(EMAIL)
        .await
        .expect("an account with userinfo's address");
    assert!(user.email_verified, "userinfo said email_verified");
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
    assert_eq!(link.email.as_deref(), Some(EMAIL));
}

#[tokio::test]
async fn declining_consent_at_yahoo_comes_back_with_only_the_state_and_shows_the_cancel_page() {
    let s = setup().await;
    s.op.knobs(|k| k.cancel = true);
    let page = sign_in_page(&s.browser).await;
    let to = super::press(&s.browser, &page, ID).await;
    let back_to = redirect_back(&at_provider(&to).await);
    // `bail=1` brought the member back: the state and nothing else.
    let query: Vec<(String, String)> = url::Url::parse(&back_to)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query.len(), 1, "{back_to}");
    assert_eq!(query[0].0, "state");

    let landed = super::back(&s.browser, &back_to).await;
    offers_other_ways(&landed, ID, CANCELLED);
    not_signed_in(&s.browser).await;
    nothing_made(&s.app, EMAIL, s.op.issuer(), SUB).await;
    assert!(s.op.seen().token.is_empty());
}

#[tokio::test]
async fn userinfo_for_another_member_than_the_id_token_is_refused() {
    let s = setup().await;
    s.op.knobs(|k| k.userinfo_other_sub = true);
    let page = round_trip(&s.browser, ID).await;
    offers_other_ways(&page, ID, REFUSED);
    not_signed_in(&s.browser).await;
    nothing_made(&s.app, EMAIL, s.op.issuer(), SUB).await;
    assert_eq!(s.op.seen().userinfo_hosts.len(), 1, "userinfo was asked");
}

#[tokio::test]
async fn yahoo_s_issuer_with_a_trailing_slash_is_the_same_issuer() {
    let s = setup().await;
    s.op.knobs(|k| k.iss_trailing_slash = true);
    let landed = round_trip(&s.browser, ID).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    signed_in(&s.browser).await;
    let user = s.app.user(EMAIL).await.expect("an account");

    // Either spelling signs in to the same account: one link, not two.
    s.op.knobs(|k| k.iss_trailing_slash = false);
    let again = s.app.browser();
    let landed = round_trip(&again, ID).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    signed_in(&again).await;
    assert_eq!(
        s.app.state.db.links().list(user.id).await.unwrap().len(),
        1,
        "the spelling of Yahoo!'s issuer makes no second link"
    );
}
