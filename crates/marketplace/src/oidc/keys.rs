//! The OP's published signing keys (its JWKS), for the tokens the marketplace verifies
//! itself (logout tokens). Fetched at discovery; fetched again when a token names a key
//! the set lacks (the OP rotated) or the set has grown old (a withdrawn key must stop
//! counting), but never more than once per `REFETCH_INTERVAL`, however many tokens with
//! unknown `kid`s arrive: anyone can post one, and must not make us hammer the OP.

use std::sync::{Arc, RwLock};

use openidconnect::JsonWebKey;
use openidconnect::core::CoreJsonWebKeySet;
use openidconnect::{JsonWebKeySet, JsonWebKeySetUrl};
use time::{Duration, OffsetDateTime};

use super::Http;

/// At most one fetch of the JWKS per this long (by the marketplace's clock).
pub const REFETCH_INTERVAL: Duration = Duration::seconds(30);

/// A set older than this is fetched again before it is used.
pub const MAX_AGE: Duration = Duration::hours(1);

pub struct SigningKeys {
    url: JsonWebKeySetUrl,
    held: RwLock<Held>,
    /// One fetch at a time: requests that would fetch wait for the one in flight and
    /// use its result.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Held {
    set: Arc<CoreJsonWebKeySet>,
    fetched_at: OffsetDateTime,
    /// The last fetch tried, successful or not: what `REFETCH_INTERVAL` is counted from.
    tried_at: OffsetDateTime,
}

impl SigningKeys {
    pub(super) fn new(
        url: JsonWebKeySetUrl,
        set: CoreJsonWebKeySet,
        fetched_at: OffsetDateTime,
    ) -> Self {
        Self {
            url,
            held: RwLock::new(Held {
                set: Arc::new(set),
                fetched_at,
                tried_at: fetched_at,
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn held(&self) -> Held {
        self.held.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The OP's keys as they stand for a token signed with key `kid`: the set held, or
    /// a fresh one when `kid` is not in it (or the set is old) and no fetch was tried in
    /// the last `REFETCH_INTERVAL`. While the OP cannot be reached the set held stays in
    /// use, old or not, and a key unknown to it stays unknown.
    pub(super) async fn for_kid(
        &self,
        http: &Http,
        kid: &str,
        now: OffsetDateTime,
    ) -> Arc<CoreJsonWebKeySet> {
        let usable = |held: &Held| {
            now - held.fetched_at < MAX_AGE
                && held
                    .set
                    .keys()
                    .iter()
                    .any(|k| k.key_id().is_some_and(|id| **id == *kid))
        };
        let held = self.held();
        if usable(&held) {
            return held.set;
        }
        let _turn = self.fetching.lock().await;
        // Someone may have fetched while we waited.
        let mut held = self.held();
        if usable(&held) || now - held.tried_at < REFETCH_INTERVAL {
            return held.set;
        }
        held.tried_at = now;
        match JsonWebKeySet::fetch_async(&self.url, http).await {
            Ok(fetched) => {
                tracing::info!(keys = fetched.keys().len(), "fetched the OP's signing keys");
                held.set = Arc::new(fetched);
                held.fetched_at = now;
            }
            Err(e) => tracing::warn!(error = %e, "cannot fetch the OP's signing keys"),
        }
        *self.held.write().unwrap_or_else(|e| e.into_inner()) = held.clone();
        held.set
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A JWKS endpoint that counts its requests and publishes keys `k1` and `k2`.
    async fn op() -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let jwks = axum::routing::get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                axum::Json(serde_json::json!({ "keys": [
                    { "kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" },
                    { "kty": "OKP", "crv": "Ed25519", "kid": "k2", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" },
                ]}))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, axum::Router::new().route("/jwks", jwks))
                .await
                .unwrap();
        });
        (url, hits)
    }

    #[tokio::test]
    async fn unknown_keys_fetch_the_jwks_again_at_most_every_thirty_seconds() {
        let (url, hits) = op().await;
        let http = Http(reqwest::Client::new());
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let keys = SigningKeys::new(
            JsonWebKeySetUrl::new(url).unwrap(),
            CoreJsonWebKeySet::new(vec![]),
            t0,
        );
        let fetches = || hits.load(Ordering::SeqCst);
        // Just discovered: an unknown key waits for the interval.
        assert!(keys.for_kid(&http, "k1", t0).await.keys().is_empty());
        assert_eq!(fetches(), 0);
        let rotated = keys.for_kid(&http, "k1", t0 + REFETCH_INTERVAL).await;
        assert_eq!(
            rotated.keys().len(),
            2,
            "the OP rotated: its new key is found"
        );
        assert_eq!(fetches(), 1);
        // Known keys are served from the set; forged kids fetch once per interval.
        let later = t0 + REFETCH_INTERVAL + Duration::seconds(10);
        for kid in ["k2", "forged-1", "forged-2", "k1"] {
            keys.for_kid(&http, kid, later).await;
        }
        assert_eq!(fetches(), 1);
        let last = later + REFETCH_INTERVAL;
        keys.for_kid(&http, "forged-3", last).await;
        assert_eq!(fetches(), 2);
        // An old set is fetched again even for a known key (a withdrawn key must go).
        keys.for_kid(&http, "k1", last + MAX_AGE - Duration::seconds(1))
            .await;
        assert_eq!(fetches(), 2);
        keys.for_kid(&http, "k1", last + MAX_AGE).await;
        assert_eq!(fetches(), 3);
    }
}
