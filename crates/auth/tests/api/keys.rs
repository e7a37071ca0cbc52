//! Signing keys: one key for all replicas, created once, private part encrypted at rest.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jws::{ES256, EdDSA, JwsSigner, JwsVerifier, RS256};
use serde_json::Value;
use tobira_auth::keys::{KeyRing, MasterKey};
use tobira_auth::store::StoredKey;
use tobira_auth::{Clock, Config};

use crate::helpers::TestDb;

#[tokio::test]
async fn replicas_starting_together_create_one_signing_key_and_keep_it() {
    for test_db in TestDb::all().await {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let master = MasterKey::load_or_create(&config).unwrap();
        let db = test_db.migrated().await;
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let (db, master) = (db.clone(), MasterKey::load_or_create(&config).unwrap());
                tokio::spawn(async move {
                    KeyRing::load_or_init(&db, &master, &Clock::system())
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut jwks = Vec::new();
        for s in starts {
            jwks.push(s.await.unwrap().jwks().to_owned());
        }
        assert!(
            jwks.windows(2).all(|w| w[0] == w[1]),
            "{:?}: every replica signs with the same key",
            test_db.backend
        );
        let keys = db.signing_keys().published().await.unwrap();
        let algs: Vec<&str> = keys.iter().map(|k| k.alg.as_str()).collect();
        assert_eq!(
            algs.len(),
            3,
            "{:?}: one key per algorithm, not one per replica",
            test_db.backend
        );
        for alg in ["RS256", "ES256", "EdDSA"] {
            assert!(algs.contains(&alg), "{alg}");
        }
        for key in &keys {
            assert_private_part_sealed_and_public_part_public(key, &master);
        }
        // A restart loads the same key.
        let again = KeyRing::load_or_init(&db, &master, &Clock::system())
            .await
            .unwrap();
        assert_eq!(again.jwks(), jwks[0]);
        // The wrong master key is named, not a decryption failure deep inside.
        let other = MasterKey::from_bytes([3; 32]);
        let err = KeyRing::load_or_init(&db, &other, &Clock::system())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("master key"), "{err}");
    }
}

/// Members that only a private JWK has (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The stored public half is a public JWK; the private half is a `dir`/`A256GCM` JWE
/// under this master key in which nothing of the key shows; and it opens to the
/// private key of that same public key.
fn assert_private_part_sealed_and_public_part_public(key: &StoredKey, master: &MasterKey) {
    let public: serde_json::Map<String, Value> = serde_json::from_str(&key.public_jwk).unwrap();
    for member in PRIVATE_MEMBERS {
        assert!(
            !public.contains_key(member),
            "{}: public JWK has {member}",
            key.alg
        );
    }
    assert_eq!(public["kid"], key.kid.as_str());
    assert_eq!(public["alg"], key.alg.as_str());
    // The public value every private JWK repeats: RSA `n`, EC/OKP `x`.
    let public_value = public
        .get("n")
        .or_else(|| public.get("x"))
        .and_then(Value::as_str)
        .unwrap()
        .to_owned();

    let parts: Vec<&str> = key.private_jwe.split('.').collect();
    assert_eq!(parts.len(), 5, "{}: a compact JWE", key.alg);
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).unwrap();
    let header: Value = serde_json::from_slice(&decode(parts[0])).unwrap();
    assert_eq!(header["alg"], "dir", "{header}");
    assert_eq!(header["enc"], "A256GCM", "{header}");
    assert_eq!(header["kid"], master.id(), "{header}");
    assert_eq!(key.master_key_id, master.id());
    assert!(parts[1].is_empty(), "dir has no encrypted key");
    let ciphertext = decode(parts[3]);
    for decoded in parts.iter().map(|p| decode(p)) {
        assert!(!contains(&decoded, public_value.as_bytes()), "{}", key.alg);
        assert!(!contains(&decoded, br#""d":"#), "{}", key.alg);
    }
    assert!(
        !key.private_jwe.contains(&public_value[..16]),
        "{}",
        key.alg
    );

    // Decrypted, it is the private key of the published public key: what it signs,
    // the public key verifies.
    let opened = master.decrypt(&key.private_jwe).unwrap();
    assert_eq!(opened.len(), ciphertext.len(), "GCM keeps the length");
    let private = josekit::jwk::Jwk::from_bytes(&opened[..]).unwrap();
    assert!(
        private.parameter("d").is_some(),
        "{}: a private JWK",
        key.alg
    );
    assert_eq!(private.key_id(), Some(key.kid.as_str()));
    let public = josekit::jwk::Jwk::from_bytes(key.public_jwk.as_bytes()).unwrap();
    let (signer, verifier): (Box<dyn JwsSigner>, Box<dyn JwsVerifier>) = match key.alg.as_str() {
        "RS256" => (
            Box::new(RS256.signer_from_jwk(&private).unwrap()),
            Box::new(RS256.verifier_from_jwk(&public).unwrap()),
        ),
        "ES256" => (
            Box::new(ES256.signer_from_jwk(&private).unwrap()),
            Box::new(ES256.verifier_from_jwk(&public).unwrap()),
        ),
        "EdDSA" => (
            Box::new(EdDSA.signer_from_jwk(&private).unwrap()),
            Box::new(EdDSA.verifier_from_jwk(&public).unwrap()),
        ),
        other => panic!("unexpected alg {other}"),
    };
    let signature = signer.sign(b"a message").unwrap();
    verifier.verify(b"a message", &signature).unwrap();
}

#[tokio::test]
async fn the_jwks_is_served_with_an_etag_and_revalidated_with_304() {
    let app = crate::helpers::TestApp::spawn().await;
    let first = app.get("/jwks").await;
    assert_eq!(first.status(), 200);
    let etag = first
        .headers()
        .get("etag")
        .expect("an ETag")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10,
        "a strong, quoted tag: {etag}"
    );
    assert_eq!(
        first.headers()["cache-control"].to_str().unwrap(),
        "public, max-age=300"
    );
    let body = first.text().await.unwrap();
    assert_eq!(body, app.state.keys.jwks());
    // Another replica with the same keys sends the same bytes and the same tag.
    let replica = app.replica().await;
    let there = reqwest::get(format!("{}jwks", replica.url)).await.unwrap();
    assert_eq!(there.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(there.text().await.unwrap(), body);

    let http = reqwest::Client::new();
    for (value, status) in [
        (etag.clone(), 304),
        (format!("\"other\", W/{etag}"), 304),
        ("*".to_owned(), 304),
        ("\"stale\"".to_owned(), 200),
        ("garbage without quotes".to_owned(), 200),
    ] {
        let res = http
            .get(format!("{}jwks", app.url))
            .header("if-none-match", &value)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "If-None-Match: {value}");
        assert_eq!(res.headers()["etag"].to_str().unwrap(), etag, "{value}");
        if status == 304 {
            assert!(res.text().await.unwrap().is_empty(), "no body with a 304");
        }
    }
}

#[tokio::test]
async fn the_jwks_and_discovery_are_cached_as_long_as_configured() {
    let app = crate::helpers::TestApp::spawn_with(|c| c.keys.jwks_max_age_secs = 120).await;
    for path in ["/jwks", "/.well-known/openid-configuration"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(
            res.headers()["cache-control"].to_str().unwrap(),
            "public, max-age=120",
            "{path}"
        );
    }
}
