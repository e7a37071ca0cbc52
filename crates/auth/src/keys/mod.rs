//! Signing keys: the master key that encrypts them at rest, generation, the key ring
//! every replica signs and verifies with, and the JWKS.
//!
//! Keys live in the durable store so every replica signs with the same key; the first
//! key is created under a database lock, because replicas start at the same time.

mod identifiers;
pub mod jose;
mod master;
pub mod reseal;
mod ring;
pub mod schedule;

use serde_json::Value;

pub use self::identifiers::IdentifierHasher;
use self::jose::Jwk;
pub use self::master::MasterKey;
pub use self::ring::KeyRing;
use crate::clock::Clock;
use crate::crypto::random_token;
use crate::store::{DbError, StoreError, StoredKey};

/// The JWS algorithms Tobira signs with: RS256 is mandatory to implement (OIDC Core
/// §15.1); ES256 and EdDSA (Ed25519) give smaller, faster signatures to clients that
/// ask for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Alg {
    RS256,
    ES256,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::RS256, Alg::ES256, Alg::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The left half of this hash of a token is its `at_hash` (OIDC Core §3.1.3.6): the
    /// hash of the JWS algorithm, SHA-512 for Ed25519.
    pub fn token_hash(self, token: &str) -> String {
        use sha2::Digest;
        match self {
            Self::RS256 | Self::ES256 => {
                let d = sha2::Sha256::digest(token.as_bytes());
                crate::crypto::b64url(&d[..16])
            }
            Self::EdDSA => {
                let d = sha2::Sha512::digest(token.as_bytes());
                crate::crypto::b64url(&d[..32])
            }
        }
    }
}

/// Where a signing key is in its life (`signing_keys.state`). Per algorithm: a `next`
/// key is published before it signs; the `active` key signs; a `retiring` key is still
/// published until every token it signed has expired; a `retired` key only checks
/// `id_token_hint`s, unpublished, for the longest session lifetime; a `revoked` key
/// (an emergency) is neither published nor accepted for anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyState {
    Next,
    Active,
    Retiring,
    Retired,
    Revoked,
}

impl KeyState {
    pub const ALL: [KeyState; 5] = [
        KeyState::Next,
        KeyState::Active,
        KeyState::Retiring,
        KeyState::Retired,
        KeyState::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retiring => "retiring",
            Self::Retired => "retired",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether keys in this state are in the JWKS (and verify tokens).
    pub fn is_published(self) -> bool {
        matches!(self, Self::Next | Self::Active | Self::Retiring)
    }
}

/// The times rotation keeps, from the configuration (see `keys` in the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPolicy {
    /// How long a `next` key is published before it signs.
    pub publish_ahead: time::Duration,
    /// How often every replica reloads the ring; a replica signs with a key only after
    /// publishing it this long.
    pub reload: time::Duration,
    /// How long after a key started signing the schedule publishes its successor; `None`:
    /// never on its own.
    pub rotate_every: Option<time::Duration>,
    /// How long a key stays published after it stopped signing: the longest lifetime of
    /// a token it signed (ID, access or logout token), plus one reload interval (replicas
    /// that have not reloaded yet still sign with it).
    pub retiring_for: time::Duration,
    /// How long a retired key still checks `id_token_hint`s (which may be expired): the
    /// longest session lifetime. Then its row goes.
    pub keep_retired: time::Duration,
}

impl KeyPolicy {
    pub fn from_config(config: &crate::Config) -> Self {
        use time::Duration;
        let keys = &config.keys;
        let reload = keys.reload_interval();
        let longest_token = [
            config.tokens.id_token_secs,
            config.tokens.access_token_secs,
            config.backchannel.token_secs,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let longest_session = Duration::days(config.session.remember_days.into()).max(
            Duration::hours(config.session.absolute_timeout_hours.into()),
        );
        Self {
            publish_ahead: keys.publish_ahead(),
            reload,
            rotate_every: (keys.rotate_every_days > 0)
                .then(|| Duration::days(keys.rotate_every_days.into())),
            retiring_for: Duration::seconds(longest_token.into()) + reload,
            keep_retired: longest_session,
        }
    }
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
    Jose(#[from] jose::JoseError),
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

/// Wipes a private JWK in place before it is freed: its members (`d`, `p`, `q`…) are
/// JSON strings, which `Zeroize` overwrites and empties. (The copies aws-lc makes inside
/// a signer are its own to clear, which it does when it frees them.)
fn wipe(jwk: &mut Jwk) {
    for value in jwk.values_mut() {
        if let Value::String(text) = value {
            zeroize::Zeroize::zeroize(text);
        }
    }
}

/// A new active key, its private half encrypted with the master key (the caller
/// changes its state and times for a `next` key).
pub(crate) fn generate(alg: Alg, master: &MasterKey, clock: &Clock) -> Result<StoredKey, KeyError> {
    let kid = random_token(&mut rand::rng(), 12);
    let (mut private, mut public) = jose::generate(alg)?;
    for jwk in [&mut private, &mut public] {
        jwk.insert("kid".to_owned(), Value::String(kid.clone()));
        jwk.insert("alg".to_owned(), alg.as_str().into());
        jwk.insert("use".to_owned(), "sig".into());
    }
    // Written into a buffer that never grows (a reallocation would free a copy of the
    // private numbers unwiped), and wiped when dropped.
    let mut plaintext = zeroize::Zeroizing::new(Vec::with_capacity(16 * 1024));
    let written = serde_json::to_writer(&mut *plaintext, &private);
    wipe(&mut private);
    written.map_err(|e| KeyError::Corrupt {
        kid: kid.clone(),
        reason: e.to_string(),
    })?;
    let now = clock.now();
    Ok(StoredKey {
        kid,
        alg: alg.as_str().to_owned(),
        state: "active".to_owned(),
        private_jwe: master.encrypt(&plaintext)?,
        public_jwk: Value::Object(public).to_string(),
        master_key_id: master.id().to_owned(),
        created_at: now,
        activated_at: Some(now),
        retired_at: None,
        activate_after: None,
        retire_after: None,
        revoked_at: None,
    })
}

/// [`generate`] for integration tests, which write key rows of every state themselves.
#[doc(hidden)]
pub fn generate_for_tests(
    alg: Alg,
    master: &MasterKey,
    clock: &Clock,
) -> Result<StoredKey, KeyError> {
    generate(alg, master, clock)
}

#[cfg(test)]
mod tests {
    use josekit::jwk::alg::ed::EdCurve;
    use josekit::jwk::{Jwk, KeyPair};
    use josekit::jws::{ES256, EdDSA, JwsSigner, JwsVerifier, RS256};

    use super::*;

    /// A private key's numbers are wiped before its map is freed: every member of every
    /// kind of key is emptied in place.
    #[test]
    fn wiping_a_private_jwk_empties_every_member() {
        for alg in Alg::ALL {
            let (mut private, _) = jose::generate(alg).unwrap();
            let secret = private.get("d").and_then(Value::as_str).unwrap_or_default();
            assert!(!secret.is_empty(), "{alg:?} has a private member to wipe");
            wipe(&mut private);
            assert!(private.contains_key("d"));
            for (name, value) in &private {
                if let Value::String(text) = value {
                    assert!(text.is_empty(), "{alg:?}: {name} was left");
                }
            }
        }
    }

    /// A retiring key stays published while anything it signed may still be checked: the
    /// longest token's lifetime plus one reload of every replica's ring.
    #[test]
    fn the_policy_follows_the_configuration() {
        let mut config = crate::Config::default();
        config.tokens.access_token_secs = 900;
        config.keys.reload_interval_ms = 5_000;
        let policy = KeyPolicy::from_config(&config);
        assert_eq!(policy.retiring_for, time::Duration::seconds(905));
        assert_eq!(policy.reload, time::Duration::seconds(5));
        assert_eq!(policy.rotate_every, Some(time::Duration::days(90)));
        config.keys.rotate_every_days = 0;
        assert_eq!(KeyPolicy::from_config(&config).rotate_every, None);
    }

    fn new_ring() -> KeyRing {
        let master = MasterKey::from_bytes([7u8; 32]);
        let keys: Vec<StoredKey> = Alg::ALL
            .into_iter()
            .map(|alg| generate(alg, &master, &Clock::system()).unwrap())
            .collect();
        ring_of(&keys, &master)
    }

    /// A replica's first load of these rows, on the wall clock.
    fn ring_of(keys: &[StoredKey], master: &MasterKey) -> KeyRing {
        let policy = KeyPolicy::from_config(&crate::Config::default());
        KeyRing::build(keys, master, Clock::system(), policy).unwrap()
    }

    #[test]
    fn tokens_verify_with_the_ring_and_fail_when_tampered() {
        let ring = new_ring();
        for alg in Alg::ALL {
            let token = ring
                .sign(alg, "at+jwt", &serde_json::json!({ "sub": "abc" }))
                .unwrap();
            let (claims, typ) = ring.verify(&token).unwrap();
            assert_eq!(claims["sub"], "abc", "{alg:?}");
            assert_eq!(typ.as_deref(), Some("at+jwt"));
        }
        let token = ring
            .sign(Alg::RS256, "at+jwt", &serde_json::json!({ "sub": "abc" }))
            .unwrap();

        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_payload = crate::crypto::b64url(br#"{"sub":"someone-else"}"#);
        parts[1] = &forged_payload;
        assert!(ring.verify(&parts.join(".")).is_err());
        // Another ring's key is unknown here.
        let other = new_ring()
            .sign(Alg::ES256, "JWT", &serde_json::json!({ "sub": "abc" }))
            .unwrap();
        assert!(ring.verify(&other).is_err());
        assert!(ring.verify("not.a.jwt").is_err());
    }

    /// A ring with the keys it was made from and the master key that seals them.
    fn ring_and_keys() -> (KeyRing, Vec<StoredKey>, MasterKey) {
        let master = MasterKey::from_bytes([7u8; 32]);
        let keys: Vec<StoredKey> = Alg::ALL
            .into_iter()
            .map(|alg| generate(alg, &master, &Clock::system()).unwrap())
            .collect();
        let ring = ring_of(&keys, &master);
        (ring, keys, master)
    }

    fn stored(keys: &[StoredKey], alg: Alg) -> &StoredKey {
        keys.iter().find(|k| k.alg == alg.as_str()).unwrap()
    }

    fn b64_json(value: &Value) -> String {
        crate::crypto::b64url(value.to_string().as_bytes())
    }

    /// A compact JWS with any header, signed by `signer`.
    fn forge(header: &Value, claims: &Value, signer: &dyn JwsSigner) -> String {
        let input = format!("{}.{}", b64_json(header), b64_json(claims));
        let signature = signer.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", crate::crypto::b64url(&signature))
    }

    #[test]
    fn an_hs256_token_keyed_with_our_public_rsa_key_is_refused() {
        // The classic algorithm confusion (RFC 8725 §2.1): a verifier that let the
        // token's `alg` pick the algorithm would check an HMAC keyed with the RSA public
        // key, which anyone can fetch from /jwks.
        let (ring, keys, master) = ring_and_keys();
        let rsa = stored(&keys, Alg::RS256);
        let private = Jwk::from_bytes(&master.decrypt(&rsa.private_jwe).unwrap()[..]).unwrap();
        let pair = josekit::jwk::alg::rsa::RsaKeyPair::from_jwk(&private).unwrap();
        let claims = serde_json::json!({ "sub": "admin", "iss": "x", "exp": i64::MAX });
        let header = serde_json::json!({ "alg": "HS256", "typ": "at+jwt", "kid": rsa.kid });
        for (form, public_key) in [
            ("SPKI PEM", pair.to_pem_public_key()),
            ("PKCS#1 PEM", pair.to_traditional_pem_public_key()),
            ("SPKI DER", pair.to_der_public_key()),
            ("the JWK from /jwks", rsa.public_jwk.clone().into_bytes()),
        ] {
            let hmac = josekit::jws::HS256.signer_from_bytes(&public_key).unwrap();
            let forged = forge(&header, &claims, &hmac);
            // The forgery is sound: an HS256 verifier with that key accepts it…
            let naive = josekit::jws::HS256
                .verifier_from_bytes(&public_key)
                .unwrap();
            assert!(josekit::jws::deserialize_compact(&forged, &naive).is_ok());
            // …and the ring, which binds each kid to its own algorithm, does not.
            assert!(ring.verify(&forged).is_err(), "{form}");
        }
    }

    #[test]
    fn a_token_signed_by_another_key_under_one_of_our_kids_is_refused() {
        let (ring, keys, _) = ring_and_keys();
        let claims = serde_json::json!({ "sub": "admin" });
        for alg in Alg::ALL {
            // A key of the same algorithm, not ours.
            let (impostor, impostor_public): (Box<dyn JwsSigner>, Box<dyn JwsVerifier>) = match alg
            {
                Alg::RS256 => {
                    let pair = RS256.generate_key_pair(2048).unwrap();
                    (
                        Box::new(RS256.signer_from_jwk(&pair.to_jwk_private_key()).unwrap()),
                        Box::new(RS256.verifier_from_jwk(&pair.to_jwk_public_key()).unwrap()),
                    )
                }
                Alg::ES256 => {
                    let pair = ES256.generate_key_pair().unwrap();
                    (
                        Box::new(ES256.signer_from_jwk(&pair.to_jwk_private_key()).unwrap()),
                        Box::new(ES256.verifier_from_jwk(&pair.to_jwk_public_key()).unwrap()),
                    )
                }
                Alg::EdDSA => {
                    let pair = EdDSA.generate_key_pair(EdCurve::Ed25519).unwrap();
                    (
                        Box::new(EdDSA.signer_from_jwk(&pair.to_jwk_private_key()).unwrap()),
                        Box::new(EdDSA.verifier_from_jwk(&pair.to_jwk_public_key()).unwrap()),
                    )
                }
            };
            let ours = stored(&keys, alg);
            let header =
                serde_json::json!({ "alg": alg.as_str(), "typ": "at+jwt", "kid": ours.kid });
            let forged = forge(&header, &claims, &*impostor);
            assert!(
                josekit::jws::deserialize_compact(&forged, &*impostor_public).is_ok(),
                "{alg:?}: the forgery is well formed"
            );
            assert!(
                matches!(ring.verify(&forged), Err(VerifyError::Signature)),
                "{alg:?}: a borrowed kid is not a key"
            );
            // The same header and claims signed by our own key pass: only the key differs.
            let genuine = ring.sign(alg, "at+jwt", &claims).unwrap();
            assert!(ring.verify(&genuine).is_ok(), "{alg:?}");
        }
    }

    #[test]
    fn at_hash_follows_the_algorithm() {
        assert_eq!(Alg::RS256.token_hash("x").len(), 22);
        assert_eq!(Alg::ES256.token_hash("x"), Alg::RS256.token_hash("x"));
        assert_eq!(Alg::EdDSA.token_hash("x").len(), 43);
    }

    #[test]
    fn alg_none_is_refused() {
        let ring = new_ring();
        let token = ring
            .sign(Alg::RS256, "JWT", &serde_json::json!({ "sub": "abc" }))
            .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let header: Value =
            serde_json::from_slice(&crate::crypto::b64url_decode(parts[0]).unwrap()).unwrap();
        // RFC 7519 §6: an unsecured JWT has an empty signature; some verifiers also
        // ignore the case of "none" or keep whatever signature follows.
        for none in ["none", "None", "NONE"] {
            let none_header =
                serde_json::json!({ "alg": none, "kid": header["kid"], "typ": "JWT" });
            for signature in ["", parts[2]] {
                let unsigned = format!("{}.{}.{signature}", b64_json(&none_header), parts[1]);
                assert!(ring.verify(&unsigned).is_err(), "{none} {signature:?}");
            }
        }
    }

    #[test]
    fn the_jwks_has_public_keys_only() {
        let ring = new_ring();
        let jwks: Value = serde_json::from_str(&ring.jwks()).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[0]["kty"], "RSA");
        assert_eq!(keys[0]["alg"], "RS256");
        assert!(keys[0]["n"].is_string() && keys[0]["e"].is_string());
        for key in keys {
            assert_eq!(key["use"], "sig");
            assert!(key["kid"].is_string());
            // RFC 7518 §6.2.2 / §6.3.2, RFC 8037 §2: the private members.
            for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
                assert!(
                    key.get(private).is_none(),
                    "private member {private} published: {key}"
                );
            }
        }
    }
}
