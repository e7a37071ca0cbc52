//! An upstream ID token, checked in full (OIDC Core §3.1.3.7): the signature with a key
//! of the provider's JWKS (through openidconnect's JWK type), the algorithm, `iss`,
//! `aud`/`azp`, `exp`, `iat`, `nonce`, and `at_hash` when present.
//!
//! The claims are read into a type of our own rather than openidconnect's: Apple sends
//! `email_verified` (and `is_private_email`) as the strings `"true"`/`"false"`, which
//! openidconnect refuses unless a workspace-wide lenient feature is on, and that
//! feature would loosen the marketplace's own checks of Tobira's tokens too.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreJsonWebKey, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{AccessToken, AccessTokenHash, JsonWebKey, JsonWebKeySet, JsonWebKeySetUrl};
use serde::{Deserialize, Deserializer};
use time::{Duration, OffsetDateTime};

use super::UpstreamError;
use super::http::Http;
use crate::crypto::constant_time_eq;

/// Clocks differ: `exp` and `iat` are allowed this much slack.
const LEEWAY: Duration = Duration::seconds(60);

/// A provider's keys are fetched again when a token names a key the set lacks, but at
/// most once per this long: anyone can present a token with a made-up `kid`, and must
/// not make us hammer the provider.
pub const REFETCH_INTERVAL: Duration = Duration::minutes(1);

/// A set older than this is fetched again before use (a withdrawn key must stop
/// counting).
pub const MAX_AGE: Duration = Duration::hours(1);

/// `sub` is at most 255 ASCII characters (OIDC Core §2).
const MAX_SUBJECT: usize = 255;

fn refused(why: impl Into<String>) -> UpstreamError {
    UpstreamError::Refused(why.into())
}

/// An error and its causes on one line (openidconnect's errors keep the interesting
/// part in their sources).
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A provider's published signing keys, fetched on first use.
#[derive(Default)]
pub struct KeyCache {
    held: RwLock<Option<Held>>,
    /// One fetch at a time: the others wait and use its result.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Held {
    url: String,
    /// `None` until a fetch succeeds.
    set: Option<Arc<CoreJsonWebKeySet>>,
    fetched_at: OffsetDateTime,
    /// The last fetch tried, successful or not (`REFETCH_INTERVAL` counts from it).
    tried_at: OffsetDateTime,
}

impl KeyCache {
    /// Keeps a set fetched elsewhere (by discovery).
    pub fn seed(&self, url: &str, set: CoreJsonWebKeySet, now: OffsetDateTime) {
        *self.held.write().unwrap_or_else(|e| e.into_inner()) = Some(Held {
            url: url.to_owned(),
            set: Some(Arc::new(set)),
            fetched_at: now,
            tried_at: now,
        });
    }

    fn held(&self) -> Option<Held> {
        self.held.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The keys at `url` as they stand for a token signed with `kid`: the set held, or a
    /// fresh one when it lacks `kid` or has grown old and no fetch was tried within
    /// `REFETCH_INTERVAL`. While the provider cannot be reached an old set stays in use;
    /// with no set at all, the provider is unavailable.
    pub async fn for_kid(
        &self,
        http: &Http,
        url: &str,
        kid: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Arc<CoreJsonWebKeySet>, UpstreamError> {
        let usable = |held: &Held| {
            held.url == url
                && now - held.fetched_at < MAX_AGE
                && held.set.as_ref().is_some_and(|set| {
                    kid.is_none_or(|kid| {
                        set.keys()
                            .iter()
                            .any(|k| k.key_id().is_some_and(|id| id.as_str() == kid))
                    })
                })
        };
        if let Some(set) = self.held().filter(usable).and_then(|h| h.set) {
            return Ok(set);
        }
        let _turn = self.fetching.lock().await;
        let held = self.held().filter(|h| h.url == url);
        if let Some(held) = &held
            && (usable(held) || now - held.tried_at < REFETCH_INTERVAL)
        {
            return held.set.clone().ok_or_else(|| {
                UpstreamError::Unavailable(
                    "the signing keys could not be fetched (tried within the last minute)"
                        .to_owned(),
                )
            });
        }
        let jwks_url = JsonWebKeySetUrl::new(url.to_owned())
            .map_err(|e| UpstreamError::Misconfigured(format!("jwks_uri: {e}")))?;
        let fetched = JsonWebKeySet::fetch_async(&jwks_url, http).await;
        let (next, result) = match fetched {
            Ok(set) => {
                tracing::info!(
                    keys = set.keys().len(),
                    url,
                    "fetched a provider's signing keys"
                );
                let set = Arc::new(set);
                let next = Held {
                    url: url.to_owned(),
                    set: Some(set.clone()),
                    fetched_at: now,
                    tried_at: now,
                };
                (next, Ok(set))
            }
            Err(e) => {
                let why = describe(&e);
                tracing::warn!(error = why, url, "cannot fetch a provider's signing keys");
                // An old set stays in use; the failure is remembered either way, so
                // that a provider that is down is asked at most once per interval.
                let next = match held {
                    Some(held) => Held {
                        tried_at: now,
                        ..held
                    },
                    None => Held {
                        url: url.to_owned(),
                        set: None,
                        fetched_at: now,
                        tried_at: now,
                    },
                };
                let result = next.set.clone().ok_or_else(|| {
                    UpstreamError::Unavailable(format!("cannot fetch the signing keys: {why}"))
                });
                (next, result)
            }
        };
        *self.held.write().unwrap_or_else(|e| e.into_inner()) = Some(next);
        result
    }
}

/// What the ID token must say.
pub struct Expected<'a> {
    /// The issuer (`iss` compared as a string, OIDC Core §3.1.3.7 item 2).
    pub issuer: &'a str,
    /// Also accept `iss` with (or without) a trailing slash.
    pub issuer_slash_optional: bool,
    pub client_id: &'a str,
    /// The nonce sent with the authorization request.
    pub nonce: &'a str,
    /// A fresh sign-in was asked for at this time (unix seconds): `auth_time` must be
    /// there and not before it.
    pub signed_in_after: Option<i64>,
    pub algs: &'a [CoreJwsSigningAlgorithm],
    pub now: OffsetDateTime,
}

/// The claims Tobira reads from an upstream ID token (or userinfo answer).
#[derive(Debug, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    #[serde(default, deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub iat: Option<i64>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub auth_time: Option<i64>,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub at_hash: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "bool_or_string")]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
}

/// A verified ID token: its claims, and what `at_hash` is computed with.
pub struct Verified {
    pub claims: Claims,
    alg: CoreJwsSigningAlgorithm,
    key: CoreJsonWebKey,
}

impl Verified {
    /// OIDC Core §3.1.3.8: when the token carries `at_hash`, the access token that came
    /// with it must match (a swapped access token is refused).
    pub fn check_access_token(&self, access_token: &AccessToken) -> Result<(), UpstreamError> {
        let Some(expected) = &self.claims.at_hash else {
            return Ok(());
        };
        let actual = AccessTokenHash::from_token(access_token, &self.alg, &self.key)
            .map_err(|e| refused(format!("at_hash: {e}")))?;
        if constant_time_eq(actual.as_bytes(), expected.as_bytes()) {
            Ok(())
        } else {
            Err(refused("at_hash does not match the access token"))
        }
    }
}

/// The JOSE header fields that decide how a token is checked.
#[derive(Deserialize)]
struct Header {
    alg: serde_json::Value,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// A compact JWS split into what the signature covers, the signature, and the decoded
/// header and payload.
struct Compact<'t> {
    signing_input: &'t str,
    signature: Vec<u8>,
    header: Header,
    payload: Vec<u8>,
}

fn split(token: &str) -> Result<Compact<'_>, UpstreamError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        // Five parts would be an encrypted token: none is asked for.
        return Err(refused("the ID token is not a compact JWS"));
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| refused(format!("the ID token's {what} is not base64url")))
    };
    let header: Header = serde_json::from_slice(&decode(header, "header")?)
        .map_err(|e| refused(format!("the ID token's header: {e}")))?;
    Ok(Compact {
        signing_input: &token[..token.len() - signature.len() - 1],
        signature: decode(signature, "signature")?,
        payload: decode(payload, "payload")?,
        header,
    })
}

/// Checks `token` against `keys` (fetched again for an unknown `kid`) and `expected`.
pub async fn verify(
    token: &str,
    http: &Http,
    keys: &KeyCache,
    jwks_uri: &str,
    expected: &Expected<'_>,
) -> Result<Verified, UpstreamError> {
    let compact = split(token)?;
    let header = &compact.header;
    if header.crit.is_some() {
        // RFC 7515 §4.1.11: extensions we do not understand must be refused.
        return Err(refused("the ID token's header has critical extensions"));
    }
    // RFC 8725 §3.11: an explicitly typed token of another kind (a logout token, a JWT
    // access token) is not an ID token.
    if let Some(typ) = &header.typ {
        let typ = typ.to_ascii_lowercase();
        if typ != "jwt" && typ != "application/jwt" {
            return Err(refused(format!(
                "the token is typed {typ:?}, not an ID token"
            )));
        }
    }
    let alg: CoreJwsSigningAlgorithm = serde_json::from_value(header.alg.clone())
        .map_err(|_| refused("the ID token's algorithm is unknown"))?;
    if !expected.algs.contains(&alg) {
        return Err(refused(format!(
            "the ID token is signed with {}, which this provider does not use",
            header.alg
        )));
    }
    let kid = header.kid.as_deref();
    let set = keys.for_kid(http, jwks_uri, kid, expected.now).await?;
    let key = set
        .keys()
        .iter()
        .filter(|k| kid.is_none_or(|kid| k.key_id().is_some_and(|id| id.as_str() == kid)))
        .find(|k| {
            k.verify_signature(&alg, compact.signing_input.as_bytes(), &compact.signature)
                .is_ok()
        })
        .ok_or_else(|| match kid {
            Some(kid)
                if !set
                    .keys()
                    .iter()
                    .any(|k| k.key_id().is_some_and(|id| id.as_str() == kid)) =>
            {
                refused(format!("the provider publishes no key {kid:?}"))
            }
            _ => refused("the ID token's signature does not verify"),
        })?
        .clone();
    let claims: Claims = serde_json::from_slice(&compact.payload)
        .map_err(|e| refused(format!("the ID token's claims: {e}")))?;
    check_claims(&claims, expected)?;
    Ok(Verified { claims, alg, key })
}

/// The claim checks of OIDC Core §3.1.3.7, after the signature.
fn check_claims(claims: &Claims, expected: &Expected<'_>) -> Result<(), UpstreamError> {
    if !issuer_matches(&claims.iss, expected) {
        return Err(refused(format!(
            "the ID token is from {:?}, not {:?}",
            shorten(&claims.iss),
            expected.issuer
        )));
    }
    // Item 3: we must be an audience, and every other audience must be trusted: we
    // trust none, so a token minted for several clients is refused.
    if claims.aud.is_empty() || claims.aud.iter().any(|a| a != expected.client_id) {
        return Err(refused("the ID token is not for this client alone (aud)"));
    }
    // Items 4-5: an authorized party, if named, must be us.
    if claims
        .azp
        .as_deref()
        .is_some_and(|azp| azp != expected.client_id)
    {
        return Err(refused("the ID token was issued to another client (azp)"));
    }
    let now = expected.now.unix_timestamp();
    let exp = claims
        .exp
        .ok_or_else(|| refused("the ID token has no expiry (exp)"))?;
    if now >= exp.saturating_add(LEEWAY.whole_seconds()) {
        return Err(refused("the ID token has expired"));
    }
    if claims
        .iat
        .is_some_and(|iat| iat > now.saturating_add(LEEWAY.whole_seconds()))
    {
        return Err(refused("the ID token was issued in the future (iat)"));
    }
    // Item 11: the nonce ties the token to this browser's authorization request (a
    // token replayed from another flow carries another nonce).
    let nonce_ok = claims
        .nonce
        .as_deref()
        .is_some_and(|n| constant_time_eq(n.as_bytes(), expected.nonce.as_bytes()));
    if expected.nonce.is_empty() || !nonce_ok {
        return Err(refused("the ID token's nonce does not match this sign-in"));
    }
    // OIDC Core §3.1.3.7 item 13: with `max_age` asked, `auth_time` says whether the
    // provider really signed the member in again.
    if let Some(after) = expected.signed_in_after {
        let fresh = claims
            .auth_time
            .is_some_and(|t| t >= after.saturating_sub(LEEWAY.whole_seconds()));
        if !fresh {
            return Err(refused(
                "a fresh sign-in was asked for, and the provider answered from an older one (auth_time)",
            ));
        }
    }
    check_subject(&claims.sub)
}

fn issuer_matches(iss: &str, expected: &Expected<'_>) -> bool {
    iss == expected.issuer
        || (expected.issuer_slash_optional
            && iss.trim_end_matches('/') == expected.issuer.trim_end_matches('/')
            && iss.len().abs_diff(expected.issuer.len()) <= 1)
}

/// `sub`: present, at most 255 characters, nothing unprintable (it is stored and shown
/// in the console's linked accounts).
pub fn check_subject(sub: &str) -> Result<(), UpstreamError> {
    if sub.is_empty() || sub.len() > MAX_SUBJECT || sub.chars().any(char::is_control) {
        return Err(refused("the subject (sub) is missing or malformed"));
    }
    Ok(())
}

/// A value for a message: at most 80 characters, escaped by `{:?}` where it is used.
fn shorten(value: &str) -> String {
    value.chars().take(80).collect()
}

/// `aud` is a string or an array of strings (OIDC Core §2).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// A NumericDate (RFC 7519 §2): seconds, possibly with a fraction.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<serde_json::Number>::deserialize(d)?;
    value
        .map(|n| {
            n.as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .ok_or_else(|| serde::de::Error::custom("not a NumericDate"))
        })
        .transpose()
}

/// A boolean claim as a JSON boolean or as the string `"true"`/`"false"` (Apple sends
/// both forms). Anything else is an error, not a guess.
pub fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        Bool(bool),
        Text(String),
    }
    match Option::<Lenient>::deserialize(d)? {
        None => Ok(None),
        Some(Lenient::Bool(b)) => Ok(Some(b)),
        Some(Lenient::Text(s)) => match s.as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            other => Err(serde::de::Error::custom(format!(
                "expected true or false, found {:?}",
                shorten(other)
            ))),
        },
    }
}

#[cfg(test)]
pub(super) mod tests {
    use josekit::jwk::alg::rsa::RsaKeyPair;
    use josekit::jws::{JwsHeader, RS256};
    use josekit::jwt::JwtPayload;
    use serde_json::json;

    use super::*;

    /// A signing key and its JWKS, as a provider would publish it.
    pub struct TestKey {
        pair: RsaKeyPair,
        pub kid: String,
    }

    impl TestKey {
        pub fn new(kid: &str) -> Self {
            Self {
                pair: RsaKeyPair::generate(2048).expect("rsa key"),
                kid: kid.to_owned(),
            }
        }

        pub fn jwks(&self) -> serde_json::Value {
            let mut jwk = self.pair.to_jwk_public_key();
            jwk.set_key_id(&self.kid);
            jwk.set_algorithm("RS256");
            jwk.set_key_use("sig");
            json!({ "keys": [serde_json::to_value(jwk.as_ref()).expect("jwk")] })
        }

        pub fn set(&self) -> CoreJsonWebKeySet {
            serde_json::from_value(self.jwks()).expect("set")
        }

        pub fn sign(&self, claims: serde_json::Value) -> String {
            self.sign_with(claims, &self.kid, Some("JWT"))
        }

        pub fn sign_with(&self, claims: serde_json::Value, kid: &str, typ: Option<&str>) -> String {
            let mut header = JwsHeader::new();
            header.set_key_id(kid);
            if let Some(typ) = typ {
                header.set_token_type(typ);
            }
            let payload =
                JwtPayload::from_map(claims.as_object().expect("object").clone()).expect("payload");
            let signer = RS256
                .signer_from_der(self.pair.to_der_private_key())
                .expect("signer");
            josekit::jwt::encode_with_signer(&payload, &header, &signer).expect("sign")
        }
    }

    pub const NOW: i64 = 1_800_000_000;

    pub fn claims() -> serde_json::Value {
        json!({
            "iss": "https://op.example",
            "sub": "user-1",
            "aud": "client-1",
            "exp": NOW + 300,
            "iat": NOW,
            "nonce": "n-0S6_WzA2Mj",
            "email": "a@example.jp",
            "email_verified": true,
        })
    }

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "https://op.example",
            issuer_slash_optional: false,
            client_id: "client-1",
            nonce: "n-0S6_WzA2Mj",
            signed_in_after: None,
            algs: &[CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
            now: OffsetDateTime::from_unix_timestamp(NOW).expect("time"),
        }
    }

    /// Verifies against a cache seeded with `key` (no network: the URL is never asked
    /// within the refetch interval).
    async fn check(
        key: &TestKey,
        token: &str,
        expected: &Expected<'_>,
    ) -> Result<Verified, UpstreamError> {
        let cache = KeyCache::default();
        cache.seed("http://127.0.0.1:9/jwks", key.set(), expected.now);
        let http = Http::new(std::time::Duration::from_secs(1)).expect("http");
        verify(token, &http, &cache, "http://127.0.0.1:9/jwks", expected).await
    }

    fn with(
        mut claims: serde_json::Value,
        name: &str,
        value: serde_json::Value,
    ) -> serde_json::Value {
        if value.is_null() {
            claims.as_object_mut().expect("object").remove(name);
        } else {
            claims[name] = value;
        }
        claims
    }

    #[tokio::test]
    async fn a_good_token_passes_and_gives_its_claims() {
        let key = TestKey::new("k1");
        let v = check(&key, &key.sign(claims()), &expected())
            .await
            .expect("valid");
        assert_eq!(v.claims.sub, "user-1");
        assert_eq!(v.claims.email.as_deref(), Some("a@example.jp"));
        assert_eq!(v.claims.email_verified, Some(true));
    }

    #[tokio::test]
    async fn a_fresh_sign_in_asked_for_needs_a_recent_auth_time() {
        let key = TestKey::new("k1");
        let asked = Expected {
            signed_in_after: Some(NOW - 5),
            ..expected()
        };
        // The provider signed the member in again after it was asked.
        let fresh = key.sign(with(claims(), "auth_time", json!(NOW - 2)));
        assert!(check(&key, &fresh, &asked).await.is_ok());
        // It answered from a session of an hour ago, or says nothing of when.
        for token in [
            key.sign(with(claims(), "auth_time", json!(NOW - 3600))),
            key.sign(claims()),
        ] {
            let e = check(&key, &token, &asked).await.err();
            assert!(matches!(e, Some(UpstreamError::Refused(_))), "{e:?}");
        }
        // Without the request, an old sign-in is fine.
        let old = key.sign(with(claims(), "auth_time", json!(NOW - 3600)));
        assert!(check(&key, &old, &expected()).await.is_ok());
    }

    #[tokio::test]
    async fn every_failed_check_is_a_refusal() {
        let key = TestKey::new("k1");
        let other = TestKey::new("k1");
        let cases: Vec<(&str, String)> = vec![
            (
                "wrong issuer",
                key.sign(with(claims(), "iss", json!("https://evil.example"))),
            ),
            (
                "issuer with slash",
                key.sign(with(claims(), "iss", json!("https://op.example/"))),
            ),
            (
                "wrong audience",
                key.sign(with(claims(), "aud", json!("client-2"))),
            ),
            (
                "extra audience",
                key.sign(with(claims(), "aud", json!(["client-1", "client-2"]))),
            ),
            ("no audience", key.sign(with(claims(), "aud", json!(null)))),
            (
                "other azp",
                key.sign(with(claims(), "azp", json!("client-2"))),
            ),
            ("expired", key.sign(with(claims(), "exp", json!(NOW - 61)))),
            ("no exp", key.sign(with(claims(), "exp", json!(null)))),
            (
                "future iat",
                key.sign(with(claims(), "iat", json!(NOW + 120))),
            ),
            (
                "wrong nonce",
                key.sign(with(claims(), "nonce", json!("other"))),
            ),
            ("no nonce", key.sign(with(claims(), "nonce", json!(null)))),
            ("no sub", key.sign(with(claims(), "sub", json!(null)))),
            (
                "long sub",
                key.sign(with(claims(), "sub", json!("x".repeat(256)))),
            ),
            (
                "control sub",
                key.sign(with(claims(), "sub", json!("a\nb"))),
            ),
            (
                "bad boolean",
                key.sign(with(claims(), "email_verified", json!("yes"))),
            ),
            ("forged signature", other.sign(claims())),
            ("unknown kid", key.sign_with(claims(), "k9", Some("JWT"))),
            (
                "logout token typed",
                key.sign_with(claims(), "k1", Some("logout+jwt")),
            ),
            ("two parts", "a.b".to_owned()),
            ("garbage", "!!.!!.!!".to_owned()),
        ];
        for (what, token) in cases {
            let e = check(&key, &token, &expected()).await.err();
            assert!(
                matches!(e, Some(UpstreamError::Refused(_))),
                "{what}: {e:?}"
            );
        }
        // Within the leeway, a just-expired token still passes.
        let token = key.sign(with(claims(), "exp", json!(NOW - 30)));
        check(&key, &token, &expected()).await.expect("leeway");
    }

    #[tokio::test]
    async fn unsigned_and_shared_secret_tokens_are_refused() {
        let key = TestKey::new("k1");
        let signed = key.sign(claims());
        let mut parts = signed.split('.');
        let (_, payload) = (parts.next(), parts.next().expect("payload"));
        for alg in ["none", "HS256", "ES256", "RS384"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#));
            let token = format!("{header}.{payload}.");
            let e = check(&key, &token, &expected()).await.err();
            assert!(matches!(e, Some(UpstreamError::Refused(_))), "{alg}");
        }
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1","crit":["x"]}"#);
        let e = check(&key, &format!("{header}.{payload}.AA"), &expected())
            .await
            .err();
        assert!(matches!(e, Some(UpstreamError::Refused(_))));
    }

    #[tokio::test]
    async fn a_trailing_slash_is_tolerated_only_where_the_preset_says() {
        let key = TestKey::new("k1");
        let lenient = Expected {
            issuer: "https://op.example",
            issuer_slash_optional: true,
            ..expected()
        };
        for iss in ["https://op.example", "https://op.example/"] {
            let token = key.sign(with(claims(), "iss", json!(iss)));
            check(&key, &token, &lenient).await.expect(iss);
        }
        for iss in [
            "https://op.example//",
            "https://op.example.evil",
            "https://op.exampl",
        ] {
            let token = key.sign(with(claims(), "iss", json!(iss)));
            assert!(check(&key, &token, &lenient).await.is_err(), "{iss}");
        }
    }

    #[test]
    fn booleans_may_be_strings_but_nothing_else() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "bool_or_string")]
            b: Option<bool>,
        }
        let parse = |text: &str| serde_json::from_str::<T>(text).map(|t| t.b);
        assert_eq!(parse(r#"{"b":true}"#).ok(), Some(Some(true)));
        assert_eq!(parse(r#"{"b":"true"}"#).ok(), Some(Some(true)));
        assert_eq!(parse(r#"{"b":false}"#).ok(), Some(Some(false)));
        assert_eq!(parse(r#"{"b":"false"}"#).ok(), Some(Some(false)));
        assert_eq!(parse(r#"{"b":null}"#).ok(), Some(None));
        assert_eq!(parse(r#"{}"#).ok(), Some(None));
        for bad in [
            r#"{"b":"TRUE"}"#,
            r#"{"b":"1"}"#,
            r#"{"b":1}"#,
            r#"{"b":"yes"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn at_hash_binds_the_access_token() {
        let key = TestKey::new("k1");
        // at_hash of "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y" (OIDC Core A.3).
        let token = key.sign(with(claims(), "at_hash", json!("77QmUPtjPfzWtF2AnpK9RQ")));
        let v = check(&key, &token, &expected()).await.expect("valid");
        v.check_access_token(&AccessToken::new(
            "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y".to_owned(),
        ))
        .expect("matches");
        assert!(
            v.check_access_token(&AccessToken::new("other".to_owned()))
                .is_err()
        );
    }

    /// A JWKS endpoint serving `jwks`, counting its requests.
    async fn jwks_server(jwks: serde_json::Value) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, hits)
    }

    #[tokio::test]
    async fn unknown_kids_refetch_the_keys_at_most_once_a_minute() {
        use std::sync::atomic::Ordering;
        let key = TestKey::new("k1");
        let (url, hits) = jwks_server(key.jwks()).await;
        let http = Http::new(std::time::Duration::from_secs(5)).expect("http");
        let cache = KeyCache::default();
        let t0 = OffsetDateTime::from_unix_timestamp(NOW).expect("time");
        let fetches = || hits.load(Ordering::SeqCst);
        // First use fetches.
        let set = cache
            .for_kid(&http, &url, Some("k1"), t0)
            .await
            .expect("keys");
        assert_eq!((set.keys().len(), fetches()), (1, 1));
        // Known kid: from the cache. Forged kids: one refetch per minute.
        cache
            .for_kid(&http, &url, Some("k1"), t0)
            .await
            .expect("keys");
        assert_eq!(fetches(), 1);
        let t1 = t0 + REFETCH_INTERVAL;
        for kid in ["forged-1", "forged-2", "forged-3"] {
            cache
                .for_kid(&http, &url, Some(kid), t1)
                .await
                .expect("keys");
        }
        assert_eq!(fetches(), 2);
        // An old set is fetched again.
        cache
            .for_kid(&http, &url, Some("k1"), t1 + MAX_AGE)
            .await
            .expect("keys");
        assert_eq!(fetches(), 3);
    }

    #[tokio::test]
    async fn keys_that_cannot_be_fetched_make_the_provider_unavailable() {
        let http = Http::new(std::time::Duration::from_secs(2)).expect("http");
        let cache = KeyCache::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
        drop(listener);
        let t0 = OffsetDateTime::from_unix_timestamp(NOW).expect("time");
        let e = cache.for_kid(&http, &url, Some("k1"), t0).await.err();
        assert!(matches!(e, Some(UpstreamError::Unavailable(_))), "{e:?}");
    }
}
