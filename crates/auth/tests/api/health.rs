//! Operations endpoints over HTTP.

use crate::helpers::TestApp;

#[tokio::test]
async fn healthz_answers_with_a_request_id_and_security_headers() {
    let app = TestApp::spawn().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    let id = res
        .headers()
        .get("x-request-id")
        .expect("a request id")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["referrer-policy"], "same-origin");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    // A client cannot choose the id that logs and error pages show.
    let res = app
        .http
        .get(app.url.join("/healthz").unwrap())
        .header("x-request-id", "chosen-by-the-client")
        .send()
        .await
        .unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, "chosen-by-the-client");
    assert_eq!(id.len(), 36, "{id}");
    // No HSTS on an http issuer.
    assert!(!res.headers().contains_key("strict-transport-security"));
}

#[tokio::test]
async fn a_trusted_proxys_request_id_never_replaces_ours() {
    let app =
        TestApp::spawn_with(|c| c.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()])
            .await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2 {
        let res = app
            .http
            .get(app.url.join("/healthz").unwrap())
            .header("x-request-id", "from-the-proxy-1")
            .send()
            .await
            .unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, "from-the-proxy-1");
        assert!(seen.insert(id), "one id per request");
    }
}

#[tokio::test]
async fn an_https_issuer_sends_hsts() {
    let app = TestApp::spawn_with(|c| {
        c.issuer = tobira_auth::config::Issuer::parse("https://id.example.jp").unwrap();
    })
    .await;
    let res = app.get("/healthz").await;
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
}

#[tokio::test]
async fn readyz_reports_each_store_and_503_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["ephemeral"], "ok");

    app.state.db.clone().close().await.unwrap();
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["database"], "unavailable");
    assert_eq!(body["checks"]["ephemeral"], "ok");
    // The cause is logged, never sent.
    assert!(!body.to_string().to_lowercase().contains("pool"), "{body}");
    // Liveness does not depend on the database.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = TestApp::spawn().await;
    app.get("/healthz").await;
    assert_eq!(app.get("/no/such/page").await.status(), 404);
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("tobira_http_requests_total{")
                && l.contains(r#"route="/healthz""#)
                && l.contains(r#"status="200""#)),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched""#), "{text}");
    assert!(
        !text.contains("/no/such/page"),
        "raw paths must not become labels"
    );
    assert!(
        text.contains("tobira_http_request_duration_seconds_bucket"),
        "{text}"
    );
}
