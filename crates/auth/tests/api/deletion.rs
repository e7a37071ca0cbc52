//! Deletion (退会) as a member meets it: the page after a recent sign-in, the typed
//! confirmation, everything ending at once (sign-in, sessions, tokens, clients told), the
//! mail; the address held back from signing up until the cooldown ends; the personal data
//! kept for the retention period and then purged, `sub` never given out again. And as it
//! goes wrong: a stale session, a wrong confirmation, a forged or replayed form, a double
//! submission.

use openidconnect::OAuth2TokenResponse;
use time::{Duration, OffsetDateTime};
use tobira_auth::account::delete::delete_account;
use tobira_auth::domain::{Email, User, UserStatus};
use tobira_auth::keys::Alg;
use tobira_auth::web::i18n::Lang;

use crate::backchannel::{Receiver, checked};
use crate::console::{sent_to_sign_in, signs_in_again, to_sign_in};
use crate::helpers::{Browser, ClientOpts, Page, TestApp};
use crate::oidc::{EMAIL, PASSWORD, authorize, exchange, setup_with, sign_in_for_code};
use crate::sessions::{member, minute, second_member, session_of, signed_in};
use crate::signup::{sign_up, verify_link};

const OTHER_EMAIL: &str = "taro@example.jp";
const NEW_PASSWORD: &str = "maple-harbor-violin-63";
const WRONG: &str = "not-the-password-1";
const CROSS_SITE: &[(&str, &str)] = &[
    ("origin", "https://evil.example"),
    ("sec-fetch-site", "cross-site"),
];

/// An app whose only mails are the ones these tests cause (no new-device mails).
async fn app_with(configure: impl FnOnce(&mut tobira_auth::Config)) -> TestApp {
    TestApp::spawn_with(|c| {
        c.account.new_device_mail = false;
        configure(c);
    })
    .await
}

/// The deletion page, which the browser may open (signed in recently).
async fn page(browser: &Browser) -> Page {
    let page = browser.get("/account/delete").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page
}

/// Submits the deletion form of `page` with `confirm` typed in.
async fn submit(browser: &Browser, page: &Page, confirm: &str) -> Page {
    let csrf = page.field("csrf").expect("a CSRF field");
    browser
        .post_form("/account/delete", &[("csrf", &csrf), ("confirm", confirm)])
        .await
}

/// Opens the page and deletes the account, checking the answer.
async fn delete(browser: &Browser) -> Page {
    let done = submit(browser, &page(browser).await, EMAIL).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains(r#"id="account-deleted""#),
        "{}",
        done.body
    );
    done
}

/// Until when `email` is held back from signing up, as of `at`.
async fn block(app: &TestApp, email: &str, at: OffsetDateTime) -> Option<OffsetDateTime> {
    let digest = app
        .state
        .identifiers
        .email_digest(&Email::parse(email).unwrap());
    app.state
        .db
        .accounts()
        .reregistration_block(&digest, at)
        .await
        .unwrap()
}

/// `tobira users delete`'s way: the service itself, as of now.
async fn delete_directly(app: &TestApp, user: &User) -> bool {
    let s = &app.state;
    let ctx = tobira_auth::admin::audit::Context::cli();
    let deleted = delete_account(
        &s.db,
        &s.master,
        &s.identifiers,
        &s.config,
        &ctx,
        s.clock.now(),
        user,
    );
    deleted.await.unwrap()
}

/// Once every queued mail is sent, checks that there is just the one.
async fn only_one_mail(app: &TestApp) {
    let mails = app.settled().await;
    assert_eq!(mails.len(), 1, "{mails:?}");
}

/// The sign-in page's error line.
fn form_error(page: &Page) -> &str {
    let start = page
        .body
        .find(r#"id="form-error""#)
        .unwrap_or_else(|| panic!("an error: {}", page.body));
    let end = start + page.body[start..].find("</p>").unwrap();
    &page.body[start..end]
}

async fn history_len(app: &TestApp, user: &User) -> usize {
    let repo = app.state.db.login_events();
    repo.page(user.id, None, 50).await.unwrap().len()
}

async fn devices(app: &TestApp, user: &User) -> Vec<tobira_auth::store::KnownDevice> {
    let repo = app.state.db.known_devices();
    repo.list(user.id).await.unwrap()
}

/// Waits for the sign-in's history line, which is written after the answer.
async fn wait_for_history(app: &TestApp, user: &User) {
    for _ in 0..100 {
        if history_len(app, user).await > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the sign-in was not recorded");
}

#[tokio::test]
async fn deleting_refuses_sign_in_ends_sessions_and_tokens_tells_clients_and_mails_the_member() {
    let receiver = Receiver::start().await;
    let s = setup_with(
        ClientOpts {
            refresh: true,
            backchannel_logout_uri: Some(receiver.uri()),
            ..Default::default()
        },
        |c| c.account.new_device_mail = false,
    )
    .await;
    let app = &s.app;
    let user = app.user(EMAIL).await.unwrap();
    // Signed in to a client, with an access and a refresh token, in this browser…
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let at = tokens.access_token().secret().clone();
    let (_, info) =
        crate::protocol::post_token_endpoint(&s, "/introspect", &[("token", &at)]).await;
    assert_eq!(info["active"], true);
    // …and to the console in another.
    let phone = signed_in(app, EMAIL, "phone").await;
    let deleted_at = app.clock().now();

    let done = delete(&s.browser).await;
    assert!(done.body.contains("退会手続きが完了し"), "{}", done.body);
    assert!(
        done.set_cookies
            .iter()
            .any(|c| c.starts_with("tobira_session=;") && c.contains("Max-Age=0")),
        "the session cookie is cleared: {:?}",
        done.set_cookies
    );

    // Every browser is signed out: the console sends both to sign in.
    for browser in [&s.browser, &phone] {
        let res = browser.get("/account").await;
        assert_eq!(res.status, 303, "{}", res.body);
    }
    // Sign-in is refused with the very answer a wrong password gets.
    assert!(!app.password_works(EMAIL, PASSWORD).await);
    let fresh = app.browser();
    let login = sent_to_sign_in(&fresh, "/account").await;
    let right = fresh.post_login(&login, EMAIL, PASSWORD).await;
    let wrong = fresh.post_login(&login, EMAIL, WRONG).await;
    assert_eq!(right.status, wrong.status, "{}", right.body);
    assert_eq!(form_error(&right), form_error(&wrong));
    // The tokens are dead.
    crate::oidc::assert_tokens_dead(&s, &tokens).await;
    let (_, info) =
        crate::protocol::post_token_endpoint(&s, "/introspect", &[("token", &at)]).await;
    assert_eq!(info["active"], false, "{info}");
    // The client is told by back-channel logout, for the session that held its grant.
    let got = receiver.wait_for(1).await;
    let claims = checked(app, &got[0], &s.client_id, Alg::RS256);
    assert_eq!(claims["sub"], user.sub.as_str());
    let id = crate::oidc::verify_id_token(&s, &tokens, &pending.nonce);
    let sid = id.additional_claims().sid.clone().expect("a sid");
    assert_eq!(claims["sid"], sid.as_str());

    // The account is deleted, not yet purged; its address no longer counts as taken.
    let row = app.reload(&user).await;
    assert_eq!(row.status, UserStatus::Deleted);
    assert_eq!(row.deleted_at, Some(deleted_at));
    assert_eq!(row.email.normalized(), EMAIL);
    assert!(app.user(EMAIL).await.is_none());
    let until = block(app, EMAIL, deleted_at).await.expect("a block");
    assert!(until >= deleted_at + Duration::days(30));
    assert!(until < deleted_at + Duration::days(30) + Duration::minutes(1));

    // The mail confirms it, says how long the data stays and when the address is free.
    let mails = app.wait_for_mails(1).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.to, EMAIL);
    assert_eq!(mail.subject, "【Tobira】退会手続きが完了しました");
    assert!(mail.text.starts_with("山田 花子 様"), "{}", mail.text);
    assert!(mail.text.contains("90 日間"), "{}", mail.text);
    let erased = minute(app, deleted_at + Duration::days(90));
    assert!(
        mail.text
            .contains(&format!("{erased}（日本時間） 以降）消去"))
    );
    let again = format!("{}（日本時間） 以降です", minute(app, until));
    assert!(mail.text.contains(&again), "{}", mail.text);
    assert!(mail.html.contains(&again));
    assert!(mail.text.contains("元に戻すことはできません"));
}

#[tokio::test]
async fn the_page_explains_what_happens_and_a_stale_sign_in_must_be_renewed_first() {
    let app = app_with(|_| {}).await;
    let (user, browser) = member(&app).await;
    let fresh = page(&browser).await;
    for words in [
        "ログインできなくなります",
        "すべての端末からログアウトします",
        "連携しているアプリ",
        "退会から90日間保管したのち消去します",
        "退会から30日後です",
        "元に戻せません",
        r#"<form id="delete-account" method="post" action="/account/delete""#,
        r#"name="confirm""#,
        EMAIL,
    ] {
        assert!(fresh.body.contains(words), "{words}: {}", fresh.body);
    }

    // Eleven minutes later the sign-in is too old: neither the page nor its form works.
    app.clock().advance(Duration::minutes(11));
    let stale_get = browser.get("/account/delete").await;
    let stale_post = submit(&browser, &fresh, EMAIL).await;
    for stale in [&stale_get, &stale_post] {
        to_sign_in(stale);
    }
    assert_eq!(app.reload(&user).await.status, UserStatus::Active);
    assert!(app.outbox().is_empty());

    // The sign-in page says why, with the address filled in, and leads back to the page.
    let back = signs_in_again(&browser, &stale_post).await;
    assert_eq!(back.as_deref(), Some("/account/delete"));
    delete(&browser).await;
}

#[tokio::test]
async fn the_page_and_the_mail_speak_the_members_language_and_state_the_configured_periods() {
    let app = app_with(|c| {
        c.account.retention_days = 14;
        c.account.reregister_cooldown_days = 0;
    })
    .await;
    second_member(&app).await;
    let browser = signed_in(&app, OTHER_EMAIL, "tests").await;
    let en = page(&browser).await;
    assert!(
        en.body.contains("kept for 14 days after the deletion"),
        "{}",
        en.body
    );
    assert!(en.body.contains("can be used to sign up again at once"));
    assert!(en.body.contains("Delete my account"));
    let csrf = en.field("csrf").unwrap();
    let done = browser
        .post_form(
            "/account/delete",
            &[("csrf", &csrf), ("confirm", OTHER_EMAIL)],
        )
        .await;
    assert!(
        done.body.contains("Your account was deleted"),
        "{}",
        done.body
    );
    // Without a cooldown the address is free at once, and the mail says nothing of it.
    assert!(block(&app, OTHER_EMAIL, app.clock().now()).await.is_none());
    let mail = &app.wait_for_mails(1).await[0];
    assert_eq!(mail.subject, "[Tobira] Your account was deleted");
    assert!(mail.text.starts_with("Hello 鈴木 太郎,"), "{}", mail.text);
    assert!(mail.text.contains("kept for 14 days"), "{}", mail.text);
    assert!(mail.text.contains(" (JST))"), "{}", mail.text);
    assert!(!mail.text.contains("sign up again"), "{}", mail.text);
}

#[tokio::test]
async fn a_wrong_or_empty_confirmation_deletes_nothing_and_the_typed_address_is_compared_normalised()
 {
    let app = app_with(|_| {}).await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    app.add_user(OTHER_EMAIL, PASSWORD).await;
    let browser = signed_in(&app, EMAIL, "tests").await;
    let form = page(&browser).await;
    let long = "a".repeat(5000);
    for typed in [
        "",
        "   ",
        OTHER_EMAIL,
        "hanako@example.com",
        "hanako",
        "hanako@example.jp.",
        "<script>alert(1)</script>",
        long.as_str(),
    ] {
        let refused = submit(&browser, &form, typed).await;
        assert_eq!(refused.status, 400, "{typed:?}: {}", refused.body);
        assert!(refused.body.contains(r#"id="form-error""#));
        assert!(refused.body.contains("一致しません"), "{}", refused.body);
        assert!(!refused.body.contains("<script>alert(1)"));
        assert!(
            refused.body.contains(r#"id="delete-account""#),
            "the form again"
        );
    }
    assert_eq!(app.reload(&user).await.status, UserStatus::Active);
    assert_eq!(browser.get("/account").await.status, 200, "still signed in");
    assert!(app.outbox().is_empty());

    // Upper case, full width and spaces around it: the same address.
    let done = submit(&browser, &form, "  ＨＡＮＡＫＯ@Example.JP ").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains(r#"id="account-deleted""#));
    assert_eq!(app.reload(&user).await.status, UserStatus::Deleted);
}

#[tokio::test]
async fn a_form_without_its_token_or_from_another_site_deletes_nothing() {
    let app = app_with(|_| {}).await;
    let (user, browser) = member(&app).await;
    let form = page(&browser).await;
    let csrf = form.field("csrf").unwrap();
    let forged = "A".repeat(43);
    let missing = browser
        .post_form("/account/delete", &[("confirm", EMAIL)])
        .await;
    let wrong = browser
        .post_form("/account/delete", &[("csrf", &forged), ("confirm", EMAIL)])
        .await;
    let cross = browser
        .post_form_with(
            "/account/delete",
            &[("csrf", &csrf), ("confirm", EMAIL)],
            CROSS_SITE,
        )
        .await;
    for refused in [&missing, &wrong, &cross] {
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert!(!refused.body.contains("account-deleted"));
    }
    assert_eq!(app.reload(&user).await.status, UserStatus::Active);
    assert_eq!(browser.get("/account").await.status, 200);
    assert!(block(&app, EMAIL, app.clock().now()).await.is_none());
    assert!(app.outbox().is_empty());
}

#[tokio::test]
async fn a_double_submitted_deletion_deletes_once_and_mails_once() {
    let app = app_with(|_| {}).await;
    let (user, browser) = member(&app).await;
    let form = page(&browser).await;
    let csrf = form.field("csrf").unwrap();
    let (old_session, csrf_cookie) = (
        browser.cookie("tobira_session").unwrap(),
        browser.cookie("tobira_csrf").unwrap(),
    );
    submit(&browser, &form, EMAIL).await;
    let first = app.reload(&user).await;
    let until = block(&app, EMAIL, app.clock().now()).await.unwrap();
    app.wait_for_mails(1).await;

    app.clock().advance(Duration::seconds(5));
    // The same form again from the same browser (its session cookie is gone)…
    let again = submit(&browser, &form, EMAIL).await;
    // …and replayed with the old session cookie: that session has ended.
    let replayed = app
        .http
        .post(app.url.join("/account/delete").unwrap())
        .header(
            "cookie",
            format!("tobira_session={old_session}; tobira_csrf={csrf_cookie}"),
        )
        .form(&[("csrf", csrf.as_str()), ("confirm", EMAIL)])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status, 303, "{}", again.body);
    assert_eq!(replayed.status().as_u16(), 303);
    for location in [
        again.location.as_deref(),
        replayed
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok()),
    ] {
        assert!(location.unwrap().starts_with("/login?tx="), "{location:?}");
    }
    // The service itself, asked again (the CLI, or a submission that raced the first past
    // the session check), changes nothing either.
    assert!(!delete_directly(&app, &first).await);
    let stale_copy = User {
        status: UserStatus::Active,
        ..first.clone()
    };
    let raced = delete_directly(&app, &stale_copy).await;
    assert!(!raced, "the store sees it deleted already");
    let now = app.reload(&user).await;
    assert_eq!(now.deleted_at, first.deleted_at, "deleted once");
    assert_eq!(block(&app, EMAIL, app.clock().now()).await, Some(until));
    only_one_mail(&app).await;
}

#[tokio::test]
async fn two_submissions_at_once_delete_once_and_the_second_gets_a_clear_answer() {
    let app = app_with(|_| {}).await;
    let (user, browser) = member(&app).await;
    let form = page(&browser).await;
    let (a, b) = tokio::join!(
        submit(&browser, &form, EMAIL),
        submit(&browser, &form, EMAIL)
    );
    let answers = [&a, &b];
    let done = answers
        .iter()
        .filter(|p| p.status == 200 && p.body.contains("退会手続きが完了し"))
        .count();
    assert_eq!(done, 1, "{} / {}", a.body, b.body);
    for p in answers {
        // The other one came too late for the session (sent to sign in) or found the
        // account deleted (said so); nothing failed.
        let late = p.status == 303 || p.body.contains("すでに退会手続きが済んでいます");
        let first = p.body.contains("退会手続きが完了し");
        assert!(late || first, "{} {}", p.status, p.body);
    }
    assert_eq!(app.reload(&user).await.status, UserStatus::Deleted);
    only_one_mail(&app).await;
}

#[tokio::test]
async fn signing_up_again_is_refused_with_its_date_until_the_cooldown_ends_then_gets_a_new_sub() {
    let app = app_with(|_| {}).await;
    let (old, browser) = member(&app).await;
    delete(&browser).await;
    let until = block(&app, EMAIL, app.clock().now()).await.unwrap();
    app.wait_for_mails(1).await;

    // A day before the cooldown ends: the page answers as for anyone, nothing is made.
    app.clock().advance(Duration::days(29));
    let newcomer = app.browser();
    let blocked = sign_up(&newcomer, "/signup", EMAIL, NEW_PASSWORD).await;
    let other = sign_up(&newcomer, "/signup", "jiro@example.jp", NEW_PASSWORD).await;
    assert_eq!(blocked.status, 200, "{}", blocked.body);
    assert!(blocked.body.contains("確認メールをお送りしました"));
    assert_eq!(blocked.body, other.body, "no telling the two apart");
    // The same address typed differently is the same address.
    sign_up(&newcomer, "/signup", " Hanako@EXAMPLE.jp", NEW_PASSWORD).await;
    let mails = app.wait_for_mails(4).await;
    let told: Vec<_> = mails
        .iter()
        .filter(|m| m.to.eq_ignore_ascii_case(EMAIL))
        .skip(1)
        .collect();
    assert_eq!(told.len(), 2, "{mails:?}");
    for mail in told {
        assert_eq!(mail.subject, "【Tobira】このアドレスでの新規登録について");
        let from = format!("{}（日本時間） 以降です", minute(&app, until));
        assert!(mail.text.contains(&from), "{}", mail.text);
        assert!(mail.html.contains(&from));
        assert!(!mail.text.contains("/verify-email"), "no link to verify");
    }
    assert!(app.user(EMAIL).await.is_none(), "no account was created");
    assert!(app.user("jiro@example.jp").await.is_some());

    // Once the cooldown is over, the address signs up as any other, as a new member.
    app.clock().advance(until - app.clock().now());
    let signed_up = sign_up(&newcomer, "/signup", EMAIL, NEW_PASSWORD).await;
    assert_eq!(signed_up.status, 200);
    let mails = app.wait_for_mails(5).await;
    let verify = mails.last().unwrap();
    assert_eq!(verify.to, EMAIL);
    let opened = newcomer.get(&verify_link(&app, verify)).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let new = app.user(EMAIL).await.expect("a new account");
    assert_eq!(new.status, UserStatus::Active);
    assert_ne!(new.id, old.id);
    assert_ne!(new.sub, old.sub, "sub is never reused");
    assert_eq!(app.reload(&old).await.status, UserStatus::Deleted);
}

#[tokio::test]
async fn a_deleted_account_is_kept_for_the_retention_period_then_purged_but_its_sub_stays_taken() {
    // History kept longer than deleted accounts: what goes, goes with the account.
    let app = app_with(|c| c.account.history_days = 365).await;
    let (user, browser) = member(&app).await;
    let session = session_of(&app, &browser).await.unwrap();
    wait_for_history(&app, &user).await;
    assert!(!devices(&app, &user).await.is_empty());
    delete(&browser).await;
    // A delivery given up for good keeps its error, which may name the address (a queue
    // no runner serves, so only the purge touches it).
    let jobs = app.state.db.jobs();
    let job = jobs
        .add(app.clock().now(), "given-up", String::new())
        .await
        .unwrap();
    jobs.give_up(job, app.clock().now(), "550 no mailbox hanako@example.jp")
        .await
        .unwrap();

    // A minute before the retention period ends: nothing is purged.
    app.clock()
        .advance(Duration::days(90) - Duration::minutes(1));
    tobira_auth::jobs::purge(&app.state).await.unwrap();
    let kept = app.reload(&user).await;
    assert!(!app.state.db.accounts().purged(user.id).await.unwrap());
    assert_eq!(kept.email.normalized(), EMAIL);
    assert_eq!(kept.display_name, "山田 花子");
    assert!(kept.password_hash.is_some());
    assert!(history_len(&app, &user).await > 0);
    assert!(!devices(&app, &user).await.is_empty());
    assert_eq!(jobs.stats("given-up").await.unwrap().failed, 1);
    assert!(
        app.state
            .db
            .sessions()
            .find(session.id)
            .await
            .unwrap()
            .is_some()
    );

    // Past it: everything personal is gone; the row (and its sub) stays.
    app.clock().advance(Duration::minutes(2));
    tobira_auth::jobs::purge(&app.state).await.unwrap();
    assert!(app.state.db.accounts().purged(user.id).await.unwrap());
    assert_eq!(jobs.stats("given-up").await.unwrap().failed, 0);
    let purged = app.reload(&user).await;
    assert_eq!(purged.status, UserStatus::Deleted);
    assert_eq!(purged.email.normalized(), "");
    assert_eq!(purged.email.display(), "");
    assert_eq!(purged.display_name, "");
    assert_eq!(purged.password_hash, None);
    assert_eq!(history_len(&app, &user).await, 0);
    assert!(devices(&app, &user).await.is_empty());
    assert!(
        app.state
            .db
            .sessions()
            .find(session.id)
            .await
            .unwrap()
            .is_none()
    );
    let by_sub = app.state.db.users().find_by_sub(&user.sub).await.unwrap();
    assert_eq!(by_sub.map(|u| u.id), Some(user.id), "the sub stays taken");
    // A second run finds nothing more to purge of it.
    let now = app.clock().now();
    let accounts = app.state.db.accounts();
    let again = accounts.purge(now, now, |user| {
        let target = tobira_auth::admin::audit::Target::User(user);
        let system = tobira_auth::admin::audit::Context::system();
        tobira_auth::admin::audit::event(now, &system, "user.purge", target, serde_json::json!({}))
    });
    assert_eq!(again.await.unwrap(), 0);
}

#[tokio::test]
async fn the_reregistration_block_outlives_a_shorter_retention_and_is_dropped_when_it_ends() {
    let app = app_with(|c| {
        c.account.retention_days = 1;
        c.account.reregister_cooldown_days = 30;
    })
    .await;
    let (user, browser) = member(&app).await;
    delete(&browser).await;
    let deleted_at = app.clock().now();
    let until = block(&app, EMAIL, deleted_at).await.unwrap();

    app.clock()
        .advance(Duration::days(1) + Duration::minutes(1));
    tobira_auth::jobs::purge(&app.state).await.unwrap();
    assert!(app.state.db.accounts().purged(user.id).await.unwrap());
    // The address is gone from the row, but its keyed hash still holds it back.
    assert_eq!(block(&app, EMAIL, app.clock().now()).await, Some(until));
    app.wait_for_mails(1).await;
    let newcomer = app.browser();
    sign_up(&newcomer, "/signup", EMAIL, NEW_PASSWORD).await;
    let mails = app.wait_for_mails(2).await;
    assert!(
        mails[1].text.contains(&minute(&app, until)),
        "{}",
        mails[1].text
    );
    assert!(app.user(EMAIL).await.is_none());

    // When the cooldown has run out, the purge drops the block itself (asked as of the
    // deletion, it would still be in force if its row were kept).
    app.clock().advance(until - app.clock().now());
    tobira_auth::jobs::purge(&app.state).await.unwrap();
    assert_eq!(block(&app, EMAIL, deleted_at).await, None);
}

#[tokio::test]
async fn deleting_one_account_leaves_another_members_sessions_and_address_alone() {
    let app = app_with(|_| {}).await;
    let hanako = app.add_user(EMAIL, PASSWORD).await;
    let taro = app.add_user(OTHER_EMAIL, PASSWORD).await;
    let taros = signed_in(&app, OTHER_EMAIL, "taro's phone").await;
    let browser = signed_in(&app, EMAIL, "tests").await;
    delete(&browser).await;
    assert_eq!(app.reload(&hanako).await.status, UserStatus::Deleted);
    assert_eq!(app.reload(&taro).await.status, UserStatus::Active);
    assert_eq!(taros.get("/account").await.status, 200);
    assert_eq!(page(&taros).await.status, 200);
    assert!(app.password_works(OTHER_EMAIL, PASSWORD).await);
    assert!(block(&app, OTHER_EMAIL, app.clock().now()).await.is_none());
    let mails = app.wait_for_mails(1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, EMAIL);
}

#[tokio::test]
async fn an_account_awaiting_verification_is_deleted_without_a_mail_or_a_block() {
    let app = app_with(|_| {}).await;
    let newcomer = app.browser();
    sign_up(&newcomer, "/signup", EMAIL, NEW_PASSWORD).await;
    app.wait_for_mails(1).await;
    let unverified = app.user(EMAIL).await.unwrap();
    assert_eq!(unverified.status, UserStatus::Unverified);
    assert!(delete_directly(&app, &unverified).await);
    assert_eq!(app.reload(&unverified).await.status, UserStatus::Deleted);
    // Its address was never proven to be the member's: its owner is not held back.
    assert!(block(&app, EMAIL, app.clock().now()).await.is_none());
    sign_up(&app.browser(), "/signup", EMAIL, NEW_PASSWORD).await;
    let mails = app.wait_for_mails(2).await;
    assert_eq!(mails.len(), 2, "no deletion mail: {mails:?}");
    assert!(mails[1].text.contains("/verify-email?token="));
    assert!(app.user(EMAIL).await.is_some());
}

#[tokio::test]
async fn deleting_an_unverified_account_leaves_an_earlier_block_of_its_address_in_force() {
    let app = app_with(|_| {}).await;
    let (_, browser) = member(&app).await;
    delete(&browser).await;
    let until = block(&app, EMAIL, app.clock().now()).await.unwrap();
    // An unverified sign-up of the same address, made behind the page's back (the
    // store does not check blocks), then deleted by support.
    let s = &app.state;
    let mail = tobira_auth::mail::templates::verify(Lang::Ja, EMAIL, "", "http://x")
        .seal(&s.master)
        .unwrap();
    let id =
        s.db.signups()
            .register(
                &s.clock,
                &mut rand::rng(),
                tobira_auth::store::NewUser {
                    email: Email::parse(EMAIL).unwrap(),
                    email_verified: false,
                    password_hash: None,
                    display_name: String::new(),
                    locale: "ja".to_owned(),
                },
                tobira_auth::store::NewVerification {
                    token_hash: "0".repeat(64),
                    binding_hash: String::new(),
                    park: String::new(),
                    expires_at: s.clock.now() + Duration::hours(1),
                },
                tobira_auth::store::QueuedMail { payload: mail },
                |user| {
                    let target = tobira_auth::admin::audit::Target::User(user);
                    tobira_auth::admin::audit::event(
                        s.clock.now(),
                        &tobira_auth::admin::audit::Context::system(),
                        "user.create",
                        target,
                        serde_json::json!({}),
                    )
                },
            )
            .await
            .unwrap();
    let unverified = s.db.users().find_by_id(id).await.unwrap().unwrap();
    assert_eq!(unverified.status, UserStatus::Unverified);
    assert!(delete_directly(&app, &unverified).await);
    assert_eq!(block(&app, EMAIL, app.clock().now()).await, Some(until));
}

#[tokio::test]
async fn each_purged_account_is_recorded_by_the_system_in_its_own_purge() {
    let app = app_with(|_| {}).await;
    let (hanako, browser) = member(&app).await;
    delete(&browser).await;
    let taro = second_member(&app).await;
    assert!(delete_directly(&app, &taro).await);
    let purges = || async {
        let filter = tobira_auth::store::AuditFilter {
            action: Some("user.purge".to_owned()),
            ..Default::default()
        };
        app.state.db.audit().list(&filter, 200).await.unwrap()
    };
    let retention = app.state.config.account.retention_days;

    // The purge job as a running server runs it, a minute before the retention period
    // ends: nothing is purged, nothing recorded.
    app.clock()
        .advance(Duration::days(retention.into()) - Duration::minutes(1));
    tobira_auth::jobs::purge(&app.state).await.unwrap();
    assert!(purges().await.is_empty());

    // Past it: one event per account, by Tobira itself, at the time of the purge.
    app.clock().advance(Duration::minutes(2));
    tobira_auth::jobs::purge(&app.state).await.unwrap();
    let recorded = purges().await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    for user in [&hanako, &taro] {
        let id = user.id.0.to_string();
        let event = recorded
            .iter()
            .find(|e| e.target == id)
            .unwrap_or_else(|| panic!("{id} in {recorded:?}"));
        assert!(app.state.db.accounts().purged(user.id).await.unwrap());
        assert_eq!(event.target_kind, "user");
        assert_eq!(
            (event.actor_kind.as_str(), event.actor.as_str()),
            ("system", "")
        );
        assert_eq!((event.ip.as_str(), event.request_id.as_str()), ("", ""));
        // As stored: PostgreSQL keeps microseconds.
        assert!((event.at - app.clock().now()).abs() < Duration::milliseconds(1));
        assert_eq!(
            event.detail,
            serde_json::json!({ "retention_days": retention })
        );
    }
    // Another run (another replica's, say) finds nothing more and records nothing more.
    tobira_auth::jobs::purge(&app.state).await.unwrap();
    assert_eq!(purges().await.len(), 2);
}
