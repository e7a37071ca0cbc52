//! `tobira-bench seed`, the load script's way to give a member many live sessions: the
//! rows it writes must be what sign-ins leave, live by the store's own rules and usable
//! as a browser's cookie and a client's refresh token, on SQLite and on PostgreSQL.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::helpers::{ClientOpts, TestApp, callback_params};

const BENCH: &str = env!("CARGO_BIN_EXE_tobira-bench");
const EMAIL: &str = "seeded@example.jp";
const PASSWORD: &str = "violet-tunnel-ramen-42";

/// Runs `tobira-bench` against the app's database, off the test's thread: the app serves
/// on that thread, and SQLite's writer lock may be the app's for a moment.
async fn bench(app: &TestApp, args: &[&str]) -> Output {
    let config = &app.state.config;
    let mut command = Command::new(BENCH);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TOBIRA_DATA_DIR", &config.data_dir)
        .env("TOBIRA_DATABASE__URL", config.database_url())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn seeded_sessions_are_live_and_serve_as_cookies_and_refresh_tokens() {
    let app = TestApp::spawn().await;
    let member = app.add_user(EMAIL, PASSWORD).await;
    let (client_id, secret) = app
        .add_client(ClientOpts {
            refresh: true,
            ..Default::default()
        })
        .await;
    let secret = secret.expect("a confidential client");

    // More than one transaction, the last one partial.
    let out = bench(
        &app,
        &[
            "seed",
            "--sessions",
            "1500",
            "--email",
            EMAIL,
            &format!("--client-id={client_id}"),
            "--json",
            "--sample",
            "3",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let seeded: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(seeded["sessions"], 1500);
    assert_eq!(seeded["grants"], 1500);
    assert_eq!(seeded["refresh_tokens"], 1500);
    assert_eq!(seeded["batches"], 2);

    let now = app.clock().now();
    let sessions = app.state.db.sessions();
    assert_eq!(
        sessions
            .count_live(member.id, now, app.state.sessions.idle)
            .await
            .unwrap(),
        1500
    );
    let sample = seeded["sample"].as_array().expect("a sample");
    assert_eq!(sample.len(), 3);
    for (i, one) in sample.iter().enumerate() {
        let cookie = one["session"].as_str().expect("a session secret");
        let refresh = one["refresh_token"].as_str().expect("a refresh token");
        let session = sessions
            .find_live(cookie, now)
            .await
            .unwrap()
            .expect("the cookie opens a live session");
        assert_eq!(session.user_id, member.id);
        assert_eq!(session.amr, ["pwd"]);

        // The refresh token rotates as the client's own would: its grant and session live.
        let res = app
            .http
            .post(app.url.join("/token").unwrap())
            .basic_auth(&client_id, Some(&secret))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let tokens: Value = res.json().await.unwrap();
        assert!(tokens["id_token"].is_string(), "{tokens}");
        assert!(tokens["refresh_token"].is_string(), "{tokens}");
        assert_eq!(tokens["scope"], "openid email");

        // The browser holding the cookie is signed in: straight back to the client.
        let state = format!("seeded-{i}");
        let mut authorize = app.url.join("/authorize").unwrap();
        authorize
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client_id)
            .append_pair("redirect_uri", "http://127.0.0.1:9/callback")
            .append_pair("scope", "openid email")
            .append_pair("state", &state)
            .append_pair(
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            )
            .append_pair("code_challenge_method", "S256");
        let back = app
            .http
            .get(authorize)
            .header("cookie", format!("tobira_session={cookie}"))
            .send()
            .await
            .unwrap();
        assert!(back.status().is_redirection(), "{}", back.status());
        let location = back.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            location.starts_with("http://127.0.0.1:9/callback?"),
            "{location}"
        );
        let params = callback_params(&location);
        assert_eq!(params["state"], state);
        assert!(params.contains_key("code"), "{location}");
    }
}

#[tokio::test]
async fn seeding_needs_an_existing_member_and_a_client_allowed_refresh_tokens() {
    let app = TestApp::spawn().await;
    let member = app.add_user(EMAIL, PASSWORD).await;
    let (no_refresh, _) = app.add_client(ClientOpts::default()).await;
    let (refreshing, _) = app
        .add_client(ClientOpts {
            refresh: true,
            ..Default::default()
        })
        .await;
    let seed = |email: &'static str, client: String| {
        let app = &app;
        async move {
            bench(
                app,
                &[
                    "seed",
                    "--sessions",
                    "5",
                    "--email",
                    email,
                    &format!("--client-id={client}"),
                ],
            )
            .await
        }
    };

    let out = seed(EMAIL, no_refresh.clone()).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("may not use refresh tokens"),
        "{}",
        stderr(&out)
    );
    let out = seed("nobody@example.jp", refreshing.clone()).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no account"), "{}", stderr(&out));
    let out = seed(EMAIL, "no-such-client".to_owned()).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no client"), "{}", stderr(&out));

    let live = app
        .state
        .db
        .sessions()
        .count_live(member.id, app.clock().now(), app.state.sessions.idle)
        .await
        .unwrap();
    assert_eq!(live, 0, "a refused seed writes nothing");
}

#[tokio::test]
async fn limits_reports_every_figure_the_load_script_reads_as_positive_numbers() {
    let app = TestApp::spawn().await;
    let out = bench(&app, &["limits", "--json", "--seconds", "0.05"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let limits: Value = serde_json::from_slice(&out.stdout).unwrap();
    let positive = |v: &Value| v.as_f64().is_some_and(|x| x > 0.0 && x.is_finite());
    for alg in ["RS256", "ES256", "EdDSA"] {
        assert!(positive(&limits["sign_us"][alg]["cpu"]), "{limits}");
        assert!(positive(&limits["verify_us"][alg]["cpu"]), "{limits}");
    }
    assert!(positive(&limits["argon2"]["verify_ms"]["cpu"]), "{limits}");
    assert!(positive(&limits["argon2"]["limit_per_second"]), "{limits}");
    // A store round trip costs something, and far less than a password check.
    let trip = limits["sqlite_round_trip_us"]["cpu"].as_f64().unwrap();
    assert!(trip > 0.0, "{limits}");
    assert!(trip < limits["argon2"]["verify_ms"]["cpu"].as_f64().unwrap() * 1e3);
}
