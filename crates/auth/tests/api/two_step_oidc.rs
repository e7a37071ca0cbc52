//! What clients are told of a sign-in with two-step verification (`amr`, `acr`,
//! `acr_values`, `max_age`, `prompt=login`, refresh), through the `openidconnect` crate as
//! the relying party; support's `users reset-2fa`; what deletion and the purge do to an
//! account's second steps.

use openidconnect::{Nonce, OAuth2TokenResponse};
use time::Duration;
use tobira_auth::admin::support::{self, SupportError, TwoStepReset};
use tobira_auth::authn::second_step;
use tobira_auth::crypto::sha256_hex;
use tobira_auth::domain::Email;
use tobira_auth::store::{FactorChange, Factors, LoginEvent, LoginResult};

use crate::cli::{Tobira, stderr};
use crate::helpers::{Browser, ClientOpts, Page, TestApp, callback_params};
use crate::oidc::{
    EMAIL, PASSWORD, Pending, Setup, authorize, code_from, exchange, setup, verify_id_token,
};
use crate::rp::IdClaims;
use crate::two_step::{self, App};

/// The cookie of a remembered device (`web::cookies::REMEMBER`).
const REMEMBER: &str = "tobira_2fa_remember";

/// `amr` and `acr` as an ID token states them.
fn told(claims: &IdClaims) -> (Vec<String>, String) {
    let amr = claims
        .auth_method_refs()
        .map(|v| v.iter().map(|a| a.as_str().to_owned()).collect())
        .unwrap_or_default();
    let acr = claims
        .auth_context_ref()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    (amr, acr)
}

fn says(amr: &[&str], acr: &str) -> (Vec<String>, String) {
    (
        amr.iter().map(|a| (*a).to_owned()).collect(),
        acr.to_owned(),
    )
}

/// Exchanges the code of `back` (the redirect to the client) as the RP does: what the
/// verified ID token says of the sign-in.
async fn tokens_say(s: &Setup, back: &Page, pending: Pending) -> (Vec<String>, String) {
    let code = code_from(s, back, &pending);
    let tokens = exchange(s, code, pending.verifier).await.unwrap();
    told(&verify_id_token(s, &tokens, &pending.nonce))
}

/// Posts the password on the sign-in page `login`: the second-step page it leads to.
async fn password_to_second_step(browser: &Browser, login: &Page) -> Page {
    assert_eq!(login.status, 200, "the sign-in page: {}", login.body);
    let posted = browser.post_login(login, EMAIL, PASSWORD).await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let to = posted.location.expect("a redirect");
    assert!(to.starts_with("/login/second-step?tx="), "{to}");
    let page = browser.get(&to).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"id="second-step""#), "{}", page.body);
    page
}

/// Opens the authorization request and signs in with the password: the second-step page.
async fn second_step_page(s: &Setup, pending: &Pending) -> Page {
    let login = s.browser.follow(s.browser.get(&pending.url).await).await;
    password_to_second_step(&s.browser, &login).await
}

/// Submits `code` on the second-step page and follows the browser back to the client.
async fn pass(s: &Setup, page: &Page, method: &str, code: &str, remember: bool) -> Page {
    let answer = two_step::submit(&s.browser, page, method, code, remember).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    s.browser.follow(answer).await
}

/// The first run of exactly six digits in `text` (an email code).
fn six_digits(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .map(str::to_owned)
}

/// Asks for an email code on the second-step `page` and reads it from the member's mail.
async fn email_code(s: &Setup, page: &Page) -> String {
    let before = s.app.settled().await.len();
    let sent = two_step::send_email_code(&s.browser, page).await;
    assert!(
        matches!(sent.status, 200 | 303),
        "{} {}",
        sent.status,
        sent.body
    );
    let mails = s.app.wait_for_mails(before + 1).await;
    mails[before..]
        .iter()
        .filter(|m| m.to == EMAIL)
        .find_map(|m| six_digits(&m.text))
        .expect("a mail with a 6-digit code")
}

/// The member of `s`, with the authenticator app and email codes on; the app.
async fn with_app_and_email(s: &Setup) -> App {
    let user = s.app.user(EMAIL).await.unwrap();
    let (app, codes) = two_step::enrol_totp(&s.app, &user).await;
    assert_eq!(codes.len(), 10);
    two_step::enrol_email(&s.app, &user).await;
    app
}

/// Signs the member of `s` in with the password and an email code (one factor for `acr`).
async fn signed_in_by_email_code(s: &Setup) {
    let pending = authorize(&s.rp, &[]);
    let page = second_step_page(s, &pending).await;
    let code = email_code(s, &page).await;
    let back = pass(s, &page, "email", &code, false).await;
    assert_eq!(
        tokens_say(s, &back, pending).await,
        says(&["pwd", "mca"], "1")
    );
}

/// A member whose browser skips the second step: it signed in once before two-step was on
/// (a known device: only those may be remembered), then with the app's code and
/// 「この端末では確認しない」; that session has ended since (idle), the device is still
/// remembered. The app.
async fn remembered(s: &Setup) -> App {
    let pending = authorize(&s.rp, &[]);
    let back = s
        .browser
        .sign_in(&pending.url, EMAIL, PASSWORD, false)
        .await;
    assert_eq!(tokens_say(s, &back, pending).await, says(&["pwd"], "1"));
    let user = s.app.user(EMAIL).await.unwrap();
    let (app, _) = two_step::enrol_totp(&s.app, &user).await;

    let pending = authorize(&s.rp, &[("prompt", "login")]);
    let page = second_step_page(s, &pending).await;
    assert!(
        page.body.contains(r#"id="remember-device""#),
        "a known device may be remembered: {}",
        page.body
    );
    let back = pass(s, &page, "totp", &app.code(&s.app), true).await;
    assert_eq!(
        tokens_say(s, &back, pending).await,
        says(&["pwd", "otp", "mfa"], "2")
    );
    assert!(
        s.browser.cookie(REMEMBER).is_some(),
        "the device is remembered"
    );
    s.app.clock().advance(Duration::hours(3));
    app
}

/// The remembered device signs in with the password alone: one factor.
async fn sign_in_on_remembered_device(s: &Setup) {
    let pending = authorize(&s.rp, &[]);
    let back = s
        .browser
        .sign_in(&pending.url, EMAIL, PASSWORD, false)
        .await;
    assert_eq!(tokens_say(s, &back, pending).await, says(&["pwd"], "1"));
}

#[tokio::test]
async fn the_password_alone_says_pwd_and_acr_1() {
    let s = setup(ClientOpts::default()).await;
    let pending = authorize(&s.rp, &[]);
    let back = s
        .browser
        .sign_in(&pending.url, EMAIL, PASSWORD, false)
        .await;
    assert_eq!(tokens_say(&s, &back, pending).await, says(&["pwd"], "1"));
}

#[tokio::test]
async fn the_password_and_an_authenticator_code_say_pwd_otp_mfa_and_acr_2() {
    let s = setup(ClientOpts::default()).await;
    let user = s.app.user(EMAIL).await.unwrap();
    let (app, _) = two_step::enrol_totp(&s.app, &user).await;
    let pending = authorize(&s.rp, &[]);
    let page = second_step_page(&s, &pending).await;
    let back = pass(&s, &page, "totp", &app.code(&s.app), false).await;
    assert_eq!(
        tokens_say(&s, &back, pending).await,
        says(&["pwd", "otp", "mfa"], "2")
    );
}

#[tokio::test]
async fn the_password_and_a_recovery_code_say_pwd_otp_mfa_and_acr_2() {
    let s = setup(ClientOpts::default()).await;
    let user = s.app.user(EMAIL).await.unwrap();
    let (_, codes) = two_step::enrol_totp(&s.app, &user).await;
    let pending = authorize(&s.rp, &[]);
    let page = second_step_page(&s, &pending).await;
    let back = pass(&s, &page, "recovery", &codes[3], false).await;
    assert_eq!(
        tokens_say(&s, &back, pending).await,
        says(&["pwd", "otp", "mfa"], "2")
    );
}

#[tokio::test]
async fn the_password_and_an_email_code_say_pwd_mca_and_acr_1() {
    let s = setup(ClientOpts::default()).await;
    let user = s.app.user(EMAIL).await.unwrap();
    two_step::enrol_email(&s.app, &user).await;
    signed_in_by_email_code(&s).await;
}

#[tokio::test]
async fn acr_values_2_makes_a_remembered_device_sign_in_again_with_its_second_step() {
    let s = setup(ClientOpts::default()).await;
    let app = remembered(&s).await;
    sign_in_on_remembered_device(&s).await;

    // The session has one factor: the client asking for two sends the member to sign in,
    // and the remembered device does not skip the second step this time.
    let pending = authorize(&s.rp, &[("acr_values", "2")]);
    let first = s.browser.get(&pending.url).await;
    let to = first.location.clone().expect("a redirect");
    assert!(to.starts_with("/login?tx="), "to sign in, not a code: {to}");
    let login = s.browser.get(&to).await;
    let page = password_to_second_step(&s.browser, &login).await;
    let back = pass(&s, &page, "totp", &app.code(&s.app), false).await;
    assert_eq!(
        tokens_say(&s, &back, pending).await,
        says(&["pwd", "otp", "mfa"], "2")
    );

    // Now the session has two factors: the same request gets a code at once, even with
    // prompt=none.
    let pending = authorize(&s.rp, &[("acr_values", "2"), ("prompt", "none")]);
    let back = s.browser.get(&pending.url).await;
    assert_eq!(
        tokens_say(&s, &back, pending).await,
        says(&["pwd", "otp", "mfa"], "2")
    );
}

#[tokio::test]
async fn acr_values_2_makes_an_email_code_session_sign_in_again_and_ends_with_acr_2() {
    let s = setup(ClientOpts::default()).await;
    let app = with_app_and_email(&s).await;
    signed_in_by_email_code(&s).await;

    // What the session has is enough for `acr_values=1`, and unknown values are ignored.
    for values in ["1", "urn:example:gold 3"] {
        let pending = authorize(&s.rp, &[("acr_values", values)]);
        let back = s.browser.get(&pending.url).await;
        assert_eq!(
            tokens_say(&s, &back, pending).await,
            says(&["pwd", "mca"], "1"),
            "{values}"
        );
    }

    let pending = authorize(&s.rp, &[("acr_values", "1 2")]);
    let login = s.browser.follow(s.browser.get(&pending.url).await).await;
    let page = password_to_second_step(&s.browser, &login).await;
    let back = pass(&s, &page, "totp", &app.code(&s.app), false).await;
    assert_eq!(
        tokens_say(&s, &back, pending).await,
        says(&["pwd", "otp", "mfa"], "2")
    );
}

#[tokio::test]
async fn acr_values_2_with_prompt_none_on_a_one_factor_session_is_login_required() {
    let s = setup(ClientOpts::default()).await;
    with_app_and_email(&s).await;
    signed_in_by_email_code(&s).await;
    let pending = authorize(&s.rp, &[("acr_values", "2"), ("prompt", "none")]);
    let back = s.browser.get(&pending.url).await;
    let params = callback_params(back.location.as_deref().expect("back to the client"));
    assert_eq!(params["error"], "login_required");
    assert_eq!(params["state"], *pending.state.secret());
    assert!(!params.contains_key("code"));
}

#[tokio::test]
async fn a_member_who_answers_acr_values_2_with_an_email_code_is_told_acr_1_without_a_loop() {
    let s = setup(ClientOpts::default()).await;
    with_app_and_email(&s).await;
    // No session yet: the member signs in for this request and chooses the email code.
    let pending = authorize(&s.rp, &[("acr_values", "2")]);
    let page = second_step_page(&s, &pending).await;
    let code = email_code(&s, &page).await;
    let back = pass(&s, &page, "email", &code, false).await;
    assert_eq!(
        tokens_say(&s, &back, pending).await,
        says(&["pwd", "mca"], "1")
    );
}

#[tokio::test]
async fn acr_values_2_does_not_send_an_email_code_member_to_sign_in_again_for_nothing() {
    // An email code never makes acr 2: signing in again would only cost another mail.
    let s = setup(ClientOpts::default()).await;
    let user = s.app.user(EMAIL).await.unwrap();
    two_step::enrol_email(&s.app, &user).await;
    signed_in_by_email_code(&s).await;
    let mails = s.app.outbox().len();
    let pending = authorize(&s.rp, &[("acr_values", "2"), ("prompt", "none")]);
    let back = s.browser.get(&pending.url).await;
    assert_eq!(
        tokens_say(&s, &back, pending).await,
        says(&["pwd", "mca"], "1")
    );
    assert_eq!(s.app.settled().await.len(), mails, "no code was mailed");
}

#[tokio::test]
async fn acr_values_2_for_a_member_without_a_second_step_proceeds_with_acr_1() {
    let s = setup(ClientOpts::default()).await;
    let pending = authorize(&s.rp, &[("acr_values", "2")]);
    let back = s
        .browser
        .sign_in(&pending.url, EMAIL, PASSWORD, false)
        .await;
    assert_eq!(tokens_say(&s, &back, pending).await, says(&["pwd"], "1"));
    // Signed in already: a code at once, prompt=none too, still acr 1.
    let pending = authorize(&s.rp, &[("acr_values", "2"), ("prompt", "none")]);
    let back = s.browser.get(&pending.url).await;
    assert_eq!(tokens_say(&s, &back, pending).await, says(&["pwd"], "1"));
}

#[tokio::test]
async fn prompt_login_and_max_age_ask_the_second_step_again_on_a_remembered_device() {
    let s = setup(ClientOpts::default()).await;
    let app = remembered(&s).await;
    sign_in_on_remembered_device(&s).await;

    let pending = authorize(&s.rp, &[("prompt", "login")]);
    let page = second_step_page(&s, &pending).await;
    let back = pass(&s, &page, "totp", &app.code(&s.app), false).await;
    assert_eq!(
        tokens_say(&s, &back, pending).await,
        says(&["pwd", "otp", "mfa"], "2")
    );

    // A time step later (a code is accepted once), and past max_age=0.
    s.app.clock().advance(Duration::seconds(30));
    let pending = authorize(&s.rp, &[("max_age", "0")]);
    let page = second_step_page(&s, &pending).await;
    let back = pass(&s, &page, "totp", &app.code(&s.app), false).await;
    assert_eq!(
        tokens_say(&s, &back, pending).await,
        says(&["pwd", "otp", "mfa"], "2")
    );
}

#[tokio::test]
async fn a_refresh_keeps_the_amr_and_acr_of_the_sign_in() {
    let s = setup(ClientOpts {
        refresh: true,
        ..Default::default()
    })
    .await;
    let user = s.app.user(EMAIL).await.unwrap();
    let (app, _) = two_step::enrol_totp(&s.app, &user).await;
    let pending = authorize(&s.rp, &[]);
    let page = second_step_page(&s, &pending).await;
    let back = pass(&s, &page, "totp", &app.code(&s.app), false).await;
    let code = code_from(&s, &back, &pending);
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let first = told(&verify_id_token(&s, &tokens, &pending.nonce));
    assert_eq!(first, says(&["pwd", "otp", "mfa"], "2"));

    s.app.clock().advance(Duration::minutes(20));
    let refreshed =
        s.rp.exchange_refresh_token(tokens.refresh_token().expect("a refresh token"))
            .unwrap()
            .request_async(&s.http)
            .await
            .unwrap();
    let id_token = openidconnect::TokenResponse::id_token(&refreshed).expect("an ID token");
    let claims = id_token
        .claims(&s.rp.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
        .expect("the refreshed ID token validates");
    assert_eq!(told(claims), first);
}

#[tokio::test]
async fn discovery_lists_the_acr_values_that_work() {
    let app = TestApp::spawn().await;
    let raw: serde_json::Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(raw["acr_values_supported"], serde_json::json!(["1", "2"]));
    let claims = raw["claims_supported"].as_array().unwrap();
    for claim in ["acr", "amr"] {
        assert!(claims.iter().any(|c| c == claim), "{claim}");
    }
}

/// Support's reset of `email` as the CLI runs it.
async fn reset(app: &TestApp, email: &str) -> Result<TwoStepReset, SupportError> {
    let state = &app.state;
    let user = support::account(&state.db, email).await?;
    support::reset_two_step(
        &state.db,
        &state.master,
        &state.config,
        &state.clock,
        &tobira_auth::admin::audit::Context::cli(),
        &user,
    )
    .await
}

#[tokio::test]
async fn support_resets_two_step_the_member_is_mailed_and_signs_in_with_the_password_alone() {
    let s = setup(ClientOpts::default()).await;
    let user = s.app.user(EMAIL).await.unwrap();
    with_app_and_email(&s).await;
    let before = s.app.settled().await.len();

    let done = reset(&s.app, EMAIL).await.unwrap();
    assert_eq!(
        done,
        TwoStepReset::Reset(Factors {
            totp: true,
            email: true,
            recovery_left: 10,
        })
    );
    let now_on = s.app.state.db.two_step().factors(user.id).await.unwrap();
    assert_eq!(now_on, Factors::default(), "every factor and code is gone");

    // The history says support did it (written with the change).
    let events = s
        .app
        .state
        .db
        .login_events()
        .page(user.id, None, 10)
        .await
        .unwrap();
    // The enrolments are written at the same instant of the test's still clock, so the
    // order among them is not the point: support's line is there, once.
    let by_support: Vec<_> = events
        .iter()
        .filter(|e| e.method == second_step::METHOD_TWO_STEP)
        .collect();
    assert_eq!(by_support.len(), 1, "{events:?}");
    let newest = by_support[0];
    assert_eq!(newest.result, LoginResult::Removed);
    assert_eq!(newest.ip, support::SUPPORT_IP);
    assert_eq!(newest.user_agent, "support (tobira CLI)");

    // The member is told, in their language, with the way back to the console.
    let mails = s.app.wait_for_mails(before + 1).await;
    let mail = &mails[before];
    assert_eq!(mail.to, EMAIL);
    assert_eq!(
        mail.subject,
        "【Tobira】サポートにより二段階認証が解除されました"
    );
    assert!(
        mail.text.contains("パスワードだけでログインできます"),
        "{}",
        mail.text
    );
    assert!(
        mail.text.contains("もう一度設定してください"),
        "{}",
        mail.text
    );
    assert!(mail.text.contains("お問い合わせください"), "{}", mail.text);
    assert!(
        mail.text.contains(&format!("{}/account", s.app.issuer())),
        "{}",
        mail.text
    );

    let pending = authorize(&s.rp, &[]);
    let back = s
        .browser
        .sign_in(&pending.url, EMAIL, PASSWORD, false)
        .await;
    assert_eq!(tokens_say(&s, &back, pending).await, says(&["pwd"], "1"));

    // Again: nothing is on, nothing changes, nothing is mailed.
    let mailed = s.app.settled().await.len();
    assert_eq!(reset(&s.app, EMAIL).await.unwrap(), TwoStepReset::NotOn);
    assert_eq!(s.app.settled().await.len(), mailed);
    let events_after = s
        .app
        .state
        .db
        .login_events()
        .page(user.id, None, 100)
        .await
        .unwrap();
    assert_eq!(
        events_after
            .iter()
            .filter(|e| e.method == second_step::METHOD_TWO_STEP)
            .count(),
        1,
        "one reset, one history line"
    );
}

#[tokio::test]
async fn support_reset_of_an_unknown_or_malformed_address_fails_and_changes_nothing() {
    let s = setup(ClientOpts::default()).await;
    let user = s.app.user(EMAIL).await.unwrap();
    with_app_and_email(&s).await;
    let before = s.app.settled().await.len();
    assert!(matches!(
        reset(&s.app, "nobody@example.jp").await,
        Err(SupportError::NoAccount(_))
    ));
    for bad in [
        "not an address",
        "",
        "hanako@example.jp\r\nBcc: attacker@example.com",
    ] {
        assert!(
            matches!(reset(&s.app, bad).await, Err(SupportError::Email(_))),
            "{bad:?}"
        );
    }
    let factors = s.app.state.db.two_step().factors(user.id).await.unwrap();
    assert!(factors.totp && factors.email, "the member's factors stay");
    assert_eq!(s.app.settled().await.len(), before, "nothing is mailed");
}

#[tokio::test]
async fn deletion_forgets_remembered_devices_and_the_purge_removes_the_second_steps() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    two_step::enrol_totp(&app, &user).await;
    two_step::enrol_email(&app, &user).await;
    let state = &app.state;
    let now = app.clock().now();
    let secret = sha256_hex("a remembered device's cookie");
    state
        .db
        .two_step()
        .remember_device(
            now,
            user.id,
            "device",
            secret.clone(),
            now + Duration::days(30),
        )
        .await
        .unwrap();
    assert!(
        state
            .db
            .two_step()
            .is_remembered(now, user.id, "device", &secret)
            .await
            .unwrap()
    );

    let deleted = tobira_auth::account::delete::delete_account(
        &state.db,
        &state.master,
        &state.identifiers,
        &state.config,
        &tobira_auth::admin::audit::Context::cli(),
        now,
        &user,
    )
    .await
    .unwrap();
    assert!(deleted);
    assert!(
        !state
            .db
            .two_step()
            .is_remembered(now, user.id, "device", &secret)
            .await
            .unwrap(),
        "no device skips anything for a deleted account"
    );
    // Kept with the rest of the account until the purge.
    let kept = state.db.two_step().factors(user.id).await.unwrap();
    assert!(kept.totp && kept.email && kept.recovery_left == 10);

    app.clock()
        .advance(Duration::days(90) + Duration::minutes(1));
    tobira_auth::jobs::purge(state).await.unwrap();
    assert!(state.db.accounts().purged(user.id).await.unwrap());
    assert_eq!(
        state.db.two_step().factors(user.id).await.unwrap(),
        Factors::default()
    );
    assert!(state.db.two_step().totp(user.id).await.unwrap().is_none());
}

#[tokio::test]
async fn the_purge_forgets_remembered_devices_past_their_time_and_keeps_the_others() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let devices = app.state.db.two_step();
    let now = app.clock().now();
    let (short, long) = (sha256_hex("short"), sha256_hex("long"));
    devices
        .remember_device(
            now,
            user.id,
            "phone",
            short.clone(),
            now + Duration::days(1),
        )
        .await
        .unwrap();
    devices
        .remember_device(
            now,
            user.id,
            "laptop",
            long.clone(),
            now + Duration::days(30),
        )
        .await
        .unwrap();

    app.clock().advance(Duration::days(2));
    tobira_auth::jobs::purge(&app.state).await.unwrap();
    let later = app.clock().now();
    assert_eq!(
        devices.purge_expired(later).await.unwrap(),
        0,
        "the job runner's purge removed the expired one already"
    );
    assert!(
        devices
            .is_remembered(later, user.id, "laptop", &long)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn users_reset_2fa_through_the_cli_says_what_it_did_and_mails_the_member() {
    let tobira = Tobira::new(None);
    let added = tobira.run(
        &[
            "users",
            "add",
            "--email",
            EMAIL,
            "--password-stdin",
            "--verified",
        ],
        Some(PASSWORD),
    );
    assert!(added.status.success(), "{}", stderr(&added));

    // Email codes on, in the store the CLI uses (as the console would).
    let config = tobira_auth::Config {
        data_dir: tobira.dir.path().join("data"),
        ..Default::default()
    };
    let db = tobira_auth::startup::open_db(&config).await.unwrap();
    let user = db
        .users()
        .find_by_email(&Email::parse(EMAIL).unwrap())
        .await
        .unwrap()
        .unwrap();
    let now = tobira_auth::Clock::system().now();
    // Stand-ins for the codes' keyed hashes: the reset removes them whatever they are.
    let hashes = second_step::new_recovery_codes(&mut rand::rng());
    let change = FactorChange {
        event: LoginEvent {
            id: uuid::Uuid::new_v4(),
            user: user.id,
            at: now,
            ip: "127.0.0.1".to_owned(),
            user_agent: "tests".to_owned(),
            device_hash: String::new(),
            method: second_step::METHOD_EMAIL_CODE.to_owned(),
            result: LoginResult::Enrolled,
            new_device: false,
        },
        mail: None,
    };
    db.two_step()
        .enable_email(now, user.id, hashes, None, change)
        .await
        .unwrap();

    let out = tobira.run(&["users", "reset-2fa", "--email", EMAIL], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("two-step verification turned off"), "{said}");
    assert!(said.contains("email codes"), "{said}");
    assert!(said.contains("10 unused recovery codes"), "{said}");
    assert_eq!(
        db.two_step().factors(user.id).await.unwrap(),
        Factors::default()
    );
    let events = db.login_events().page(user.id, None, 10).await.unwrap();
    assert_eq!(events[0].method, second_step::METHOD_TWO_STEP);
    assert_eq!(events[0].result, LoginResult::Removed);
    // Queued for the next `tobira serve` (none runs here), sealed with the data
    // directory's master key.
    let master = tobira_auth::keys::MasterKey::load_or_create(&config).unwrap();
    let queued: Vec<tobira_auth::mail::Mail> = db
        .jobs()
        .pending(tobira_auth::store::MAIL_QUEUE)
        .await
        .unwrap()
        .iter()
        .map(|j| tobira_auth::mail::Mail::unseal(&j.payload, &master).unwrap())
        .collect();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].to, EMAIL);
    assert_eq!(
        queued[0].subject,
        "【Tobira】サポートにより二段階認証が解除されました"
    );

    // Again: says nothing is on, changes nothing, succeeds.
    let again = tobira.run(&["users", "reset-2fa", "--email", EMAIL], None);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("no two-step verification: nothing changed"),
        "{}",
        stderr(&again)
    );
    let pending = db
        .jobs()
        .pending(tobira_auth::store::MAIL_QUEUE)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1, "no second mail");

    // An unknown address: a clear error and a failing exit code.
    let unknown = tobira.run(
        &["users", "reset-2fa", "--email", "nobody@example.jp"],
        None,
    );
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no account with the email address nobody@example.jp"),
        "{}",
        stderr(&unknown)
    );
}
