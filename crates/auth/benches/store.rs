//! The store's hot reads on SQLite, the way the token paths make them.
//!
//! Run: `cargo bench -p tobira-auth --bench store -j1`
//! (shorten with `-- --measurement-time 3`).
//!
//! `grant lookup` is what every `/userinfo` call and every access-token check reads: a
//! grant with its browser session and its member, by the grant's id. `find_full` runs its
//! kept statement (`store::Prebuilt`) on SQLite's reading connections (`store::readers`:
//! rusqlite, in the calling thread); `pooled` runs it on a connection of sqlx's pool (as
//! on PostgreSQL, and on SQLite before: a hand-off to the connection's thread and back,
//! and a ping after each query);
//! `built per call` is the same select built by sea-query on every call, as before
//! `Prebuilt`, with the same rows made of the answer. The database holds one member with
//! 1,000 live sessions, each with a grant and a refresh
//! token (`tobira-bench seed`'s rows), on a file in WAL mode as the server opens it.
//! Each is measured twice: in wall time per lookup, and in the process's CPU time per
//! lookup (`grant lookup (CPU)`: every thread's, including what sqlx's pool does after
//! the answer, as `scripts/load.sh` counts it).

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::Measurement;
use criterion::{Criterion, criterion_group, criterion_main};
use tobira_auth::Clock;
use tobira_auth::store::Db;
use tobira_auth::store::bench::{find_full_built_per_call, find_full_pooled, fixture};
use uuid::Uuid;

#[path = "common/cpu.rs"]
mod cpu;
use cpu::ProcessCpu;

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
        let seeded = fixture(&db, &clock, 1000).await.expect("seed").seeded;
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
    lookups(c, "grant lookup");
}

fn grant_lookup_cpu(c: &mut Criterion<ProcessCpu>) {
    lookups(c, "grant lookup (CPU)");
}

fn lookups<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let f = setup();
    // Both ways read the same grant, session and member.
    let prebuilt =
        f.rt.block_on(f.db.grants().find_full(f.grant))
            .expect("find_full");
    let built =
        f.rt.block_on(find_full_built_per_call(&f.db, f.grant))
            .expect("built");
    let pooled =
        f.rt.block_on(find_full_pooled(&f.db, f.grant))
            .expect("pooled");
    let (prebuilt, built) = (prebuilt.expect("found"), built.expect("found"));
    assert_eq!(format!("{prebuilt:?}"), format!("{built:?}"));
    assert_eq!(
        format!("{prebuilt:?}"),
        format!("{:?}", pooled.expect("found"))
    );
    assert!(prebuilt.session.is_some());

    let mut group = c.benchmark_group(name);
    group.bench_function("find_full", |b| {
        b.iter(|| f.rt.block_on(f.db.grants().find_full(black_box(f.grant))))
    });
    group.bench_function("pooled", |b| {
        b.iter(|| f.rt.block_on(find_full_pooled(&f.db, black_box(f.grant))))
    });
    group.bench_function("built per call", |b| {
        b.iter(|| {
            f.rt.block_on(find_full_built_per_call(&f.db, black_box(f.grant)))
        })
    });
    group.finish();
}

criterion_group!(benches, grant_lookup);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ProcessCpu);
    targets = grant_lookup_cpu
}
criterion_main!(benches, cpu_benches);
