//! Sign-up and address verification: the way a newcomer meets it (from a client's
//! sign-in page, through the mail, back at the client signed in), and the way an
//! attacker would try it: pre-hijacking an address, foreign browsers, replayed, expired
//! and tampered links, hostile form input.

use time::Duration;

use crate::helpers::{Browser, OutboxMail, Page, TestApp};
use crate::oidc::{EMAIL, PASSWORD, authorize, code_from, exchange, setup};

const NEW_EMAIL: &str = "taro@example.jp";
const NEW_PASSWORD: &str = "maple-harbor-violin-63";
const ATTACKER_PASSWORD: &str = "gravel-orchid-tundra-15";

pub async fn sign_up(browser: &Browser, path: &str, email: &str, password: &str) -> Page {
    let form = browser.get(path).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.field("csrf").unwrap();
    let tx = form.field("tx").unwrap_or_default();
    browser
        .post_form(
            "/signup",
            &[
                ("csrf", &csrf),
                ("tx", &tx),
                ("email", email),
                ("display_name", "山田 太郎"),
                ("password", password),
            ],
        )
        .await
}

pub fn verify_link(app: &TestApp, mail: &OutboxMail) -> String {
    mail.link(&format!("{}/verify-email?token=", app.issuer()))
        .replace(&app.issuer(), app.url.as_str().trim_end_matches('/'))
}

#[tokio::test]
async fn a_newcomer_signs_up_from_a_client_and_lands_back_there_signed_in() {
    let s = setup(Default::default()).await;
    let pending = authorize(&s.rp, &[]);
    let login = s.browser.follow(s.browser.get(&pending.url).await).await;
    let tx = login.field("tx").unwrap();
    assert!(
        login.body.contains(&format!("/signup?tx={tx}")),
        "{}",
        login.body
    );

    let sent = sign_up(
        &s.browser,
        &format!("/signup?tx={tx}"),
        NEW_EMAIL,
        NEW_PASSWORD,
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(sent.body.contains("確認メールをお送りしました"));
    let mails = s.app.wait_for_mails(1).await;
    assert_eq!(mails[0].to, NEW_EMAIL);
    assert_eq!(mails[0].subject, "【Tobira】メールアドレスの確認");
    // Greeted by address: a display name typed on the form never reaches that inbox.
    assert!(
        mails[0].text.starts_with(&format!("{NEW_EMAIL} 様")),
        "{}",
        mails[0].text
    );
    assert!(!mails[0].text.contains("山田 太郎"));
    // Not verified yet: the account cannot sign in anywhere.
    let unverified = s.app.user(NEW_EMAIL).await.unwrap();
    assert_eq!(
        unverified.status,
        tobira_auth::domain::UserStatus::Unverified
    );

    let link = verify_link(&s.app, &mails[0]);
    let back = s.browser.follow(s.browser.get(&link).await).await;
    let code = code_from(&s, &back, &pending);
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let claims = crate::oidc::verify_id_token(&s, &tokens, &pending.nonce);
    assert_eq!(claims.subject().as_str(), unverified.sub.as_str());
    let verified = s.app.user(NEW_EMAIL).await.unwrap();
    assert!(verified.email_verified);
    assert_eq!(verified.status, tobira_auth::domain::UserStatus::Active);
    // The link is spent.
    assert_eq!(s.browser.get(&link).await.status, 400);
}

#[tokio::test]
async fn weak_passwords_get_advice_and_hostile_input_is_refused() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    let weak = sign_up(&browser, "/signup", NEW_EMAIL, "password1").await;
    assert_eq!(weak.status, 400);
    assert!(
        weak.body.contains("推測されやすい") && weak.body.contains("<li>"),
        "{}",
        weak.body
    );
    assert!(weak.body.contains(NEW_EMAIL), "the typed address is kept");
    let en = browser.get("/signup?lang=en").await;
    assert!(en.body.contains("Create an account"));
    let contains_local = sign_up(
        &browser,
        "/signup",
        "violet.tunnel@example.jp",
        "violet.tunnel-ramen-42",
    )
    .await;
    assert_eq!(contains_local.status, 400);
    let bad_email = sign_up(
        &browser,
        "/signup",
        "\"><script>alert(1)</script>",
        NEW_PASSWORD,
    )
    .await;
    assert_eq!(bad_email.status, 400);
    assert!(!bad_email.body.contains("<script>alert(1)"));
    let form = browser.get("/signup").await;
    let csrf = form.field("csrf").unwrap();
    let long_name = "名".repeat(51);
    let page = browser
        .post_form(
            "/signup",
            &[
                ("csrf", &csrf),
                ("email", NEW_EMAIL),
                ("display_name", &long_name),
                ("password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 400);
    let no_csrf = browser
        .post_form(
            "/signup",
            &[
                ("email", NEW_EMAIL),
                ("display_name", "x"),
                ("password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(no_csrf.status, 403);
    let cross = browser
        .post_form_with(
            "/signup",
            &[
                ("csrf", &csrf),
                ("email", NEW_EMAIL),
                ("display_name", "x"),
                ("password", NEW_PASSWORD),
            ],
            &[
                ("origin", "https://attacker.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(cross.status, 403);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(app.outbox().is_empty(), "nothing was sent");
    assert!(app.user(NEW_EMAIL).await.is_none());
}

#[tokio::test]
async fn a_sign_up_with_a_registered_address_tells_its_owner_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.add_user(EMAIL, PASSWORD).await;
    let taken = sign_up(&app.browser(), "/signup", EMAIL, NEW_PASSWORD).await;
    let fresh = sign_up(&app.browser(), "/signup", NEW_EMAIL, NEW_PASSWORD).await;
    assert_eq!(taken.status, fresh.status);
    assert_eq!(taken.body, fresh.body, "the same page either way");
    let mails = app.wait_for_mails(2).await;
    let owner = mails.iter().find(|m| m.to == EMAIL).unwrap();
    assert_eq!(owner.subject, "【Tobira】このアドレスでの新規登録について");
    owner.link(&format!("{}/password/forgot", app.issuer()));
    assert!(
        app.password_works(EMAIL, PASSWORD).await,
        "the owner's password is unchanged"
    );
}

#[tokio::test]
async fn pre_hijacking_an_address_gains_the_attacker_nothing() {
    let s = setup(Default::default()).await;
    let victim_address = NEW_EMAIL;
    // The attacker signs up with the victim's address and a password of his own.
    let attacker = s.app.browser();
    sign_up(&attacker, "/signup", victim_address, ATTACKER_PASSWORD).await;
    let attackers_link = verify_link(&s.app, &s.app.wait_for_mails(1).await[0]);
    // He cannot sign in to any client with it: the address is not verified.
    let login = attacker
        .follow(attacker.get(&authorize(&s.rp, &[]).url).await)
        .await;
    let refused = attacker
        .post_login(&login, victim_address, ATTACKER_PASSWORD)
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("確認がまだ完了していません"));

    // The victim signs up herself: her password replaces his, his link is void.
    let victim = s.app.browser();
    sign_up(&victim, "/signup", victim_address, NEW_PASSWORD).await;
    let victims_link = verify_link(&s.app, &s.app.wait_for_mails(2).await[1]);
    assert_eq!(attacker.get(&attackers_link).await.status, 400);
    // Her link in a browser that did not sign up (the attacker's, say) asks for the
    // password, and his does not work.
    let asked = attacker.get(&victims_link).await;
    assert_eq!(asked.status, 200);
    assert!(
        asked.body.contains("別のブラウザで開かれた"),
        "{}",
        asked.body
    );
    let csrf = asked.field("csrf").unwrap();
    let token = asked.field("token").unwrap();
    let wrong = attacker
        .post_form(
            "/verify-email",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("password", ATTACKER_PASSWORD),
            ],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.body.contains(r#"href="/signup""#),
        "offered to sign up again"
    );
    assert_eq!(
        s.app.user(victim_address).await.unwrap().status,
        tobira_auth::domain::UserStatus::Unverified
    );
    // With her password (on her phone, say), the address is verified.
    let phone = s.app.browser();
    let asked = phone.get(&victims_link).await;
    let csrf = asked.field("csrf").unwrap();
    let done = phone
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
    assert!(
        phone.cookie("tobira_session").is_none(),
        "that browser is not signed in"
    );
    // Only her password opens the account now.
    let login = attacker
        .follow(attacker.get(&authorize(&s.rp, &[]).url).await)
        .await;
    assert_eq!(
        attacker
            .post_login(&login, victim_address, ATTACKER_PASSWORD)
            .await
            .status,
        401
    );
    assert_eq!(
        attacker
            .post_login(&login, victim_address, NEW_PASSWORD)
            .await
            .status,
        303
    );
}

#[tokio::test]
async fn verification_links_expire_are_single_use_and_cannot_be_forged() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    sign_up(&browser, "/signup", NEW_EMAIL, NEW_PASSWORD).await;
    let link = verify_link(&app, &app.wait_for_mails(1).await[0]);
    for bad in [
        format!("{link}x"),
        "/verify-email?token=".to_owned(),
        format!("/verify-email?token={}", "A".repeat(5000)),
        "/verify-email".to_owned(),
    ] {
        assert_eq!(browser.get(&bad).await.status, 400, "{bad}");
    }
    app.clock()
        .advance(Duration::hours(24) + Duration::seconds(1));
    let expired = browser.get(&link).await;
    assert_eq!(expired.status, 400);
    assert!(expired.body.contains("無効か、有効期限が切れています"));
    assert_eq!(
        app.user(NEW_EMAIL).await.unwrap().status,
        tobira_auth::domain::UserStatus::Unverified
    );
}

#[tokio::test]
async fn the_right_password_of_an_unverified_account_can_ask_for_the_mail_again() {
    let s = setup(Default::default()).await;
    let browser = s.app.browser();
    sign_up(&browser, "/signup", NEW_EMAIL, NEW_PASSWORD).await;
    let first = verify_link(&s.app, &s.app.wait_for_mails(1).await[0]);
    let pending = authorize(&s.rp, &[]);
    let login = browser.follow(browser.get(&pending.url).await).await;
    let refused = browser.post_login(&login, NEW_EMAIL, NEW_PASSWORD).await;
    assert_eq!(refused.status, 403);
    let handle = refused.field("handle").expect("a resend form");
    let csrf = refused.field("csrf").unwrap();
    let tx = login.field("tx").unwrap();
    let resent = browser
        .post_form(
            "/signup/resend",
            &[("csrf", &csrf), ("tx", &tx), ("handle", &handle)],
        )
        .await;
    assert_eq!(resent.status, 200, "{}", resent.body);
    let second = verify_link(&s.app, &s.app.wait_for_mails(2).await[1]);
    assert_eq!(
        browser.get(&first).await.status,
        400,
        "the older link is void"
    );
    // A handle works once, and a made-up one not at all.
    for h in [handle.as_str(), "made-up"] {
        let again = browser
            .post_form("/signup/resend", &[("csrf", &csrf), ("handle", h)])
            .await;
        assert_eq!(again.status, 400);
    }
    // The new link continues the sign-in this browser started.
    let back = browser.follow(browser.get(&second).await).await;
    code_from(&s, &back, &pending);
}

#[tokio::test]
async fn sign_ups_never_verified_are_removed_and_free_the_address() {
    let app = TestApp::spawn_with(|c| c.signup.unverified_max_age_hours = 2).await;
    sign_up(&app.browser(), "/signup", NEW_EMAIL, NEW_PASSWORD).await;
    app.wait_for_mails(1).await;
    assert!(app.user(NEW_EMAIL).await.is_some());
    app.clock()
        .advance(Duration::hours(2) + Duration::minutes(11));
    for _ in 0..100 {
        if app.user(NEW_EMAIL).await.is_none() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the unverified sign-up was not removed");
}

#[tokio::test]
async fn the_verification_links_password_check_is_throttled_like_the_sign_in_page() {
    let app = TestApp::spawn().await;
    let owner = app.browser();
    sign_up(&owner, "/signup", NEW_EMAIL, NEW_PASSWORD).await;
    let link = verify_link(&app, &app.wait_for_mails(1).await[0]);
    // Someone holding the link (a forwarded mail, say) guesses the password.
    let guesser = app.browser();
    let asked = guesser.get(&link).await;
    let (csrf, token) = (asked.field("csrf").unwrap(), asked.field("token").unwrap());
    let post = |password: &'static str| {
        let (csrf, token, guesser) = (csrf.clone(), token.clone(), &guesser);
        async move {
            guesser
                .post_form(
                    "/verify-email",
                    &[("csrf", &csrf), ("token", &token), ("password", password)],
                )
                .await
        }
    };
    for n in 0..5 {
        assert_eq!(post(ATTACKER_PASSWORD).await.status, 401, "guess {n}");
    }
    let refused = post(NEW_PASSWORD).await;
    assert_eq!(refused.status, 429, "even the right one, once locked");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(
        app.user(NEW_EMAIL).await.unwrap().status,
        tobira_auth::domain::UserStatus::Unverified
    );
    // After the lock, the owner's password verifies it.
    app.clock().advance(Duration::seconds(61));
    let done = post(NEW_PASSWORD).await;
    assert_eq!(done.status, 200, "{}", done.body);
}
