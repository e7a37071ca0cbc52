//! The audit log of the members' own security changes, driven the way a member makes
//! them (the console's forms with their CSRF tokens, the mailed links, a provider's
//! callback): each change is one event naming the member as actor and target, with the
//! client address and the request id of the request that made it, and a detail that
//! holds no address, password, code or token. A refused change records nothing. And the
//! accounts made for members: by signing up, by a provider (or taken over through one),
//! and by support with `tobira users add`.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use serde_json::json;
use time::Duration;
use tobira_auth::account::linked;
use tobira_auth::config::ProviderConfig;
use tobira_auth::domain::User;
use tobira_auth::federation::Identity;
use tobira_auth::store::{AuditEvent, AuditFilter};
use tobira_auth::web::pages::RequestId;

use crate::federation::{Fed, fed};
use crate::helpers::{Browser, OutboxMail, Page, TestApp};
use crate::oidc::{EMAIL, PASSWORD, authorize, exchange, setup, sign_in_for_code};
use crate::passkey::{SoftKey, options_of};
use crate::recovery::{NEW_PASSWORD, forgot, reset_link, reset_with};
use crate::sessions::{member, session_of, signed_in};
use crate::signup::{sign_up, verify_link};
use crate::two_step;

const NEW_EMAIL: &str = "hanako.new@example.com";
/// The tests' browsers connect from here.
const LOCAL: &str = "127.0.0.1";

/// Every audit event about `user` (newest first by id; within one millisecond of the
/// tests' still clock, in no particular order) but what support did: the tests' own
/// members are made as `tobira users add` makes them, recorded as support's.
async fn events(app: &TestApp, user: &User) -> Vec<AuditEvent> {
    every_event(app, user)
        .await
        .into_iter()
        .filter(|e| e.actor_kind != "support")
        .collect()
}

/// Every audit event about `user`, whoever acted.
async fn every_event(app: &TestApp, user: &User) -> Vec<AuditEvent> {
    let filter = AuditFilter {
        target: Some(user.id.0.to_string()),
        ..Default::default()
    };
    app.state.db.audit().list(&filter, 200).await.unwrap()
}

/// The request id Tobira gave the request that `page` answers.
fn request_id(page: &Page) -> String {
    page.headers
        .get("x-request-id")
        .expect("every answer carries its request id")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Asserts that `event` is the member's `action` on their own account, made by the
/// request `page` answers, and that its detail names none of `secrets` nor any address.
fn assert_member_event(
    event: &AuditEvent,
    user: &User,
    action: &str,
    page: &Page,
    secrets: &[&str],
) {
    let id = user.id.0.to_string();
    assert_eq!(event.action, action, "{event:?}");
    assert_eq!(
        (event.actor_kind.as_str(), event.actor.as_str()),
        ("member", id.as_str())
    );
    assert_eq!(
        (event.target_kind.as_str(), event.target.as_str()),
        ("user", id.as_str())
    );
    assert_eq!(event.ip, LOCAL);
    assert!(!event.request_id.is_empty());
    assert_eq!(event.request_id, request_id(page), "{event:?}");
    assert!(event.detail.is_object(), "{event:?}");
    let detail = event.detail.to_string();
    assert!(!detail.contains('@'), "an address in {detail}");
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!detail.contains(secret), "{secret} in {detail}");
    }
}

/// The one event of `action` about `user`.
async fn only(app: &TestApp, user: &User, action: &str) -> AuditEvent {
    let found: Vec<AuditEvent> = events(app, user)
        .await
        .into_iter()
        .filter(|e| e.action == action)
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

/// Posts a form of `page` (its CSRF token) with `fields`.
async fn post(browser: &Browser, page: &Page, path: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = page.field("csrf").expect("a CSRF field");
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    browser.post_form(path, &form).await
}

async fn open(browser: &Browser, path: &str) -> Page {
    let page = browser.get(path).await;
    assert_eq!(
        page.status, 200,
        "{path}: {:?} {}",
        page.location, page.body
    );
    page
}

/// The link to `path` in `mail`, on the address the test app is bound to.
fn link_in(app: &TestApp, mail: &OutboxMail, path: &str) -> String {
    mail.link(&format!("{}{path}?token=", app.issuer()))
        .replace(&app.issuer(), app.url.as_str().trim_end_matches('/'))
}

#[tokio::test]
async fn a_password_change_is_recorded_once_and_refused_ones_not_at_all() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;

    let page = open(&browser, "/account/password").await;
    let filled = |current: &'static str| {
        vec![
            ("sign_out_asked", "1"),
            ("sign_out_others", "on"),
            ("current_password", current),
            ("password", NEW_PASSWORD),
            ("confirm", NEW_PASSWORD),
        ]
    };
    // A wrong current password, a forged token, no token: nothing changes, nothing is
    // recorded.
    let wrong = post(
        &browser,
        &page,
        "/account/password",
        &filled("not-the-password-1"),
    )
    .await;
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    let mut forged = vec![("csrf", "forged")];
    forged.extend(filled(PASSWORD));
    let refused = browser.post_form("/account/password", &forged).await;
    assert!(refused.status >= 400, "{}", refused.body);
    let tokenless = browser
        .post_form("/account/password", &filled(PASSWORD))
        .await;
    assert!(tokenless.status >= 400, "{}", tokenless.body);
    assert!(events(&app, &user).await.is_empty());

    let changed = post(&browser, &page, "/account/password", &filled(PASSWORD)).await;
    assert_eq!(changed.status, 303, "{}", changed.body);
    let all = events(&app, &user).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_member_event(
        &all[0],
        &user,
        "user.password_change",
        &changed,
        &[PASSWORD, NEW_PASSWORD],
    );
    assert_eq!(all[0].detail["sign_out_others"], true);
}

#[tokio::test]
async fn a_reset_by_the_mailed_link_is_recorded_and_a_mismatched_one_is_not() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let browser = app.browser();
    assert_eq!(forgot(&browser, EMAIL).await.status, 200);
    let mail = app.wait_for_mails(1).await.pop().unwrap();
    let link = reset_link(&app, &mail);
    let token = link.split("token=").nth(1).unwrap().to_owned();

    let mismatched = reset_with(&browser, &link, NEW_PASSWORD, "something-else-77").await;
    assert_eq!(mismatched.status, 400, "{}", mismatched.body);
    assert!(events(&app, &user).await.is_empty());

    let done = reset_with(&browser, &link, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let event = only(&app, &user, "user.password_reset").await;
    assert_member_event(
        &event,
        &user,
        "user.password_reset",
        &done,
        &[NEW_PASSWORD, &token],
    );
    assert_eq!(event.detail["method"], "email_link");
    assert_eq!(events(&app, &user).await.len(), 1);
}

#[tokio::test]
async fn an_email_change_is_recorded_when_asked_for_confirmed_and_undone_naming_no_address() {
    let app = TestApp::spawn_with(|c| c.account.new_device_mail = false).await;
    let (user, browser) = member(&app).await;

    // A refused request (a forged token) records nothing.
    let page = open(&browser, "/account/email").await;
    let forged = browser
        .post_form(
            "/account/email",
            &[("csrf", "forged"), ("email", NEW_EMAIL)],
        )
        .await;
    assert!(forged.status >= 400, "{}", forged.body);
    assert!(events(&app, &user).await.is_empty());

    let asked = post(&browser, &page, "/account/email", &[("email", NEW_EMAIL)]).await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    let event = only(&app, &user, "user.email_change_request").await;
    assert_member_event(&event, &user, "user.email_change_request", &asked, &[]);

    let mail = app.wait_for_mails(1).await.pop().unwrap();
    let confirm_link = link_in(&app, &mail, "/account/email/confirm");
    let confirm_page = open(&browser, &confirm_link).await;
    let token = confirm_page.field("token").unwrap();
    let confirmed = post(
        &browser,
        &confirm_page,
        "/account/email/confirm",
        &[("token", &token)],
    )
    .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let event = only(&app, &user, "user.email_change").await;
    assert_member_event(&event, &user, "user.email_change", &confirmed, &[&token]);
    // A replay of the spent link changes and records nothing more.
    let replayed = post(
        &browser,
        &confirm_page,
        "/account/email/confirm",
        &[("token", &token)],
    )
    .await;
    assert_eq!(replayed.status, 400, "{}", replayed.body);
    assert_eq!(events(&app, &user).await.len(), 2);

    // The old address's owner undoes it from another browser, signed in nowhere.
    let told = app.wait_for_mails(2).await.pop().unwrap();
    assert_eq!(told.to, EMAIL);
    let undo_link = link_in(&app, &told, "/account/email/undo");
    let owner = app.browser();
    let undo_page = open(&owner, &undo_link).await;
    let token = undo_page.field("token").unwrap();
    let undone = post(
        &owner,
        &undo_page,
        "/account/email/undo",
        &[("token", &token)],
    )
    .await;
    assert_eq!(undone.status, 200, "{}", undone.body);
    let event = only(&app, &user, "user.email_change_undo").await;
    assert_member_event(&event, &user, "user.email_change_undo", &undone, &[&token]);
    assert_eq!(events(&app, &user).await.len(), 3);
}

/// Signs `browser` in again (the console asked for it) with the password and the app's
/// next code.
async fn sign_in_again_with_app(app: &TestApp, browser: &Browser, authenticator: &two_step::App) {
    let sent = browser.get("/account/2fa").await;
    if sent.status == 200 {
        return;
    }
    assert_eq!(sent.status, 303, "{}", sent.body);
    let login = browser.get(crate::console::to_sign_in(&sent)).await;
    let posted = browser.post_login(&login, EMAIL, PASSWORD).await;
    let location = posted.location.expect("to the second step");
    assert!(location.starts_with("/login/second-step"), "{location}");
    let second = open(browser, &location).await;
    app.clock().advance(Duration::seconds(30));
    let done = two_step::submit(browser, &second, "totp", &authenticator.code(app), false).await;
    assert_eq!(done.status, 303, "{}", done.body);
}

#[tokio::test]
async fn every_change_to_the_second_steps_is_recorded_with_what_it_turned_on_or_off() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;

    // The app: a wrong first code enrols and records nothing; the right one does.
    let page = open(&browser, "/account/2fa").await;
    let started = post(&browser, &page, "/account/2fa/totp", &[("action", "start")]).await;
    assert_eq!(started.status, 303, "{}", started.body);
    let enrol = open(&browser, "/account/2fa/totp").await;
    let key = {
        let start = enrol.body.find(r#"id="totp-key""#).unwrap();
        let open = start + enrol.body[start..].find('>').unwrap() + 1;
        let end = open + enrol.body[open..].find('<').unwrap();
        enrol.body[open..end].trim().replace(' ', "")
    };
    let secret = data_encoding_base32(&key);
    let authenticator = two_step::App {
        authenticator: tobira_auth::authn::totp::Authenticator::new(
            &secret,
            tobira_auth::authn::second_step::TOTP_ISSUER,
            EMAIL,
        )
        .unwrap(),
    };
    let code = authenticator.code(&app);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = post(
        &browser,
        &enrol,
        "/account/2fa/totp",
        &[("action", "confirm"), ("code", wrong)],
    )
    .await;
    assert_ne!(refused.status, 303, "{}", refused.body);
    assert!(events(&app, &user).await.is_empty());
    let enrolled = post(
        &browser,
        &enrol,
        "/account/2fa/totp",
        &[("action", "confirm"), ("code", &code)],
    )
    .await;
    assert_eq!(enrolled.status, 200, "{}", enrolled.body);
    let event = only(&app, &user, "user.2fa_totp_enrol").await;
    assert_member_event(
        &event,
        &user,
        "user.2fa_totp_enrol",
        &enrolled,
        &[&code, &key],
    );
    assert_eq!(event.detail["method"], "totp");
    assert_eq!(event.detail["two_step_was_on"], false);
    assert_eq!(event.detail["two_step_on"], true);

    // New recovery codes: none of them is in the record.
    sign_in_again_with_app(&app, &browser, &authenticator).await;
    let page = open(&browser, "/account/2fa").await;
    let renewed = post(&browser, &page, "/account/2fa/recovery", &[]).await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let event = only(&app, &user, "user.2fa_recovery_regenerate").await;
    let codes: Vec<String> = renewed
        .body
        .split("<li>")
        .skip(1)
        .filter_map(|i| i.split("</li>").next())
        .map(|c| c.trim().to_owned())
        .collect();
    let secrets: Vec<&str> = codes.iter().map(String::as_str).collect();
    assert_member_event(
        &event,
        &user,
        "user.2fa_recovery_regenerate",
        &renewed,
        &secrets,
    );

    // Email codes on, then off.
    sign_in_again_with_app(&app, &browser, &authenticator).await;
    let page = open(&browser, "/account/2fa").await;
    let on = post(
        &browser,
        &page,
        "/account/2fa/email",
        &[("action", "enable")],
    )
    .await;
    assert_eq!(on.status, 303, "{}", on.body);
    let event = only(&app, &user, "user.2fa_email_on").await;
    assert_member_event(&event, &user, "user.2fa_email_on", &on, &[]);
    assert_eq!(event.detail["two_step_was_on"], true);
    sign_in_again_with_app(&app, &browser, &authenticator).await;
    let page = open(&browser, "/account/2fa").await;
    let off = post(
        &browser,
        &page,
        "/account/2fa/email",
        &[("action", "disable")],
    )
    .await;
    assert_eq!(off.status, 303, "{}", off.body);
    let event = only(&app, &user, "user.2fa_email_off").await;
    assert_member_event(&event, &user, "user.2fa_email_off", &off, &[]);
    assert_eq!(event.detail["two_step_on"], true);

    // A cross-site form turning it all off changes and records nothing; the page's own
    // form turns it off.
    sign_in_again_with_app(&app, &browser, &authenticator).await;
    let before = events(&app, &user).await.len();
    let page = open(&browser, "/account/2fa").await;
    let csrf = page.field("csrf").unwrap();
    let cross = browser
        .post_form_with(
            "/account/2fa/off",
            &[("csrf", &csrf)],
            &[
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert!(cross.status >= 400, "{}", cross.body);
    assert_eq!(events(&app, &user).await.len(), before);
    let all_off = post(&browser, &page, "/account/2fa/off", &[]).await;
    assert_eq!(all_off.status, 303, "{}", all_off.body);
    let event = only(&app, &user, "user.2fa_off").await;
    assert_member_event(&event, &user, "user.2fa_off", &all_off, &[]);
    assert_eq!(event.detail["two_step_was_on"], true);
    assert_eq!(event.detail["two_step_on"], false);
    assert_eq!(events(&app, &user).await.len(), before + 1);
}

#[tokio::test]
async fn removing_the_app_is_recorded() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let (authenticator, _) = two_step::enrol_totp(&app, &user).await;
    sign_in_again_with_app(&app, &browser, &authenticator).await;
    let page = open(&browser, "/account/2fa").await;
    let removed = post(
        &browser,
        &page,
        "/account/2fa/totp",
        &[("action", "disable")],
    )
    .await;
    assert_eq!(removed.status, 303, "{}", removed.body);
    let event = only(&app, &user, "user.2fa_totp_remove").await;
    assert_member_event(&event, &user, "user.2fa_totp_remove", &removed, &[]);
    assert_eq!(event.detail["two_step_on"], false);
    assert_eq!(events(&app, &user).await.len(), 1);
}

/// RFC 4648 base32 (the key as the enrolment page shows it).
fn data_encoding_base32(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut held, mut out) = (0_u64, 0, Vec::new());
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base32") as u64;
        bits = (bits << 5) | v;
        held += 5;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
            bits &= (1 << held) - 1;
        }
    }
    out
}

#[tokio::test]
async fn passkeys_added_renamed_and_removed_are_recorded_by_name() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let mut key = SoftKey::new(&app);

    let page = open(&browser, "/account/passkeys").await;
    let ceremony = post(
        &browser,
        &page,
        "/account/passkeys",
        &[("action", "start"), ("name", "iPhone")],
    )
    .await;
    assert_eq!(ceremony.status, 200, "{}", ceremony.body);
    let made = key.register(&options_of(&ceremony, "register").unwrap());
    let id = ceremony.field("ceremony").unwrap();
    let finish = [
        ("action", "finish"),
        ("ceremony", id.as_str()),
        ("credential", made.json.as_str()),
    ];
    let added = post(&browser, &ceremony, "/account/passkeys", &finish).await;
    assert_eq!(added.status, 303, "{}", added.body);
    let event = only(&app, &user, "user.passkey_add").await;
    assert_member_event(&event, &user, "user.passkey_add", &added, &[]);
    assert_eq!(event.detail["name"], "iPhone");
    // The replayed answer adds and records nothing.
    let replayed = post(&browser, &ceremony, "/account/passkeys", &finish).await;
    assert_eq!(replayed.status, 400, "{}", replayed.body);
    assert_eq!(events(&app, &user).await.len(), 1);

    let cred = made.cred_id_b64();
    let page = open(&browser, "/account/passkeys").await;
    let renamed = post(
        &browser,
        &page,
        "/account/passkeys/rename",
        &[("cred", &cred), ("name", "仕事用")],
    )
    .await;
    assert_eq!(renamed.status, 303, "{}", renamed.body);
    let event = only(&app, &user, "user.passkey_rename").await;
    assert_member_event(&event, &user, "user.passkey_rename", &renamed, &[]);
    assert_eq!(event.detail["name"], "仕事用");
    // Someone else's (here: nobody's) passkey cannot be renamed or removed.
    let unknown = post(
        &browser,
        &page,
        "/account/passkeys/rename",
        &[("cred", "bm9ib2R5"), ("name", "x")],
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(events(&app, &user).await.len(), 2);

    let removed = post(
        &browser,
        &page,
        "/account/passkeys/remove",
        &[("cred", &cred)],
    )
    .await;
    assert_eq!(removed.status, 303, "{}", removed.body);
    let event = only(&app, &user, "user.passkey_remove").await;
    assert_member_event(&event, &user, "user.passkey_remove", &removed, &[]);
    assert_eq!(event.detail["name"], "仕事用");
    assert_eq!(events(&app, &user).await.len(), 3);
}

fn provider(id: &str, kind: &str) -> ProviderConfig {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "kind": kind,
        "client_id": "tobira-test-client",
        "client_secret": "tobira-test-secret",
        "issuer": "",
    }))
    .unwrap()
}

#[tokio::test]
async fn a_provider_linked_by_its_callback_and_unlinked_in_the_console_is_recorded() {
    let app =
        TestApp::spawn_with(|c| c.federation.providers = vec![provider("google", "google")]).await;
    let (user, browser) = member(&app).await;
    let session = session_of(&app, &browser).await.unwrap();
    let identity = Identity {
        provider: "google".to_owned(),
        issuer: "https://accounts.google.com".to_owned(),
        subject: "g-1".to_owned(),
        email: Some("hanako@gmail.com".to_owned()),
        email_verified: true,
        name: None,
        refresh_token: Some("upstream-refresh-token".to_owned()),
    };
    // What the federation callback calls once the provider's answer passed its checks.
    let mut headers = axum::http::HeaderMap::new();
    let cookie = format!(
        "tobira_session={}",
        browser.cookie("tobira_session").unwrap()
    );
    headers.insert(axum::http::header::COOKIE, cookie.parse().unwrap());
    let linked = linked::finish_link(
        &app.state,
        &headers,
        LOCAL.parse().unwrap(),
        RequestId(Some("req-callback-1".to_owned())),
        user.id.0,
        session.id,
        identity.clone(),
    )
    .await;
    assert_eq!(linked.status(), 303);
    let event = only(&app, &user, "user.link").await;
    assert_eq!(event.request_id, "req-callback-1");
    assert_eq!(
        (event.actor_kind.as_str(), event.ip.as_str()),
        ("member", LOCAL)
    );
    assert_eq!(event.detail, serde_json::json!({ "provider": "google" }));
    // Linking the same identity again changes nothing and records nothing.
    linked::finish_link(
        &app.state,
        &headers,
        LOCAL.parse().unwrap(),
        RequestId(Some("req-callback-2".to_owned())),
        user.id.0,
        session.id,
        identity,
    )
    .await;
    assert_eq!(events(&app, &user).await.len(), 1);

    let page = open(&browser, "/account/linked").await;
    let link_id = app.state.db.links().list(user.id).await.unwrap()[0]
        .id
        .to_string();
    let forged = browser
        .post_form(
            "/account/linked/remove",
            &[("csrf", "forged"), ("link", &link_id)],
        )
        .await;
    assert!(forged.status >= 400, "{}", forged.body);
    assert_eq!(events(&app, &user).await.len(), 1);
    let removed = post(
        &browser,
        &page,
        "/account/linked/remove",
        &[("link", &link_id)],
    )
    .await;
    assert_eq!(removed.status, 303, "{}", removed.body);
    let event = only(&app, &user, "user.unlink").await;
    assert_member_event(
        &event,
        &user,
        "user.unlink",
        &removed,
        &["upstream-refresh-token"],
    );
    assert_eq!(event.detail["provider"], "google");
}

#[tokio::test]
async fn signing_out_one_device_or_all_others_is_recorded_with_the_count() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let phone = signed_in(&app, EMAIL, "phone").await;
    let _tablet = signed_in(&app, EMAIL, "tablet").await;
    let _laptop = signed_in(&app, EMAIL, "laptop").await;

    let page = open(&browser, "/account/sessions").await;
    // A sid that is none of the member's live sessions ends and records nothing.
    let unknown = post(
        &browser,
        &page,
        "/account/sessions/end",
        &[("sid", "not-a-sid")],
    )
    .await;
    assert!(unknown.status >= 400, "{}", unknown.body);
    assert!(events(&app, &user).await.is_empty());

    let sid = session_of(&app, &phone).await.unwrap().sid;
    let one = post(&browser, &page, "/account/sessions/end", &[("sid", &sid)]).await;
    assert_eq!(one.status, 303, "{}", one.body);
    let event = only(&app, &user, "user.session_end").await;
    assert_member_event(&event, &user, "user.session_end", &one, &[]);
    assert_eq!(event.detail["count"], 1);
    assert_eq!(event.detail["this_device"], false);

    let others = post(&browser, &page, "/account/sessions/end-others", &[]).await;
    assert_eq!(others.status, 303, "{}", others.body);
    // Read by what they say, not by order: on the tests' still clock both events have
    // the same time, and ids made within one millisecond are not ordered.
    let all = events(&app, &user).await;
    assert_eq!(all.len(), 2, "{all:?}");
    let everywhere = all
        .iter()
        .find(|e| e.detail.get("all_others").is_some())
        .expect("the sign-out of every other device");
    assert_member_event(everywhere, &user, "user.session_end", &others, &[]);
    assert_eq!(everywhere.detail["count"], 2);
    assert_eq!(everywhere.detail["all_others"], true);
}

#[tokio::test]
async fn removing_a_connected_apps_access_is_recorded_with_its_client_id() {
    let s = setup(Default::default()).await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    exchange(&s, code, pending.verifier).await.unwrap();
    let user = s.app.user(EMAIL).await.unwrap();

    let page = open(&s.browser, "/account/apps").await;
    let unknown = post(
        &s.browser,
        &page,
        "/account/apps/remove",
        &[("client_id", "no-such-app")],
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(events(&s.app, &user).await.is_empty());

    let removed = post(
        &s.browser,
        &page,
        "/account/apps/remove",
        &[("client_id", &s.client_id)],
    )
    .await;
    assert_eq!(removed.status, 303, "{}", removed.body);
    let event = only(&s.app, &user, "user.app_revoke").await;
    let secret = s.secret.clone().unwrap_or_default();
    assert_member_event(&event, &user, "user.app_revoke", &removed, &[&secret]);
    assert_eq!(event.detail["client_id"], s.client_id.as_str());
    // Its access is gone: a second removal finds nothing and records nothing.
    let again = post(
        &s.browser,
        &page,
        "/account/apps/remove",
        &[("client_id", &s.client_id)],
    )
    .await;
    assert_eq!(again.status, 404, "{}", again.body);
    assert_eq!(events(&s.app, &user).await.len(), 1);
}

#[tokio::test]
async fn an_unlock_by_the_owners_mailed_link_is_recorded_once() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    // The link the lock mail carries.
    let link = tobira_auth::account::unlock::unlock_link(&app.state, &user, "")
        .await
        .unwrap()
        .replace(&app.issuer(), app.url.as_str().trim_end_matches('/'));
    let token = link
        .split("token=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let browser = app.browser();
    let page = open(&browser, &link).await;
    let forged = browser
        .post_form("/unlock", &[("csrf", "forged"), ("token", &token)])
        .await;
    assert!(forged.status >= 400, "{}", forged.body);
    assert!(events(&app, &user).await.is_empty());

    let unlocked = post(&browser, &page, "/unlock", &[("token", &token)]).await;
    assert_eq!(unlocked.status, 200, "{}", unlocked.body);
    let event = only(&app, &user, "user.unlock").await;
    assert_member_event(&event, &user, "user.unlock", &unlocked, &[&token]);
    // The link is spent: pressing again unlocks and records nothing.
    let again = post(&browser, &page, "/unlock", &[("token", &token)]).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(events(&app, &user).await.len(), 1);
}

#[tokio::test]
async fn an_address_verified_at_sign_up_is_recorded() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    let signed_up = sign_up(&browser, "/signup", NEW_EMAIL, PASSWORD).await;
    assert!(signed_up.status < 400, "{}", signed_up.body);
    let mail = app.wait_for_mails(1).await.pop().unwrap();
    let link = verify_link(&app, &mail);
    let token = link
        .split("token=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let user = app.user(NEW_EMAIL).await.unwrap();
    // The sign-up itself is recorded (see below); nothing else yet.
    let before = events(&app, &user).await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].action, "user.create");

    // The browser that signed up opens its link: verified (and signed in) at once.
    let verified = browser.get(&link).await;
    assert!(verified.status < 400, "{}", verified.body);
    let event = only(&app, &user, "user.verify_email").await;
    assert_member_event(
        &event,
        &user,
        "user.verify_email",
        &verified,
        &[&token, PASSWORD],
    );
    assert_eq!(event.detail["method"], "link_in_signup_browser");
    // The spent link verifies and records nothing more.
    let again = browser.get(&link).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(events(&app, &user).await.len(), 2);
}

#[tokio::test]
async fn a_sign_up_records_the_account_it_makes_and_a_second_one_the_password_it_replaces() {
    let app = TestApp::spawn().await;
    let taken = app.add_user(EMAIL, PASSWORD).await;
    let browser = app.browser();
    let signed_up = sign_up(&browser, "/signup", NEW_EMAIL, PASSWORD).await;
    assert_eq!(signed_up.status, 200, "{}", signed_up.body);
    // The account is written after the answer, with its mail and its record.
    app.wait_for_mails(1).await;
    let user = app.user(NEW_EMAIL).await.unwrap();
    let event = only(&app, &user, "user.create").await;
    assert_member_event(&event, &user, "user.create", &signed_up, &[PASSWORD]);
    assert_eq!(event.detail, json!({ "method": "signup" }));

    // Someone signs up with the address again, from another browser, before it was
    // verified: the account's password is replaced, recorded with that request.
    let other = app.browser();
    let again = sign_up(&other, "/signup", NEW_EMAIL, NEW_PASSWORD).await;
    assert_eq!(again.status, 200, "{}", again.body);
    app.wait_for_mails(2).await;
    let event = only(&app, &user, "user.signup_again").await;
    assert_member_event(
        &event,
        &user,
        "user.signup_again",
        &again,
        &[PASSWORD, NEW_PASSWORD],
    );
    assert_eq!(event.detail["password_replaced"], true);
    assert_eq!(events(&app, &user).await.len(), 2);

    // A sign-up for a registered address changes nothing (its owner is told by mail):
    // nothing is recorded about that account.
    let told = sign_up(&app.browser(), "/signup", EMAIL, NEW_PASSWORD).await;
    assert_eq!(told.status, 200, "{}", told.body);
    app.wait_for_mails(3).await;
    assert!(events(&app, &taken).await.is_empty());
}

/// The marketplace's callback answering the upstream's redirect `back` in `f`'s browser.
async fn callback(f: &Fed, back: &Page) -> Page {
    let answer = f.browser.get(f.browser.next_url(back).as_str()).await;
    assert_eq!(answer.status, 303, "{:?} {}", answer.location, answer.body);
    answer
}

/// A first sign-in through the upstream from the console's sign-in page, up to the
/// callback's answer.
async fn through_the_provider(f: &Fed) -> Page {
    let login = f.console_sign_in_page(&f.browser).await;
    let started = f.press_button(&f.browser, &login).await;
    let back = f.at_upstream(&f.browser, started).await;
    callback(f, &back).await
}

#[tokio::test]
async fn an_account_a_provider_creates_is_recorded_with_the_provider() {
    let f = fed().await;
    let answered = through_the_provider(&f).await;
    let user = f.account(EMAIL).await.expect("an account was created");
    let event = only(f.down(), &user, "user.create").await;
    assert_member_event(&event, &user, "user.create", &answered, &[]);
    assert_eq!(
        event.detail,
        json!({ "method": "federation", "provider": "up", "email_verified": true })
    );
    // Signing in again through the link creates nothing and records nothing more.
    let other = crate::helpers::SiteBrowser::new();
    let login = f.console_sign_in_page(&other).await;
    let started = f.press_button(&other, &login).await;
    let back = f.at_upstream(&other, started).await;
    let again = other.get(other.next_url(&back).as_str()).await;
    assert_eq!(again.status, 303, "{}", again.body);
    assert_eq!(every_event(f.down(), &user).await.len(), 1);
}

#[tokio::test]
async fn an_unverified_sign_up_taken_over_through_a_provider_is_recorded_as_the_members() {
    let f = fed().await;
    // Someone signs up with the member's address and never verifies it.
    let squatter = f.down().browser();
    let sent = sign_up(&squatter, "/signup", EMAIL, NEW_PASSWORD).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert_eq!(f.down().settled().await.len(), 1, "the verification mail");
    let user = f.account(EMAIL).await.expect("the unverified sign-up");
    let created = only(f.down(), &user, "user.create").await;
    assert_member_event(&created, &user, "user.create", &sent, &[NEW_PASSWORD]);

    // The address's verified owner arrives through the provider: the sign-up is theirs.
    let answered = through_the_provider(&f).await;
    let event = only(f.down(), &user, "user.takeover").await;
    assert_member_event(&event, &user, "user.takeover", &answered, &[NEW_PASSWORD]);
    assert_eq!(event.detail, json!({ "provider": "up" }));
    assert_eq!(every_event(f.down(), &user).await.len(), 2);
}

const BIN: &str = env!("CARGO_BIN_EXE_tobira");

/// `tobira users add` for `email` against `app`'s store, as the operator `operator`, with
/// the password on standard input; run off the test thread, which serves the app.
async fn users_add(app: &TestApp, email: &str, password: &str) -> Output {
    let config = &app.state.config;
    let (dir, url) = (config.data_dir.clone(), config.database_url());
    let (email, password) = (email.to_owned(), password.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(BIN)
            .args(["users", "add", "--email", &email, "--password-stdin"])
            .args(["--verified", "--name", "山田 花子"])
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("USER", "operator")
            .env("TOBIRA_DATA_DIR", &dir)
            .env("TOBIRA_DATABASE__URL", url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(password.as_bytes()).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn an_account_support_adds_at_the_cli_is_recorded_as_the_operators() {
    let app = TestApp::spawn().await;
    let out = users_add(&app, NEW_EMAIL, NEW_PASSWORD).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user = app.user(NEW_EMAIL).await.expect("the account was made");
    let all = every_event(&app, &user).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let event = &all[0];
    let id = user.id.0.to_string();
    assert_eq!(event.action, "user.create");
    assert_eq!(
        (event.actor_kind.as_str(), event.actor.as_str()),
        ("support", "operator")
    );
    assert_eq!(
        (event.target_kind.as_str(), event.target.as_str()),
        ("user", id.as_str())
    );
    // The CLI has no address and no request of its own.
    assert_eq!((event.ip.as_str(), event.request_id.as_str()), ("", ""));
    assert_eq!(
        event.detail,
        json!({ "method": "operator", "email_verified": true, "password": true })
    );

    // A refused one (the address is taken) makes and records nothing.
    let refused = users_add(&app, NEW_EMAIL, NEW_PASSWORD).await;
    assert!(!refused.status.success());
    let filter = AuditFilter {
        action: Some("user.create".to_owned()),
        actor: Some("operator".to_owned()),
        ..Default::default()
    };
    let recorded = app.state.db.audit().list(&filter, 200).await.unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
}
