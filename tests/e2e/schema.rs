//! The marketplace's schema under versioned migrations: a database from before them is
//! adopted, and the marketplace can share one database with the OP.

use sea_orm::sea_query::{Alias, Query, SimpleExpr};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::world::time::{Duration, OffsetDateTime};
use crate::world::*;

const LEGACY_MEMBER: &str = "legacy-member-1";
const LEGACY_SESSION: &str = "legacy-session-hash";

/// The tables exactly as the marketplace created them from its entities before it had
/// migrations, with 花子 as a member who hid her last sign-in, and a three-day-old
/// session.
pub async fn create_legacy_tables(
    db: &DatabaseConnection,
    issuer: &str,
    sub: &str,
    now: OffsetDateTime,
) {
    let ts = match db.get_database_backend() {
        DbBackend::Postgres => "timestamp with time zone",
        _ => "timestamp_with_timezone_text",
    };
    let boolean = match db.get_database_backend() {
        DbBackend::Postgres => "bool",
        _ => "boolean",
    };
    for ddl in [
        format!(
            r#"CREATE TABLE "mp_members" ( "id" varchar NOT NULL PRIMARY KEY, "issuer" varchar NOT NULL, "sub" varchar NOT NULL, "display_name" varchar NOT NULL, "email" varchar NOT NULL, "show_last_login" {boolean} NOT NULL, "last_login_at" {ts}, "last_login_method" varchar NOT NULL, "created_at" {ts} NOT NULL )"#
        ),
        format!(
            r#"CREATE TABLE "mp_sessions" ( "id_hash" varchar NOT NULL PRIMARY KEY, "member_id" varchar NOT NULL, "csrf" varchar NOT NULL, "id_token" varchar NOT NULL, "access_token" varchar NOT NULL, "refresh_token" varchar, "access_expires_at" {ts} NOT NULL, "created_at" {ts} NOT NULL )"#
        ),
        format!(
            r#"CREATE TABLE "mp_login_states" ( "state" varchar NOT NULL PRIMARY KEY, "nonce" varchar NOT NULL, "pkce_verifier" varchar NOT NULL, "browser_hash" varchar NOT NULL, "created_at" {ts} NOT NULL )"#
        ),
        r#"CREATE UNIQUE INDEX IF NOT EXISTS "mp_members_issuer_sub" ON "mp_members" ("issuer", "sub")"#.to_owned(),
    ] {
        db.execute_unprepared(&ddl).await.unwrap();
    }
    let long_ago = now - Duration::days(3);
    let v = |s: &str| SimpleExpr::from(s.to_owned());
    let members = Query::insert()
        .into_table(Alias::new("mp_members"))
        .columns(
            [
                "id",
                "issuer",
                "sub",
                "display_name",
                "email",
                "show_last_login",
                "last_login_at",
                "last_login_method",
                "created_at",
            ]
            .map(Alias::new),
        )
        .values_panic([
            v(LEGACY_MEMBER),
            v(issuer),
            v(sub),
            v("山田花子"),
            v(HANAKO),
            false.into(),
            long_ago.into(),
            v("pwd"),
            long_ago.into(),
        ])
        .to_owned();
    db.execute(&members).await.unwrap();
    let sessions = Query::insert()
        .into_table(Alias::new("mp_sessions"))
        .columns(
            [
                "id_hash",
                "member_id",
                "csrf",
                "id_token",
                "access_token",
                "refresh_token",
                "access_expires_at",
                "created_at",
            ]
            .map(Alias::new),
        )
        .values_panic([
            v(LEGACY_SESSION),
            v(LEGACY_MEMBER),
            v("csrf"),
            v("id-token"),
            v("access-token"),
            v("refresh-token"),
            long_ago.into(),
            long_ago.into(),
        ])
        .to_owned();
    db.execute(&sessions).await.unwrap();
}

async fn strings(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect()
}

#[tokio::test]
async fn a_database_from_before_migrations_is_adopted_with_its_members() {
    let w = World::start(Setup {
        legacy_schema: true,
        ..Setup::default()
    })
    .await;
    let b = browser();
    let mypage = sign_in(&w, &b, HANAKO).await;
    assert!(mypage.body.contains("山田花子"), "{}", mypage.body);
    // The same member as before, with the setting she chose then.
    assert_eq!(profile_path(&mypage), format!("/users/{LEGACY_MEMBER}"));
    let privacy = get(&b, &format!("{}/settings/privacy", w.mp)).await;
    assert!(privacy.body.contains(r#"name="show_last_login""#));
    assert!(!privacy.body.contains("checked"), "{}", privacy.body);
    // The old session was last seen, as far as anyone knows, three days ago: it has
    // expired, and the sign-in pruned it.
    let db = w.mp_db().await;
    let sessions = strings(&db, "SELECT id_hash FROM mp_sessions").await;
    assert!(
        !sessions.contains(&LEGACY_SESSION.to_owned()),
        "{sessions:?}"
    );
    assert_eq!(sessions.len(), 1);
    let applied = strings(
        &db,
        "SELECT version FROM marketplace_migrations ORDER BY version",
    )
    .await;
    assert_eq!(
        applied,
        [
            "m20261202_000001_adopt_schema",
            "m20261202_000002_session_lifetimes",
            "m20261204_000003_backchannel_logout"
        ]
    );
}

#[tokio::test]
async fn the_op_and_the_marketplace_share_one_database_without_clashing() {
    let w = World::start(Setup {
        shared_database: true,
        ..Setup::default()
    })
    .await;
    assert_eq!(w.op_db_url, w.mp_db_url);
    let mypage = sign_in(&w, &browser(), HANAKO).await;
    assert!(mypage.body.contains("山田花子"));
    // Each app's migrator keeps its own record and finds nothing foreign in it: both
    // start again on the shared database and find their schema current.
    let db = w.mp_db().await;
    let ours = strings(&db, "SELECT version FROM marketplace_migrations").await;
    assert_eq!(ours.len(), 3, "{ours:?}");
    tobira_marketplace::store::Store::open(&w.mp_db_url)
        .await
        .expect("the marketplace starts again");
    let op = tobira_auth::store::Db::connect(&w.op_db_url, 2, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    op.migrate().await.expect("the OP migrates again");
    op.check_schema().await.expect("the OP's schema is current");
}
