//! The members' sign-in history: every attempt on an account is recorded (after the
//! answer), refused floods are recorded at most once a minute, unknown addresses leave
//! nothing, and old attempts are purged.

use std::time::Duration as StdDuration;

use time::Duration;
use tobira_auth::domain::{Email, User};
use tobira_auth::store::{LoginEvent, LoginResult};

use crate::helpers::{Browser, ClientOpts, Page};
use crate::oidc::{EMAIL, PASSWORD, Setup, authorize, setup};

const WRONG: &str = "not-the-password-1";
const PHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

async fn login_page(s: &Setup, browser: &Browser) -> Page {
    let pending = authorize(&s.rp, &[("prompt", "login")]);
    browser.follow(browser.get(&pending.url).await).await
}

async fn post(browser: &Browser, login: &Page, email: &str, password: &str) -> Page {
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
async fn history(s: &Setup, user: &User, n: usize) -> Vec<LoginEvent> {
    for _ in 0..100 {
        let events = s
            .app
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

    let events = history(&s, &user, 3).await;
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
    assert_eq!(history(&s, &user, 3).await.len(), 3);
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
    let events = history(&s, &user, 6).await;
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    let events_after = history(&s, &user, 6).await;
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
    history(&s, &user, 7).await;
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
    let all = history(&s, &user, 4).await;
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
