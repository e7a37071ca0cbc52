//! Token signing and verification per algorithm, through the key ring the OP uses.
//!
//! Run: `cargo bench -p tobira-auth --bench signing -j1`
//! (filter with `-- sign/RS256`, shorten with `-- --measurement-time 3`).
//!
//! Setup (a SQLite database in a temporary directory, migrations, one key per
//! algorithm) runs once on a tokio runtime; the measured closures are synchronous,
//! exactly as the `/token` handler calls `KeyRing::sign`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use tobira_auth::Clock;
use tobira_auth::keys::{Alg, KeyPolicy, KeyRing, MasterKey};
use tobira_auth::store::Db;

/// Claims shaped like a real ID token (OIDC Core §2) for a member signed in with a
/// password, so the payload size (and so the hashing cost) is realistic.
fn id_token_claims(alg: Alg) -> Value {
    let now = tobira_auth::Clock::system().now().unix_timestamp();
    json!({
        "iss": "https://id.example.jp",
        "sub": "0196f1c2-7a4e-7d53-9b1e-3f0c8a2d5e71",
        "aud": "mJ3kq9VbX2tLr8YwPz5nHc",
        "exp": now + 600,
        "iat": now,
        "auth_time": now - 42,
        "nonce": "n-0S6_WzA2Mj-8a3Xk2fPq9LrT",
        "amr": ["pwd"],
        "acr": "urn:tobira:acr:pwd",
        "at_hash": alg.token_hash("eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9.example.signature"),
        "sid": "b7Qk2xN9vLmR4tYpZs8wJc",
    })
}

struct Fixture {
    ring: KeyRing,
    // Kept alive until the benchmarks end: the database file lives here.
    _dir: tempfile::TempDir,
}

fn setup() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/tobira.db?mode=rwc", dir.path().display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ring = rt.block_on(async {
        let db = Db::connect(&url, 2, Duration::from_secs(5))
            .await
            .expect("connect to SQLite");
        db.migrate().await.expect("migrate");
        let master = MasterKey::from_bytes([7u8; 32]);
        let policy = KeyPolicy::from_config(&tobira_auth::Config::default());
        KeyRing::load_or_init(&db, &master, &Clock::system(), policy)
            .await
            .expect("key ring")
    });
    Fixture { ring, _dir: dir }
}

fn signing(c: &mut Criterion) {
    let fixture = setup();
    let ring = &fixture.ring;

    let mut sign = c.benchmark_group("sign");
    for alg in Alg::ALL {
        let claims = id_token_claims(alg);
        sign.bench_function(alg.as_str(), |b| {
            b.iter(|| {
                ring.sign(black_box(alg), "JWT", black_box(&claims))
                    .expect("sign")
            })
        });
    }
    sign.finish();

    let mut verify = c.benchmark_group("verify");
    for alg in Alg::ALL {
        let token = ring.sign(alg, "JWT", &id_token_claims(alg)).expect("sign");
        // Check once outside the loop that the token verifies and keeps its claims.
        let (claims, typ) = ring.verify(&token).expect("verify");
        assert_eq!(typ.as_deref(), Some("JWT"));
        assert_eq!(claims["amr"], json!(["pwd"]));
        verify.bench_function(alg.as_str(), |b| {
            b.iter(|| ring.verify(black_box(&token)).expect("verify"))
        });
    }
    verify.finish();
}

/// One RS256 signature over the same signing input, by josekit (OpenSSL, what the key
/// ring used before) and by aws-lc-rs (the library rustls already brings, which the ring
/// signs with now, through `keys::jose`), with the same 2048-bit key.
fn rs256_backends(c: &mut Criterion) {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    use josekit::jws::{JwsSigner, RS256};

    let pair = RS256.generate_key_pair(2048).expect("RSA key");
    let josekit_signer = RS256
        .signer_from_der(pair.to_der_private_key())
        .expect("josekit signer");
    let aws_key = RsaKeyPair::from_pkcs8(&pair.to_der_private_key()).expect("aws-lc-rs key");
    let rng = SystemRandom::new();
    let input = b"eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lkLmV4YW1wbGUuanAiLCJzdWIiOiIwMTk2ZjFjMi03YTRlLTdkNTMtOWIxZS0zZjBjOGEyZDVlNzEiLCJhdWQiOiJtSjNrcTlWYlgydExyOFl3UHo1bkhjIiwiZXhwIjoxNzY0OTI0MDAwLCJpYXQiOjE3NjQ5MjM0MDB9";

    let mut expected = vec![0u8; aws_key.public_modulus_len()];
    aws_key
        .sign(&RSA_PKCS1_SHA256, &rng, input, &mut expected)
        .expect("aws-lc-rs sign");
    // PKCS#1 v1.5 is deterministic: both must produce the same bytes.
    assert_eq!(josekit_signer.sign(input).expect("josekit sign"), expected);

    let mut group = c.benchmark_group("rs256_backend");
    group.bench_function("josekit_openssl", |b| {
        b.iter(|| josekit_signer.sign(black_box(input)).expect("sign"))
    });
    group.bench_function("aws_lc_rs", |b| {
        let mut sig = vec![0u8; aws_key.public_modulus_len()];
        b.iter(|| {
            aws_key
                .sign(&RSA_PKCS1_SHA256, &rng, black_box(input), &mut sig)
                .expect("sign")
        })
    });
    group.finish();
}

criterion_group!(benches, signing, rs256_backends);
criterion_main!(benches);
