//! The promise of key rotation (issue 16), as a relying party meets it: two replicas in
//! one process on one database, one ephemeral store and one movable clock, and a client
//! that caches the JWKS for exactly the `max-age` we send and never fetches it again
//! early (an unknown `kid` is a failure, not a reason to refetch). Through a scheduled
//! rotation every ID and access token either replica issues verifies; after an emergency
//! revoke only the revoked key's tokens fail.

use std::collections::HashMap;

use josekit::jwk::Jwk;
use josekit::jws::{ES256, EdDSA, JwsVerifier, RS256};
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use tobira_auth::admin::audit::Context;
use tobira_auth::keys::{Alg, KeyPolicy, schedule};
use tobira_auth::state::AppState;
use url::Url;

use crate::helpers::{ClientOpts, SharedReplica, kid_of};
use crate::oidc::{Setup, authorize, exchange, setup_with, sign_in_for_code};

/// A client that caches the JWKS as long as `Cache-Control: max-age` says, taking it
/// from the replicas in turn.
struct CachingRp {
    http: reqwest::Client,
    sources: Vec<Url>,
    fetches: usize,
    cache: Option<(OffsetDateTime, HashMap<String, Jwk>)>,
}

impl CachingRp {
    async fn keys(&mut self, now: OffsetDateTime) -> &HashMap<String, Jwk> {
        let stale = self.cache.as_ref().is_none_or(|(until, _)| now >= *until);
        if stale {
            let source = &self.sources[self.fetches % self.sources.len()];
            self.fetches += 1;
            let res = self
                .http
                .get(source.join("/jwks").unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let cache_control = res.headers()["cache-control"].to_str().unwrap().to_owned();
            let max_age: i64 = cache_control
                .split(',')
                .find_map(|d| d.trim().strip_prefix("max-age="))
                .unwrap_or_else(|| panic!("no max-age in {cache_control}"))
                .parse()
                .unwrap();
            let body: Value = res.json().await.unwrap();
            let keys = body["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| {
                    let jwk = Jwk::from_bytes(k.to_string().as_bytes()).unwrap();
                    (jwk.key_id().unwrap().to_owned(), jwk)
                })
                .collect();
            self.cache = Some((now + Duration::seconds(max_age), keys));
        }
        &self.cache.as_ref().unwrap().1
    }

    /// Verifies the signature of `token` with the cached JWKS; the error says why not.
    async fn verify(&mut self, now: OffsetDateTime, token: &str) -> Result<Value, String> {
        // The OP's own tokens: a malformed header is a bug worth a panic.
        let kid = kid_of(token);
        let keys = self.keys(now).await;
        let jwk = keys
            .get(&kid)
            .ok_or_else(|| format!("kid {kid} is not in the cached JWKS"))?;
        let verifier: Box<dyn JwsVerifier> = match jwk.algorithm() {
            Some("RS256") => Box::new(RS256.verifier_from_jwk(jwk).unwrap()),
            Some("ES256") => Box::new(ES256.verifier_from_jwk(jwk).unwrap()),
            Some("EdDSA") => Box::new(EdDSA.verifier_from_jwk(jwk).unwrap()),
            other => return Err(format!("unexpected alg {other:?}")),
        };
        let (payload, _) =
            josekit::jws::deserialize_compact(token, &*verifier).map_err(|e| e.to_string())?;
        serde_json::from_slice(&payload).map_err(|e| e.to_string())
    }
}

/// A token and when it stops being valid.
struct Issued {
    token: String,
    exp: i64,
    /// An access token of the member (userinfo takes it), not of the client.
    member: bool,
}

struct Rotation {
    s: Setup,
    replica: SharedReplica,
    rp: CachingRp,
    refresh_token: String,
    /// Every token issued and not yet expired, checked again at every step.
    live: Vec<Issued>,
    checked: usize,
}

impl Rotation {
    async fn start() -> Self {
        let s = setup_with(
            ClientOpts {
                refresh: true,
                client_credentials: true,
                ..Default::default()
            },
            |config| {
                config.keys.reload_interval_ms = 1_000;
                // The worker's own tick must not race the test's clock steps.
                config.keys.rotate_every_days = 0;
            },
        )
        .await;
        let replica = s.app.replica_sharing().await;
        let pending = authorize(&s.rp, &[]);
        let code = sign_in_for_code(&s, &pending).await;
        let tokens = exchange(&s, code, pending.verifier).await.unwrap();
        let refresh_token = openidconnect::OAuth2TokenResponse::refresh_token(&tokens)
            .expect("a refresh token")
            .secret()
            .clone();
        let rp = CachingRp {
            http: reqwest::Client::new(),
            sources: vec![s.app.url.clone(), replica.url.clone()],
            fetches: 0,
            cache: None,
        };
        Self {
            s,
            replica,
            rp,
            refresh_token,
            live: Vec::new(),
            checked: 0,
        }
    }

    fn states(&self) -> [&AppState; 2] {
        [&self.s.app.state, &self.replica.state]
    }

    fn urls(&self) -> [Url; 2] {
        [self.s.app.url.clone(), self.replica.url.clone()]
    }

    fn now(&self) -> OffsetDateTime {
        self.s.app.state.clock.now()
    }

    fn policy(&self) -> KeyPolicy {
        KeyPolicy::from_config(&self.s.app.state.config)
    }

    /// Both rings read the database again (as their reloaders do every interval).
    async fn reload(&self) {
        for state in self.states() {
            state.keys.refresh(&state.db, &state.master).await.unwrap();
        }
    }

    /// Moves the clock, runs the schedule (once: it is the same database) and reloads.
    async fn advance(&self, by: Duration) {
        self.s.app.state.clock.advance(by);
        let state = &self.s.app.state;
        schedule::tick(&state.db, &state.master, self.now(), &self.policy())
            .await
            .unwrap();
        self.reload().await;
    }

    async fn post_token(&self, url: &Url, form: &[(&str, &str)]) -> Value {
        let res = self
            .s
            .http
            .0
            .post(url.join("/token").unwrap())
            .basic_auth(&self.s.client_id, self.s.secret.as_deref())
            .form(form)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Each replica issues an ID token and a member's access token (by refreshing) and
    /// a client's access token; the client verifies them and every earlier one that has
    /// not expired. Returns the kids that signed this round.
    async fn round(&mut self) -> Vec<String> {
        let mut kids = Vec::new();
        for url in self.urls() {
            let refreshed = self
                .post_token(
                    &url,
                    &[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", &self.refresh_token.clone()),
                    ],
                )
                .await;
            self.refresh_token = refreshed["refresh_token"].as_str().unwrap().to_owned();
            let client = self
                .post_token(&url, &[("grant_type", "client_credentials")])
                .await;
            for (token, member) in [
                (&refreshed["id_token"], false),
                (&refreshed["access_token"], true),
                (&client["access_token"], false),
            ] {
                let token = token.as_str().unwrap().to_owned();
                kids.push(kid_of(&token));
                let claims = self
                    .rp
                    .verify(self.now(), &token)
                    .await
                    .unwrap_or_else(|e| panic!("a fresh token from {url} failed: {e}"));
                self.live.push(Issued {
                    exp: claims["exp"].as_i64().unwrap(),
                    token,
                    member,
                });
            }
        }
        let now = self.now();
        self.live.retain(|t| t.exp > now.unix_timestamp());
        for issued in &self.live {
            if let Err(e) = self.rp.verify(now, &issued.token).await {
                panic!("a token issued earlier, still valid, failed: {e}");
            }
            self.checked += 1;
        }
        kids
    }

    async fn userinfo(&self, url: &Url, token: &str) -> u16 {
        self.s
            .http
            .0
            .get(url.join("/userinfo").unwrap())
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn introspect(&self, url: &Url, token: &str) -> bool {
        let res = self
            .s
            .http
            .0
            .post(url.join("/introspect").unwrap())
            .basic_auth(&self.s.client_id, self.s.secret.as_deref())
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        body["active"].as_bool().unwrap()
    }

    fn jwks_kids(&self, state: &AppState) -> Vec<String> {
        state.keys.published_kids()
    }
}

const STEP: Duration = Duration::seconds(60);

#[tokio::test]
async fn a_caching_client_verifies_every_token_through_a_scheduled_rotation() {
    let mut r = Rotation::start().await;
    let policy = r.policy();
    assert_eq!(
        policy.publish_ahead,
        Duration::seconds(600),
        "twice max-age"
    );
    let old = r.s.app.state.keys.signing_kid(Alg::RS256);
    assert_eq!(old, r.replica.state.keys.signing_kid(Alg::RS256));
    r.round().await;

    // `tobira keys rotate`: a next key of every algorithm, published now.
    let state = &r.s.app.state;
    let published = schedule::rotate(
        &state.db,
        &state.master,
        r.now(),
        &policy,
        &Alg::ALL,
        false,
        &Context::cli(),
    )
    .await
    .unwrap();
    assert_eq!(published.len(), 3);
    let new = published
        .iter()
        .find(|k| k.alg == "RS256")
        .unwrap()
        .kid
        .clone();
    r.reload().await;
    for state in r.states() {
        let kids = r.jwks_kids(state);
        assert!(kids.contains(&old) && kids.contains(&new), "{kids:?}");
    }

    // Until the key has been published for twice the max-age, the old key signs…
    let mut elapsed = Duration::ZERO;
    while elapsed + STEP < policy.publish_ahead {
        r.advance(STEP).await;
        elapsed += STEP;
        let kids = r.round().await;
        assert!(!kids.contains(&new), "{new} signed after {elapsed}");
    }
    // …then the new one, on both replicas, and every token still verifies.
    let mut switched = None;
    while elapsed < policy.publish_ahead + policy.retiring_for + STEP * 3 {
        r.advance(STEP).await;
        elapsed += STEP;
        let kids = r.round().await;
        if switched.is_none() && kids.iter().filter(|k| **k == new).count() >= 4 {
            switched = Some(elapsed);
        }
        if let Some(at) = switched {
            assert!(
                !kids.contains(&old),
                "{old} signed {} after the switch",
                elapsed - at
            );
        }
    }
    let switched = switched.expect("the new key signs");
    assert!(switched >= policy.publish_ahead, "{switched}");
    // The old key has outlived every token it signed: no longer published.
    for state in r.states() {
        assert!(!r.jwks_kids(state).contains(&old));
        assert_eq!(state.keys.signing_kid(Alg::RS256), new);
    }
    assert!(r.rp.fetches >= 5, "the client refetched as max-age said");
    assert!(r.checked > 100, "{} checks", r.checked);
}

#[tokio::test]
async fn after_an_emergency_revoke_only_the_revoked_keys_tokens_fail() {
    let mut r = Rotation::start().await;
    let policy = r.policy();
    let compromised = r.s.app.state.keys.signing_kid(Alg::RS256);
    let untouched = r.s.app.state.keys.signing_kid(Alg::ES256);
    r.round().await;
    let revoked_tokens: Vec<String> = r
        .live
        .iter()
        .filter(|t| t.member)
        .map(|t| t.token.clone())
        .collect();

    // A successor is published on schedule and reaches the client's cache…
    let state = &r.s.app.state;
    let next = schedule::rotate(
        &state.db,
        &state.master,
        r.now(),
        &policy,
        &[Alg::RS256],
        false,
        &Context::cli(),
    )
    .await
    .unwrap()
    .remove(0)
    .kid;
    r.reload().await;
    let mut elapsed = Duration::ZERO;
    while elapsed < Duration::seconds(360) {
        r.advance(STEP).await;
        elapsed += STEP;
        r.round().await;
    }
    let before: Vec<(String, bool)> = r.live.iter().map(|t| (t.token.clone(), t.member)).collect();
    assert!(
        before
            .iter()
            .all(|(t, _)| kid_of(t) == compromised || kid_of(t) == untouched)
    );

    // …when the signing key leaks: `tobira keys revoke`.
    let state = &r.s.app.state;
    schedule::revoke(
        &state.db,
        &state.master,
        r.now(),
        &policy,
        &compromised,
        &Context::cli(),
    )
    .await
    .unwrap();
    r.reload().await;
    for state in r.states() {
        assert!(!r.jwks_kids(state).contains(&compromised));
        assert_eq!(
            state.keys.signing_kid(Alg::RS256),
            next,
            "the successor signs"
        );
        assert_eq!(state.keys.signing_kid(Alg::ES256), untouched);
    }
    // The revoked key's tokens stop being accepted on both replicas…
    for url in r.urls() {
        for token in revoked_tokens.iter().chain(
            before
                .iter()
                .filter(|(t, member)| *member && kid_of(t) == compromised)
                .map(|(t, _)| t),
        ) {
            assert_eq!(r.userinfo(&url, token).await, 401);
            assert!(!r.introspect(&url, token).await);
        }
    }
    // …and nothing else fails: the successor was in the client's cache already, so new
    // tokens from both replicas verify, and they work at userinfo.
    r.live.retain(|t| kid_of(&t.token) != compromised);
    r.round().await;
    let fresh: Vec<String> = r
        .live
        .iter()
        .filter(|t| t.member && kid_of(&t.token) == next)
        .map(|t| t.token.clone())
        .collect();
    assert_eq!(fresh.len(), 2);
    for url in r.urls() {
        for token in &fresh {
            assert_eq!(r.userinfo(&url, token).await, 200);
            assert!(r.introspect(&url, token).await);
        }
    }
}
