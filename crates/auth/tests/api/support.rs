//! Support's freeze, unfreeze and sign-out (`admin::support`, behind `tobira users …`) as
//! the member and their apps meet them: everything ends at once, clients are told, the
//! member is mailed (with the reason only when support says so), sign-in explains itself
//! only to the right password; and the refusal of an account whose owner undid an email
//! change until its password is reset. The CLI's side is in `cli.rs`.

use openidconnect::OAuth2TokenResponse;
use tobira_auth::admin::audit::Context;
use tobira_auth::admin::support::{self, Freeze, Outcome, Reason, SupportError};
use tobira_auth::domain::UserStatus;
use tobira_auth::keys::Alg;
use tobira_auth::store::{LoginResult, MAIL_QUEUE};

use crate::backchannel::{Receiver, checked};
use crate::console::sent_to_sign_in;
use crate::helpers::{Browser, ClientOpts, OutboxMail, Page, TestApp};
use crate::history::history;
use crate::oidc::{EMAIL, PASSWORD, Setup, authorize, exchange, setup_with, sign_in_for_code};
use crate::protocol::post_token_endpoint;
use crate::sessions::signed_in;

const WRONG: &str = "not-the-password-1";
const CONTACT: &str = "<support@example.jp>";
const FROZEN_SUBJECT: &str = "【Tobira】アカウントの利用を停止しました";
const UNFROZEN_SUBJECT: &str = "【Tobira】アカウントの利用停止を解除しました";

/// A client with refresh tokens and a back-channel logout endpoint; the only mails are
/// the ones support causes (no new-device mails).
async fn partner(receiver: &Receiver, contact: &str) -> Setup {
    let contact = contact.to_owned();
    setup_with(
        ClientOpts {
            refresh: true,
            backchannel_logout_uri: Some(receiver.uri()),
            ..Default::default()
        },
        move |c| {
            c.account.new_device_mail = false;
            c.account.support_contact = contact;
        },
    )
    .await
}

/// Signs in to the client in the setup's browser; its tokens.
async fn tokens(s: &Setup) -> crate::rp::TokenResponse {
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(s, &pending).await;
    exchange(s, code, pending.verifier).await.unwrap()
}

/// Support's freeze as `tobira users freeze` runs it: the reason parsed first, then the
/// account found by its address.
async fn freeze(
    app: &TestApp,
    email: &str,
    reason: &str,
    tell: bool,
) -> Result<Outcome, SupportError> {
    let st = &app.state;
    let how = Freeze {
        reason: Reason::parse(reason)?,
        tell_reason: tell,
    };
    let user = support::account(&st.db, email).await?;
    support::freeze(
        &st.db,
        &st.master,
        &st.config,
        app.clock(),
        &Context::cli(),
        &user,
        &how,
    )
    .await
}

async fn unfreeze(app: &TestApp, email: &str) -> Result<Outcome, SupportError> {
    let st = &app.state;
    let user = support::account(&st.db, email).await?;
    support::unfreeze(
        &st.db,
        &st.master,
        &st.config,
        app.clock(),
        &Context::cli(),
        &user,
    )
    .await
}

async fn sign_out(app: &TestApp, email: &str) -> Result<u64, SupportError> {
    let user = support::account(&app.state.db, email).await?;
    support::sign_out(&app.state.db, app.clock(), &Context::cli(), &user).await
}

/// Whether the token is still active, by introspection.
async fn active(s: &Setup, token: &str) -> bool {
    let (status, info) = post_token_endpoint(s, "/introspect", &[("token", token)]).await;
    assert_eq!(status, 200, "{info}");
    info["active"] == true
}

/// The mails with this subject, once `n` of them arrived.
async fn mails(app: &TestApp, subject: &str, n: usize) -> Vec<OutboxMail> {
    for _ in 0..100 {
        let found: Vec<OutboxMail> = app
            .outbox()
            .into_iter()
            .filter(|m| m.subject == subject)
            .collect();
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("expected {n} mails {subject:?}, found {:?}", app.outbox());
}

/// How many mails wait in the queue. Support's functions queue their mail in the same
/// transaction as the change, before they return: right after a call, a mail it queued
/// is still waiting here or already in the outbox (the worker writes the file before it
/// drops the row).
async fn waiting(app: &TestApp) -> usize {
    let queue = app.state.db.jobs();
    queue.pending(MAIL_QUEUE).await.unwrap().len()
}

/// Posts the sign-in form from a fresh browser.
async fn sign_in_answer(app: &TestApp, email: &str, password: &str) -> Page {
    let browser = app.browser();
    let login = sent_to_sign_in(&browser, "/account").await;
    browser.post_login(&login, email, password).await
}

async fn signed_out(browser: &Browser) -> bool {
    browser.get("/account").await.status == 303
}

#[tokio::test]
async fn a_freeze_ends_sessions_and_tokens_tells_clients_and_mails_the_reason_when_asked() {
    let receiver = Receiver::start().await;
    let s = partner(&receiver, CONTACT).await;
    let app = &s.app;
    let user = app.user(EMAIL).await.unwrap();
    let tokens = tokens(&s).await;
    let at = tokens.access_token().secret().clone();
    let rt = tokens.refresh_token().unwrap().secret().clone();
    assert!(active(&s, &at).await && active(&s, &rt).await);
    let phone = signed_in(app, EMAIL, "phone").await;
    assert!(!signed_out(&phone).await);

    let reason = "規約違反の疑い <調査中> & 確認待ち";
    assert_eq!(
        freeze(app, EMAIL, reason, true).await.unwrap(),
        Outcome::Changed
    );

    // Every browser is signed out, every token is dead.
    assert!(signed_out(&s.browser).await && signed_out(&phone).await);
    assert!(!active(&s, &at).await, "the access token is inactive");
    assert!(!active(&s, &rt).await, "the refresh token is inactive");
    crate::oidc::assert_tokens_dead(&s, &tokens).await;
    // The client is told, for the member.
    let got = receiver.wait_for(1).await;
    let claims = checked(app, &got[0], &s.client_id, Alg::RS256);
    assert_eq!(claims["sub"], user.sub.as_str());

    // Support keeps the reason; the member reads it too, since support said so.
    let frozen = app.user(EMAIL).await.unwrap();
    assert_eq!(frozen.status, UserStatus::Frozen);
    assert_eq!(frozen.frozen_reason.as_deref(), Some(reason));
    let mail = &mails(app, FROZEN_SUBJECT, 1).await[0];
    assert_eq!(mail.to, EMAIL);
    assert!(mail.text.contains("山田 花子 様"), "{}", mail.text);
    assert!(
        mail.text.contains("サポートの判断により停止"),
        "{}",
        mail.text
    );
    assert!(mail.text.contains(reason), "{}", mail.text);
    assert!(
        mail.text.contains(&format!("サポート（{CONTACT}）")),
        "{}",
        mail.text
    );
    assert!(
        !mail.html.contains("<調査中>") && !mail.html.contains("<support@"),
        "the HTML part escapes what support typed: {}",
        mail.html
    );

    // A second freeze changes nothing and mails nothing.
    app.settled().await;
    assert_eq!(
        freeze(app, EMAIL, "another reason", true).await.unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(waiting(app).await, 0);
    assert_eq!(app.outbox().len(), 1);
    assert_eq!(
        app.user(EMAIL).await.unwrap().frozen_reason.as_deref(),
        Some(reason)
    );
    assert_eq!(receiver.tokens().len(), 1, "no second logout");
}

#[tokio::test]
async fn without_mail_reason_the_member_is_not_told_the_reason_and_is_sent_to_support_in_general() {
    let receiver = Receiver::start().await;
    let s = partner(&receiver, "").await;
    let app = &s.app;
    let reason = "内部調査のため";
    assert_eq!(
        freeze(app, EMAIL, reason, false).await.unwrap(),
        Outcome::Changed
    );
    let mail = &mails(app, FROZEN_SUBJECT, 1).await[0];
    assert!(!mail.text.contains(reason) && !mail.html.contains(reason));
    assert!(!mail.text.contains("停止の理由"), "{}", mail.text);
    assert!(
        mail.text
            .contains("ご不明な点は、サポートまでお問い合わせください。"),
        "{}",
        mail.text
    );
    // Kept for support all the same.
    let user = app.user(EMAIL).await.unwrap();
    assert_eq!(user.frozen_reason.as_deref(), Some(reason));

    // With no contact configured the sign-in page says to contact support, no more.
    let right = sign_in_answer(app, EMAIL, PASSWORD).await;
    assert_eq!(right.status, 403, "{}", right.body);
    assert!(
        right.body.contains(
            "このアカウントは現在ご利用いただけません。サポートにお問い合わせください。</p>"
        ),
        "{}",
        right.body
    );
    assert!(!right.body.contains("お問い合わせ先"), "{}", right.body);
}

#[tokio::test]
async fn a_frozen_account_is_told_of_support_only_after_its_right_password() {
    let receiver = Receiver::start().await;
    let s = partner(&receiver, CONTACT).await;
    let app = &s.app;
    let user = app.user(EMAIL).await.unwrap();
    freeze(app, EMAIL, "規約違反の疑い", false).await.unwrap();

    let right = sign_in_answer(app, EMAIL, PASSWORD).await;
    assert_eq!(right.status, 403, "{}", right.body);
    assert!(
        right
            .body
            .contains("お問い合わせ先：&#60;support@example.jp&#62;")
            || right
                .body
                .contains("お問い合わせ先：&lt;support@example.jp&gt;"),
        "the contact, escaped: {}",
        right.body
    );
    assert!(!right.body.contains("規約違反"), "the reason is support's");
    assert!(
        right
            .set_cookies
            .iter()
            .all(|c| !c.starts_with("tobira_session="))
    );

    // A wrong password learns nothing: the answer of any wrong password.
    let wrong = sign_in_answer(app, EMAIL, WRONG).await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(
        wrong
            .body
            .contains("メールアドレスまたはパスワードが正しくありません。")
    );
    assert!(!wrong.body.contains("support@example.jp") && !wrong.body.contains("お問い合わせ先"));
    assert!(!app.password_works(EMAIL, PASSWORD).await);

    // In English too.
    let browser = app.browser();
    let login = sent_to_sign_in(&browser, "/account").await;
    let en = browser
        .post_login_with(&login, EMAIL, PASSWORD, &[("lang", "en")])
        .await;
    assert_eq!(en.status, 403);
    assert!(
        en.body
            .contains("Please contact support: &#60;support@example.jp&#62;")
            || en
                .body
                .contains("Please contact support: &lt;support@example.jp&gt;"),
        "{}",
        en.body
    );

    let results: Vec<LoginResult> = history(app, &user, 4)
        .await
        .into_iter()
        .map(|e| e.result)
        .collect();
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == LoginResult::Frozen)
            .count(),
        3,
        "{results:?}"
    );
}

#[tokio::test]
async fn unfreezing_lets_the_member_sign_in_again_and_mails_them() {
    let receiver = Receiver::start().await;
    let s = partner(&receiver, "https://help.example.jp").await;
    let app = &s.app;
    // Not frozen yet: nothing to lift.
    assert_eq!(unfreeze(app, EMAIL).await.unwrap(), Outcome::Unchanged);
    freeze(app, EMAIL, "誤検知の可能性", true).await.unwrap();
    assert!(!app.password_works(EMAIL, PASSWORD).await);

    assert_eq!(unfreeze(app, EMAIL).await.unwrap(), Outcome::Changed);
    let user = app.user(EMAIL).await.unwrap();
    assert_eq!(user.status, UserStatus::Active);
    assert_eq!(user.frozen_reason, None, "the reason goes with the freeze");
    assert!(app.password_works(EMAIL, PASSWORD).await);
    let answer = sign_in_answer(app, EMAIL, PASSWORD).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let mail = &mails(app, UNFROZEN_SUBJECT, 1).await[0];
    assert_eq!(mail.to, EMAIL);
    assert!(
        mail.text.contains("利用停止を解除しました"),
        "{}",
        mail.text
    );
    assert!(
        mail.text.contains("https://help.example.jp"),
        "{}",
        mail.text
    );

    app.settled().await;
    let sent = app.outbox().len();
    assert_eq!(unfreeze(app, EMAIL).await.unwrap(), Outcome::Unchanged);
    assert_eq!(waiting(app).await, 0, "mailed once");
    assert_eq!(app.outbox().len(), sent, "mailed once");
}

#[tokio::test]
async fn signing_out_everywhere_ends_sessions_and_tokens_but_not_the_account() {
    let receiver = Receiver::start().await;
    let s = partner(&receiver, "").await;
    let app = &s.app;
    let user = app.user(EMAIL).await.unwrap();
    let tokens = tokens(&s).await;
    let rt = tokens.refresh_token().unwrap().secret().clone();
    let phone = signed_in(app, EMAIL, "phone").await;

    let ended = sign_out(app, EMAIL).await.unwrap();
    assert_eq!(ended, 2, "the client's browser and the phone");
    assert!(signed_out(&s.browser).await && signed_out(&phone).await);
    assert!(!active(&s, &rt).await);
    let got = receiver.wait_for(1).await;
    assert_eq!(
        checked(app, &got[0], &s.client_id, Alg::RS256)["sub"],
        user.sub.as_str()
    );

    // The account is as it was: the member signs in again at once.
    assert_eq!(app.user(EMAIL).await.unwrap().status, UserStatus::Active);
    assert!(app.password_works(EMAIL, PASSWORD).await);
    assert!(!signed_out(&signed_in(app, EMAIL, "laptop").await).await);
    // Nothing left to end.
    let again = sign_out(app, EMAIL).await.unwrap();
    assert_eq!(again, 1, "only the laptop's new session");
    assert_eq!(waiting(app).await, 0, "support's sign-out mails nobody");
    assert!(app.outbox().is_empty(), "support's sign-out mails nobody");
}

#[tokio::test]
async fn unknown_addresses_bad_reasons_and_sign_ups_awaiting_verification_change_nothing() {
    let receiver = Receiver::start().await;
    let s = partner(&receiver, "").await;
    let app = &s.app;
    let phone = signed_in(app, EMAIL, "phone").await;

    for email in ["nobody@example.jp", "hanako@example.com"] {
        assert!(matches!(
            freeze(app, email, "理由", true).await,
            Err(SupportError::NoAccount(_))
        ));
        assert!(matches!(
            unfreeze(app, email).await,
            Err(SupportError::NoAccount(_))
        ));
        assert!(matches!(
            sign_out(app, email).await,
            Err(SupportError::NoAccount(_))
        ));
    }
    for email in ["", "hanako@", "not an address", "a".repeat(300).as_str()] {
        assert!(
            matches!(
                freeze(app, email, "理由", true).await,
                Err(SupportError::Email(_))
            ),
            "{email:?}"
        );
    }
    for (reason, expected) in [
        ("", "empty"),
        ("   ", "empty"),
        ("two\nlines", "control"),
        ("\u{1b}[2Jcleared", "control"),
        (&*"長".repeat(501), "longer"),
    ] {
        let refused = freeze(app, EMAIL, reason, true).await.unwrap_err();
        assert!(
            refused.to_string().contains(expected),
            "{reason:?}: {refused}"
        );
    }
    // The account and its session are untouched, and nobody was mailed.
    let user = app.user(EMAIL).await.unwrap();
    assert_eq!(user.status, UserStatus::Active);
    assert_eq!(user.frozen_reason, None);
    assert!(!signed_out(&phone).await);

    // A sign-up still awaiting verification holds no way in to stop.
    let newcomer = app.browser();
    let sent = crate::signup::sign_up(&newcomer, "/signup", "taro@example.jp", PASSWORD).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    // The sign-up is written after the answer; its verification mail says it is there.
    app.wait_for_mails(1).await;
    let refused = freeze(app, "taro@example.jp", "理由", true)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, SupportError::NotActive(UserStatus::Unverified)),
        "{refused}"
    );
    assert_eq!(
        app.user("taro@example.jp").await.unwrap().status,
        UserStatus::Unverified
    );
    app.settled().await;
    assert!(
        app.outbox().iter().all(|m| m.subject != FROZEN_SUBJECT),
        "no freeze mail"
    );
}

/// Changes the account's row behind the application's back, to reach a state without
/// what normally comes with it (`set` is SQL such as `reset_required = TRUE`).
async fn alter_account(app: &TestApp, email: &str, set: &str) {
    let conn = sea_orm::Database::connect(app.state.config.database_url())
        .await
        .unwrap();
    let sql = format!("UPDATE users SET {set} WHERE email = '{email}'");
    sea_orm::ConnectionTrait::execute_unprepared(&conn, &sql)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn tokens_of_an_account_that_is_not_active_stop_even_while_their_grant_lives() {
    // A freeze (or an undone email change) revokes every grant; should one survive (a
    // write racing the change), the token endpoints still check the account itself.
    for state in ["status = 'frozen'", "reset_required = TRUE"] {
        let receiver = Receiver::start().await;
        let s = partner(&receiver, "").await;
        let tokens = tokens(&s).await;
        let at = tokens.access_token().secret().clone();
        assert!(active(&s, &at).await);
        alter_account(&s.app, EMAIL, state).await;

        assert!(!active(&s, &at).await, "{state}: introspection: inactive");
        crate::oidc::assert_tokens_dead(&s, &tokens).await;
    }
}

#[tokio::test]
async fn an_account_that_must_reset_its_password_is_sent_to_the_reset_only_after_the_right_password()
 {
    let app = TestApp::spawn_with(|c| c.account.new_device_mail = false).await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    // The state an undone email change leaves (the email change's own tests reach it
    // through the mails; here only the sign-in's answer matters).
    alter_account(&app, EMAIL, "reset_required = TRUE").await;
    assert!(app.user(EMAIL).await.unwrap().reset_required);

    let right = sign_in_answer(&app, EMAIL, PASSWORD).await;
    assert_eq!(right.status, 403, "{}", right.body);
    assert!(
        right
            .body
            .contains("持ち主の操作で元のアドレスに戻されました"),
        "{}",
        right.body
    );
    assert!(
        right.body.contains(r#"href="/password/forgot?tx="#)
            && right.body.contains(r#"id="reset-link""#),
        "{}",
        right.body
    );
    assert!(
        right
            .set_cookies
            .iter()
            .all(|c| !c.starts_with("tobira_session="))
    );
    let wrong = sign_in_answer(&app, EMAIL, WRONG).await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(
        wrong
            .body
            .contains("メールアドレスまたはパスワードが正しくありません。")
    );
    assert!(
        !wrong.body.contains("元のアドレスに戻され") && !wrong.body.contains(r#"id="reset-link""#)
    );
    assert!(!app.password_works(EMAIL, PASSWORD).await);
    let results: Vec<LoginResult> = history(&app, &user, 2)
        .await
        .into_iter()
        .map(|e| e.result)
        .collect();
    assert!(results.contains(&LoginResult::ResetRequired), "{results:?}");

    // The owner resets from their address: then the new password signs in.
    let browser = app.browser();
    assert_eq!(crate::recovery::forgot(&browser, EMAIL).await.status, 200);
    let mail = app.wait_for_mails(1).await.pop().unwrap();
    let link = crate::recovery::reset_link(&app, &mail);
    let done = crate::recovery::reset_with(
        &browser,
        &link,
        crate::recovery::NEW_PASSWORD,
        crate::recovery::NEW_PASSWORD,
    )
    .await;
    assert!(done.status < 400, "{}", done.body);
    assert!(!app.user(EMAIL).await.unwrap().reset_required);
    assert!(
        app.password_works(EMAIL, crate::recovery::NEW_PASSWORD)
            .await
    );
}

#[tokio::test]
async fn a_session_that_outlived_its_accounts_freeze_or_undo_opens_nothing() {
    // A sign-in racing the freeze (or the owner's undo) can leave a session row behind
    // the transaction that ended the others: every use checks the account itself.
    let app = TestApp::spawn_with(|c| c.account.new_device_mail = false).await;
    app.add_user(EMAIL, PASSWORD).await;
    for state in ["reset_required = TRUE", "status = 'frozen'"] {
        alter_account(&app, EMAIL, "reset_required = FALSE, status = 'active'").await;
        let browser = crate::sessions::signed_in(&app, EMAIL, "tests").await;
        assert_eq!(browser.get("/account").await.status, 200);
        alter_account(&app, EMAIL, state).await;
        let page = browser.get("/account").await;
        assert_eq!(page.status, 303, "{state}: {}", page.body);
        assert!(
            page.location
                .as_deref()
                .is_some_and(|l| l.starts_with("/login?tx=")),
            "{state}: {:?}",
            page.location
        );
    }
}
