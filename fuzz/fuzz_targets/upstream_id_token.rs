//! ID tokens from an upstream provider (social sign-in), checked offline against a key
//! set held in the cache: any token text is refused without a panic, and any claims
//! signed by the provider's key pass only with the expected issuer, audience and nonce.
#![no_main]

mod common;

use std::sync::LazyLock;
use std::time::Duration;

use common::{Input, input, rsa_key};
use josekit::jws::JwsHeader;
use josekit::jws::alg::rsassa::RsassaJwsSigner;
use libfuzzer_sys::fuzz_target;
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use time::OffsetDateTime;
use tobira_auth::federation::http::Http;
use tobira_auth::federation::id_token::{Expected, KeyCache, verify};

const KID: &str = "upstream-key";
/// Nothing listens there: a token naming another key makes one refused fetch, then the
/// cache remembers that it tried (the clock stands still).
const JWKS_URI: &str = "http://127.0.0.1:9/jwks";

struct Upstream {
    signer: RsassaJwsSigner,
    keys: KeyCache,
    http: Http,
    runtime: tokio::runtime::Runtime,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("a time")
}

static UPSTREAM: LazyLock<Upstream> = LazyLock::new(|| {
    let (signer, jwk) = rsa_key(KID);
    let set: CoreJsonWebKeySet =
        serde_json::from_str(&format!("{{\"keys\":[{jwk}]}}")).expect("a JWKS");
    let keys = KeyCache::default();
    keys.seed(JWKS_URI, set, now());
    Upstream {
        signer,
        keys,
        http: Http::new(Duration::from_millis(200)).expect("an HTTP client"),
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime"),
    }
});

fn check(token: &str) {
    let upstream = &*UPSTREAM;
    let expected = Expected {
        issuer: "https://accounts.example.com",
        issuer_slash_optional: true,
        client_id: "tobira-at-example",
        nonce: "n-0S6_WzA2Mj",
        signed_in_after: Some(1_779_999_000),
        algs: &[CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
        now: now(),
    };
    let verified = upstream.runtime.block_on(verify(
        token,
        &upstream.http,
        &upstream.keys,
        JWKS_URI,
        &expected,
    ));
    if let Ok(verified) = verified {
        let claims = &verified.claims;
        assert!(
            claims.iss.trim_end_matches('/') == expected.issuer,
            "{claims:?}"
        );
        assert!(
            claims.aud.iter().any(|a| a == expected.client_id),
            "{claims:?}"
        );
        assert_eq!(claims.nonce.as_deref(), Some(expected.nonce), "{claims:?}");
        assert!(!claims.sub.is_empty(), "{claims:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = match input(data) {
        None => return,
        Some(Input::Token(token)) => return check(token),
        Some(Input::Claims(text)) => text,
    };
    // Claims (JSON) the provider's key signs: reaches every claim check.
    let mut header = JwsHeader::new();
    header.set_token_type("JWT");
    header.set_key_id(KID);
    let token = josekit::jws::serialize_compact(text.as_bytes(), &header, &UPSTREAM.signer)
        .expect("signed");
    check(&token);
});
