//! A generic OpenID provider (kind `oidc`, by discovery; and Google's preset pointed at the
//! same stand-in): the round trip, and every way the provider can misbehave — an ID token
//! with a bad signature, an unknown key, the wrong audience, nonce or issuer, expired; a
//! token endpoint that fails, hangs past `federation.timeout_ms`, refuses the code or the
//! client; discovery down. Each ends on a clear page, with no session, account or link.

use tobira_auth::config::{ProviderKind, Secret};

use super::stand_in::{ClientAuth, Flavor, IdTokenFault, Knobs, Member, Op, TokenFault};
use super::{
    CANCELLED, MISCONFIGURED, REFUSED, UNAVAILABLE, asks_to_sign_in_first, at_provider, back,
    callback, link_to, not_signed_in, nothing_made, offers_other_ways, press, pressed, provider,
    redirect_back, round_trip, sign_in_page, signed_in,
};
use crate::helpers::{Browser, TestApp};

const ID: &str = "idp";
const CLIENT_ID: &str = "tobira-downstream";
const SECRET: &str = "s3cret/with+odd:chars";
const EMAIL: &str = "taro@example.jp";
const SUB: &str = "248289761001";

fn member() -> Member {
    Member {
        sub: SUB.to_owned(),
        email: EMAIL.to_owned(),
        email_verified: true,
        given_name: "太郎".to_owned(),
        family_name: "山田".to_owned(),
    }
}

struct Setup {
    op: Op,
    app: TestApp,
    browser: Browser,
}

/// The stand-in and a downstream with it as provider `idp` of `kind` (found by
/// discovery from the stand-in's issuer), giving up on it after a second.
async fn setup(kind: ProviderKind, member: Member) -> Setup {
    let op = stand_in(member).await;
    let issuer = op.issuer().to_owned();
    let app = TestApp::spawn_with(|c| with_provider(c, kind, issuer)).await;
    registered(&op, &app);
    let browser = app.browser();
    Setup { op, app, browser }
}

/// The stand-in, knowing `member` and our client.
async fn stand_in(member: Member) -> Op {
    Op::start(
        Flavor::Generic,
        CLIENT_ID,
        ClientAuth::Secret(SECRET.to_owned()),
        member,
    )
    .await
}

/// Provider `ID` of `kind` at `issuer` (found by discovery), given up on after a second.
fn with_provider(c: &mut tobira_auth::Config, kind: ProviderKind, issuer: String) {
    c.federation.timeout_ms = 1_000;
    let mut p = provider(ID, kind, CLIENT_ID);
    p.client_secret = Secret::new(SECRET);
    p.issuer = issuer;
    c.federation.providers = vec![p];
}

/// The stand-in on the app's clock, with the app's callback registered.
fn registered(op: &Op, app: &TestApp) {
    op.use_clock(app.clock());
    op.register_redirect(&callback(app, ID));
}

#[tokio::test]
async fn a_member_signs_in_through_a_generic_provider_and_an_account_is_made_from_its_claims() {
    let s = setup(ProviderKind::Oidc, member()).await;
    let page = sign_in_page(&s.browser).await;
    let to = press(&s.browser, &page, ID).await;
    assert!(
        to.starts_with(&format!("{}/authorize?", s.op.base())),
        "{to}"
    );

    let landed = back(&s.browser, &redirect_back(&at_provider(&to).await)).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    let overview = signed_in(&s.browser).await;
    assert!(overview.body.contains("太郎"), "{}", overview.body);

    // What the downstream asked for: the code flow with state, nonce and PKCE S256.
    let seen = s.op.seen();
    let asked = &seen.authorize[0];
    assert_eq!(asked["client_id"], CLIENT_ID);
    assert_eq!(asked["redirect_uri"], callback(&s.app, ID));
    assert_eq!(asked["response_type"], "code");
    let scopes: Vec<&str> = asked["scope"].split(' ').collect();
    for scope in ["openid", "email", "profile"] {
        assert!(scopes.contains(&scope), "{scopes:?}");
    }
    assert!(asked["state"].len() >= 32, "an unguessable state");
    assert!(asked["nonce"].len() >= 16, "a nonce");
    assert_eq!(asked["code_challenge_method"], "S256");
    // The code was redeemed once, with the PKCE verifier and the client's secret
    // (client_secret_basic: the stand-in offers both, and basic is the default).
    assert_eq!(seen.token.len(), 1);
    let redeemed = &seen.token[0];
    assert!(redeemed.form.contains_key("code_verifier"));
    assert_eq!(
        redeemed.basic,
        Some((CLIENT_ID.to_owned(), SECRET.to_owned()))
    );

    let user = s.app.user(EMAIL).await.expect("an account was made");
    assert!(user.email_verified, "the provider verified the address");
    assert!(
        user.password_hash.is_none(),
        "an account without a password"
    );
    assert!(
        user.display_name.contains("太郎") && user.display_name.contains("山田"),
        "named from the provider's profile: {}",
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
        .expect("linked by (issuer, subject)");
    assert_eq!(link.user, user.id);
    assert_eq!(link.provider, ID);

    // Another browser, the same member at the provider: the same account.
    let again = s.app.browser();
    let landed = round_trip(&again, ID).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    signed_in(&again).await;
    assert_eq!(s.app.user(EMAIL).await.unwrap().id, user.id);
    assert_eq!(
        s.app.state.db.links().list(user.id).await.unwrap().len(),
        1,
        "no second link"
    );
}

#[tokio::test]
async fn google_s_preset_pointed_at_a_stand_in_honours_an_unverified_address() {
    let mut unverified = member();
    unverified.email_verified = false;
    let s = setup(ProviderKind::Google, unverified).await;
    let landed = round_trip(&s.browser, ID).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    signed_in(&s.browser).await;
    let user = s.app.user(EMAIL).await.expect("an account was made");
    assert!(
        !user.email_verified,
        "Google said the address is not verified"
    );
}

/// Only an address the provider verified may take over an unverified sign-up: a
/// provider identity whose address is unverified (anyone can claim one at some
/// providers) meeting a squatted sign-up is told to sign in to that account first, and
/// the sign-up keeps its password.
#[tokio::test]
async fn an_identity_with_an_unverified_address_never_takes_over_a_sign_up() {
    let mut unverified = member();
    unverified.email_verified = false;
    let s = setup(ProviderKind::Google, unverified).await;
    let squatter = s.app.browser();
    let sent = crate::signup::sign_up(&squatter, "/signup", EMAIL, "harbor-maple-quartz-77").await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert_eq!(s.app.settled().await.len(), 1, "the verification mail");
    let before = s.app.user(EMAIL).await.expect("the sign-up");
    assert!(!before.email_verified);

    let page = round_trip(&s.browser, ID).await;
    assert_eq!(page.status, 200, "{:?} {}", page.location, page.body);
    asks_to_sign_in_first(&page);
    not_signed_in(&s.browser).await;
    let after = s.app.user(EMAIL).await.unwrap();
    assert_eq!(after.id, before.id);
    assert!(
        after.password_hash.is_some(),
        "the sign-up keeps its password"
    );
    assert!(!after.email_verified);
    let link = link_to(&s.app, s.op.issuer(), SUB).await;
    assert!(link.is_none(), "nothing linked: {link:?}");
}

/// The ephemeral store fails while a social sign-in starts, while a returning member's
/// is counted by the throttle, or while her second step is kept: the page a password
/// sign-in shows then
/// (503, try again shortly), no session; once the store is back the next sign-in goes
/// through.
#[tokio::test]
async fn a_social_sign_in_the_store_cannot_keep_is_unavailable_and_no_session() {
    let op = stand_in(member()).await;
    let issuer = op.issuer().to_owned();
    let (app, failing) =
        crate::outage::app_with_failing_store_and(|c| with_provider(c, ProviderKind::Oidc, issuer))
            .await;
    registered(&op, &app);
    // The first round trip makes the account and its link.
    let first = app.browser();
    assert_eq!(round_trip(&first, ID).await.status, 200);
    signed_in(&first).await;

    let unavailable = |part: &'static str| {
        let browser = app.browser();
        let failing = failing.clone();
        async move {
            let page = sign_in_page(&browser).await;
            let to = press(&browser, &page, ID).await;
            let cb = redirect_back(&at_provider(&to).await);
            let failed = failing.during(part, back(&browser, &cb)).await;
            crate::outage::unavailable_page(&failed);
            not_signed_in(&browser).await;
            browser
        }
    };
    // The button, while the store cannot keep the flow it starts: the same page.
    let browser = app.browser();
    let page = sign_in_page(&browser).await;
    let pressed = failing.during("federation", pressed(&browser, &page, ID));
    crate::outage::unavailable_page(&pressed.await);

    let browser = unavailable("throttle:").await;
    let again = round_trip(&browser, ID).await;
    assert_eq!(again.status, 200, "{:?} {}", again.location, again.body);
    signed_in(&browser).await;

    // With an authenticator app, the provider is the first step: the second waits in the
    // store.
    let user = app.user(EMAIL).await.unwrap();
    crate::two_step::enrol_totp(&app, &user).await;
    let browser = unavailable("second_step:").await;
    let asked = round_trip(&browser, ID).await;
    assert_eq!(asked.status, 200, "{:?} {}", asked.location, asked.body);
    assert!(asked.body.contains(r#"id="second-step""#), "{}", asked.body);
}

#[tokio::test]
async fn a_cancelled_consent_at_the_provider_shows_the_sign_in_page_with_the_other_ways() {
    let logs = crate::helpers::CapturedLogs::install();
    let s = setup(ProviderKind::Oidc, member()).await;
    s.op.knobs(|k| k.cancel = true);
    let page = round_trip(&s.browser, ID).await;
    offers_other_ways(&page, ID, CANCELLED);
    not_signed_in(&s.browser).await;
    nothing_made(&s.app, EMAIL, s.op.issuer(), SUB).await;
    assert!(s.op.seen().token.is_empty(), "no code to redeem");
    // The member's own choice: noted, not alarmed on.
    logged_instead_of_a_failure(&logs, "social sign-in cancelled at the provider", "INFO");
}

/// The stand-in misbehaves as `fault` says; the downstream shows a page that says
/// `says`, and nothing is made.
async fn refused_when(fault: impl FnOnce(&mut Knobs), says: &str) -> Setup {
    let s = setup(ProviderKind::Oidc, member()).await;
    s.op.knobs(fault);
    let page = round_trip(&s.browser, ID).await;
    offers_other_ways(&page, ID, says);
    not_signed_in(&s.browser).await;
    nothing_made(&s.app, EMAIL, s.op.issuer(), SUB).await;
    s
}

#[tokio::test]
async fn an_id_token_signed_by_a_key_not_in_the_jwks_is_refused() {
    refused_when(|k| k.id_token = IdTokenFault::ForeignKey, REFUSED).await;
}

#[tokio::test]
async fn an_id_token_naming_an_unknown_key_is_refused_after_one_look_at_the_jwks() {
    refused_when(|k| k.id_token = IdTokenFault::UnknownKid, REFUSED).await;
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() {
    refused_when(|k| k.id_token = IdTokenFault::WrongAudience, REFUSED).await;
}

#[tokio::test]
async fn an_id_token_with_another_nonce_is_refused() {
    refused_when(|k| k.id_token = IdTokenFault::WrongNonce, REFUSED).await;
}

#[tokio::test]
async fn an_expired_id_token_is_refused() {
    refused_when(|k| k.id_token = IdTokenFault::Expired, REFUSED).await;
}

#[tokio::test]
async fn an_id_token_from_another_issuer_is_refused() {
    refused_when(|k| k.id_token = IdTokenFault::WrongIssuer, REFUSED).await;
}

#[tokio::test]
async fn a_refused_code_shows_a_clear_page() {
    refused_when(|k| k.token = TokenFault::InvalidGrant, REFUSED).await;
}

#[tokio::test]
async fn a_token_endpoint_failing_with_500_says_the_provider_is_unavailable() {
    refused_when(|k| k.token = TokenFault::ServerError, UNAVAILABLE).await;
}

#[tokio::test]
async fn a_hanging_token_endpoint_is_given_up_after_the_timeout() {
    let started = std::time::Instant::now();
    let s = refused_when(|k| k.token = TokenFault::Hang, UNAVAILABLE).await;
    assert_eq!(s.op.seen().token.len(), 1, "the downstream did ask");
    // Behaviour, not performance: the downstream stopped waiting long before the stand-in
    // (which holds the request for two minutes) would have answered.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[tokio::test]
async fn a_provider_refusing_the_client_says_sign_in_through_it_is_not_available() {
    let logs = crate::helpers::CapturedLogs::install();
    refused_when(|k| k.token = TokenFault::InvalidClient, MISCONFIGURED).await;
    // Our own misconfiguration is the operator's alarm, at error level.
    logged_instead_of_a_failure(&logs, "a provider refused this client", "ERROR");
}

/// The one log line about this provider is `message` at `level`, not the generic
/// "social sign-in failed".
fn logged_instead_of_a_failure(logs: &crate::helpers::CapturedLogs, message: &str, level: &str) {
    let said = |message: &str| -> Vec<(String, String)> {
        logs.lines()
            .iter()
            .filter(|l| l["fields"]["message"] == message)
            .map(|l| {
                let field = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
                (field(&l["level"]), field(&l["fields"]["provider"]))
            })
            .collect()
    };
    let text = logs.text();
    assert_eq!(said(message), [(level.to_owned(), ID.to_owned())], "{text}");
    assert!(said("social sign-in failed").is_empty(), "{text}");
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_by_the_provider_and_shown_as_not_available() {
    let op = Op::start(
        Flavor::Generic,
        CLIENT_ID,
        ClientAuth::Secret("the-provider-knows-another".to_owned()),
        member(),
    )
    .await;
    let issuer = op.issuer().to_owned();
    let app = TestApp::spawn_with(|c| {
        let mut p = provider(ID, ProviderKind::Oidc, CLIENT_ID);
        p.client_secret = Secret::new(SECRET);
        p.issuer = issuer;
        c.federation.providers = vec![p];
    })
    .await;
    op.use_clock(app.clock());
    let browser = app.browser();
    let page = round_trip(&browser, ID).await;
    offers_other_ways(&page, ID, MISCONFIGURED);
    not_signed_in(&browser).await;
    nothing_made(&app, EMAIL, op.issuer(), SUB).await;
}

#[tokio::test]
async fn discovery_down_keeps_the_member_on_the_sign_in_page_and_the_server_up() {
    let s = setup(ProviderKind::Oidc, member()).await;
    s.op.knobs(|k| k.discovery_down = true);
    let page = sign_in_page(&s.browser).await;
    let fields = super::button(&page, ID);
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let answer = s
        .browser
        .follow(
            s.browser
                .post_form(&format!("/federation/{ID}/start"), &form)
                .await,
        )
        .await;
    offers_other_ways(&answer, ID, UNAVAILABLE);
    assert!(s.op.seen().authorize.is_empty(), "nobody was sent to it");

    // Back up: a press after a little while goes through (a failed discovery is not
    // remembered for long).
    s.op.knobs(|k| k.discovery_down = false);
    s.app.clock().advance(time::Duration::minutes(1));
    let landed = round_trip(&s.browser, ID).await;
    assert_eq!(landed.status, 200, "{:?} {}", landed.location, landed.body);
    signed_in(&s.browser).await;
}

#[tokio::test]
async fn a_replayed_code_is_refused_by_the_provider_and_by_the_downstream() {
    let s = setup(ProviderKind::Oidc, member()).await;
    let page = sign_in_page(&s.browser).await;
    let to = press(&s.browser, &page, ID).await;
    let back_to = redirect_back(&at_provider(&to).await);
    back(&s.browser, &back_to).await;
    signed_in(&s.browser).await;

    // The same callback URL again, in another browser: the state was used.
    let thief = s.app.browser();
    let replayed = back(&thief, &back_to).await;
    assert!(
        replayed.body.contains("すでに使われています"),
        "the used-state page: {} {}",
        replayed.status,
        replayed.body
    );
    not_signed_in(&thief).await;
    assert_eq!(
        s.op.seen().token.len(),
        1,
        "the code was not presented again"
    );
}
