//! The new-device mail: a successful sign-in from a browser the account has not seen
//! before tells its member (time, device, IP, a link to sign that device out and one to
//! change the password), in the member's language. Not for the account's first device
//! (right after sign-up), not for a failure, not when the configuration turns it off.

use tobira_auth::domain::{Email, User};

use crate::helpers::{Browser, ClientOpts, OutboxMail, Page, TestApp};
use crate::history::{login_page, post};
use crate::oidc::{EMAIL, PASSWORD, Setup, authorize, setup, setup_with};

const WRONG: &str = "not-the-password-1";
const PHONE_JA: &str = "Safari（iPhone 17.1・スマートフォン）";
const PHONE_EN: &str = "Safari on iPhone 17.1 (phone)";

/// Signs in to the client's authorization request (prompt=login, so a browser with a
/// session signs in again) from `browser` with the phone's user agent; the OP's answer.
async fn sign_in(s: &Setup, browser: &Browser, email: &str, password: &str) -> Page {
    let login = login_page(s, browser).await;
    assert_eq!(login.status, 200, "{}", login.body);
    post(browser, &login, email, password).await
}

async fn signed_in(s: &Setup, browser: &Browser) {
    let page = sign_in(s, browser, EMAIL, PASSWORD).await;
    assert_eq!(page.status, 303, "{}", page.body);
}

async fn member(app: &TestApp, email: &str) -> User {
    app.state
        .db
        .users()
        .find_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
}

/// The link of the mail that starts with `path` under the issuer, made to reach the
/// test's server.
fn link(app: &TestApp, mail: &OutboxMail, path: &str) -> String {
    mail.link(&format!("{}{path}", app.issuer()))
        .replace(&app.issuer(), app.url.as_str().trim_end_matches('/'))
}

#[tokio::test]
async fn a_second_browser_is_mailed_once_and_the_first_one_never() {
    let s = setup(ClientOpts::default()).await;
    let first = s.app.browser();
    signed_in(&s, &first).await;
    assert!(
        s.app.settled().await.is_empty(),
        "the account's first device is no news"
    );

    let at = s.app.clock().now();
    let second = s.app.browser();
    signed_in(&s, &second).await;
    let mails = s.app.settled().await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.to, EMAIL);
    assert_eq!(mail.subject, "【Tobira】新しい端末からログインがありました");
    assert!(mail.text.starts_with("山田 花子 様"), "{}", mail.text);
    let jst = at.to_offset(time::UtcOffset::from_hms(9, 0, 0).unwrap());
    let when = format!(
        "{}-{:02}-{:02} {:02}:{:02}（日本時間）",
        jst.year(),
        u8::from(jst.month()),
        jst.day(),
        jst.hour(),
        jst.minute()
    );
    for part in [when.as_str(), PHONE_JA, "127.0.0.1"] {
        assert!(mail.text.contains(part), "{part} in {}", mail.text);
        assert!(mail.html.contains(part), "{part} in {}", mail.html);
    }
    let sessions = link(&s.app, mail, "/account/sessions");
    let forgot = link(&s.app, mail, "/password/forgot");
    assert!(
        mail.html
            .contains(&format!("{}/account/sessions", s.app.issuer()))
            && mail
                .html
                .contains(&format!("{}/password/forgot", s.app.issuer()))
    );

    // The sessions link shows the signed-in browser its devices, this one among them.
    let page = second.get(&sessions).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("ログイン中の端末"), "{}", page.body);
    assert!(page.body.contains(r#"data-testid="this-device""#));
    // Anywhere else it leads to sign-in first.
    let elsewhere = s.app.browser();
    let sent = elsewhere.get(&sessions).await;
    assert_eq!(sent.status, 303);
    assert!(sent.location.as_deref().unwrap().starts_with("/login?tx="));
    assert_eq!(elsewhere.follow(sent).await.status, 200);
    let reset = elsewhere.get(&forgot).await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert!(reset.body.contains("パスワードの再設定"));

    // Both devices are known now: signing in again from either tells nobody.
    signed_in(&s, &second).await;
    signed_in(&s, &first).await;
    assert_eq!(s.app.settled().await.len(), 1);
}

#[tokio::test]
async fn a_wrong_password_from_a_new_browser_mails_nothing() {
    let s = setup(ClientOpts::default()).await;
    signed_in(&s, &s.app.browser()).await;
    let stranger = s.app.browser();
    let page = sign_in(&s, &stranger, EMAIL, WRONG).await;
    assert_eq!(page.status, 401);
    // Nor does an address without an account.
    let page = sign_in(&s, &stranger, "nobody@example.jp", WRONG).await;
    assert_eq!(page.status, 401);
    assert!(s.app.settled().await.is_empty());
}

#[tokio::test]
async fn the_configuration_turns_the_mail_off() {
    let s = setup_with(ClientOpts::default(), |c| {
        c.account.new_device_mail = false;
    })
    .await;
    signed_in(&s, &s.app.browser()).await;
    signed_in(&s, &s.app.browser()).await;
    assert!(s.app.settled().await.is_empty());
    // The device is known all the same.
    let user = member(&s.app, EMAIL).await;
    let devices = s.app.state.db.known_devices().list(user.id).await.unwrap();
    assert_eq!(devices.len(), 2);
}

#[tokio::test]
async fn the_mail_speaks_the_language_the_member_chose() {
    let s = setup(ClientOpts::default()).await;
    let first = s.app.browser();
    signed_in(&s, &first).await;
    // The first device's check runs after the answer: let it finish before the second
    // device exists (it would count as another device of the account).
    assert!(s.app.settled().await.is_empty());
    let form = first.get("/account/profile").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.field("csrf").unwrap();
    let saved = first
        .post_form(
            "/account/profile",
            &[
                ("csrf", &csrf),
                ("display_name", "Hanako"),
                ("locale", "en"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);

    signed_in(&s, &s.app.browser()).await;
    let mails = s.app.settled().await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.subject, "[Tobira] New sign-in to your account");
    assert!(mail.text.starts_with("Hello Hanako,"), "{}", mail.text);
    for part in [PHONE_EN, " (JST)", "127.0.0.1"] {
        assert!(mail.text.contains(part), "{part} in {}", mail.text);
    }
    assert!(mail.html.contains("Sign that device out"), "{}", mail.html);
}

#[tokio::test]
async fn the_browser_that_signed_up_is_a_known_device_and_no_sign_up_is_mailed() {
    const NEW_EMAIL: &str = "taro@example.jp";
    const NEW_PASSWORD: &str = "maple-harbor-violin-63";
    let s = setup(ClientOpts::default()).await;
    // Signs up in the browser that verifies the address (and is signed in by it).
    let browser = s.app.browser();
    let pending = authorize(&s.rp, &[]);
    let login = browser.follow(browser.get(&pending.url).await).await;
    let tx = login.field("tx").unwrap();
    let form = browser.get(&format!("/signup?tx={tx}")).await;
    let csrf = form.field("csrf").unwrap();
    let sent = browser
        .post_form(
            "/signup",
            &[
                ("csrf", &csrf),
                ("tx", &tx),
                ("email", NEW_EMAIL),
                ("display_name", "山田 太郎"),
                ("password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    let verify = link(
        &s.app,
        &s.app.wait_for_mails(1).await[0],
        "/verify-email?token=",
    );
    let back = browser.follow(browser.get(&verify).await).await;
    assert_eq!(back.status, 303, "back at the client: {}", back.body);
    let user = s.app.user(NEW_EMAIL).await.unwrap();
    let known = s.app.state.db.known_devices().list(user.id).await.unwrap();
    assert_eq!(known.len(), 1, "the sign-up browser is a known device");

    // The browser that signed up and verified is the account's first known device: its
    // password sign-ins are no news to the member.
    let page = sign_in(&s, &browser, NEW_EMAIL, NEW_PASSWORD).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(s.app.settled().await.len(), 1, "the verification mail only");
    // Another browser is.
    let page = sign_in(&s, &s.app.browser(), NEW_EMAIL, NEW_PASSWORD).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let mails = s.app.settled().await;
    assert_eq!(mails.len(), 2);
    let told: Vec<_> = mails
        .iter()
        .filter(|m| m.subject == "【Tobira】新しい端末からログインがありました")
        .collect();
    assert_eq!(told.len(), 1, "{mails:?}");
    assert_eq!(told[0].to, NEW_EMAIL);
}
