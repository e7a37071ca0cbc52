//! Signing keys: the master key that encrypts them at rest, generation, the key ring
//! every replica signs and verifies with, and the JWKS.
//!
//! Keys live in the durable store so every replica signs with the same key; the first
//! key is created under a database lock, because replicas start at the same time.

mod master;

use std::collections::HashMap;
use std::sync::Arc;

use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{JwsHeader, JwsSigner, JwsVerifier, RS256};
use serde::Serialize;
use serde_json::Value;

pub use self::master::MasterKey;
use crate::clock::Clock;
use crate::crypto::random_token;
use crate::store::{Db, DbError, Lock, StoreError, StoredKey};

/// Tokens signed by the active key are verified by any published key; `alg` must be
/// the one the key was made for (never taken from the token alone, RFC 8725 §3.1).
#[derive(Clone)]
pub struct KeyRing(Arc<Inner>);

struct Inner {
    active: ActiveKey,
    verifiers: HashMap<String, Box<dyn JwsVerifier>>,
    jwks: String,
}

struct ActiveKey {
    kid: String,
    alg: &'static str,
    signer: Box<dyn JwsSigner>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("master key: {0}")]
    Master(String),
    #[error(
        "signing key {kid} was encrypted with master key {found}, but the configured master key is {expected}"
    )]
    WrongMaster {
        kid: String,
        found: String,
        expected: String,
    },
    #[error("signing key {kid}: {reason}")]
    Corrupt { kid: String, reason: String },
    #[error("JOSE: {0}")]
    Jose(#[from] josekit::JoseError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Why a presented token was refused. Deliberately coarse: callers answer
/// `invalid_token` whatever the cause.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature or algorithm")]
    Signature,
}

/// The algorithm the first key is made for: RS256 is mandatory to implement (OIDC Core §15.1).
const DEFAULT_ALG: &str = "RS256";

impl KeyRing {
    /// Loads the published keys, creating the first one if there is none.
    pub async fn load_or_init(
        db: &Db,
        master: &MasterKey,
        clock: &Clock,
    ) -> Result<Self, KeyError> {
        let mut keys = db.signing_keys().published().await?;
        if !keys
            .iter()
            .any(|k| k.state == "active" && k.alg == DEFAULT_ALG)
        {
            db.locked(Lock::SigningKeys, async {
                // Another replica may have created it while we waited for the lock.
                let current = db.signing_keys().published().await?;
                if !current
                    .iter()
                    .any(|k| k.state == "active" && k.alg == DEFAULT_ALG)
                {
                    let key = generate(DEFAULT_ALG, master, clock)?;
                    db.signing_keys().add(&key).await?;
                    tracing::info!(kid = %key.kid, alg = %key.alg, "created a signing key");
                }
                Ok::<_, KeyError>(())
            })
            .await??;
            keys = db.signing_keys().published().await?;
        }
        Self::from_stored(&keys, master)
    }

    fn from_stored(keys: &[StoredKey], master: &MasterKey) -> Result<Self, KeyError> {
        let mut verifiers = HashMap::new();
        let mut public = Vec::new();
        let mut active = None;
        for key in keys {
            let corrupt = |reason: String| KeyError::Corrupt {
                kid: key.kid.clone(),
                reason,
            };
            let jwk =
                Jwk::from_bytes(key.public_jwk.as_bytes()).map_err(|e| corrupt(e.to_string()))?;
            let alg = known_alg(&key.alg)
                .ok_or_else(|| corrupt(format!("unsupported alg {}", key.alg)))?;
            verifiers.insert(key.kid.clone(), verifier(alg, &jwk)?);
            public.push(Value::Object(jwk.into()));
            // The newest active key signs (keys are ordered oldest first).
            if key.state == "active" {
                if key.master_key_id != master.id() {
                    return Err(KeyError::WrongMaster {
                        kid: key.kid.clone(),
                        found: key.master_key_id.clone(),
                        expected: master.id().to_owned(),
                    });
                }
                let private = master.decrypt(&key.private_jwe)?;
                let private = Jwk::from_bytes(&private).map_err(|e| corrupt(e.to_string()))?;
                active = Some(ActiveKey {
                    kid: key.kid.clone(),
                    alg,
                    signer: signer(alg, &private)?,
                });
            }
        }
        let active = active.ok_or_else(|| KeyError::Corrupt {
            kid: "-".to_owned(),
            reason: "no active signing key".to_owned(),
        })?;
        let jwks = serde_json::json!({ "keys": public }).to_string();
        Ok(Self(Arc::new(Inner {
            active,
            verifiers,
            jwks,
        })))
    }

    /// A compact JWS of `claims` with the active key; `typ` is `JWT` for ID tokens and
    /// `at+jwt` for access tokens (RFC 9068 §2.1).
    pub fn sign(&self, typ: &str, claims: &impl Serialize) -> Result<String, KeyError> {
        let key = &self.0.active;
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(key.kid.clone());
        let payload = serde_json::to_vec(claims).map_err(|e| KeyError::Corrupt {
            kid: key.kid.clone(),
            reason: e.to_string(),
        })?;
        Ok(josekit::jws::serialize_compact(
            &payload,
            &header,
            &*key.signer,
        )?)
    }

    /// Verifies a token signed by one of our published keys; returns its claims and
    /// `typ`. Expiry and audience are the caller's to check.
    pub fn verify(
        &self,
        token: &str,
    ) -> Result<(serde_json::Map<String, Value>, Option<String>), VerifyError> {
        let (payload, header) = josekit::jws::deserialize_compact_with_selector(token, |header| {
            // No verifier (no kid, unknown kid) makes josekit refuse the token.
            Ok(header
                .key_id()
                .and_then(|kid| self.0.verifiers.get(kid))
                .map(|v| &**v))
        })
        .map_err(|e| match e {
            josekit::JoseError::InvalidSignature(_)
            | josekit::JoseError::UnsupportedSignatureAlgorithm(_) => VerifyError::Signature,
            _ => VerifyError::Malformed,
        })?;
        let claims: serde_json::Map<String, Value> =
            serde_json::from_slice(&payload).map_err(|_| VerifyError::Malformed)?;
        let typ = header.token_type().map(str::to_owned);
        Ok((claims, typ))
    }

    /// The JWKS document: public keys only.
    pub fn jwks(&self) -> &str {
        &self.0.jwks
    }

    /// Algorithms the ring signs ID tokens with (for discovery).
    pub fn signing_algs(&self) -> Vec<&'static str> {
        vec![self.0.active.alg]
    }
}

fn known_alg(alg: &str) -> Option<&'static str> {
    match alg {
        "RS256" => Some("RS256"),
        _ => None,
    }
}

fn signer(alg: &str, private: &Jwk) -> Result<Box<dyn JwsSigner>, KeyError> {
    match alg {
        "RS256" => Ok(Box::new(RS256.signer_from_jwk(private)?)),
        other => unreachable!("known_alg admitted {other}"),
    }
}

fn verifier(alg: &str, public: &Jwk) -> Result<Box<dyn JwsVerifier>, KeyError> {
    match alg {
        "RS256" => Ok(Box::new(RS256.verifier_from_jwk(public)?)),
        other => unreachable!("known_alg admitted {other}"),
    }
}

/// A new active key, its private half encrypted with the master key.
fn generate(alg: &str, master: &MasterKey, clock: &Clock) -> Result<StoredKey, KeyError> {
    let kid = random_token(&mut rand::rng(), 12);
    let (mut private, mut public) = match alg {
        "RS256" => {
            let pair = RS256.generate_key_pair(2048)?;
            (pair.to_jwk_private_key(), pair.to_jwk_public_key())
        }
        other => {
            return Err(KeyError::Corrupt {
                kid,
                reason: format!("cannot generate {other}"),
            });
        }
    };
    for jwk in [&mut private, &mut public] {
        jwk.set_key_id(kid.clone());
        jwk.set_algorithm(alg);
        jwk.set_key_use("sig");
    }
    let now = clock.now();
    Ok(StoredKey {
        kid,
        alg: alg.to_owned(),
        state: "active".to_owned(),
        private_jwe: master.encrypt(private.to_string().as_bytes())?,
        public_jwk: public.to_string(),
        master_key_id: master.id().to_owned(),
        created_at: now,
        activated_at: Some(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_ring() -> KeyRing {
        let master = MasterKey::from_bytes([7u8; 32]);
        let key = generate("RS256", &master, &Clock::system()).unwrap();
        KeyRing::from_stored(&[key], &master).unwrap()
    }

    #[test]
    fn tokens_verify_with_the_ring_and_fail_when_tampered() {
        let ring = new_ring();
        let token = ring
            .sign("at+jwt", &serde_json::json!({ "sub": "abc" }))
            .unwrap();
        let (claims, typ) = ring.verify(&token).unwrap();
        assert_eq!(claims["sub"], "abc");
        assert_eq!(typ.as_deref(), Some("at+jwt"));

        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_payload = crate::crypto::b64url(br#"{"sub":"someone-else"}"#);
        parts[1] = &forged_payload;
        assert!(ring.verify(&parts.join(".")).is_err());
        // Another ring's key is unknown here.
        let other = new_ring()
            .sign("JWT", &serde_json::json!({ "sub": "abc" }))
            .unwrap();
        assert!(ring.verify(&other).is_err());
        assert!(ring.verify("not.a.jwt").is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let ring = new_ring();
        let token = ring
            .sign("JWT", &serde_json::json!({ "sub": "abc" }))
            .unwrap();
        let kid = token.split('.').next().unwrap();
        let header: Value =
            serde_json::from_slice(&crate::crypto::b64url_decode(kid).unwrap()).unwrap();
        let none_header = serde_json::json!({ "alg": "none", "kid": header["kid"], "typ": "JWT" });
        let payload = token.split('.').nth(1).unwrap();
        let unsigned = format!(
            "{}.{}.",
            crate::crypto::b64url(none_header.to_string().as_bytes()),
            payload
        );
        assert!(ring.verify(&unsigned).is_err());
    }

    #[test]
    fn the_jwks_has_public_keys_only() {
        let ring = new_ring();
        let jwks: Value = serde_json::from_str(ring.jwks()).unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["use"], "sig");
        assert!(key["kid"].is_string());
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                key.get(private).is_none(),
                "private member {private} published"
            );
        }
    }
}
