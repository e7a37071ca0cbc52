//! Sign-in help (`/signin-help`), the way a member meets it: locked out, or never
//! verified, or at an address no account uses; each learns what holds them back from
//! their own inbox, with the link that helps. And the way an attacker would try it: the
//! page tells nothing, the mail caps hold, other sites cannot post the form.

use time::Duration;

use tobira_auth::authn::throttle::AccountKey;
use tobira_auth::domain::{Email, UserStatus};
use tobira_auth::web::i18n::Lang;

use crate::helpers::{Browser, OutboxMail, Page, TestApp};
use crate::oidc::{EMAIL, PASSWORD, Setup, authorize, code_from, setup};

const NEW_EMAIL: &str = "taro@example.jp";
const NEW_PASSWORD: &str = "maple-harbor-violin-63";
const UNKNOWN: &str = "nobody@example.jp";
const HELP_SUBJECT: &str = "【Tobira】ログインについてのご案内";
const NO_ACCOUNT_SUBJECT: &str = "【Tobira】このアドレスのアカウントはありません";

/// Fills in and sends the help form the page at `path` shows.
async fn ask_help(browser: &Browser, path: &str, email: &str) -> Page {
    let form = browser.get(path).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.field("csrf").unwrap();
    let tx = form.field("tx").unwrap_or_default();
    let lang = form.field("lang").unwrap_or_default();
    browser
        .post_form(
            "/signin-help",
            &[
                ("csrf", &csrf),
                ("tx", &tx),
                ("lang", &lang),
                ("email", email),
            ],
        )
        .await
}

/// A link from a mail, pointed at the bound address (the issuer says `localhost`).
fn local(app: &TestApp, mail: &OutboxMail, path: &str) -> String {
    mail.link(&format!("{}{path}", app.issuer()))
        .replace(&app.issuer(), app.url.as_str().trim_end_matches('/'))
}

/// Five wrong passwords on the sign-in page lock the account (the default threshold);
/// returns the sign-in page, whose parked request is still live.
async fn lock_out(s: &Setup, email: &str) -> Page {
    let login = s
        .browser
        .follow(s.browser.get(&authorize(&s.rp, &[]).url).await)
        .await;
    for _ in 0..5 {
        let refused = s
            .browser
            .post_login(&login, email, "wrong-guess-1234")
            .await;
        assert_eq!(refused.status, 401, "{}", refused.body);
    }
    login
}

async fn sign_up(browser: &Browser, email: &str, password: &str) {
    let form = browser.get("/signup").await;
    let csrf = form.field("csrf").unwrap();
    let sent = browser
        .post_form(
            "/signup",
            &[
                ("csrf", &csrf),
                ("email", email),
                ("display_name", "山田 太郎"),
                ("password", password),
            ],
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
}

/// Mails are sent by the job worker after the answer: waits, then checks no more came.
async fn exactly(app: &TestApp, n: usize) -> Vec<OutboxMail> {
    app.wait_for_mails(n).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mails = app.outbox();
    assert_eq!(mails.len(), n, "{mails:#?}");
    mails
}

#[tokio::test]
async fn a_locked_out_member_learns_until_when_and_unlocks_from_the_help_mail() {
    let s = setup(Default::default()).await;
    let pending = authorize(&s.rp, &[]);
    let login = s.browser.follow(s.browser.get(&pending.url).await).await;
    let tx = login.field("tx").unwrap();
    let help_path = format!("/signin-help?tx={tx}&lang=ja");
    assert!(
        login.body.contains(&help_path.replace('&', "&amp;")),
        "the sign-in page links to the help: {}",
        login.body
    );
    for _ in 0..5 {
        let refused = s
            .browser
            .post_login(&login, EMAIL, "wrong-guess-1234")
            .await;
        assert_eq!(refused.status, 401, "{}", refused.body);
    }
    let locked = s.browser.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(
        locked.status, 429,
        "the right password waits: {}",
        locked.body
    );
    exactly(&s.app, 1).await; // the lock mail

    let page = ask_help(&s.browser, &help_path, EMAIL).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"role="status""#), "{}", page.body);
    assert!(
        page.body.contains(&format!("/login?tx={tx}")),
        "back to the sign-in it came from: {}",
        page.body
    );
    let mail = exactly(&s.app, 2).await.remove(1);
    assert_eq!(mail.to, EMAIL);
    assert_eq!(mail.subject, HELP_SUBJECT);
    assert!(
        mail.text.starts_with("山田 花子 様"),
        "greeted by name: {}",
        mail.text
    );
    let lock = s
        .app
        .state
        .throttle
        .account_lock(&AccountKey::of(&s.app.state.identifiers, EMAIL))
        .await
        .unwrap()
        .expect("still locked");
    let until = tobira_auth::account::unlock::lock_end(&s.app.state, &lock, Lang::Ja)
        .expect("a lock with an end");
    assert!(
        mail.text.contains(&format!("{until} まで")),
        "the end of the lock ({until}): {}",
        mail.text
    );
    assert!(
        mail.text.contains("パスワード（設定済み）"),
        "{}",
        mail.text
    );
    assert!(
        mail.text.contains("24時間有効"),
        "the unlock link's validity"
    );
    local(&s.app, &mail, "/password/reset?token=");

    // The unlock link shows a button; pressing it lifts the lock.
    let unlock = local(&s.app, &mail, "/unlock?token=");
    let form = s.browser.get(&unlock).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let (csrf, token) = (form.field("csrf").unwrap(), form.field("token").unwrap());
    let done = s
        .browser
        .post_form("/unlock", &[("csrf", &csrf), ("token", &token)])
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("ロックを解除しました"), "{}", done.body);

    let back = s.browser.submit_login(&login, EMAIL, PASSWORD, false).await;
    code_from(&s, &back, &pending);
}

#[tokio::test]
async fn the_reset_link_of_the_help_mail_sets_a_new_password_and_voids_older_ones() {
    let app = TestApp::spawn().await;
    app.add_user(EMAIL, PASSWORD).await;
    let browser = app.browser();
    ask_help(&browser, "/signin-help", EMAIL).await;
    let first = exactly(&app, 1).await.remove(0);
    assert!(
        first.text.contains("ログインは制限されていません"),
        "{}",
        first.text
    );
    let first = local(&app, &first, "/password/reset?token=");
    ask_help(&browser, "/signin-help", EMAIL).await;
    let second = local(&app, &exactly(&app, 2).await[1], "/password/reset?token=");
    assert_eq!(
        browser.get(&first).await.status,
        400,
        "the older link is void"
    );
    let form = browser.get(&second).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let (csrf, token) = (form.field("csrf").unwrap(), form.field("token").unwrap());
    let new_password = "copper-kettle-sunrise-84";
    let done = browser
        .post_form(
            "/password/reset",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("password", new_password),
                ("confirm", new_password),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
}

#[tokio::test]
async fn an_unverified_sign_up_gets_a_fresh_link_that_still_asks_for_its_password() {
    let s = setup(Default::default()).await;
    sign_up(&s.app.browser(), NEW_EMAIL, NEW_PASSWORD).await;
    let first = local(&s.app, &exactly(&s.app, 1).await[0], "/verify-email?token=");

    let helper = s.app.browser();
    let page = ask_help(&helper, "/signin-help", NEW_EMAIL).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mail = exactly(&s.app, 2).await.remove(1);
    assert_eq!(mail.to, NEW_EMAIL);
    assert_eq!(mail.subject, HELP_SUBJECT);
    // Greeted by address: the display name was typed by whoever signed up.
    assert!(
        mail.text.starts_with(&format!("{NEW_EMAIL} 様")),
        "{}",
        mail.text
    );
    assert!(!mail.text.contains("山田 太郎"));
    assert!(
        mail.text.contains("確認がまだ完了していない"),
        "{}",
        mail.text
    );
    mail.link(&format!("{}/signup", s.app.issuer()));
    assert!(
        !mail.text.contains("/password/reset"),
        "no reset for an account not yet verified"
    );
    let fresh = local(&s.app, &mail, "/verify-email?token=");
    assert_eq!(
        s.app.browser().get(&first).await.status,
        400,
        "the older link is void"
    );

    // Even in the browser that asked for help, the link asks for the sign-up's password:
    // asking proves only that one knows the address.
    let asked = helper.get(&fresh).await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert!(
        asked.body.contains("別のブラウザで開かれた"),
        "{}",
        asked.body
    );
    let (csrf, token) = (asked.field("csrf").unwrap(), asked.field("token").unwrap());
    let done = helper
        .post_form(
            "/verify-email",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("メールアドレスを確認しました"));
    let user = s
        .app
        .state
        .db
        .users()
        .find_by_email(&Email::parse(NEW_EMAIL).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.status, UserStatus::Active);

    let pending = authorize(&s.rp, &[]);
    let back = s
        .browser
        .sign_in(&pending.url, NEW_EMAIL, NEW_PASSWORD, false)
        .await;
    code_from(&s, &back, &pending);
}

#[tokio::test]
async fn an_address_without_an_account_is_told_so_in_its_own_inbox() {
    let app = TestApp::spawn().await;
    let forgot = app.browser().get("/password/forgot").await;
    assert!(
        forgot.body.contains("/signin-help?tx=&amp;lang=ja"),
        "the forgot page links to the help: {}",
        forgot.body
    );
    let ja = ask_help(&app.browser(), "/signin-help", UNKNOWN).await;
    assert_eq!(ja.status, 200, "{}", ja.body);
    let mail = exactly(&app, 1).await.remove(0);
    assert_eq!(mail.to, UNKNOWN);
    assert_eq!(mail.subject, NO_ACCOUNT_SUBJECT);
    assert!(
        mail.text.contains("アカウントはありません"),
        "{}",
        mail.text
    );
    let signup = local(&app, &mail, "/signup");
    assert_eq!(app.browser().get(&signup).await.status, 200);

    // The page's language is the mail's when no account says otherwise.
    let en = app.browser().get("/signin-help?lang=en").await;
    assert!(en.body.contains("Trouble signing in"), "{}", en.body);
    ask_help(&app.browser(), "/signin-help?lang=en", "someone@example.jp").await;
    let mail = exactly(&app, 2).await.remove(1);
    assert_eq!(mail.subject, "[Tobira] No account uses this address");
    assert!(
        mail.text.starts_with("Hello someone@example.jp,"),
        "{}",
        mail.text
    );
}

#[tokio::test]
async fn frozen_accounts_are_sent_to_support_and_deleted_ones_are_no_account() {
    let app = TestApp::spawn().await;
    let frozen = app.add_user("frozen@example.jp", PASSWORD).await;
    let deleted = app.add_user("deleted@example.jp", PASSWORD).await;
    for (user, status) in [
        (&frozen, UserStatus::Frozen),
        (&deleted, UserStatus::Deleted),
    ] {
        app.state
            .db
            .users()
            .set_status(user.id, status, app.clock())
            .await
            .unwrap();
    }
    ask_help(&app.browser(), "/signin-help", "frozen@example.jp").await;
    let mail = exactly(&app, 1).await.remove(0);
    assert_eq!(mail.subject, HELP_SUBJECT);
    assert!(
        mail.text.contains("サポートにお問い合わせください"),
        "{}",
        mail.text
    );
    assert!(!mail.text.contains("http"), "no links: {}", mail.text);
    ask_help(&app.browser(), "/signin-help", "deleted@example.jp").await;
    let mail = exactly(&app, 2).await.remove(1);
    assert_eq!(mail.to, "deleted@example.jp");
    assert_eq!(mail.subject, NO_ACCOUNT_SUBJECT);
}

#[tokio::test]
async fn the_page_says_the_same_whatever_the_address_holds() {
    let s = setup(Default::default()).await;
    lock_out(&s, EMAIL).await;
    sign_up(&s.app.browser(), NEW_EMAIL, NEW_PASSWORD).await;
    exactly(&s.app, 2).await; // the lock mail and the verification mail
    let mut bodies = Vec::new();
    for email in [EMAIL, NEW_EMAIL, UNKNOWN] {
        // A browser of its own each, so each page has its own CSRF token.
        let page = ask_help(&s.app.browser(), "/signin-help", email).await;
        assert_eq!(page.status, 200, "{email}: {}", page.body);
        let csrf = page.field("csrf");
        let body = match csrf {
            Some(token) => page.body.replace(&token, ""),
            None => page.body,
        };
        bodies.push(body);
    }
    assert!(bodies[0].contains("ログインについてのご案内をお送りしました"));
    assert_eq!(bodies[0], bodies[1], "locked vs. unverified");
    assert_eq!(bodies[0], bodies[2], "locked vs. unknown");
    let mails = exactly(&s.app, 5).await;
    let to = |addr: &str| mails[2..].iter().find(|m| m.to == addr).cloned().unwrap();
    assert_eq!(to(EMAIL).subject, HELP_SUBJECT);
    assert_eq!(to(NEW_EMAIL).subject, HELP_SUBJECT);
    assert_eq!(to(UNKNOWN).subject, NO_ACCOUNT_SUBJECT);
}

#[tokio::test]
async fn a_malformed_address_gets_the_form_back() {
    let app = TestApp::spawn().await;
    let page = ask_help(
        &app.browser(),
        "/signin-help",
        "\"><script>alert(1)</script>",
    )
    .await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains(r#"id="form-error""#), "{}", page.body);
    assert!(!page.body.contains("<script>alert(1)"), "escaped");
    assert!(page.field("csrf").is_some(), "the form is shown again");
    exactly(&app, 0).await;
}

#[tokio::test]
async fn the_mail_caps_hold_and_other_sites_cannot_post_the_form() {
    let app = TestApp::spawn_with(|c| {
        c.mail.per_address_per_hour = 3;
        c.mail.per_ip_per_hour = 0;
    })
    .await;
    app.add_user(EMAIL, PASSWORD).await;
    let browser = app.browser();
    let first = ask_help(&browser, "/signin-help", EMAIL).await;
    for _ in 0..4 {
        let page = ask_help(&browser, "/signin-help", EMAIL).await;
        assert_eq!(
            page.body, first.body,
            "the page says the same after the cap"
        );
    }
    exactly(&app, 3).await;
    // An address no account uses is capped just the same.
    for _ in 0..5 {
        ask_help(&browser, "/signin-help", UNKNOWN).await;
    }
    exactly(&app, 6).await;
    app.clock().advance(Duration::hours(1));
    ask_help(&browser, "/signin-help", EMAIL).await;
    exactly(&app, 7).await;

    // No CSRF token, another site's origin: refused, nothing sent.
    let refused = browser.post_form("/signin-help", &[("email", EMAIL)]).await;
    assert_eq!(refused.status, 403);
    let form = browser.get("/signin-help").await;
    let csrf = form.field("csrf").unwrap();
    let cross = browser
        .post_form_with(
            "/signin-help",
            &[("csrf", &csrf), ("email", EMAIL)],
            &[
                ("origin", "https://attacker.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(cross.status, 403);
    app.clock().advance(Duration::hours(1));
    let cross = browser
        .post_form_with(
            "/signin-help",
            &[("csrf", &csrf), ("email", EMAIL)],
            &[("origin", "null")],
        )
        .await;
    assert_eq!(cross.status, 403);
    exactly(&app, 7).await;
}
