//! Sign in with Apple's own ways: the client secret is an ES256 JWT signed with the
//! team's key (kept and renewed well before it expires), the member's name arrives
//! only on the first authorization (the `user` form field), and refresh tokens are
//! revoked when the member deletes the account.

use std::sync::Mutex;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::UpstreamError;
use super::http::Http;
use crate::keys::jose::{self, JoseError, Signer};

/// The client secret's audience: Apple takes nothing else.
pub const AUDIENCE: &str = "https://appleid.apple.com";

/// A client secret is made valid this long (Apple allows up to six months; a day
/// limits what a leaked one is worth)…
pub const LIFETIME: Duration = Duration::days(1);

/// …and replaced when less than this is left, so that none expires while a request
/// carries it (an expired one is `invalid_client`).
pub const RENEW_BEFORE: Duration = Duration::hours(1);

/// The `user` field is a small JSON object; anything larger is not it.
const MAX_USER_FIELD: usize = 4096;

/// Makes and keeps the client secret JWT.
pub struct AppleSecret {
    signer: Signer,
    team_id: String,
    key_id: String,
    client_id: String,
    current: Mutex<Option<(String, OffsetDateTime)>>,
}

impl AppleSecret {
    /// From the `.p8` key Apple gave (PKCS#8 PEM, EC P-256).
    pub fn from_pem(
        pem: &[u8],
        team_id: &str,
        key_id: &str,
        client_id: &str,
    ) -> Result<Self, String> {
        let not_p8 =
            |why: String| format!("not an EC P-256 private key in PEM (Apple's .p8 file): {why}");
        let der = private_key_der(pem).ok_or_else(|| not_p8("no private key block".to_owned()))?;
        let signer = Signer::es256_from_der(&der).map_err(|e| not_p8(e.to_string()))?;
        Ok(Self {
            signer,
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            client_id: client_id.to_owned(),
            current: Mutex::new(None),
        })
    }

    /// The client secret to send at `now`: the one held, or a new one when it has
    /// less than `RENEW_BEFORE` left.
    pub fn current(&self, now: OffsetDateTime) -> Result<String, UpstreamError> {
        let mut held = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((secret, expires)) = held.as_ref()
            && *expires - now > RENEW_BEFORE
        {
            return Ok(secret.clone());
        }
        let expires = now + LIFETIME;
        let secret = self.sign(now, expires).map_err(|e| {
            UpstreamError::Misconfigured(format!("cannot sign Apple's client secret: {e}"))
        })?;
        *held = Some((secret.clone(), expires));
        Ok(secret)
    }

    /// Header `{"alg":"ES256","kid":key_id}`; claims iss = team, iat, exp, aud = Apple,
    /// sub = the Services ID (Apple's "Creating a client secret").
    fn sign(&self, now: OffsetDateTime, expires: OffsetDateTime) -> Result<String, JoseError> {
        let claims = json!({
            "iss": self.team_id,
            "iat": now.unix_timestamp(),
            "exp": expires.unix_timestamp(),
            "aud": AUDIENCE,
            "sub": self.client_id,
        });
        jose::sign_compact(
            &self.signer,
            &self.key_id,
            None,
            claims.to_string().as_bytes(),
        )
    }

    /// Revokes `token` (a refresh token) at Apple's revocation endpoint. Apple answers
    /// 200 even for a token already invalid.
    pub async fn revoke(
        &self,
        http: &Http,
        url: &str,
        client_id: &str,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<(), UpstreamError> {
        let secret = self.current(now)?;
        let form = [
            ("client_id", client_id),
            ("client_secret", secret.as_str()),
            ("token", token),
            ("token_type_hint", "refresh_token"),
        ];
        let answer = http.send(http.post(url).form(&form)).await?;
        if answer.status().is_success() {
            return Ok(());
        }
        #[derive(Deserialize)]
        struct Error {
            error: String,
        }
        let error = serde_json::from_slice::<Error>(answer.body())
            .map(|e| e.error)
            .unwrap_or_default();
        let error: String = error.chars().take(64).collect();
        if error == "invalid_client" {
            Err(UpstreamError::Misconfigured(
                "Apple refused the client secret (revocation)".to_owned(),
            ))
        } else {
            Err(UpstreamError::Refused(format!(
                "Apple refused the revocation: HTTP {} {error}",
                answer.status()
            )))
        }
    }
}

/// The name in Apple's `user` form field (first authorization only):
/// `{"name":{"firstName":"…","lastName":"…"},"email":"…"}`. It comes through the
/// browser unsigned, so only the name is taken from it (the address comes from the
/// signed ID token), and anything malformed is ignored. Gives (given, family).
pub fn name_from_user_field(user: &str) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct User {
        #[serde(default)]
        name: Option<Name>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Name {
        #[serde(default)]
        first_name: Option<String>,
        #[serde(default)]
        last_name: Option<String>,
    }
    if user.len() > MAX_USER_FIELD {
        return (None, None);
    }
    match serde_json::from_str::<User>(user) {
        Ok(User { name: Some(name) }) => (name.first_name, name.last_name),
        _ => (None, None),
    }
}

/// The DER inside a PEM private key block (`PRIVATE KEY`, PKCS#8, as in Apple's `.p8`
/// files; or `EC PRIVATE KEY`, SEC 1), wiped when dropped.
fn private_key_der(pem: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let text = std::str::from_utf8(pem).ok()?;
    let (body, label) = ["PRIVATE KEY", "EC PRIVATE KEY"]
        .into_iter()
        .find_map(|label| {
            let (_, rest) = text.split_once(&format!("-----BEGIN {label}-----"))?;
            Some((rest, label))
        })?;
    let (body, _) = body.split_once(&format!("-----END {label}-----"))?;
    // Sized once: a growing buffer would free copies of the key unwiped.
    let mut kept = zeroize::Zeroizing::new(String::with_capacity(body.len()));
    kept.extend(body.chars().filter(|c| !c.is_whitespace()));
    let body = kept;
    let der = base64::engine::general_purpose::STANDARD.decode(body.as_bytes());
    der.ok().map(zeroize::Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
    use josekit::jws::ES256;

    use super::*;

    fn key() -> EcKeyPair {
        EcKeyPair::generate(EcCurve::P256).expect("key")
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).expect("time")
    }

    #[test]
    fn the_client_secret_is_an_es256_jwt_apple_accepts() {
        let pair = key();
        let apple = AppleSecret::from_pem(
            &pair.to_pem_private_key(),
            "TEAM123456",
            "KEY1234567",
            "jp.example.web",
        )
        .expect("key");
        let secret = apple.current(at(0)).expect("secret");
        let verifier = ES256
            .verifier_from_pem(pair.to_pem_public_key())
            .expect("verifier");
        let (payload, header) =
            josekit::jwt::decode_with_verifier(&secret, &verifier).expect("verifies");
        assert_eq!(header.algorithm(), Some("ES256"));
        assert_eq!(header.key_id(), Some("KEY1234567"));
        let claims = payload.claims_set();
        assert_eq!(claims["iss"], "TEAM123456");
        assert_eq!(claims["sub"], "jp.example.web");
        assert_eq!(claims["aud"], "https://appleid.apple.com");
        assert_eq!(claims["iat"], at(0).unix_timestamp());
        assert_eq!(claims["exp"], (at(0) + LIFETIME).unix_timestamp());
        // Another key does not verify it.
        let other = ES256
            .verifier_from_pem(key().to_pem_public_key())
            .expect("verifier");
        assert!(josekit::jwt::decode_with_verifier(&secret, &other).is_err());
    }

    #[test]
    fn the_client_secret_is_kept_then_renewed_well_before_it_expires() {
        let pair = key();
        let apple = AppleSecret::from_pem(&pair.to_pem_private_key(), "T", "K", "c").expect("key");
        let first = apple.current(at(0)).expect("secret");
        let almost = (LIFETIME - RENEW_BEFORE).whole_seconds();
        assert_eq!(apple.current(at(almost - 1)).expect("secret"), first);
        let renewed = apple.current(at(almost)).expect("secret");
        assert_ne!(renewed, first);
        assert_eq!(apple.current(at(almost + 60)).expect("secret"), renewed);
    }

    #[test]
    fn only_an_ec_p256_private_key_is_taken() {
        let p384 = EcKeyPair::generate(EcCurve::P384).expect("key");
        let rsa = josekit::jwk::alg::rsa::RsaKeyPair::generate(2048).expect("key");
        for (what, pem) in [
            ("P-384", p384.to_pem_private_key()),
            ("RSA", rsa.to_pem_private_key()),
            ("public key", key().to_pem_public_key()),
            (
                "garbage",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec(),
            ),
            ("empty", Vec::new()),
        ] {
            assert!(
                AppleSecret::from_pem(&pem, "T", "K", "c").is_err(),
                "{what}"
            );
        }
        // The traditional EC form is the same key.
        AppleSecret::from_pem(&key().to_traditional_pem_private_key(), "T", "K", "c")
            .expect("sec1");
    }

    #[test]
    fn the_user_field_gives_a_name_or_nothing() {
        assert_eq!(
            name_from_user_field(
                r#"{"name":{"firstName":"Taro","lastName":"Yamada"},"email":"x@privaterelay.appleid.com"}"#
            ),
            (Some("Taro".to_owned()), Some("Yamada".to_owned()))
        );
        assert_eq!(
            name_from_user_field(r#"{"name":{"firstName":"太郎"}}"#),
            (Some("太郎".to_owned()), None)
        );
        for bad in [
            "",
            "null",
            "not json",
            r#"{"name":"Taro"}"#,
            r#"{"name":{"firstName":1}}"#,
            r#"{"email":"x@example.jp"}"#,
        ] {
            assert_eq!(name_from_user_field(bad), (None, None), "{bad}");
        }
        let huge = format!(r#"{{"name":{{"firstName":"{}"}}}}"#, "a".repeat(5000));
        assert_eq!(name_from_user_field(&huge), (None, None));
    }
}
