//! Accounts in the durable store, on every database.

use tobira_auth::Clock;
use tobira_auth::admin::users::{AddUser, AddUserError, add_user};
use tobira_auth::authn::password::{Password, PasswordHasher, PasswordPolicyError};
use tobira_auth::config::PasswordConfig;
use tobira_auth::domain::{Email, UserStatus};
use tobira_auth::store::{NewUser, StoreError};
use tobira_auth::web::i18n::Lang;

use crate::helpers::TestDb;

fn hasher() -> PasswordHasher {
    PasswordHasher::new(&PasswordConfig::default(), 2, 0).unwrap()
}

fn new_user(email: &str) -> NewUser {
    NewUser {
        email: Email::parse(email).unwrap(),
        email_verified: false,
        password_hash: None,
        display_name: "山田 花子".to_owned(),
        locale: "ja".to_owned(),
    }
}

fn add<'a>(email: &'a str, password: &'a str) -> AddUser<'a> {
    AddUser {
        email,
        password: Some(password),
        email_verified: true,
        display_name: "Hanako".to_owned(),
        locale: Lang::Ja,
    }
}

#[tokio::test]
async fn an_account_round_trips_with_a_random_sub_and_both_email_forms() {
    for test_db in TestDb::all().await {
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let hasher = hasher();
        let created = add_user(
            &db,
            &hasher,
            &clock,
            &tobira_auth::admin::audit::Context::cli(),
            add(" Hanako.Yamada@Example.JP", "violet-tunnel-ramen-42"),
        )
        .await
        .unwrap();
        let found = db
            .users()
            .find_by_email(&Email::parse("ｈａｎａｋｏ.ｙａｍａｄａ@example.jp").unwrap())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{:?}: not found by a full-width form", test_db.backend));
        assert_eq!(found.id, created.id);
        assert_eq!(found.sub, created.sub);
        assert_eq!(found.email.normalized(), "hanako.yamada@example.jp");
        assert_eq!(found.email.display(), "Hanako.Yamada@Example.JP");
        assert!(found.email_verified);
        assert_eq!(found.status, UserStatus::Active);
        assert_eq!(found.created_at, clock.now());
        assert_eq!(found.display_name, "Hanako");
        // `sub` is opaque: 128 random bits, unrelated to the (time-ordered) row id.
        assert_eq!(found.sub.as_str().len(), 22);
        assert!(
            !found
                .sub
                .as_str()
                .contains(&found.id.0.simple().to_string()[..8])
        );
        let by_sub = db.users().find_by_sub(&found.sub).await.unwrap().unwrap();
        assert_eq!(by_sub.id, created.id);
        let phc = found.password_hash.unwrap();
        assert!(
            hasher
                .verify(&Password::for_verification("violet-tunnel-ramen-42"), &phc)
                .await
                .unwrap()
        );
        assert!(
            db.users()
                .find_by_email(&Email::parse("nobody@example.jp").unwrap())
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn an_email_differing_only_in_case_or_width_is_taken() {
    for test_db in TestDb::all().await {
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let hasher = hasher();
        add_user(
            &db,
            &hasher,
            &clock,
            &tobira_auth::admin::audit::Context::cli(),
            add("taro@example.com", "violet-tunnel-ramen-42"),
        )
        .await
        .unwrap();
        for dup in [
            "TARO@example.com",
            "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏｍ",
            " taro@EXAMPLE.com ",
        ] {
            let err = add_user(
                &db,
                &hasher,
                &clock,
                &tobira_auth::admin::audit::Context::cli(),
                add(dup, "another-strong-pass-77"),
            )
            .await
            .unwrap_err();
            assert!(
                matches!(err, AddUserError::EmailTaken),
                "{:?} {dup}: {err}",
                test_db.backend
            );
            assert_eq!(
                err.message(Lang::Ja),
                Some("このメールアドレスはすでに登録されています。")
            );
        }
        // The repository itself refuses too (the unique index decides, not a pre-check).
        let err = db
            .users()
            .add(&clock, &mut rand::rng(), new_user("Taro@Example.com"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::EmailTaken),
            "{:?}: {err}",
            test_db.backend
        );
    }
}

#[tokio::test]
async fn concurrent_sign_ups_with_one_address_create_one_account() {
    for test_db in TestDb::all().await {
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (db, clock) = (db.clone(), clock.clone());
                let email = if i % 2 == 0 {
                    "race@example.com"
                } else {
                    "RACE@example.com"
                };
                tokio::spawn(async move {
                    let insert = db.users().add(&clock, &mut rand::rng(), new_user(email));
                    insert.await
                })
            })
            .collect();
        let mut created = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => created += 1,
                Err(StoreError::EmailTaken) => {}
                Err(e) => panic!("{:?}: {e}", test_db.backend),
            }
        }
        assert_eq!(created, 1, "{:?}", test_db.backend);
    }
}

#[tokio::test]
async fn refused_accounts_leave_nothing_behind() {
    for test_db in TestDb::all().await {
        let db = test_db.migrated().await;
        let clock = Clock::manual_at_now();
        let hasher = hasher();
        let cases = [
            (add("weak@example.com", "password123"), "weak@example.com"),
            (add("short@example.com", "aB3$"), "short@example.com"),
            (
                add("longname.user@example.com", "longname.user-Zx9#q"),
                "longname.user@example.com",
            ),
        ];
        for (req, email) in cases {
            let err = add_user(
                &db,
                &hasher,
                &clock,
                &tobira_auth::admin::audit::Context::cli(),
                req,
            )
            .await
            .unwrap_err();
            assert!(matches!(err, AddUserError::Password(_)), "{err}");
            assert!(
                db.users()
                    .find_by_email(&Email::parse(email).unwrap())
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        let err = add_user(
            &db,
            &hasher,
            &clock,
            &tobira_auth::admin::audit::Context::cli(),
            add("not-an-email", "violet-tunnel-ramen-42"),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, AddUserError::Email(_)), "{err}");
        let mut bad_name = add("name@example.com", "violet-tunnel-ramen-42");
        bad_name.display_name = "evil\u{0007}name".to_owned();
        assert!(matches!(
            add_user(
                &db,
                &hasher,
                &clock,
                &tobira_auth::admin::audit::Context::cli(),
                bad_name
            )
            .await,
            Err(AddUserError::DisplayName)
        ));
        let err = add_user(
            &db,
            &hasher,
            &clock,
            &tobira_auth::admin::audit::Context::cli(),
            add("x@example.com", "password"),
        )
        .await
        .unwrap_err();
        assert!(matches!(
            err,
            AddUserError::Password(PasswordPolicyError::TooWeak { .. })
        ));
        assert!(err.message(Lang::En).unwrap().contains("too easy to guess"));
    }
}
