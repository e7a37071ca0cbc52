//! Hostile input cannot cost unbounded memory or CPU: the protocol parameter parser's
//! limits, the parking quota and rate, the bound on waiting password hashes, and metrics
//! memory without a scraper.

use std::time::Duration as StdDuration;

use serde_json::Value;

use crate::helpers::{ClientOpts, TestApp};
use crate::oidc::{EMAIL, authorize, setup};

async fn post(app: &TestApp, path: &str, body: String) -> (u16, Value, StdDuration) {
    let started = std::time::Instant::now();
    let res = app
        .http
        .post(app.url.join(path).unwrap())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null), elapsed)
}

#[tokio::test]
async fn oversized_crowded_and_repeated_parameters_are_invalid_requests_everywhere() {
    let s = setup(ClientOpts::default()).await;
    let flood: String = (0..7000).map(|i| format!("k{i}=&")).collect();
    let many: String = (0..65).map(|i| format!("k{i}=v&")).collect();
    let long = format!("grant_type=client_credentials&scope={}", "x".repeat(2049));
    let repeated = "grant_type=client_credentials&grant_type=refresh_token".to_owned();
    for path in ["/token", "/revoke", "/introspect"] {
        for body in [&flood, &many, &long, &repeated] {
            let (status, json, _) = post(&s.app, path, body.clone()).await;
            assert_eq!(status, 400, "{path} {}", &body[..40.min(body.len())]);
            assert_eq!(json["error"], "invalid_request", "{path}: {json}");
        }
    }
    // /userinfo reads its body with the same parser.
    let (status, _, _) = post(&s.app, "/userinfo", many.clone()).await;
    assert_eq!(status, 400);

    // /authorize: a repeated or oversized client_id/redirect_uri, or a request too big to
    // read, gets a page; other problems go back to the (verified) client.
    let pending = authorize(&s.rp, &[]);
    let dup_client = format!("{}&client_id=other", pending.url);
    let page = s.browser.get(&dup_client).await;
    assert_eq!(page.status, 400);
    assert!(page.location.is_none());
    let too_many = format!("{}&{many}", pending.url);
    let page = s.browser.get(&too_many).await;
    assert_eq!(page.status, 400);
    assert!(page.location.is_none());
    let dup_scope = format!("{}&scope=openid", pending.url);
    let page = s.browser.get(&dup_scope).await;
    let location = page.location.expect("an error redirect to the client");
    let params = crate::helpers::callback_params(&location);
    assert_eq!(params["error"], "invalid_request");
    assert!(params["error_description"].contains("scope"), "{params:?}");
    let long_state = crate::oidc::with_param(&pending.url, "state", &"s".repeat(2049));
    let page = s.browser.get(&long_state).await;
    let params = crate::helpers::callback_params(&page.location.unwrap());
    assert_eq!(params["error"], "invalid_request");
    // An id_token_hint may be longer than other values (8 KiB), not unbounded.
    let hint = crate::oidc::with_param(&pending.url, "id_token_hint", &"h".repeat(8 * 1024));
    let page = s.browser.get(&hint).await;
    let params = crate::helpers::callback_params(&page.location.unwrap());
    assert!(
        params["error_description"].contains("id_token_hint"),
        "{params:?}"
    );
    // A POSTed request larger than any GET would read is refused, not redirected.
    let res = s
        .app
        .http
        .post(s.app.url.join("/authorize").unwrap())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(flood)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

/// The largest request the parameter parser lets through (state and nonce at 2 KiB each)
/// parks, signs in and gets its state back whole: the park's own size limit is a backstop
/// above every legitimate request, never a second, tighter cap.
#[tokio::test]
async fn a_request_with_values_at_their_cap_is_parked_and_answered() {
    let app = TestApp::spawn().await;
    app.add_user(EMAIL, crate::oidc::PASSWORD).await;
    let (id, _) = app.add_client(ClientOpts::default()).await;
    let (state, nonce) = ("s".repeat(2048), "n".repeat(2048));
    let url = format!(
        "/authorize?response_type=code&client_id={id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&scope=openid&state={state}&nonce={nonce}"
    );
    let browser = app.browser();
    let login = browser.follow(browser.get(&url).await).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let back = browser
        .submit_login(&login, EMAIL, crate::oidc::PASSWORD, false)
        .await;
    let location = back.location.unwrap_or_default();
    assert!(location.contains("code="), "{location} {}", back.body);
    assert!(location.contains(&format!("state={state}")), "{location}");
}

#[tokio::test]
async fn parking_is_rate_limited_per_address_and_recovers_after_the_window() {
    let app = TestApp::spawn_with(|c| c.limits.park_per_ip_per_minute = 3).await;
    let (id, _) = app.add_client(ClientOpts::default()).await;
    let url = format!(
        "/authorize?response_type=code&client_id={id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&scope=openid"
    );
    for _ in 0..3 {
        let page = app.browser().get(&url).await;
        assert_eq!(page.status, 303, "{}", page.body);
    }
    let page = app.browser().get(&url).await;
    assert_eq!(page.status, 429, "{}", page.body);
    let retry: i64 = page.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    app.clock().advance(time::Duration::minutes(1));
    assert_eq!(app.browser().get(&url).await.status, 303);
}

#[tokio::test]
async fn the_in_process_store_refuses_parking_beyond_its_quota_but_never_codes() {
    let app = TestApp::spawn_with(|c| {
        // The quota is the in-process store's: run this on it even when Redis is set.
        c.ephemeral.url = Default::default();
        // Two parks, and the passkey ceremony the first sign-in page keeps (issue 14).
        c.limits.max_parked = 3;
    })
    .await;
    app.add_user(EMAIL, crate::oidc::PASSWORD).await;
    let (id, _) = app.add_client(ClientOpts::default()).await;
    let url = format!(
        "/authorize?response_type=code&client_id={id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&scope=openid"
    );
    let first = app.browser();
    let login = first.follow(first.get(&url).await).await;
    assert_eq!(login.status, 200);
    assert_eq!(app.browser().get(&url).await.status, 303);
    let full = app.browser().get(&url).await;
    assert_eq!(full.status, 503, "{}", full.body);
    assert!(full.headers.contains_key("retry-after"));
    assert!(full.body.contains("混み合って"), "{}", full.body);
    // A member already in the flow finishes it: codes are not parked values.
    let back = first
        .submit_login(&login, EMAIL, crate::oidc::PASSWORD, false)
        .await;
    assert!(
        back.location
            .as_deref()
            .is_some_and(|l| l.contains("code=")),
        "{:?} {}",
        back.location,
        back.body
    );
    // Parks expire and make room again.
    app.clock().advance(time::Duration::minutes(31));
    assert_eq!(app.browser().get(&url).await.status, 303);
}

#[tokio::test]
async fn sign_ins_beyond_the_hashing_queue_get_503_at_once() {
    let app = TestApp::spawn_with(|c| {
        c.password.max_concurrent_hashes = 1;
        c.password.waiting_hashes_per_core = 1;
    })
    .await;
    let (id, _) = app.add_client(ClientOpts::default()).await;
    let url = format!(
        "/authorize?response_type=code&client_id={id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&scope=openid"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut tasks = Vec::new();
    for n in 0..cores + 8 {
        // One address each: guesses at one account would be throttled first.
        let email = format!("nobody{n}@example.jp");
        let b = std::sync::Arc::new(app.browser());
        let login = b.follow(b.get(&url).await).await;
        let (csrf, tx) = (login.field("csrf").unwrap(), login.field("tx").unwrap());
        tasks.push(async move {
            let form = [
                ("csrf", csrf.as_str()),
                ("tx", tx.as_str()),
                ("email", email.as_str()),
                ("password", "wrong-password-1"),
            ];
            b.post_form("/login", &form).await
        });
    }
    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    let mut pages = Vec::new();
    for h in handles {
        pages.push(h.await.unwrap());
    }
    let busy: Vec<_> = pages.iter().filter(|p| p.status == 503).collect();
    assert!(!busy.is_empty(), "some sign-ins were refused at once");
    assert!(busy.iter().all(|p| p.headers.contains_key("retry-after")));
    assert!(
        pages.iter().all(|p| p.status == 503 || p.status == 401),
        "the rest were answered normally"
    );
}

/// Resident memory of this process, from /proc (Linux).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn metrics_memory_stays_bounded_without_a_scraper() {
    // An app installs the process-wide recorder (and its upkeep); nobody scrapes. The
    // upkeep runs every half second instead of every 5 s: each round waits for one.
    tobira_auth::ops::set_upkeep_every(StdDuration::from_millis(500));
    let _app = TestApp::spawn().await;
    let round = || {
        for i in 0..1_000_000u32 {
            tobira_auth::ops::record_request_seconds("/jwks", f64::from(i % 100) / 1000.0);
        }
    };
    round();
    tokio::time::sleep(tobira_auth::ops::upkeep_every() + StdDuration::from_secs(1)).await;
    let after_first = rss_kib();
    for _ in 0..3 {
        round();
        tokio::time::sleep(tobira_auth::ops::upkeep_every() + StdDuration::from_secs(1)).await;
    }
    let after_four = rss_kib();
    // Each round records 8 MB of samples; kept until a scrape, three more rounds would
    // add ~24 MiB or more.
    let grown = after_four.saturating_sub(after_first);
    assert!(
        grown < 8 * 1024,
        "RSS grew by {grown} KiB over three rounds"
    );
}
