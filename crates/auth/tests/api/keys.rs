//! Signing keys: one key for all replicas, created once, private part encrypted at rest;
//! the ring reloads rotations and signs only with keys it has published long enough.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jws::{ES256, EdDSA, JwsSigner, JwsVerifier, RS256};
use sea_orm::ConnectionTrait;
use serde_json::Value;
use time::Duration;
use tobira_auth::keys::{Alg, KeyPolicy, KeyRing, KeyState, MasterKey};
use tobira_auth::store::{Db, StoredKey};
use tobira_auth::{Clock, Config};

use crate::helpers::{ClientOpts, TestDb, kid_of};
use crate::oidc::{authorize, code_from, exchange, setup_with, sign_in_for_code, userinfo_status};

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
                    KeyRing::load_or_init(&db, &master, &Clock::system(), policy())
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
        let again = KeyRing::load_or_init(&db, &master, &Clock::system(), policy())
            .await
            .unwrap();
        assert_eq!(again.jwks(), jwks[0]);
        // The wrong master key is named, not a decryption failure deep inside.
        let other = MasterKey::from_bytes([3; 32]);
        let err = KeyRing::load_or_init(&db, &other, &Clock::system(), policy())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("master key"), "{err}");
    }
}

#[tokio::test]
async fn a_start_after_an_algorithm_lost_its_only_active_key_creates_one_for_it_alone() {
    for test_db in TestDb::all().await {
        let backend = test_db.backend;
        let (db, clock, master, first) = fresh_ring(&test_db).await;
        let kids = |ring: &KeyRing| Alg::ALL.map(|alg| ring.signing_kid(alg));
        let before = kids(&first);
        // An emergency: ES256's only key revoked (`keys revoke`), nothing made in its place.
        set_state(
            &test_db.url,
            &first.signing_kid(Alg::ES256),
            KeyState::Revoked,
        )
        .await;

        clock.advance(Duration::seconds(1));
        let ring = KeyRing::load_or_init(&db, &master, &clock, policy())
            .await
            .unwrap();
        let after = kids(&ring);
        assert_eq!(after[0], before[0], "{backend:?}: RS256 keeps its key");
        assert_eq!(after[2], before[2], "{backend:?}: EdDSA keeps its key");
        assert!(
            !after[1].is_empty() && after[1] != before[1],
            "{backend:?}: a new ES256 key: {after:?}"
        );
        assert_eq!(kid_of(&sign(&ring, Alg::ES256)), after[1]);
        let rows = db.signing_keys().all().await.unwrap();
        assert_eq!(rows.len(), 4, "{backend:?}: one key added, for ES256 alone");
    }
}

#[tokio::test]
async fn signing_with_a_key_published_too_recently_is_warned_of_once() {
    let logs = crate::helpers::CapturedLogs::install();
    let test_db = TestDb::sqlite().await;
    let (db, clock, master, ring) = fresh_ring(&test_db).await;
    let old = ring.signing_kid(Alg::ES256);
    // An emergency replacement: the old key revoked, the new one active at once, so the
    // ring has no key of ES256 published here for a reload interval.
    clock.advance(Duration::seconds(1));
    let new = add_key(&db, &master, &clock, Alg::ES256, KeyState::Active).await;
    set_state(&test_db.url, &old, KeyState::Revoked).await;
    assert!(ring.refresh(&db, &master).await.unwrap());
    let warned = || {
        logs.lines()
            .iter()
            .filter(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("signing with a key published less than"))
            })
            .count()
    };
    assert_eq!(warned(), 0, "nothing signed yet");
    for _ in 0..3 {
        assert_eq!(kid_of(&sign(&ring, Alg::ES256)), new.kid);
    }
    assert_eq!(warned(), 1, "once, not at every signature");
    clock.advance(policy().reload);
    assert_eq!(kid_of(&sign(&ring, Alg::ES256)), new.kid);
    assert_eq!(warned(), 1, "published long enough now");
}

#[tokio::test]
async fn a_reload_logs_each_key_added_changed_or_removed_and_no_other() {
    let logs = crate::helpers::CapturedLogs::install();
    let test_db = TestDb::sqlite().await;
    let (db, clock, master, ring) = fresh_ring(&test_db).await;
    let (rs, es) = (ring.signing_kid(Alg::RS256), ring.signing_kid(Alg::ES256));
    let ring_lines = || -> Vec<(String, String)> {
        logs.lines()
            .iter()
            .filter_map(|l| {
                let message = l["fields"]["message"].as_str()?;
                let kid = l["fields"]["kid"].as_str()?;
                message
                    .starts_with("key ring: ")
                    .then(|| (message.to_owned(), kid.to_owned()))
            })
            .collect()
    };
    assert_eq!(ring_lines(), [], "a first load is no change");

    clock.advance(Duration::seconds(1));
    let next = add_key(&db, &master, &clock, Alg::ES256, KeyState::Next).await;
    set_state(&test_db.url, &rs, KeyState::Retiring).await;
    assert!(ring.refresh(&db, &master).await.unwrap());
    let mut lines = ring_lines();
    lines.sort();
    assert_eq!(
        lines,
        [
            ("key ring: key added".to_owned(), next.kid.clone()),
            ("key ring: key changed state".to_owned(), rs.clone()),
        ],
        "the two keys that changed, each once"
    );
    let changed = logs
        .lines()
        .into_iter()
        .find(|l| l["fields"]["message"] == "key ring: key changed state")
        .unwrap();
    assert_eq!(changed["fields"]["from"], "active");
    assert_eq!(changed["fields"]["to"], "retiring");

    let conn = sea_orm::Database::connect(&test_db.url).await.unwrap();
    conn.execute_unprepared(&format!("DELETE FROM signing_keys WHERE kid = '{es}'"))
        .await
        .unwrap();
    assert!(ring.refresh(&db, &master).await.unwrap());
    assert_eq!(
        ring_lines()[2..],
        [("key ring: key removed".to_owned(), es)],
        "only the key gone"
    );
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
async fn the_jwks_and_discovery_are_served_with_an_etag_and_revalidated_with_304() {
    let app = crate::helpers::TestApp::spawn().await;
    // Another replica with the same keys and configuration sends the same bytes and tags.
    let replica = app.replica().await;
    let http = reqwest::Client::new();
    for path in ["jwks", ".well-known/openid-configuration"] {
        let first = app.get(&format!("/{path}")).await;
        assert_eq!(first.status(), 200, "{path}");
        assert_eq!(
            first.headers()["content-type"].to_str().unwrap(),
            "application/json",
            "{path}"
        );
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
        if path == "jwks" {
            assert_eq!(body, app.state.keys.jwks());
        } else {
            let document: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(document["issuer"], app.state.config.issuer.as_str());
        }
        let there = reqwest::get(format!("{}{path}", replica.url))
            .await
            .unwrap();
        assert_eq!(there.headers()["etag"].to_str().unwrap(), etag, "{path}");
        assert_eq!(there.text().await.unwrap(), body, "{path}");

        for (value, status) in [
            (etag.clone(), 304),
            (format!("\"other\", W/{etag}"), 304),
            ("*".to_owned(), 304),
            ("\"stale\"".to_owned(), 200),
            ("garbage without quotes".to_owned(), 200),
            // The other document's tag does not revalidate this one.
            (
                app.get(if path == "jwks" {
                    "/.well-known/openid-configuration"
                } else {
                    "/jwks"
                })
                .await
                .headers()["etag"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
                200,
            ),
        ] {
            let res = http
                .get(format!("{}{path}", app.url))
                .header("if-none-match", &value)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), status, "{path} If-None-Match: {value}");
            assert_eq!(res.headers()["etag"].to_str().unwrap(), etag, "{value}");
            if status == 304 {
                assert!(res.text().await.unwrap().is_empty(), "no body with a 304");
            }
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

fn policy() -> KeyPolicy {
    KeyPolicy::from_config(&Config::default())
}

/// A migrated database, a manual clock, the tests' master key, and a ring loaded from
/// them (which creates a key per algorithm).
async fn fresh_ring(test_db: &TestDb) -> (Db, Clock, MasterKey, KeyRing) {
    let (db, clock) = (test_db.migrated().await, Clock::manual_at_now());
    let master = MasterKey::from_bytes([7; 32]);
    let ring = KeyRing::load_or_init(&db, &master, &clock, policy())
        .await
        .unwrap();
    (db, clock, master, ring)
}

/// A key of `alg` written straight into the table in `state`, as the schedule or the CLI
/// on another replica would.
async fn add_key(
    db: &Db,
    master: &MasterKey,
    clock: &Clock,
    alg: Alg,
    state: KeyState,
) -> StoredKey {
    let mut key = tobira_auth::keys::generate_for_tests(alg, master, clock).unwrap();
    key.state = state.as_str().to_owned();
    if state == KeyState::Next {
        key.activated_at = None;
    }
    db.signing_keys().add(&key).await.unwrap();
    key
}

/// Moves a key to `state` behind the ring's back (an `active` key starts signing when it
/// was made).
async fn set_state(database_url: &str, kid: &str, state: KeyState) {
    let conn = sea_orm::Database::connect(database_url).await.unwrap();
    let activated = if state == KeyState::Active {
        ", activated_at = created_at"
    } else {
        ""
    };
    let done = conn
        .execute_unprepared(&format!(
            "UPDATE signing_keys SET state = '{}'{activated} WHERE kid = '{kid}'",
            state.as_str()
        ))
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1, "{kid}");
    conn.close().await.unwrap();
}

/// The `kid` in a compact JWS's header.
fn sign(ring: &KeyRing, alg: Alg) -> String {
    ring.sign(alg, "JWT", &serde_json::json!({ "sub": "abc" }))
        .unwrap()
}

#[tokio::test]
async fn a_next_key_is_published_at_the_next_refresh_and_never_signs_until_promoted() {
    for test_db in TestDb::all().await {
        let backend = test_db.backend;
        let (db, clock, master, ring) = fresh_ring(&test_db).await;
        let old = ring.signing_kid(Alg::ES256);
        assert!(!old.is_empty());
        assert!(
            !ring.refresh(&db, &master).await.unwrap(),
            "{backend:?}: nothing changed"
        );
        let (_, etag_before) = ring.jwks_response();

        clock.advance(Duration::seconds(1));
        let next = add_key(&db, &master, &clock, Alg::ES256, KeyState::Next).await;
        assert!(
            !ring.published_kids().contains(&next.kid),
            "not before a refresh"
        );
        assert!(ring.refresh(&db, &master).await.unwrap(), "{backend:?}");
        assert!(ring.published_kids().contains(&next.kid), "{backend:?}");
        assert!(ring.jwks().contains(&next.kid));
        assert!(ring.published_kids().contains(&old));
        let (_, etag_after) = ring.jwks_response();
        assert_ne!(
            etag_before, etag_after,
            "{backend:?}: the ETag follows the keys"
        );
        // Another replica reading the same rows serves the same bytes under the same tag.
        let elsewhere = KeyRing::load_or_init(&db, &master, &clock, policy())
            .await
            .unwrap();
        assert_eq!(elsewhere.jwks(), ring.jwks(), "{backend:?}");
        assert_eq!(elsewhere.jwks_response().1, etag_after, "{backend:?}");

        // Published, however long, a `next` key does not sign.
        clock.advance(policy().reload * 3);
        assert!(!ring.refresh(&db, &master).await.unwrap());
        assert_eq!(ring.signing_kid(Alg::ES256), old, "{backend:?}");
        let token = sign(&ring, Alg::ES256);
        assert_eq!(kid_of(&token), old);

        // Promoted after it was published this long, it signs from the next refresh on;
        // the key it replaced still verifies what it signed.
        set_state(&test_db.url, &old, KeyState::Retiring).await;
        set_state(&test_db.url, &next.kid, KeyState::Active).await;
        assert!(ring.refresh(&db, &master).await.unwrap(), "{backend:?}");
        assert_eq!(ring.signing_kid(Alg::ES256), next.kid, "{backend:?}");
        assert_eq!(kid_of(&sign(&ring, Alg::ES256)), next.kid);
        assert!(ring.verify(&token).is_ok(), "{backend:?}");
        assert!(!ring.refresh(&db, &master).await.unwrap());
    }
}

#[tokio::test]
async fn a_key_activated_at_once_signs_only_a_reload_interval_after_the_ring_first_saw_it() {
    for test_db in TestDb::all().await {
        let backend = test_db.backend;
        let (db, clock, master, ring) = fresh_ring(&test_db).await;
        let old = ring.signing_kid(Alg::ES256);
        let others = (ring.signing_kid(Alg::RS256), ring.signing_kid(Alg::EdDSA));

        // What `keys rotate --now` does on another replica: the new key is active at
        // once and the old one retiring.
        clock.advance(Duration::seconds(1));
        let new = add_key(&db, &master, &clock, Alg::ES256, KeyState::Active).await;
        set_state(&test_db.url, &old, KeyState::Retiring).await;
        clock.advance(Duration::seconds(1));
        assert!(ring.refresh(&db, &master).await.unwrap(), "{backend:?}");
        let published = ring.published_kids();
        assert!(published.contains(&new.kid) && published.contains(&old));

        // Relying parties that fetched the JWKS elsewhere before that replica reloaded
        // do not know the new key yet: the retiring one signs for a reload interval.
        assert_eq!(ring.signing_kid(Alg::ES256), old, "{backend:?}");
        assert_eq!(kid_of(&sign(&ring, Alg::ES256)), old);
        clock.advance(policy().reload - Duration::milliseconds(1));
        assert_eq!(ring.signing_kid(Alg::ES256), old, "{backend:?}");
        let by_old = sign(&ring, Alg::ES256);
        // Then the new key signs, without another reload.
        clock.advance(Duration::milliseconds(1));
        assert_eq!(ring.signing_kid(Alg::ES256), new.kid, "{backend:?}");
        let by_new = sign(&ring, Alg::ES256);
        assert_eq!(kid_of(&by_new), new.kid);
        for token in [&by_old, &by_new] {
            assert!(ring.verify(token).is_ok(), "{backend:?}");
        }
        // The other algorithms did not move.
        assert_eq!(
            (ring.signing_kid(Alg::RS256), ring.signing_kid(Alg::EdDSA)),
            others
        );
    }
}

#[tokio::test]
async fn a_revoked_key_leaves_the_ring_at_the_next_refresh_and_its_replacement_signs_at_once() {
    for test_db in TestDb::all().await {
        let backend = test_db.backend;
        let (db, clock, master, ring) = fresh_ring(&test_db).await;
        let old = ring.signing_kid(Alg::EdDSA);
        let token = sign(&ring, Alg::EdDSA);
        let (_, etag_before) = ring.jwks_response();

        clock.advance(Duration::seconds(1));
        let new = add_key(&db, &master, &clock, Alg::EdDSA, KeyState::Active).await;
        set_state(&test_db.url, &old, KeyState::Revoked).await;
        assert!(ring.verify(&token).is_ok(), "not before a refresh");
        assert!(ring.refresh(&db, &master).await.unwrap(), "{backend:?}");

        assert!(!ring.published_kids().contains(&old), "{backend:?}");
        assert!(!ring.jwks().contains(&old));
        assert_ne!(ring.jwks_response().1, etag_before);
        assert!(ring.verify(&token).is_err(), "{backend:?}");
        assert!(
            ring.verify_hint(&token).is_err(),
            "{backend:?}: not even as a hint"
        );
        // Nothing older can sign EdDSA any more: the replacement signs at once, as an
        // emergency wants.
        assert_eq!(ring.signing_kid(Alg::EdDSA), new.kid, "{backend:?}");
        assert!(ring.verify(&sign(&ring, Alg::EdDSA)).is_ok());
    }
}

/// Signs in through the OP with a fresh client; the tokens' key, the ID token and the
/// access token.
async fn signed_in(s: &crate::oidc::Setup) -> (String, String, openidconnect::AccessToken) {
    use openidconnect::OAuth2TokenResponse as _;
    use openidconnect::TokenResponse as _;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(s, &pending).await;
    let tokens = exchange(s, code, pending.verifier).await.unwrap();
    let id_token = tokens.id_token().unwrap().to_string();
    let access = tokens.access_token().clone();
    let kid = kid_of(&id_token);
    assert_eq!(kid_of(access.secret()), kid, "both RS256");
    assert_eq!(userinfo_status(s, &access).await, 200);
    (kid, id_token, access)
}

/// An OP whose background reloader does not run during the test (its first reload is a
/// minute away), so the test's own `refresh` sees every change.
async fn op_for_rotation() -> crate::oidc::Setup {
    setup_with(ClientOpts::default(), |c| {
        c.keys.reload_interval_ms = 60_000;
        c.tokens.access_token_alg = Alg::RS256;
    })
    .await
}

/// Replaces the RS256 key `kid` with a new active key, moving `kid` to `state`, and
/// reloads the OP's ring.
async fn replace_key(s: &crate::oidc::Setup, kid: &str, state: KeyState) -> StoredKey {
    let app = &s.app.state;
    s.app.clock().advance(Duration::seconds(1));
    let new = add_key(
        &app.db,
        &app.master,
        &app.clock,
        Alg::RS256,
        KeyState::Active,
    )
    .await;
    set_state(&app.config.database_url(), kid, state).await;
    assert!(app.keys.refresh(&app.db, &app.master).await.unwrap());
    new
}

async fn published_kids(s: &crate::oidc::Setup) -> Vec<String> {
    let jwks: Value = s.app.get("/jwks").await.json().await.unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn after_a_revoke_the_keys_tokens_fail_at_userinfo_and_as_hints_and_new_ones_work() {
    let s = op_for_rotation().await;
    let (kid, id_token, access) = signed_in(&s).await;
    assert!(published_kids(&s).await.contains(&kid));

    let new = replace_key(&s, &kid, KeyState::Revoked).await;
    let published = published_kids(&s).await;
    assert!(!published.contains(&kid), "{published:?}");
    assert!(published.contains(&new.kid), "{published:?}");
    assert_eq!(userinfo_status(&s, &access).await, 401);
    let pending = authorize(&s.rp, &[("prompt", "none"), ("id_token_hint", &id_token)]);
    let back = s.browser.get(&pending.url).await;
    assert_eq!(
        crate::helpers::callback_params(back.location.as_deref().unwrap())["error"],
        "invalid_request",
        "a hint signed by a revoked key is no hint"
    );

    // Only that key's tokens fail: the session goes on, with tokens from the new key.
    let pending = authorize(&s.rp, &[("prompt", "none")]);
    let back = s.browser.get(&pending.url).await;
    let code = code_from(&s, &back, &pending);
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let access = openidconnect::OAuth2TokenResponse::access_token(&tokens);
    assert_eq!(kid_of(access.secret()), new.kid);
    assert_eq!(userinfo_status(&s, access).await, 200);
}

#[tokio::test]
async fn a_retired_key_is_unpublished_and_refuses_access_tokens_but_still_checks_id_token_hints() {
    let s = op_for_rotation().await;
    let (kid, id_token, access) = signed_in(&s).await;

    replace_key(&s, &kid, KeyState::Retired).await;
    assert!(!published_kids(&s).await.contains(&kid));
    assert_eq!(userinfo_status(&s, &access).await, 401);
    // OIDC Core §3.1.2.1: the hint may be old, even expired; its key signs no more but
    // still says whom it was issued to.
    let pending = authorize(&s.rp, &[("prompt", "none"), ("id_token_hint", &id_token)]);
    let back = s.browser.get(&pending.url).await;
    code_from(&s, &back, &pending);
}
