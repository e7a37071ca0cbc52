//! PostgreSQL test databases: the server URL the tests connect with, databases copied
//! from a migrated template, and dropping them after their tests. Nextest runs every test
//! in a process of its own, and applying every migration to each test's empty database
//! cost more than many tests themselves; `CREATE DATABASE … TEMPLATE` copies a migrated
//! one for about the price of an empty one. Shared by the OP's API tests and the
//! end-to-end tests, which include this file with `#[path]`.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement,
    TransactionTrait,
};

/// `TEST_DATABASE_URL` as the tests use it: without TLS unless it names an `sslmode`. A
/// test server gains nothing from TLS, and in a debug build each handshake cost about
/// 0.1 s (against a server with `ssl = on`), paid by every connection that a test, its
/// app and the CLI runs it makes open.
pub fn server_url(test_database_url: &str) -> String {
    let mut url = url::Url::parse(test_database_url).expect("TEST_DATABASE_URL is a URL");
    if !url.query_pairs().any(|(key, _)| key == "sslmode") {
        url.query_pairs_mut().append_pair("sslmode", "disable");
    }
    url.to_string()
}

/// Templates are named after their migration set with this prefix, so that one of
/// another set is recognisably stale.
const TEMPLATE_PREFIX: &str = "tobira_tpl_";

/// The comment on a test database whose test is done with it (see `mark_done`).
const DONE: &str = "tobira test database: done";

/// The advisory lock of the test that is dropping done databases (see `reap_in_background`).
const REAP_LOCK: i64 = 0x0074_6f62_6972_61fe;

/// The advisory lock that guards templates: held shared while one is copied (so it cannot
/// be dropped meanwhile), exclusively while one is built or dropped. A number of its own,
/// apart from the app's locks ("tobira" in ASCII, then a counter).
const TEMPLATE_LOCK: i64 = 0x0074_6f62_6972_61ff;

/// Leaves the test database `name` for a later test to drop (`reap_in_background`): its
/// test is done with it. Dropping it here would keep the test waiting for the checkpoint
/// PostgreSQL forces for every dropped database, a good part of a second on a busy server.
/// For `Drop`, which runs outside async: a short-lived runtime on its own thread does the
/// I/O.
pub fn mark_done(admin_url: &str, name: &str) {
    let (admin_url, name) = (admin_url.to_owned(), name.to_owned());
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let admin = sea_orm::Database::connect(admin_url.as_str()).await.ok()?;
            retire(&admin, &name).await;
            admin.close().await.ok()
        })
    })
    .join();
}

/// Marks the database `name` done (`mark_done`), in async code.
pub async fn retire(admin: &DatabaseConnection, name: &str) {
    let _ = admin
        .execute_unprepared(&format!("COMMENT ON DATABASE {name} IS '{DONE}'"))
        .await;
}

/// Drops the test databases marked done, those of tests that have ended (in this process
/// or another), in the background of the calling test; one test at a time does it, the
/// others skip. The last tests' databases wait for the next run.
pub fn reap_in_background(admin_url: &str) {
    let admin_url = admin_url.to_owned();
    tokio::spawn(async move {
        let _ = reap(&admin_url).await;
    });
}

async fn reap(admin_url: &str) -> Result<(), sea_orm::DbErr> {
    // One connection: it holds the lock (for its session: closing it, or the test ending,
    // lets go of it) and drops the databases, which cannot be done in a transaction.
    let mut options = sea_orm::ConnectOptions::new(admin_url.to_owned());
    options.max_connections(1).sqlx_logging(false);
    let admin = sea_orm::Database::connect(options).await?;
    let reaping = admin
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT pg_try_advisory_lock({REAP_LOCK}) AS reaping"),
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "reaping"))
        .transpose()?
        .unwrap_or(false);
    if reaping {
        let done = admin
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT datname FROM pg_database \
                     WHERE shobj_description(oid, 'pg_database') = '{DONE}'"
                ),
            ))
            .await?;
        for row in done {
            let name: String = row.try_get("", "datname")?;
            // Its test has ended, but a connection of its app may linger until that
            // process exits.
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await?;
        }
    }
    admin.close().await
}

/// Creates the database `name` through `admin` (connected to `admin_url`), as a copy of
/// the template for the migrations crate at `migrations_dir`; the first test of a new
/// migration set builds that template (and drops the templates of other sets).
pub async fn create_migrated(
    admin: &DatabaseConnection,
    admin_url: &str,
    name: &str,
    migrations_dir: &Path,
) {
    let template = template_name(migrations_dir);
    let shared = lock(admin, "pg_advisory_xact_lock_shared").await;
    if is_ready(admin, &template).await {
        copy(admin, &template, name).await;
        shared.commit().await.expect("release the template lock");
    } else {
        // A shared lock cannot be upgraded: let go of it and queue for the exclusive one,
        // under which another test may have built the template by now.
        shared.rollback().await.expect("release the template lock");
        let exclusive = lock(admin, "pg_advisory_xact_lock").await;
        if !is_ready(admin, &template).await {
            build(admin, admin_url, &template).await;
        }
        copy(admin, &template, name).await;
        exclusive.commit().await.expect("release the template lock");
    }
}

/// A transaction holding the template lock (`function` says how) until it ends; its
/// connection is out of the pool, so the work runs on another one (`CREATE DATABASE`
/// cannot run in a transaction anyway).
async fn lock(admin: &DatabaseConnection, function: &str) -> DatabaseTransaction {
    let txn = admin.begin().await.expect("a transaction for the lock");
    txn.execute_unprepared(&format!("SELECT {function}({TEMPLATE_LOCK})"))
        .await
        .expect("take the template lock");
    txn
}

/// Whether `template` is finished: it is marked a template, and closed to connections,
/// only once every migration is in it.
async fn is_ready(admin: &DatabaseConnection, template: &str) -> bool {
    admin
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT 1 AS ready FROM pg_database \
                 WHERE datname = '{template}' AND datistemplate AND NOT datallowconn"
            ),
        ))
        .await
        .expect("look up the template")
        .is_some()
}

async fn copy(admin: &DatabaseConnection, template: &str, name: &str) {
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .await
        .expect("copy the template into a test database");
}

/// Builds `template` under the exclusive lock: drops every other template (an older
/// migration set's, or this one left half-built by a test that died), then creates and
/// migrates it and marks it finished.
async fn build(admin: &DatabaseConnection, admin_url: &str, template: &str) {
    let rows = admin
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT datname FROM pg_database".to_owned(),
        ))
        .await
        .expect("list the databases");
    for row in rows {
        let existing: String = row.try_get("", "datname").expect("a database name");
        if existing.starts_with(TEMPLATE_PREFIX) {
            // A template database cannot be dropped until it is no longer one.
            admin
                .execute_unprepared(&format!("ALTER DATABASE {existing} WITH IS_TEMPLATE false"))
                .await
                .expect("unmark a stale template");
            admin
                .execute_unprepared(&format!("DROP DATABASE {existing} WITH (FORCE)"))
                .await
                .expect("drop a stale template");
        }
    }
    admin
        .execute_unprepared(&format!("CREATE DATABASE {template}"))
        .await
        .expect("create the template");
    let mut url = url::Url::parse(admin_url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(template);
    let db = tobira_auth::store::Db::connect(url.as_str(), 2, Duration::from_secs(5))
        .await
        .expect("connect to the template");
    db.migrate()
        .await
        .expect("migrations apply to the template");
    db.close().await.expect("close the template's connections");
    // Closed to connections, a copy cannot fail on a session left in the template.
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE {template} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true"
        ))
        .await
        .expect("mark the template finished");
}

/// A template's name: a hash of the migrations crate's files, contents included (a
/// migration not yet released is still edited in place, and its template must follow).
/// `DefaultHasher` is stable within one toolchain, which is all the name needs: a new
/// toolchain builds a new template, and the old one is dropped as stale.
pub fn template_name(migrations_dir: &Path) -> String {
    let mut files = Vec::new();
    collect_files(migrations_dir, &mut files);
    assert!(
        !files.is_empty(),
        "no migrations in {}",
        migrations_dir.display()
    );
    files.sort();
    let mut hasher = std::hash::DefaultHasher::new();
    for file in &files {
        file.strip_prefix(migrations_dir)
            .expect("a file under the directory")
            .hash(&mut hasher);
        std::fs::read(file)
            .expect("read a migrations file")
            .hash(&mut hasher);
    }
    format!("{TEMPLATE_PREFIX}{:016x}", hasher.finish())
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read the migrations directory {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}
