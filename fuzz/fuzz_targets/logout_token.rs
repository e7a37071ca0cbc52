//! Back-channel logout tokens as the marketplace receives them (OIDC Back-Channel Logout
//! 1.0 §2.6): any token text is refused without a panic, and any claims signed by the
//! OP's key are either refused or accepted with a subject, a `jti` and a time to remember
//! it until.
#![no_main]

use std::sync::LazyLock;

use josekit::jws::alg::rsassa::RsassaJwsSigner;
use josekit::jws::{JwsHeader, RS256};
use libfuzzer_sys::fuzz_target;
use openidconnect::core::CoreJsonWebKey;
use time::{Duration, OffsetDateTime};
use tobira_marketplace::jws::Compact;
use tobira_marketplace::logout_token::{self, Rules};

const KID: &str = "op-key";

/// The OP's signing key (made once; RSA generation is slow) and its public JWK.
static KEYS: LazyLock<(RsassaJwsSigner, CoreJsonWebKey)> = LazyLock::new(|| {
    let pair = RS256.generate_key_pair(2048).expect("an RSA key");
    let signer = RS256
        .signer_from_der(pair.to_der_private_key())
        .expect("a signer");
    let mut jwk = pair.to_jwk_public_key();
    jwk.set_key_id(KID);
    jwk.set_algorithm("RS256");
    jwk.set_key_use("sig");
    let public = serde_json::from_str(&jwk.to_string()).expect("a JWK openidconnect reads");
    (signer, public)
});

const RULES: Rules<'static> = Rules {
    issuer: "https://id.example.jp",
    client_id: "marketplace",
    max_age: Duration::minutes(2),
    skew: Duration::minutes(1),
};

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("a time")
}

fn check(token: &str) {
    let Ok(jws) = Compact::parse(token) else {
        return;
    };
    if logout_token::check_header(&jws).is_err() {
        return;
    }
    let Ok(claims) = jws.verify([&KEYS.1]) else {
        return;
    };
    if let Ok(accepted) = logout_token::validate(&claims, &RULES, now()) {
        assert!(!accepted.jti.is_empty());
        assert!(accepted.remember_until > now() - RULES.skew);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode % 2 == 0 {
        // Token text as it arrives in the POST body.
        check(text);
        return;
    }
    // Claims (JSON) the OP's key signs: reaches every claim check.
    let Ok(claims) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
    else {
        return;
    };
    let mut header = JwsHeader::new();
    header.set_token_type("logout+jwt");
    header.set_key_id(KID);
    let payload = serde_json::to_vec(&claims).expect("JSON");
    let token = josekit::jws::serialize_compact(&payload, &header, &KEYS.0).expect("signed");
    check(&token);
    // The claim checks alone, as after any verification.
    let _ = logout_token::validate(&claims, &RULES, now());
});
