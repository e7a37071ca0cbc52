//! The ephemeral store's contract, run on every implementation.

use time::Duration;
use tobira_auth::Clock;

use crate::helpers::ephemeral_stores;

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

#[tokio::test]
async fn take_is_single_use_even_under_concurrency() {
    let clock = Clock::manual_at_now();
    for (name, store, _guard) in ephemeral_stores(&clock).await {
        store
            .put("code:x", b"v", clock.now() + Duration::seconds(60))
            .await
            .unwrap();
        let takers: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.take("code:x").await.unwrap() })
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

#[tokio::test]
async fn concurrent_increments_are_never_lost() {
    let clock = Clock::manual_at_now();
    for (name, store, _guard) in ephemeral_stores(&clock).await {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
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
