//! With the ephemeral store down, pages say so kindly (503, a readable page,
//! `Retry-After`), the token endpoint keeps serving what needs no store, and readiness
//! takes the replica out of the load balancer.

use crate::helpers::{ClientOpts, TestApp};
use crate::redis_server::OwnRedis;

#[tokio::test]
async fn pages_answer_503_and_the_token_endpoint_works_while_redis_is_down() {
    let Some(mut redis) = OwnRedis::start(false).await else {
        return;
    };
    let url = redis.url();
    let app = TestApp::spawn_with(|c| {
        c.ephemeral.url = tobira_auth::config::Secret::new(url);
    })
    .await;
    let (client_id, secret) = app
        .add_client(ClientOpts {
            client_credentials: true,
            ..Default::default()
        })
        .await;
    let authorize = format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&scope=openid"
    );
    assert_eq!(app.browser().get(&authorize).await.status, 303);

    redis.stop();

    let page = app.browser().get(&authorize).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.headers.contains_key("retry-after"));
    assert!(
        page.body.contains("一時的に利用できません"),
        "{}",
        page.body
    );
    let page = app.browser().get("/login?tx=abc").await;
    assert_eq!(page.status, 503, "{}", page.body);

    let res = app
        .http
        .post(app.url.join("/token").unwrap())
        .basic_auth(&client_id, secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["ephemeral"], "unavailable");
}
