//! Brute-force defence, the way an attacker meets it (guesses against one account,
//! credential stuffing from one address, guesses sent all at once, a second replica)
//! and the way the owner meets it (a known device that keeps working, the lock mail and
//! its unlock link, a reset, support's unlock). Runs on SQLite + memory and on
//! PostgreSQL + Redis; time moves by the app's clock.

use std::time::Duration as StdDuration;

use time::Duration;
use tobira_auth::authn::password::Queue;

use crate::helpers::{Browser, ClientOpts, Page, TestApp};
use crate::oidc::{EMAIL, PASSWORD, Setup, authorize, setup, setup_with};

const WRONG: &str = "not-the-password-1";
const LOCKED: &str =
    "ログインの失敗が続いたため、このアカウントへのログインを一時的に制限しています。";
const LOCK_SUBJECT: &str = "【Tobira】ログインを一時的に制限しました";

/// A sign-in page of a fresh authorization request in `browser`.
async fn login_page(s: &Setup, browser: &Browser) -> Page {
    let pending = authorize(&s.rp, &[("prompt", "login")]);
    let page = browser.follow(browser.get(&pending.url).await).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page
}

/// Posts `password` for `email` `times` times from the same page; the last answer.
async fn guess(browser: &Browser, login: &Page, email: &str, password: &str, times: usize) -> Page {
    let mut last = None;
    for _ in 0..times {
        last = Some(browser.post_login(login, email, password).await);
    }
    last.expect("at least one guess")
}

/// The fields of the sign-in form of `login`.
fn login_form(login: &Page, email: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("csrf", login.field("csrf").unwrap()),
        ("tx", login.field("tx").unwrap()),
        ("email", email.to_owned()),
        ("password", password.to_owned()),
    ]
}

/// The browser's binding and CSRF cookies (what lets another client continue its
/// sign-in), with the given device cookie instead of its own.
fn jar(browser: &Browser, device: Option<&str>) -> String {
    let mut pairs: Vec<String> = ["tobira_bind", "tobira_csrf"]
        .iter()
        .filter_map(|n| browser.cookie(n).map(|v| format!("{n}={v}")))
        .collect();
    if let Some(device) = device {
        pairs.push(format!("tobira_device={device}"));
    }
    pairs.join("; ")
}

async fn raw_post(base: &url::Url, cookies: &str, form: &[(&str, String)]) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(base.join("/login").unwrap())
        .header("cookie", cookies)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The `tobira` command on the app's database and data directory (as support runs it
/// beside the server).
fn cli(app: &TestApp) -> impl Fn(&[&str]) -> std::process::Output + Clone + Send + 'static {
    let data_dir = app.state.config.data_dir.clone();
    let db_url = app.state.config.database.url.expose().to_owned();
    move |args| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tobira"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TOBIRA_DATA_DIR", &data_dir)
            .env("TOBIRA_DATABASE__URL", &db_url)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }
}

fn retry_after(page: &Page) -> i64 {
    page.headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The page's error text, without the per-request fields (CSRF token, tx, email).
fn error_text(page: &Page) -> String {
    let start = page.body.find(r#"id="form-error""#).expect("an error");
    let text = &page.body[start..];
    let end = text.find("</p>").unwrap();
    // The reset link carries the page's own parked request.
    let end = text[..end].find("<a ").unwrap_or(end);
    text[..end].to_owned()
}

fn lock_mails(app: &TestApp) -> Vec<crate::helpers::OutboxMail> {
    app.outbox()
        .into_iter()
        .filter(|m| m.subject == LOCK_SUBJECT)
        .collect()
}

async fn wait_for_lock_mails(app: &TestApp, n: usize) -> Vec<crate::helpers::OutboxMail> {
    for _ in 0..100 {
        let mails = lock_mails(app);
        if mails.len() >= n {
            return mails;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    panic!("expected {n} lock mails, found {:?}", app.outbox());
}

/// Opens the unlock link of a mail and presses the button.
async fn unlock_with(app: &TestApp, browser: &Browser, mail: &crate::helpers::OutboxMail) -> Page {
    let link = mail
        .link(&format!("{}/unlock?token=", app.issuer()))
        .replace(&app.issuer(), app.url.as_str().trim_end_matches('/'));
    let form = browser.get(&link).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("ロックを解除する"), "{}", form.body);
    let (csrf, token) = (form.field("csrf").unwrap(), form.field("token").unwrap());
    browser
        .post_form("/unlock", &[("csrf", &csrf), ("token", &token)])
        .await
}

#[tokio::test]
async fn five_wrong_passwords_lock_the_account_for_a_minute_and_each_further_five_double_it() {
    let s = setup(ClientOpts::default()).await;
    let attacker = s.app.browser();
    let login = login_page(&s, &attacker).await;

    for n in 1..=4 {
        let page = attacker.post_login(&login, EMAIL, WRONG).await;
        assert_eq!(page.status, 401, "guess {n}: {}", page.body);
        assert!(!page.body.contains(LOCKED));
    }
    let fifth = attacker.post_login(&login, EMAIL, WRONG).await;
    assert_eq!(fifth.status, 401);
    assert!(fifth.body.contains(LOCKED), "the locking guess says so");
    assert!(fifth.body.contains("以降"), "{}", error_text(&fifth));

    // Locked: even the right password is not checked.
    let refused = attacker.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(refused.status, 429);
    assert!(refused.body.contains(LOCKED));
    // The reset is offered in the message itself, for this sign-in.
    let tx = login.field("tx").unwrap();
    for page in [&fifth, &refused] {
        let start = page.body.find(r#"id="form-error""#).expect("an error");
        let message = &page.body[start..start + page.body[start..].find("</p>").unwrap()];
        assert!(
            message.contains(&format!(
                r#"<a href="/password/forgot?tx={tx}&amp;lang=ja">"#
            )),
            "the reset is offered: {message}"
        );
    }
    assert!(
        (59..=61).contains(&retry_after(&refused)),
        "{}",
        retry_after(&refused)
    );
    let metrics = s.app.get("/metrics").await.text().await.unwrap();
    for name in [
        "tobira_sign_in_locks_total{",
        "tobira_sign_in_throttled_total{",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(name) && l.contains(r#"scope="account""#)),
            "{metrics}"
        );
    }

    // Each further five double the lock: 2, then 4 minutes.
    for expected in [120, 240] {
        s.app
            .clock()
            .advance(Duration::seconds(61) + Duration::seconds(expected / 2));
        let page = guess(&attacker, &login, EMAIL, WRONG, 5).await;
        assert_eq!(page.status, 401, "{}", page.body);
        let refused = attacker.post_login(&login, EMAIL, WRONG).await;
        assert_eq!(refused.status, 429);
        let wait = retry_after(&refused);
        assert!(
            (expected - 1..=expected + 1).contains(&wait),
            "{wait} ≠ {expected}"
        );
    }
}

#[tokio::test]
async fn failures_older_than_fifteen_minutes_drop_out_and_a_success_clears_the_count() {
    let s = setup(ClientOpts::default()).await;
    let browser = s.app.browser();
    let login = login_page(&s, &browser).await;

    assert_eq!(guess(&browser, &login, EMAIL, WRONG, 4).await.status, 401);
    s.app.clock().advance(Duration::minutes(15));
    assert_eq!(guess(&browser, &login, EMAIL, WRONG, 4).await.status, 401);
    // Eight failures, but never five within fifteen minutes of each other: no lock.
    let ok = browser.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(ok.status, 303, "{}", ok.body);

    // The success cleared the count: four more do not lock either.
    let other = s.app.browser();
    let login = login_page(&s, &other).await;
    let page = guess(&other, &login, EMAIL, WRONG, 4).await;
    assert!(!page.body.contains(LOCKED));
    assert_eq!(other.post_login(&login, EMAIL, PASSWORD).await.status, 303);
}

#[tokio::test]
async fn an_unknown_address_is_throttled_exactly_like_a_known_one_but_nobody_is_mailed() {
    let s = setup(ClientOpts::default()).await;
    let stranger = "nobody@example.jp";
    let (known, unknown) = (s.app.browser(), s.app.browser());
    let (login_k, login_u) = (login_page(&s, &known).await, login_page(&s, &unknown).await);
    for n in 1..=7 {
        let k = known.post_login(&login_k, EMAIL, WRONG).await;
        let u = unknown.post_login(&login_u, stranger, WRONG).await;
        assert_eq!(k.status, u.status, "guess {n}");
        assert_eq!(error_text(&k), error_text(&u), "guess {n}");
        assert_eq!(k.headers.get("retry-after"), u.headers.get("retry-after"));
    }
    // The owner of the real account was told once; nobody else.
    let mails = wait_for_lock_mails(&s.app, 1).await;
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(lock_mails(&s.app).len(), 1, "one mail per lock period");
    assert_eq!(mails[0].to, EMAIL);
    assert!(
        mails[0].text.contains("/unlock?token="),
        "{}",
        mails[0].text
    );
    assert!(
        mails[0].text.contains("/password/forgot"),
        "{}",
        mails[0].text
    );
    // Case and spaces do not make another account to guess against.
    let page = known
        .post_login(&login_k, " HANAKO@Example.JP ", PASSWORD)
        .await;
    assert_eq!(page.status, 429);
}

#[tokio::test]
async fn the_owners_known_device_signs_in_while_an_attacker_locks_the_account() {
    let s = setup(ClientOpts::default()).await;
    let owner = s.app.browser();
    let login = login_page(&s, &owner).await;
    assert_eq!(owner.post_login(&login, EMAIL, PASSWORD).await.status, 303);

    // Another device on the same address guesses until the account locks.
    let attacker = s.app.browser();
    let attack = login_page(&s, &attacker).await;
    guess(&attacker, &attack, EMAIL, WRONG, 10).await;
    assert_eq!(
        attacker.post_login(&attack, EMAIL, PASSWORD).await.status,
        429
    );

    // The owner's device is exempt: it signs in, even after a typo of its own.
    let login = login_page(&s, &owner).await;
    assert_eq!(owner.post_login(&login, EMAIL, WRONG).await.status, 401);
    let back = owner.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(back.status, 303, "{}", back.body);
    // And the lock still holds for the attacker.
    assert_eq!(
        attacker.post_login(&attack, EMAIL, PASSWORD).await.status,
        429
    );
}

#[tokio::test]
async fn a_known_device_has_its_own_count_and_its_lock_leaves_the_account_alone() {
    let s = setup(ClientOpts::default()).await;
    let owner = s.app.browser();
    let login = login_page(&s, &owner).await;
    assert_eq!(owner.post_login(&login, EMAIL, PASSWORD).await.status, 303);

    let login = login_page(&s, &owner).await;
    guess(&owner, &login, EMAIL, WRONG, 5).await;
    let refused = owner.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(refused.status, 429);
    assert!(
        refused
            .body
            .contains("この端末からのログインの失敗が続いたため")
    );
    assert!((59..=61).contains(&retry_after(&refused)));
    // The device's failures are its own: another device signs in.
    let laptop = s.app.browser();
    let other = login_page(&s, &laptop).await;
    assert_eq!(laptop.post_login(&other, EMAIL, PASSWORD).await.status, 303);
    // No lock mail: the account did not lock.
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert!(lock_mails(&s.app).is_empty());
    // The device's lock ends by itself.
    s.app.clock().advance(Duration::seconds(61));
    assert_eq!(owner.post_login(&login, EMAIL, PASSWORD).await.status, 303);
}

#[tokio::test]
async fn after_the_failure_cap_unknown_devices_wait_for_the_unlock_link() {
    let s = setup_with(ClientOpts::default(), |c| {
        c.throttle.hard_lock_failures = 10
    })
    .await;
    let attacker = s.app.browser();
    let login = login_page(&s, &attacker).await;
    guess(&attacker, &login, EMAIL, WRONG, 5).await;
    s.app.clock().advance(Duration::seconds(61));
    let capped = guess(&attacker, &login, EMAIL, WRONG, 5).await;
    assert!(
        capped.body.contains("ロック解除のリンク"),
        "{}",
        error_text(&capped)
    );

    // Hours later (long after the last timed lock would have ended), still locked,
    // with no time to wait for.
    s.app.clock().advance(Duration::hours(12));
    let login = login_page(&s, &attacker).await;
    let refused = attacker.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(refused.status, 429);
    assert!(!refused.body.contains("以降"));

    // The owner's mail (the last one: the capped lock) unlocks it.
    let mails = wait_for_lock_mails(&s.app, 2).await;
    let owner = s.app.browser();
    let done = unlock_with(&s.app, &owner, mails.last().unwrap()).await;
    assert_eq!(done.status, 200);
    assert!(done.body.contains("ロックを解除しました"), "{}", done.body);
    let login = login_page(&s, &owner).await;
    assert_eq!(owner.post_login(&login, EMAIL, PASSWORD).await.status, 303);
}

#[tokio::test]
async fn the_unlock_link_works_once_and_a_mail_scanner_opening_it_unlocks_nothing() {
    let s = setup(ClientOpts::default()).await;
    let attacker = s.app.browser();
    let login = login_page(&s, &attacker).await;
    guess(&attacker, &login, EMAIL, WRONG, 5).await;
    let mail = wait_for_lock_mails(&s.app, 1).await.remove(0);
    let link = mail
        .link(&format!("{}/unlock?token=", s.app.issuer()))
        .replace(&s.app.issuer(), s.app.url.as_str().trim_end_matches('/'));

    // A scanner follows the link: a GET changes nothing.
    assert_eq!(s.app.browser().get(&link).await.status, 200);
    assert_eq!(
        attacker.post_login(&login, EMAIL, PASSWORD).await.status,
        429
    );

    let owner = s.app.browser();
    assert_eq!(unlock_with(&s.app, &owner, &mail).await.status, 200);
    // Replayed: the link is spent.
    let again = owner.get(&link).await;
    assert_eq!(again.status, 400);
    let form = owner.get("/password/forgot").await;
    let csrf = form.field("csrf").unwrap();
    let token = link
        .split("token=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let replay = owner
        .post_form("/unlock", &[("csrf", &csrf), ("token", token)])
        .await;
    assert_eq!(replay.status, 400);
    // Forged and oversized tokens.
    for token in ["", "x", &"a".repeat(4000)] {
        let page = owner
            .post_form("/unlock", &[("csrf", &csrf), ("token", token)])
            .await;
        assert_eq!(page.status, 400, "{token:.10}");
    }
    // Cross-site posts are refused before anything is spent.
    let cross = owner
        .post_form_with(
            "/unlock",
            &[("csrf", &csrf), ("token", token)],
            &[
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(cross.status, 403);
    let login = login_page(&s, &owner).await;
    assert_eq!(owner.post_login(&login, EMAIL, PASSWORD).await.status, 303);
}

#[tokio::test]
async fn a_password_reset_clears_the_lock() {
    let s = setup(ClientOpts::default()).await;
    let attacker = s.app.browser();
    let login = login_page(&s, &attacker).await;
    guess(&attacker, &login, EMAIL, WRONG, 5).await;
    assert_eq!(
        attacker.post_login(&login, EMAIL, PASSWORD).await.status,
        429
    );

    let owner = s.app.browser();
    let form = owner.get("/password/forgot").await;
    let csrf = form.field("csrf").unwrap();
    owner
        .post_form("/password/forgot", &[("csrf", &csrf), ("email", EMAIL)])
        .await;
    let mails = s.app.wait_for_mails(2).await;
    let reset = mails
        .iter()
        .find(|m| m.subject.contains("再設定"))
        .expect("a reset mail");
    let link = reset
        .link(&format!("{}/password/reset?token=", s.app.issuer()))
        .replace(&s.app.issuer(), s.app.url.as_str().trim_end_matches('/'));
    let form = owner.get(&link).await;
    let (csrf, token) = (form.field("csrf").unwrap(), form.field("token").unwrap());
    let new = "amber-lantern-harbor-77";
    let done = owner
        .post_form(
            "/password/reset",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("password", new),
                ("confirm", new),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let login = login_page(&s, &owner).await;
    assert_eq!(owner.post_login(&login, EMAIL, new).await.status, 303);
}

#[tokio::test]
async fn thirty_accounts_from_one_address_are_refused_for_fifteen_minutes_but_not_a_members_typos()
{
    let s = setup(ClientOpts::default()).await;
    let member = s.app.browser();
    let login = login_page(&s, &member).await;
    // A member's typos, then the right password: the account leaves the count.
    guess(&member, &login, EMAIL, WRONG, 3).await;
    assert_eq!(member.post_login(&login, EMAIL, PASSWORD).await.status, 303);

    let stuffer = s.app.browser();
    let login = login_page(&s, &stuffer).await;
    for n in 0..29 {
        let page = stuffer
            .post_login(&login, &format!("victim{n}@example.jp"), WRONG)
            .await;
        assert_eq!(page.status, 401, "account {n}");
    }
    // The 30th account is still answered (it is what reaches the limit) …
    let last = stuffer
        .post_login(&login, "victim29@example.jp", WRONG)
        .await;
    assert_eq!(last.status, 401);
    // … and then the address is refused for every account without a known device.
    let refused = stuffer
        .post_login(&login, "victim30@example.jp", WRONG)
        .await;
    assert_eq!(refused.status, 429);
    assert!(
        refused.body.contains("ご利用のネットワーク"),
        "{}",
        error_text(&refused)
    );
    assert!((899..=901).contains(&retry_after(&refused)));
    let newcomer = s.app.browser();
    let page = login_page(&s, &newcomer).await;
    assert_eq!(
        newcomer.post_login(&page, EMAIL, PASSWORD).await.status,
        429
    );
    // The member's known device is exempt for its own account.
    let login = login_page(&s, &member).await;
    assert_eq!(member.post_login(&login, EMAIL, PASSWORD).await.status, 303);

    s.app
        .clock()
        .advance(Duration::minutes(15) + Duration::seconds(1));
    let page = login_page(&s, &newcomer).await;
    assert_eq!(
        newcomer.post_login(&page, EMAIL, PASSWORD).await.status,
        303
    );
}

#[tokio::test]
async fn addresses_behind_a_trusted_proxy_are_counted_per_ipv6_64() {
    let s = setup_with(ClientOpts::default(), |c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.throttle.ip_accounts = 3;
    })
    .await;
    let browser = s.app.browser();
    let login = login_page(&s, &browser).await;
    let post = |ip: &'static str, email: String| {
        let csrf = login.field("csrf").unwrap();
        let tx = login.field("tx").unwrap();
        let browser = &browser;
        async move {
            browser
                .post_form_with(
                    "/login",
                    &[
                        ("csrf", &csrf),
                        ("tx", &tx),
                        ("email", &email),
                        ("password", WRONG),
                    ],
                    &[("x-forwarded-for", ip)],
                )
                .await
        }
    };
    // Three hosts of one /64 are one address.
    for (n, ip) in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"]
        .into_iter()
        .enumerate()
    {
        assert_eq!(post(ip, format!("v{n}@example.jp")).await.status, 401);
    }
    assert_eq!(
        post("2001:db8:1:2::9", "v9@example.jp".into()).await.status,
        429
    );
    // The next /64 and an IPv4 address are not.
    assert_eq!(
        post("2001:db8:1:3::1", "v9@example.jp".into()).await.status,
        401
    );
    assert_eq!(post("192.0.2.7", "v9@example.jp".into()).await.status, 401);
}

#[tokio::test]
async fn guesses_sent_all_at_once_are_each_counted() {
    let s = setup(ClientOpts::default()).await;
    let attacker = s.app.browser();
    let login = login_page(&s, &attacker).await;
    let attacker = std::sync::Arc::new(attacker);
    let form = login_form(&login, EMAIL, WRONG);
    let mut guesses = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (attacker, form) = (attacker.clone(), form.clone());
        guesses.spawn(async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            attacker.post_form("/login", &form).await.status
        });
    }
    let statuses = guesses.join_all().await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (checked, refused),
        (5, 7),
        "only five passwords were checked"
    );
}

#[tokio::test]
async fn a_second_replica_on_the_same_redis_shares_the_counts() {
    let s = setup(ClientOpts::default()).await;
    if s.app.state.config.ephemeral.url.expose().is_empty() {
        eprintln!("skipping: replicas share counters only on Redis (TEST_REDIS_URL)");
        return;
    }
    let replica = s.app.replica().await;
    let attacker = s.app.browser();
    let login = login_page(&s, &attacker).await;
    // Three guesses here, two on the replica (parks and cookies are shared too).
    guess(&attacker, &login, EMAIL, WRONG, 3).await;
    let form = login_form(&login, EMAIL, WRONG);
    let mut last = 0;
    for _ in 0..2 {
        last = raw_post(&replica.url, &jar(&attacker, None), &form)
            .await
            .status()
            .as_u16();
    }
    assert_eq!(last, 401, "the fifth guess, made on the replica");
    // Locked on both.
    assert_eq!(
        attacker.post_login(&login, EMAIL, PASSWORD).await.status,
        429
    );
    let refused = raw_post(&replica.url, &jar(&attacker, None), &form).await;
    assert_eq!(refused.status(), 429);
}

#[tokio::test]
async fn support_unlocks_an_account_and_an_address_with_the_cli() {
    let s = setup_with(ClientOpts::default(), |c| {
        c.throttle.ip_accounts = 2;
        c.throttle.lock_minutes = 30;
    })
    .await;
    let attacker = s.app.browser();
    let login = login_page(&s, &attacker).await;
    guess(&attacker, &login, EMAIL, WRONG, 5).await;
    assert_eq!(
        attacker.post_login(&login, EMAIL, PASSWORD).await.status,
        429
    );

    // The CLI queues by the system clock; the app's manual clock started with the test
    // and stands still unless moved: move it past the CLI's "now" before each command.
    s.app.ahead_of_the_system_clock();
    let cli = cli(&s.app);
    let tobira = move |args: &[&str]| {
        let out = cli(args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = tokio::task::spawn_blocking({
        let tobira = tobira.clone();
        move || tobira(&["users", "unlock", "--email", "Hanako@Example.jp"])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(err.contains("unlocked"), "{err}");
    assert_eq!(
        attacker.post_login(&login, EMAIL, PASSWORD).await.status,
        303
    );

    // An address refused for stuffing, unlocked by support.
    let stuffer = s.app.browser();
    let login = login_page(&s, &stuffer).await;
    guess(&stuffer, &login, "a@example.jp", WRONG, 1).await;
    guess(&stuffer, &login, "b@example.jp", WRONG, 1).await;
    assert_eq!(
        stuffer
            .post_login(&login, "c@example.jp", WRONG)
            .await
            .status,
        429
    );
    s.app.ahead_of_the_system_clock();
    let (ok, err) =
        tokio::task::spawn_blocking(move || tobira(&["users", "unlock", "--ip", "127.0.0.1"]))
            .await
            .unwrap();
    assert!(ok, "{err}");
    assert_eq!(
        stuffer
            .post_login(&login, "c@example.jp", WRONG)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn the_cli_refuses_an_unknown_account_and_a_malformed_address() {
    let s = setup(ClientOpts::default()).await;
    let run = cli(&s.app);
    let out = run(&["users", "unlock", "--email", "nobody@example.jp"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account"));
    let out = run(&["users", "unlock", "--ip", "not-an-ip"]);
    assert!(!out.status.success());
    let out = run(&["users", "unlock"]);
    assert!(!out.status.success(), "one of --email and --ip is required");
}

#[tokio::test]
async fn hostile_device_cookies_and_odd_addresses_do_not_escape_the_count() {
    let s = setup(ClientOpts::default()).await;
    let attacker = s.app.browser();
    let login = login_page(&s, &attacker).await;
    let form = login_form(&login, EMAIL, WRONG);
    // A made-up device cookie on each guess: never a known device.
    let mut statuses = Vec::new();
    for n in 0..6 {
        let device = "A".repeat(40 + n);
        let page = raw_post(&s.app.url, &jar(&attacker, Some(&device)), &form).await;
        statuses.push(page.status().as_u16());
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // An address that is no address is still counted (and refused the same way).
    let odd = "x".repeat(300);
    let other = s.app.browser();
    let page = login_page(&s, &other).await;
    let last = guess(&other, &page, &odd, WRONG, 6).await;
    assert_eq!(last.status, 429);
}

#[tokio::test]
async fn a_device_becomes_known_to_an_account_by_signing_in_to_it_and_only_then() {
    let s = setup(ClientOpts::default()).await;
    let user = s.app.user(EMAIL).await.unwrap();
    let devices = || async { s.app.state.db.known_devices().list(user.id).await };
    let browser = s.app.browser();
    let login = login_page(&s, &browser).await;
    browser.post_login(&login, EMAIL, WRONG).await;
    assert!(
        devices().await.unwrap().is_empty(),
        "a failure makes nothing known"
    );

    let first = s.app.clock().now();
    assert_eq!(
        browser.post_login(&login, EMAIL, PASSWORD).await.status,
        303
    );
    s.app.clock().advance(Duration::hours(1));
    let login = login_page(&s, &browser).await;
    assert_eq!(
        browser.post_login(&login, EMAIL, PASSWORD).await.status,
        303
    );
    let known = devices().await.unwrap();
    assert_eq!(known.len(), 1, "one device, seen twice");
    let device = &known[0];
    let cookie = browser.cookie("tobira_device").unwrap();
    assert_eq!(device.device_hash, tobira_auth::crypto::sha256_hex(&cookie));
    assert_ne!(
        device.device_hash, cookie,
        "only a hash of the cookie is kept"
    );
    assert_eq!(
        device.first_sign_in_at.unix_timestamp(),
        first.unix_timestamp()
    );
    assert_eq!(
        device.last_sign_in_at.unix_timestamp(),
        (first + Duration::hours(1)).unix_timestamp()
    );
    assert_eq!(device.last_ip, "127.0.0.1");

    // Another browser is another device.
    let other = s.app.browser();
    let login = login_page(&s, &other).await;
    assert_eq!(other.post_login(&login, EMAIL, PASSWORD).await.status, 303);
    assert_eq!(devices().await.unwrap().len(), 2);
}

#[tokio::test]
async fn sign_ins_refused_because_the_server_is_busy_do_not_count_as_failures() {
    let s = setup_with(ClientOpts::default(), |c| {
        c.password.max_concurrent_hashes = 1;
        c.password.waiting_hashes_per_core = 1;
    })
    .await;
    let owner = s.app.browser();
    // Twice the bound (one waiting hash per core), queued as a known device's sign-in may
    // queue: a round that came too late signed in and made this browser a device known to
    // the account, which waits where others are refused; with the queue filled to the
    // bound only, every later round then signed in too, and the test ran out of rounds.
    let waiting = 2 * std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut busy = 0;
    // Under a loaded CI machine the holders sometimes start too late to fill the hasher:
    // such a round signs in normally (and proves nothing), so allow many rounds.
    for _ in 0..200 {
        let login = login_page(&s, &owner).await;
        // Fill the hasher: one hash running, `waiting` queued; the sign-in is refused.
        let mut holders = tokio::task::JoinSet::new();
        for _ in 0..=waiting {
            let state = s.app.state.clone();
            holders.spawn(async move {
                let p = tobira_auth::authn::password::Password::for_verification("x");
                let _ = state
                    .hasher
                    .verify_queued(&p, &state.dummy_hash, Queue::KnownDevice)
                    .await;
            });
        }
        // Until the queue is full (the holders may start late on a loaded machine).
        for _ in 0..200 {
            if s.app.state.hasher.waiting() >= waiting {
                break;
            }
            tokio::time::sleep(StdDuration::from_millis(1)).await;
        }
        let page = owner.post_login(&login, EMAIL, PASSWORD).await;
        // The queued holders have served; the running hash finishes in the background.
        holders.shutdown().await;
        if page.status == 503 {
            busy += 1;
            if busy == 6 {
                break;
            }
        }
    }
    assert_eq!(busy, 6, "the server was busy six times");
    // Six unchecked attempts lock nothing: the right password signs in.
    let login = login_page(&s, &owner).await;
    let page = owner.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(page.status, 303, "{}", page.body);
}

#[tokio::test]
async fn the_owners_sign_ins_give_an_attacker_no_fresh_guesses() {
    let s = setup(ClientOpts::default()).await;
    let owner = s.app.browser();
    let login = login_page(&s, &owner).await;
    assert_eq!(owner.post_login(&login, EMAIL, PASSWORD).await.status, 303);
    let attacker = s.app.browser();
    let attack = login_page(&s, &attacker).await;
    guess(&attacker, &attack, EMAIL, WRONG, 4).await;
    // The owner's phone signs in as every morning …
    let login = login_page(&s, &owner).await;
    assert_eq!(owner.post_login(&login, EMAIL, PASSWORD).await.status, 303);
    // … and the attacker's fifth guess still locks.
    let fifth = attacker.post_login(&attack, EMAIL, WRONG).await;
    assert!(fifth.body.contains(LOCKED), "{}", error_text(&fifth));
    assert_eq!(
        attacker.post_login(&attack, EMAIL, PASSWORD).await.status,
        429
    );
}

#[tokio::test]
async fn guesses_at_many_accounts_sent_all_at_once_cannot_slip_under_the_address_limit() {
    let s = setup_with(ClientOpts::default(), |c| c.throttle.ip_accounts = 5).await;
    let stuffer = std::sync::Arc::new(s.app.browser());
    let login = login_page(&s, &stuffer).await;
    let mut guesses = tokio::task::JoinSet::new();
    for n in 0..40 {
        let form = login_form(&login, &format!("victim{n}@example.jp"), WRONG);
        let stuffer = stuffer.clone();
        guesses.spawn(async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            stuffer.post_form("/login", &form).await.status
        });
    }
    let statuses = guesses.join_all().await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(checked, 5, "only five accounts were tried: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 35);
}

#[tokio::test]
async fn a_right_password_never_blocks_a_shared_address() {
    let s = setup_with(ClientOpts::default(), |c| c.throttle.ip_accounts = 3).await;
    let typist = s.app.browser();
    let login = login_page(&s, &typist).await;
    guess(&typist, &login, "a@example.jp", WRONG, 1).await;
    guess(&typist, &login, "b@example.jp", WRONG, 1).await;
    // Two accounts failed from this address; members keep signing in from it, on
    // devices new to their accounts.
    for _ in 0..3 {
        let member = s.app.browser();
        let login = login_page(&s, &member).await;
        let page = member.post_login(&login, EMAIL, PASSWORD).await;
        assert_eq!(page.status, 303, "{}", error_text(&page));
    }
}

#[tokio::test]
async fn the_owners_known_device_signs_in_through_a_lock_until_unlocked() {
    let s = setup_with(ClientOpts::default(), |c| c.throttle.hard_lock_failures = 5).await;
    let owner = s.app.browser();
    let login = login_page(&s, &owner).await;
    assert_eq!(owner.post_login(&login, EMAIL, PASSWORD).await.status, 303);
    let attacker = s.app.browser();
    let attack = login_page(&s, &attacker).await;
    let capped = guess(&attacker, &attack, EMAIL, WRONG, 5).await;
    assert!(
        capped.body.contains("ロック解除のリンク"),
        "{}",
        error_text(&capped)
    );
    let refused = attacker.post_login(&attack, EMAIL, PASSWORD).await;
    assert_eq!(refused.status, 429);
    // The page names no time, and the header gives a retry in an hour, not sooner.
    assert!(!refused.body.contains("以降"));
    assert_eq!(retry_after(&refused), 3600);
    let login = login_page(&s, &owner).await;
    assert_eq!(owner.post_login(&login, EMAIL, PASSWORD).await.status, 303);
    // Still locked for others, even after the owner's sign-in.
    assert_eq!(
        attacker.post_login(&attack, EMAIL, PASSWORD).await.status,
        429
    );
}

#[tokio::test]
async fn when_guesses_fill_the_hashing_queue_the_owners_known_device_waits_instead_of_failing() {
    let s = setup_with(ClientOpts::default(), |c| {
        c.password.max_concurrent_hashes = 1;
        c.password.waiting_hashes_per_core = 1;
    })
    .await;
    let owner = s.app.browser();
    let login = login_page(&s, &owner).await;
    assert_eq!(owner.post_login(&login, EMAIL, PASSWORD).await.status, 303);
    let waiting = std::thread::available_parallelism().map_or(1, |n| n.get());
    for _ in 0..20 {
        let stranger = s.app.browser();
        let (theirs, ours) = (
            login_page(&s, &stranger).await,
            login_page(&s, &owner).await,
        );
        // The queue is full: one hash running, `waiting` queued (a flood of guesses).
        let mut holders = tokio::task::JoinSet::new();
        for _ in 0..=waiting {
            let state = s.app.state.clone();
            holders.spawn(async move {
                let p = tobira_auth::authn::password::Password::for_verification("x");
                let _ = state.hasher.verify(&p, &state.dummy_hash).await;
            });
        }
        tokio::time::sleep(StdDuration::from_millis(5)).await;
        let refused = stranger.post_login(&theirs, EMAIL, PASSWORD).await;
        let waited = owner.post_login(&ours, EMAIL, PASSWORD).await;
        holders.join_all().await;
        if refused.status == 503 {
            assert_eq!(waited.status, 303, "the owner's device waited its turn");
            return;
        }
    }
    panic!("the queue never filled");
}
