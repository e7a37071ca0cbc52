//! Both apps built from their libraries, each on its own port on 127.0.0.1.

use tobira_auth::{Application, Clock, Config};
use tokio::net::TcpListener;

#[tokio::test]
async fn the_op_and_the_marketplace_serve_side_by_side() {
    let data = tempfile::tempdir().unwrap();
    let op_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = Config::default();
    config.issuer = tobira_auth::config::Issuer::parse(&format!(
        "http://localhost:{}",
        op_listener.local_addr().unwrap().port()
    ))
    .unwrap();
    config.data_dir = data.path().to_path_buf();
    let op = Application::build_on(op_listener, config, Clock::system())
        .await
        .unwrap();
    let op_url = op.url();
    let (stop_op, op_stopped) = tokio::sync::oneshot::channel::<()>();
    let op_task = tokio::spawn(op.run_until(async {
        let _ = op_stopped.await;
    }));

    let mp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mp_addr = mp_listener.local_addr().unwrap();
    let (stop_mp, mp_stopped) = tokio::sync::oneshot::channel::<()>();
    let mp_task = tokio::spawn(tobira_marketplace::serve(mp_listener, async {
        let _ = mp_stopped.await;
    }));

    let http = reqwest::Client::new();
    for url in [
        format!("{op_url}healthz"),
        format!("{op_url}readyz"),
        format!("http://{mp_addr}/healthz"),
    ] {
        let res = http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200, "{url}");
    }
    assert_ne!(op_url.port(), Some(mp_addr.port()));

    stop_op.send(()).unwrap();
    stop_mp.send(()).unwrap();
    op_task.await.unwrap().unwrap();
    mp_task.await.unwrap().unwrap();
}
