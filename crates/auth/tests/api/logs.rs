//! What the logs say about failures: enough to see an attack (account or a keyed
//! pseudonym of what was typed, client, address, reason), never a secret or an address
//! someone typed.

use tobira_auth::keys::{IdentifierHasher, MasterKey};

use crate::helpers::{CapturedLogs, TestDb};
use crate::oidc::{EMAIL, PASSWORD, authorize, setup};

#[tokio::test]
async fn failed_sign_ins_and_client_authentications_are_logged_without_secrets() {
    let logs = CapturedLogs::install();
    let s = setup(Default::default()).await;
    let pending = authorize(&s.rp, &[]);
    let login = s.browser.follow(s.browser.get(&pending.url).await).await;
    let wrong = "not-the-password-93";
    for email in [EMAIL, "stranger@example.jp"] {
        let page = s.browser.post_login(&login, email, wrong).await;
        assert_eq!(page.status, 401);
    }
    let bad_secret = "definitely-not-the-secret";
    let res = s
        .http
        .0
        .post(format!("{}/token", s.app.issuer()))
        .basic_auth(&s.client_id, Some(bad_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let back = s.browser.submit_login(&login, EMAIL, PASSWORD, false).await;
    assert_eq!(back.status, 303);

    let lines = logs.lines();
    let failures: Vec<_> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "sign-in failed")
        .collect();
    assert_eq!(failures.len(), 2, "{}", logs.text());
    let ids = &s.app.state.identifiers;
    let user = s.app.user(EMAIL).await.unwrap();
    assert_eq!(failures[0]["level"], "WARN");
    assert_eq!(failures[0]["fields"]["account"], user.id.0.to_string());
    assert_eq!(failures[0]["fields"]["reason"], "wrong password");
    assert_eq!(failures[0]["fields"]["identifier"], ids.pseudonym(EMAIL));
    assert_eq!(failures[0]["fields"]["ip"], "127.0.0.1");
    assert_eq!(failures[0]["fields"]["client_id"], s.client_id);
    assert_eq!(failures[1]["fields"]["reason"], "unknown account");
    assert_eq!(
        failures[1]["fields"]["identifier"],
        ids.pseudonym("stranger@example.jp")
    );
    assert!(failures[1]["fields"].get("account").is_none());

    let client_failure = lines
        .iter()
        .find(|l| l["fields"]["message"] == "client authentication failed")
        .expect("the bad client secret is logged");
    assert_eq!(client_failure["level"], "WARN");
    assert_eq!(client_failure["fields"]["client_id"], s.client_id);
    assert_eq!(client_failure["fields"]["ip"], "127.0.0.1");

    let success = lines
        .iter()
        .find(|l| l["fields"]["message"] == "signed in with a password")
        .expect("the sign-in is logged");
    assert_eq!(success["fields"]["ip"], "127.0.0.1");

    let text = logs.text();
    for secret in [wrong, PASSWORD, bad_secret, EMAIL, "stranger@example.jp"] {
        assert!(!text.contains(secret), "{secret} appears in the logs");
    }
}

#[tokio::test]
async fn the_pseudonym_key_is_made_once_and_kept_sealed_by_the_master_key() {
    let here = TestDb::sqlite().await;
    let db = here.migrated().await;
    let clock = tobira_auth::Clock::manual_at_now();
    let master = MasterKey::from_bytes([7; 32]);
    let first = IdentifierHasher::load_or_init(&db, &master, &clock)
        .await
        .unwrap();
    let again = IdentifierHasher::load_or_init(&db, &master, &clock)
        .await
        .unwrap();
    assert_eq!(
        first.pseudonym("Hanako@Example.jp "),
        again.pseudonym("hanako@example.jp")
    );
    assert_ne!(
        first.pseudonym("a@example.jp"),
        first.pseudonym("b@example.jp")
    );
    // Another master key cannot read it, and does not quietly make a new one.
    let other = MasterKey::from_bytes([8; 32]);
    assert!(
        IdentifierHasher::load_or_init(&db, &other, &clock)
            .await
            .is_err()
    );
    // Another deployment (database) has its own key.
    let there = TestDb::sqlite().await;
    let elsewhere = there.migrated().await;
    let theirs = IdentifierHasher::load_or_init(&elsewhere, &master, &clock)
        .await
        .unwrap();
    assert_ne!(
        theirs.pseudonym("a@example.jp"),
        first.pseudonym("a@example.jp")
    );
}
