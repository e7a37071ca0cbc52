//! Schema migrations: idempotent, safe when replicas start together, and checked.

use tobira_auth::store::DbError;

use crate::helpers::TestDb;

#[tokio::test]
async fn replicas_migrating_at_once_all_succeed() {
    for test_db in TestDb::all().await {
        let mut connections = Vec::new();
        for _ in 0..4 {
            connections.push(test_db.connect().await);
        }
        let runs: Vec<_> = connections
            .iter()
            .cloned()
            .map(|db| tokio::spawn(async move { db.migrate().await }))
            .collect();
        for run in runs {
            run.await
                .unwrap()
                .unwrap_or_else(|e| panic!("{:?}: {e}", test_db.backend));
        }
        connections[0].check_schema().await.unwrap();
        // A second run finds nothing to do.
        connections[1].migrate().await.unwrap();
    }
}

#[tokio::test]
async fn an_unmigrated_database_is_reported_as_outdated() {
    for test_db in TestDb::all().await {
        let db = test_db.connect().await;
        assert!(
            matches!(db.check_schema().await, Err(DbError::Outdated)),
            "{:?}",
            test_db.backend
        );
    }
}

#[tokio::test]
async fn an_unreachable_database_fails_with_a_clear_message_and_no_password() {
    let err = tobira_auth::store::Db::connect(
        "postgres://tobira:hunter2@127.0.0.1:1/tobira",
        2,
        std::time::Duration::from_secs(2),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot connect to the database"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
