//! The second-step page (`/login/second-step`) as a member meets it after the right
//! password: authenticator codes (window, replay), recovery codes (single use, the
//! account's own), email codes (sent by themselves, 10 minutes, resent), the counts of
//! wrong codes (per sign-in, per account), the remembered device and what clears it; and
//! as an attacker would try it: no first step, another browser, no token, malformed input.

use sea_orm::ConnectionTrait;
use time::Duration;
use tobira_auth::admin::users::{AddUser, add_user};
use tobira_auth::authn::second_step::{self, Pending, Proof, SecondStepError};
use tobira_auth::crypto::sha256_hex;
use tobira_auth::domain::User;
use tobira_auth::store::{LoginEvent, LoginResult};
use tobira_auth::web::i18n::Lang;

use crate::console::sent_to_sign_in;
use crate::helpers::{Browser, OutboxMail, Page, TestApp};
use crate::oidc::{EMAIL, PASSWORD};
use crate::recovery::NEW_PASSWORD;
use crate::sessions::session_of;
use crate::two_step::{App, enrol_email, enrol_totp, send_email_code, submit};

const OTHER: &str = "taro@example.jp";
const CODE_SUBJECT: &str = "【Tobira】ログインの確認コード";
const RECOVERY_SUBJECT: &str = "【Tobira】リカバリーコードが使用されました";
const WRONG: &str = "確認コードが正しくありません";
const REMEMBER_BOX: &str = r#"id="remember-device""#;

/// The app with a member (`EMAIL`) whose authenticator app is on; the app and the
/// recovery codes made with it.
async fn totp_member() -> (TestApp, User, App, Vec<String>) {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let (authenticator, codes) = enrol_totp(&app, &user).await;
    (app, user, authenticator, codes)
}

/// Opens the console in `browser` and types the right password of `email`: the answer,
/// not followed.
async fn password(browser: &Browser, email: &str) -> Page {
    let login = sent_to_sign_in(browser, "/account").await;
    browser.post_login(&login, email, PASSWORD).await
}

/// Signs in with the password of `email` and opens the second-step page it sends to.
async fn second_step_of(browser: &Browser, email: &str) -> Page {
    let posted = password(browser, email).await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let to = posted.location.expect("a redirect");
    assert!(to.starts_with("/login/second-step?tx="), "{to}");
    let page = browser.get(&to).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"id="second-step""#), "{}", page.body);
    page
}

async fn second_step(browser: &Browser) -> Page {
    second_step_of(browser, EMAIL).await
}

/// The answer sends the browser on signed in, to the console.
fn signed_in(answer: &Page) {
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(
        answer.location.as_deref(),
        Some("/account"),
        "{}",
        answer.body
    );
}

/// The answer sends the browser back to the password of the same sign-in.
fn back_to_password(answer: &Page, page: &Page) {
    let tx = page.field("tx").unwrap();
    assert_eq!(answer.status, 303, "{}", answer.body);
    let location = answer.location.as_deref().unwrap();
    assert!(
        location.starts_with(&format!("/login?tx={tx}")),
        "{location}"
    );
}

/// The 6-digit code of the newest code mail to `to`.
fn mailed_code(mails: &[OutboxMail], to: &str) -> String {
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.to == to && m.subject == CODE_SUBJECT)
        .expect("a code mail");
    mail.text
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
        .expect("a code in the mail")
        .to_owned()
}

fn code_mails(app: &TestApp) -> usize {
    app.outbox()
        .iter()
        .filter(|m| m.subject == CODE_SUBJECT)
        .count()
}

/// Waits until `n` code mails were sent; the code of the `n`th (called after each send,
/// so that the newest is known whatever the files' times).
async fn code_mail(app: &TestApp, n: usize) -> String {
    for _ in 0..200 {
        if code_mails(app) == n {
            return mailed_code(&app.outbox(), EMAIL);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("expected {n} code mails: {:?}", app.outbox());
}

/// Signs the browser out through the end-session confirmation.
async fn sign_out(browser: &Browser) {
    let confirm = browser.get("/end-session").await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let (csrf, tx) = (confirm.field("csrf").unwrap(), confirm.field("tx").unwrap());
    let done = browser
        .post_form("/end-session/confirm", &[("csrf", &csrf), ("tx", &tx)])
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(browser.get("/account").await.status, 303, "signed out");
}

/// A code that is not `right` (and not the codes next to it).
fn wrong(right: &str) -> String {
    let n: u32 = right.parse().unwrap();
    format!("{:06}", (n + 500_000) % 1_000_000)
}

/// The id of the one field the page puts the cursor in.
fn focused(page: &Page) -> &str {
    let body = &page.body;
    assert_eq!(
        body.matches(" autofocus").count(),
        1,
        "one field focused: {body}"
    );
    let at = body.find(" autofocus").unwrap();
    let start = body[..at].rfind(r#"<input id=""#).expect("an input") + r#"<input id=""#.len();
    &body[start..start + body[start..].find('"').unwrap()]
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

#[tokio::test]
async fn the_password_alone_signs_nothing_in_and_the_right_code_does() {
    let (app, _user, authenticator, _) = totp_member().await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    assert!(browser.cookie("tobira_session").is_none(), "no session yet");
    assert_eq!(
        browser.get("/account").await.status,
        303,
        "the console still sends to sign in"
    );
    for shown in [
        r#"id="totp-form""#,
        r#"id="totp-code""#,
        r#"autocomplete="one-time-code""#,
        r#"inputmode="numeric""#,
        r#"id="totp-submit""#,
        r#"id="recovery-form""#,
        r#"id="recovery-code""#,
        "別のアカウントでログイン",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }
    assert!(!page.body.contains(r#"id="email-form""#), "not enrolled");

    let done = submit(&browser, &page, "totp", &authenticator.code(&app), false).await;
    signed_in(&done);
    assert_eq!(browser.get("/account").await.status, 200);
    let session = session_of(&app, &browser).await.expect("a session");
    assert_eq!(session.amr, ["pwd", "otp", "mfa"]);
    assert_eq!(session.acr, "2");
}

#[tokio::test]
async fn codes_of_the_next_and_previous_steps_work_and_two_steps_away_do_not() {
    let (app, _user, authenticator, _) = totp_member().await;
    // Enrolment accepted the step before it; a few steps later the window is free.
    app.clock().advance(Duration::minutes(2));
    let first = app.browser();
    let page = second_step(&first).await;
    for far in [2, -2] {
        let code = authenticator.code_in(&app, far);
        let refused = submit(&first, &page, "totp", &code, false).await;
        assert_eq!(refused.status, 401, "{far}: {}", refused.body);
        assert!(refused.body.contains(WRONG), "{}", refused.body);
    }
    let previous = authenticator.code_in(&app, -1);
    signed_in(&submit(&first, &page, "totp", &previous, false).await);

    let second = app.browser();
    let page = second_step(&second).await;
    let next = authenticator.code_in(&app, 1);
    signed_in(&submit(&second, &page, "totp", &next, false).await);

    // Later, the window moves with the clock: the code of then is stale now.
    app.clock().advance(Duration::minutes(5));
    let third = app.browser();
    let page = second_step(&third).await;
    let stale = authenticator.code_in(&app, -10);
    assert_eq!(
        submit(&third, &page, "totp", &stale, false).await.status,
        401
    );
    signed_in(&submit(&third, &page, "totp", &authenticator.code(&app), false).await);
}

#[tokio::test]
async fn an_accepted_code_is_refused_again_even_in_another_sign_in() {
    let (app, _user, authenticator, _) = totp_member().await;
    let code = authenticator.code(&app);
    let first = app.browser();
    let page = second_step(&first).await;
    signed_in(&submit(&first, &page, "totp", &code, false).await);
    // The same form again: the console sign-in it finished is gone, nothing signs in.
    let again = submit(&first, &page, "totp", &code, false).await;
    assert_eq!(again.status, 400, "{}", again.body);

    let second = app.browser();
    let page = second_step(&second).await;
    let replayed = submit(&second, &page, "totp", &code, false).await;
    assert_eq!(replayed.status, 401, "{}", replayed.body);
    assert!(replayed.body.contains("あと 4 回"), "{}", replayed.body);
    assert!(second.cookie("tobira_session").is_none());
    // An earlier code is no better once a later one was accepted.
    let earlier = authenticator.code_in(&app, -1);
    assert_eq!(
        submit(&second, &page, "totp", &earlier, false).await.status,
        401
    );
}

#[tokio::test]
async fn a_recovery_code_works_once_for_its_own_account_and_the_member_is_told() {
    let (app, user, _authenticator, codes) = totp_member().await;
    let other = add_user(
        &app.state.db,
        &app.state.hasher,
        &app.state.clock,
        &tobira_auth::admin::audit::Context::cli(),
        AddUser {
            email: OTHER,
            password: Some(PASSWORD),
            email_verified: true,
            display_name: "鈴木 太郎".to_owned(),
            locale: Lang::Ja,
        },
    )
    .await
    .unwrap();
    let (_, other_codes) = enrol_totp(&app, &other).await;

    // A code of another account is nothing to this one.
    let stranger = app.browser();
    let stranger_page = second_step_of(&stranger, OTHER).await;
    let refused = submit(&stranger, &stranger_page, "recovery", &codes[0], false).await;
    assert_eq!(refused.status, 401, "{}", refused.body);

    let browser = app.browser();
    let page = second_step(&browser).await;
    // Typed loosely: upper case, spaces for the hyphen.
    let typed = codes[0].to_uppercase().replace('-', " ");
    signed_in(&submit(&browser, &page, "recovery", &typed, false).await);
    let session = session_of(&app, &browser).await.unwrap();
    assert_eq!(session.amr, ["pwd", "otp", "mfa"]);
    assert_eq!(session.acr, "2");
    let mails = app.settled().await;
    let told = mails
        .iter()
        .find(|m| m.to == EMAIL && m.subject == RECOVERY_SUBJECT)
        .expect("the member is told");
    assert!(told.text.contains("残り9個"), "{}", told.text);
    assert!(
        told.text.contains(&format!("{}/account/2fa", app.issuer())),
        "{}",
        told.text
    );
    assert!(
        !told.text.contains(&codes[0]),
        "the code stays out of the mail"
    );

    let again = app.browser();
    let page = second_step(&again).await;
    assert_eq!(
        submit(&again, &page, "recovery", &codes[0], false)
            .await
            .status,
        401
    );
    // The other account's codes work for it, in the sign-in that tried the wrong one.
    signed_in(
        &submit(
            &stranger,
            &stranger_page,
            "recovery",
            &other_codes[0],
            false,
        )
        .await,
    );
    let events = history(&app, &user).await;
    assert!(
        events
            .iter()
            .any(|e| e.method == "password+recovery_code" && e.result == LoginResult::Success),
        "{events:?}"
    );
}

#[tokio::test]
async fn an_email_only_member_is_sent_a_code_that_works_for_ten_minutes() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    enrol_email(&app, &user).await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let code = code_mail(&app, 1).await;
    let mail = app
        .outbox()
        .into_iter()
        .find(|m| m.subject == CODE_SUBJECT)
        .unwrap();
    assert!(mail.text.contains("10分間有効"), "{}", mail.text);
    assert!(mail.text.contains("心当たりがない場合"), "{}", mail.text);
    assert!(
        mail.text
            .contains(&format!("{}/password/forgot", app.issuer())),
        "{}",
        mail.text
    );
    assert!(
        !mail.subject.contains(&code),
        "the code stays out of the subject"
    );
    assert!(page.body.contains("h***@example.jp"), "{}", page.body);
    assert!(!page.body.contains(EMAIL), "the address is masked");
    assert!(!page.body.contains(r#"id="totp-form""#));
    for shown in [
        r#"id="email-form""#,
        r#"id="email-send""#,
        r#"id="email-code""#,
        r#"id="email-submit""#,
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }

    app.clock()
        .advance(Duration::minutes(9) + Duration::seconds(59));
    signed_in(&submit(&browser, &page, "email", &code, false).await);
    let session = session_of(&app, &browser).await.unwrap();
    assert_eq!(
        session.amr,
        ["pwd", "mca"],
        "an email code is not a second factor"
    );
    assert_eq!(session.acr, "1");
}

#[tokio::test]
async fn an_email_code_is_refused_after_ten_minutes() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    enrol_email(&app, &user).await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let code = code_mail(&app, 1).await;
    app.clock()
        .advance(Duration::minutes(10) + Duration::seconds(1));
    let late = submit(&browser, &page, "email", &code, false).await;
    back_to_password(&late, &page);
    assert!(browser.cookie("tobira_session").is_none());
}

#[tokio::test]
async fn beside_an_authenticator_an_email_code_is_sent_only_when_asked_for() {
    let (app, user, _authenticator, _) = totp_member().await;
    enrol_email(&app, &user).await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    assert!(page.body.contains(r#"id="totp-form""#) && page.body.contains(r#"id="email-form""#));
    assert_eq!(focused(&page), "totp-code", "the first form's field");
    assert_eq!(
        app.settled()
            .await
            .iter()
            .filter(|m| m.subject == CODE_SUBJECT)
            .count(),
        0,
        "not sent by itself beside an authenticator"
    );
    let refused = submit(&browser, &page, "email", "123456", false).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("コードの有効期限が切れました。もう一度送信してください"),
        "{}",
        refused.body
    );
    assert_eq!(focused(&refused), "email-code", "the field just tried");
    // Asked for, it goes out, and works; the expired answer cost no try.
    let sent = send_email_code(&browser, &page).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(
        sent.body
            .contains("h***@example.jp 宛てに確認コードを送信しました"),
        "{}",
        sent.body
    );
    assert!(
        !sent.body.contains("前にお送りしたコード"),
        "a first code replaces none"
    );
    let code = code_mail(&app, 1).await;
    let first_wrong = submit(&browser, &page, "email", &wrong(&code), false).await;
    assert!(
        first_wrong.body.contains("あと 4 回"),
        "{}",
        first_wrong.body
    );
    assert_eq!(focused(&first_wrong), "email-code");
    assert!(
        first_wrong.body.contains(r#"id="email-code""#)
            && first_wrong
                .body
                .contains(r#"autofocus aria-invalid="true""#)
    );
    let recovery_wrong = submit(&browser, &page, "recovery", "not-a-recovery-code", false).await;
    assert_eq!(recovery_wrong.status, 401, "{}", recovery_wrong.body);
    assert_eq!(focused(&recovery_wrong), "recovery-code");
    let totp_wrong = submit(&browser, &page, "totp", "12345", false).await;
    assert_eq!(totp_wrong.status, 400, "{}", totp_wrong.body);
    assert_eq!(focused(&totp_wrong), "totp-code");
    signed_in(&submit(&browser, &page, "email", &code, false).await);
    // What one sign-in sent is its own: another browser's is told nothing went out yet.
    let other = app.browser();
    let theirs = second_step(&other).await;
    assert!(
        theirs
            .body
            .contains("h***@example.jp 宛てに確認コードをお送りします"),
        "{}",
        theirs.body
    );
    assert!(
        !theirs.body.contains("確認コードを送信しました"),
        "{}",
        theirs.body
    );
}

#[tokio::test]
async fn no_code_is_sent_while_the_second_step_is_locked() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    enrol_email(&app, &user).await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let code = code_mail(&app, 1).await;
    for _ in 0..5 {
        submit(&browser, &page, "email", &wrong(&code), false).await;
    }
    let page = second_step(&browser).await;
    let code = code_mail(&app, 2).await;
    for _ in 0..4 {
        submit(&browser, &page, "email", &wrong(&code), false).await;
    }
    let locked = submit(&browser, &page, "email", &wrong(&code), false).await;
    assert_eq!(locked.status, 429, "{}", locked.body);
    // The right password again: no code goes out by itself, and the button sends none.
    let login = sent_to_sign_in(&browser, "/account").await;
    let posted = browser.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let page = browser.get(posted.location.as_deref().unwrap()).await;
    assert_eq!(page.status, 429, "{}", page.body);
    // The locked page has no form; the sign-in page holds the same tokens.
    let refused = send_email_code(&browser, &login).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let mails = app.settled().await;
    assert_eq!(
        mails.iter().filter(|m| m.subject == CODE_SUBJECT).count(),
        2
    );
}

#[tokio::test]
async fn a_resent_email_code_replaces_the_first() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    enrol_email(&app, &user).await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let first = code_mail(&app, 1).await;
    let resent = send_email_code(&browser, &page).await;
    assert_eq!(resent.status, 200, "{}", resent.body);
    assert!(
        resent
            .body
            .contains("前にお送りしたコードは使えなくなりました"),
        "{}",
        resent.body
    );
    let second = code_mail(&app, 2).await;
    if first != second {
        let refused = submit(&browser, &page, "email", &first, false).await;
        assert_eq!(
            refused.status, 401,
            "the first code is replaced: {}",
            refused.body
        );
    }
    signed_in(&submit(&browser, &page, "email", &second, false).await);
}

#[tokio::test]
async fn a_sign_in_sends_at_most_five_codes_and_the_mail_caps_are_not_told() {
    let app = TestApp::spawn_with(|c| c.mail.per_address_per_hour = 3).await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    enrol_email(&app, &user).await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    // The first code went by itself; four more may be asked for. Past the address's cap
    // (3 an hour) the page says the same, and nothing goes out.
    let mut last = code_mail(&app, 1).await;
    for n in 2..=5 {
        let sent = send_email_code(&browser, &page).await;
        assert_eq!(sent.status, 200, "{}", sent.body);
        assert!(
            sent.body.contains("確認コードを送信しました"),
            "{}",
            sent.body
        );
        if n <= 3 {
            last = code_mail(&app, n).await;
        }
    }
    let over = send_email_code(&browser, &page).await;
    assert_eq!(over.status, 429, "{}", over.body);
    assert!(over.body.contains("送信回数が上限"), "{}", over.body);
    let mails = app.settled().await;
    let sent = mails.iter().filter(|m| m.subject == CODE_SUBJECT).count();
    assert_eq!(sent, 3);
    // The last code that went out still works: a capped send changed nothing.
    signed_in(&submit(&browser, &page, "email", &last, false).await);
    // The five are this sign-in's: another one may send again (the address's cap still
    // holds back the mail, and the page says the same).
    let other = app.browser();
    let theirs = second_step(&other).await;
    let sent = send_email_code(&other, &theirs).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
}

#[tokio::test]
async fn five_wrong_email_codes_void_the_code_and_the_sign_in() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    enrol_email(&app, &user).await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let code = code_mail(&app, 1).await;
    for left in (1..=4).rev() {
        let refused = submit(&browser, &page, "email", &wrong(&code), false).await;
        assert_eq!(refused.status, 401, "{}", refused.body);
        assert!(
            refused.body.contains(&format!("あと {left} 回")),
            "{}",
            refused.body
        );
    }
    back_to_password(
        &submit(&browser, &page, "email", &wrong(&code), false).await,
        &page,
    );
    back_to_password(&submit(&browser, &page, "email", &code, false).await, &page);
    assert!(browser.cookie("tobira_session").is_none());
}

#[tokio::test]
async fn five_wrong_codes_void_the_sign_in_and_the_password_is_asked_again() {
    let (app, _user, authenticator, _) = totp_member().await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let right = authenticator.code(&app);
    for _ in 0..4 {
        assert_eq!(
            submit(&browser, &page, "totp", &wrong(&right), false)
                .await
                .status,
            401
        );
    }
    let void = submit(&browser, &page, "totp", &wrong(&right), false).await;
    back_to_password(&void, &page);
    let login = browser.get(void.location.as_deref().unwrap()).await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(
        login.body.contains("もう一度パスワードを入力してください"),
        "{}",
        login.body
    );
    // The right code is too late for this sign-in; the page has nothing left to show.
    back_to_password(&submit(&browser, &page, "totp", &right, false).await, &page);
    let tx = page.field("tx").unwrap();
    let gone = browser.get(&format!("/login/second-step?tx={tx}")).await;
    back_to_password(&gone, &page);

    // With the password again, the right code signs in.
    let posted = browser.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let page = browser.get(posted.location.as_deref().unwrap()).await;
    signed_in(&submit(&browser, &page, "totp", &right, false).await);
}

#[tokio::test]
async fn ten_wrong_codes_lock_the_second_step_and_the_password_does_not_unlock_it() {
    let (app, user, authenticator, codes) = totp_member().await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let right = authenticator.code(&app);
    for _ in 0..5 {
        submit(&browser, &page, "totp", &wrong(&right), false).await;
    }
    let page = second_step(&browser).await;
    for _ in 0..4 {
        assert_eq!(
            submit(&browser, &page, "totp", &wrong(&right), false)
                .await
                .status,
            401
        );
    }
    let locked = submit(&browser, &page, "totp", &wrong(&right), false).await;
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert!(locked.body.contains("一時的に停止"), "{}", locked.body);
    // Two Japanese sentences, no space between them, the second with the time.
    assert!(
        locked
            .body
            .contains("停止しています。しばらくしてからお試しください（"),
        "{}",
        locked.body
    );
    assert!(
        locked.body.contains("以降"),
        "the time is given: {}",
        locked.body
    );
    // Retry-After: the seconds until the lock ends (15 minutes on this still clock), and
    // one more.
    assert!(
        second_step::locked_until(&app.state, user.id)
            .await
            .unwrap()
            .is_some()
    );
    let wait = second_step::ACCOUNT_WINDOW.whole_seconds() + 1;
    assert_eq!(locked.headers["retry-after"], wait.to_string().as_str());

    // The right password leads to the page, which stays locked for every factor.
    let other = app.browser();
    let login = sent_to_sign_in(&other, "/account").await;
    let posted = other.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let page = other.get(posted.location.as_deref().unwrap()).await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(page.body.contains("一時的に停止"), "{}", page.body);
    assert!(
        !page.body.contains(r#"id="totp-form""#),
        "no forms while locked"
    );
    // The locked page has no form; the sign-in page holds the same tokens.
    for (method, code) in [("totp", right.as_str()), ("recovery", codes[0].as_str())] {
        let refused = submit(&other, &login, method, code, false).await;
        assert_eq!(refused.status, 429, "{method}: {}", refused.body);
    }
    assert!(other.cookie("tobira_session").is_none());
    let events = history(&app, &user).await;
    assert!(
        events.iter().any(|e| e.result == LoginResult::Throttled),
        "{events:?}"
    );

    // The lock ends with its window.
    app.clock().advance(Duration::minutes(15));
    let later = app.browser();
    let page = second_step(&later).await;
    signed_in(&submit(&later, &page, "totp", &authenticator.code(&app), false).await);
}

#[tokio::test]
async fn the_page_without_a_first_step_sends_to_the_password() {
    let (app, _user, authenticator, _) = totp_member().await;
    let browser = app.browser();
    let login = sent_to_sign_in(&browser, "/account").await;
    let tx = login.field("tx").unwrap();
    let page = browser.get(&format!("/login/second-step?tx={tx}")).await;
    back_to_password(&page, &login);
    // A form posted without a first step: nothing signs in.
    let posted = submit(&browser, &login, "totp", &authenticator.code(&app), false).await;
    back_to_password(&posted, &login);
    assert!(browser.cookie("tobira_session").is_none());
    // An unknown or missing park is the sign-in page's refusal.
    assert_eq!(
        browser
            .get("/login/second-step?tx=nothing-here")
            .await
            .status,
        400
    );
    assert_eq!(browser.get("/login/second-step").await.status, 400);
}

#[tokio::test]
async fn a_pending_sign_in_is_refused_in_another_browser_and_survives() {
    let (app, _user, authenticator, _) = totp_member().await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let tx = page.field("tx").unwrap();

    let thief = app.browser();
    let seen = thief.get(&format!("/login/second-step?tx={tx}")).await;
    assert_eq!(seen.status, 403, "{}", seen.body);
    assert!(!seen.body.contains(r#"id="totp-form""#));
    // With a form token of its own, the thief posts the right code to the victim's tx.
    let own = sent_to_sign_in(&thief, "/account").await;
    let csrf = own.field("csrf").unwrap();
    let code = authenticator.code(&app);
    let posted = thief
        .post_form(
            "/login/second-step",
            &[
                ("csrf", &csrf),
                ("tx", &tx),
                ("method", "totp"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(posted.status, 403, "{}", posted.body);
    assert!(thief.cookie("tobira_session").is_none());
    // Nothing was spent: the member finishes with the same code.
    signed_in(&submit(&browser, &page, "totp", &code, false).await);
}

#[tokio::test]
async fn a_form_without_its_token_or_from_another_site_is_refused() {
    let (app, _user, authenticator, _) = totp_member().await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let tx = page.field("tx").unwrap();
    let csrf = page.field("csrf").unwrap();
    let code = authenticator.code(&app);
    let tokenless = browser
        .post_form(
            "/login/second-step",
            &[("tx", tx.as_str()), ("method", "totp"), ("code", &code)],
        )
        .await;
    assert_eq!(tokenless.status, 403, "{}", tokenless.body);
    let cross_site = browser
        .post_form_with(
            "/login/second-step",
            &[
                ("csrf", &csrf),
                ("tx", &tx),
                ("method", "totp"),
                ("code", &code),
            ],
            &[
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(cross_site.status, 403, "{}", cross_site.body);
    assert!(browser.cookie("tobira_session").is_none());
    signed_in(&submit(&browser, &page, "totp", &code, false).await);
}

#[tokio::test]
async fn malformed_forms_are_refused_with_a_reason_and_cost_no_try() {
    let (app, _user, authenticator, _) = totp_member().await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let csrf = page.field("csrf").unwrap();
    let tx = page.field("tx").unwrap();
    let huge = "1".repeat(10 * 1024);
    for (method, code, says) in [
        ("totp", "", "確認コードを入力してください"),
        ("totp", "   ", "確認コードを入力してください"),
        ("totp", huge.as_str(), "長すぎます"),
        ("recovery", huge.as_str(), "長すぎます"),
        ("totp", "12345", "6桁の数字"),
        ("totp", "12a456", "6桁の数字"),
        ("totp", "１２３４５６", "6桁の数字"),
        ("sms", "123456", "確認の方法が正しくありません"),
        ("", "123456", "確認の方法が正しくありません"),
        ("email", "123456", "このアカウントでは設定されていません"),
    ] {
        let refused = submit(&browser, &page, method, code, false).await;
        assert_eq!(refused.status, 400, "{method} {code:.20}: {}", refused.body);
        assert!(refused.body.contains(says), "{says}: {}", refused.body);
        assert!(refused.body.contains(r#"id="second-step-error""#));
    }
    for (form, says) in [
        (
            vec![
                ("csrf", csrf.as_str()),
                ("tx", tx.as_str()),
                ("action", "send"),
            ],
            "このアカウントでは設定されていません",
        ),
        (
            vec![
                ("csrf", csrf.as_str()),
                ("tx", tx.as_str()),
                ("action", "delete"),
            ],
            "確認の方法が正しくありません",
        ),
    ] {
        let refused = browser.post_form("/login/second-step", &form).await;
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert!(refused.body.contains(says), "{}", refused.body);
    }
    let no_tx = browser
        .post_form(
            "/login/second-step",
            &[("csrf", &csrf), ("method", "totp"), ("code", "123456")],
        )
        .await;
    assert_eq!(no_tx.status, 400, "{}", no_tx.body);
    let twice = browser
        .post_form(
            "/login/second-step",
            &[
                ("csrf", &csrf),
                ("tx", &tx),
                ("method", "totp"),
                ("method", "email"),
                ("code", "123456"),
            ],
        )
        .await;
    assert_eq!(twice.status, 400, "{}", twice.body);
    // None of these cost a try: the first wrong code leaves four.
    let right = authenticator.code(&app);
    let first_wrong = submit(&browser, &page, "totp", &wrong(&right), false).await;
    assert!(
        first_wrong.body.contains("あと 4 回"),
        "{}",
        first_wrong.body
    );
    signed_in(
        &submit(
            &browser,
            &page,
            "totp",
            &format!(" {} {} ", &right[..3], &right[3..]),
            false,
        )
        .await,
    );
}

#[tokio::test]
async fn a_ticked_known_device_skips_the_second_step_until_the_days_are_over() {
    let (app, _user, authenticator, codes) = totp_member().await;
    let browser = app.browser();
    // A first sign-in: this device is new to the account and is not offered the box.
    let page = second_step(&browser).await;
    assert!(!page.body.contains(REMEMBER_BOX), "{}", page.body);
    signed_in(&submit(&browser, &page, "totp", &authenticator.code(&app), false).await);
    sign_out(&browser).await;
    let remembers = |done: &Page| {
        done.set_cookies
            .iter()
            .any(|c| c.starts_with("tobira_2fa_remember="))
    };

    // Known now, but the box left unticked: asked again next time.
    app.clock().advance(Duration::seconds(30));
    let page = second_step(&browser).await;
    let done = submit(&browser, &page, "totp", &authenticator.code(&app), false).await;
    signed_in(&done);
    assert!(!remembers(&done), "{:?}", done.set_cookies);
    sign_out(&browser).await;
    // Ticked with a recovery code (the way back for a lost factor): asked again too.
    let page = second_step(&browser).await;
    let done = submit(&browser, &page, "recovery", &codes[0], true).await;
    signed_in(&done);
    assert!(!remembers(&done), "{:?}", done.set_cookies);
    sign_out(&browser).await;

    app.clock().advance(Duration::seconds(30));
    let page = second_step(&browser).await;
    assert!(page.body.contains(REMEMBER_BOX), "{}", page.body);
    assert!(
        page.body.contains("この端末では30日間確認しない"),
        "{}",
        page.body
    );
    let done = submit(&browser, &page, "totp", &authenticator.code(&app), true).await;
    signed_in(&done);
    let cookie = done
        .set_cookies
        .iter()
        .find(|c| c.starts_with("tobira_2fa_remember="))
        .expect("the device is remembered");
    assert!(
        cookie.contains("Max-Age=2592000") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    sign_out(&browser).await;

    // The next sign-in on this device needs only the password.
    signed_in(&password(&browser, EMAIL).await);
    let session = session_of(&app, &browser).await.unwrap();
    assert_eq!(session.amr, ["pwd"]);
    // Another browser is asked.
    second_step(&app.browser()).await;

    // After the 30 days the device is asked again.
    sign_out(&browser).await;
    app.clock()
        .advance(Duration::days(30) + Duration::seconds(1));
    second_step(&browser).await;
}

#[tokio::test]
async fn a_first_time_device_is_never_remembered_even_when_asked() {
    let (app, _user, authenticator, _) = totp_member().await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    // The box is not on the page; a form that ticks it anyway is not remembered.
    let done = submit(&browser, &page, "totp", &authenticator.code(&app), true).await;
    signed_in(&done);
    assert!(
        !done
            .set_cookies
            .iter()
            .any(|c| c.starts_with("tobira_2fa_remember=")),
        "{:?}",
        done.set_cookies
    );
    assert!(browser.cookie("tobira_2fa_remember").is_none());
    sign_out(&browser).await;
    second_step(&browser).await;
}

#[tokio::test]
async fn remembering_is_not_offered_when_turned_off() {
    let app = TestApp::spawn_with(|c| c.account.remember_device_days = 0).await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let (authenticator, _) = enrol_totp(&app, &user).await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    signed_in(&submit(&browser, &page, "totp", &authenticator.code(&app), false).await);
    sign_out(&browser).await;
    app.clock().advance(Duration::seconds(30));
    let page = second_step(&browser).await;
    assert!(!page.body.contains(REMEMBER_BOX), "{}", page.body);
    let done = submit(&browser, &page, "totp", &authenticator.code(&app), true).await;
    signed_in(&done);
    assert!(browser.cookie("tobira_2fa_remember").is_none());
}

/// Whether the browser's device is remembered for `user` now (its cookie's secret).
async fn is_remembered(app: &TestApp, user: &User, browser: &Browser) -> bool {
    let (Some(device), Some(secret)) = (
        browser.cookie("tobira_device"),
        browser.cookie("tobira_2fa_remember"),
    ) else {
        return false;
    };
    app.state
        .db
        .two_step()
        .is_remembered(
            app.clock().now(),
            user.id,
            &sha256_hex(&device),
            &sha256_hex(&secret),
        )
        .await
        .unwrap()
}

/// A browser whose device is remembered for the member, signed in.
async fn remembered(app: &TestApp, authenticator: &App) -> Browser {
    let browser = app.browser();
    let page = second_step(&browser).await;
    signed_in(&submit(&browser, &page, "totp", &authenticator.code(app), false).await);
    sign_out(&browser).await;
    app.clock().advance(Duration::seconds(30));
    let page = second_step(&browser).await;
    signed_in(&submit(&browser, &page, "totp", &authenticator.code(app), true).await);
    assert!(browser.cookie("tobira_2fa_remember").is_some());
    browser
}

#[tokio::test]
async fn a_password_change_forgets_the_remembered_devices() {
    let (app, user, authenticator, _) = totp_member().await;
    let browser = remembered(&app, &authenticator).await;
    assert!(is_remembered(&app, &user, &browser).await);
    let changed =
        crate::password::change(&browser, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, true).await;
    assert_eq!(changed.status, 303, "{}", changed.body);
    assert!(!is_remembered(&app, &user, &browser).await);
    sign_out(&browser).await;
    let login = sent_to_sign_in(&browser, "/account").await;
    let posted = browser.post_login(&login, EMAIL, NEW_PASSWORD).await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    assert!(
        posted
            .location
            .as_deref()
            .unwrap()
            .starts_with("/login/second-step?tx="),
        "asked again: {:?}",
        posted.location
    );
}

#[tokio::test]
async fn signing_out_the_other_devices_forgets_their_remembering() {
    let (app, user, authenticator, _) = totp_member().await;
    let laptop = remembered(&app, &authenticator).await;
    assert!(is_remembered(&app, &user, &laptop).await);
    app.clock().advance(Duration::seconds(30));
    let phone = app.browser();
    let page = second_step(&phone).await;
    signed_in(&submit(&phone, &page, "totp", &authenticator.code(&app), false).await);
    let sessions = phone.get("/account/sessions").await;
    assert_eq!(sessions.status, 200, "{}", sessions.body);
    let csrf = sessions.field("csrf").unwrap();
    let done = phone
        .post_form("/account/sessions/end-others", &[("csrf", &csrf)])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    // The laptop was signed out, and its remembering went with it.
    assert_eq!(laptop.get("/account").await.status, 303);
    assert!(!is_remembered(&app, &user, &laptop).await);
    let posted = password(&laptop, EMAIL).await;
    assert!(
        posted
            .location
            .as_deref()
            .unwrap()
            .starts_with("/login/second-step?tx="),
        "asked again: {:?}",
        posted.location
    );
}

#[tokio::test]
async fn a_member_without_a_second_step_never_sees_the_page() {
    let app = TestApp::spawn().await;
    app.add_user(EMAIL, PASSWORD).await;
    let browser = app.browser();
    let login = sent_to_sign_in(&browser, "/account").await;
    let tx = login.field("tx").unwrap();
    signed_in(&browser.post_login(&login, EMAIL, PASSWORD).await);
    let session = session_of(&app, &browser).await.unwrap();
    assert_eq!(session.amr, ["pwd"]);
    assert_eq!(session.acr, "1");
    let page = browser.get(&format!("/login/second-step?tx={tx}")).await;
    assert_ne!(page.status, 200, "{}", page.body);
}

#[tokio::test]
async fn the_history_shows_the_two_step_sign_in_and_the_wrong_codes() {
    let (app, user, authenticator, _) = totp_member().await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let right = authenticator.code(&app);
    assert_eq!(
        submit(&browser, &page, "totp", &wrong(&right), false)
            .await
            .status,
        401
    );
    signed_in(&submit(&browser, &page, "totp", &right, false).await);
    let events = history(&app, &user).await;
    let wrong_code = events
        .iter()
        .find(|e| e.result == LoginResult::WrongCode)
        .expect("a wrong-code line");
    assert_eq!(wrong_code.method, "password+totp");
    let success = events
        .iter()
        .find(|e| e.result == LoginResult::Success)
        .expect("a success line");
    assert_eq!(success.method, "password+totp");
    assert!(
        !events
            .iter()
            .any(|e| e.method == "password" && e.result == LoginResult::Success),
        "the password alone is no sign-in: {events:?}"
    );
}

/// Support freezes the account of `EMAIL`, as the CLI does.
pub(crate) async fn freeze(app: &TestApp) {
    let st = &app.state;
    tobira_auth::admin::support::freeze(
        &st.db,
        &st.master,
        &st.config,
        app.clock(),
        &tobira_auth::admin::audit::Context::cli(),
        &app.user(EMAIL).await.unwrap(),
        &tobira_auth::admin::support::Freeze {
            reason: tobira_auth::admin::support::Reason::parse("不正利用の疑い").unwrap(),
            tell_reason: false,
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_account_frozen_after_the_password_is_not_signed_in() {
    let (app, _user, authenticator, _) = totp_member().await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    freeze(&app).await;
    let refused = submit(&browser, &page, "totp", &authenticator.code(&app), false).await;
    back_to_password(&refused, &page);
    assert!(browser.cookie("tobira_session").is_none());
}

/// The answer to a second step whose account was frozen while it was being checked:
/// the account's closed page, and no session.
pub(crate) async fn closed_midway(app: &TestApp, user: &User, answer: &Page, browser: &Browser) {
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer
            .body
            .contains("このアカウントは現在ご利用いただけません"),
        "{}",
        answer.body
    );
    // No form can help: none is shown.
    assert!(
        !answer.body.contains(r#"id="totp-form""#),
        "{}",
        answer.body
    );
    assert!(browser.cookie("tobira_session").is_none());
    let (sessions, now) = (app.state.db.sessions(), app.clock().now());
    let live = sessions.count_live(user.id, now, app.state.sessions.idle);
    assert_eq!(live.await.unwrap(), 0);
}

/// Support freezes the account after its code was checked and before the pending sign-in
/// is taken (the request held at the take): the account is read again after the take,
/// and no session is made for it.
#[tokio::test]
async fn an_account_frozen_while_its_code_is_checked_is_not_signed_in() {
    let (app, failing) = crate::outage::app_with_failing_store().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let (authenticator, _) = enrol_totp(&app, &user).await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let hold = failing.hold_swap("second_step:");
    let code = authenticator.code(&app);
    let (answer, ()) = tokio::join!(submit(&browser, &page, "totp", &code, false), async {
        hold.reached().await;
        freeze(&app).await;
        hold.release();
    });
    closed_midway(&app, &user, &answer, &browser).await;
}

/// An account that needs a new password since the password step (an email change undone
/// by the old address's owner sets this) is not signed in by the right code: the pending
/// sign-in ends and the password is asked again, as for a frozen account.
#[tokio::test]
async fn an_account_that_must_reset_its_password_since_the_password_is_not_signed_in() {
    let (app, user, authenticator, _) = totp_member().await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let conn = sea_orm::Database::connect(&app.state.config.database_url())
        .await
        .unwrap();
    conn.execute_unprepared(&format!(
        "UPDATE users SET reset_required = true WHERE sub = '{}'",
        user.sub.as_str()
    ))
    .await
    .unwrap();
    assert!(!app.user(EMAIL).await.unwrap().usable());
    let refused = submit(&browser, &page, "totp", &authenticator.code(&app), false).await;
    back_to_password(&refused, &page);
    assert!(browser.cookie("tobira_session").is_none());
}

/// The recovery form is offered while one code is left, and not once every one is spent.
#[tokio::test]
async fn the_recovery_form_is_offered_only_while_a_code_is_left() {
    let (app, _user, _authenticator, _) = totp_member().await;
    let conn = sea_orm::Database::connect(&app.state.config.database_url())
        .await
        .unwrap();
    conn.execute_unprepared(
        "UPDATE recovery_codes SET used_at = created_at \
         WHERE code_hash <> (SELECT MIN(code_hash) FROM recovery_codes)",
    )
    .await
    .unwrap();
    let page = second_step(&app.browser()).await;
    assert!(page.body.contains(r#"id="recovery-form""#), "{}", page.body);
    conn.execute_unprepared("UPDATE recovery_codes SET used_at = created_at")
        .await
        .unwrap();
    let page = second_step(&app.browser()).await;
    assert!(page.body.contains(r#"id="totp-form""#), "{}", page.body);
    assert!(
        !page.body.contains(r#"id="recovery-form""#),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn of_two_submits_of_one_email_code_at_once_one_signs_in() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    enrol_email(&app, &user).await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let code = code_mail(&app, 1).await;
    let (a, b) = tokio::join!(
        submit(&browser, &page, "email", &code, false),
        submit(&browser, &page, "email", &code, false)
    );
    let wins = [&a, &b]
        .iter()
        .filter(|p| p.location.as_deref() == Some("/account"))
        .count();
    assert_eq!(wins, 1, "{:?} {:?}", a.location, b.location);
    let live = app
        .state
        .db
        .sessions()
        .list_live(user.id, app.clock().now(), app.state.sessions.idle)
        .await
        .unwrap();
    assert_eq!(live.len(), 1);
}

#[tokio::test]
async fn the_page_speaks_the_members_language() {
    let app = TestApp::spawn().await;
    let user = add_user(
        &app.state.db,
        &app.state.hasher,
        &app.state.clock,
        &tobira_auth::admin::audit::Context::cli(),
        AddUser {
            email: OTHER,
            password: Some(PASSWORD),
            email_verified: true,
            display_name: "Taro".to_owned(),
            locale: Lang::En,
        },
    )
    .await
    .unwrap();
    enrol_email(&app, &user).await;
    let browser = app.browser();
    let page = second_step_of(&browser, OTHER).await;
    assert!(page.body.contains(r#"<html lang="en">"#), "{}", page.body);
    assert!(page.body.contains("Two-step verification"), "{}", page.body);
    assert!(
        page.body.contains("We sent a code to t***@example.jp"),
        "{}",
        page.body
    );
    let mails = app.wait_for_mails(1).await;
    let mail = mails.iter().find(|m| m.to == OTHER).unwrap();
    assert_eq!(mail.subject, "[Tobira] Your sign-in code");
    // An explicit choice wins.
    let tx = page.field("tx").unwrap();
    let ja = browser
        .get(&format!("/login/second-step?tx={tx}&lang=ja"))
        .await;
    assert!(ja.body.contains("二段階認証"), "{}", ja.body);
}

#[tokio::test]
async fn a_client_gets_its_code_after_the_second_step() {
    let s = crate::oidc::setup(Default::default()).await;
    let user = s.app.user(EMAIL).await.unwrap();
    let (authenticator, _) = enrol_totp(&s.app, &user).await;
    let pending = crate::oidc::authorize(&s.rp, &[]);
    let login = s.browser.follow(s.browser.get(&pending.url).await).await;
    let posted = s.browser.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let page = s.browser.get(posted.location.as_deref().unwrap()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Partner Site"),
        "the client is named: {}",
        page.body
    );
    let done = submit(
        &s.browser,
        &page,
        "totp",
        &authenticator.code(&s.app),
        false,
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let tx = page.field("tx").unwrap();
    assert_eq!(
        done.location.as_deref(),
        Some(format!("/authorize/continue?tx={tx}").as_str())
    );
    let back = s.browser.follow(done).await;
    let code = crate::oidc::code_from(&s, &back, &pending);
    let tokens = crate::oidc::exchange(&s, code, pending.verifier)
        .await
        .unwrap();
    let claims = crate::oidc::verify_id_token(&s, &tokens, &pending.nonce);
    let amr: Vec<String> = claims
        .auth_method_refs()
        .map(|v| v.iter().map(|a| a.as_str().to_owned()).collect())
        .unwrap_or_default();
    assert_eq!(amr, ["pwd", "otp", "mfa"]);
}

/// The browser headers of a parked sign-in's binding cookie (what `Pending` is bound to).
pub(crate) fn bound_headers(app: &TestApp) -> (axum::http::HeaderMap, tobira_auth::flow::Binding) {
    let binding = tobira_auth::flow::Binding::of(app.state.cookies, &axum::http::HeaderMap::new());
    let cookie = binding
        .set_cookie
        .clone()
        .expect("a new binding cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(axum::http::header::COOKIE, cookie.parse().unwrap());
    let binding = tobira_auth::flow::Binding::of(app.state.cookies, &headers);
    (headers, binding)
}

fn pending_for(app: &TestApp, binding: &tobira_auth::flow::Binding, user: &User) -> Pending {
    Pending::new(
        app.clock().now(),
        binding,
        user.id,
        vec!["pwd".to_owned()],
        "password",
        false,
        "",
        false,
        "127.0.0.1",
        "tests",
    )
}

/// A sign-in of `user` waiting for its second step under `tx`, bound to `binding`.
async fn waiting(
    app: &TestApp,
    binding: &tobira_auth::flow::Binding,
    user: &User,
    tx: &str,
) -> Pending {
    let pending = pending_for(app, binding, user);
    second_step::start(&app.state, tx, &pending).await.unwrap();
    pending
}

/// `verify` of the recovery code `code` on the pending sign-in `tx` of `user`.
async fn recovery(
    app: &TestApp,
    tx: &str,
    pending: &Pending,
    user: &User,
    code: &str,
) -> Result<second_step::Achieved, SecondStepError> {
    second_step::verify(&app.state, tx, pending, user, Proof::Recovery(code)).await
}

#[tokio::test]
async fn a_code_checked_for_one_account_never_signs_in_the_account_whose_password_replaced_it() {
    // The attack: in one browser and one parked request, the attacker passes the second
    // step of his own account A while, at the same moment, posting the password of the
    // victim B (known to him; B has an authenticator he does not hold). If B's first step
    // lands between the check of A's code and the take, the take must not hand out B.
    let (app, attacker, attackers_app, _) = totp_member().await;
    let victim = app.add_user(OTHER, PASSWORD).await;
    enrol_totp(&app, &victim).await;
    let (headers, binding) = bound_headers(&app);
    let tx = "parked-request-of-the-attacker";
    let mine = waiting(&app, &binding, &attacker, tx).await;
    let checked = second_step::verify(
        &app.state,
        tx,
        &mine,
        &attacker,
        Proof::Totp(&attackers_app.code(&app)),
    )
    .await;
    assert!(checked.is_ok(), "{checked:?}");
    // The victim's password, posted on the same parked request meanwhile.
    waiting(&app, &binding, &victim, tx).await;
    let taken = second_step::finish(&app.state, &headers, tx, &mine).await;
    assert!(
        matches!(taken, Err(SecondStepError::Expired)),
        "the checked sign-in was replaced: nothing may be taken: {taken:?}"
    );
    // The sign-in that replaced it is left to its own second step, not voided.
    let left = second_step::resume(&app.state, &headers, tx).await;
    assert!(
        left.as_ref().is_ok_and(|p| p.user_id() == victim.id),
        "{left:?}"
    );
}

#[tokio::test]
async fn a_burst_of_guesses_sent_at_once_is_checked_at_most_ten_times() {
    // The attack: with the password, open several first steps and fire guesses at once,
    // hoping that all are checked before the first failure is counted. Ten wrong recovery
    // codes and, behind them in the same burst, two right ones: the right ones must meet
    // the lock, not a check.
    let (app, user, _, codes) = totp_member().await;
    let (_, binding) = bound_headers(&app);
    let mut guesses = Vec::new();
    for (n, tx) in ["burst-1", "burst-2", "burst-3"].iter().enumerate() {
        let pending = waiting(&app, &binding, &user, tx).await;
        for (i, right) in codes.iter().take(4).enumerate() {
            let guess = if n == 2 && i >= 2 {
                right.clone()
            } else {
                format!("zzzzz-zzz{n}{i}")
            };
            guesses.push((tx.to_string(), pending.clone(), guess));
        }
    }
    let mut burst = tokio::task::JoinSet::new();
    for (tx, pending, guess) in guesses {
        let (state, user) = (app.state.clone(), user.clone());
        burst.spawn(async move {
            second_step::verify(&state, &tx, &pending, &user, Proof::Recovery(&guess))
                .await
                .map(|_| ())
        });
    }
    let answers = burst.join_all().await;
    let passed = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(passed, 0, "{answers:?}");
    let left = app.state.db.two_step().factors(user.id).await.unwrap();
    assert_eq!(left.recovery_left, 10, "no right code was spent");
    let locked = answers
        .iter()
        .filter(|a| matches!(a, Err(SecondStepError::Locked { .. })))
        .count();
    assert!(locked >= 2, "{answers:?}");
}

#[tokio::test]
async fn an_email_code_typed_with_a_space_in_the_middle_works() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    enrol_email(&app, &user).await;
    let browser = app.browser();
    let page = second_step(&browser).await;
    let code = code_mail(&app, 1).await;
    let spaced = format!(" {} {} ", &code[..3], &code[3..]);
    let answer = submit(&browser, &page, "email", &spaced, false).await;
    signed_in(&answer);
}

#[tokio::test]
async fn each_sign_in_has_its_own_count_of_wrong_codes() {
    // Two sign-ins of one account, waiting at once (two tabs): three wrong codes in the
    // first leave it two tries, and the second still has all five of its own.
    let (app, user, _, _) = totp_member().await;
    let (_, binding) = bound_headers(&app);
    let first = waiting(&app, &binding, &user, "tab-1").await;
    let second = waiting(&app, &binding, &user, "tab-2").await;
    for left in [4, 3, 2] {
        assert!(
            matches!(recovery(&app, "tab-1", &first, &user, "zzzzz-zzzzz").await, Err(SecondStepError::Wrong { left: l }) if l == left)
        );
    }
    let answer = recovery(&app, "tab-2", &second, &user, "zzzzz-zzzzz").await;
    assert!(
        matches!(answer, Err(SecondStepError::Wrong { left: 4 })),
        "the other sign-in's wrong codes counted here: {answer:?}"
    );
}

#[tokio::test]
async fn each_sign_in_has_its_own_count_of_wrong_email_codes() {
    // Two sign-ins of an email-only member, each sent its code: three wrong codes in the
    // first and two in the second leave the second's right code good (five wrong email
    // codes would void it).
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    enrol_email(&app, &user).await;
    let (_, binding) = bound_headers(&app);
    let mut sent = Vec::new();
    for tx in ["tab-1", "tab-2"] {
        let mut pending = waiting(&app, &binding, &user, tx).await;
        let code = second_step::new_email_code(&app.state, tx, &mut pending)
            .await
            .unwrap();
        second_step::save(&app.state, tx, &pending).await.unwrap();
        sent.push((tx, pending, code));
    }
    let verify = |n: usize, code: String| {
        let (state, user) = (app.state.clone(), user.clone());
        let (tx, pending, _) = sent[n].clone();
        async move { second_step::verify(&state, tx, &pending, &user, Proof::EmailCode(&code)).await }
    };
    for n in [0, 0, 0, 1, 1] {
        let answer = verify(n, wrong(&sent[n].2)).await;
        assert!(
            matches!(answer, Err(SecondStepError::Wrong { .. })),
            "{answer:?}"
        );
    }
    let answer = verify(1, sent[1].2.clone()).await;
    assert!(
        answer.is_ok(),
        "the other sign-in's wrong codes counted here: {answer:?}"
    );
}

#[tokio::test]
async fn ten_wrong_codes_lock_their_own_account_and_no_other() {
    // An attacker holding two passwords locks the first account's second step with ten
    // wrong codes: the second account's count and lock are its own.
    let (app, first, _, _) = totp_member().await;
    let other = app.add_user(OTHER, PASSWORD).await;
    let (_, others_codes) = enrol_totp(&app, &other).await;
    let (_, binding) = bound_headers(&app);
    let mut last = None;
    for tx in ["first-1", "first-2"] {
        let pending = waiting(&app, &binding, &first, tx).await;
        for _ in 0..5 {
            last = Some(recovery(&app, tx, &pending, &first, "zzzzz-zzzzz").await);
        }
    }
    assert!(
        matches!(last, Some(Err(SecondStepError::Locked { .. }))),
        "{last:?}"
    );
    assert!(
        second_step::locked_until(&app.state, first.id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        second_step::locked_until(&app.state, other.id)
            .await
            .unwrap(),
        None
    );
    let pending = waiting(&app, &binding, &other, "other-1").await;
    let answer = recovery(&app, "other-1", &pending, &other, &others_codes[0]).await;
    assert!(
        answer.is_ok(),
        "the first account's lock or count reached this one: {answer:?}"
    );
}

#[tokio::test]
async fn the_pending_sign_in_itself_refuses_another_browser_and_ids_the_flow_never_makes() {
    // Behind the parked request's own binding (which turns the thief away first on the
    // page), the pending sign-in is bound to its browser too: neither read nor taken (nor
    // voided) with another browser's cookies, and still there for its own.
    let (app, user, _, _) = totp_member().await;
    let (headers, binding) = bound_headers(&app);
    let (thiefs, _) = bound_headers(&app);
    let pending = pending_for(&app, &binding, &user);
    let tx = "parked-request";
    second_step::start(&app.state, tx, &pending).await.unwrap();
    for other in [&thiefs, &axum::http::HeaderMap::new()] {
        let read = second_step::resume(&app.state, other, tx).await;
        assert!(
            matches!(read, Err(SecondStepError::OtherBrowser)),
            "{read:?}"
        );
        let taken = second_step::finish(&app.state, other, tx, &pending).await;
        assert!(
            matches!(taken, Err(SecondStepError::OtherBrowser)),
            "{taken:?}"
        );
    }
    assert!(second_step::resume(&app.state, &headers, tx).await.is_ok());
    assert!(
        second_step::finish(&app.state, &headers, tx, &pending)
            .await
            .is_ok()
    );
    // Taken for good: a second success (a replayed form) finds nothing.
    let again = second_step::finish(&app.state, &headers, tx, &pending).await;
    assert!(matches!(again, Err(SecondStepError::Expired)), "{again:?}");
    // The flow's ids are 1 to 64 characters (64 works): anything else is refused without a
    // lookup, even when something was left under it.
    let longest = "x".repeat(64);
    second_step::start(&app.state, &longest, &pending)
        .await
        .unwrap();
    assert!(
        second_step::resume(&app.state, &headers, &longest)
            .await
            .is_ok()
    );
    let long = "x".repeat(65);
    second_step::start(&app.state, &long, &pending)
        .await
        .unwrap();
    let read = second_step::resume(&app.state, &headers, &long).await;
    assert!(matches!(read, Err(SecondStepError::Expired)), "{read:?}");
}

#[tokio::test]
async fn the_last_try_of_a_sign_in_and_of_the_account_may_still_be_right() {
    // Five wrong codes void one sign-in; four more in the next leave its fifth try, which
    // is also the account's tenth: the right code then still signs in.
    let (app, user, _, codes) = totp_member().await;
    let (_, binding) = bound_headers(&app);
    let voided = waiting(&app, &binding, &user, "first").await;
    for _ in 0..4 {
        let answer = recovery(&app, "first", &voided, &user, "zzzzz-zzzzz").await;
        assert!(
            matches!(answer, Err(SecondStepError::Wrong { .. })),
            "{answer:?}"
        );
    }
    let answer = recovery(&app, "first", &voided, &user, "zzzzz-zzzzz").await;
    assert!(
        matches!(answer, Err(SecondStepError::TooMany)),
        "{answer:?}"
    );
    let pending = waiting(&app, &binding, &user, "second").await;
    for left in [4, 3, 2, 1] {
        let answer = recovery(&app, "second", &pending, &user, "zzzzz-zzzzz").await;
        assert!(
            matches!(answer, Err(SecondStepError::Wrong { left: l }) if l == left),
            "{answer:?}"
        );
    }
    let answer = recovery(&app, "second", &pending, &user, &codes[0]).await;
    assert!(
        answer.is_ok(),
        "the tenth try, right, was refused: {answer:?}"
    );
}

#[tokio::test]
async fn a_recovery_code_typed_with_spaces_is_read_up_to_64_characters() {
    let (app, user, _, codes) = totp_member().await;
    let (_, binding) = bound_headers(&app);
    let pending = waiting(&app, &binding, &user, "tx").await;
    let typed = |code: &str, width: usize| format!("{code:<width$}");
    let answer = recovery(&app, "tx", &pending, &user, &typed(&codes[1], 64)).await;
    assert!(answer.is_ok(), "{answer:?}");
    let answer = recovery(&app, "tx", &pending, &user, &typed(&codes[2], 65)).await;
    assert!(
        matches!(answer, Err(SecondStepError::Wrong { .. })),
        "{answer:?}"
    );
    let left = app.state.db.two_step().factors(user.id).await.unwrap();
    assert_eq!(left.recovery_left, 9, "the 65-character one was not spent");
}

#[tokio::test]
async fn an_email_code_is_good_for_ten_minutes_to_the_millisecond() {
    // `verify` holds the code to its own ten minutes (the page also ends the whole sign-in
    // ten minutes after the password, which a resent code would outlive).
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    enrol_email(&app, &user).await;
    let (_, binding) = bound_headers(&app);
    let mut pending = waiting(&app, &binding, &user, "tx").await;
    let code = second_step::new_email_code(&app.state, "tx", &mut pending)
        .await
        .unwrap();
    let verify = || second_step::verify(&app.state, "tx", &pending, &user, Proof::EmailCode(&code));
    app.clock()
        .advance(Duration::minutes(10) - Duration::milliseconds(1));
    let answer = verify().await;
    assert!(answer.is_ok(), "{answer:?}");
    app.clock().advance(Duration::milliseconds(1));
    let answer = verify().await;
    assert!(
        matches!(answer, Err(SecondStepError::CodeExpired)),
        "{answer:?}"
    );
}
