//! `/account/password`, as a member meets it: the current password, the policy with its
//! advice, "sign out other devices" (on by default) and the mail with a reset link; and
//! as an attacker would try it: guessing the current password from a signed-in browser,
//! a stale sign-in, a copied cookie, cross-site, tokenless, malformed and replayed forms.

use std::time::Duration as StdDuration;

use openidconnect::OAuth2TokenResponse;
use time::Duration;
use tobira_auth::admin::users::{AddUser, add_user};
use tobira_auth::keys::Alg;
use tobira_auth::store::NewSession;
use tobira_auth::web::i18n::Lang;

use crate::backchannel::{Receiver, checked};
use crate::console::signs_in_again;
use crate::helpers::{Browser, ClientOpts, OutboxMail, Page, TestApp};
use crate::oidc::{
    EMAIL, PASSWORD, authorize, code_from, exchange, setup, sign_in_for_code, verify_id_token,
    with_param,
};
use crate::recovery::NEW_PASSWORD;
use crate::sessions::signed_in;

const PHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const PC: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const CHANGED_SUBJECT: &str = "【Tobira】パスワードが変更されました";
const WRONG: &str = "現在のパスワードが正しくありません";

/// The member signed in on a phone and on a computer.
async fn on_two_devices() -> (TestApp, Browser, Browser) {
    let app = TestApp::spawn().await;
    app.add_user(EMAIL, PASSWORD).await;
    let phone = signed_in(&app, EMAIL, PHONE).await;
    let pc = signed_in(&app, EMAIL, PC).await;
    (app, phone, pc)
}

/// The password page of a signed-in browser, with its form.
async fn form(browser: &Browser) -> Page {
    let page = browser.get("/account/password").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(r#"<form id="password-change""#),
        "{}",
        page.body
    );
    page
}

/// Fills in and posts the page's form as the member would.
pub async fn change(
    browser: &Browser,
    current: &str,
    new: &str,
    confirm: &str,
    sign_out_others: bool,
) -> Page {
    let page = form(browser).await;
    let csrf = page.field("csrf").expect("a CSRF field");
    let asked = page.field("sign_out_asked").expect("the box's marker");
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("sign_out_asked", asked.as_str()),
        ("current_password", current),
        ("password", new),
        ("confirm", confirm),
    ];
    if sign_out_others {
        fields.push(("sign_out_others", "on"));
    }
    browser.post_form("/account/password", &fields).await
}

/// The form filled in right, with the box checked, under the CSRF token `csrf`.
fn filled(csrf: &str) -> Vec<(&str, &str)> {
    vec![
        ("csrf", csrf),
        ("sign_out_asked", "1"),
        ("current_password", PASSWORD),
        ("password", NEW_PASSWORD),
        ("confirm", NEW_PASSWORD),
        ("sign_out_others", "on"),
    ]
}

/// The notification mails sent so far.
fn changed_mails(app: &TestApp) -> Vec<OutboxMail> {
    app.outbox()
        .into_iter()
        .filter(|m| m.subject == CHANGED_SUBJECT)
        .collect()
}

/// Waits (a few seconds at most) for the notification mail.
async fn changed_mail(app: &TestApp) -> OutboxMail {
    for _ in 0..200 {
        if let Some(mail) = changed_mails(app).pop() {
            return mail;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    panic!("no password-changed mail in {:?}", app.outbox());
}

/// Once every queued mail is sent, asserts that no notification was among them.
async fn assert_no_changed_mail(app: &TestApp) {
    app.settled().await;
    assert!(changed_mails(app).is_empty(), "{:?}", changed_mails(app));
}

#[tokio::test]
async fn changing_the_password_signs_out_the_other_browser_and_keeps_this_one() {
    let (app, phone, pc) = on_two_devices().await;

    let page = form(&phone).await;
    assert!(page.body.contains("パスワードの変更"));
    assert!(
        page.body.contains("メールアドレスを含まないもの"),
        "the policy"
    );
    assert!(page.body.contains(r#"autocomplete="current-password""#));
    assert_eq!(
        page.body.matches(r#"autocomplete="new-password""#).count(),
        2
    );
    assert!(
        page.body
            .contains(r#"name="sign_out_others" value="on" checked"#),
        "on by default: {}",
        page.body
    );
    let old_cookie = phone.cookie("tobira_session").unwrap();

    let done = change(&phone, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, true).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some("/account/password?changed=others")
    );
    let shown = phone.follow(done).await;
    assert_eq!(shown.status, 200);
    assert!(
        shown.body.contains(
            r#"<p class="notice" id="password-changed" role="status">パスワードを変更しました。他のすべての端末からログアウトしました。"#
        ),
        "{}",
        shown.body
    );
    assert!(!shown.body.contains("password-change\""), "no form again");

    // The other browser is asked to sign in; this one goes on, under a renewed cookie: a
    // copy of the old one is worth nothing now.
    let elsewhere = pc.get("/account").await;
    assert_eq!(elsewhere.status, 303);
    assert!(elsewhere.location.unwrap().starts_with("/login?tx="));
    assert_eq!(phone.get("/account").await.status, 200);
    let new_cookie = phone.cookie("tobira_session").unwrap();
    assert_ne!(new_cookie, old_cookie);
    let copied = app
        .http
        .get(app.url.join("/account").unwrap())
        .header("cookie", format!("tobira_session={old_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(copied.status(), 303, "the copied cookie is signed out");

    assert!(app.password_works(EMAIL, NEW_PASSWORD).await);
    assert!(!app.password_works(EMAIL, PASSWORD).await);

    let mail = changed_mail(&app).await;
    assert_eq!(mail.to, EMAIL);
    assert!(mail.text.contains("すべての端末からログアウトしています"));
    let forgot = mail.link(&format!("{}/password/forgot", app.issuer()));
    assert_eq!(forgot, format!("{}/password/forgot", app.issuer()));
    assert!(mail.html.contains(&format!(r#"href="{forgot}""#)));
    assert!(!mail.text.contains(NEW_PASSWORD));
}

#[tokio::test]
async fn with_the_box_unchecked_the_other_browser_stays_signed_in() {
    let (app, phone, pc) = on_two_devices().await;
    let user = app.user(EMAIL).await.unwrap();

    let done = change(&phone, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, false).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some("/account/password?changed=kept")
    );
    let shown = phone.follow(done).await;
    assert!(
        shown.body.contains("他の端末はログインしたままです"),
        "{}",
        shown.body
    );
    assert_eq!(pc.get("/account").await.status, 200);
    assert_eq!(phone.get("/account").await.status, 200);
    let live = app
        .state
        .db
        .sessions()
        .list_live(user.id, app.clock().now(), app.state.sessions.idle)
        .await
        .unwrap();
    assert_eq!(live.len(), 2);
    assert!(app.password_works(EMAIL, NEW_PASSWORD).await);
    let mail = changed_mail(&app).await;
    assert!(
        mail.text
            .contains("ログイン中の他の端末は、ログインしたままです")
    );
}

#[tokio::test]
async fn a_form_without_the_box_marker_signs_the_other_browsers_out() {
    let (app, phone, pc) = on_two_devices().await;
    let page = form(&phone).await;
    let csrf = page.field("csrf").unwrap();
    // Not our page's form (no marker, no box): the default, signing out, holds.
    let done = phone
        .post_form(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current_password", PASSWORD),
                ("password", NEW_PASSWORD),
                ("confirm", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some("/account/password?changed=others")
    );
    assert_eq!(pc.get("/account").await.status, 303);
    assert!(app.password_works(EMAIL, NEW_PASSWORD).await);
}

#[tokio::test]
async fn a_wrong_or_missing_current_password_changes_nothing() {
    let (app, phone, pc) = on_two_devices().await;

    for (current, why) in [
        ("not-the-password-99", WRONG),
        ("", "現在のパスワードを入力してください"),
        // The new password typed as the current one is not the current one.
        (NEW_PASSWORD, WRONG),
    ] {
        let refused = change(&phone, current, NEW_PASSWORD, NEW_PASSWORD, true).await;
        assert_eq!(refused.status, 400, "{current:?}: {}", refused.body);
        assert!(refused.body.contains(why), "{current:?}: {}", refused.body);
        assert!(refused.body.contains(r#"id="form-error""#));
        assert!(
            !refused.body.contains(NEW_PASSWORD),
            "typed passwords are never sent back"
        );
    }
    assert_eq!(pc.get("/account").await.status, 200);
    assert_eq!(phone.get("/account").await.status, 200);
    assert!(app.password_works(EMAIL, PASSWORD).await);
    assert!(!app.password_works(EMAIL, NEW_PASSWORD).await);
    assert_no_changed_mail(&app).await;
}

#[tokio::test]
async fn the_sixth_try_within_15_minutes_is_refused_without_checking_the_password() {
    const OTHER: &str = "taro@example.jp";
    // A long re-authentication window, so that only the tries' window is tested.
    let app = TestApp::spawn_with(|c| c.account.reauth_minutes = 60).await;
    app.add_user(EMAIL, PASSWORD).await;
    app.add_user(OTHER, PASSWORD).await;
    let phone = signed_in(&app, EMAIL, PHONE).await;

    for n in 1..=5 {
        let wrong = format!("guess-number-{n}-xyz");
        let refused = change(&phone, &wrong, NEW_PASSWORD, NEW_PASSWORD, true).await;
        assert_eq!(refused.status, 400, "try {n}: {}", refused.body);
        assert!(refused.body.contains(WRONG), "try {n}");
    }
    // The sixth is refused before any check: even the right password does not pass.
    let refused = change(&phone, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, true).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("現在のパスワードの入力に何度も失敗したため"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(r#"id="retry-after""#));
    assert!(refused.body.contains("以降"), "{}", refused.body);
    assert!(app.password_works(EMAIL, PASSWORD).await);
    // The owner's other browser is not held back by what was tried on this one (a stolen
    // cookie must not lock the owner out of changing the password).
    let owners = signed_in(&app, EMAIL, PC).await;
    let typo = change(
        &owners,
        "a-typo-of-the-owner",
        NEW_PASSWORD,
        NEW_PASSWORD,
        true,
    )
    .await;
    assert_eq!(typo.status, 400, "checked, not refused: {}", typo.body);
    assert!(typo.body.contains(WRONG), "{}", typo.body);
    // Another account's tries are its own.
    let other = signed_in(&app, OTHER, PC).await;
    let done = change(&other, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, true).await;
    assert_eq!(done.status, 303, "{}", done.body);

    app.clock().advance(Duration::minutes(14));
    let still = change(&phone, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, true).await;
    assert_eq!(still.status, 429, "{}", still.body);
    app.clock().advance(Duration::minutes(2));
    let done = change(&phone, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, true).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(app.password_works(EMAIL, NEW_PASSWORD).await);
}

#[tokio::test]
async fn weak_email_containing_mismatched_and_unchanged_passwords_are_refused_with_their_messages()
{
    let (app, phone, pc) = on_two_devices().await;
    // The current password in full-width letters: the same password once normalised.
    let full_width: String = PASSWORD
        .chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap(),
            other => other,
        })
        .collect();

    for (new, confirm, message) in [
        ("password1", "password1", "推測されやすいパスワードです"),
        ("short1!", "short1!", "8文字以上にしてください"),
        (
            "Hanako-lantern-orbit-7",
            "Hanako-lantern-orbit-7",
            "メールアドレスの一部を含めないでください",
        ),
        (
            NEW_PASSWORD,
            "copper-kettle-sunrise-85",
            "パスワードが一致しません",
        ),
        (PASSWORD, PASSWORD, "現在のパスワードと同じです"),
        (&full_width, &full_width, "現在のパスワードと同じです"),
    ] {
        let refused = change(&phone, PASSWORD, new, confirm, false).await;
        assert_eq!(refused.status, 400, "{new}: {}", refused.body);
        assert!(refused.body.contains(message), "{new}: {}", refused.body);
        // The form comes back as the member left it: the box still unchecked.
        assert!(refused.body.contains(r#"<form id="password-change""#));
        assert!(!refused.body.contains(r#"value="on" checked"#), "{new}");
        assert!(!refused.body.contains(new), "{new} is not sent back");
    }
    let weak = change(&phone, PASSWORD, "password1", "password1", true).await;
    assert!(
        weak.body.contains("<li>"),
        "zxcvbn's suggestions: {}",
        weak.body
    );
    assert!(weak.body.contains(r#"value="on" checked"#));
    assert_eq!(pc.get("/account").await.status, 200);
    assert!(app.password_works(EMAIL, PASSWORD).await);
    assert_no_changed_mail(&app).await;
}

#[tokio::test]
async fn a_stale_sign_in_is_asked_again_and_comes_back_to_the_password_page() {
    let app = TestApp::spawn().await;
    app.add_user(EMAIL, PASSWORD).await;
    let phone = signed_in(&app, EMAIL, PHONE).await;
    let csrf = form(&phone).await.field("csrf").unwrap();

    // The page, past the re-authentication window.
    app.clock().advance(Duration::minutes(11));
    let stale = phone.get("/account/password").await;
    let back = signs_in_again(&phone, &stale).await;
    assert_eq!(back.as_deref(), Some("/account/password"));
    form(&phone).await;

    // A form filled in before the window ran out changes nothing, and comes back to the
    // page (a GET) once signed in again.
    app.clock().advance(Duration::minutes(11));
    let stale = phone.post_form("/account/password", &filled(&csrf)).await;
    let back = signs_in_again(&phone, &stale).await;
    assert_eq!(back.as_deref(), Some("/account/password"));
    assert!(app.password_works(EMAIL, PASSWORD).await, "nothing changed");
    assert_no_changed_mail(&app).await;

    // Signed in again just now: the change goes through.
    let done = change(&phone, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, true).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(app.password_works(EMAIL, NEW_PASSWORD).await);
}

#[tokio::test]
async fn cross_site_tokenless_forged_malformed_and_replayed_forms_change_nothing() {
    let (app, phone, pc) = on_two_devices().await;
    let page = form(&phone).await;
    let csrf = page.field("csrf").unwrap();
    let forged = "f".repeat(43);
    let cross_site: &[(&str, &str)] = &[
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ];
    let no_headers: &[(&str, &str)] = &[];
    let tokenless: Vec<_> = filled(&csrf).into_iter().skip(1).collect();
    let mut twice = filled(&csrf);
    twice.push(("sign_out_others", "on"));

    let attempts = [
        (
            "cross-site",
            filled(&csrf),
            cross_site,
            403,
            "別のサイトから送信されたため",
        ),
        (
            "tokenless",
            tokenless,
            no_headers,
            403,
            "フォームの有効期限が切れました",
        ),
        (
            "forged",
            filled(&forged),
            no_headers,
            403,
            "フォームの有効期限が切れました",
        ),
        (
            "a field twice",
            twice,
            no_headers,
            400,
            "リクエストが正しくありません",
        ),
    ];
    for (what, fields, headers, status, why) in attempts {
        let refused = phone
            .post_form_with("/account/password", &fields, headers)
            .await;
        assert_eq!(refused.status, status, "{what}: {}", refused.body);
        assert!(refused.body.contains(why), "{what}: {}", refused.body);
    }
    assert_eq!(pc.get("/account").await.status, 200);
    assert!(app.password_works(EMAIL, PASSWORD).await);
    assert_no_changed_mail(&app).await;

    // The real form goes through once; sent again, its current password is no longer
    // the current one.
    let done = phone.post_form("/account/password", &filled(&csrf)).await;
    assert_eq!(done.status, 303, "{}", done.body);
    changed_mail(&app).await;
    let replayed = phone.post_form("/account/password", &filled(&csrf)).await;
    assert_eq!(replayed.status, 400, "{}", replayed.body);
    assert!(replayed.body.contains(WRONG));
    assert!(app.password_works(EMAIL, NEW_PASSWORD).await);
    app.settled().await;
    assert_eq!(changed_mails(&app).len(), 1, "one change, one mail");
}

#[tokio::test]
async fn an_account_without_a_password_is_told_it_has_none_to_change() {
    let app = TestApp::spawn().await;
    let user = add_user(
        &app.state.db,
        &app.state.hasher,
        &app.state.clock,
        &tobira_auth::admin::audit::Context::cli(),
        AddUser {
            email: EMAIL,
            password: None,
            email_verified: true,
            display_name: "山田 花子".to_owned(),
            locale: Lang::Ja,
        },
    )
    .await
    .unwrap();
    // Signed in some other way (federation, a later issue): a session made directly.
    let (_, secret) = app
        .state
        .db
        .sessions()
        .create(
            app.clock(),
            &mut rand::rng(),
            NewSession {
                user_id: user.id,
                amr: vec!["fed".to_owned()],
                acr: "0".to_owned(),
                device_id: String::new(),
                ip: "127.0.0.1".to_owned(),
                user_agent: "tests".to_owned(),
                remember: false,
                lifetime: Duration::hours(1),
            },
        )
        .await
        .unwrap();
    let csrf = "c".repeat(43);
    let cookie = format!("tobira_session={secret}; tobira_csrf={csrf}");
    let url = app.url.join("/account/password").unwrap();

    let page = app
        .http
        .get(url.clone())
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(body.contains(r#"id="no-password""#), "{body}");
    assert!(body.contains("パスワードが設定されていないため"));
    assert!(body.contains(r#"href="/password/forgot?lang=ja""#));
    assert!(!body.contains("password-change"), "no form");

    let posted = app
        .http
        .post(url)
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("current_password", ""),
            ("password", NEW_PASSWORD),
            ("confirm", NEW_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 400);
    assert!(posted.text().await.unwrap().contains(r#"id="no-password""#));
    assert!(app.user(EMAIL).await.unwrap().password_hash.is_none());
    assert_no_changed_mail(&app).await;
}

#[tokio::test]
async fn the_other_sessions_apps_are_logged_out_and_lose_their_offline_refresh_tokens() {
    let receiver = Receiver::start().await;
    let s = setup(ClientOpts {
        refresh: true,
        backchannel_logout_uri: Some(receiver.uri()),
        ..Default::default()
    })
    .await;
    // Elsewhere: a browser signed in to the client with offline access.
    let mut pending = authorize(&s.rp, &[]);
    pending.url = with_param(&pending.url, "scope", "openid offline_access");
    let code = sign_in_for_code(&s, &pending).await;
    let elsewhere = exchange(&s, code, pending.verifier).await.unwrap();
    let elsewhere_sid = verify_id_token(&s, &elsewhere, &pending.nonce)
        .additional_claims()
        .sid
        .clone()
        .unwrap();
    // Here: the browser that changes the password, signed in to the client too.
    let here = s.app.browser();
    let pending = authorize(&s.rp, &[]);
    let back = here.sign_in(&pending.url, EMAIL, PASSWORD, false).await;
    let code = code_from(&s, &back, &pending);
    let here_tokens = exchange(&s, code, pending.verifier).await.unwrap();

    let done = change(&here, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, true).await;
    assert_eq!(done.status, 303, "{}", done.body);

    // The client hears of the other session's end, and of nothing else.
    let tokens = receiver.wait_for(1).await;
    let claims = checked(&s.app, &tokens[0], &s.client_id, Alg::RS256);
    assert_eq!(claims["sid"].as_str(), Some(elsewhere_sid.as_str()));
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(receiver.tokens().len(), 1, "this session stays signed in");
    // The offline refresh token from elsewhere is dead; this session's still works.
    let refused =
        s.rp.exchange_refresh_token(elsewhere.refresh_token().unwrap())
            .unwrap()
            .request_async(&s.http)
            .await;
    assert!(refused.is_err(), "the offline grant is revoked");
    let refreshed =
        s.rp.exchange_refresh_token(here_tokens.refresh_token().unwrap())
            .unwrap()
            .request_async(&s.http)
            .await;
    assert!(refreshed.is_ok(), "{refreshed:?}");
    assert_eq!(s.browser.get("/account").await.status, 303);
    assert_eq!(here.get("/account").await.status, 200);
}
