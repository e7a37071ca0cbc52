//! Signing keys: one key for all replicas, created once, private part encrypted at rest.

use tobira_auth::keys::{KeyRing, MasterKey};
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
            // At rest the private key is a JWE, not a JWK with `d`.
            assert_eq!(key.private_jwe.split('.').count(), 5);
            assert!(!key.private_jwe.contains("\"d\""));
            assert!(!key.public_jwk.contains("\"d\""));
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
