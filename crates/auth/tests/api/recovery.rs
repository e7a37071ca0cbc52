//! Password reset, the way a member meets it: the forgot form, the mail in the outbox,
//! the link, the new password; and the way an attacker would try it: unknown and frozen
//! addresses, replayed, expired, voided and tampered links, mail bombing, cross-site posts.

use openidconnect::OAuth2TokenResponse;
use time::Duration;

use crate::helpers::{Browser, ClientOpts, Page, TestApp};
use crate::oidc::{EMAIL, PASSWORD, authorize, exchange, setup, sign_in_for_code};

pub const NEW_PASSWORD: &str = "copper-kettle-sunrise-84";

pub async fn forgot(browser: &Browser, email: &str) -> Page {
    let form = browser.get("/password/forgot").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.field("csrf").unwrap();
    browser
        .post_form("/password/forgot", &[("csrf", &csrf), ("email", email)])
        .await
}

pub async fn reset_with(browser: &Browser, link: &str, password: &str, confirm: &str) -> Page {
    let form = browser.get(link).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let (csrf, token) = (form.field("csrf").unwrap(), form.field("token").unwrap());
    browser
        .post_form(
            "/password/reset",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("password", password),
                ("confirm", confirm),
            ],
        )
        .await
}

pub fn reset_link(app: &TestApp, mail: &crate::helpers::OutboxMail) -> String {
    let link = mail.link(&format!("{}/password/reset?token=", app.issuer()));
    // The issuer's host (localhost) and the bound address differ only in name.
    link.replace(&app.issuer(), app.url.as_str().trim_end_matches('/'))
}

#[tokio::test]
async fn a_member_resets_the_password_by_mail_and_every_session_ends() {
    let s = setup(ClientOpts {
        refresh: true,
        ..Default::default()
    })
    .await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();

    let other = s.app.browser();
    let page = forgot(&other, EMAIL).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("リンクをお送りしました"),
        "{}",
        page.body
    );
    let mails = s.app.wait_for_mails(1).await;
    assert_eq!(mails[0].to, EMAIL);
    assert_eq!(mails[0].subject, "【Tobira】パスワードの再設定");
    assert!(mails[0].html.contains("新しいパスワードを設定する"));
    let link = reset_link(&s.app, &mails[0]);

    // The policy, with zxcvbn's advice in Japanese; a mismatch; then a good one.
    let weak = reset_with(&other, &link, "password1", "password1").await;
    assert_eq!(weak.status, 400);
    assert!(weak.body.contains("推測されやすい"), "{}", weak.body);
    assert!(
        weak.body.contains("<li>"),
        "suggestions are listed: {}",
        weak.body
    );
    let mismatch = reset_with(&other, &link, NEW_PASSWORD, "something-else-77").await;
    assert!(mismatch.body.contains("パスワードが一致しません"));
    let done = reset_with(&other, &link, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("パスワードを変更しました"));

    // Every session, grant and refresh token of the account ended.
    let sso = s
        .browser
        .get(&authorize(&s.rp, &[("prompt", "none")]).url)
        .await;
    assert!(sso.location.unwrap().contains("error=login_required"));
    let refresh =
        s.rp.exchange_refresh_token(tokens.refresh_token().unwrap())
            .unwrap()
            .request_async(&s.http)
            .await;
    assert!(refresh.is_err(), "the old refresh token is dead");

    // The owner is told, with a way back if it was not them.
    let mails = s.app.wait_for_mails(2).await;
    assert_eq!(mails[1].subject, "【Tobira】パスワードが変更されました");
    mails[1].link(&format!("{}/password/forgot", s.app.issuer()));

    // The link is spent; the old password is gone, the new one works.
    let again = other.get(&link).await;
    assert_eq!(again.status, 400);
    assert!(again.body.contains("無効か、有効期限が切れています"));
    let login = s
        .browser
        .follow(s.browser.get(&authorize(&s.rp, &[]).url).await)
        .await;
    assert_eq!(
        s.browser.post_login(&login, EMAIL, PASSWORD).await.status,
        401
    );
    let back = s
        .browser
        .submit_login(&login, EMAIL, NEW_PASSWORD, false)
        .await;
    assert!(back.location.unwrap().contains("code="));
}

#[tokio::test]
async fn unknown_and_frozen_addresses_get_the_same_page_and_no_mail() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    app.add_user("frozen@example.jp", PASSWORD).await;
    let frozen = app.user("frozen@example.jp").await.unwrap();
    app.state
        .db
        .users()
        .set_status(
            frozen.id,
            tobira_auth::domain::UserStatus::Frozen,
            app.clock(),
        )
        .await
        .unwrap();
    let browser = app.browser();
    let known = forgot(&browser, EMAIL).await;
    let unknown = forgot(&browser, "nobody@example.jp").await;
    let frozen_page = forgot(&browser, "frozen@example.jp").await;
    for page in [&unknown, &frozen_page] {
        assert_eq!(page.status, known.status);
        assert_eq!(page.body, known.body, "the same page whoever asks");
    }
    let mails = app.wait_for_mails(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.outbox().len(), 1, "only the active account got mail");
    assert_eq!(mails[0].to, EMAIL);

    // A link issued before the account was frozen changes nothing afterwards.
    let link = reset_link(&app, &mails[0]);
    app.state
        .db
        .users()
        .set_status(
            user.id,
            tobira_auth::domain::UserStatus::Frozen,
            app.clock(),
        )
        .await
        .unwrap();
    assert_eq!(browser.get(&link).await.status, 400);
}

#[tokio::test]
async fn expired_voided_tampered_and_foreign_links_change_nothing() {
    let app = TestApp::spawn().await;
    app.add_user(EMAIL, PASSWORD).await;
    let browser = app.browser();
    forgot(&browser, EMAIL).await;
    let first = reset_link(&app, &app.wait_for_mails(1).await[0]);
    forgot(&browser, EMAIL).await;
    let second = reset_link(&app, &app.wait_for_mails(2).await[1]);
    // A newer request voids the older link.
    assert_eq!(browser.get(&first).await.status, 400);
    // A tampered token, an empty one, a huge one.
    for bad in [
        format!("{second}x"),
        "/password/reset?token=".to_owned(),
        format!("/password/reset?token={}", "A".repeat(5000)),
    ] {
        let page = browser.get(&bad).await;
        assert_eq!(page.status, 400, "{bad}");
    }
    // A form posted with a token that is not live is refused without a change.
    let form = browser.get(&second).await;
    let csrf = form.field("csrf").unwrap();
    let forged = browser
        .post_form(
            "/password/reset",
            &[
                ("csrf", &csrf),
                ("token", "made-up-token"),
                ("password", NEW_PASSWORD),
                ("confirm", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(forged.status, 400);
    // From another site, even with the right token and CSRF token: refused.
    let token = form.field("token").unwrap();
    let cross = browser
        .post_form_with(
            "/password/reset",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("password", NEW_PASSWORD),
                ("confirm", NEW_PASSWORD),
            ],
            &[
                ("origin", "https://attacker.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(cross.status, 403);
    // Thirty minutes later the link is dead.
    app.clock()
        .advance(Duration::minutes(30) + Duration::seconds(1));
    assert_eq!(browser.get(&second).await.status, 400);
    // The password never changed.
    assert!(app.password_works(EMAIL, PASSWORD).await);
}

#[tokio::test]
async fn the_forgot_form_cannot_bomb_an_address_or_be_used_from_another_site() {
    let app = TestApp::spawn_with(|c| {
        c.mail.per_address_per_hour = 3;
        c.mail.per_ip_per_hour = 0;
    })
    .await;
    app.add_user(EMAIL, PASSWORD).await;
    let browser = app.browser();
    let first = forgot(&browser, EMAIL).await;
    for _ in 0..5 {
        let page = forgot(&browser, EMAIL).await;
        assert_eq!(
            page.body, first.body,
            "the page says the same after the cap"
        );
    }
    app.wait_for_mails(3).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.outbox().len(), 3, "three mails in the hour, no more");
    app.clock().advance(Duration::hours(1));
    forgot(&browser, EMAIL).await;
    app.wait_for_mails(4).await;

    // Per client address as well.
    let app = TestApp::spawn_with(|c| {
        c.mail.per_address_per_hour = 0;
        c.mail.per_ip_per_hour = 2;
    })
    .await;
    for i in 0..3 {
        app.add_user(&format!("member{i}@example.jp"), PASSWORD)
            .await;
        forgot(&app.browser(), &format!("member{i}@example.jp")).await;
    }
    app.wait_for_mails(2).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.outbox().len(), 2);

    // Hostile input: no CSRF token, another site, a malformed address.
    let page = browser
        .post_form("/password/forgot", &[("email", EMAIL)])
        .await;
    assert_eq!(page.status, 403);
    let form = browser.get("/password/forgot").await;
    let csrf = form.field("csrf").unwrap();
    let page = browser
        .post_form_with(
            "/password/forgot",
            &[("csrf", &csrf), ("email", EMAIL)],
            &[("origin", "null")],
        )
        .await;
    assert_eq!(page.status, 403);
    let page = browser
        .post_form(
            "/password/forgot",
            &[("csrf", &csrf), ("email", "\"><script>alert(1)</script>")],
        )
        .await;
    assert_eq!(page.status, 400);
    assert!(!page.body.contains("<script>alert(1)"), "escaped");
}
