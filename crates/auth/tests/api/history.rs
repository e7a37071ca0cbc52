//! The members' sign-in history: every attempt on an account is recorded (after the
//! answer), refused floods are recorded at most once a minute, unknown addresses leave
//! nothing, and old attempts are purged. The console's `/account/history` lists them a
//! page at a time, and 「心当たりがない」 signs out every device and mails a reset link.

use std::time::Duration as StdDuration;

use time::{Duration, OffsetDateTime};
use tobira_auth::domain::{Email, User};
use tobira_auth::store::{LoginEvent, LoginResult, NewGrant};
use uuid::Uuid;

use crate::helpers::{Browser, ClientOpts, OutboxMail, Page, TestApp};
use crate::oidc::{EMAIL, PASSWORD, Setup, authorize, setup};

const WRONG: &str = "not-the-password-1";
pub const PHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

/// The sign-in page of a fresh authorization request (prompt=login: a browser with a
/// session signs in again).
pub async fn login_page(s: &Setup, browser: &Browser) -> Page {
    let pending = authorize(&s.rp, &[("prompt", "login")]);
    browser.follow(browser.get(&pending.url).await).await
}

/// Posts the sign-in form with the phone's user agent.
pub async fn post(browser: &Browser, login: &Page, email: &str, password: &str) -> Page {
    let (csrf, tx) = (login.field("csrf").unwrap(), login.field("tx").unwrap());
    browser
        .post_form_with(
            "/login",
            &[
                ("csrf", &csrf),
                ("tx", &tx),
                ("email", email),
                ("password", password),
            ],
            &[("user-agent", PHONE)],
        )
        .await
}

async fn member(s: &Setup) -> User {
    s.app
        .state
        .db
        .users()
        .find_by_email(&Email::parse(EMAIL).unwrap())
        .await
        .unwrap()
        .unwrap()
}

/// The history once `n` attempts are in it (they are written after the answer).
pub async fn history(app: &TestApp, user: &User, n: usize) -> Vec<LoginEvent> {
    for _ in 0..100 {
        let events = app
            .state
            .db
            .login_events()
            .page(user.id, None, 100)
            .await
            .unwrap();
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    panic!("fewer than {n} attempts recorded");
}

#[tokio::test]
async fn every_attempt_on_an_account_is_recorded_newest_first() {
    let s = setup(ClientOpts::default()).await;
    let user = member(&s).await;
    let browser = s.app.browser();
    let login = login_page(&s, &browser).await;
    assert_eq!(post(&browser, &login, EMAIL, WRONG).await.status, 401);
    s.app.clock().advance(Duration::seconds(1));
    assert_eq!(post(&browser, &login, EMAIL, PASSWORD).await.status, 303);
    s.app.clock().advance(Duration::seconds(1));
    let login = login_page(&s, &browser).await;
    assert_eq!(post(&browser, &login, EMAIL, PASSWORD).await.status, 303);
    // Guesses at an unknown address leave no history anywhere.
    post(&browser, &login, "nobody@example.jp", WRONG).await;

    let events = history(&s.app, &user, 3).await;
    let results: Vec<_> = events.iter().map(|e| (e.result, e.new_device)).collect();
    assert_eq!(
        results,
        [
            (LoginResult::Success, false),
            (LoginResult::Success, true),
            (LoginResult::WrongPassword, true),
        ],
        "newest first; the device was new until its first success"
    );
    let device = tobira_auth::crypto::sha256_hex(&browser.cookie("tobira_device").unwrap());
    for e in &events {
        assert_eq!(e.ip, "127.0.0.1");
        assert_eq!(e.user_agent, PHONE);
        assert_eq!(e.device_hash, device, "only the cookie's hash");
        assert_eq!(e.method, "password");
    }
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(history(&s.app, &user, 3).await.len(), 3);
}

#[tokio::test]
async fn a_flood_of_refused_attempts_is_recorded_once_a_minute() {
    let s = setup(ClientOpts::default()).await;
    let user = member(&s).await;
    let attacker = s.app.browser();
    let login = login_page(&s, &attacker).await;
    for _ in 0..5 {
        post(&attacker, &login, EMAIL, WRONG).await;
    }
    for _ in 0..20 {
        assert_eq!(post(&attacker, &login, EMAIL, WRONG).await.status, 429);
    }
    let events = history(&s.app, &user, 6).await;
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    let events_after = history(&s.app, &user, 6).await;
    assert_eq!(events.len(), events_after.len());
    let throttled = events_after
        .iter()
        .filter(|e| e.result == LoginResult::Throttled)
        .count();
    assert_eq!(throttled, 1, "twenty refusals within a minute: one line");
    assert_eq!(
        events_after
            .iter()
            .filter(|e| e.result == LoginResult::WrongPassword)
            .count(),
        5
    );
    // A minute later, the next refusal is a line of its own.
    s.app.clock().advance(Duration::seconds(61));
    let login = login_page(&s, &attacker).await;
    post(&attacker, &login, EMAIL, WRONG).await;
    history(&s.app, &user, 7).await;
}

#[tokio::test]
async fn the_history_pages_backwards_and_is_purged_after_its_days() {
    let s = setup(ClientOpts::default()).await;
    let user = member(&s).await;
    let browser = s.app.browser();
    let login = login_page(&s, &browser).await;
    for _ in 0..4 {
        post(&browser, &login, EMAIL, WRONG).await;
        s.app.clock().advance(Duration::seconds(1));
    }
    let all = history(&s.app, &user, 4).await;
    let repo = s.app.state.db.login_events();
    let first = repo.page(user.id, None, 3).await.unwrap();
    assert_eq!(first, all[..3]);
    let last = first.last().unwrap();
    let second = repo
        .page(user.id, Some((last.at, last.id)), 3)
        .await
        .unwrap();
    assert_eq!(second, all[3..]);

    // 90 days later (the default), the purge forgets them.
    s.app
        .clock()
        .advance(Duration::days(90) - Duration::seconds(10));
    tobira_auth::jobs::purge(&s.app.state).await.unwrap();
    assert_eq!(repo.page(user.id, None, 10).await.unwrap().len(), 4);
    s.app.clock().advance(Duration::seconds(20));
    tobira_auth::jobs::purge(&s.app.state).await.unwrap();
    assert!(repo.page(user.id, None, 10).await.unwrap().is_empty());
}

const HISTORY: &str = "/account/history";
const NOT_ME: &str = "/account/history/not-me";
const OTHER_EMAIL: &str = "taro@example.jp";

/// A browser signed in to the console as `email`, through the sign-in page the history
/// sends it to, from a phone.
async fn console_browser(app: &TestApp, email: &str) -> Browser {
    let browser = app.browser();
    let first = browser.get(HISTORY).await;
    assert_eq!(first.status, 303, "{}", first.body);
    let login = browser.get(&first.location.unwrap()).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let back = post(&browser, &login, email, PASSWORD).await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert_eq!(back.location.as_deref(), Some(HISTORY));
    browser
}

/// The lines of a history page, top to bottom: (time, IP) of each.
fn attempts(page: &Page) -> Vec<(String, String)> {
    let between = |text: &str, start: &str, end: &str| {
        let from = text.find(start).expect(start) + start.len();
        let to = text[from..].find(end).expect(end);
        text[from..from + to].to_owned()
    };
    page.body
        .split(r#"data-testid="attempt""#)
        .skip(1)
        .map(|line| {
            (
                between(line, "<time>", "</time>"),
                between(line, r#"<span data-testid="ip">"#, "</span>"),
            )
        })
        .collect()
}

/// The "Older" link of a history page.
fn older(page: &Page) -> Option<String> {
    let marker = r#"<a href="/account/history?before="#;
    let from = page.body.find(marker)? + r#"<a href=""#.len();
    let to = page.body[from..].find('"')?;
    Some(page.body[from..from + to].to_owned())
}

/// An attempt written straight into the history.
fn attempt(user: &User, at: OffsetDateTime, ip: String) -> LoginEvent {
    LoginEvent {
        id: Uuid::new_v4(),
        user: user.id,
        at,
        ip,
        user_agent: PHONE.to_owned(),
        device_hash: "d".repeat(64),
        method: "password".to_owned(),
        result: LoginResult::WrongPassword,
        new_device: false,
    }
}

/// The password-reset mails to `email` in the outbox.
fn reset_mails(app: &TestApp, email: &str) -> Vec<OutboxMail> {
    app.outbox()
        .into_iter()
        .filter(|m| m.to == email && m.text.contains("/password/reset?token="))
        .collect()
}

#[tokio::test]
async fn the_history_page_lists_failed_and_good_sign_ins_with_the_device_in_words() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let browser = app.browser();
    let first = browser.get(HISTORY).await;
    let login = browser.get(&first.location.unwrap()).await;
    assert_eq!(post(&browser, &login, EMAIL, WRONG).await.status, 401);
    app.clock().advance(Duration::seconds(1));
    let back = post(&browser, &login, EMAIL, PASSWORD).await;
    assert_eq!(back.location.as_deref(), Some(HISTORY));
    history(&app, &user, 2).await;

    let page = browser.get(HISTORY).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("ログイン履歴"));
    let lines = attempts(&page);
    assert_eq!(lines.len(), 2, "{}", page.body);
    assert!(lines.iter().all(|(_, ip)| ip == "127.0.0.1"));
    // Newest first: the success, then the wrong password (the only line marked failed).
    let success = page.body.find("成功").expect("the success is listed");
    let failure = page
        .body
        .find("パスワード誤り")
        .expect("the failure is listed");
    assert!(success < failure, "{}", page.body);
    assert_eq!(
        page.body
            .matches(r#"<li class="failed" data-testid="attempt">"#)
            .count(),
        1
    );
    assert_eq!(
        page.body
            .matches("Safari（iPhone 17.1・スマートフォン）")
            .count(),
        2,
        "the device in words: {}",
        page.body
    );
    assert_eq!(
        page.body.matches("方法: パスワード").count(),
        2,
        "{}",
        page.body
    );
    // The device was new until its first success, that one included.
    assert_eq!(
        page.body
            .matches(r#"data-testid="new-device">新しい端末<"#)
            .count(),
        2,
        "{}",
        page.body
    );
    assert!(page.body.contains("記録は90日間保存されます。"));
    assert!(older(&page).is_none(), "one page only");
    assert!(page.body.contains(r#"<a href="/account">"#));
    assert!(page.body.contains(r#"action="/account/history/not-me""#));
    assert!(page.field("csrf").is_some());
    // The overview links here.
    let overview = browser.get("/account").await;
    assert!(
        overview.body.contains(r#"href="/account/history""#),
        "{}",
        overview.body
    );
}

#[tokio::test]
async fn the_history_pages_through_every_attempt_once_even_within_one_millisecond() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let browser = console_browser(&app, EMAIL).await;
    history(&app, &user, 1).await;
    // 44 more, three to a millisecond (250 µs apart, finer than the cursor) so that both
    // page ends fall inside such a millisecond: 45 attempts, 20 + 20 + 5 lines.
    let repo = app.state.db.login_events();
    for i in 0..44_i64 {
        if (i + 1) % 3 == 0 {
            app.clock().advance(Duration::minutes(1));
        }
        let at = app.clock().now() + Duration::microseconds(250 * ((i + 1) % 3));
        repo.record(&attempt(&user, at, format!("10.0.0.{i}")))
            .await
            .unwrap();
    }
    let expected: Vec<String> = repo
        .page(user.id, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.ip)
        .collect();
    assert_eq!(expected.len(), 45);

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut next = Some(HISTORY.to_owned());
    while let Some(url) = next {
        let page = browser.get(&url).await;
        assert_eq!(page.status, 200, "{url}: {}", page.body);
        assert_eq!(
            page.body.contains("最新の記録へ"),
            url != HISTORY,
            "a way back to the newest from older pages only"
        );
        let lines = attempts(&page);
        sizes.push(lines.len());
        seen.extend(lines.into_iter().map(|(_, ip)| ip));
        next = older(&page);
        assert!(sizes.len() <= 3, "pages without end");
    }
    assert_eq!(sizes, [20, 20, 5]);
    assert_eq!(seen, expected, "every attempt once, newest first");
}

#[tokio::test]
async fn a_malformed_or_foreign_cursor_never_fails_nor_shows_another_members_attempts() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let other = app.add_user(OTHER_EMAIL, PASSWORD).await;
    let browser = console_browser(&app, EMAIL).await;
    history(&app, &user, 1).await;
    let repo = app.state.db.login_events();
    app.clock().advance(Duration::minutes(1));
    let theirs = attempt(&other, app.clock().now(), "192.0.2.7".to_owned());
    repo.record(&theirs).await.unwrap();
    app.clock().advance(Duration::minutes(1));
    repo.record(&attempt(&user, app.clock().now(), "10.0.0.1".to_owned()))
        .await
        .unwrap();

    let id = Uuid::new_v4();
    for bad in [
        "abc".to_owned(),
        String::new(),
        format!("-1.{id}"),
        format!("99999999999999999999999999.{id}"),
        format!("{}.{id}", "9".repeat(200)),
        format!("1.{}", id.simple()),
        format!("1.{id}&before=2.{id}"),
        format!("1.{id}%00"),
        "1.%27%20OR%201%3D1--".to_owned(),
    ] {
        let page = browser.get(&format!("{HISTORY}?before={bad}")).await;
        assert_eq!(page.status, 400, "{bad}: {}", page.body);
        assert!(page.body.contains("リクエストが正しくありません。"));
    }

    // Well-formed cursors only narrow the member's own list.
    let their_ms = theirs.at.unix_timestamp_nanos() / 1_000_000 + 1;
    for cursor in [
        format!("{their_ms}.{}", theirs.id),
        format!("253402300799999.{id}"),
        format!("0.{id}"),
    ] {
        let page = browser.get(&format!("{HISTORY}?before={cursor}")).await;
        assert_eq!(page.status, 200, "{cursor}: {}", page.body);
        assert!(!page.body.contains("192.0.2.7"), "{cursor}: {}", page.body);
        let ips: Vec<_> = attempts(&page).into_iter().map(|(_, ip)| ip).collect();
        assert!(
            ips.iter().all(|ip| ip == "127.0.0.1" || ip == "10.0.0.1"),
            "{cursor}: {ips:?}"
        );
    }
    let far = browser
        .get(&format!("{HISTORY}?before=253402300799999.{id}"))
        .await;
    assert_eq!(attempts(&far).len(), 2, "everything before the end of time");
    let before_older = browser
        .get(&format!("{HISTORY}?before={their_ms}.{}", theirs.id))
        .await;
    assert_eq!(attempts(&before_older).len(), 1, "the console sign-in only");
    let epoch = browser.get(&format!("{HISTORY}?before=0.{id}")).await;
    assert!(attempts(&epoch).is_empty());
}

#[tokio::test]
async fn without_a_session_the_history_sends_the_browser_to_sign_in_and_back() {
    let app = TestApp::spawn().await;
    app.add_user(EMAIL, PASSWORD).await;
    let browser = app.browser();
    let path = format!("{HISTORY}?before=0.{}", Uuid::new_v4());
    let first = browser.get(&path).await;
    assert_eq!(first.status, 303);
    let location = first.location.unwrap();
    assert!(location.starts_with("/login?tx="), "{location}");
    assert!(!first.body.contains("ログイン履歴"));
    // The form's address, too, sends to sign in and, once signed in, to the page.
    let posted = app.browser().post_form(NOT_ME, &[("csrf", "x")]).await;
    assert_eq!(posted.status, 303);
    assert!(posted.location.unwrap().starts_with("/login?tx="));

    let login = browser.get(&location).await;
    let back = post(&browser, &login, EMAIL, PASSWORD).await;
    assert_eq!(back.location.as_deref(), Some(path.as_str()));
    assert_eq!(browser.get(&path).await.status, 200);
    let to_page = browser.get(NOT_ME).await;
    assert_eq!(to_page.status, 303);
    assert_eq!(to_page.location.as_deref(), Some(HISTORY));
}

#[tokio::test]
async fn not_me_signs_out_every_device_of_the_account_and_mails_a_reset_link() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    app.add_user(OTHER_EMAIL, PASSWORD).await;
    let mine = console_browser(&app, EMAIL).await;
    let elsewhere = console_browser(&app, EMAIL).await;
    let someone_else = console_browser(&app, OTHER_EMAIL).await;
    // A client signed in through the other browser: its grant hangs from that session;
    // an offline grant does not.
    let secret = elsewhere.cookie("tobira_session").unwrap();
    let session = app
        .state
        .db
        .sessions()
        .find_live(&secret, app.clock().now())
        .await
        .unwrap()
        .unwrap();
    let (client_id, _) = app.add_client(ClientOpts::default()).await;
    let grant = |offline: bool| NewGrant {
        user_id: user.id,
        client_id: client_id.clone(),
        session_id: Some(session.id),
        scope: "openid".to_owned(),
        offline,
        auth_time: session.auth_time,
        amr: vec!["pwd".to_owned()],
        acr: "0".to_owned(),
    };
    let grants = app.state.db.grants();
    let online = grants.create(app.clock(), grant(false)).await.unwrap();
    let offline = grants.create(app.clock(), grant(true)).await.unwrap();
    let live = || async {
        app.state
            .db
            .sessions()
            .count_live(user.id, app.clock().now(), app.state.sessions.idle)
            .await
            .unwrap()
    };
    assert_eq!(live().await, 2);

    let page = mine.get(HISTORY).await;
    let csrf = page.field("csrf").unwrap();
    // A forged post changes nothing: from another site, or without this browser's token.
    let forged = [
        mine.post_form_with(
            NOT_ME,
            &[("csrf", &csrf)],
            &[("origin", "https://evil.example")],
        )
        .await,
        mine.post_form_with(
            NOT_ME,
            &[("csrf", &csrf)],
            &[("sec-fetch-site", "cross-site")],
        )
        .await,
        mine.post_form(NOT_ME, &[]).await,
        mine.post_form(NOT_ME, &[("csrf", &"x".repeat(43))]).await,
    ];
    for refused in &forged {
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
    assert_eq!(live().await, 2);
    assert_eq!(mine.get("/account").await.status, 200);
    assert_eq!(elsewhere.get("/account").await.status, 200);
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert!(
        reset_mails(&app, EMAIL).is_empty(),
        "no mail from a forgery"
    );

    let done = mine.post_form(NOT_ME, &[("csrf", &csrf)]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("すべての端末からログアウトしました"),
        "{}",
        done.body
    );
    assert!(
        done.body
            .contains("パスワード再設定用のリンクを登録メールアドレスにお送りしました")
    );
    assert!(done.body.contains(r#"href="/password/forgot"#));
    assert!(
        done.set_cookies
            .iter()
            .any(|c| c.starts_with("tobira_session=") && c.contains("Max-Age=0")),
        "this browser's cookie goes: {:?}",
        done.set_cookies
    );
    assert!(mine.cookie("tobira_session").is_none());

    // Both browsers of the account are asked to sign in again; the other member is not.
    for browser in [&mine, &elsewhere] {
        let page = browser.get("/account").await;
        assert_eq!(page.status, 303);
        assert!(page.location.unwrap().starts_with("/login?tx="));
    }
    // The other browser's cookie is worthless even presented again.
    assert!(
        app.state
            .db
            .sessions()
            .find_live(&secret, app.clock().now())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(someone_else.get("/account").await.status, 200);
    assert_eq!(live().await, 0);
    let grants = app.state.db.grants();
    let online = grants.find(online.id).await.unwrap().unwrap();
    assert!(
        online.revoked_at.is_some(),
        "the session's grant ends with it"
    );
    let offline = grants.find(offline.id).await.unwrap().unwrap();
    assert!(offline.revoked_at.is_none(), "as when a session ends");

    // The reset link arrives and works.
    let mut mails = Vec::new();
    for _ in 0..100 {
        mails = reset_mails(&app, EMAIL);
        if !mails.is_empty() {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    assert_eq!(mails.len(), 1, "{:?}", app.outbox());
    let link = mails[0]
        .text
        .split_whitespace()
        .find(|w| w.contains("/password/reset?token="))
        .unwrap()
        .to_owned();
    let reset = mine.get(&link).await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert!(reset_mails(&app, OTHER_EMAIL).is_empty());
}
