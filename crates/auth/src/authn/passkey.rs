//! Passkeys (WebAuthn, through webauthn-rs): the relying party Tobira is to
//! authenticators, and the ceremonies' state between their two requests.
//!
//! The RP ID is the issuer's host. An issuer whose host is an IP address cannot have
//! passkeys (browsers refuse WebAuthn there), so Tobira starts without them, says so once,
//! and shows no passkey buttons. A ceremony's state lives in the ephemeral store (any
//! replica can finish it), bound to the browser that started it and taken once: webauthn-rs
//! does not make a state single-use, and a response replayed against a state still
//! stored would verify again.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use time::Duration;
use url::Url;
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::crypto::{constant_time_eq, sha256_hex};
use crate::state::AppState;
use crate::store::EphemeralError;

/// A ceremony must finish within this (the browser's own timeout is the same; webauthn-rs
/// does not enforce it on the server).
pub const CEREMONY_LIFETIME: Duration = Duration::minutes(5);

/// The relying party for `issuer`, or `None` (with the reason) when the issuer's host
/// cannot have passkeys.
pub fn relying_party(issuer: &str) -> Result<Arc<Webauthn>, String> {
    let origin = Url::parse(issuer).map_err(|e| e.to_string())?;
    let host = match origin.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => {
            return Err(format!(
                "the issuer's host {} is an IP address: browsers allow passkeys only on a \
                 domain name (localhost included), so passkeys are off",
                origin.host_str().unwrap_or_default()
            ));
        }
        None => return Err("the issuer has no host".to_owned()),
    };
    // The origin is the issuer's scheme, host and port (a path in the issuer is not part
    // of it).
    let origin = Url::parse(&origin.origin().ascii_serialization()).map_err(|e| e.to_string())?;
    WebauthnBuilder::new(&host, &origin)
        .and_then(|b| b.rp_name("Tobira").build())
        .map(Arc::new)
        .map_err(|e| format!("passkeys are off: {e}"))
}

/// A browser's answer is a few hundred bytes (an RSA signature and a long credential id
/// included, a few KiB): anything larger is not one.
const MAX_ANSWER_JSON: usize = 16 * 1024;

/// A browser's answer to a ceremony (webauthn-rs's `PublicKeyCredential` for a sign-in,
/// `RegisterPublicKeyCredential` for a registration), if the form field holds one.
/// webauthn-rs then checks it against the ceremony's state.
pub fn parse_answer<T: DeserializeOwned>(json: &str) -> Option<T> {
    if json.is_empty() || json.len() > MAX_ANSWER_JSON {
        return None;
    }
    serde_json::from_str(json).ok()
}

/// The kinds of ceremony, each under its own keys.
#[derive(Clone, Copy, Debug)]
pub enum Ceremony {
    /// Registering a passkey in the console.
    Register,
    /// Signing in with a passkey (usernameless: the button, or the browser's autofill).
    SignIn,
    /// A passkey as the second step after a password.
    SecondStep,
}

impl Ceremony {
    fn prefix(self) -> &'static str {
        match self {
            Self::Register => "passkey_reg",
            Self::SignIn => "passkey_signin",
            Self::SecondStep => "passkey_2nd",
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Kept<T> {
    /// SHA-256 of what binds the ceremony: the browser's binding cookie, or the console
    /// session's id.
    bound_to: String,
    state: T,
}

/// Keeps a ceremony's `state` under `id` (random, sent to the page) for
/// `CEREMONY_LIFETIME`, bound to `bound_to` (a value only the starting browser holds).
pub async fn keep<T: Serialize>(
    state: &AppState,
    kind: Ceremony,
    id: &str,
    bound_to: &str,
    ceremony: &T,
) -> Result<(), EphemeralError> {
    let bytes = serde_json::to_vec(&Kept {
        bound_to: sha256_hex(bound_to),
        state: ceremony,
    })
    .map_err(|_| EphemeralError::Malformed)?;
    state
        .ephemeral
        .put_bounded(
            &format!("{}:{id}", kind.prefix()),
            &bytes,
            state.clock.now() + CEREMONY_LIFETIME,
        )
        .await
}

/// Takes a ceremony's state (once: a second take finds nothing, so a replayed response
/// meets no state); `None` when unknown, expired, taken, or bound to someone else.
pub async fn take<T: DeserializeOwned>(
    state: &AppState,
    kind: Ceremony,
    id: &str,
    bound_to: &str,
) -> Result<Option<T>, EphemeralError> {
    if id.is_empty() || id.len() > 64 {
        return Ok(None);
    }
    let Some(bytes) = state
        .ephemeral
        .take(&format!("{}:{id}", kind.prefix()))
        .await?
    else {
        return Ok(None);
    };
    let Ok(kept) = serde_json::from_slice::<Kept<T>>(&bytes) else {
        return Ok(None);
    };
    let presented = sha256_hex(bound_to);
    Ok(constant_time_eq(presented.as_bytes(), kept.bound_to.as_bytes()).then_some(kept.state))
}

#[cfg(test)]
mod tests {
    use super::{parse_answer, relying_party};

    #[test]
    fn an_ip_address_issuer_has_no_passkeys_and_a_domain_has() {
        assert!(relying_party("http://localhost:8080").is_ok());
        assert!(relying_party("https://id.example.jp").is_ok());
        assert!(relying_party("https://id.example.jp/tenant").is_ok());
        let refused = relying_party("http://127.0.0.1:8080").unwrap_err();
        assert!(refused.contains("IP address"), "{refused}");
        assert!(relying_party("http://[::1]:8080").is_err());
    }

    #[test]
    fn an_answer_is_read_up_to_16_kib_and_no_further() {
        // Valid JSON of an exact length: a string of `n - 2` letters in quotes.
        let answer = |n: usize| format!("\"{}\"", "a".repeat(n - 2));
        assert_eq!(
            parse_answer::<String>(&answer(16_384)).map(|s| s.len()),
            Some(16_382)
        );
        assert_eq!(parse_answer::<String>(&answer(16_385)), None);
        assert_eq!(parse_answer::<String>(&answer(2)).as_deref(), Some(""));
        assert_eq!(parse_answer::<String>(""), None);
        assert_eq!(parse_answer::<String>("{\"id\":"), None);
    }
}
