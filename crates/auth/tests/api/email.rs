//! Changing the sign-in address (`/account/email`) as a member meets it: the request after
//! a recent sign-in, the link to the new address, the mail to the old one with its undo
//! link, and the undo that takes the account back, ends everything signed in and asks for
//! a password reset. And as it goes wrong: expired, replayed, tampered and other accounts'
//! links, an address taken meanwhile, a second change before the undo, a stale sign-in,
//! forged forms and hostile addresses.

use time::Duration;
use tobira_auth::Config;
use tobira_auth::domain::{User, UserStatus};
use tobira_auth::keys::Alg;

use crate::backchannel::{Receiver, checked};
use crate::console::{signs_in_again, to_sign_in};
use crate::helpers::{Browser, ClientOpts, OutboxMail, Page, TestApp};
use crate::oidc::{EMAIL, PASSWORD, authorize, exchange, setup_with, sign_in_for_code};
use crate::recovery::{NEW_PASSWORD, reset_link, reset_with};
use crate::sessions::{member, signed_in};

const NEW_EMAIL: &str = "hanako.new@example.com";
const THIRD_EMAIL: &str = "hanako.third@example.net";
const OTHER_EMAIL: &str = "taro@example.jp";
const CONFIRM_SUBJECT: &str = "【Tobira】新しいメールアドレスの確認";
const CHANGED_SUBJECT: &str = "【Tobira】メールアドレスが変更されました";
const RESET_SUBJECT: &str = "【Tobira】パスワードの再設定";
const LINK_DEAD: &str = "このリンクは無効か、すでに使われたか、有効期限が切れています";
const CROSS_SITE: &[(&str, &str)] = &[
    ("origin", "https://evil.example"),
    ("sec-fetch-site", "cross-site"),
];

/// The only mails are the ones these tests cause (no new-device mails).
fn quiet(c: &mut Config) {
    c.account.new_device_mail = false;
}

/// Asks for the change to `new` through the page's form.
async fn request(browser: &Browser, new: &str) -> Page {
    let page = browser.get("/account/email").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.field("csrf").expect("a CSRF field");
    browser
        .post_form("/account/email", &[("csrf", &csrf), ("email", new)])
        .await
}

/// Asks for the change and checks the answer.
async fn requested(browser: &Browser, new: &str) {
    let sent = request(browser, new).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(sent.body.contains(r#"id="email-sent""#), "{}", sent.body);
}

/// The link to `path` in `mail`, on the address the test app is bound to.
fn link(app: &TestApp, mail: &OutboxMail, path: &str) -> String {
    let link = mail.link(&format!("{}{path}?token=", app.issuer()));
    // The issuer's host (localhost) and the bound address differ only in name.
    link.replace(&app.issuer(), app.url.as_str().trim_end_matches('/'))
}

fn token_of(link: &str) -> &str {
    link.split("token=").nth(1).expect("a token")
}

/// Waits for the `n`th mail (1-based) and checks where it went and what it is.
async fn nth_mail(app: &TestApp, n: usize, to: &str, subject: &str) -> OutboxMail {
    let mail = app.wait_for_mails(n).await.swap_remove(n - 1);
    assert_eq!((mail.to.as_str(), mail.subject.as_str()), (to, subject));
    mail
}

/// Opens a link's page and presses its button; the answer.
async fn press(browser: &Browser, link: &str, action: &str) -> Page {
    let page = browser.get(link).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let (csrf, token) = (page.field("csrf").unwrap(), page.field("token").unwrap());
    browser
        .post_form(action, &[("csrf", &csrf), ("token", &token)])
        .await
}

/// Posts a link's form with `token`, with a CSRF token this browser holds.
async fn post_token(browser: &Browser, action: &str, token: &str) -> Page {
    let csrf = browser.get("/password/forgot").await.field("csrf").unwrap();
    browser
        .post_form(action, &[("csrf", &csrf), ("token", token)])
        .await
}

/// A link's page works a minute before `lifetime` runs out and is a dead link a second
/// after it; the page's form, posted late, is refused too.
async fn expires_after(
    app: &TestApp,
    browser: &Browser,
    link: &str,
    action: &str,
    lifetime: Duration,
) {
    app.clock().advance(lifetime - Duration::minutes(1));
    let fresh = browser.get(link).await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    app.clock()
        .advance(Duration::minutes(1) + Duration::seconds(1));
    let stale = browser.get(link).await;
    assert_eq!(stale.status, 400, "{}", stale.body);
    assert!(stale.body.contains(LINK_DEAD), "{}", stale.body);
    let late = browser
        .post_form(
            action,
            &[
                ("csrf", &fresh.field("csrf").unwrap()),
                ("token", &fresh.field("token").unwrap()),
            ],
        )
        .await;
    assert_eq!(late.status, 400, "{}", late.body);
}

async fn confirm(app: &TestApp, browser: &Browser, mail: &OutboxMail) -> Page {
    let link = link(app, mail, "/account/email/confirm");
    press(browser, &link, "/account/email/confirm").await
}

/// Requests the change to `new` and confirms it from the same browser: the old address's
/// mail (the `n`th), with the undo link.
async fn change(app: &TestApp, browser: &Browser, from: &str, new: &str, n: usize) -> String {
    requested(browser, new).await;
    let mail = nth_mail(app, n, new, CONFIRM_SUBJECT).await;
    let done = confirm(app, browser, &mail).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains(r#"id="email-changed""#), "{}", done.body);
    let told = nth_mail(app, n + 1, from, CHANGED_SUBJECT).await;
    link(app, &told, "/account/email/undo")
}

/// Marks an account deleted (its address leaves the unique index), as the store does.
async fn mark_deleted(app: &TestApp, user: &User) {
    app.state
        .db
        .users()
        .set_status(user.id, UserStatus::Deleted, app.clock())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_new_address_becomes_the_sign_in_address_only_through_its_link_and_the_old_one_is_told()
{
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    let page = browser.get("/account/email").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for words in [
        &format!(r#"<strong id="current-email">{EMAIL}</strong>"#),
        r#"<form id="email-change" method="post" action="/account/email""#,
        r#"name="email""#,
        "ログインに使うアドレスは変わりません",
    ] {
        assert!(page.body.contains(words), "{words}: {}", page.body);
    }

    let sent = request(&browser, NEW_EMAIL).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(
        sent.body
            .contains("新しいメールアドレスに確認用のリンクをお送りしました（24時間有効）"),
        "{}",
        sent.body
    );
    let mail = nth_mail(&app, 1, NEW_EMAIL, CONFIRM_SUBJECT).await;
    assert!(
        mail.text.contains("24時間有効、1回のみ使えます"),
        "{}",
        mail.text
    );
    assert!(
        !mail.text.contains("山田"),
        "the unproven mailbox does not learn the member's name: {}",
        mail.text
    );
    // Until the link is used nothing changes.
    assert_eq!(app.reload(&user).await.email.normalized(), EMAIL);
    assert!(app.password_works(EMAIL, PASSWORD).await);
    assert!(!app.password_works(NEW_EMAIL, PASSWORD).await);

    // Opening the link (as a mail scanner would, twice) shows a button and spends nothing.
    let confirm_link = link(&app, &mail, "/account/email/confirm");
    let other = app.browser();
    for _ in 0..2 {
        let shown = other.get(&confirm_link).await;
        assert_eq!(shown.status, 200, "{}", shown.body);
        assert!(
            shown
                .body
                .contains(&format!(r#"<strong id="new-email">{NEW_EMAIL}</strong>"#)),
            "{}",
            shown.body
        );
        assert!(
            shown.body.contains(
                r#"<form id="email-confirm" method="post" action="/account/email/confirm""#
            )
        );
    }
    assert_eq!(app.reload(&user).await.email.normalized(), EMAIL);

    // Pressed in a browser that is not signed in: the mailbox is proof enough.
    let done = press(&other, &confirm_link, "/account/email/confirm").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body
            .contains(r#"<p class="notice" id="email-changed""#)
    );
    let changed = app.reload(&user).await;
    assert_eq!(changed.email.normalized(), NEW_EMAIL);
    assert_eq!(changed.email.display(), NEW_EMAIL);
    assert!(changed.email_verified);
    assert!(!changed.reset_required);
    assert!(app.password_works(NEW_EMAIL, PASSWORD).await);
    assert!(!app.password_works(EMAIL, PASSWORD).await);
    assert!(app.user(EMAIL).await.is_none());

    // The old address is told at once, with the undo link and what undoing does; the new
    // address only partly.
    let told = nth_mail(&app, 2, EMAIL, CHANGED_SUBJECT).await;
    for words in [
        "山田 花子 様",
        "h***@example.com",
        "7日間有効",
        "すべての端末とアプリからログアウトし、連携サービス・パスキー・二段階認証の設定を削除します",
        "パスワードを再設定するまでログインできなくなります",
    ] {
        assert!(told.text.contains(words), "{words}: {}", told.text);
    }
    assert!(!told.text.contains(NEW_EMAIL), "{}", told.text);
    assert!(told.html.contains("メールアドレスの変更を取り消す"));
    link(&app, &told, "/account/email/undo");

    // The member's own browser stays signed in and shows the new address.
    let page = browser.get("/account/email").await;
    assert!(
        page.body.contains(&format!(
            r#"<strong id="current-email">{NEW_EMAIL}</strong>"#
        )),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn the_confirmation_link_works_for_24_hours_only() {
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    requested(&browser, NEW_EMAIL).await;
    let mail = nth_mail(&app, 1, NEW_EMAIL, CONFIRM_SUBJECT).await;
    let confirm_link = link(&app, &mail, "/account/email/confirm");
    expires_after(
        &app,
        &browser,
        &confirm_link,
        "/account/email/confirm",
        Duration::hours(24),
    )
    .await;
    assert_eq!(app.reload(&user).await.email.normalized(), EMAIL);
    app.settled().await;
    assert_eq!(app.outbox().len(), 1, "no mail to the old address");
}

#[tokio::test]
async fn the_confirmation_link_works_once_and_a_newer_request_voids_the_older() {
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    requested(&browser, THIRD_EMAIL).await;
    let older = nth_mail(&app, 1, THIRD_EMAIL, CONFIRM_SUBJECT).await;
    requested(&browser, NEW_EMAIL).await;
    let newer = nth_mail(&app, 2, NEW_EMAIL, CONFIRM_SUBJECT).await;
    let voided = browser
        .get(&link(&app, &older, "/account/email/confirm"))
        .await;
    assert_eq!(voided.status, 400, "{}", voided.body);

    // A double submission: the second finds the link spent.
    let newer_link = link(&app, &newer, "/account/email/confirm");
    let page = browser.get(&newer_link).await;
    let (csrf, token) = (page.field("csrf").unwrap(), page.field("token").unwrap());
    let form = [("csrf", csrf.as_str()), ("token", token.as_str())];
    let first = browser.post_form("/account/email/confirm", &form).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let second = browser.post_form("/account/email/confirm", &form).await;
    assert_eq!(second.status, 400, "{}", second.body);
    assert!(second.body.contains(LINK_DEAD), "{}", second.body);
    assert_eq!(browser.get(&newer_link).await.status, 400);
    assert_eq!(app.reload(&user).await.email.normalized(), NEW_EMAIL);
    app.settled().await;
    assert_eq!(app.outbox().len(), 3, "the old address is told once");
}

#[tokio::test]
async fn a_browser_signed_in_to_another_account_cannot_use_the_link() {
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    app.add_user(OTHER_EMAIL, PASSWORD).await;
    let taro = signed_in(&app, OTHER_EMAIL, "tests").await;
    requested(&browser, NEW_EMAIL).await;
    let mail = nth_mail(&app, 1, NEW_EMAIL, CONFIRM_SUBJECT).await;
    let confirm_link = link(&app, &mail, "/account/email/confirm");

    let refused = taro.get(&confirm_link).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("別のアカウントのものです"),
        "{}",
        refused.body
    );
    let posted = post_token(&taro, "/account/email/confirm", token_of(&confirm_link)).await;
    assert_eq!(posted.status, 403, "{}", posted.body);
    assert_eq!(app.reload(&user).await.email.normalized(), EMAIL);
    assert_eq!(
        app.user(OTHER_EMAIL).await.unwrap().email.normalized(),
        OTHER_EMAIL
    );

    // The link is still good for a browser of the account itself.
    let done = press(&browser, &confirm_link, "/account/email/confirm").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(app.reload(&user).await.email.normalized(), NEW_EMAIL);
}

#[tokio::test]
async fn an_address_a_live_account_took_meanwhile_is_refused_and_a_deleted_ones_is_not() {
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    requested(&browser, OTHER_EMAIL).await;
    let mail = nth_mail(&app, 1, OTHER_EMAIL, CONFIRM_SUBJECT).await;
    let taro = app.add_user(OTHER_EMAIL, PASSWORD).await;

    // Asking for a taken address answers as for any other: the page tells no one who
    // has an account.
    let taken = request(&browser, OTHER_EMAIL).await;
    assert_eq!(taken.status, 200, "{}", taken.body);
    assert!(taken.body.contains(r#"id="email-sent""#), "{}", taken.body);
    let mail_again = nth_mail(&app, 2, OTHER_EMAIL, CONFIRM_SUBJECT).await;
    assert_eq!(
        browser
            .get(&link(&app, &mail, "/account/email/confirm"))
            .await
            .status,
        400,
        "the newer request voided the first link"
    );

    let confirm_link = link(&app, &mail_again, "/account/email/confirm");
    let refused = press(&browser, &confirm_link, "/account/email/confirm").await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("すでに別のアカウントで使われている"),
        "{}",
        refused.body
    );
    assert_eq!(app.reload(&user).await.email.normalized(), EMAIL);
    assert_eq!(app.reload(&taro).await.email.normalized(), OTHER_EMAIL);
    app.settled().await;
    assert_eq!(app.outbox().len(), 2, "nothing told to the old address");

    // Uniqueness holds among live accounts only: once the other one is deleted, the
    // same link (not spent by the refusal) makes the change.
    mark_deleted(&app, &taro).await;
    let done = press(&browser, &confirm_link, "/account/email/confirm").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(app.reload(&user).await.email.normalized(), OTHER_EMAIL);
    nth_mail(&app, 3, EMAIL, CHANGED_SUBJECT).await;
}

#[tokio::test]
async fn undoing_restores_the_address_ends_everything_and_holds_sign_in_until_a_reset() {
    let receiver = Receiver::start().await;
    let s = setup_with(
        ClientOpts {
            refresh: true,
            backchannel_logout_uri: Some(receiver.uri()),
            ..Default::default()
        },
        quiet,
    )
    .await;
    let app = &s.app;
    let user = app.user(EMAIL).await.unwrap();
    // Signed in to the client in one browser (with a refresh token), to the console in
    // another.
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let console = signed_in(app, EMAIL, "tests").await;
    let undo_link = change(app, &console, EMAIL, NEW_EMAIL, 1).await;
    for browser in [&s.browser, &console] {
        assert_eq!(browser.get("/account").await.status, 200, "still signed in");
    }

    let owner = app.browser();
    let page = owner.get(&undo_link).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for words in [
        &format!(r#"<strong id="restored-email">{EMAIL}</strong>"#),
        "すべての端末とアプリからログアウトし、連携サービス・パスキー・二段階認証の設定を削除します",
        "パスワードを再設定するまでログインできなくなります",
        r#"<form id="email-undo" method="post" action="/account/email/undo""#,
    ] {
        assert!(page.body.contains(words), "{words}: {}", page.body);
    }
    assert!(
        !page.body.contains(r#"id="changed-again""#),
        "{}",
        page.body
    );
    assert_eq!(app.reload(&user).await.email.normalized(), NEW_EMAIL);

    let (csrf, token) = (page.field("csrf").unwrap(), page.field("token").unwrap());
    let form = [("csrf", csrf.as_str()), ("token", token.as_str())];
    let undone = owner.post_form("/account/email/undo", &form).await;
    assert_eq!(undone.status, 200, "{}", undone.body);
    assert!(
        undone
            .body
            .contains(r#"<p class="notice" id="email-undone""#),
        "{}",
        undone.body
    );
    assert!(undone.body.contains("30分間有効"), "{}", undone.body);
    assert!(
        undone
            .set_cookies
            .iter()
            .any(|c| c.starts_with("tobira_session=") && c.contains("Max-Age=0")),
        "{:?}",
        undone.set_cookies
    );
    let restored = app.reload(&user).await;
    assert_eq!(restored.email.normalized(), EMAIL);
    assert!(restored.email_verified);
    assert!(restored.reset_required);

    // Every session ended, the client heard of it, its refresh token is dead.
    for browser in [&s.browser, &console] {
        let sent = browser.get("/account").await;
        assert_eq!(sent.status, 303, "signed out: {}", sent.body);
    }
    let logout = receiver.wait_for(1).await;
    let claims = checked(app, &logout[0], &s.client_id, Alg::RS256);
    assert_eq!(claims["sub"], user.sub.as_str());
    crate::oidc::assert_tokens_dead(&s, &tokens).await;

    // The right password signs in to neither address until the reset.
    assert!(!app.password_works(EMAIL, PASSWORD).await);
    assert!(!app.password_works(NEW_EMAIL, PASSWORD).await);
    let reset_mail = nth_mail(app, 3, EMAIL, RESET_SUBJECT).await;
    assert!(
        reset_mail.text.contains("メールアドレスの変更を取り消し")
            && !reset_mail.text.contains("破棄してください"),
        "the reset mail says why sign-in waits for it: {}",
        reset_mail.text
    );
    // A double submission finds the link spent and changes nothing more.
    let again = owner.post_form("/account/email/undo", &form).await;
    assert_eq!(again.status, 400, "{}", again.body);
    app.settled().await;
    assert_eq!(app.outbox().len(), 3, "one reset mail");

    let reset = reset_with(
        &owner,
        &reset_link(app, &reset_mail),
        NEW_PASSWORD,
        NEW_PASSWORD,
    )
    .await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert!(!app.reload(&user).await.reset_required);
    assert!(app.password_works(EMAIL, NEW_PASSWORD).await);
    assert!(!app.password_works(EMAIL, PASSWORD).await);
}

#[tokio::test]
async fn the_undo_link_works_for_7_days_only() {
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    let undo_link = change(&app, &browser, EMAIL, NEW_EMAIL, 1).await;
    let owner = app.browser();
    expires_after(
        &app,
        &owner,
        &undo_link,
        "/account/email/undo",
        Duration::days(7),
    )
    .await;
    let kept = app.reload(&user).await;
    assert_eq!(kept.email.normalized(), NEW_EMAIL);
    assert!(!kept.reset_required);
    assert!(app.password_works(NEW_EMAIL, PASSWORD).await);
    app.settled().await;
    assert_eq!(app.outbox().len(), 2, "no reset mail");
}

#[tokio::test]
async fn an_undo_after_a_second_change_restores_the_first_address_and_kills_the_later_undo() {
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    let first_undo = change(&app, &browser, EMAIL, NEW_EMAIL, 1).await;
    app.clock().advance(Duration::minutes(2));
    let second_undo = change(&app, &browser, NEW_EMAIL, THIRD_EMAIL, 3).await;
    assert_eq!(app.reload(&user).await.email.normalized(), THIRD_EMAIL);

    // The owner's link says the account moved on, and still takes it back.
    let owner = app.browser();
    let page = owner.get(&first_undo).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"id="changed-again""#), "{}", page.body);
    assert!(
        page.body
            .contains(&format!(r#"<strong id="restored-email">{EMAIL}</strong>"#))
    );
    let undone = press(&owner, &first_undo, "/account/email/undo").await;
    assert_eq!(undone.status, 200, "{}", undone.body);
    let restored = app.reload(&user).await;
    assert_eq!(restored.email.normalized(), EMAIL);
    assert!(restored.reset_required);
    nth_mail(&app, 5, EMAIL, RESET_SUBJECT).await;

    // The undo link sent to the second address cannot take the account back there.
    let later = app.browser();
    let dead = later.get(&second_undo).await;
    assert_eq!(dead.status, 400, "{}", dead.body);
    let posted = post_token(&later, "/account/email/undo", token_of(&second_undo)).await;
    assert_eq!(posted.status, 400, "{}", posted.body);
    assert_eq!(app.reload(&user).await.email.normalized(), EMAIL);
    app.settled().await;
    assert_eq!(app.outbox().len(), 5);
}

#[tokio::test]
async fn the_undo_link_of_a_later_address_cannot_take_away_the_owners_undo() {
    let app = TestApp::spawn_with(quiet).await;
    // The owner's undo is made at …:SS.120 and the later one a millisecond after: as
    // SQLite text, `.12Z` once sorted after `.121Z`, and the later undo voided the
    // owner's too.
    let now = app.clock().now();
    let into_second = Duration::nanoseconds(now.nanosecond().into());
    app.clock()
        .advance(Duration::SECOND - into_second + Duration::milliseconds(120));
    let (user, browser) = member(&app).await;
    let owners_undo = change(&app, &browser, EMAIL, NEW_EMAIL, 1).await;
    let later_undo = change(&app, &browser, NEW_EMAIL, THIRD_EMAIL, 3).await;

    // Whoever holds the second address undoes first: the account goes back to it, and
    // the reset link goes there.
    let intruder = app.browser();
    let undone = press(&intruder, &later_undo, "/account/email/undo").await;
    assert_eq!(undone.status, 200, "{}", undone.body);
    assert_eq!(app.reload(&user).await.email.normalized(), NEW_EMAIL);
    nth_mail(&app, 5, NEW_EMAIL, RESET_SUBJECT).await;

    // The owner's undo still works, and voids the reset link sent to the second address.
    let owner = app.browser();
    let undone = press(&owner, &owners_undo, "/account/email/undo").await;
    assert_eq!(undone.status, 200, "{}", undone.body);
    assert_eq!(app.reload(&user).await.email.normalized(), EMAIL);
    let intruders_reset = app.wait_for_mails(5).await.swap_remove(4);
    let dead = intruder.get(&reset_link(&app, &intruders_reset)).await;
    assert_eq!(dead.status, 400, "{}", dead.body);
    nth_mail(&app, 6, EMAIL, RESET_SUBJECT).await;
}

#[tokio::test]
async fn an_undo_is_refused_while_another_live_account_holds_the_old_address() {
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    let undo_link = change(&app, &browser, EMAIL, NEW_EMAIL, 1).await;
    // Someone else signs up with the address the change left.
    let other = app.add_user(EMAIL, PASSWORD).await;

    let owner = app.browser();
    let refused = press(&owner, &undo_link, "/account/email/undo").await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("別のアカウントで使われているため、取り消せません"),
        "{}",
        refused.body
    );
    let kept = app.reload(&user).await;
    assert_eq!(kept.email.normalized(), NEW_EMAIL);
    assert!(!kept.reset_required);
    assert_eq!(browser.get("/account").await.status, 200, "nothing ended");
    app.settled().await;
    assert_eq!(app.outbox().len(), 2, "no reset mail");

    // The link stays good: once the address is free again, it takes the account back.
    mark_deleted(&app, &other).await;
    let undone = press(&owner, &undo_link, "/account/email/undo").await;
    assert_eq!(undone.status, 200, "{}", undone.body);
    assert_eq!(app.reload(&user).await.email.normalized(), EMAIL);
}

#[tokio::test]
async fn a_sign_up_that_never_verified_the_old_address_cannot_hold_back_the_undo() {
    // The attack: take the account over, move it to your address, then sign up with the
    // owner's old address (never verifying it) so that the undo finds it taken.
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    let undo_link = change(&app, &browser, EMAIL, NEW_EMAIL, 1).await;
    let mails = app.outbox().len();
    let squatter = app.browser();
    let answered =
        crate::signup::sign_up(&squatter, "/signup", EMAIL, "squatter-pass-9137-vw").await;
    assert!(answered.status < 400, "{}", answered.body);
    app.wait_for_mails(mails + 1).await; // the sign-up's verification mail
    let held = app
        .user(EMAIL)
        .await
        .expect("the unverified sign-up holds the address");
    assert_eq!(held.status, UserStatus::Unverified);

    let owner = app.browser();
    let undone = press(&owner, &undo_link, "/account/email/undo").await;
    assert_eq!(undone.status, 200, "{}", undone.body);
    let restored = app.reload(&user).await;
    assert_eq!(restored.email.normalized(), EMAIL);
    assert!(restored.reset_required);
    assert!(
        app.state
            .db
            .users()
            .find_by_id(held.id)
            .await
            .unwrap()
            .is_none(),
        "the unverified sign-up is gone"
    );
}

#[tokio::test]
async fn a_stale_sign_in_must_be_renewed_and_comes_back_to_the_email_page() {
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    let fresh = browser.get("/account/email").await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);

    app.clock().advance(Duration::minutes(11));
    let stale_post = browser
        .post_form(
            "/account/email",
            &[
                ("csrf", &fresh.field("csrf").unwrap()),
                ("email", NEW_EMAIL),
            ],
        )
        .await;
    to_sign_in(&stale_post);
    let stale_get = browser.get("/account/email").await;
    // A mistyped password on the re-authentication page still says why it is asked.
    let login = browser.get(to_sign_in(&stale_get)).await;
    let wrong = browser
        .post_login(&login, EMAIL, "not-the-password-1")
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(
        wrong.body.contains(r#"id="reauth-notice""#),
        "{}",
        wrong.body
    );
    let back = signs_in_again(&browser, &stale_get).await;
    assert_eq!(back.as_deref(), Some("/account/email"));
    app.settled().await;
    assert!(app.outbox().is_empty(), "the stale post sent nothing");
    assert_eq!(app.reload(&user).await.email.normalized(), EMAIL);
    requested(&browser, NEW_EMAIL).await;
}

#[tokio::test]
async fn forms_without_their_token_or_from_another_site_are_refused() {
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    let page = browser.get("/account/email").await;
    let csrf = page.field("csrf").unwrap();

    let no_token = browser
        .post_form("/account/email", &[("email", NEW_EMAIL)])
        .await;
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let wrong_token = browser
        .post_form(
            "/account/email",
            &[("csrf", "x".repeat(43).as_str()), ("email", NEW_EMAIL)],
        )
        .await;
    assert_eq!(wrong_token.status, 403, "{}", wrong_token.body);
    let cross = browser
        .post_form_with(
            "/account/email",
            &[("csrf", &csrf), ("email", NEW_EMAIL)],
            CROSS_SITE,
        )
        .await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    app.settled().await;
    assert!(app.outbox().is_empty());

    // The link pages' forms likewise.
    let undo_link = change(&app, &browser, EMAIL, NEW_EMAIL, 1).await;
    let owner = app.browser();
    let undo_page = owner.get(&undo_link).await;
    let token = undo_page.field("token").unwrap();
    let no_token = owner
        .post_form("/account/email/undo", &[("token", &token)])
        .await;
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let cross = owner
        .post_form_with(
            "/account/email/undo",
            &[
                ("csrf", &undo_page.field("csrf").unwrap()),
                ("token", &token),
            ],
            CROSS_SITE,
        )
        .await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    let kept = app.reload(&user).await;
    assert_eq!(kept.email.normalized(), NEW_EMAIL);
    assert!(!kept.reset_required);

    requested(&browser, THIRD_EMAIL).await;
    let mail = nth_mail(&app, 3, THIRD_EMAIL, CONFIRM_SUBJECT).await;
    let confirm_link = link(&app, &mail, "/account/email/confirm");
    let confirm_page = owner.get(&confirm_link).await;
    let no_token = owner
        .post_form(
            "/account/email/confirm",
            &[("token", token_of(&confirm_link))],
        )
        .await;
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let cross = owner
        .post_form_with(
            "/account/email/confirm",
            &[
                ("csrf", &confirm_page.field("csrf").unwrap()),
                ("token", token_of(&confirm_link)),
            ],
            CROSS_SITE,
        )
        .await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    assert_eq!(app.reload(&user).await.email.normalized(), NEW_EMAIL);
}

#[tokio::test]
async fn malformed_oversized_and_made_up_tokens_are_dead_links() {
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    let undo_link = change(&app, &browser, EMAIL, NEW_EMAIL, 1).await;
    let real = token_of(&undo_link).to_owned();
    let long = "a".repeat(5000);
    // The last character changed (to one it is not).
    let last = if real.ends_with('A') { 'B' } else { 'A' };
    let tampered = format!("{}{last}", &real[..real.len() - 1]);
    let visitor = app.browser();
    for path in ["/account/email/confirm", "/account/email/undo"] {
        for token in [
            "",
            "x",
            long.as_str(),
            "%00%27%22%3Cscript%3E",
            "..%2F..%2Fetc",
            tampered.as_str(),
            &format!("{real}{real}"),
        ] {
            let page = visitor.get(&format!("{path}?token={token}")).await;
            assert_eq!(page.status, 400, "{path} {token}: {}", page.body);
            assert!(page.body.contains(LINK_DEAD), "{}", page.body);
            assert!(!page.body.contains("<script>"));
            let posted = post_token(&visitor, path, token).await;
            assert_eq!(posted.status, 400, "{path} {token}: {}", posted.body);
        }
    }
    // A repeated parameter is not a token either.
    let twice = visitor
        .get(&format!("/account/email/undo?token={real}&token={real}"))
        .await;
    assert_ne!(twice.status, 200, "{}", twice.body);
    let kept = app.reload(&user).await;
    assert_eq!(kept.email.normalized(), NEW_EMAIL);
    assert!(!kept.reset_required);
    // The real link was never spent by any of it.
    assert_eq!(visitor.get(&undo_link).await.status, 200);
}

#[tokio::test]
async fn a_hostile_malformed_or_unchanged_address_is_refused_on_the_form_without_a_mail() {
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    let long = format!("{}@example.com", "a".repeat(400));
    for (typed, message) in [
        ("<script>@x", "メールアドレスの形式が正しくありません"),
        (
            "\"><img src=x onerror=alert(1)>@example.com",
            "メールアドレスの形式が正しくありません",
        ),
        (long.as_str(), "メールアドレスが長すぎます"),
        ("", "メールアドレスを入力してください"),
        (
            "hanako@example.jp\r\nBcc: x@evil.example",
            "メールアドレスの形式が正しくありません",
        ),
        ("  HANAKO@Example.JP ", "現在のメールアドレスと同じです"),
    ] {
        let page = request(&browser, typed).await;
        assert_eq!(page.status, 400, "{typed}: {}", page.body);
        assert!(page.body.contains(message), "{typed}: {}", page.body);
        assert!(page.body.contains(r#"id="form-error""#));
        assert!(!page.body.contains("<script>"), "escaped: {}", page.body);
        assert!(!page.body.contains("<img"), "escaped: {}", page.body);
    }
    app.settled().await;
    assert!(app.outbox().is_empty(), "{:?}", app.outbox());
    assert_eq!(app.reload(&user).await.email.normalized(), EMAIL);
}

#[tokio::test]
async fn over_the_mail_cap_the_page_answers_the_same_and_sends_nothing() {
    let app = TestApp::spawn_with(|c| {
        quiet(c);
        c.mail.per_address_per_hour = 1;
    })
    .await;
    let (user, browser) = member(&app).await;
    requested(&browser, NEW_EMAIL).await;
    let first = nth_mail(&app, 1, NEW_EMAIL, CONFIRM_SUBJECT).await;
    requested(&browser, NEW_EMAIL).await;
    app.settled().await;
    assert_eq!(app.outbox().len(), 1, "the cap held");
    // Nothing was recorded either: the first link still works.
    let done = confirm(&app, &browser, &first).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(app.reload(&user).await.email.normalized(), NEW_EMAIL);
}

#[tokio::test]
async fn the_pages_and_mails_speak_the_members_language() {
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    let profile = browser.get("/account/profile").await;
    let saved = browser
        .post_form(
            "/account/profile",
            &[
                ("csrf", &profile.field("csrf").unwrap()),
                ("display_name", "Hanako"),
                ("locale", "en"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let sent = request(&browser, NEW_EMAIL).await;
    assert!(
        sent.body
            .contains("We sent a confirmation link to the new address (valid for 24 hours)"),
        "{}",
        sent.body
    );
    let mail = nth_mail(
        &app,
        1,
        NEW_EMAIL,
        "[Tobira] Confirm your new email address",
    )
    .await;
    assert!(
        mail.text.contains("valid for 24 hours, usable once"),
        "{}",
        mail.text
    );
    let done = confirm(&app, &browser, &mail).await;
    assert!(
        done.body.contains("Your email address has been changed"),
        "{}",
        done.body
    );
    let told = nth_mail(&app, 2, EMAIL, "[Tobira] Your email address was changed").await;
    assert!(told.text.starts_with("Hello Hanako,"), "{}", told.text);
    assert!(told.text.contains("valid for 7 days"), "{}", told.text);
    let undo = link(&app, &told, "/account/email/undo");
    let undone = press(&app.browser(), &undo, "/account/email/undo").await;
    assert!(
        undone.body.contains("valid for 30 minutes"),
        "{}",
        undone.body
    );
    nth_mail(&app, 3, EMAIL, "[Tobira] Reset your password").await;
    assert!(app.reload(&user).await.reset_required);
}

#[tokio::test]
async fn a_pending_change_dies_with_a_password_change_and_with_support_signing_the_account_out() {
    // Whoever held the session may have asked to move the account to their own address:
    // the owner changing the password (or support signing everything out) stops that.
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    requested(&browser, NEW_EMAIL).await;
    let first = nth_mail(&app, 1, NEW_EMAIL, CONFIRM_SUBJECT).await;
    let changed =
        crate::password::change(&browser, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, false).await;
    assert!(changed.status < 400, "{}", changed.body);
    let dead = app
        .browser()
        .get(&link(&app, &first, "/account/email/confirm"))
        .await;
    assert_eq!(dead.status, 400, "{}", dead.body);
    assert!(dead.body.contains(LINK_DEAD), "{}", dead.body);
    // The "password changed" mail leaves first, so the outbox keeps the order.
    assert_eq!(app.settled().await.len(), 2);

    requested(&browser, NEW_EMAIL).await;
    let second = nth_mail(&app, 3, NEW_EMAIL, CONFIRM_SUBJECT).await;
    tobira_auth::admin::support::sign_out(
        &app.state.db,
        app.clock(),
        &tobira_auth::admin::audit::Context::cli(),
        &user,
    )
    .await
    .unwrap();
    let dead = app
        .browser()
        .get(&link(&app, &second, "/account/email/confirm"))
        .await;
    assert_eq!(dead.status, 400, "{}", dead.body);
    assert_eq!(app.reload(&user).await.email.normalized(), EMAIL);
}

#[tokio::test]
async fn an_address_in_its_reregistration_cooldown_cannot_become_an_accounts_new_address() {
    // Otherwise the cooldown could be skipped: sign up with any address, then move the
    // account onto the deleted one.
    let app = TestApp::spawn_with(quiet).await;
    let gone = app.add_user(OTHER_EMAIL, PASSWORD).await;
    let deleted = tobira_auth::account::delete::delete_account(
        &app.state.db,
        &app.state.master,
        &app.state.identifiers,
        &app.state.config,
        &tobira_auth::admin::audit::Context::cli(),
        app.clock().now(),
        &gone,
    )
    .await
    .unwrap();
    assert!(deleted);
    let (user, browser) = member(&app).await;
    requested(&browser, OTHER_EMAIL).await;
    let mails = app.wait_for_mails(2).await;
    let mail = mails
        .iter()
        .find(|m| m.subject == CONFIRM_SUBJECT)
        .expect("the confirmation mail");
    let refused = confirm(&app, &browser, mail).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    let until = app
        .state
        .db
        .accounts()
        .reregistration_block(
            &app.state.identifiers.email_digest(&gone.email),
            app.clock().now(),
        )
        .await
        .unwrap()
        .expect("the block");
    let when = tobira_auth::account::delete::in_words(
        until,
        app.state.config.throttle.display_offset(),
        tobira_auth::web::i18n::Lang::Ja,
    );
    assert!(
        refused
            .body
            .contains("退会したアカウントで使われていたため")
            && refused.body.contains(&format!("{when} まで")),
        "{when}: {}",
        refused.body
    );
    let kept = app.reload(&user).await;
    assert_eq!(kept.email.normalized(), EMAIL);
    assert_eq!(app.settled().await.len(), 2, "no mail to the old address");
}

#[tokio::test]
async fn an_account_cannot_be_deleted_while_its_old_addresss_undo_link_works() {
    // Someone who took the account over knows the password: deleting it after moving it
    // to their address would leave the owner's undo nothing to give back.
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    change(&app, &browser, EMAIL, NEW_EMAIL, 1).await;
    let page = browser.get("/account/delete").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(r#"id="delete-held""#) && !page.body.contains(r#"id="delete-account""#),
        "{}",
        page.body
    );
    // A form posted anyway (with a CSRF token this browser holds) is refused too.
    let csrf = browser.get("/password/forgot").await.field("csrf").unwrap();
    let refused = browser
        .post_form(
            "/account/delete",
            &[("csrf", &csrf), ("confirm", NEW_EMAIL)],
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.contains("退会できません"), "{}", refused.body);
    assert_eq!(app.reload(&user).await.status, UserStatus::Active);

    // Once the undo link has run out, the member can leave.
    app.clock()
        .advance(Duration::days(7) + Duration::minutes(1));
    let again = signed_in(&app, NEW_EMAIL, "tests").await;
    let page = again.get("/account/delete").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(r#"id="delete-account""#) && !page.body.contains(r#"id="delete-held""#),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn a_pending_change_dies_when_the_member_signs_the_other_browsers_out() {
    // A thief with a stolen session asks to move the account to their address; the owner
    // notices and signs every other browser out: the thief's link must die with it.
    let app = TestApp::spawn_with(quiet).await;
    let (user, thief) = member(&app).await;
    requested(&thief, NEW_EMAIL).await;
    let mail = nth_mail(&app, 1, NEW_EMAIL, CONFIRM_SUBJECT).await;
    let owner = signed_in(&app, EMAIL, "owner").await;
    let page = owner.get("/account/sessions").await;
    let csrf = page.field("csrf").unwrap();
    let done = owner
        .post_form("/account/sessions/end-others", &[("csrf", &csrf)])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let dead = app
        .browser()
        .get(&link(&app, &mail, "/account/email/confirm"))
        .await;
    assert_eq!(dead.status, 400, "{}", dead.body);
    assert!(dead.body.contains(LINK_DEAD), "{}", dead.body);
    assert_eq!(app.reload(&user).await.email.normalized(), EMAIL);
}

#[tokio::test]
async fn a_sign_up_that_never_verified_the_new_address_does_not_hold_it_against_its_link() {
    // The link proves the mailbox now; a sign-up that never did gives way.
    let app = TestApp::spawn_with(quiet).await;
    let (user, browser) = member(&app).await;
    let stranger = app.browser();
    let answered =
        crate::signup::sign_up(&stranger, "/signup", NEW_EMAIL, "stranger-pass-2718-qz").await;
    assert!(answered.status < 400, "{}", answered.body);
    app.wait_for_mails(1).await; // the sign-up's verification mail
    let held = app.user(NEW_EMAIL).await.expect("the unverified sign-up");
    assert_eq!(held.status, UserStatus::Unverified);

    requested(&browser, NEW_EMAIL).await;
    let mail = nth_mail(&app, 2, NEW_EMAIL, CONFIRM_SUBJECT).await;
    let done = confirm(&app, &browser, &mail).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(app.reload(&user).await.email.normalized(), NEW_EMAIL);
    assert!(
        app.state
            .db
            .users()
            .find_by_id(held.id)
            .await
            .unwrap()
            .is_none()
    );
}
