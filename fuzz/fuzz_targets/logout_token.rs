//! Back-channel logout tokens as the marketplace receives them (OIDC Back-Channel Logout
//! 1.0 §2.6): any token text is refused without a panic, and any claims signed by the
//! OP's key are either refused or accepted with a subject, a `jti` and a time to remember
//! it until.
#![no_main]

mod common;

use std::sync::LazyLock;

use common::{Input, input, rsa_key};
use josekit::jws::JwsHeader;
use josekit::jws::alg::rsassa::RsassaJwsSigner;
use libfuzzer_sys::fuzz_target;
use openidconnect::core::CoreJsonWebKey;
use time::{Duration, OffsetDateTime};
use tobira_marketplace::jws::Compact;
use tobira_marketplace::logout_token::{self, Rules};

const KID: &str = "op-key";

/// The OP's signing key (made once; RSA generation is slow) and its public JWK.
static KEYS: LazyLock<(RsassaJwsSigner, CoreJsonWebKey)> = LazyLock::new(|| {
    let (signer, jwk) = rsa_key(KID);
    let public = serde_json::from_str(&jwk).expect("a JWK openidconnect reads");
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
    let text = match input(data) {
        None => return,
        // Token text as it arrives in the POST body.
        Some(Input::Token(token)) => return check(token),
        Some(Input::Claims(text)) => text,
    };
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
