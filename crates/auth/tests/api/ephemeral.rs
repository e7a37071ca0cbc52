//! The ephemeral store's contract, run on every implementation.

use std::path::Path;
use std::sync::Arc;

use time::Duration;
use tobira_auth::{Clock, Config};
use tokio::sync::Barrier;

use tobira_auth::store::EphemeralStore;
use tobira_auth::store::ephemeral::Spent;

use crate::helpers::ephemeral_stores;
use crate::redis_server::OwnRedis;

#[tokio::test]
async fn values_expire_by_the_app_clock_not_the_wall_clock() {
    let clock = Clock::manual_at_now();
    for (name, store, _guard) in ephemeral_stores(&clock).await {
        let expires = clock.now() + Duration::seconds(60);
        store.put("code:a", b"payload", expires).await.unwrap();
        assert_eq!(
            store.get("code:a").await.unwrap().as_deref(),
            Some(&b"payload"[..]),
            "{name}"
        );
        clock.advance(Duration::seconds(59));
        assert!(
            store.get("code:a").await.unwrap().is_some(),
            "{name}: expired early"
        );
        clock.advance(Duration::seconds(1));
        assert_eq!(
            store.get("code:a").await.unwrap(),
            None,
            "{name}: alive at expires_at"
        );
        assert_eq!(store.take("code:a").await.unwrap(), None, "{name}");
        assert_eq!(store.get("never-written").await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn put_replaces_and_delete_removes() {
    let clock = Clock::manual_at_now();
    for (name, store, _guard) in ephemeral_stores(&clock).await {
        let later = clock.now() + Duration::minutes(5);
        store.put("k", b"one", later).await.unwrap();
        store.put("k", b"two", later).await.unwrap();
        assert_eq!(
            store.get("k").await.unwrap().as_deref(),
            Some(&b"two"[..]),
            "{name}"
        );
        // Binary values survive the round trip untouched, the empty value included.
        let bytes: Vec<u8> = (0..=255).collect();
        store.put("bin", &bytes, later).await.unwrap();
        assert_eq!(store.get("bin").await.unwrap(), Some(bytes), "{name}");
        store.put("empty", b"", later).await.unwrap();
        assert_eq!(
            store.get("empty").await.unwrap(),
            Some(Vec::new()),
            "{name}"
        );
        store.delete("k").await.unwrap();
        store.delete("k").await.unwrap();
        assert_eq!(store.get("k").await.unwrap(), None, "{name}");
        store.ping().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spending_is_single_use_and_a_replay_is_recognised_under_concurrency() {
    let clock = Clock::manual_at_now();
    for (name, store, _guard) in ephemeral_stores(&clock).await {
        let later = clock.now() + Duration::seconds(60);
        let memory = clock.now() + Duration::minutes(10);
        assert_eq!(
            store.spend("code:none", "used:none", memory).await.unwrap(),
            Spent::Absent,
            "{name}"
        );
        store.put("code:s", b"record", later).await.unwrap();
        let start = Arc::new(Barrier::new(16));
        let spenders: Vec<_> = (0..16)
            .map(|_| {
                let (store, start) = (store.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    store.spend("code:s", "used:s", memory).await.unwrap()
                })
            })
            .collect();
        let mut fresh = 0;
        for s in spenders {
            match s.await.unwrap() {
                Spent::Fresh(v) => {
                    assert_eq!(v, b"record");
                    fresh += 1;
                }
                // Every other spender sees the replay, with the value to act on.
                Spent::Replayed(v) => assert_eq!(v, b"record", "{name}"),
                Spent::Absent => panic!("{name}: a racing spend saw nothing"),
            }
        }
        assert_eq!(fresh, 1, "{name}");
        // The replay is remembered until `memory`, by the app's clock.
        clock.advance(Duration::minutes(9));
        assert!(matches!(
            store.spend("code:s", "used:s", memory).await.unwrap(),
            Spent::Replayed(_)
        ));
        clock.advance(Duration::minutes(2));
        assert_eq!(
            store.spend("code:s", "used:s", memory).await.unwrap(),
            Spent::Absent,
            "{name}"
        );
        // An expired value is not fresh.
        store
            .put("code:old", b"x", clock.now() + Duration::seconds(1))
            .await
            .unwrap();
        clock.advance(Duration::seconds(2));
        let memory = clock.now() + Duration::minutes(10);
        assert_eq!(
            store.spend("code:old", "used:old", memory).await.unwrap(),
            Spent::Absent,
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_in_process_store_holds_bounded_values_up_to_its_quota_only() {
    let clock = Clock::manual_at_now();
    let store = tobira_auth::store::ephemeral::MemoryStore::with_quota(clock.clone(), 2);
    let soon = clock.now() + Duration::minutes(1);
    store.put_bounded("park:1", b"a", soon).await.unwrap();
    store.put_bounded("park:2", b"b", soon).await.unwrap();
    assert!(matches!(
        store.put_bounded("park:3", b"c", soon).await,
        Err(tobira_auth::store::EphemeralError::Full)
    ));
    // Replacing a held value is no new value; unbounded values are never refused.
    store.put_bounded("park:2", b"b2", soon).await.unwrap();
    store.put("code:1", b"x", soon).await.unwrap();
    store.incr("rate:1", Duration::minutes(1)).await.unwrap();
    // Taken or expired values make room.
    store.take("park:1").await.unwrap();
    store.put_bounded("park:3", b"c", soon).await.unwrap();
    clock.advance(Duration::minutes(2));
    store
        .put_bounded("park:4", b"d", clock.now() + Duration::minutes(1))
        .await
        .unwrap();
    store
        .put_bounded("park:5", b"e", clock.now() + Duration::minutes(1))
        .await
        .unwrap();
}

// Four worker threads, and every task waits at a barrier: the takes really race.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn take_is_single_use_even_under_concurrency() {
    let clock = Clock::manual_at_now();
    for (name, store, _guard) in ephemeral_stores(&clock).await {
        store
            .put("code:x", b"v", clock.now() + Duration::seconds(60))
            .await
            .unwrap();
        let start = Arc::new(Barrier::new(16));
        let takers: Vec<_> = (0..16)
            .map(|_| {
                let (store, start) = (store.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    store.take("code:x").await.unwrap()
                })
            })
            .collect();
        let mut winners = 0;
        for t in takers {
            if t.await.unwrap().is_some() {
                winners += 1;
            }
        }
        assert_eq!(
            winners, 1,
            "{name}: a single-use value was taken {winners} times"
        );
        assert_eq!(store.get("code:x").await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn counters_count_within_a_fixed_window_and_restart_after_it() {
    let clock = Clock::manual_at_now();
    for (name, store, _guard) in ephemeral_stores(&clock).await {
        let window = Duration::minutes(15);
        let opened = clock.now();
        let first = store.incr("fail:ip", window).await.unwrap();
        assert_eq!(first.count, 1, "{name}");
        assert_eq!(first.expires_at, opened + window, "{name}");
        clock.advance(Duration::minutes(10));
        let second = store.incr("fail:ip", window).await.unwrap();
        assert_eq!(second.count, 2, "{name}");
        assert_eq!(
            second.expires_at,
            opened + window,
            "{name}: later hits must not extend the window"
        );
        clock.advance(Duration::minutes(5));
        let restarted = store.incr("fail:ip", window).await.unwrap();
        assert_eq!(restarted.count, 1, "{name}");
        assert_eq!(restarted.expires_at, clock.now() + window, "{name}");
        // Counters are independent per key.
        assert_eq!(
            store.incr("fail:other", window).await.unwrap().count,
            1,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_are_never_lost() {
    let clock = Clock::manual_at_now();
    for (name, store, _guard) in ephemeral_stores(&clock).await {
        let start = Arc::new(Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (store, start) = (store.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    store
                        .incr("burst", Duration::minutes(1))
                        .await
                        .unwrap()
                        .count
                })
            })
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap());
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=50).collect::<Vec<u64>>(), "{name}");
    }
}

#[tokio::test]
async fn redis_prefixes_keep_deployments_apart() {
    let clock = Clock::manual_at_now();
    let (Some(a), Some(b)) = (
        crate::helpers::TestRedis::new().await,
        crate::helpers::TestRedis::new().await,
    ) else {
        return;
    };
    let (store_a, store_b) = (a.store(&clock).await, b.store(&clock).await);
    store_a
        .put("same-key", b"a", clock.now() + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(store_b.get("same-key").await.unwrap(), None);
    assert_eq!(
        store_a.get("same-key").await.unwrap().as_deref(),
        Some(&b"a"[..])
    );
}

/// The app's configuration for this Redis: a `rediss://` URL and, maybe, a CA file.
fn tls_config(url: &str, ca: Option<&Path>) -> Config {
    let mut config = Config::default();
    config.ephemeral.url = tobira_auth::config::Secret::new(url);
    config.ephemeral.key_prefix = format!("tobira-test:{}:", uuid::Uuid::new_v4().simple());
    config.ephemeral.tls_ca_file = ca.map(|p| p.display().to_string()).unwrap_or_default();
    config
}

#[tokio::test]
async fn rediss_urls_speak_tls_and_trust_the_configured_ca_only() {
    let Some(redis) = OwnRedis::start(true).await else {
        return;
    };
    let clock = Clock::manual_at_now();
    let url = redis.url();

    // With the CA that signed the server's certificate: a working store.
    let config = tls_config(&url, Some(&redis.ca));
    let store = tobira_auth::startup::open_ephemeral(&config, &clock)
        .await
        .expect("connects over TLS with the configured CA");
    let later = clock.now() + Duration::minutes(1);
    store.put("code:tls", b"over tls", later).await.unwrap();
    assert_eq!(
        store.get("code:tls").await.unwrap().as_deref(),
        Some(&b"over tls"[..])
    );
    assert_eq!(
        store.take("code:tls").await.unwrap().as_deref(),
        Some(&b"over tls"[..])
    );
    assert_eq!(store.take("code:tls").await.unwrap(), None);
    assert_eq!(
        store.incr("n", Duration::minutes(1)).await.unwrap().count,
        1
    );
    store.ping().await.unwrap();

    // The system roots do not know a private CA: refused, and the error says why and
    // what to set.
    let err = tobira_auth::startup::open_ephemeral(&tls_config(&url, None), &clock)
        .await
        .expect_err("an unknown issuer is refused")
        .to_string();
    assert!(
        err.contains("certificate") && err.contains("ephemeral.tls_ca_file"),
        "{err}"
    );
    assert!(err.contains(&url), "the target is named: {err}");

    // A CA file replaces the system roots: another CA does not vouch for this server.
    let other = redis.dir().join("other-ca.crt");
    let err = tobira_auth::startup::open_ephemeral(&tls_config(&url, Some(&other)), &clock)
        .await
        .expect_err("a certificate from another CA is refused")
        .to_string();
    assert!(err.contains("certificate"), "{err}");

    // A CA file that is not one is named as such, not as a TLS failure later.
    let junk = redis.dir().join("server.csr");
    let err = tobira_auth::startup::open_ephemeral(&tls_config(&url, Some(&junk)), &clock)
        .await
        .expect_err("a file without a certificate is refused")
        .to_string();
    assert!(
        err.contains("ephemeral.tls_ca_file") && err.contains("no PEM certificate"),
        "{err}"
    );
    // Plain redis:// to the TLS port does not get through either.
    let plain = url.replace("rediss://", "redis://");
    assert!(
        tobira_auth::startup::open_ephemeral(&tls_config(&plain, None), &clock)
            .await
            .is_err()
    );
    drop(store);
}

#[test]
fn a_ca_file_without_a_rediss_url_is_a_configuration_error() {
    let env = [
        (
            "TOBIRA_EPHEMERAL__URL".to_owned(),
            "redis://127.0.0.1:6379".to_owned(),
        ),
        (
            "TOBIRA_EPHEMERAL__TLS_CA_FILE".to_owned(),
            "/etc/ssl/ca.pem".to_owned(),
        ),
    ];
    let err = Config::from_layers(None, &env).unwrap_err().to_string();
    assert!(err.contains("ephemeral.tls_ca_file"), "{err}");
    let env = [
        (
            "TOBIRA_EPHEMERAL__URL".to_owned(),
            "rediss://redis.internal:6380".to_owned(),
        ),
        (
            "TOBIRA_EPHEMERAL__TLS_CA_FILE".to_owned(),
            "/etc/ssl/ca.pem".to_owned(),
        ),
    ];
    let config = Config::from_layers(None, &env).unwrap();
    assert_eq!(config.ephemeral.tls_ca_file, "/etc/ssl/ca.pem");
}
