//! `/account/passkeys`: registering a passkey with a software authenticator through the
//! pages (stored, listed, mailed, in the history), renaming and removing it, the last way
//! in kept. Hostile: a replayed or foreign ceremony, another origin's answer, malformed
//! answers, tokenless forms, stale sessions, another member's passkey; an IP-address
//! issuer shows no passkey buttons; a purged account keeps no passkeys.

use time::Duration;
use tobira_auth::account::delete::delete_account;
use tobira_auth::domain::User;
use tobira_auth::store::{LoginResult, StoredPasskey};

use crate::console::to_sign_in;
use crate::helpers::{Browser, Page, TestApp};
use crate::oidc::EMAIL;
use crate::passkey::{Registered, SoftKey, offers_passkeys, options_of};
use crate::sessions::{member, minute, second_member, signed_in};

const ADDED_SUBJECT: &str = "【Tobira】パスキーが登録されました";
const REMOVED_SUBJECT: &str = "【Tobira】パスキーが削除されました";
const OTHER_EMAIL: &str = "taro@example.jp";

async fn passkeys_page(browser: &Browser) -> Page {
    let page = browser.get("/account/passkeys").await;
    assert_eq!(page.status, 200, "{:?} {}", page.location, page.body);
    page
}

/// Posts a form of `page` (its CSRF token) with `fields`.
async fn post(browser: &Browser, page: &Page, path: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = page.field("csrf").expect("a CSRF field");
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    browser.post_form(path, &form).await
}

/// Starts a registration named `name` from the page's form; the ceremony page.
async fn start(browser: &Browser, name: &str) -> Page {
    let page = passkeys_page(browser).await;
    let started = post(
        browser,
        &page,
        "/account/passkeys",
        &[("action", "start"), ("name", name)],
    )
    .await;
    assert_eq!(started.status, 200, "{}", started.body);
    assert!(
        options_of(&started, "register").is_some(),
        "{}",
        started.body
    );
    started
}

/// Posts the ceremony page's form with `credential`, as the script does.
async fn finish(browser: &Browser, ceremony: &Page, credential: &str) -> Page {
    let id = ceremony.field("ceremony").expect("a ceremony field");
    post(
        browser,
        ceremony,
        "/account/passkeys",
        &[
            ("action", "finish"),
            ("ceremony", &id),
            ("credential", credential),
        ],
    )
    .await
}

/// Registers a passkey named `name` with `key`, end to end; the credential.
async fn register(browser: &Browser, key: &mut SoftKey, name: &str) -> Registered {
    let ceremony = start(browser, name).await;
    let made = key.register(&options_of(&ceremony, "register").unwrap());
    let done = finish(browser, &ceremony, &made.json).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some("/account/passkeys?done=added")
    );
    made
}

async fn stored(app: &TestApp, user: &User) -> Vec<StoredPasskey> {
    app.state.db.passkeys().list(user.id).await.unwrap()
}

async fn recorded(app: &TestApp, user: &User, result: LoginResult) -> usize {
    app.settled().await;
    app.state
        .db
        .login_events()
        .page(user.id, None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.method == "passkey" && e.result == result)
        .count()
}

async fn mails_with(app: &TestApp, subject: &str) -> Vec<crate::helpers::OutboxMail> {
    app.settled()
        .await
        .into_iter()
        .filter(|m| m.subject == subject)
        .collect()
}

/// Asserts that an answer refused with `status` and says `says`, storing nothing.
async fn refused(app: &TestApp, user: &User, answer: &Page, status: u16, says: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert!(answer.body.contains(says), "{says}: {}", answer.body);
    assert!(stored(app, user).await.is_empty(), "nothing stored");
    assert!(
        mails_with(app, ADDED_SUBJECT).await.is_empty(),
        "nothing mailed"
    );
    assert_eq!(recorded(app, user, LoginResult::Enrolled).await, 0);
}

#[tokio::test]
async fn a_passkey_registered_in_the_console_is_stored_listed_mailed_and_recorded() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let empty = passkeys_page(&browser).await;
    assert!(empty.body.contains(r#"id="passkeys-none""#));

    let ceremony = start(&browser, "  仕事用のノートPC ").await;
    let options: serde_json::Value =
        serde_json::from_str(&options_of(&ceremony, "register").unwrap()).unwrap();
    // A discoverable credential with user verification, for this site.
    let selection = &options["publicKey"]["authenticatorSelection"];
    assert_eq!(selection["residentKey"], "required");
    assert_eq!(selection["requireResidentKey"], true);
    assert_eq!(selection["userVerification"], "required");
    assert_eq!(options["publicKey"]["rp"]["id"], "localhost");
    assert_eq!(options["publicKey"]["user"]["name"], EMAIL);
    assert!(
        ceremony
            .body
            .contains(r#"<script src="/static/passkey.js" defer></script>"#)
    );
    let handle = app
        .state
        .db
        .passkeys()
        .handle(user.id)
        .await
        .unwrap()
        .unwrap();
    use base64::Engine;
    assert_eq!(
        options["publicKey"]["user"]["id"],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(handle.as_bytes())
    );

    let mut key = SoftKey::new(&app);
    let made = key.register(&options_of(&ceremony, "register").unwrap());
    let done = finish(&browser, &ceremony, &made.json).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let page = browser.get(done.location.as_deref().unwrap()).await;
    assert!(
        page.body.contains("パスキーを登録しました。"),
        "{}",
        page.body
    );

    let kept = stored(&app, &user).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].name, "仕事用のノートPC");
    assert_eq!(kept[0].cred_id, made.cred_id_b64());
    assert!(page.body.contains("仕事用のノートPC"));
    assert!(page.body.contains(&minute(&app, app.clock().now())));
    assert!(page.body.contains("まだ使われていません"));
    assert!(page.body.contains(&made.cred_id_b64()));

    let mails = mails_with(&app, ADDED_SUBJECT).await;
    assert_eq!(mails.len(), 1, "one mail");
    assert_eq!(mails[0].to, EMAIL);
    assert!(mails[0].text.contains("仕事用のノートPC"));
    assert!(mails[0].text.contains("/account/passkeys"));
    assert_eq!(recorded(&app, &user, LoginResult::Enrolled).await, 1);

    let history = browser.get("/account/history").await;
    assert!(
        history.body.contains(": パスキー</small>"),
        "{}",
        history.body
    );
    let overview = browser.get("/account").await;
    assert!(
        overview
            .body
            .contains(r#"<span data-testid="passkeys">1</span>"#)
    );
}

#[tokio::test]
async fn an_empty_name_gets_a_numbered_one_and_a_bad_name_is_refused() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let mut key = SoftKey::new(&app);
    register(&browser, &mut key, "").await;
    assert_eq!(stored(&app, &user).await[0].name, "パスキー 1");

    let page = passkeys_page(&browser).await;
    for bad in ["a\nb".to_owned(), "鍵".repeat(65)] {
        let answer = post(
            &browser,
            &page,
            "/account/passkeys",
            &[("action", "start"), ("name", &bad)],
        )
        .await;
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert!(answer.body.contains("64文字以内"), "{}", answer.body);
        assert!(options_of(&answer, "register").is_none());
    }
}

#[tokio::test]
async fn a_second_ceremony_excludes_the_members_passkeys_and_a_taken_credential_is_refused() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let mut key = SoftKey::new(&app);
    let first = register(&browser, &mut key, "一本目").await;

    let ceremony = start(&browser, "二本目").await;
    let options: serde_json::Value =
        serde_json::from_str(&options_of(&ceremony, "register").unwrap()).unwrap();
    let excluded: Vec<_> = options["publicKey"]["excludeCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(excluded, vec![first.cred_id_b64()]);

    // The soft passkey makes a new credential each time; make its id taken (by another
    // account) before the finish, as a colliding or copied credential would be.
    let made = SoftKey::new(&app).register(&options_of(&ceremony, "register").unwrap());
    let other = second_member(&app).await;
    app.state
        .db
        .passkeys()
        .add(
            app.clock().now(),
            StoredPasskey {
                cred_id: made.cred_id_b64(),
                user: other.id,
                name: "taken".into(),
                credential: "{}".into(),
                created_at: app.clock().now(),
                last_used_at: None,
            },
            tobira_auth::store::FactorChange {
                event: tobira_auth::store::LoginEvent {
                    id: uuid::Uuid::new_v4(),
                    user: other.id,
                    at: app.clock().now(),
                    ip: String::new(),
                    user_agent: String::new(),
                    device_hash: String::new(),
                    method: "passkey".into(),
                    result: LoginResult::Enrolled,
                    new_device: false,
                },
                mail: None,
            },
        )
        .await
        .unwrap();
    let answer = finish(&browser, &ceremony, &made.json).await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert!(answer.body.contains("このパスキーはすでに登録されています"));
    assert_eq!(stored(&app, &user).await.len(), 1);
    assert_eq!(stored(&app, &other).await[0].name, "taken", "not moved");
}

#[tokio::test]
async fn a_replayed_finish_is_refused() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let ceremony = start(&browser, "一本目").await;
    let made = SoftKey::new(&app).register(&options_of(&ceremony, "register").unwrap());
    assert_eq!(finish(&browser, &ceremony, &made.json).await.status, 303);
    let replayed = finish(&browser, &ceremony, &made.json).await;
    assert_eq!(replayed.status, 400, "{}", replayed.body);
    assert!(replayed.body.contains("登録の有効期限が切れたか"));
    assert_eq!(stored(&app, &user).await.len(), 1);
    assert_eq!(mails_with(&app, ADDED_SUBJECT).await.len(), 1);
}

#[tokio::test]
async fn a_ceremony_started_by_another_session_is_refused() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    // The same member in another browser cannot finish this browser's ceremony.
    let other_browser = signed_in(&app, EMAIL, "another browser").await;
    let ceremony = start(&browser, "一本目").await;
    let made = SoftKey::new(&app).register(&options_of(&ceremony, "register").unwrap());
    let other_page = passkeys_page(&other_browser).await;
    let id = ceremony.field("ceremony").unwrap();
    let answer = post(
        &other_browser,
        &other_page,
        "/account/passkeys",
        &[
            ("action", "finish"),
            ("ceremony", &id),
            ("credential", &made.json),
        ],
    )
    .await;
    refused(&app, &user, &answer, 400, "登録の有効期限が切れたか").await;
    // Kept under its own session: the attempt could not spend it, the rightful browser
    // finishes it.
    let rightful = finish(&browser, &ceremony, &made.json).await;
    assert_eq!(rightful.status, 303, "{}", rightful.body);
    assert_eq!(stored(&app, &user).await.len(), 1);
}

#[tokio::test]
async fn an_answer_made_for_another_origin_is_refused() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let ceremony = start(&browser, "一本目").await;
    let mut phished = SoftKey::at("http://localhost:1");
    let made = phished.register(&options_of(&ceremony, "register").unwrap());
    let answer = finish(&browser, &ceremony, &made.json).await;
    refused(&app, &user, &answer, 400, "パスキーを確認できなかったため").await;
}

#[tokio::test]
async fn an_answer_to_another_challenge_is_refused() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let first = start(&browser, "一本目").await;
    let second = start(&browser, "二本目").await;
    let made = SoftKey::new(&app).register(&options_of(&first, "register").unwrap());
    let answer = finish(&browser, &second, &made.json).await;
    refused(&app, &user, &answer, 400, "パスキーを確認できなかったため").await;
}

#[tokio::test]
async fn malformed_answers_are_refused_with_a_clear_message() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let ceremony = start(&browser, "一本目").await;
    let made = SoftKey::new(&app).register(&options_of(&ceremony, "register").unwrap());
    let mut standard_b64: serde_json::Value = serde_json::from_str(&made.json).unwrap();
    standard_b64["response"]["clientDataJSON"] = "+/+/".into();
    for bad in [
        String::new(),
        "not json".to_owned(),
        "{}".to_owned(),
        made.json[..made.json.len() / 2].to_owned(),
        standard_b64.to_string(),
        // The genuine answer, padded past what any answer needs (16 KiB): still JSON.
        format!("{}{}", made.json, " ".repeat(16 * 1024)),
    ] {
        let answer = finish(&browser, &ceremony, &bad).await;
        refused(&app, &user, &answer, 400, "応答を読み取れませんでした").await;
    }
    // A malformed post does not use up the ceremony.
    assert_eq!(finish(&browser, &ceremony, &made.json).await.status, 303);
}

#[tokio::test]
async fn forms_without_the_csrf_token_change_nothing() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let mut key = SoftKey::new(&app);
    let made = register(&browser, &mut key, "一本目").await;
    let cred = made.cred_id_b64();
    let ceremony = start(&browser, "二本目").await;
    let second = SoftKey::new(&app).register(&options_of(&ceremony, "register").unwrap());
    let id = ceremony.field("ceremony").unwrap();
    let attempts: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "/account/passkeys",
            vec![("action", "start"), ("name", "x")],
        ),
        (
            "/account/passkeys",
            vec![
                ("action", "finish"),
                ("ceremony", &id),
                ("credential", &second.json),
            ],
        ),
        (
            "/account/passkeys/rename",
            vec![("cred", &cred), ("name", "盗られた")],
        ),
        ("/account/passkeys/remove", vec![("cred", &cred)]),
    ];
    for (path, form) in attempts {
        let answer = browser.post_form(path, &form).await;
        assert!(
            answer.status == 403 || answer.status == 400,
            "{path}: {} {}",
            answer.status,
            answer.body
        );
    }
    let kept = stored(&app, &user).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].name, "一本目");
}

#[tokio::test]
async fn a_stale_session_is_sent_to_sign_in_again() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let page = passkeys_page(&browser).await;
    let ceremony = start(&browser, "一本目").await;
    let made = SoftKey::new(&app).register(&options_of(&ceremony, "register").unwrap());
    app.clock().advance(Duration::minutes(
        i64::from(app.state.config.account.reauth_minutes) + 1,
    ));
    to_sign_in(&browser.get("/account/passkeys").await);
    to_sign_in(&finish(&browser, &ceremony, &made.json).await);
    to_sign_in(
        &post(
            &browser,
            &page,
            "/account/passkeys",
            &[("action", "start"), ("name", "x")],
        )
        .await,
    );
    assert!(stored(&app, &user).await.is_empty());
}

#[tokio::test]
async fn a_passkey_is_renamed_and_removed_with_its_mail_and_history() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let mut key = SoftKey::new(&app);
    let made = register(&browser, &mut key, "一本目").await;
    let cred = made.cred_id_b64();

    let page = passkeys_page(&browser).await;
    let renamed = post(
        &browser,
        &page,
        "/account/passkeys/rename",
        &[("cred", &cred), ("name", " 家のPC ")],
    )
    .await;
    assert_eq!(
        renamed.location.as_deref(),
        Some("/account/passkeys?done=renamed")
    );
    assert_eq!(stored(&app, &user).await[0].name, "家のPC");
    let bad = post(
        &browser,
        &page,
        "/account/passkeys/rename",
        &[("cred", &cred), ("name", "a\u{0}b")],
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(stored(&app, &user).await[0].name, "家のPC");

    let removed = post(
        &browser,
        &page,
        "/account/passkeys/remove",
        &[("cred", &cred)],
    )
    .await;
    assert_eq!(
        removed.location.as_deref(),
        Some("/account/passkeys?done=removed")
    );
    assert!(stored(&app, &user).await.is_empty());
    let mails = mails_with(&app, REMOVED_SUBJECT).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].text.contains("家のPC"));
    assert_eq!(recorded(&app, &user, LoginResult::Removed).await, 1);
    // Removing it again finds nothing.
    let again = post(
        &browser,
        &page,
        "/account/passkeys/remove",
        &[("cred", &cred)],
    )
    .await;
    assert_eq!(again.status, 404, "{}", again.body);
    assert_eq!(mails_with(&app, REMOVED_SUBJECT).await.len(), 1);
}

#[tokio::test]
async fn another_members_passkey_cannot_be_renamed_or_removed() {
    let app = TestApp::spawn().await;
    let (_user, browser) = member(&app).await;
    let other = second_member(&app).await;
    let other_browser = signed_in(&app, OTHER_EMAIL, "tests").await;
    let theirs = register(&other_browser, &mut SoftKey::new(&app), "taro's").await;
    let cred = theirs.cred_id_b64();

    let page = passkeys_page(&browser).await;
    assert!(!page.body.contains(&cred));
    let rename = post(
        &browser,
        &page,
        "/account/passkeys/rename",
        &[("cred", &cred), ("name", "mine now")],
    )
    .await;
    assert_eq!(rename.status, 404, "{}", rename.body);
    let remove = post(
        &browser,
        &page,
        "/account/passkeys/remove",
        &[("cred", &cred)],
    )
    .await;
    assert_eq!(remove.status, 404, "{}", remove.body);
    let kept = stored(&app, &other).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].name, "taro's");
    assert!(mails_with(&app, REMOVED_SUBJECT).await.is_empty());
}

#[tokio::test]
async fn the_last_passkey_of_an_account_without_a_password_is_kept() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let one = register(&browser, &mut SoftKey::new(&app), "一本目").await;
    let two = register(&browser, &mut SoftKey::new(&app), "二本目").await;
    // The account loses its password (as a passwordless account has none).
    let conn = sea_orm::Database::connect(app.state.config.database_url())
        .await
        .unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        &conn,
        &format!("UPDATE users SET password_hash = NULL WHERE email = '{EMAIL}'"),
    )
    .await
    .unwrap();
    conn.close().await.unwrap();

    let page = passkeys_page(&browser).await;
    let removed = post(
        &browser,
        &page,
        "/account/passkeys/remove",
        &[("cred", &one.cred_id_b64())],
    )
    .await;
    assert_eq!(removed.status, 303, "one of two goes: {}", removed.body);
    let kept = post(
        &browser,
        &page,
        "/account/passkeys/remove",
        &[("cred", &two.cred_id_b64())],
    )
    .await;
    assert_eq!(kept.status, 409, "{}", kept.body);
    assert!(
        kept.body
            .contains("パスワードのないアカウントの最後のパスキーは削除できません")
    );
    assert_eq!(stored(&app, &user).await.len(), 1);
    assert_eq!(mails_with(&app, REMOVED_SUBJECT).await.len(), 1);
    assert_eq!(recorded(&app, &user, LoginResult::Removed).await, 1);
}

#[tokio::test]
async fn an_ip_address_issuer_shows_no_passkey_buttons() {
    let app = TestApp::spawn_with(|c| {
        let ip = c.issuer.as_str().replace("localhost", "127.0.0.1");
        c.issuer = tobira_auth::config::Issuer::parse(&ip).unwrap();
    })
    .await;
    assert!(app.state.webauthn.is_none());
    let (user, browser) = member(&app).await;
    let page = passkeys_page(&browser).await;
    assert!(
        page.body.contains(r#"id="passkeys-unavailable""#),
        "{}",
        page.body
    );
    assert!(!page.body.contains(r#"id="passkey-add""#));
    assert!(!offers_passkeys(&page));
    assert!(!page.body.contains("<form"), "no buttons: {}", page.body);
    // A hand-made start (with a valid token from another console form) starts nothing.
    let with_token = browser.get("/account/2fa").await;
    let answer = post(
        &browser,
        &with_token,
        "/account/passkeys",
        &[("action", "start"), ("name", "x")],
    )
    .await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert!(!offers_passkeys(&answer));
    assert!(stored(&app, &user).await.is_empty());
}

#[tokio::test]
async fn a_purged_account_keeps_no_passkeys_nor_its_handle() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    register(&browser, &mut SoftKey::new(&app), "一本目").await;
    let handle = app
        .state
        .db
        .passkeys()
        .handle(user.id)
        .await
        .unwrap()
        .unwrap();
    let s = &app.state;
    assert!(
        delete_account(
            &s.db,
            &s.master,
            &s.identifiers,
            &s.config,
            &tobira_auth::admin::audit::Context::cli(),
            s.clock.now(),
            &user
        )
        .await
        .unwrap()
    );
    app.clock().advance(Duration::days(
        i64::from(app.state.config.account.retention_days) + 1,
    ));
    tobira_auth::jobs::purge(&app.state).await.unwrap();
    assert!(app.state.db.accounts().purged(user.id).await.unwrap());
    assert!(stored(&app, &user).await.is_empty());
    assert_eq!(
        app.state
            .db
            .passkeys()
            .user_by_handle(handle)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_new_registration_replaces_the_last_so_starts_in_a_loop_keep_one_ceremony() {
    // Each start once kept a new ceremony for 5 minutes in the store parked sign-ins
    // share: a member could fill it by starting in a loop. Now a start replaces the last.
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let first = start(&browser, "一本目").await;
    let second = start(&browser, "二本目").await;
    let made = SoftKey::new(&app).register(&options_of(&second, "register").unwrap());
    // The older tab's form names a start that was replaced.
    let stale = finish(&browser, &first, &made.json).await;
    assert_eq!(stale.status, 400, "{}", stale.body);
    let third = start(&browser, "三本目").await;
    let made = SoftKey::new(&app).register(&options_of(&third, "register").unwrap());
    assert_eq!(finish(&browser, &third, &made.json).await.status, 303);
    let names: Vec<String> = stored(&app, &user)
        .await
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["三本目"]);
}

#[tokio::test]
async fn an_account_holds_at_most_twenty_five_passkeys() {
    // Each passkey is listed in every second-step ceremony and in the exclusion list of
    // a registration: a script registering without end must meet a limit.
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    for n in 0..25 {
        let change = tobira_auth::store::FactorChange {
            event: tobira_auth::store::LoginEvent {
                id: uuid::Uuid::new_v4(),
                user: user.id,
                at: app.clock().now(),
                ip: "127.0.0.1".to_owned(),
                user_agent: "tests".to_owned(),
                device_hash: String::new(),
                method: "passkey".to_owned(),
                result: LoginResult::Enrolled,
                new_device: false,
            },
            mail: None,
        };
        let passkey = StoredPasskey {
            cred_id: format!("made-up-credential-{n}"),
            user: user.id,
            name: format!("キー{n}"),
            credential: "{}".to_owned(),
            created_at: app.clock().now(),
            last_used_at: None,
        };
        app.state
            .db
            .passkeys()
            .add(app.clock().now(), passkey, change)
            .await
            .unwrap();
    }
    let ceremony = start(&browser, "二十六本目").await;
    let made = SoftKey::new(&app).register(&options_of(&ceremony, "register").unwrap());
    let answer = finish(&browser, &ceremony, &made.json).await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert!(answer.body.contains("25個まで"), "{}", answer.body);
    assert_eq!(stored(&app, &user).await.len(), 25);
}
