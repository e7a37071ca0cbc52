//! Compact JWS as the OP signs it (RFC 7515 §7.1): split, decode, read the header, and
//! check the signature with a key of the OP's JWKS through `openidconnect`'s JWK types.
//! Which algorithms are acceptable is decided here, once, for every token from the OP.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyUse, JwsSigningAlgorithm};
use serde_json::{Map, Value};

/// The algorithms the marketplace accepts on the OP's tokens (ID tokens and logout
/// tokens alike): those the OP signs with, all asymmetric. Never `none`, never HMAC
/// (the client secret would then sign, and anyone holding it could forge).
pub const ACCEPTED_ALGS: [CoreJwsSigningAlgorithm; 3] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EdDsa,
];

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("it is not a compact JWS (three base64url parts separated by dots)")]
    NotCompact,
    #[error("its JOSE header is not a base64url-encoded JSON object")]
    Header,
    #[error("its payload is not a base64url-encoded JSON object")]
    Payload,
    #[error("it is unsigned (alg none), which is never accepted")]
    Unsigned,
    #[error("it is signed with the shared-secret algorithm {0}, which is never accepted")]
    SharedSecret(String),
    #[error("its algorithm {0} is not accepted (RS256, ES256 or EdDSA)")]
    Algorithm(String),
    #[error("its header marks parameters as critical (crit), which are not understood")]
    Critical,
    #[error("its header names no key (kid)")]
    NoKeyId,
    #[error("the OP publishes no key {kid} for {alg}")]
    UnknownKey { kid: String, alg: String },
    #[error("its signature does not verify with the OP's key {0}")]
    Signature(String),
}

/// A compact JWS, split and decoded but not yet verified.
pub struct Compact<'t> {
    /// `BASE64URL(header) '.' BASE64URL(payload)`: what the signature covers.
    signing_input: &'t str,
    signature: Vec<u8>,
    header: Map<String, Value>,
    payload: Map<String, Value>,
}

impl<'t> Compact<'t> {
    pub fn parse(token: &'t str) -> Result<Self, JwsError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            // Five parts would be a JWE: the OP does not encrypt logout tokens.
            return Err(JwsError::NotCompact);
        };
        let signing_input = &token[..header.len() + 1 + payload.len()];
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| JwsError::NotCompact)?;
        Ok(Self {
            signing_input,
            signature,
            header: json_object(header).ok_or(JwsError::Header)?,
            payload: json_object(payload).ok_or(JwsError::Payload)?,
        })
    }

    /// A header parameter as a string (`typ`, `kid`), if it is one.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// The signing algorithm, if it is one the marketplace accepts.
    pub fn alg(&self) -> Result<CoreJwsSigningAlgorithm, JwsError> {
        let named = self.header_str("alg").unwrap_or_default();
        let alg: CoreJwsSigningAlgorithm = serde_json::from_value(Value::from(named))
            .map_err(|_| JwsError::Algorithm(named.to_owned()))?;
        match alg {
            CoreJwsSigningAlgorithm::None => Err(JwsError::Unsigned),
            CoreJwsSigningAlgorithm::HmacSha256
            | CoreJwsSigningAlgorithm::HmacSha384
            | CoreJwsSigningAlgorithm::HmacSha512 => Err(JwsError::SharedSecret(named.to_owned())),
            alg if ACCEPTED_ALGS.contains(&alg) => Ok(alg),
            _ => Err(JwsError::Algorithm(named.to_owned())),
        }
    }

    /// The `kid` of a token whose header the marketplace can act on: an accepted
    /// algorithm, no critical extensions (RFC 7515 §4.1.11: a recipient that does not
    /// understand them must refuse), and a key id. `jku`, `x5u` and `jwk` are never
    /// followed: keys come from the OP's JWKS only.
    pub fn key_id(&self) -> Result<&str, JwsError> {
        self.alg()?;
        if self.header.contains_key("crit") {
            return Err(JwsError::Critical);
        }
        self.header_str("kid")
            .filter(|k| !k.is_empty())
            .ok_or(JwsError::NoKeyId)
    }

    /// Checks the signature with the first of `keys` (the OP's keys of this `kid`) that
    /// fits the token's algorithm; returns the verified payload.
    pub fn verify<'k>(
        self,
        keys: impl IntoIterator<Item = &'k CoreJsonWebKey>,
    ) -> Result<Map<String, Value>, JwsError> {
        let alg = self.alg()?;
        let kid = self.key_id()?.to_owned();
        let Some(key) = keys.into_iter().find(|k| fits(k, &kid, &alg)) else {
            return Err(JwsError::UnknownKey {
                kid,
                alg: alg_name(&alg),
            });
        };
        key.verify_signature(&alg, self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| JwsError::Signature(kid))?;
        Ok(self.payload)
    }

    /// The payload of a token that has already been verified elsewhere (the ID token,
    /// by `openidconnect`); never for deciding anything about an unverified one.
    pub fn verified_payload(self) -> Map<String, Value> {
        self.payload
    }
}

/// Whether `key` is the OP's key `kid` and made for `alg`: its type, its `use` and its
/// own `alg` must agree, so a key published for ES256 never checks a token claiming
/// RS256 (no algorithm confusion, RFC 8725 §2.1).
fn fits(key: &CoreJsonWebKey, kid: &str, alg: &CoreJwsSigningAlgorithm) -> bool {
    key.key_id().is_some_and(|id| **id == *kid)
        && alg.key_type().as_ref() == Some(key.key_type())
        && key.key_use().is_none_or(|u| u.allows_signature())
        && match key.signing_alg() {
            JsonWebKeyAlgorithm::Unspecified => true,
            JsonWebKeyAlgorithm::Algorithm(own) => own == alg,
            JsonWebKeyAlgorithm::Unsupported => false,
        }
}

fn json_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn alg_name(alg: &CoreJwsSigningAlgorithm) -> String {
    serde_json::to_value(alg)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token(header: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(r#"{"iss":"x"}"#), b64("sig"))
    }

    #[test]
    fn only_the_ops_asymmetric_algorithms_pass_the_header_check() {
        let cases = [
            (r#"{"alg":"RS256","kid":"k"}"#, Ok("k")),
            (r#"{"alg":"ES256","kid":"k"}"#, Ok("k")),
            (r#"{"alg":"EdDSA","kid":"k"}"#, Ok("k")),
            (r#"{"alg":"none","kid":"k"}"#, Err(JwsError::Unsigned)),
            (
                r#"{"alg":"HS256","kid":"k"}"#,
                Err(JwsError::SharedSecret("HS256".into())),
            ),
            (
                r#"{"alg":"PS256","kid":"k"}"#,
                Err(JwsError::Algorithm("PS256".into())),
            ),
            (r#"{"kid":"k"}"#, Err(JwsError::Algorithm(String::new()))),
            (
                r#"{"alg":"RS256","kid":"k","crit":["exp"]}"#,
                Err(JwsError::Critical),
            ),
            (r#"{"alg":"RS256"}"#, Err(JwsError::NoKeyId)),
            (r#"{"alg":"RS256","kid":7}"#, Err(JwsError::NoKeyId)),
        ];
        for (header, expected) in cases {
            let t = token(header);
            let jws = Compact::parse(&t).unwrap();
            assert_eq!(jws.key_id(), expected, "{header}");
        }
    }

    #[test]
    fn anything_but_three_base64url_parts_of_json_objects_is_not_a_jws() {
        let header = b64(r#"{"alg":"RS256","kid":"k"}"#);
        let payload = b64("{}");
        for (t, expected) in [
            ("".to_owned(), JwsError::NotCompact),
            ("a.b".to_owned(), JwsError::NotCompact),
            (format!("{header}.{payload}.c.d.e"), JwsError::NotCompact),
            (format!("{header}.{payload}.c$"), JwsError::NotCompact),
            (format!("{header}=.{payload}."), JwsError::Header),
            (format!("{}.{payload}.", b64("[1]")), JwsError::Header),
            (format!("{header}.{}.", b64("\"s\"")), JwsError::Payload),
        ] {
            assert_eq!(Compact::parse(&t).err(), Some(expected), "{t}");
        }
        assert!(Compact::parse(&format!("{header}.{payload}.")).is_ok());
    }
}
