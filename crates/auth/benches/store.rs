//! The store's hot reads on SQLite, the way the token paths make them.
//!
//! Run: `cargo bench -p tobira-auth --bench store -j1`
//! (shorten with `-- --measurement-time 3`).
//!
//! `grant lookup` is what every `/userinfo` call and every refresh reads: a grant with
//! its browser session and its member, by the grant's id. `find_full` runs its statement
//! from SQL built once (`store::Prebuilt`); `built per call` is the same select built by
//! sea-query on every call, as before, with the same rows made of the answer. The
//! database holds one member with 1,000 live sessions, each with a grant and a refresh
//! token (`tobira-bench seed`'s rows), on a file in WAL mode as the server opens it.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tobira_auth::Clock;
use tobira_auth::admin::clients::{AddClient, add_client};
use tobira_auth::domain::{Email, GrantType};
use tobira_auth::keys::Alg;
use tobira_auth::store::bench::{LiveSessions, find_full_built_per_call, seed_live_sessions};
use tobira_auth::store::{Db, NewUser};
use uuid::Uuid;

struct Fixture {
    rt: tokio::runtime::Runtime,
    db: Db,
    grant: Uuid,
    // Kept alive until the benchmarks end: the database file lives here.
    _dir: tempfile::TempDir,
}

fn setup() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/tobira.db?mode=rwc", dir.path().display());
    // As the server runs: a multi-threaded runtime, the SQLite connections' threads beside.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (db, grant) = rt.block_on(async {
        let db = Db::connect(&url, 10, Duration::from_secs(5))
            .await
            .expect("connect to SQLite");
        db.migrate().await.expect("migrate");
        let clock = Clock::system();
        let user = db
            .users()
            .add(
                &clock,
                &mut rand::rng(),
                NewUser {
                    email: Email::parse("bench@example.jp").expect("address"),
                    email_verified: true,
                    password_hash: None,
                    display_name: "ベンチ 太郎".to_owned(),
                    locale: "ja".to_owned(),
                },
            )
            .await
            .expect("member");
        let client = add_client(
            &db,
            &clock,
            AddClient {
                name: "Bench RP".to_owned(),
                redirect_uris: vec!["https://rp.example.jp/callback".to_owned()],
                post_logout_redirect_uris: vec![],
                public: false,
                first_party: false,
                extra_grants: vec![GrantType::RefreshToken],
                id_token_alg: Alg::RS256,
                backchannel_logout_uri: None,
                backchannel_logout_session_required: false,
                client_id: None,
                secret: None,
                scopes: vec![],
            },
        )
        .await
        .expect("client")
        .client;
        let seeded = seed_live_sessions(
            &db,
            &clock,
            &mut rand::rng(),
            LiveSessions {
                user_id: user.id,
                client_id: &client.client_id,
                scope: "openid profile email",
                count: 1000,
                session_lifetime: time::Duration::days(30),
                refresh_lifetime: time::Duration::days(30),
                sample: 1,
            },
        )
        .await
        .expect("seed");
        let grant = db
            .refresh_tokens()
            .find(&seeded.sample[0].refresh_token)
            .await
            .expect("refresh token")
            .expect("seeded refresh token")
            .grant_id;
        (db, grant)
    });
    Fixture {
        rt,
        db,
        grant,
        _dir: dir,
    }
}

fn grant_lookup(c: &mut Criterion) {
    let f = setup();
    // Both ways read the same grant, session and member.
    let prebuilt =
        f.rt.block_on(f.db.grants().find_full(f.grant))
            .expect("find_full");
    let built =
        f.rt.block_on(find_full_built_per_call(&f.db, f.grant))
            .expect("built");
    let (prebuilt, built) = (prebuilt.expect("found"), built.expect("found"));
    assert_eq!(format!("{prebuilt:?}"), format!("{built:?}"));
    assert!(prebuilt.session.is_some());

    let mut group = c.benchmark_group("grant lookup");
    group.bench_function("find_full", |b| {
        b.iter(|| f.rt.block_on(f.db.grants().find_full(black_box(f.grant))))
    });
    group.bench_function("built per call", |b| {
        b.iter(|| {
            f.rt.block_on(find_full_built_per_call(&f.db, black_box(f.grant)))
        })
    });
    group.finish();
}

criterion_group!(benches, grant_lookup);
criterion_main!(benches);
