//! Master-key rotation (issue 16): what the old key sealed still opens while replicas
//! run with the new key and the old one as a previous key; `rotate_master` re-seals all
//! of it, row by row with a compare-and-set; then the new key alone opens everything.

use std::path::Path;
use std::time::Duration;

use tobira_auth::admin::users::{AddUser, add_user};
use tobira_auth::authn::second_step::{self, TOTP_ISSUER};
use tobira_auth::authn::totp::{self, Authenticator};
use tobira_auth::crypto::b64url;
use tobira_auth::domain::User;
use tobira_auth::keys::reseal::{rotate_master, sealed_under_other_keys};
use tobira_auth::keys::{Alg, MasterKey};
use tobira_auth::mail::Mail;
use tobira_auth::store::{
    Db, FactorChange, LoginEvent, LoginResult, MAIL_QUEUE, NewFederatedLink, Sealed, StoredTotp,
    Unlinking,
};
use tobira_auth::web::i18n::Lang;
use tobira_auth::{Application, Clock, Config};
use tokio::net::TcpListener;

use crate::helpers::{OutboxMail, TestDb};

/// A master key as configured: base64url of 32 bytes.
fn key_text(byte: u8) -> String {
    b64url(&[byte; 32])
}

fn key_id(byte: u8) -> String {
    MasterKey::from_bytes([byte; 32]).id().to_owned()
}

const OLD: u8 = 0x11;
const NEW: u8 = 0x22;

/// The OP on `db`, with this master key and these previous keys; not serving (no job
/// worker) until the caller runs it.
async fn build(
    db: &TestDb,
    data: &Path,
    clock: &Clock,
    master: &str,
    previous: &str,
) -> Result<Application, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let port = listener.local_addr().expect("bound").port();
    let mut config = Config::default();
    config.issuer = tobira_auth::config::Issuer::parse(&format!("http://localhost:{port}"))
        .expect("issuer URL");
    config.data_dir = data.to_path_buf();
    config.server.bind = listener.local_addr().expect("bound");
    config.database.url = tobira_auth::config::Secret::new(db.url.clone());
    config.jobs.poll_interval_ms = 50;
    config.keys.master_key = tobira_auth::config::Secret::new(master);
    config.keys.previous_master_keys = tobira_auth::config::Secret::new(previous);
    Application::build_on(listener, config, clock.clone())
        .await
        .map_err(|e| e.to_string())
}

fn change(user: &User, clock: &Clock, method: &str) -> FactorChange {
    FactorChange {
        event: LoginEvent {
            id: uuid::Uuid::new_v4(),
            user: user.id,
            at: clock.now(),
            ip: "127.0.0.1".to_owned(),
            user_agent: "tests".to_owned(),
            device_hash: String::new(),
            method: method.to_owned(),
            result: LoginResult::Enrolled,
            new_device: false,
        },
        mail: None,
    }
}

async fn member(app: &Application, email: &str) -> User {
    let state = app.state();
    add_user(
        &state.db,
        &state.hasher,
        &state.clock,
        &tobira_auth::admin::audit::Context::cli(),
        AddUser {
            email,
            password: Some("correct horse battery staple"),
            email_verified: true,
            display_name: "山田 花子".to_owned(),
            locale: Lang::Ja,
        },
    )
    .await
    .expect("member created")
}

/// Turns the authenticator app on for `user` through the store, sealed with the app's
/// master key; the member's authenticator.
async fn enrol_totp(app: &Application, user: &User) -> Authenticator {
    let state = app.state();
    let secret = totp::new_secret(&mut rand::rng()).to_vec();
    let authenticator = Authenticator::new(&secret, TOTP_ISSUER, user.email.display()).unwrap();
    state
        .db
        .two_step()
        .enable_totp(
            state.clock.now(),
            user.id,
            StoredTotp {
                secret_enc: state.master.encrypt(&secret).unwrap(),
                last_step: state.clock.now().unix_timestamp() / 30 - 1,
            },
            Vec::new(),
            None,
            change(user, &state.clock, second_step::METHOD_TOTP),
        )
        .await
        .unwrap();
    authenticator
}

/// Links an Apple identity holding a sealed upstream refresh token; the link's id.
async fn link_with_token(app: &Application, user: &User, subject: &str, token: &str) -> uuid::Uuid {
    let state = app.state();
    let link = NewFederatedLink {
        provider: "apple".to_owned(),
        issuer: "https://appleid.apple.com".to_owned(),
        subject: subject.to_owned(),
        email: None,
        sealed_refresh_token: Some(state.master.encrypt(token.as_bytes()).unwrap()),
    };
    state
        .db
        .links()
        .link(
            state.clock.now(),
            user.id,
            link,
            change(user, &state.clock, "fed:apple"),
        )
        .await
        .unwrap();
    state
        .db
        .links()
        .find("https://appleid.apple.com", subject)
        .await
        .unwrap()
        .expect("the link is stored")
        .id
}

/// Opens every sealed value in the database with `master`: the plaintexts, by kind.
async fn open_everything(db: &Db, master: &MasterKey) -> Vec<(Sealed, Vec<u8>)> {
    let mut opened = Vec::new();
    for what in Sealed::ALL {
        let rows = db.sealed().batch(what, None, 1000).await.unwrap();
        for row in rows {
            let plain = master
                .decrypt(&row.sealed)
                .unwrap_or_else(|e| panic!("{what} row {}: {e}", row.id));
            opened.push((what, plain.to_vec()));
        }
    }
    opened
}

fn serve(app: Application) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    tx
}

/// The outbox's mails, once `n` are there (the worker polls every 50 ms).
async fn mails(config: &Config, n: usize) -> Vec<OutboxMail> {
    for _ in 0..200 {
        let files: Vec<_> = std::fs::read_dir(config.outbox_dir())
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        let found: Vec<OutboxMail> = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .map(|p| OutboxMail::parse(&std::fs::read(p).unwrap()))
            .collect();
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {n} mails in {}", config.outbox_dir().display());
}

#[tokio::test]
async fn everything_sealed_under_the_old_master_key_is_resealed_and_opens_with_the_new_one_alone() {
    for db in TestDb::all().await {
        let data = tempfile::tempdir().unwrap();
        let clock = Clock::manual_at_now();

        // Under OLD: the signing keys and the identifier key exist from the start; a
        // member with an authenticator app and an Apple link; another link removed (its
        // token waits to be revoked); a frozen member's mail waits in the queue.
        let old = build(&db, data.path(), &clock, &key_text(OLD), "")
            .await
            .expect("starts under OLD");
        let pseudonym = old.state().identifiers.pseudonym("hanako@example.jp");
        let signed_before = old
            .state()
            .keys
            .sign(Alg::ES256, "JWT", &serde_json::json!({ "sub": "before" }))
            .unwrap();
        let hanako = member(&old, "hanako@example.jp").await;
        let authenticator = enrol_totp(&old, &hanako).await;
        link_with_token(&old, &hanako, "apple-kept", "upstream-token-kept").await;
        let removed =
            link_with_token(&old, &hanako, "apple-removed", "upstream-token-removed").await;
        let unlinked = old
            .state()
            .db
            .links()
            .unlink(
                clock.now(),
                hanako.id,
                removed,
                change(&hanako, &clock, "fed:apple"),
            )
            .await
            .unwrap();
        assert_eq!(unlinked, Unlinking::Unlinked);
        let taro = member(&old, "taro@example.jp").await;
        tobira_auth::admin::support::freeze(
            &old.state().db,
            &old.state().master,
            &old.state().config,
            &clock,
            &tobira_auth::admin::audit::Context::cli(),
            &taro,
            &tobira_auth::admin::support::Freeze {
                reason: tobira_auth::admin::support::Reason::parse("a test of the mail queue")
                    .unwrap(),
                tell_reason: false,
            },
        )
        .await
        .unwrap();
        let db_handle = old.state().db.clone();
        let queued = db_handle.jobs().pending(MAIL_QUEUE).await.unwrap();
        assert_eq!(queued.len(), 1, "the freeze mail waits");
        let queued_mail = Mail::unseal(&queued[0].payload, &old.state().master).unwrap();
        assert_eq!(queued_mail.to, taro.email.display());
        let signing_keys = db_handle.signing_keys().all().await.unwrap().len() as u64;
        assert!(signing_keys >= 3);
        drop(old);
        let expected = [
            (Sealed::SigningKeys, signing_keys),
            (Sealed::ServerSecrets, 1),
            (Sealed::TotpSecrets, 1),
            (Sealed::UpstreamTokens, 1),
            (Sealed::QueuedMail, 1),
            (Sealed::UpstreamRevocations, 1),
        ];
        let total: u64 = expected.iter().map(|(_, n)| n).sum();
        let plaintexts = open_everything(&db_handle, &MasterKey::from_bytes([OLD; 32])).await;
        assert_eq!(plaintexts.len() as u64, total);

        // NEW alone, before the re-seal: refused at start, naming the key it lacks.
        let err = build(&db, data.path(), &clock, &key_text(NEW), "")
            .await
            .err()
            .expect("NEW alone cannot open what OLD sealed");
        assert!(err.contains(&key_id(OLD)), "{err}");

        // NEW with OLD as a previous key: everything still opens.
        let both = build(&db, data.path(), &clock, &key_text(NEW), &key_text(OLD))
            .await
            .expect("starts with NEW and OLD");
        let state = both.state();
        assert_eq!(state.master.id(), key_id(NEW));
        assert_eq!(state.master.previous_ids(), vec![key_id(OLD)]);
        assert_eq!(state.identifiers.pseudonym("hanako@example.jp"), pseudonym);
        assert!(state.keys.verify(&signed_before).is_ok());
        let signed = state
            .keys
            .sign(Alg::RS256, "JWT", &serde_json::json!({ "sub": "during" }))
            .unwrap();
        assert!(state.keys.verify(&signed).is_ok());
        let code = authenticator.code_at(clock.now().unix_timestamp());
        assert!(
            second_step::check_totp(state, &hanako, &code)
                .await
                .unwrap()
        );
        assert_eq!(
            Mail::unseal(&queued[0].payload, &state.master).unwrap(),
            queued_mail
        );
        // What NEW seals now is under NEW.
        assert_eq!(
            MasterKey::sealed_by(&state.master.encrypt(b"x").unwrap()).unwrap(),
            key_id(NEW)
        );
        assert_eq!(
            sealed_under_other_keys(&state.db, &state.master)
                .await
                .unwrap(),
            total
        );

        // The re-seal: exact counts, nothing left under OLD, and the steps to retire it.
        let report = rotate_master(&state.db, &state.master).await.unwrap();
        for (what, n) in expected {
            let table = report.table(what);
            assert_eq!(
                (table.resealed, table.already_current, table.skipped),
                (n, 0, 0),
                "{what}: {report}"
            );
            assert!(table.unreadable.is_empty(), "{what}: {report}");
        }
        assert!(report.left.is_empty(), "{report}");
        assert_eq!(report.left_under_previous(), 0);
        let text = report.to_string();
        assert!(
            text.contains(&key_id(OLD))
                && text.contains(
                    "remove it from keys.previous_master_keys on every replica, then restart them one by one"
                ),
            "{text}"
        );
        assert_eq!(
            sealed_under_other_keys(&state.db, &state.master)
                .await
                .unwrap(),
            0
        );
        for key in state.db.signing_keys().all().await.unwrap() {
            assert_eq!(key.master_key_id, key_id(NEW), "{}", key.kid);
        }
        // Idempotent: a second run finds everything current and writes nothing.
        let again = rotate_master(&state.db, &state.master).await.unwrap();
        for (what, n) in expected {
            let table = again.table(what);
            assert_eq!(
                (table.resealed, table.already_current, table.skipped),
                (0, n, 0),
                "{what}: {again}"
            );
        }
        drop(both);

        // NEW alone opens every value, to the same bytes as before…
        let mut after = open_everything(&db_handle, &MasterKey::from_bytes([NEW; 32])).await;
        let mut before = plaintexts;
        after.sort();
        before.sort();
        assert!(after == before, "the re-seal changed a plaintext");
        // …and starts, with the same pseudonyms, signing, a TOTP code that verifies, and
        // the queued mail delivered.
        let new = build(&db, data.path(), &clock, &key_text(NEW), "")
            .await
            .expect("starts with NEW alone after the re-seal");
        let state = new.state().clone();
        assert!(state.master.previous_ids().is_empty());
        assert_eq!(state.identifiers.pseudonym("hanako@example.jp"), pseudonym);
        assert!(state.keys.verify(&signed_before).is_ok());
        let signed = state
            .keys
            .sign(Alg::EdDSA, "JWT", &serde_json::json!({ "sub": "after" }))
            .unwrap();
        assert!(state.keys.verify(&signed).is_ok());
        clock.advance(time::Duration::seconds(30));
        let code = authenticator.code_at(clock.now().unix_timestamp());
        assert!(
            second_step::check_totp(&state, &hanako, &code)
                .await
                .unwrap()
        );
        let _serving = serve(new);
        let delivered = mails(&state.config, 1).await;
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].to, taro.email.display());
        assert_eq!(delivered[0].subject, queued_mail.subject);
    }
}

/// The OP under OLD alone, with hanako enrolled in an authenticator app (its secret sealed
/// under OLD).
async fn enrolled_under_old(db: &TestDb, data: &Path, clock: &Clock) -> (Application, User) {
    let old = build(db, data, clock, &key_text(OLD), "").await.unwrap();
    let hanako = member(&old, "hanako@example.jp").await;
    enrol_totp(&old, &hanako).await;
    (old, hanako)
}

#[tokio::test]
async fn a_row_changed_between_read_and_write_is_left_as_the_other_writer_left_it() {
    for db in TestDb::all().await {
        let data = tempfile::tempdir().unwrap();
        let clock = Clock::manual_at_now();
        let (old, hanako) = enrolled_under_old(&db, data.path(), &clock).await;
        let job = old
            .state()
            .db
            .jobs()
            .add(
                clock.now(),
                MAIL_QUEUE,
                Mail {
                    to: "hanako@example.jp".to_owned(),
                    subject: "s".to_owned(),
                    text: "t".to_owned(),
                    html: "<p>h</p>".to_owned(),
                }
                .seal(&old.state().master)
                .unwrap(),
            )
            .await
            .unwrap();
        drop(old);

        let both = build(&db, data.path(), &clock, &key_text(NEW), &key_text(OLD))
            .await
            .unwrap();
        let state = both.state();
        let repo = state.db.sealed();
        let totp_rows = repo.batch(Sealed::TotpSecrets, None, 10).await.unwrap();
        let mail_rows = repo.batch(Sealed::QueuedMail, None, 10).await.unwrap();
        assert_eq!((totp_rows.len(), mail_rows.len()), (1, 1));

        // Meanwhile the member enrols again (on a replica already sealing under NEW),
        // and the mail is sent and its job deleted.
        let fresh = enrol_totp(&both, &hanako).await;
        let enrolled = state.db.two_step().totp(hanako.id).await.unwrap().unwrap();
        state.db.jobs().done(job).await.unwrap();

        let resealed = state.master.encrypt(b"stale secret").unwrap();
        assert!(
            !repo
                .replace(&totp_rows[0], &resealed, state.master.id())
                .await
                .unwrap()
        );
        assert!(
            !repo
                .replace(&mail_rows[0], &resealed, state.master.id())
                .await
                .unwrap()
        );
        let kept = state.db.two_step().totp(hanako.id).await.unwrap().unwrap();
        assert_eq!(
            kept.secret_enc, enrolled.secret_enc,
            "the new enrolment stays"
        );
        assert!(
            state
                .db
                .jobs()
                .pending(MAIL_QUEUE)
                .await
                .unwrap()
                .is_empty()
        );
        let code = fresh.code_at(clock.now().unix_timestamp());
        assert!(
            second_step::check_totp(state, &hanako, &code)
                .await
                .unwrap()
        );

        // The row as read, unchanged since: the same call writes.
        let current = repo.batch(Sealed::TotpSecrets, None, 10).await.unwrap();
        let other = state.master.encrypt(b"x").unwrap();
        assert!(
            repo.replace(&current[0], &other, state.master.id())
                .await
                .unwrap()
        );
        assert!(
            !repo
                .replace(&current[0], &other, state.master.id())
                .await
                .unwrap()
        );
    }
}

/// A row whose compare-and-set finds it changed (here: every write to it refused by a
/// trigger, as if another writer always came first) is counted as skipped, said so, and
/// left for the next run under the previous key.
#[tokio::test]
async fn a_row_changed_under_a_run_is_counted_as_skipped_and_left_for_the_next() {
    use sea_orm::ConnectionTrait as _;
    for db in TestDb::all().await {
        let data = tempfile::tempdir().unwrap();
        let clock = Clock::manual_at_now();
        drop(enrolled_under_old(&db, data.path(), &clock).await);

        let conn = sea_orm::Database::connect(&db.url).await.unwrap();
        let refuse = match db.backend {
            crate::helpers::Backend::Sqlite => vec![
                "CREATE TRIGGER keep BEFORE UPDATE ON totp_factors BEGIN SELECT RAISE(IGNORE); END",
            ],
            crate::helpers::Backend::Postgres => vec![
                "CREATE FUNCTION keep() RETURNS trigger AS $$ BEGIN RETURN NULL; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER keep BEFORE UPDATE ON totp_factors FOR EACH ROW EXECUTE FUNCTION keep()",
            ],
        };
        for sql in refuse {
            conn.execute_unprepared(sql).await.unwrap();
        }
        let both = build(&db, data.path(), &clock, &key_text(NEW), &key_text(OLD))
            .await
            .unwrap();
        let state = both.state();
        let report = rotate_master(&state.db, &state.master).await.unwrap();
        let totp = report.table(Sealed::TotpSecrets);
        assert_eq!(
            (totp.resealed, totp.already_current, totp.skipped),
            (0, 0, 1),
            "{report}"
        );
        assert!(totp.unreadable.is_empty(), "{report}");
        assert!(
            report.to_string().contains("1 skipped (changed meanwhile)"),
            "{report}"
        );
        assert_eq!(report.left_under_previous(), 1, "{report}");
        assert_eq!(report.left.get(&key_id(OLD)), Some(&1), "{report}");
    }
}

#[tokio::test]
async fn a_value_under_a_key_nobody_configured_is_named_and_does_not_stop_the_run() {
    for db in TestDb::all().await {
        let data = tempfile::tempdir().unwrap();
        let clock = Clock::manual_at_now();
        let old = build(&db, data.path(), &clock, &key_text(OLD), "")
            .await
            .unwrap();
        let hanako = member(&old, "hanako@example.jp").await;
        let stranger = MasterKey::from_bytes([0x33; 32]);
        let sealed = stranger.encrypt(b"a secret nobody can open").unwrap();
        old.state()
            .db
            .two_step()
            .enable_totp(
                clock.now(),
                hanako.id,
                StoredTotp {
                    secret_enc: sealed.clone(),
                    last_step: 0,
                },
                Vec::new(),
                None,
                change(&hanako, &clock, second_step::METHOD_TOTP),
            )
            .await
            .unwrap();
        let state = old.state();
        let master =
            MasterKey::from_bytes([NEW; 32]).with_previous(MasterKey::from_bytes([OLD; 32]));

        let report = rotate_master(&state.db, &master).await.unwrap();
        let totp = report.table(Sealed::TotpSecrets);
        assert_eq!((totp.resealed, totp.unreadable.len()), (0, 1), "{report}");
        assert_eq!(totp.unreadable[0].row.to_string(), hanako.id.0.to_string());
        assert!(
            totp.unreadable[0].reason.contains(stranger.id()),
            "{report}"
        );
        // The rest went on.
        assert!(report.table(Sealed::SigningKeys).resealed >= 3, "{report}");
        assert_eq!(report.table(Sealed::ServerSecrets).resealed, 1);
        assert_eq!(report.left_under_previous(), 0);
        assert_eq!(report.left.get(stranger.id()), Some(&1));
        let text = report.to_string();
        assert!(
            text.contains("totp_factors.secret_enc")
                && text.contains(&hanako.id.0.to_string())
                && text.contains(stranger.id())
                && text.contains("remove it from keys.previous_master_keys"),
            "{text}"
        );
        // Left as it was; it still needs a key other than NEW.
        let kept = state.db.two_step().totp(hanako.id).await.unwrap().unwrap();
        assert_eq!(kept.secret_enc, sealed);
        assert_eq!(
            sealed_under_other_keys(&state.db, &master).await.unwrap(),
            1
        );
    }
}

#[tokio::test]
async fn a_malformed_previous_master_key_is_a_startup_error_naming_the_setting_and_position() {
    let db = TestDb::sqlite().await;
    let data = tempfile::tempdir().unwrap();
    let short = b64url(&[5u8; 20]);
    let err = build(
        &db,
        data.path(),
        &Clock::manual_at_now(),
        &key_text(NEW),
        &format!("{}, {short}", key_text(OLD)),
    )
    .await
    .err()
    .expect("refused");
    assert!(
        err.contains("keys.previous_master_keys") && err.contains("#2") && err.contains("32 bytes"),
        "{err}"
    );
    assert!(
        !err.contains(&short) && !err.contains(&key_text(OLD)),
        "{err}"
    );
}

#[tokio::test]
async fn mail_queued_under_the_old_key_after_a_run_is_resealed_by_the_next_run_batch_by_batch() {
    for db in TestDb::all().await {
        let data = tempfile::tempdir().unwrap();
        let clock = Clock::manual_at_now();
        let both = build(&db, data.path(), &clock, &key_text(NEW), &key_text(OLD))
            .await
            .unwrap();
        let state = both.state();
        let first = rotate_master(&state.db, &state.master).await.unwrap();
        assert_eq!(first.left_under_previous(), 0, "{first}");
        // A replica not yet restarted with NEW queues mail under OLD after the run: more
        // than two batches of it.
        let old = MasterKey::from_bytes([OLD; 32]);
        for i in 0..205 {
            let stale = Mail {
                to: format!("member{i}@example.jp"),
                subject: "s".to_owned(),
                text: "t".to_owned(),
                html: "<p>h</p>".to_owned(),
            }
            .seal(&old)
            .unwrap();
            state
                .db
                .jobs()
                .add(clock.now(), MAIL_QUEUE, stale)
                .await
                .unwrap();
        }
        assert_eq!(
            sealed_under_other_keys(&state.db, &state.master)
                .await
                .unwrap(),
            205
        );
        let second = rotate_master(&state.db, &state.master).await.unwrap();
        let mail = second.table(Sealed::QueuedMail);
        assert_eq!((mail.resealed, mail.already_current), (205, 0), "{second}");
        assert_eq!(second.left_under_previous(), 0);
        assert!(second.to_string().contains("restart them one by one"));
        let new_alone = MasterKey::from_bytes([NEW; 32]);
        let mut to: Vec<String> = Vec::new();
        for job in state.db.jobs().pending(MAIL_QUEUE).await.unwrap() {
            to.push(Mail::unseal(&job.payload, &new_alone).unwrap().to);
        }
        to.sort();
        to.dedup();
        assert_eq!(to.len(), 205);
    }
}
