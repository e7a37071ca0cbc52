//! The links store (social sign-in) on SQLite and PostgreSQL: links made, found, listed,
//! used and removed with their history line and mail; an identity held by one account
//! only, even when two links are made at once; accounts a provider creates (nothing
//! written when the address is taken); the pre-hijacking take-over; the last way in kept;
//! deletion revoking Apple's token by a durable job and the purge removing the links; and
//! the first-verification rule through a real password reset.

use std::sync::Arc;

use time::Duration;
use tobira_auth::Clock;
use tobira_auth::domain::{Email, User, UserId, UserStatus};
use tobira_auth::store::{
    AuditEvent, Db, FactorChange, LinkRepo, Linking, LoginEvent, LoginResult, MAIL_QUEUE,
    NewFederatedLink, NewSession, NewUser, NewVerification, PasskeyRemoval, QueuedMail,
    ReregistrationBlock, StoreError, StoredPasskey, StoredTotp, Unlinking,
};
use uuid::Uuid;

use crate::helpers::{TestApp, TestDb};
use crate::recovery::{NEW_PASSWORD, forgot, reset_link, reset_with};

const GOOGLE: &str = "https://accounts.google.com";
const APPLE: &str = "https://appleid.apple.com";
const REMOVED_SUBJECT: &str = "【Tobira】以前のログイン方法を削除しました";

fn link_of(provider: &str, issuer: &str, subject: &str) -> NewFederatedLink {
    NewFederatedLink {
        provider: provider.to_owned(),
        issuer: issuer.to_owned(),
        subject: subject.to_owned(),
        email: Some("hanako@example.jp".to_owned()),
        sealed_refresh_token: None,
    }
}

fn apple_link(subject: &str, sealed: &str) -> NewFederatedLink {
    NewFederatedLink {
        sealed_refresh_token: Some(sealed.to_owned()),
        ..link_of("apple", APPLE, subject)
    }
}

/// The audit record of a deletion the store is asked for directly.
fn deletion_record(clock: &Clock, user: UserId) -> tobira_auth::store::AuditEvent {
    use tobira_auth::admin::audit::{Context, Target, event};
    let target = Target::User(user);
    event(
        clock.now(),
        &Context::system(),
        "user.delete",
        target,
        serde_json::json!({}),
    )
}

/// A history line for `method` with a mail whose payload is `mail`.
fn change(user: UserId, clock: &Clock, result: LoginResult, mail: &str) -> FactorChange {
    FactorChange {
        event: LoginEvent {
            id: Uuid::new_v4(),
            user,
            at: clock.now(),
            ip: "192.0.2.1".to_owned(),
            user_agent: "tests".to_owned(),
            device_hash: String::new(),
            method: "fed:google".to_owned(),
            result,
            new_device: false,
        },
        mail: Some(QueuedMail {
            payload: mail.to_owned(),
        }),
    }
}

/// The audit record of an account `create_account` or `register` made (here: by
/// `system`).
fn created(user: UserId, clock: &Clock) -> AuditEvent {
    let ctx = tobira_auth::admin::audit::Context::system();
    let target = tobira_auth::admin::audit::Target::User(user);
    tobira_auth::admin::audit::event(
        clock.now(),
        &ctx,
        "user.create",
        target,
        serde_json::json!({}),
    )
}

fn new_user(email: &str, password: Option<&str>, verified: bool) -> NewUser {
    NewUser {
        email: Email::parse(email).unwrap(),
        email_verified: verified,
        password_hash: password.map(str::to_owned),
        display_name: "山田 花子".to_owned(),
        locale: "ja".to_owned(),
    }
}

async fn add_user(db: &Db, clock: &Clock, email: &str, password: Option<&str>) -> User {
    let insert = db
        .users()
        .add(clock, &mut rand::rng(), new_user(email, password, true));
    insert.await.unwrap()
}

/// An account a provider made: no password, one link.
async fn federated(db: &Db, clock: &Clock, email: &str, verified: bool, subject: &str) -> User {
    db.links()
        .create_account(
            clock,
            new_user(email, Some("ignored: never stored"), verified),
            link_of("google", GOOGLE, subject),
            |u| change(u.id, clock, LoginResult::Enrolled, "created"),
            |u| created(u.id, clock),
        )
        .await
        .unwrap()
}

async fn add_passkey(db: &Db, clock: &Clock, user: UserId, cred_id: &str) {
    db.passkeys()
        .add(
            clock.now(),
            StoredPasskey {
                cred_id: cred_id.to_owned(),
                user,
                name: cred_id.to_owned(),
                credential: "{}".to_owned(),
                created_at: clock.now(),
                last_used_at: None,
            },
            change(user, clock, LoginResult::Enrolled, "passkey added"),
        )
        .await
        .unwrap();
}

/// Every second step and a remembered device.
async fn add_second_steps(db: &Db, clock: &Clock, user: UserId) {
    let two_step = db.two_step();
    two_step
        .enable_totp(
            clock.now(),
            user,
            StoredTotp {
                secret_enc: "sealed".to_owned(),
                last_step: 1,
            },
            vec!["code-1".to_owned(), "code-2".to_owned()],
            None,
            change(user, clock, LoginResult::Enrolled, "totp on"),
        )
        .await
        .unwrap();
    two_step
        .enable_email(
            clock.now(),
            user,
            vec![],
            None,
            change(user, clock, LoginResult::Enrolled, "email on"),
        )
        .await
        .unwrap();
    two_step
        .remember_device(
            clock.now(),
            user,
            "device",
            "remembered".to_owned(),
            clock.now() + Duration::days(30),
        )
        .await
        .unwrap();
}

async fn add_session(db: &Db, clock: &Clock, user: UserId) {
    let create = db.sessions().create(
        clock,
        &mut rand::rng(),
        NewSession {
            user_id: user,
            amr: vec!["fed".to_owned()],
            acr: "1".to_owned(),
            device_id: "device".to_owned(),
            ip: "192.0.2.1".to_owned(),
            user_agent: "tests".to_owned(),
            remember: true,
            lifetime: Duration::days(30),
        },
    );
    create.await.unwrap();
}

/// No way in but what the caller set: no link, passkey, second step, remembered device
/// or live session.
async fn assert_no_other_way_in(db: &Db, clock: &Clock, user: UserId, backend: &str) {
    assert!(db.links().list(user).await.unwrap().is_empty(), "{backend}");
    assert!(
        db.passkeys().list(user).await.unwrap().is_empty(),
        "{backend}"
    );
    assert_eq!(
        db.two_step().factors(user).await.unwrap(),
        Default::default(),
        "{backend}"
    );
    assert!(
        !db.two_step()
            .is_remembered(clock.now(), user, "device", "remembered")
            .await
            .unwrap(),
        "{backend}"
    );
    assert_eq!(
        db.sessions()
            .count_live(user, clock.now(), Duration::days(365))
            .await
            .unwrap(),
        0,
        "{backend}"
    );
}

async fn history(db: &Db, user: UserId) -> Vec<LoginEvent> {
    db.login_events().page(user, None, 100).await.unwrap()
}

async fn mails_queued(db: &Db) -> Vec<String> {
    db.jobs()
        .pending(MAIL_QUEUE)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.payload)
        .collect()
}

async fn revocations(db: &Db) -> Vec<(String, String)> {
    db.jobs()
        .pending(LinkRepo::REVOKE_QUEUE)
        .await
        .unwrap()
        .into_iter()
        .map(|j| {
            let r = LinkRepo::revocation(&j.payload).unwrap();
            (r.provider, r.sealed_token)
        })
        .collect()
}

#[tokio::test]
async fn links_are_made_found_listed_used_and_removed_with_their_trace() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let user = add_user(&db, &clock, "hanako@example.jp", Some("hash")).await;
        let links = db.links();

        let made = links
            .link(
                clock.now(),
                user.id,
                link_of("google", GOOGLE, "1001"),
                change(user.id, &clock, LoginResult::Enrolled, "linked google"),
            )
            .await
            .unwrap();
        assert_eq!(made, Linking::Linked, "{b}");
        clock.advance(Duration::minutes(1));
        let apple = links
            .link(
                clock.now(),
                user.id,
                apple_link("000123.abc", "sealed-1"),
                change(user.id, &clock, LoginResult::Enrolled, "linked apple"),
            )
            .await
            .unwrap();
        assert_eq!(apple, Linking::Linked, "{b}");

        let found = links.find(GOOGLE, "1001").await.unwrap().expect("found");
        assert_eq!(found.user, user.id, "{b}");
        assert_eq!(found.provider, "google");
        assert_eq!(found.email.as_deref(), Some("hanako@example.jp"));
        assert_eq!(found.last_used_at, None);
        // The identity is (issuer, subject), exactly: not the subject under another
        // issuer, not another case.
        assert!(links.find(APPLE, "1001").await.unwrap().is_none(), "{b}");
        assert!(links.find(GOOGLE, "1001 ").await.unwrap().is_none(), "{b}");
        assert!(
            links.find(GOOGLE, "' OR 1=1 --").await.unwrap().is_none(),
            "{b}"
        );
        assert!(
            links
                .find("HTTPS://ACCOUNTS.GOOGLE.COM", "1001")
                .await
                .unwrap()
                .is_none(),
            "{b}"
        );

        let listed = links.list(user.id).await.unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|l| l.provider.as_str())
                .collect::<Vec<_>>(),
            ["google", "apple"],
            "oldest first: {b}"
        );

        // A sign-in through it: when, and Apple's newest token.
        clock.advance(Duration::minutes(1));
        links
            .used(clock.now(), listed[1].id, Some("sealed-2".to_owned()))
            .await
            .unwrap();
        links.used(clock.now(), listed[0].id, None).await.unwrap();
        let listed = links.list(user.id).await.unwrap();
        assert_eq!(listed[0].last_used_at, Some(clock.now()), "{b}");
        assert_eq!(listed[1].last_used_at, Some(clock.now()), "{b}");

        // Unlinking writes its history line and mail, and revokes Apple's newest token.
        let unlinked = links
            .unlink(
                clock.now(),
                user.id,
                listed[1].id,
                change(user.id, &clock, LoginResult::Removed, "unlinked apple"),
            )
            .await
            .unwrap();
        assert_eq!(unlinked, Unlinking::Unlinked, "{b}");
        assert_eq!(links.list(user.id).await.unwrap().len(), 1, "{b}");
        assert!(links.find(APPLE, "000123.abc").await.unwrap().is_none());
        assert_eq!(
            revocations(&db).await,
            [("apple".to_owned(), "sealed-2".to_owned())],
            "{b}"
        );
        let lines = history(&db, user.id).await;
        assert_eq!(
            lines
                .iter()
                .map(|e| (e.result, e.method.as_str()))
                .collect::<Vec<_>>(),
            [
                (LoginResult::Removed, "fed:google"),
                (LoginResult::Enrolled, "fed:google"),
                (LoginResult::Enrolled, "fed:google"),
            ],
            "{b}"
        );
        assert_eq!(
            mails_queued(&db).await,
            ["linked google", "linked apple", "unlinked apple"],
            "{b}"
        );

        // Gone is gone: a second unlink finds nothing and writes nothing.
        let again = links
            .unlink(
                clock.now(),
                user.id,
                listed[1].id,
                change(user.id, &clock, LoginResult::Removed, "twice"),
            )
            .await
            .unwrap();
        assert_eq!(again, Unlinking::NotFound, "{b}");
        assert_eq!(history(&db, user.id).await.len(), 3, "{b}");
        assert_eq!(mails_queued(&db).await.len(), 3, "{b}");
    }
}

#[tokio::test]
async fn another_members_link_or_an_unknown_id_is_not_found_and_kept() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let owner = add_user(&db, &clock, "hanako@example.jp", Some("hash")).await;
        let intruder = add_user(&db, &clock, "taro@example.jp", Some("hash")).await;
        db.links()
            .link(
                clock.now(),
                owner.id,
                link_of("google", GOOGLE, "1001"),
                change(owner.id, &clock, LoginResult::Enrolled, "linked"),
            )
            .await
            .unwrap();
        let id = db.links().list(owner.id).await.unwrap()[0].id;
        for (user, id) in [
            (intruder.id, id),
            (owner.id, Uuid::new_v4()),
            (UserId(Uuid::new_v4()), id),
        ] {
            let tried = db
                .links()
                .unlink(
                    clock.now(),
                    user,
                    id,
                    change(user, &clock, LoginResult::Removed, "no"),
                )
                .await
                .unwrap();
            assert_eq!(tried, Unlinking::NotFound, "{b}");
        }
        assert_eq!(db.links().list(owner.id).await.unwrap().len(), 1, "{b}");
        assert!(history(&db, intruder.id).await.is_empty(), "{b}");
        assert_eq!(mails_queued(&db).await, ["linked"], "{b}");
    }
}

#[tokio::test]
async fn an_identity_linked_already_is_this_or_another_account_and_nothing_changes() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let hanako = add_user(&db, &clock, "hanako@example.jp", Some("hash")).await;
        let taro = add_user(&db, &clock, "taro@example.jp", Some("hash")).await;
        let link = async |user: &User, mail: &str| {
            db.links()
                .link(
                    clock.now(),
                    user.id,
                    link_of("google", GOOGLE, "1001"),
                    change(user.id, &clock, LoginResult::Enrolled, mail),
                )
                .await
        };
        assert_eq!(link(&hanako, "first").await.unwrap(), Linking::Linked);
        assert_eq!(
            link(&hanako, "again").await.unwrap(),
            Linking::AlreadyThis,
            "{b}"
        );
        assert_eq!(
            link(&taro, "taken").await.unwrap(),
            Linking::OtherAccount,
            "{b}"
        );
        // The same subject at another issuer is another identity.
        let elsewhere = db
            .links()
            .link(
                clock.now(),
                taro.id,
                link_of("corp", "https://idp.example.jp", "1001"),
                change(taro.id, &clock, LoginResult::Enrolled, "corp"),
            )
            .await
            .unwrap();
        assert_eq!(elsewhere, Linking::Linked, "{b}");

        assert_eq!(db.links().list(hanako.id).await.unwrap().len(), 1, "{b}");
        assert_eq!(db.links().list(taro.id).await.unwrap().len(), 1, "{b}");
        assert_eq!(history(&db, hanako.id).await.len(), 1, "{b}");
        assert_eq!(history(&db, taro.id).await.len(), 1, "{b}");
        assert_eq!(mails_queued(&db).await, ["first", "corp"], "{b}");
    }
}

#[tokio::test]
async fn of_two_links_of_one_identity_made_at_once_one_wins() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let mut users = Vec::new();
        for i in 0..6 {
            users.push(add_user(&db, &clock, &format!("m{i}@example.jp"), Some("hash")).await);
        }
        let db = Arc::new(db);
        let tries: Vec<_> = users
            .iter()
            .map(|u| {
                let (db, clock, user) = (db.clone(), clock.clone(), u.id);
                tokio::spawn(async move {
                    db.links()
                        .link(
                            clock.now(),
                            user,
                            link_of("google", GOOGLE, "contested"),
                            change(user, &clock, LoginResult::Enrolled, "linked"),
                        )
                        .await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tries {
            outcomes.push(t.await.unwrap().unwrap_or_else(|e| panic!("{b}: {e}")));
        }
        assert_eq!(
            outcomes.iter().filter(|o| **o == Linking::Linked).count(),
            1,
            "{b}: {outcomes:?}"
        );
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Linking::Linked | Linking::OtherAccount)),
            "{b}: {outcomes:?}"
        );
        let holder = db.links().find(GOOGLE, "contested").await.unwrap().unwrap();
        let winner = users[outcomes.iter().position(|o| *o == Linking::Linked).unwrap()].id;
        assert_eq!(holder.user, winner, "{b}");
        // Only the winner's change was written.
        assert_eq!(mails_queued(&db).await.len(), 1, "{b}");
        for u in &users {
            let expected = usize::from(u.id == winner);
            assert_eq!(history(&db, u.id).await.len(), expected, "{b}");
        }
    }
}

#[tokio::test]
async fn an_account_a_provider_creates_has_no_password_and_one_link() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let mut seen = None;
        let user = db
            .links()
            .create_account(
                &clock,
                new_user(
                    "Hanako@Example.jp",
                    Some("a hash the caller should not pass"),
                    true,
                ),
                link_of("google", GOOGLE, "1001"),
                |u| {
                    seen = Some(u.id);
                    change(u.id, &clock, LoginResult::Enrolled, "created")
                },
                |u| created(u.id, &clock),
            )
            .await
            .unwrap();
        assert_eq!(seen, Some(user.id), "the change names the new account: {b}");
        let stored = db.users().find_by_id(user.id).await.unwrap().unwrap();
        assert_eq!(stored.password_hash, None, "{b}");
        assert!(stored.email_verified, "{b}");
        assert_eq!(stored.status, UserStatus::Active, "{b}");
        assert_eq!(stored.email.normalized(), "hanako@example.jp");
        let link = db.links().find(GOOGLE, "1001").await.unwrap().unwrap();
        assert_eq!(link.user, user.id, "{b}");
        assert_eq!(history(&db, user.id).await.len(), 1, "{b}");
        assert_eq!(mails_queued(&db).await, ["created"], "{b}");

        // An unverified address from the provider: still an active account that signs in.
        let unverified = federated(&db, &clock, "taro@example.jp", false, "2002").await;
        let stored = db.users().find_by_id(unverified.id).await.unwrap().unwrap();
        assert!(!stored.email_verified, "{b}");
        assert_eq!(stored.status, UserStatus::Active, "{b}");
    }
}

#[tokio::test]
async fn creating_an_account_for_a_taken_address_writes_nothing() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let owner = add_user(&db, &clock, "hanako@example.jp", Some("hash")).await;
        let mut called = false;
        let tried = db
            .links()
            .create_account(
                &clock,
                // Another spelling of the same address.
                new_user("HANAKO@example.jp", None, true),
                link_of("google", GOOGLE, "1001"),
                |u| {
                    called = true;
                    change(u.id, &clock, LoginResult::Enrolled, "created")
                },
                |u| created(u.id, &clock),
            )
            .await;
        assert!(
            matches!(tried, Err(StoreError::EmailTaken)),
            "{b}: {tried:?}"
        );
        assert!(!called, "no change is made for an account not created: {b}");
        assert!(
            db.links().find(GOOGLE, "1001").await.unwrap().is_none(),
            "{b}"
        );
        assert!(db.links().list(owner.id).await.unwrap().is_empty(), "{b}");
        assert!(mails_queued(&db).await.is_empty(), "{b}");
        assert!(history(&db, owner.id).await.is_empty(), "{b}");

        // An identity linked to another account already: no second account either.
        federated(&db, &clock, "taro@example.jp", true, "2002").await;
        let twice = db
            .links()
            .create_account(
                &clock,
                new_user("jiro@example.jp", None, true),
                link_of("google", GOOGLE, "2002"),
                |u| change(u.id, &clock, LoginResult::Enrolled, "second"),
                |u| created(u.id, &clock),
            )
            .await;
        assert!(twice.is_err(), "{b}");
        assert!(
            db.users()
                .find_by_email(&Email::parse("jiro@example.jp").unwrap())
                .await
                .unwrap()
                .is_none(),
            "{b}"
        );
        assert_eq!(mails_queued(&db).await, ["created"], "{b}");
    }
}

/// An unverified sign-up (with a password, a pending verification link) that also holds
/// every other way in, as a squatter of the address might have set up.
async fn squatted_sign_up(db: &Db, clock: &Clock) -> UserId {
    let register = db.signups().register(
        clock,
        &mut rand::rng(),
        NewUser {
            email_verified: false,
            ..new_user("hanako@example.jp", Some("squatter's hash"), false)
        },
        NewVerification {
            token_hash: "v".repeat(64),
            binding_hash: "b".repeat(64),
            park: "p".repeat(32),
            expires_at: clock.now() + Duration::hours(24),
        },
        QueuedMail {
            payload: "verify".to_owned(),
        },
        |u| created(u, clock),
    );
    let user = register.await.unwrap();
    add_passkey(db, clock, user, "squatter-key").await;
    add_second_steps(db, clock, user).await;
    add_session(db, clock, user).await;
    user
}

#[tokio::test]
async fn taking_over_an_unverified_sign_up_wipes_every_way_in_and_links() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let user = squatted_sign_up(&db, &clock).await;

        let taken = db
            .links()
            .take_over_unverified(
                clock.now(),
                user,
                link_of("google", GOOGLE, "1001"),
                change(user, &clock, LoginResult::Enrolled, "taken over"),
            )
            .await
            .unwrap();
        assert!(taken, "{b}");
        let stored = db.users().find_by_id(user).await.unwrap().unwrap();
        assert_eq!(stored.password_hash, None, "the squatter's password: {b}");
        assert!(stored.email_verified, "{b}");
        assert_eq!(stored.status, UserStatus::Active, "no longer awaiting: {b}");
        assert!(db.passkeys().list(user).await.unwrap().is_empty(), "{b}");
        assert_eq!(
            db.two_step().factors(user).await.unwrap(),
            Default::default()
        );
        assert!(
            !db.two_step()
                .is_remembered(clock.now(), user, "device", "remembered")
                .await
                .unwrap()
        );
        assert_eq!(
            db.sessions()
                .count_live(user, clock.now(), Duration::days(365))
                .await
                .unwrap(),
            0,
            "{b}"
        );
        // The verification link the squatter's sign-up mailed is void.
        assert!(
            db.signups()
                .lookup(&"v".repeat(64), clock.now())
                .await
                .unwrap()
                .is_none()
        );
        let links = db.links().list(user).await.unwrap();
        assert_eq!(links.len(), 1, "{b}");
        assert_eq!(links[0].subject, "1001");
        assert_eq!(
            history(&db, user).await[0].result,
            LoginResult::Enrolled,
            "{b}"
        );
        assert_eq!(mails_queued(&db).await.last().unwrap(), "taken over", "{b}");

        // Verified now: a second take-over changes nothing.
        let queued = mails_queued(&db).await.len();
        let again = db
            .links()
            .take_over_unverified(
                clock.now(),
                user,
                link_of("facebook", "https://www.facebook.com/1", "9"),
                change(user, &clock, LoginResult::Enrolled, "again"),
            )
            .await
            .unwrap();
        assert!(!again, "{b}");
        assert_eq!(db.links().list(user).await.unwrap().len(), 1, "{b}");
        assert_eq!(mails_queued(&db).await.len(), queued, "{b}");
    }
}

#[tokio::test]
async fn a_verified_account_or_an_identity_held_elsewhere_is_not_taken_over() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let verified = add_user(&db, &clock, "taro@example.jp", Some("hash")).await;
        let tried = db
            .links()
            .take_over_unverified(
                clock.now(),
                verified.id,
                link_of("google", GOOGLE, "1001"),
                change(verified.id, &clock, LoginResult::Enrolled, "no"),
            )
            .await
            .unwrap();
        assert!(!tried, "{b}");
        let stored = db.users().find_by_id(verified.id).await.unwrap().unwrap();
        assert_eq!(stored.password_hash.as_deref(), Some("hash"), "{b}");

        // The identity is another account's: the sign-up keeps everything.
        federated(&db, &clock, "jiro@example.jp", true, "1001").await;
        let user = squatted_sign_up(&db, &clock).await;
        let tried = db
            .links()
            .take_over_unverified(
                clock.now(),
                user,
                link_of("google", GOOGLE, "1001"),
                change(user, &clock, LoginResult::Enrolled, "no"),
            )
            .await
            .unwrap();
        assert!(!tried, "{b}");
        let stored = db.users().find_by_id(user).await.unwrap().unwrap();
        assert_eq!(stored.status, UserStatus::Unverified, "{b}");
        assert_eq!(stored.password_hash.as_deref(), Some("squatter's hash"));
        assert_eq!(db.passkeys().list(user).await.unwrap().len(), 1, "{b}");
        assert!(db.two_step().factors(user).await.unwrap().any(), "{b}");
    }
}

#[tokio::test]
async fn the_last_way_in_is_never_removed() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let unlink = async |user: UserId, id: Uuid| {
            db.links()
                .unlink(
                    clock.now(),
                    user,
                    id,
                    change(user, &clock, LoginResult::Removed, "unlinked"),
                )
                .await
        };
        let remove_key = async |user: UserId, cred: &'static str| {
            db.passkeys()
                .remove(
                    clock.now(),
                    user,
                    cred,
                    change(user, &clock, LoginResult::Removed, "key removed"),
                )
                .await
        };

        // A link only.
        let only = federated(&db, &clock, "a@example.jp", true, "a").await;
        let id = db.links().list(only.id).await.unwrap()[0].id;
        assert_eq!(
            unlink(only.id, id).await.unwrap(),
            Unlinking::LastWayIn,
            "{b}"
        );
        assert_eq!(db.links().list(only.id).await.unwrap().len(), 1, "{b}");

        // A link and a passkey, no password: either goes, not both.
        let both = federated(&db, &clock, "b@example.jp", true, "b").await;
        add_passkey(&db, &clock, both.id, "key-b").await;
        assert_eq!(
            remove_key(both.id, "key-b").await.unwrap(),
            PasskeyRemoval::Removed,
            "a link is a way in: {b}"
        );
        add_passkey(&db, &clock, both.id, "key-b2").await;
        let id = db.links().list(both.id).await.unwrap()[0].id;
        assert_eq!(
            unlink(both.id, id).await.unwrap(),
            Unlinking::Unlinked,
            "{b}"
        );
        assert_eq!(
            remove_key(both.id, "key-b2").await.unwrap(),
            PasskeyRemoval::LastWayIn,
            "{b}"
        );

        // Two links: one goes, the other stays.
        let two = federated(&db, &clock, "c@example.jp", true, "c").await;
        db.links()
            .link(
                clock.now(),
                two.id,
                apple_link("c-apple", "sealed"),
                change(two.id, &clock, LoginResult::Enrolled, "linked"),
            )
            .await
            .unwrap();
        let ids: Vec<Uuid> = db
            .links()
            .list(two.id)
            .await
            .unwrap()
            .iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(unlink(two.id, ids[0]).await.unwrap(), Unlinking::Unlinked);
        assert_eq!(
            unlink(two.id, ids[1]).await.unwrap(),
            Unlinking::LastWayIn,
            "{b}"
        );

        // A password and a link: the link goes.
        let with_password = add_user(&db, &clock, "d@example.jp", Some("hash")).await;
        db.links()
            .link(
                clock.now(),
                with_password.id,
                link_of("google", GOOGLE, "d"),
                change(with_password.id, &clock, LoginResult::Enrolled, "linked"),
            )
            .await
            .unwrap();
        let id = db.links().list(with_password.id).await.unwrap()[0].id;
        assert_eq!(
            unlink(with_password.id, id).await.unwrap(),
            Unlinking::Unlinked,
            "{b}"
        );
    }
}

#[tokio::test]
async fn a_link_and_a_passkey_removed_at_once_leave_one_way_in() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = Arc::new(test_db.migrated().await);
        let clock = Clock::manual_at_now();
        for round in 0..4 {
            let user = federated(
                &db,
                &clock,
                &format!("r{round}@example.jp"),
                true,
                &format!("r{round}"),
            )
            .await;
            add_passkey(&db, &clock, user.id, &format!("key-{round}")).await;
            let id = db.links().list(user.id).await.unwrap()[0].id;
            let unlink = {
                let (db, clock) = (db.clone(), clock.clone());
                tokio::spawn(async move {
                    db.links()
                        .unlink(
                            clock.now(),
                            user.id,
                            id,
                            change(user.id, &clock, LoginResult::Removed, "u"),
                        )
                        .await
                })
            };
            let remove = {
                let (db, clock, cred) = (db.clone(), clock.clone(), format!("key-{round}"));
                tokio::spawn(async move {
                    db.passkeys()
                        .remove(
                            clock.now(),
                            user.id,
                            &cred,
                            change(user.id, &clock, LoginResult::Removed, "k"),
                        )
                        .await
                })
            };
            let unlinked = unlink.await.unwrap().unwrap_or_else(|e| panic!("{b}: {e}"));
            let removed = remove.await.unwrap().unwrap_or_else(|e| panic!("{b}: {e}"));
            let left = db.links().list(user.id).await.unwrap().len()
                + db.passkeys().list(user.id).await.unwrap().len();
            assert_eq!(left, 1, "{b}: {unlinked:?} {removed:?}");
        }
    }
}

#[tokio::test]
async fn deletion_queues_the_revocation_of_apples_token_and_the_purge_removes_links() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let user = federated(&db, &clock, "hanako@example.jp", true, "1001").await;
        db.links()
            .link(
                clock.now(),
                user.id,
                apple_link("000123.abc", "sealed-apple"),
                change(user.id, &clock, LoginResult::Enrolled, "linked"),
            )
            .await
            .unwrap();
        let bystander = federated(&db, &clock, "taro@example.jp", true, "2002").await;
        db.links()
            .link(
                clock.now(),
                bystander.id,
                apple_link("000456.def", "sealed-bystander"),
                change(bystander.id, &clock, LoginResult::Enrolled, "linked"),
            )
            .await
            .unwrap();
        assert!(revocations(&db).await.is_empty(), "{b}");

        let delete = async || {
            db.accounts()
                .delete(
                    clock.now(),
                    user.id,
                    ReregistrationBlock {
                        email_digest: "d".repeat(64),
                        until: clock.now() + Duration::days(30),
                    },
                    None,
                    &deletion_record(&clock, user.id),
                )
                .await
        };
        assert!(delete().await.unwrap(), "{b}");
        assert_eq!(
            revocations(&db).await,
            [("apple".to_owned(), "sealed-apple".to_owned())],
            "{b}"
        );
        // The links stay until the purge, without the token the job now holds; a
        // second deletion queues nothing twice.
        assert_eq!(db.links().list(user.id).await.unwrap().len(), 2, "{b}");
        assert!(!delete().await.unwrap(), "{b}");
        assert_eq!(revocations(&db).await.len(), 1, "{b}");

        clock.advance(Duration::days(1));
        let purged = db
            .accounts()
            .purge(clock.now(), clock.now(), |u| {
                let ctx = tobira_auth::admin::audit::Context::system();
                let target = tobira_auth::admin::audit::Target::User(u);
                tobira_auth::admin::audit::event(
                    clock.now(),
                    &ctx,
                    "user.purge",
                    target,
                    serde_json::json!({}),
                )
            })
            .await
            .unwrap();
        assert_eq!(purged, 1, "{b}");
        assert!(db.links().list(user.id).await.unwrap().is_empty(), "{b}");
        assert!(
            db.links().find(GOOGLE, "1001").await.unwrap().is_none(),
            "{b}"
        );
        // Another member's links are untouched.
        assert_eq!(db.links().list(bystander.id).await.unwrap().len(), 2, "{b}");
        assert_eq!(revocations(&db).await.len(), 1, "{b}");
    }
}

#[tokio::test]
async fn purging_unverified_sign_ups_keeps_a_linked_account() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let sign_up = async |email: &'static str, token: char| {
            db.signups()
                .register(
                    &clock,
                    &mut rand::rng(),
                    new_user(email, Some("hash"), false),
                    NewVerification {
                        token_hash: token.to_string().repeat(64),
                        binding_hash: "b".repeat(64),
                        park: "p".repeat(32),
                        expires_at: clock.now() + Duration::hours(24),
                    },
                    QueuedMail {
                        payload: "verify".to_owned(),
                    },
                    |u| created(u, &clock),
                )
                .await
        };
        let linked = sign_up("hanako@example.jp", 'a').await.unwrap();
        let plain = sign_up("taro@example.jp", 'b').await.unwrap();
        db.links()
            .link(
                clock.now(),
                linked,
                link_of("google", GOOGLE, "1001"),
                change(linked, &clock, LoginResult::Enrolled, "linked"),
            )
            .await
            .unwrap();
        clock.advance(Duration::days(2));
        let removed = db.signups().purge_unverified(clock.now()).await.unwrap();
        assert_eq!(removed, 1, "{b}");
        assert!(db.users().find_by_id(plain).await.unwrap().is_none(), "{b}");
        assert!(
            db.users().find_by_id(linked).await.unwrap().is_some(),
            "{b}"
        );
        assert_eq!(db.links().list(linked).await.unwrap().len(), 1, "{b}");
    }
}

/// The "earlier ways in removed" notices waiting (or, with the app's worker, the mails).
async fn notices(db: &Db) -> Vec<Uuid> {
    db.jobs()
        .pending(LinkRepo::WAYS_IN_REMOVED_QUEUE)
        .await
        .unwrap()
        .into_iter()
        .map(|j| LinkRepo::ways_in_removed(&j.payload).unwrap().user)
        .collect()
}

#[tokio::test]
async fn a_completed_reset_of_an_account_a_provider_did_not_verify_wipes_its_ways_in() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let squatted = federated(&db, &clock, "hanako@example.jp", false, "1001").await;
        db.links()
            .link(
                clock.now(),
                squatted.id,
                apple_link("000123.abc", "sealed-apple"),
                change(squatted.id, &clock, LoginResult::Enrolled, "linked"),
            )
            .await
            .unwrap();
        add_passkey(&db, &clock, squatted.id, "squatter-key").await;
        add_second_steps(&db, &clock, squatted.id).await;
        add_session(&db, &clock, squatted.id).await;
        // A provider-verified account is another matter: its reset keeps its links.
        let verified = federated(&db, &clock, "taro@example.jp", true, "2002").await;

        for user in [squatted.id, verified.id] {
            db.password_resets()
                .start(
                    clock.now(),
                    user,
                    format!("{}", user.0.simple()),
                    clock.now() + Duration::hours(1),
                    QueuedMail {
                        payload: "reset".to_owned(),
                    },
                )
                .await
                .unwrap();
            let done = db
                .password_resets()
                .complete(
                    clock.now(),
                    &format!("{}", user.0.simple()),
                    user,
                    "new hash".to_owned(),
                    QueuedMail {
                        payload: "changed".to_owned(),
                    },
                )
                .await
                .unwrap();
            assert!(done, "{b}");
        }
        assert_no_other_way_in(&db, &clock, squatted.id, &b).await;
        let stored = db.users().find_by_id(squatted.id).await.unwrap().unwrap();
        assert_eq!(stored.password_hash.as_deref(), Some("new hash"), "{b}");
        assert!(stored.email_verified, "{b}");
        assert_eq!(notices(&db).await, [squatted.id.0], "{b}");
        assert_eq!(
            revocations(&db).await,
            [("apple".to_owned(), "sealed-apple".to_owned())],
            "the squatter's Apple token is revoked: {b}"
        );
        assert_eq!(db.links().list(verified.id).await.unwrap().len(), 1, "{b}");

        // The rule applies once: links made after it survive the next reset.
        db.links()
            .link(
                clock.now(),
                squatted.id,
                link_of("google", GOOGLE, "owner's own"),
                change(squatted.id, &clock, LoginResult::Enrolled, "linked"),
            )
            .await
            .unwrap();
        db.password_resets()
            .start(
                clock.now(),
                squatted.id,
                "t".repeat(64),
                clock.now() + Duration::hours(1),
                QueuedMail {
                    payload: "reset".to_owned(),
                },
            )
            .await
            .unwrap();
        assert!(
            db.password_resets()
                .complete(
                    clock.now(),
                    &"t".repeat(64),
                    squatted.id,
                    "newer hash".to_owned(),
                    QueuedMail {
                        payload: "changed".to_owned(),
                    },
                )
                .await
                .unwrap()
        );
        assert_eq!(db.links().list(squatted.id).await.unwrap().len(), 1, "{b}");
        assert_eq!(notices(&db).await.len(), 1, "{b}");
    }
}

#[tokio::test]
async fn a_spent_reset_link_wipes_nothing() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let user = federated(&db, &clock, "hanako@example.jp", false, "1001").await;
        let done = db
            .password_resets()
            .complete(
                clock.now(),
                &"x".repeat(64),
                user.id,
                "hash".to_owned(),
                QueuedMail {
                    payload: "changed".to_owned(),
                },
            )
            .await
            .unwrap();
        assert!(!done, "{b}");
        assert_eq!(db.links().list(user.id).await.unwrap().len(), 1, "{b}");
        assert!(notices(&db).await.is_empty(), "{b}");
        let stored = db.users().find_by_id(user.id).await.unwrap().unwrap();
        assert!(!stored.email_verified, "{b}");
        assert_eq!(stored.password_hash, None, "{b}");
    }
}

/// The whole way a member meets the rule: an account someone made at a provider that did
/// not verify the address, with a link, a passkey and a signed-in browser; the address's
/// owner resets the password from the forgot page; every earlier way in is gone and the
/// owner is told, Japanese first.
#[tokio::test]
async fn the_owner_of_the_address_resetting_the_password_removes_the_squatters_ways_in() {
    let app = TestApp::spawn().await;
    let (db, clock) = (&app.state.db, app.clock());
    let email = "hanako@example.jp";
    let user = federated(db, clock, email, false, "1001").await;
    add_passkey(db, clock, user.id, "squatter-key").await;
    add_second_steps(db, clock, user.id).await;
    add_session(db, clock, user.id).await;

    let owner = app.browser();
    let page = forgot(&owner, email).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mails = app.wait_for_mails(1).await;
    let link = reset_link(&app, mails.last().unwrap());
    let done = reset_with(&owner, &link, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(done.status, 200, "{}", done.body);

    assert_no_other_way_in(db, clock, user.id, "app").await;
    assert!(app.password_works(email, NEW_PASSWORD).await);
    let reloaded = app.reload(&user).await;
    assert!(reloaded.email_verified);

    let removed = loop_for_mail(&app, REMOVED_SUBJECT).await;
    assert_eq!(removed.to, email);
    assert!(
        removed.text.contains("以前のログイン方法を削除しました"),
        "{}",
        removed.text
    );
    assert!(
        removed.text.contains("今回設定したパスワード"),
        "{}",
        removed.text
    );
    assert!(removed.text.contains("/account/linked"), "{}", removed.text);
    assert!(
        removed.html.contains("<li>パスキー</li>"),
        "{}",
        removed.html
    );
    // The job is marked done just after its mail reaches the outbox: wait for that.
    let mut pending = notices(db).await;
    for _ in 0..200 {
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        pending = notices(db).await;
    }
    assert!(
        pending.is_empty(),
        "the notice was sent and its job finished"
    );
}

/// Waits for the mail with `subject` (the notice has its own queue, which `settled`
/// does not wait for).
async fn loop_for_mail(app: &TestApp, subject: &str) -> crate::helpers::OutboxMail {
    for _ in 0..200 {
        if let Some(m) = app.outbox().into_iter().find(|m| m.subject == subject) {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no mail {subject:?} in {:?}", app.outbox());
}

#[tokio::test]
async fn the_notice_is_in_english_for_an_english_account_and_skips_a_deleted_one() {
    let app = TestApp::spawn().await;
    let (db, clock) = (&app.state.db, app.clock());
    let user = db
        .links()
        .create_account(
            clock,
            NewUser {
                locale: "en".to_owned(),
                ..new_user("taro@example.jp", None, false)
            },
            link_of("google", GOOGLE, "2002"),
            |u| change(u.id, clock, LoginResult::Enrolled, "created"),
            |u| created(u.id, clock),
        )
        .await
        .unwrap();
    db.password_resets()
        .start(
            clock.now(),
            user.id,
            "e".repeat(64),
            clock.now() + Duration::hours(1),
            QueuedMail {
                payload: String::new(),
            },
        )
        .await
        .unwrap();
    assert!(
        db.password_resets()
            .complete(
                clock.now(),
                &"e".repeat(64),
                user.id,
                "hash".to_owned(),
                QueuedMail {
                    payload: String::new(),
                },
            )
            .await
            .unwrap()
    );
    let mail = loop_for_mail(&app, "[Tobira] We removed the earlier ways to sign in").await;
    assert_eq!(mail.to, "taro@example.jp");
    assert!(mail.text.starts_with("Hello 山田 花子"), "{}", mail.text);
    assert!(
        mail.text.contains("password you have just set"),
        "{}",
        mail.text
    );

    // A notice for an account deleted before it ran is dropped, not retried.
    let gone = federated(db, clock, "jiro@example.jp", false, "3003").await;
    db.accounts()
        .delete(
            clock.now(),
            gone.id,
            ReregistrationBlock {
                email_digest: "j".repeat(64),
                until: clock.now(),
            },
            None,
            &deletion_record(clock, gone.id),
        )
        .await
        .unwrap();
    db.jobs()
        .add(
            clock.now(),
            LinkRepo::WAYS_IN_REMOVED_QUEUE,
            format!(r#"{{"user":"{}","at":0}}"#, gone.id.0),
        )
        .await
        .unwrap();
    // And one that cannot be read.
    db.jobs()
        .add(
            clock.now(),
            LinkRepo::WAYS_IN_REMOVED_QUEUE,
            "{not json".to_owned(),
        )
        .await
        .unwrap();
    wait_until_empty(&app, LinkRepo::WAYS_IN_REMOVED_QUEUE).await;
    assert!(
        !app.outbox().iter().any(|m| m.to == "jiro@example.jp"),
        "{:?}",
        app.outbox()
    );
}

async fn wait_until_empty(app: &TestApp, queue: &str) {
    for _ in 0..200 {
        if app.state.db.jobs().pending(queue).await.unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{queue} does not drain");
}

#[tokio::test]
async fn a_revocation_for_a_provider_no_longer_configured_is_dropped() {
    let app = TestApp::spawn().await;
    let (db, clock) = (&app.state.db, app.clock());
    assert!(app.state.federation.find("apple").is_none());
    let user = federated(db, clock, "hanako@example.jp", true, "1001").await;
    db.links()
        .link(
            clock.now(),
            user.id,
            apple_link("000123.abc", "not even sealed"),
            change(user.id, clock, LoginResult::Enrolled, "linked"),
        )
        .await
        .unwrap();
    // Through the app's own deletion, as the console does it.
    let member = app.reload(&user).await;
    tobira_auth::account::delete::delete_account(
        db,
        &app.state.master,
        &app.state.identifiers,
        &app.state.config,
        &tobira_auth::admin::audit::Context::cli(),
        clock.now(),
        &member,
    )
    .await
    .unwrap();
    wait_until_empty(&app, LinkRepo::REVOKE_QUEUE).await;
    assert!(
        db.jobs()
            .given_up(LinkRepo::REVOKE_QUEUE)
            .await
            .unwrap()
            .is_empty(),
        "dropped, not given up after retries"
    );
}

#[tokio::test]
async fn a_confirmed_new_address_ends_the_rule_and_a_later_reset_keeps_the_links() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let user = federated(&db, &clock, "hanako@example.jp", false, "3003").await;
        // The member moves the account to an address of their own and proves it.
        let new = Email::parse("hanako.own@example.jp").unwrap();
        let expires_at = clock.now() + Duration::hours(1);
        let link = || tobira_auth::store::NewLink {
            token_hash: "change-token".to_owned(),
            expires_at,
        };
        let mail = || QueuedMail {
            payload: "mail".to_owned(),
        };
        db.email_changes()
            .start(clock.now(), user.id, &new, link(), mail())
            .await
            .unwrap();
        let pending = db
            .email_changes()
            .lookup("change-token", clock.now())
            .await
            .unwrap()
            .expect("a pending change");
        let confirmed = db
            .email_changes()
            .confirm(
                clock.now(),
                "change-token",
                &pending,
                &user.email,
                tobira_auth::store::NewLink {
                    token_hash: "undo-token".to_owned(),
                    expires_at,
                },
                mail(),
            )
            .await
            .unwrap();
        assert_eq!(confirmed, tobira_auth::store::Confirmed::Changed, "{b}");
        // A reset at the member's own address keeps the member's own link.
        db.password_resets()
            .start(
                clock.now(),
                user.id,
                "reset-token".to_owned(),
                expires_at,
                mail(),
            )
            .await
            .unwrap();
        assert!(
            db.password_resets()
                .complete(
                    clock.now(),
                    "reset-token",
                    user.id,
                    "hash".to_owned(),
                    mail()
                )
                .await
                .unwrap(),
            "{b}"
        );
        assert_eq!(db.links().list(user.id).await.unwrap().len(), 1, "{b}");
        assert!(notices(&db).await.is_empty(), "{b}");
    }
}

#[tokio::test]
async fn the_owners_undo_of_an_email_change_removes_every_way_in_the_taker_added() {
    for test_db in TestDb::all().await {
        let b = format!("{:?}", test_db.backend);
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let user = add_user(&db, &clock, "hanako@example.jp", Some("owner's hash")).await;
        // Whoever took the account over adds their own provider and passkey, and moves
        // the account to their own address.
        db.links()
            .link(
                clock.now(),
                user.id,
                link_of("google", GOOGLE, "taker"),
                change(user.id, &clock, LoginResult::Enrolled, "linked"),
            )
            .await
            .unwrap();
        add_passkey(&db, &clock, user.id, "taker-key").await;
        add_second_steps(&db, &clock, user.id).await;
        let expires_at = clock.now() + Duration::hours(1);
        let mail = || QueuedMail {
            payload: "mail".to_owned(),
        };
        let taker = Email::parse("taker@example.jp").unwrap();
        db.email_changes()
            .start(
                clock.now(),
                user.id,
                &taker,
                tobira_auth::store::NewLink {
                    token_hash: "change".to_owned(),
                    expires_at,
                },
                mail(),
            )
            .await
            .unwrap();
        let pending = db
            .email_changes()
            .lookup("change", clock.now())
            .await
            .unwrap()
            .unwrap();
        db.email_changes()
            .confirm(
                clock.now(),
                "change",
                &pending,
                &user.email,
                tobira_auth::store::NewLink {
                    token_hash: "undo".to_owned(),
                    expires_at,
                },
                mail(),
            )
            .await
            .unwrap();
        // The owner undoes it from the old address.
        let undo = db
            .email_changes()
            .lookup_undo("undo", clock.now())
            .await
            .unwrap()
            .expect("an undo");
        let undone = db
            .email_changes()
            .undo(
                clock.now(),
                "undo",
                &undo,
                tobira_auth::store::NewLink {
                    token_hash: "reset".to_owned(),
                    expires_at,
                },
                mail(),
            )
            .await
            .unwrap();
        assert_eq!(undone, tobira_auth::store::Undone::Restored, "{b}");
        assert_no_other_way_in(&db, &clock, user.id, &b).await;
    }
}
