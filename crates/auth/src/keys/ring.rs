//! The key ring every replica signs and verifies with: a snapshot of the signing-key rows,
//! replaced whole when they change (`refresh`, run by `spawn_reloader`), so a request sees
//! one set of keys, never half a rotation.
//!
//! A replica signs only with a key it has published for a reload interval: by then every
//! other replica has reloaded and publishes it too, so a relying party that fetched the
//! JWKS from any of them knows the key (issue 16).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::jose::{self, Jwk, Signer, Verifier};
use super::{Alg, KeyError, KeyPolicy, KeyState, MasterKey, VerifyError, generate, wipe};
use crate::clock::Clock;
use crate::store::{Db, Lock, StoredKey};

/// Tokens are signed by the key chosen for their algorithm (see `Signing::choose`) and
/// verified by any published key; `alg` must be the one the key was made for (never taken
/// from the token alone, RFC 8725 §3.1). A cheap `Clone` handle: every clone sees the
/// same, current snapshot.
#[derive(Clone)]
pub struct KeyRing(Arc<Shared>);

struct Shared {
    /// Held only to clone the `Arc` (or to swap it): signing never waits on a reload.
    current: RwLock<Arc<Snapshot>>,
    clock: Clock,
    policy: KeyPolicy,
    /// One refresh at a time, so two (the reloader and the CLI, say) cannot both record
    /// a key as first seen, or swap in an older snapshot after a newer one.
    refreshing: tokio::sync::Mutex<()>,
}

struct Snapshot {
    /// What `refresh` compares to tell whether anything that matters changed.
    fingerprint: [u8; 32],
    /// Every row's state, for logging what a reload changed.
    states: BTreeMap<String, KeyState>,
    /// Per published kid: when this replica first had it in its ring; `None` for the keys
    /// of the first load (a fresh replica has issued nothing that anyone cached).
    seen: HashMap<String, Option<OffsetDateTime>>,
    /// Published and retired keys (revoked ones never): each with its state, because only
    /// `id_token_hint`s may use a retired key.
    verifiers: HashMap<String, (KeyState, Verifier)>,
    signing: HashMap<Alg, Signing>,
    /// Published kids in JWKS order.
    published: Vec<String>,
    jwks: String,
    /// The JWKS as served: built once per snapshot, so a request copies nothing.
    jwks_body: axum::body::Bytes,
    /// A strong validator of `jwks_body` (RFC 9110 §8.8.3), the same on every replica
    /// that has the same keys.
    jwks_etag: axum::http::HeaderValue,
}

/// The keys that may sign with one algorithm.
struct Signing {
    /// Active keys, newest first.
    active: Vec<Candidate>,
    /// The newest retiring key: the one the newest active key replaced, published
    /// everywhere, so it signs while no active key has been published long enough here.
    retiring: Option<Candidate>,
    /// Set once this snapshot warned that it signs with a key published too recently.
    warned: AtomicBool,
}

struct Candidate {
    kid: String,
    signer: Signer,
    /// From when this replica may sign with it (first seen + the reload interval);
    /// `None`: at once.
    from: Option<OffsetDateTime>,
}

impl Signing {
    /// The newest active key published here for a reload interval; else the newest
    /// retiring key; else (nothing else can sign) the newest active key anyway.
    fn choose(&self, alg: Alg, now: OffsetDateTime) -> Option<&Candidate> {
        let ready = self
            .active
            .iter()
            .find(|key| key.from.is_none_or(|from| from <= now));
        if let Some(key) = ready.or(self.retiring.as_ref()) {
            return Some(key);
        }
        let newest = self.active.first()?;
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                kid = %newest.kid,
                alg = alg.as_str(),
                "signing with a key published less than a reload interval ago (no older key of \
                 this algorithm can sign): relying parties that cached the JWKS may refuse its \
                 tokens until they fetch it again"
            );
        }
        Some(newest)
    }
}

/// The algorithms that have no active key (a new store, or one a revoke emptied).
fn missing_algs(keys: &[StoredKey]) -> Vec<Alg> {
    Alg::ALL
        .into_iter()
        .filter(|alg| {
            !keys.iter().any(|k| {
                k.alg == alg.as_str() && KeyState::parse(&k.state) == Some(KeyState::Active)
            })
        })
        .collect()
}

/// A digest of everything in the rows that changes the ring (not the sealed private keys:
/// a change of those with the same master key changes nothing we hold). Cheap next to
/// decrypting, so an unchanged ring is found without touching a private key.
fn fingerprint(keys: &[StoredKey]) -> [u8; 32] {
    let mut text = String::new();
    let time = |t: Option<OffsetDateTime>| {
        t.map(|t| t.unix_timestamp_nanos().to_string())
            .unwrap_or_default()
    };
    for k in keys {
        for field in [
            k.kid.as_str(),
            &k.alg,
            &k.state,
            &k.master_key_id,
            &time(Some(k.created_at)),
            &time(k.activated_at),
            &time(k.retired_at),
            &time(k.revoked_at),
            &crate::crypto::b64url(&crate::crypto::sha256(k.public_jwk.as_bytes())),
        ] {
            // Lengths first: no two different rows write the same text.
            text.push_str(&format!("{}:{field};", field.len()));
        }
        text.push('\n');
    }
    crate::crypto::sha256(text.as_bytes())
}

/// Orders keys by when they started signing (then by when they were made): the newest
/// is the one that replaced the others. A key without `activated_at` counts from its
/// creation.
fn recency(key: &StoredKey) -> (OffsetDateTime, OffsetDateTime, &str) {
    (
        key.activated_at.unwrap_or(key.created_at),
        key.created_at,
        &key.kid,
    )
}

impl Snapshot {
    /// The ring of `keys` (oldest first, as the store lists them) at `now`; `before` is
    /// the ring it replaces, whose first-seen times carry over.
    fn build(
        keys: &[StoredKey],
        master: &MasterKey,
        policy: &KeyPolicy,
        now: OffsetDateTime,
        before: Option<&Snapshot>,
    ) -> Result<Self, KeyError> {
        let mut states = BTreeMap::new();
        let mut seen = HashMap::new();
        let mut verifiers = HashMap::new();
        let mut published = Vec::new();
        let mut public = Vec::new();
        // Per algorithm: active keys, and retiring keys, each newest first.
        let mut can_sign: HashMap<Alg, (Vec<&StoredKey>, Vec<&StoredKey>)> = HashMap::new();
        // On a reload, a row this replica cannot use (a state or algorithm from a newer
        // version, a key sealed under a master key it lacks) is left out, never a reason
        // to keep the previous ring: that ring may still trust a key revoked since. At
        // start, the same row is an error that names it.
        let lenient = before.is_some();
        let skip = |e: KeyError| -> Result<(), KeyError> {
            if lenient {
                tracing::error!(error = %e, "key ring: a key is left out of the ring");
                Ok(())
            } else {
                Err(e)
            }
        };
        for key in keys {
            let corrupt = |reason: String| KeyError::Corrupt {
                kid: key.kid.clone(),
                reason,
            };
            let Some(state) = KeyState::parse(&key.state) else {
                skip(corrupt(format!("unknown state {}", key.state)))?;
                continue;
            };
            states.insert(key.kid.clone(), state);
            if state == KeyState::Revoked {
                // An emergency: nothing it signed is accepted any more, for anything.
                continue;
            }
            let Some(alg) = Alg::parse(&key.alg) else {
                skip(corrupt(format!("unsupported alg {}", key.alg)))?;
                continue;
            };
            let jwk = match public_jwk(key) {
                Ok(jwk) => jwk,
                Err(e) => {
                    skip(e)?;
                    continue;
                }
            };
            match Verifier::from_jwk(alg, &jwk).map_err(KeyError::from) {
                Ok(v) => verifiers.insert(key.kid.clone(), (state, v)),
                Err(e) => {
                    skip(e)?;
                    continue;
                }
            };
            if state.is_published() {
                published.push(key.kid.clone());
                public.push(Value::Object(jwk));
                let first = match before {
                    Some(before) => before.seen.get(&key.kid).copied().unwrap_or(Some(now)),
                    None => None,
                };
                seen.insert(key.kid.clone(), first);
            }
            let lists = can_sign.entry(alg).or_default();
            match state {
                KeyState::Active => lists.0.push(key),
                KeyState::Retiring => lists.1.push(key),
                _ => {}
            }
        }

        let mut signing = HashMap::new();
        for (alg, (mut active, mut retiring)) in can_sign {
            active.sort_by(|a, b| recency(b).cmp(&recency(a)));
            retiring.sort_by(|a, b| recency(b).cmp(&recency(a)));
            let candidate = |key: &StoredKey| -> Result<Candidate, KeyError> {
                let from = seen
                    .get(&key.kid)
                    .copied()
                    .flatten()
                    .map(|first| first + policy.reload);
                Ok(Candidate {
                    kid: key.kid.clone(),
                    signer: open(key, alg, master)?,
                    from,
                })
            };
            signing.insert(
                alg,
                Signing {
                    active: active
                        .into_iter()
                        .filter_map(|k| match candidate(k) {
                            Ok(c) => Some(Ok(c)),
                            Err(e) => skip(e).err().map(Err),
                        })
                        .collect::<Result<_, _>>()?,
                    retiring: match retiring.first().map(|k| candidate(k)).transpose() {
                        Ok(c) => c,
                        Err(e) => {
                            skip(e)?;
                            None
                        }
                    },
                    warned: AtomicBool::new(false),
                },
            );
        }

        let jwks = serde_json::json!({ "keys": public }).to_string();
        let jwks_etag = crate::oidc::discovery::strong_etag(jwks.as_bytes());
        Ok(Self {
            fingerprint: fingerprint(keys),
            states,
            seen,
            verifiers,
            signing,
            published,
            jwks_body: axum::body::Bytes::from(jwks.clone().into_bytes()),
            jwks,
            jwks_etag,
        })
    }

    /// Logs which keys a reload added, removed or moved to another state.
    fn log_changes_from(&self, before: &Snapshot) {
        for (kid, state) in &self.states {
            match before.states.get(kid) {
                None => tracing::info!(%kid, state = state.as_str(), "key ring: key added"),
                Some(was) if was != state => tracing::info!(
                    %kid,
                    from = was.as_str(),
                    to = state.as_str(),
                    "key ring: key changed state"
                ),
                Some(_) => {}
            }
        }
        for kid in before.states.keys() {
            if !self.states.contains_key(kid) {
                tracing::info!(%kid, "key ring: key removed");
            }
        }
    }
}

/// The public JWK of a key row: the JWKS publishes it as it is, so its `kid` (where it
/// names one) must be the row's.
fn public_jwk(key: &StoredKey) -> Result<Jwk, KeyError> {
    let corrupt = |reason: String| KeyError::Corrupt {
        kid: key.kid.clone(),
        reason,
    };
    let jwk: Jwk = serde_json::from_str(&key.public_jwk).map_err(|e| corrupt(e.to_string()))?;
    if jwk
        .get("kid")
        .is_some_and(|kid| kid.as_str() != Some(key.kid.as_str()))
    {
        return Err(corrupt("its public JWK names another kid".to_owned()));
    }
    Ok(jwk)
}

/// The signer of a key that may sign. Only these keys are decrypted: retired and
/// revoked rows may have had their private half wiped. The private half must belong to
/// the public one the JWKS publishes, or every token it signed would fail everywhere.
fn open(key: &StoredKey, alg: Alg, master: &MasterKey) -> Result<Signer, KeyError> {
    if !master.knows(&key.master_key_id) {
        return Err(KeyError::WrongMaster {
            kid: key.kid.clone(),
            found: key.master_key_id.clone(),
            expected: master.id().to_owned(),
        });
    }
    let corrupt = |reason: String| KeyError::Corrupt {
        kid: key.kid.clone(),
        reason,
    };
    if key.private_jwe.is_empty() {
        return Err(corrupt(format!(
            "an {} key without its private half",
            key.state
        )));
    }
    let plaintext = master.decrypt(&key.private_jwe)?;
    let public = public_jwk(key)?;
    let mut private: Jwk =
        serde_json::from_slice(&plaintext).map_err(|e| corrupt(e.to_string()))?;
    let signer = jose::with_public(&mut private, &public)
        .and_then(|()| Signer::from_jwk(alg, &private))
        .map_err(|e| corrupt(format!("its private half: {e}")));
    wipe(&mut private);
    signer
}

impl KeyRing {
    /// Loads every key row, creating an active key for every algorithm that has none
    /// (under a lock, so replicas starting together create one each, not several).
    pub async fn load_or_init(
        db: &Db,
        master: &MasterKey,
        clock: &Clock,
        policy: KeyPolicy,
    ) -> Result<Self, KeyError> {
        let mut keys = db.signing_keys().all().await?;
        if !missing_algs(&keys).is_empty() {
            db.locked(Lock::SigningKeys, async {
                // Another replica may have created them while we waited for the lock.
                let current = db.signing_keys().all().await?;
                for alg in missing_algs(&current) {
                    let key = generate(alg, master, clock)?;
                    db.signing_keys().add(&key).await?;
                    tracing::info!(kid = %key.kid, alg = %key.alg, "created a signing key");
                }
                Ok::<_, KeyError>(())
            })
            .await??;
            keys = db.signing_keys().all().await?;
        }
        Self::build(&keys, master, clock.clone(), policy)
    }

    /// The ring of these rows, as a replica's first load: their keys count as published
    /// long enough.
    pub(crate) fn build(
        keys: &[StoredKey],
        master: &MasterKey,
        clock: Clock,
        policy: KeyPolicy,
    ) -> Result<Self, KeyError> {
        let snapshot = Snapshot::build(keys, master, &policy, clock.now(), None)?;
        Ok(Self(Arc::new(Shared {
            current: RwLock::new(Arc::new(snapshot)),
            clock,
            policy,
            refreshing: tokio::sync::Mutex::new(()),
        })))
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        // A panic while the lock was held cannot leave a half-made snapshot: the write
        // only swaps an `Arc`.
        self.0
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the key rows again; `true` when the ring changed. When nothing that matters
    /// changed, nothing is decrypted. On an error the ring stays as it was.
    pub async fn refresh(&self, db: &Db, master: &MasterKey) -> Result<bool, KeyError> {
        let _one_at_a_time = self.0.refreshing.lock().await;
        let keys = db.signing_keys().all().await?;
        self.replace(&keys, master)
    }

    /// `refresh` once the rows are read.
    fn replace(&self, keys: &[StoredKey], master: &MasterKey) -> Result<bool, KeyError> {
        let before = self.snapshot();
        if before.fingerprint == fingerprint(keys) {
            return Ok(false);
        }
        let after = Snapshot::build(
            keys,
            master,
            &self.0.policy,
            self.0.clock.now(),
            Some(&before),
        )?;
        after.log_changes_from(&before);
        *self.0.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(after);
        Ok(true)
    }

    /// Refreshes the ring every `every` until the task is aborted. A failed reload is
    /// logged and the ring keeps its last good keys: a database that is away for a moment
    /// must not stop signing.
    pub fn spawn_reloader(
        &self,
        db: Db,
        master: Arc<MasterKey>,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let ring = self.clone();
        let every = every.max(std::time::Duration::from_millis(10));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is at once, and the ring was loaded just now.
            ticks.tick().await;
            metrics::gauge!(RING_KEYS).set(ring.snapshot().published.len() as f64);
            loop {
                ticks.tick().await;
                let outcome = match ring.refresh(&db, &master).await {
                    Ok(true) => "changed",
                    Ok(false) => "unchanged",
                    Err(e) => {
                        tracing::warn!(error = %e, "key ring: reload failed; keeping the keys loaded before");
                        "failed"
                    }
                };
                metrics::counter!(RING_RELOADS, "outcome" => outcome).increment(1);
                metrics::gauge!(RING_KEYS).set(ring.snapshot().published.len() as f64);
            }
        })
    }

    /// A compact JWS of `claims` with the key chosen for `alg` now; `typ` is `JWT` for ID
    /// tokens and `at+jwt` for access tokens (RFC 9068 §2.1).
    pub fn sign(&self, alg: Alg, typ: &str, claims: &impl Serialize) -> Result<String, KeyError> {
        let snapshot = self.snapshot();
        let key = snapshot
            .signing
            .get(&alg)
            .and_then(|s| s.choose(alg, self.0.clock.now()))
            .ok_or_else(|| KeyError::Corrupt {
                kid: "-".to_owned(),
                reason: format!("no {} key can sign", alg.as_str()),
            })?;
        let payload = serde_json::to_vec(claims).map_err(|e| KeyError::Corrupt {
            kid: key.kid.clone(),
            reason: e.to_string(),
        })?;
        Ok(jose::sign_compact(
            &key.signer,
            &key.kid,
            Some(typ),
            &payload,
        )?)
    }

    /// The kid `sign` would use for `alg` now; empty when no key of `alg` can sign.
    pub fn signing_kid(&self, alg: Alg) -> String {
        self.snapshot()
            .signing
            .get(&alg)
            .and_then(|s| s.choose(alg, self.0.clock.now()))
            .map(|key| key.kid.clone())
            .unwrap_or_default()
    }

    /// The kids in the JWKS, in its order.
    pub fn published_kids(&self) -> Vec<String> {
        self.snapshot().published.clone()
    }

    /// Verifies a token signed by one of our published keys; returns its claims and
    /// `typ`. Expiry and audience are the caller's to check.
    pub fn verify(
        &self,
        token: &str,
    ) -> Result<(serde_json::Map<String, Value>, Option<String>), VerifyError> {
        self.verify_with(token, KeyState::is_published)
    }

    /// Like `verify`, and retired keys count too: an `id_token_hint` may be an old (even
    /// expired, OIDC Core §3.1.2.1) ID token. Revoked keys never count.
    pub fn verify_hint(
        &self,
        token: &str,
    ) -> Result<(serde_json::Map<String, Value>, Option<String>), VerifyError> {
        self.verify_with(token, |state| {
            state.is_published() || state == KeyState::Retired
        })
    }

    fn verify_with(
        &self,
        token: &str,
        usable: impl Fn(KeyState) -> bool,
    ) -> Result<(serde_json::Map<String, Value>, Option<String>), VerifyError> {
        let snapshot = self.snapshot();
        let (payload, header) = jose::verify_compact(token, |header| {
            // No verifier (no kid, unknown kid, a key not usable here): refused.
            header
                .get("kid")
                .and_then(Value::as_str)
                .and_then(|kid| snapshot.verifiers.get(kid))
                .filter(|(state, _)| usable(*state))
                .map(|(_, v)| v)
        })
        .map_err(|e| match e {
            jose::JoseError::Signature => VerifyError::Signature,
            _ => VerifyError::Malformed,
        })?;
        let claims: serde_json::Map<String, Value> =
            serde_json::from_slice(&payload).map_err(|_| VerifyError::Malformed)?;
        let typ = header.get("typ").and_then(Value::as_str).map(str::to_owned);
        Ok((claims, typ))
    }

    /// The JWKS document: public keys only.
    pub fn jwks(&self) -> String {
        self.snapshot().jwks.clone()
    }

    /// The JWKS response body (shared, not copied) and its `ETag`.
    pub fn jwks_response(&self) -> (axum::body::Bytes, axum::http::HeaderValue) {
        let snapshot = self.snapshot();
        (snapshot.jwks_body.clone(), snapshot.jwks_etag.clone())
    }

    /// Algorithms the ring signs with (for discovery).
    pub fn signing_algs(&self) -> Vec<&'static str> {
        Alg::ALL.iter().map(|a| a.as_str()).collect()
    }
}

/// Reloads of the ring, by outcome (`changed`, `unchanged`, `failed`).
const RING_RELOADS: &str = "tobira_key_ring_reloads_total";
/// Keys in the JWKS this replica serves.
const RING_KEYS: &str = "tobira_key_ring_keys";

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> KeyPolicy {
        KeyPolicy::from_config(&crate::Config::default())
    }

    /// One active key per algorithm, made at the clock's time.
    fn rows(master: &MasterKey, clock: &Clock) -> Vec<StoredKey> {
        Alg::ALL
            .into_iter()
            .map(|alg| generate(alg, master, clock).unwrap())
            .collect()
    }

    fn find(keys: &mut [StoredKey], alg: Alg) -> &mut StoredKey {
        keys.iter_mut().find(|k| k.alg == alg.as_str()).unwrap()
    }

    fn sign(ring: &KeyRing, alg: Alg) -> String {
        ring.sign(alg, "JWT", &serde_json::json!({ "sub": "abc" }))
            .unwrap()
    }

    /// The sealed private JWK of `key`, changed by `change` and sealed again.
    fn reseal_private(key: &mut StoredKey, master: &MasterKey, change: impl FnOnce(&mut Jwk)) {
        let mut private: Jwk =
            serde_json::from_slice(&master.decrypt(&key.private_jwe).unwrap()).unwrap();
        change(&mut private);
        key.private_jwe = master
            .encrypt(serde_json::to_string(&private).unwrap().as_bytes())
            .unwrap();
    }

    /// A private half must belong to the published key: one that does not is refused at
    /// start (naming the kid), instead of signing tokens no client can check.
    #[test]
    fn a_private_half_that_is_not_the_published_keys_is_refused() {
        let (master, clock) = (MasterKey::from_bytes([7; 32]), Clock::manual_at_now());
        for alg in Alg::ALL {
            let mut keys = rows(&master, &clock);
            let stranger = generate(alg, &master, &clock).unwrap();
            let key = find(&mut keys, alg);
            key.private_jwe = stranger.private_jwe.clone();
            let kid = key.kid.clone();
            let err = KeyRing::build(&keys, &master, clock.clone(), policy())
                .err()
                .unwrap();
            assert!(
                matches!(&err, KeyError::Corrupt { kid: k, .. } if *k == kid),
                "{alg:?}: {err}"
            );
            // Without its public members (as earlier versions stored EC and Ed25519
            // keys), the stranger's `d` is still not this key.
            let key = find(&mut keys, alg);
            reseal_private(key, &master, |jwk| {
                for name in ["x", "y"] {
                    jwk.remove(name);
                }
            });
            assert!(
                KeyRing::build(&keys, &master, clock.clone(), policy()).is_err(),
                "{alg:?}"
            );
        }
    }

    /// Private JWKs that earlier versions stored hold `d` without `x` and `y`: they sign,
    /// with the public key the JWKS publishes.
    #[test]
    fn a_private_half_without_its_public_members_still_signs() {
        let (master, clock) = (MasterKey::from_bytes([7; 32]), Clock::manual_at_now());
        let mut keys = rows(&master, &clock);
        for alg in [Alg::ES256, Alg::EdDSA] {
            reseal_private(find(&mut keys, alg), &master, |jwk| {
                for name in ["kty", "crv", "x", "y", "kid", "alg", "use"] {
                    jwk.remove(name);
                }
            });
        }
        let ring = KeyRing::build(&keys, &master, clock.clone(), policy()).unwrap();
        for alg in Alg::ALL {
            assert!(ring.verify(&sign(&ring, alg)).is_ok(), "{alg:?}");
        }
    }

    /// The JWKS publishes a row's public JWK as it is: its `kid`, `alg` and `use` must be
    /// the row's, or clients would be told of a key other than the one that checks.
    #[test]
    fn a_public_jwk_that_says_another_kid_alg_or_use_is_refused() {
        let (master, clock) = (MasterKey::from_bytes([7; 32]), Clock::manual_at_now());
        for (member, value) in [("kid", "other"), ("alg", "RS256"), ("use", "enc")] {
            let mut keys = rows(&master, &clock);
            let key = find(&mut keys, Alg::ES256);
            let mut public: Jwk = serde_json::from_str(&key.public_jwk).unwrap();
            public.insert(member.to_owned(), value.into());
            key.public_jwk = Value::Object(public).to_string();
            let kid = key.kid.clone();
            let err = KeyRing::build(&keys, &master, clock.clone(), policy())
                .err()
                .unwrap();
            assert!(
                err.to_string().contains(&kid) || member != "kid",
                "{member}: {err}"
            );
        }
    }

    #[test]
    fn unchanged_rows_rebuild_nothing_and_decrypt_nothing() {
        let (master, clock) = (MasterKey::from_bytes([7; 32]), Clock::manual_at_now());
        let mut keys = rows(&master, &clock);
        let ring = KeyRing::build(&keys, &master, clock.clone(), policy()).unwrap();
        let kid = ring.signing_kid(Alg::ES256);
        // Garbage where the sealed keys were: decrypting would fail.
        for key in &mut keys {
            key.private_jwe = "not.a.jwe.at.all".to_owned();
        }
        assert!(!ring.replace(&keys, &master).unwrap());
        assert_eq!(ring.signing_kid(Alg::ES256), kid);
        // A change that matters is decrypted: the garbage cannot sign, and is left out.
        find(&mut keys, Alg::ES256).activated_at = Some(clock.now() + time::Duration::SECOND);
        assert!(ring.replace(&keys, &master).unwrap());
        assert_eq!(ring.signing_kid(Alg::ES256), "", "no ES256 key can sign");
    }

    #[test]
    fn retired_and_revoked_keys_are_never_decrypted_and_only_retired_ones_check_hints() {
        let (master, clock) = (MasterKey::from_bytes([7; 32]), Clock::manual_at_now());
        let mut keys = rows(&master, &clock);
        let ring = KeyRing::build(&keys, &master, clock.clone(), policy()).unwrap();
        let (es, ed) = (sign(&ring, Alg::ES256), sign(&ring, Alg::EdDSA));
        let (es_kid, ed_kid) = (ring.signing_kid(Alg::ES256), ring.signing_kid(Alg::EdDSA));

        clock.advance(time::Duration::SECOND);
        keys.push(generate(Alg::ES256, &master, &clock).unwrap());
        keys.push(generate(Alg::EdDSA, &master, &clock).unwrap());
        for (alg, state) in [(Alg::ES256, "retired"), (Alg::EdDSA, "revoked")] {
            let key = find(&mut keys, alg);
            key.state = state.to_owned();
            // Wiped, as the schedule and `keys revoke` may do.
            key.private_jwe = String::new();
        }
        assert!(ring.replace(&keys, &master).unwrap());

        let published = ring.published_kids();
        assert_eq!(published.len(), 3, "{published:?}");
        assert!(!published.contains(&es_kid) && !published.contains(&ed_kid));
        assert!(
            ring.verify(&es).is_err(),
            "a retired key checks no access token"
        );
        assert!(ring.verify_hint(&es).is_ok(), "but still an id_token_hint");
        assert!(ring.verify(&ed).is_err());
        assert!(
            ring.verify_hint(&ed).is_err(),
            "a revoked key checks nothing"
        );
        for alg in [Alg::ES256, Alg::EdDSA] {
            let token = sign(&ring, alg);
            assert!(ring.verify(&token).is_ok(), "{alg:?}: the new key signs");
        }
    }

    #[test]
    fn a_key_this_replica_cannot_open_is_left_out_and_a_revocation_still_applies() {
        let (master, clock) = (MasterKey::from_bytes([7; 32]), Clock::manual_at_now());
        let mut keys = rows(&master, &clock);
        let ring = KeyRing::build(&keys, &master, clock.clone(), policy()).unwrap();
        let kid = ring.signing_kid(Alg::RS256);
        let es = sign(&ring, Alg::ES256);

        // At start, such a key is an error that names it.
        let stranger = MasterKey::from_bytes([8; 32]);
        clock.advance(time::Duration::SECOND);
        keys.push(generate(Alg::RS256, &stranger, &clock).unwrap());
        let err = KeyRing::build(&keys, &master, clock.clone(), policy())
            .err()
            .unwrap();
        assert!(
            matches!(&err, KeyError::WrongMaster { found, .. } if found == stranger.id()),
            "{err}"
        );
        // On a reload it is left out (the key before it keeps signing)…
        assert!(ring.replace(&keys, &master).unwrap());
        assert_eq!(ring.signing_kid(Alg::RS256), kid);
        // …and never holds back what else changed: a key revoked in the same reload
        // stops verifying (the attack: keep a replica on its old ring by adding a row it
        // cannot open, and the revoked key stays trusted there).
        let es_kid = ring.signing_kid(Alg::ES256);
        let revoked = keys.iter_mut().find(|k| k.kid == es_kid).unwrap();
        revoked.state = "revoked".to_owned();
        revoked.private_jwe = String::new();
        keys.push(generate(Alg::ES256, &master, &clock).unwrap());
        assert!(ring.replace(&keys, &master).unwrap());
        assert!(ring.verify(&es).is_err(), "the revoked key is out");

        let last = keys
            .iter_mut()
            .find(|k| k.master_key_id == stranger.id())
            .unwrap();
        last.master_key_id = master.id().to_owned();
        last.private_jwe = String::new();
        let err = KeyRing::build(&keys, &master, clock.clone(), policy())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("without its private half"), "{err}");
        assert!(ring.replace(&keys, &master).unwrap());
    }

    #[test]
    fn the_newest_active_key_published_long_enough_signs_else_the_retiring_one() {
        let (master, clock) = (MasterKey::from_bytes([7; 32]), Clock::manual_at_now());
        let mut keys = rows(&master, &clock);
        let ring = KeyRing::build(&keys, &master, clock.clone(), policy()).unwrap();
        let first = ring.signing_kid(Alg::ES256);
        let reload = policy().reload;

        // Two active keys: the older one, published long enough, signs until the newer
        // one has been for a reload interval.
        clock.advance(time::Duration::SECOND);
        let second = generate(Alg::ES256, &master, &clock).unwrap();
        keys.push(second.clone());
        assert!(ring.replace(&keys, &master).unwrap());
        assert_eq!(ring.signing_kid(Alg::ES256), first);
        clock.advance(reload);
        assert_eq!(ring.signing_kid(Alg::ES256), second.kid);

        // A third, with the second retiring: the second signs meanwhile, though the
        // first is still active (it is older than the key that replaced it).
        clock.advance(time::Duration::SECOND);
        let third = generate(Alg::ES256, &master, &clock).unwrap();
        keys.push(third.clone());
        find_kid(&mut keys, &second.kid).state = "retiring".to_owned();
        find_kid(&mut keys, &first).state = "retiring".to_owned();
        assert!(ring.replace(&keys, &master).unwrap());
        assert_eq!(ring.signing_kid(Alg::ES256), second.kid);
        clock.advance(reload);
        assert_eq!(ring.signing_kid(Alg::ES256), third.kid);
    }

    fn find_kid<'k>(keys: &'k mut [StoredKey], kid: &str) -> &'k mut StoredKey {
        keys.iter_mut().find(|k| k.kid == kid).unwrap()
    }
}
