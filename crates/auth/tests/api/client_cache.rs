//! Clients kept in memory on the hot paths (`/token`, access-token checks): a change
//! made through another replica counts at once where refusing would be wrong (a new
//! secret), and within `CLIENT_CACHE_TTL` where it takes something away (a removal).

use std::time::Duration;

use tobira_auth::admin::audit::Context;
use tobira_auth::admin::clients::{delete_client, rotate_secret};
use tobira_auth::store::{CLIENT_CACHE_TTL, Db};

use crate::helpers::{ClientOpts, TestApp};

/// A second replica on the app's database: its own pool, its own client cache.
async fn other_replica(app: &TestApp) -> Db {
    Db::connect(
        app.state.config.database.url.expose(),
        2,
        Duration::from_secs(5),
    )
    .await
    .expect("connect a second replica")
}

/// Whether the admin API takes `token` (every access-token check goes the same way).
async fn token_accepted(app: &TestApp, token: &str) -> bool {
    let status = app
        .http
        .get(app.url.join("/admin/api/v1/clients").unwrap())
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status == 200 || status == 401, "{status}");
    status == 200
}

fn admin_client() -> ClientOpts {
    ClientOpts {
        client_credentials: true,
        scopes: vec!["admin".to_owned()],
        ..ClientOpts::default()
    }
}

#[tokio::test]
async fn a_secret_rotated_on_another_replica_counts_here_at_once_and_a_removal_within_the_ttl() {
    let app = TestApp::spawn().await;
    let (client_id, secret) = app.add_client(admin_client()).await;
    let old = secret.expect("a confidential client");
    // This replica now holds the client in its cache.
    let token = app
        .client_credentials_token(&client_id, &old, "admin")
        .await;
    assert!(token_accepted(&app, &token).await);

    let replica = other_replica(&app).await;
    let rotated = rotate_secret(
        &replica,
        &app.state.clock,
        &Context::cli(),
        &app.state.config.admin,
        &client_id,
        Some(0),
    )
    .await
    .expect("rotate on the other replica");
    // The cached copy knows only the old secret: the new one is checked against the
    // stored client before a refusal, and the old one (no grace) is refused.
    assert_eq!(
        app.client_credentials_status(&client_id, &rotated.secret)
            .await,
        200
    );
    assert_eq!(app.client_credentials_status(&client_id, &old).await, 401);

    delete_client(&replica, &app.state.clock, &Context::cli(), &client_id)
        .await
        .expect("remove on the other replica");
    // Within one TTL the removal reaches this replica: its tokens die and its secret
    // stops working.
    tokio::time::sleep(CLIENT_CACHE_TTL + Duration::from_millis(100)).await;
    assert!(!token_accepted(&app, &token).await);
    assert_eq!(
        app.client_credentials_status(&client_id, &rotated.secret)
            .await,
        401
    );
}

#[tokio::test]
async fn a_client_removed_through_this_replica_is_gone_at_once() {
    let app = TestApp::spawn().await;
    let (client_id, secret) = app.add_client(admin_client()).await;
    let secret = secret.unwrap();
    let token = app
        .client_credentials_token(&client_id, &secret, "admin")
        .await;
    assert!(token_accepted(&app, &token).await);

    delete_client(&app.state.db, &app.state.clock, &Context::cli(), &client_id)
        .await
        .unwrap();
    // No wait: the removal dropped this replica's copy.
    assert!(!token_accepted(&app, &token).await);
    assert_eq!(
        app.client_credentials_status(&client_id, &secret).await,
        401
    );
}
