//! Signing in with a passkey (`oidc::passkey`), with webauthn-authenticator-rs's soft
//! passkey as the browser's authenticator: usernameless to the console and through an
//! OIDC client (amr/acr in the ID token), as the second step after a password; and as an
//! attacker would try it: a replayed answer, another browser's ceremony, a counter going
//! backwards, another origin, another RP ID, a removed credential, another member's
//! handle, malformed JSON, no CSRF token, a frozen account, an IP-address issuer.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::OAuth2TokenResponse as _;
use serde_json::Value;
use tobira_auth::domain::{User, UserStatus};
use tobira_auth::store::{FactorChange, LoginEvent, LoginResult, PasskeyRemoval, StoredPasskey};
use uuid::Uuid;
use webauthn_rs::prelude::RegisterPublicKeyCredential;

use crate::console::sent_to_sign_in;
use crate::helpers::{Browser, ClientOpts, Page, TestApp};
use crate::oidc::{EMAIL, PASSWORD, authorize, code_from, exchange, setup, verify_id_token};
use crate::passkey::{Registered, SoftKey, options_of};
use crate::sessions::session_of;
use crate::two_step::enrol_totp;

const OTHER: &str = "taro@example.jp";
const REFUSED: &str = "このパスキーではログインできませんでした";
const EXPIRED: &str = "パスキーの確認の有効期限が切れたか";
const MALFORMED: &str = "ブラウザからの応答を読み取れませんでした";

/// A member's passkey: the authenticator holding it, its credential and the member's
/// user handle.
struct Enrolled {
    key: SoftKey,
    reg: Registered,
    handle: Uuid,
}

/// Registers a passkey for `user` as the console would (the ceremony through the app's
/// relying party, stored with its history line).
async fn enrol(app: &TestApp, user: &User) -> Enrolled {
    let wa = app.state.webauthn.clone().expect("passkeys are on");
    let handle = app
        .state
        .db
        .passkeys()
        .handle(user.id)
        .await
        .unwrap()
        .unwrap();
    let (ccr, state) = wa
        .start_passkey_registration(handle, user.email.display(), &user.display_name, None)
        .unwrap();
    let mut key = SoftKey::new(app);
    let reg = key.register(&serde_json::to_string(&ccr).unwrap());
    let answer: RegisterPublicKeyCredential = serde_json::from_str(&reg.json).unwrap();
    let passkey = wa.finish_passkey_registration(&answer, &state).unwrap();
    let now = app.clock().now();
    app.state
        .db
        .passkeys()
        .add(
            now,
            StoredPasskey {
                cred_id: reg.cred_id_b64(),
                user: user.id,
                name: "テスト".into(),
                credential: serde_json::to_string(&passkey).unwrap(),
                created_at: now,
                last_used_at: None,
            },
            FactorChange {
                event: event(user, now, LoginResult::Enrolled),
                mail: None,
            },
        )
        .await
        .unwrap();
    Enrolled { key, reg, handle }
}

fn event(user: &User, at: time::OffsetDateTime, result: LoginResult) -> LoginEvent {
    LoginEvent {
        id: Uuid::new_v4(),
        user: user.id,
        at,
        ip: "127.0.0.1".into(),
        user_agent: "tests".into(),
        device_hash: String::new(),
        method: "passkey".into(),
        result,
        new_device: false,
    }
}

/// The sign-in page's passkey options (the form must be there).
fn signin_options(page: &Page) -> String {
    options_of(page, "signin").expect("a passkey form on the sign-in page")
}

/// Posts the page's passkey form with `credential`: the answer, not followed.
async fn post_passkey(browser: &Browser, page: &Page, credential: &str) -> Page {
    post_answer(browser, "/login/passkey", page, credential).await
}

/// Posts `credential` with `page`'s form fields to `path`: the answer, not followed.
async fn post_answer(browser: &Browser, path: &str, page: &Page, credential: &str) -> Page {
    browser
        .post_form(
            path,
            &[
                ("csrf", &page.field("csrf").unwrap()),
                ("tx", &page.field("tx").unwrap()),
                ("ceremony", &page.field("ceremony").unwrap()),
                ("credential", credential),
            ],
        )
        .await
}

/// The member's own usernameless answer to the page's ceremony.
fn answer(m: &mut Enrolled, page: &Page) -> String {
    let options = signin_options(page);
    let (cred, handle) = (m.reg.cred_id.clone(), m.handle);
    m.key.sign_in_as(&options, &cred, handle)
}

async fn history(app: &TestApp, user: &User) -> Vec<LoginEvent> {
    app.settled().await;
    app.state
        .db
        .login_events()
        .page(user.id, None, 50)
        .await
        .unwrap()
}

async fn refusals(app: &TestApp, user: &User) -> usize {
    history(app, user)
        .await
        .iter()
        .filter(|e| e.result == LoginResult::PasskeyRefused && e.method == "passkey")
        .count()
}

/// A refused answer: the sign-in page again with `message`, and no session.
fn refused_with(page: &Page, status: u16, message: &str) {
    assert_eq!(page.status, status, "{}", page.body);
    assert!(page.body.contains(message), "{}", page.body);
    // A new ceremony is offered for another try.
    assert!(options_of(page, "signin").is_some(), "{}", page.body);
}

/// The app with a member (`EMAIL`) holding a passkey; a browser on the console's sign-in
/// page.
async fn member_with_passkey() -> (TestApp, User, Enrolled, Browser, Page) {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let enrolled = enrol(&app, &user).await;
    let browser = app.browser();
    let login = sent_to_sign_in(&browser, "/account").await;
    (app, user, enrolled, browser, login)
}

#[tokio::test]
async fn a_passkey_signs_in_to_the_console_without_a_password_or_an_address() {
    let (app, user, mut m, browser, login) = member_with_passkey().await;
    // The page offers the button and the browser's autofill, and keeps the password form.
    assert!(login.body.contains(r#"data-passkey="signin""#));
    assert!(login.body.contains("data-conditional"));
    assert!(login.body.contains("パスキーでログイン"));
    assert!(login.body.contains(r#"autocomplete="username webauthn""#));
    assert!(
        login
            .body
            .contains(r#"<script src="/static/passkey.js" defer></script>"#)
    );
    assert!(login.body.contains(r#"name="password""#));
    let options: Value = serde_json::from_str(&signin_options(&login)).unwrap();
    assert_eq!(options["mediation"], "conditional");
    assert_eq!(options["publicKey"]["userVerification"], "required");
    assert_eq!(
        options["publicKey"]["allowCredentials"],
        serde_json::json!([])
    );

    let posted = post_passkey(&browser, &login, &answer(&mut m, &login)).await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    assert_eq!(posted.location.as_deref(), Some("/account"));
    assert_eq!(browser.get("/account").await.status, 200);
    let session = session_of(&app, &browser).await.expect("a session");
    assert_eq!(session.user_id, user.id);
    assert_eq!(session.amr, ["pop", "user", "mfa"]);
    assert_eq!(session.acr, "2");
    let used = app
        .state
        .db
        .passkeys()
        .find(&m.reg.cred_id_b64())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.last_used_at, Some(app.clock().now()));
    assert!(
        history(&app, &user)
            .await
            .iter()
            .any(|e| e.method == "passkey" && e.result == LoginResult::Success)
    );
}

#[tokio::test]
async fn a_passkey_sign_in_through_a_client_says_pop_user_mfa_and_acr_2() {
    let s = setup(ClientOpts::default()).await;
    let user = s.app.user(EMAIL).await.unwrap();
    // A member with an authenticator app is not asked for it after a passkey.
    enrol_totp(&s.app, &user).await;
    let mut m = enrol(&s.app, &user).await;
    let pending = authorize(&s.rp, &[]);
    let login = s.browser.follow(s.browser.get(&pending.url).await).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let posted = post_passkey(&s.browser, &login, &answer(&mut m, &login)).await;
    let back = s.browser.follow(posted).await;
    let code = code_from(&s, &back, &pending);
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let claims = verify_id_token(&s, &tokens, &pending.nonce);
    let amr: Vec<String> = claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect();
    assert_eq!(amr, ["pop", "user", "mfa"]);
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), "2");
    assert!(!tokens.access_token().secret().is_empty());
}

/// Types the password of `EMAIL` in `browser` and opens the second step it leads to.
async fn second_step_page(browser: &Browser) -> Page {
    let login = sent_to_sign_in(browser, "/account").await;
    let posted = browser.post_login(&login, EMAIL, PASSWORD).await;
    let to = posted.location.expect("to the second step");
    assert!(to.starts_with("/login/second-step?tx="), "{to}");
    let page = browser.get(&to).await;
    assert_eq!(page.status, 200);
    page
}

/// Posts the second step's passkey form with `credential`: the answer, not followed.
async fn post_second_step(browser: &Browser, page: &Page, credential: &str) -> Page {
    post_answer(browser, "/login/second-step/passkey", page, credential).await
}

#[tokio::test]
async fn a_passkey_is_a_second_step_after_the_password() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    enrol_totp(&app, &user).await;
    let mut m = enrol(&app, &user).await;
    let browser = app.browser();
    let page = second_step_page(&browser).await;
    let options = options_of(&page, "assert").expect("a passkey form on the second step");
    let parsed: Value = serde_json::from_str(&options).unwrap();
    // The member's own credentials, and no autofill here.
    assert_eq!(
        parsed["publicKey"]["allowCredentials"][0]["id"],
        m.reg.cred_id_b64()
    );
    let done = post_second_step(&browser, &page, &m.key.assert(&options)).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some("/account"));
    let session = session_of(&app, &browser).await.expect("a session");
    assert_eq!(session.amr, ["pwd", "pop", "mfa"]);
    assert_eq!(session.acr, "2");
    assert!(
        history(&app, &user)
            .await
            .iter()
            .any(|e| e.method == "password+passkey" && e.result == LoginResult::Success)
    );
    // The authenticator's counter is kept, so that a clone's older answer is refused.
    let stored = app.state.db.passkeys().list(user.id).await.unwrap();
    let counter = tobira_auth::oidc::passkey::stored_counter(&stored[0].credential);
    assert_eq!(counter, Some(1));
}

/// Support freezes the account after its passkey answer was checked and before the
/// pending sign-in is taken: no session is made for it.
#[tokio::test]
async fn an_account_frozen_while_its_passkey_is_checked_is_not_signed_in() {
    let (app, failing) = crate::outage::app_with_failing_store().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    enrol_totp(&app, &user).await;
    let mut m = enrol(&app, &user).await;
    let browser = app.browser();
    let page = second_step_page(&browser).await;
    let options = options_of(&page, "assert").expect("a passkey form on the second step");
    let credential = m.key.assert(&options);
    let hold = failing.hold_swap("second_step:");
    let (answer, ()) = tokio::join!(post_second_step(&browser, &page, &credential), async {
        hold.reached().await;
        crate::second_step::freeze(&app).await;
        hold.release();
    });
    crate::second_step::closed_midway(&app, &user, &answer, &browser).await;
}

#[tokio::test]
async fn a_refused_passkey_second_step_counts_like_a_wrong_code() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    enrol_totp(&app, &user).await;
    enrol(&app, &user).await;
    // Another member's passkey, answered on this member's second step.
    let other = app.add_user(OTHER, PASSWORD).await;
    let mut theirs = enrol(&app, &other).await;
    let browser = app.browser();
    let mut page = second_step_page(&browser).await;
    for left in (0..5).rev() {
        let options = options_of(&page, "assert").unwrap();
        let (cred, handle) = (theirs.reg.cred_id.clone(), theirs.handle);
        let answer = theirs.key.sign_in_as(&options, &cred, handle);
        let res = post_second_step(&browser, &page, &answer).await;
        assert!(session_of(&app, &browser).await.is_none());
        if left == 0 {
            // The fifth refusal voids the sign-in: the password is asked again.
            assert_eq!(res.status, 303, "{}", res.body);
            assert!(res.location.unwrap().contains("again=code"));
        } else {
            assert_eq!(res.status, 401, "{}", res.body);
            assert!(res.body.contains(REFUSED), "{}", res.body);
            page = res;
        }
    }
    assert_eq!(
        history(&app, &user)
            .await
            .iter()
            .filter(|e| e.method == "password+passkey" && e.result == LoginResult::PasskeyRefused)
            .count(),
        5
    );
}

async fn other_handle(app: &TestApp, user: &User) -> Uuid {
    app.state
        .db
        .passkeys()
        .handle(user.id)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_replayed_passkey_answer_is_refused() {
    let (app, user, mut m, browser, login) = member_with_passkey().await;
    // Other sign-ins under way in the same browser, to replay into.
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(sent_to_sign_in(&browser, "/account").await);
    }
    let credential = answer(&mut m, &login);
    let first = post_passkey(&browser, &login, &credential).await;
    assert_eq!(first.status, 303, "{}", first.body);
    let signed_in = session_of(&app, &browser).await.unwrap().id;
    let ceremony = login.field("ceremony").unwrap();
    let replay = async |into: &Page| {
        let (csrf, tx) = (into.field("csrf").unwrap(), into.field("tx").unwrap());
        browser
            .post_form(
                "/login/passkey",
                &[
                    ("csrf", &csrf),
                    ("tx", &tx),
                    ("ceremony", &ceremony),
                    ("credential", &credential),
                ],
            )
            .await
    };
    refused_with(&replay(&others[0]).await, 400, EXPIRED);
    // No new session came of it, and the member sees the attempt.
    assert_eq!(session_of(&app, &browser).await.unwrap().id, signed_in);
    assert_eq!(refusals(&app, &user).await, 1);
    // A flood of replays is one line a minute in the history, not one each.
    refused_with(&replay(&others[1]).await, 400, EXPIRED);
    assert_eq!(refusals(&app, &user).await, 1);
    app.clock().advance(time::Duration::seconds(61));
    refused_with(&replay(&others[2]).await, 400, EXPIRED);
    assert_eq!(refusals(&app, &user).await, 2);
}

/// A ceremony is taken only as the kind it was kept as, only by what it is bound to,
/// only once, and only under an id of at most 64 characters.
#[tokio::test]
async fn a_ceremony_is_taken_once_as_its_own_kind_by_its_own_browser() {
    use tobira_auth::authn::passkey::{Ceremony, keep, take};
    let app = TestApp::spawn().await;
    let s = &app.state;
    let kept = async |id: &str| {
        keep(s, Ceremony::SignIn, id, "cookie", &7_u32)
            .await
            .unwrap();
    };
    let taken = async |kind, id: &str, bound: &str| take::<u32>(s, kind, id, bound).await.unwrap();
    let id = "a".repeat(64);
    kept(&id).await;
    for kind in [Ceremony::SecondStep, Ceremony::Register] {
        assert_eq!(taken(kind, &id, "cookie").await, None);
    }
    assert_eq!(taken(Ceremony::SignIn, &id, "other").await, None);
    kept(&id).await;
    assert_eq!(taken(Ceremony::SignIn, &id, "cookie").await, Some(7));
    assert_eq!(taken(Ceremony::SignIn, &id, "cookie").await, None);
    // An id longer than any we make, or none, is never looked up.
    for id in [String::new(), "a".repeat(65)] {
        kept(&id).await;
        assert_eq!(
            taken(Ceremony::SignIn, &id, "cookie").await,
            None,
            "{}",
            id.len()
        );
    }
}

#[tokio::test]
async fn a_ceremony_started_in_another_browser_is_refused() {
    let (app, user, mut m, victim, login) = member_with_passkey().await;
    let credential = answer(&mut m, &login);
    // The attacker has a sign-in of their own and posts the victim's ceremony and answer.
    let attacker = app.browser();
    let own = sent_to_sign_in(&attacker, "/account").await;
    let stolen = attacker
        .post_form(
            "/login/passkey",
            &[
                ("csrf", &own.field("csrf").unwrap()),
                ("tx", &own.field("tx").unwrap()),
                ("ceremony", &login.field("ceremony").unwrap()),
                ("credential", &credential),
            ],
        )
        .await;
    refused_with(&stolen, 400, EXPIRED);
    assert!(session_of(&app, &attacker).await.is_none());
    assert!(session_of(&app, &victim).await.is_none());
    // The member sees that their passkey's answer was tried.
    assert_eq!(refusals(&app, &user).await, 1);
}

#[tokio::test]
async fn an_answer_without_user_verification_is_refused_and_recorded() {
    let (app, user, mut m, browser, login) = member_with_passkey().await;
    // An authenticator that cannot verify the member (no PIN, no biometrics) answers with
    // only the user-present flag, properly signed.
    let mut options: Value = serde_json::from_str(&signin_options(&login)).unwrap();
    assert_eq!(options["publicKey"]["userVerification"], "required");
    options["publicKey"]["userVerification"] = Value::String("preferred".into());
    let (cred, handle) = (m.reg.cred_id.clone(), m.handle);
    let present_only = m.key.sign_in_as(&options.to_string(), &cred, handle);
    let page = post_passkey(&browser, &login, &present_only).await;
    refused_with(&page, 401, REFUSED);
    assert!(session_of(&app, &browser).await.is_none());
    assert_eq!(refusals(&app, &user).await, 1);
}

#[tokio::test]
async fn a_counter_going_backwards_is_refused_and_recorded() {
    let (app, user, mut m, browser, first) = member_with_passkey().await;
    let second = sent_to_sign_in(&browser, "/account").await;
    let earlier = answer(&mut m, &first); // counter 1
    let later = answer(&mut m, &second); // counter 2
    let ok = post_passkey(&browser, &second, &later).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let cloned = post_passkey(&browser, &first, &earlier).await;
    refused_with(&cloned, 401, REFUSED);
    assert_eq!(refusals(&app, &user).await, 1);
}

#[tokio::test]
async fn an_answer_made_for_another_origin_is_refused() {
    let (app, user, mut m, browser, login) = member_with_passkey().await;
    m.key.move_to("http://localhost:1");
    let phished = answer(&mut m, &login);
    let page = post_passkey(&browser, &login, &phished).await;
    refused_with(&page, 401, REFUSED);
    assert!(session_of(&app, &browser).await.is_none());
    assert_eq!(refusals(&app, &user).await, 1);
}

#[tokio::test]
async fn an_answer_for_another_rp_id_is_refused() {
    let (app, user, mut m, browser, login) = member_with_passkey().await;
    let mut json: Value = serde_json::from_str(&answer(&mut m, &login)).unwrap();
    let data = json["response"]["authenticatorData"].as_str().unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(data).unwrap();
    bytes[0] ^= 0x01;
    json["response"]["authenticatorData"] = Value::String(URL_SAFE_NO_PAD.encode(&bytes));
    let page = post_passkey(&browser, &login, &json.to_string()).await;
    refused_with(&page, 401, REFUSED);
    assert!(session_of(&app, &browser).await.is_none());
    assert_eq!(refusals(&app, &user).await, 1);
}

#[tokio::test]
async fn a_removed_passkey_signs_nothing_in() {
    let (app, user, mut m, browser, login) = member_with_passkey().await;
    let removed = app
        .state
        .db
        .passkeys()
        .remove(
            app.clock().now(),
            user.id,
            &m.reg.cred_id_b64(),
            FactorChange {
                event: event(&user, app.clock().now(), LoginResult::Removed),
                mail: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(removed, PasskeyRemoval::Removed);
    let page = post_passkey(&browser, &login, &answer(&mut m, &login)).await;
    refused_with(&page, 401, REFUSED);
    assert!(session_of(&app, &browser).await.is_none());
}

#[tokio::test]
async fn a_credential_presented_with_another_members_handle_is_refused() {
    let (app, victim, _m, browser, login) = member_with_passkey().await;
    let attacker = app.add_user(OTHER, PASSWORD).await;
    let mut theirs = enrol(&app, &attacker).await;
    let victim_handle = other_handle(&app, &victim).await;
    let options = signin_options(&login);
    let cred = theirs.reg.cred_id.clone();
    let forged = theirs.key.sign_in_as(&options, &cred, victim_handle);
    let page = post_passkey(&browser, &login, &forged).await;
    refused_with(&page, 401, REFUSED);
    assert!(session_of(&app, &browser).await.is_none());
    // Recorded for the credential's owner, not written into the victim's history.
    assert_eq!(refusals(&app, &attacker).await, 1);
    assert_eq!(refusals(&app, &victim).await, 0);
}

#[tokio::test]
async fn malformed_answers_are_refused_with_a_clear_page() {
    let (app, _user, mut m, browser, _) = member_with_passkey().await;
    let valid = {
        let login = sent_to_sign_in(&browser, "/account").await;
        answer(&mut m, &login)
    };
    let mut no_handle: Value = serde_json::from_str(&valid).unwrap();
    no_handle["response"]["userHandle"] = Value::Null;
    let huge = format!(r#"{{"id":"{}"}}"#, "a".repeat(20_000));
    for bad in [
        String::new(),
        "not json".to_owned(),
        "{}".to_owned(),
        r#"{"id":1,"rawId":[],"response":null}"#.to_owned(),
        huge,
        no_handle.to_string(),
    ] {
        let login = sent_to_sign_in(&browser, "/account").await;
        let page = post_passkey(&browser, &login, &bad).await;
        refused_with(&page, 400, MALFORMED);
    }
    assert!(session_of(&app, &browser).await.is_none());
}

#[tokio::test]
async fn the_passkey_form_refuses_a_post_without_its_csrf_token() {
    let (app, _user, mut m, browser, login) = member_with_passkey().await;
    let credential = answer(&mut m, &login);
    let tx = login.field("tx").unwrap();
    let ceremony = login.field("ceremony").unwrap();
    for csrf in [None, Some("forged-forged-forged-forged-forged-forged")] {
        let mut form = vec![
            ("tx", tx.as_str()),
            ("ceremony", ceremony.as_str()),
            ("credential", credential.as_str()),
        ];
        if let Some(c) = csrf {
            form.push(("csrf", c));
        }
        let page = browser.post_form("/login/passkey", &form).await;
        assert_eq!(page.status, 403, "{}", page.body);
    }
    assert!(session_of(&app, &browser).await.is_none());
    // The ceremony was not spent by the forged posts.
    let ok = post_passkey(&browser, &login, &credential).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
}

#[tokio::test]
async fn a_frozen_account_cannot_sign_in_with_its_passkey() {
    let (app, user, mut m, browser, login) = member_with_passkey().await;
    app.state
        .db
        .users()
        .set_status(user.id, UserStatus::Frozen, app.clock())
        .await
        .unwrap();
    let page = post_passkey(&browser, &login, &answer(&mut m, &login)).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(session_of(&app, &browser).await.is_none());
    assert!(
        history(&app, &user)
            .await
            .iter()
            .any(|e| e.method == "passkey" && e.result == LoginResult::Frozen)
    );
}

#[tokio::test]
async fn an_ip_address_issuer_shows_no_passkeys_and_the_password_still_works() {
    let app = TestApp::spawn_with(|c| {
        let port = c.server.bind.port();
        c.issuer = tobira_auth::config::Issuer::parse(&format!("http://127.0.0.1:{port}"))
            .expect("issuer");
    })
    .await;
    assert!(app.state.webauthn.is_none());
    app.add_user(EMAIL, PASSWORD).await;
    let browser = app.browser();
    let login = sent_to_sign_in(&browser, "/account").await;
    assert!(!crate::passkey::offers_passkeys(&login), "{}", login.body);
    assert!(login.body.contains(r#"autocomplete="username""#));
    let posted = browser.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    assert_eq!(posted.location.as_deref(), Some("/account"));
    // The finish path answers nothing useful either.
    let other = app.browser();
    let again = sent_to_sign_in(&other, "/account").await;
    let finish = other
        .post_form(
            "/login/passkey",
            &[
                ("csrf", &again.field("csrf").unwrap()),
                ("tx", &again.field("tx").unwrap()),
                ("ceremony", "made-up"),
                ("credential", "{}"),
            ],
        )
        .await;
    assert_eq!(finish.status, 404, "{}", finish.body);
}

#[tokio::test]
async fn the_stored_counter_is_read_where_the_second_step_checks_it() {
    // The second step checks an answer's counter against the credential as stored now
    // (the ceremony only knows it as it was when the page was shown): that reading must
    // find the counter webauthn-rs keeps, or the check would pass everything.
    let (app, user, mut m, browser, login) = member_with_passkey().await;
    let stored = app.state.db.passkeys().list(user.id).await.unwrap();
    assert_eq!(
        tobira_auth::oidc::passkey::stored_counter(&stored[0].credential),
        Some(0),
        "{}",
        stored[0].credential
    );
    let signed = answer(&mut m, &login);
    let back = post_passkey(&browser, &login, &signed).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let stored = app.state.db.passkeys().list(user.id).await.unwrap();
    assert_eq!(
        tobira_auth::oidc::passkey::stored_counter(&stored[0].credential),
        Some(1)
    );
}

#[tokio::test]
async fn a_second_step_answer_without_its_ceremony_is_refused_and_recorded() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    enrol_totp(&app, &user).await;
    let mut m = enrol(&app, &user).await;
    let browser = app.browser();
    let page = second_step_page(&browser).await;
    let answer = m.key.assert(&options_of(&page, "assert").unwrap());
    // The answer, posted naming no ceremony of this sign-in (a replay from elsewhere).
    let res = browser
        .post_form(
            "/login/second-step/passkey",
            &[
                ("csrf", &page.field("csrf").unwrap()),
                ("tx", &page.field("tx").unwrap()),
                ("ceremony", "not-this-sign-in"),
                ("credential", &answer),
            ],
        )
        .await;
    assert_eq!(res.status, 400, "{}", res.body);
    assert!(res.body.contains(EXPIRED), "{}", res.body);
    assert!(session_of(&app, &browser).await.is_none());
    assert_eq!(
        history(&app, &user)
            .await
            .iter()
            .filter(|e| e.method == "password+passkey" && e.result == LoginResult::PasskeyRefused)
            .count(),
        1
    );
}
