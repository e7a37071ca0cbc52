//! The `tobira` binary as an operator meets it: real processes, real exit codes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::helpers::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_tobira");

/// A `tobira` command with a private data directory and no stray configuration.
pub(crate) struct Tobira {
    pub(crate) dir: tempfile::TempDir,
    db_url: Option<String>,
}

impl Tobira {
    pub(crate) fn new(db: Option<&TestDb>) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            db_url: db.map(|d| d.url.clone()),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TOBIRA_DATA_DIR", self.dir.path().join("data"))
            .env("RUST_LOG", "warn");
        if let Some(url) = &self.db_url {
            cmd.env("TOBIRA_DATABASE__URL", url);
        }
        cmd
    }

    pub(crate) fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_command(self.command(args), stdin)
    }

    /// `run`, off the test's thread: for tests whose app serves on that thread, where a
    /// command that waits on the app (or on a database lock it holds) would wait for
    /// ever.
    pub(crate) async fn run_off_thread(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let command = self.command(args);
        let stdin = stdin.map(str::to_owned);
        tokio::task::spawn_blocking(move || run_command(command, stdin.as_deref()))
            .await
            .unwrap()
    }
}

fn run_command(mut command: Command, stdin: Option<&str>) -> Output {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

impl Tobira {
    /// Creates a verified member with a password.
    fn add_member(&self, email: &str) {
        let out = self.run(
            &[
                "users",
                "add",
                "--email",
                email,
                "--password-stdin",
                "--verified",
            ],
            Some("violet-tunnel-ramen-42"),
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// `users freeze` of `email` with `reason` and the `extra` arguments.
    fn freeze(&self, email: &str, reason: &str, extra: &[&str]) -> Output {
        let mut args = vec!["users", "freeze", "--email", email, "--reason", reason];
        args.extend_from_slice(extra);
        self.run(&args, None)
    }

    /// `users show --json` of an account that exists.
    fn show(&self, email: &str) -> serde_json::Value {
        let out = self.run(&["users", "show", "--email", email, "--json"], None);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(stdout(&out).trim()).unwrap()
    }

    /// The configuration the commands ran with, to look into what they wrote.
    fn config(&self) -> tobira_auth::Config {
        let mut config = tobira_auth::Config {
            data_dir: self.dir.path().join("data"),
            ..Default::default()
        };
        if let Some(url) = &self.db_url {
            config.database.url = tobira_auth::config::Secret::new(url.clone());
        }
        config
    }

    /// The mails the commands queued (no server ran to send them), oldest first,
    /// unsealed with the data directory's master key.
    async fn queued_mails(&self) -> Vec<tobira_auth::mail::Mail> {
        let config = self.config();
        let db = tobira_auth::startup::open_db(&config).await.unwrap();
        let master = tobira_auth::keys::MasterKey::load_or_create(&config).unwrap();
        let jobs = db
            .jobs()
            .pending(tobira_auth::store::MAIL_QUEUE)
            .await
            .unwrap();
        jobs.iter()
            .map(|j| tobira_auth::mail::Mail::unseal(&j.payload, &master).unwrap())
            .collect()
    }
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn databases() -> Vec<Option<TestDb>> {
    let mut dbs = vec![None];
    dbs.extend(TestDb::postgres().await.map(Some));
    dbs
}

#[tokio::test]
async fn users_add_then_show_round_trips_as_json_without_secrets() {
    for db in databases().await {
        let tobira = Tobira::new(db.as_ref());
        let add = tobira.run(
            &[
                "users",
                "add",
                "--email",
                "Hanako@Example.jp",
                "--password-stdin",
                "--verified",
                "--name",
                "花子",
                "--json",
            ],
            Some("violet-tunnel-ramen-42\n"),
        );
        assert!(add.status.success(), "{}", stderr(&add));
        let created: serde_json::Value = serde_json::from_str(stdout(&add).trim()).unwrap();
        assert_eq!(
            stdout(&add).trim().lines().count(),
            1,
            "one JSON object on stdout"
        );
        let show = tobira.run(
            &[
                "users",
                "show",
                "--email",
                "ＨＡＮＡＫＯ@example.jp",
                "--json",
            ],
            None,
        );
        assert!(show.status.success(), "{}", stderr(&show));
        let shown: serde_json::Value = serde_json::from_str(stdout(&show).trim()).unwrap();
        assert_eq!(created, shown);
        assert_eq!(shown["email"], "Hanako@Example.jp");
        assert_eq!(shown["email_verified"], true);
        assert_eq!(shown["display_name"], "花子");
        assert_eq!(shown["status"], "active");
        assert_eq!(shown["has_password"], true);
        for o in [&add, &show] {
            let all = format!("{}{}", stdout(o), stderr(o));
            assert!(
                !all.contains("argon2") && !all.contains("violet"),
                "secret leaked: {all}"
            );
        }
        // The human form says the same.
        let human = tobira.run(&["users", "show", "--email", "hanako@example.jp"], None);
        assert!(stdout(&human).contains(shown["sub"].as_str().unwrap()));
    }
}

#[tokio::test]
async fn users_add_refuses_bad_input_with_a_reason_and_writes_nothing() {
    for db in databases().await {
        let tobira = Tobira::new(db.as_ref());
        let ok = tobira.run(
            &[
                "users",
                "add",
                "--email",
                "taro@example.com",
                "--password-stdin",
            ],
            Some("violet-tunnel-ramen-42"),
        );
        assert!(ok.status.success(), "{}", stderr(&ok));

        let dup = tobira.run(
            &[
                "users",
                "add",
                "--email",
                "ＴＡＲＯ@example.com",
                "--password-stdin",
            ],
            Some("another-strong-pass-77"),
        );
        assert!(!dup.status.success());
        assert!(
            stderr(&dup).contains("already registered"),
            "{}",
            stderr(&dup)
        );

        let weak = tobira.run(
            &[
                "users",
                "add",
                "--email",
                "jiro@example.com",
                "--password-stdin",
            ],
            Some("password1"),
        );
        assert!(!weak.status.success());
        assert!(
            stderr(&weak).contains("too easy to guess"),
            "{}",
            stderr(&weak)
        );
        let missing = tobira.run(&["users", "show", "--email", "jiro@example.com"], None);
        assert!(!missing.status.success());
        assert!(
            stderr(&missing).contains("no account"),
            "{}",
            stderr(&missing)
        );

        let bad_email = tobira.run(
            &["users", "add", "--email", "jiro@", "--password-stdin"],
            Some("violet-tunnel-ramen-42"),
        );
        assert!(!bad_email.status.success());
        assert!(
            stderr(&bad_email).contains("not valid"),
            "{}",
            stderr(&bad_email)
        );

        let empty = tobira.run(
            &[
                "users",
                "add",
                "--email",
                "saburo@example.com",
                "--password-stdin",
            ],
            Some(""),
        );
        assert!(!empty.status.success());
        assert!(stderr(&empty).contains("no password"), "{}", stderr(&empty));
    }
}

#[test]
fn messages_follow_the_operator_locale() {
    let tobira = Tobira::new(None);
    let out = tobira
        .command(&[
            "users",
            "add",
            "--email",
            "jiro@example.com",
            "--password-stdin",
        ])
        .env("LANG", "ja_JP.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"1234567")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("パスワードは8文字以上にしてください。"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn users_add_without_a_terminal_refuses_to_prompt() {
    let tobira = Tobira::new(None);
    let out = tobira.run(&["users", "add", "--email", "taro@example.com"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--password-stdin"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_configuration_stops_with_the_key_named() {
    let tobira = Tobira::new(None);
    let cfg = tobira.dir.path().join("tobira.toml");
    std::fs::write(&cfg, "[server]\nbind = \"127.0.0.1:0\"\nport = 8080\n").unwrap();
    let out = tobira.run(&["--config", cfg.to_str().unwrap(), "migrate"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("port"), "{}", stderr(&out));

    std::fs::write(&cfg, "[server\n").unwrap();
    let out = tobira
        .command(&["serve"])
        .env("TOBIRA_CONFIG", &cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("tobira.toml"), "{}", stderr(&out));

    let out = tobira
        .command(&["serve"])
        .env("TOBIRA_SERVER__BIND", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("TOBIRA_SERVER__BIND") || stderr(&out).contains("server.bind"),
        "{}",
        stderr(&out)
    );

    let missing = tobira.run(&["--config", "/no/such/file.toml", "migrate"], None);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("/no/such/file.toml"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn unreachable_stores_stop_start_up_with_a_clear_message() {
    let tobira = Tobira::new(None);
    let out = tobira
        .command(&["serve"])
        .env(
            "TOBIRA_DATABASE__URL",
            "postgres://tobira:hunter2@127.0.0.1:1/tobira",
        )
        .env("TOBIRA_SERVER__BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot connect to the database") && !err.contains("hunter2"),
        "{err}"
    );

    let out = tobira
        .command(&["serve"])
        .env("TOBIRA_EPHEMERAL__URL", "redis://127.0.0.1:1")
        .env("TOBIRA_SERVER__BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("ephemeral store unavailable"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn serve_reports_its_port_answers_and_stops_on_sigterm() {
    let tobira = Tobira::new(None);
    let mut child = tobira
        .command(&["serve"])
        .env("TOBIRA_SERVER__BIND", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a `listening on` line");
        if let Some(i) = line.find("listening on http://") {
            break line[i + "listening on ".len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
        }
    };
    assert!(!url.ends_with(":0"), "the real port is reported: {url}");
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The embedded default keeps its data in data_dir.
    assert!(tobira.dir.path().join("data/tobira.db").exists());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit}");
}

#[test]
fn migrate_applies_the_schema_once() {
    let tobira = Tobira::new(None);
    for _ in 0..2 {
        let out = tobira.run(&["migrate"], None);
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

#[tokio::test]
async fn clients_are_added_listed_and_removed_with_secrets_shown_once() {
    for db in databases().await {
        let tobira = Tobira::new(db.as_ref());
        let add = tobira.run(
            &[
                "clients",
                "add",
                "--name",
                "マーケット",
                "--redirect-uri",
                "https://market.example.jp/callback",
                "--redirect-uri",
                "http://127.0.0.1:3000/callback",
                "--post-logout-redirect-uri",
                "https://market.example.jp/",
                "--first-party",
                "--grant",
                "refresh_token",
                "--client-id",
                "marketplace",
                "--id-token-alg",
                "ES256",
                "--backchannel-logout-uri",
                "https://market.example.jp/backchannel-logout",
                "--backchannel-logout-session-required",
                "--json",
            ],
            None,
        );
        assert!(add.status.success(), "{}", stderr(&add));
        let added: serde_json::Value = serde_json::from_str(stdout(&add).trim()).unwrap();
        assert_eq!(added["client_id"], "marketplace");
        let secret = added["client_secret"].as_str().unwrap().to_owned();
        assert!(secret.len() >= 43);
        assert_eq!(
            added["grant_types"],
            serde_json::json!(["authorization_code", "refresh_token"])
        );
        assert_eq!(added["id_token_signed_response_alg"], "ES256");
        assert_eq!(
            added["backchannel_logout_uri"],
            "https://market.example.jp/backchannel-logout"
        );
        assert_eq!(added["backchannel_logout_session_required"], true);

        let public = tobira.run(
            &[
                "clients",
                "add",
                "--name",
                "App",
                "--redirect-uri",
                "https://app.example.jp/cb",
                "--public",
            ],
            None,
        );
        assert!(public.status.success(), "{}", stderr(&public));
        assert!(!stdout(&public).contains("client_secret"));

        let given = tobira.run(
            &[
                "clients",
                "add",
                "--name",
                "Given",
                "--redirect-uri",
                "https://g.example.jp/cb",
                "--secret-stdin",
                "--json",
            ],
            Some("a-very-long-operator-chosen-secret-0123456789\n"),
        );
        assert!(given.status.success(), "{}", stderr(&given));
        let given: serde_json::Value = serde_json::from_str(stdout(&given).trim()).unwrap();
        assert_eq!(
            given["client_secret"],
            "a-very-long-operator-chosen-secret-0123456789"
        );

        // A service that only uses client_credentials has nowhere to send a code: it
        // registers no redirect URI, and gets no authorization_code grant.
        let service = tobira.run(
            &[
                "clients",
                "add",
                "--name",
                "Operations console",
                "--grant",
                "client_credentials",
                "--scope",
                "admin",
                "--json",
            ],
            None,
        );
        assert!(service.status.success(), "{}", stderr(&service));
        let service: serde_json::Value = serde_json::from_str(stdout(&service).trim()).unwrap();
        assert_eq!(
            service["grant_types"],
            serde_json::json!(["client_credentials"])
        );
        assert_eq!(service["redirect_uris"], serde_json::json!([]));
        assert!(service["client_secret"].is_string());

        let list = tobira.run(&["clients", "list", "--json"], None);
        let listed: serde_json::Value = serde_json::from_str(stdout(&list).trim()).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 4);
        let all = stdout(&list);
        assert!(
            !all.contains(&secret) && !all.contains("secret"),
            "no secret or hash listed: {all}"
        );

        let rm = tobira.run(&["clients", "remove", "marketplace"], None);
        assert!(rm.status.success(), "{}", stderr(&rm));
        let again = tobira.run(&["clients", "remove", "marketplace"], None);
        assert!(!again.status.success());
        assert!(stderr(&again).contains("no client"), "{}", stderr(&again));
    }
}

#[test]
fn clients_add_refuses_bad_input() {
    let tobira = Tobira::new(None);
    for (args, stdin, reason) in [
        (
            &[
                "clients",
                "add",
                "--name",
                "X",
                "--redirect-uri",
                "http://evil.example/cb",
            ][..],
            None,
            "plain http",
        ),
        (
            &[
                "clients",
                "add",
                "--name",
                "X",
                "--redirect-uri",
                "https://x.example/cb#frag",
            ],
            None,
            "fragment",
        ),
        (
            &[
                "clients",
                "add",
                "--name",
                "X",
                "--redirect-uri",
                "/relative",
            ],
            None,
            "absolute",
        ),
        (&["clients", "add", "--name", "X"], None, "redirect URI"),
        (
            &[
                "clients",
                "add",
                "--name",
                "X",
                "--grant",
                "client_credentials",
                "--grant",
                "refresh_token",
            ],
            None,
            "refresh_token needs a redirect URI",
        ),
        (
            &[
                "clients",
                "add",
                "--name",
                "X",
                "--redirect-uri",
                "https://x.example/cb",
                "--backchannel-logout-uri",
                "http://x.example/bc",
            ],
            None,
            "invalid back-channel logout URI",
        ),
        (
            &[
                "clients",
                "add",
                "--name",
                "X",
                "--redirect-uri",
                "https://x.example/cb",
                "--backchannel-logout-session-required",
            ],
            None,
            "needs a back-channel logout URI",
        ),
        (
            &[
                "clients",
                "add",
                "--name",
                "X",
                "--redirect-uri",
                "https://x.example/cb",
                "--client-id",
                "bad id!",
            ],
            None,
            "client_id",
        ),
        (
            &[
                "clients",
                "add",
                "--name",
                "X",
                "--redirect-uri",
                "https://x.example/cb",
                "--secret-stdin",
            ],
            Some("short"),
            "32 characters",
        ),
        (
            &[
                "clients",
                "add",
                "--name",
                "X",
                "--redirect-uri",
                "https://x.example/cb",
                "--public",
                "--secret-stdin",
            ],
            Some("a-very-long-operator-chosen-secret-0123456789"),
            "public client",
        ),
    ] {
        let out = tobira.run(args, stdin);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(reason), "{args:?}: {}", stderr(&out));
    }
    let ok = tobira.run(
        &[
            "clients",
            "add",
            "--name",
            "X",
            "--redirect-uri",
            "https://x.example/cb",
            "--client-id",
            "dup",
        ],
        None,
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let dup = tobira.run(
        &[
            "clients",
            "add",
            "--name",
            "Y",
            "--redirect-uri",
            "https://y.example/cb",
            "--client-id",
            "dup",
        ],
        None,
    );
    assert!(!dup.status.success());
    assert!(stderr(&dup).contains("exists"), "{}", stderr(&dup));
    let list = tobira.run(&["clients", "list", "--json"], None);
    let listed: serde_json::Value = serde_json::from_str(stdout(&list).trim()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "nothing half-written");
}

#[tokio::test]
async fn users_freeze_of_an_unknown_address_fails_clearly_and_changes_nothing() {
    for db in databases().await {
        let tobira = Tobira::new(db.as_ref());
        tobira.add_member("hanako@example.jp");
        for (email, said) in [
            (
                "nobody@example.jp",
                "no account with the email address nobody@example.jp",
            ),
            ("hanako@", "not valid"),
        ] {
            let out = tobira.freeze(email, "規約違反の疑い", &[]);
            assert!(!out.status.success(), "{email}");
            assert!(stderr(&out).contains(said), "{email}: {}", stderr(&out));
            for command in ["unfreeze", "sign-out", "delete"] {
                let out = tobira.run(&["users", command, "--email", email], None);
                assert!(!out.status.success(), "{command} {email}");
                assert!(
                    stderr(&out).contains(said),
                    "{command} {email}: {}",
                    stderr(&out)
                );
            }
        }
        assert_eq!(tobira.show("hanako@example.jp")["status"], "active");
        assert!(tobira.queued_mails().await.is_empty(), "nobody was mailed");
    }
}

#[tokio::test]
async fn users_freeze_keeps_the_reason_for_show_mails_the_member_and_unfreeze_lifts_it() {
    for db in databases().await {
        let tobira = Tobira::new(db.as_ref());
        tobira.add_member("hanako@example.jp");
        let reason = "規約違反の疑い（チケット #123）";
        let out = tobira.freeze("Hanako@Example.jp", reason, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("frozen"), "{}", stderr(&out));

        let show = tobira.run(&["users", "show", "--email", "hanako@example.jp"], None);
        assert!(
            stdout(&show).contains("status:         frozen"),
            "{}",
            stdout(&show)
        );
        assert!(
            stdout(&show).contains(&format!("frozen reason:  {reason}")),
            "{}",
            stdout(&show)
        );
        let shown = tobira.show("hanako@example.jp");
        assert_eq!(shown["status"], "frozen");
        assert_eq!(shown["frozen_reason"], reason);

        // Without --mail-reason the member is told of the freeze, not of the reason.
        let mails = tobira.queued_mails().await;
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].to, "hanako@example.jp");
        assert_eq!(mails[0].subject, "【Tobira】アカウントの利用を停止しました");
        assert!(!mails[0].text.contains("規約違反"), "{}", mails[0].text);

        let again = tobira.freeze("hanako@example.jp", "again", &[]);
        assert!(again.status.success(), "{}", stderr(&again));
        assert!(
            stderr(&again).contains("already frozen"),
            "{}",
            stderr(&again)
        );
        assert_eq!(
            tobira.queued_mails().await.len(),
            1,
            "nothing changed, nothing mailed"
        );

        let lift = tobira.run(&["users", "unfreeze", "--email", "hanako@example.jp"], None);
        assert!(lift.status.success(), "{}", stderr(&lift));
        let shown = tobira.show("hanako@example.jp");
        assert_eq!(shown["status"], "active");
        assert!(shown.get("frozen_reason").is_none(), "{shown}");
        let mails = tobira.queued_mails().await;
        assert_eq!(mails.len(), 2);
        assert_eq!(
            mails[1].subject,
            "【Tobira】アカウントの利用停止を解除しました"
        );
        let again = tobira.run(&["users", "unfreeze", "--email", "hanako@example.jp"], None);
        assert!(again.status.success(), "{}", stderr(&again));
        assert!(stderr(&again).contains("not frozen"), "{}", stderr(&again));

        // With --mail-reason the mail tells it.
        let out = tobira.freeze("hanako@example.jp", reason, &["--mail-reason"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let mails = tobira.queued_mails().await;
        assert!(mails[2].text.contains(reason), "{}", mails[2].text);
    }
}

#[test]
fn users_freeze_needs_a_reason_of_one_line() {
    let tobira = Tobira::new(None);
    tobira.add_member("hanako@example.jp");
    let missing = tobira.run(&["users", "freeze", "--email", "hanako@example.jp"], None);
    assert_eq!(missing.status.code(), Some(2), "a usage error");
    assert!(
        stderr(&missing).contains("--reason"),
        "{}",
        stderr(&missing)
    );
    let long = "x".repeat(501);
    for (reason, said) in [
        ("", "empty"),
        ("  ", "empty"),
        ("first line\nsecond line", "control characters"),
        (long.as_str(), "longer than 500"),
    ] {
        let out = tobira.freeze("hanako@example.jp", reason, &[]);
        assert!(!out.status.success(), "{reason:?}");
        assert!(stderr(&out).contains(said), "{reason:?}: {}", stderr(&out));
    }
    assert_eq!(tobira.show("hanako@example.jp")["status"], "active");
}

#[tokio::test]
async fn users_sign_out_says_how_many_sessions_ended_and_leaves_the_account_active() {
    for db in databases().await {
        let tobira = Tobira::new(db.as_ref());
        tobira.add_member("hanako@example.jp");
        let out = tobira.run(&["users", "sign-out", "--email", "hanako@example.jp"], None);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "ended 0 sessions");
        assert_eq!(tobira.show("hanako@example.jp")["status"], "active");
    }
}

#[tokio::test]
async fn maintenance_purge_runs_on_an_empty_database_and_says_so() {
    for db in databases().await {
        let tobira = Tobira::new(db.as_ref());
        let out = tobira.run(&["maintenance", "purge"], None);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "purged 0 rows");
    }
}

#[tokio::test]
async fn users_delete_deletes_once_and_then_finds_no_account() {
    for db in databases().await {
        let tobira = Tobira::new(db.as_ref());
        tobira.add_member("hanako@example.jp");
        let out = tobira.run(&["users", "delete", "--email", "hanako@example.jp"], None);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("deleted"), "{}", stderr(&out));
        let show = tobira.run(&["users", "show", "--email", "hanako@example.jp"], None);
        assert!(!show.status.success());
        assert!(stderr(&show).contains("no account"), "{}", stderr(&show));
        let mails = tobira.queued_mails().await;
        assert_eq!(mails.len(), 1, "the member is told once");
        assert_eq!(mails[0].to, "hanako@example.jp");

        let again = tobira.run(&["users", "delete", "--email", "hanako@example.jp"], None);
        assert!(!again.status.success());
        assert!(stderr(&again).contains("no account"), "{}", stderr(&again));
        assert_eq!(tobira.queued_mails().await.len(), 1, "and only once");
    }
}

#[tokio::test]
async fn clients_show_update_rotate_secret_and_remove_apply_the_rules_and_are_audited() {
    for db in databases().await {
        let tobira = Tobira::new(db.as_ref());
        let run_ok = |args: &[&str]| {
            let out = tobira.run(args, None);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            stdout(&out)
        };
        let run_err = |args: &[&str], says: &str| {
            let out = tobira.run(args, None);
            assert!(!out.status.success(), "{args:?}");
            assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        };
        let added: serde_json::Value = serde_json::from_str(
            run_ok(&[
                "clients",
                "add",
                "--name",
                "Billing",
                "--redirect-uri",
                "https://billing.example.jp/cb",
                "--grant",
                "client_credentials",
                "--client-id",
                "billing",
                "--json",
            ])
            .trim(),
        )
        .unwrap();
        let first = added["client_secret"].as_str().unwrap().to_owned();

        let shown = run_ok(&["clients", "show", "billing", "--json"]);
        assert!(
            !shown.contains(&first) && !shown.contains("client_secret"),
            "{shown}"
        );
        let shown: serde_json::Value = serde_json::from_str(shown.trim()).unwrap();
        assert_eq!(shown["name"], "Billing");
        assert_eq!(
            shown["previous_credential_expires_at"],
            serde_json::Value::Null
        );
        let text = run_ok(&["clients", "show", "billing"]);
        assert!(
            text.contains("client_id:") && text.contains("billing"),
            "{text}"
        );
        run_err(&["clients", "show", "nobody"], "no client");

        let updated: serde_json::Value = serde_json::from_str(
            run_ok(&[
                "clients",
                "update",
                "billing",
                "--name",
                "Billing (new)",
                "--redirect-uri",
                "https://billing.example.jp/a",
                "--redirect-uri",
                "https://billing.example.jp/b",
                "--id-token-alg",
                "ES256",
                "--first-party",
                "true",
                "--json",
            ])
            .trim(),
        )
        .unwrap();
        assert_eq!(updated["name"], "Billing (new)");
        assert_eq!(
            updated["redirect_uris"],
            serde_json::json!([
                "https://billing.example.jp/a",
                "https://billing.example.jp/b"
            ])
        );
        assert_eq!(updated["id_token_signed_response_alg"], "ES256");
        assert_eq!(updated["first_party"], true);
        assert_eq!(
            updated["grant_types"],
            serde_json::json!(["authorization_code", "client_credentials"]),
            "what is not given stays"
        );
        // The registration rules hold for every change, and a refused one writes nothing.
        run_err(
            &[
                "clients",
                "update",
                "billing",
                "--redirect-uri",
                "https://x.example/cb#f",
            ],
            "fragment",
        );
        run_err(
            &[
                "clients",
                "update",
                "billing",
                "--scope",
                "admin",
                "--no-extra-grants",
            ],
            "client_credentials grant",
        );
        run_err(
            &[
                "clients",
                "update",
                "billing",
                "--backchannel-logout-session-required",
                "true",
            ],
            "needs a back-channel logout URI",
        );
        run_err(&["clients", "update", "nobody", "--name", "X"], "no client");
        let after: serde_json::Value =
            serde_json::from_str(run_ok(&["clients", "show", "billing", "--json"]).trim()).unwrap();
        assert_eq!(after, updated);
        run_ok(&[
            "clients",
            "update",
            "billing",
            "--backchannel-logout-uri",
            "https://billing.example.jp/bc",
            "--backchannel-logout-session-required",
            "true",
        ]);
        run_err(
            &[
                "clients",
                "update",
                "billing",
                "--no-backchannel-logout-uri",
            ],
            "needs a back-channel logout URI",
        );
        run_ok(&[
            "clients",
            "update",
            "billing",
            "--no-backchannel-logout-uri",
            "--backchannel-logout-session-required",
            "false",
        ]);

        // Rotation: the old secret works through the grace, a second rotation with none
        // ends it at once.
        let rotated: serde_json::Value = serde_json::from_str(
            run_ok(&[
                "clients",
                "rotate-secret",
                "billing",
                "--grace-hours",
                "3",
                "--json",
            ])
            .trim(),
        )
        .unwrap();
        let second = rotated["client_secret"].as_str().unwrap().to_owned();
        assert_ne!(second, first);
        assert!(
            rotated["previous_secret_expires_at"].is_string(),
            "{rotated}"
        );
        let shown: serde_json::Value =
            serde_json::from_str(run_ok(&["clients", "show", "billing", "--json"]).trim()).unwrap();
        assert!(
            shown["previous_credential_expires_at"].is_string(),
            "{shown}"
        );
        let config = tobira.config();
        let store = tobira_auth::startup::open_db(&config).await.unwrap();
        let now = tobira_auth::Clock::system().now();
        let client = store.clients().find("billing").await.unwrap().unwrap();
        assert!(client.secret_matches(&first, now) && client.secret_matches(&second, now));
        assert!(!client.secret_matches(&first, now + time::Duration::hours(3)));
        run_err(
            &[
                "clients",
                "rotate-secret",
                "billing",
                "--grace-hours",
                "2161",
            ],
            "2160",
        );
        let text = run_ok(&["clients", "rotate-secret", "billing", "--grace-hours", "0"]);
        let third = text
            .trim()
            .strip_prefix("client_secret: ")
            .unwrap()
            .to_owned();
        let client = store.clients().find("billing").await.unwrap().unwrap();
        // After the rotation: with no grace the old secret ends at the rotation itself.
        let now = tobira_auth::Clock::system().now();
        assert!(client.secret_matches(&third, now));
        assert!(!client.secret_matches(&second, now) && !client.secret_matches(&first, now));
        run_ok(&[
            "clients",
            "add",
            "--name",
            "App",
            "--redirect-uri",
            "https://app.example.jp/cb",
            "--public",
            "--client-id",
            "app",
        ]);
        run_err(&["clients", "rotate-secret", "app"], "public client");
        run_err(&["clients", "rotate-secret", "nobody"], "no client");

        // Without redirect URIs a client_credentials client leaves the code flow.
        let service: serde_json::Value = serde_json::from_str(
            run_ok(&[
                "clients",
                "update",
                "billing",
                "--no-redirect-uris",
                "--json",
            ])
            .trim(),
        )
        .unwrap();
        assert_eq!(service["redirect_uris"], serde_json::json!([]));
        assert_eq!(
            service["grant_types"],
            serde_json::json!(["client_credentials"])
        );
        run_err(
            &["clients", "update", "app", "--no-redirect-uris"],
            "at least one redirect URI",
        );

        run_ok(&["clients", "remove", "billing"]);
        run_err(&["clients", "show", "billing"], "no client");

        let filter = tobira_auth::store::AuditFilter {
            target: Some("billing".to_owned()),
            ..Default::default()
        };
        let (events, _) = tobira_auth::admin::audit::list(&store, &filter, 50)
            .await
            .unwrap();
        let actions: Vec<&str> = events.iter().rev().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "client.create",
                "client.update",
                "client.update",
                "client.update",
                "client.secret_rotate",
                "client.secret_rotate",
                "client.update",
                "client.delete"
            ]
        );
        // The last change, value by value.
        assert_eq!(
            events[1].detail,
            serde_json::json!({"changed": {
                "redirect_uris": {
                    "old": ["https://billing.example.jp/a", "https://billing.example.jp/b"],
                    "new": [],
                },
                "grant_types": {
                    "old": ["authorization_code", "client_credentials"],
                    "new": ["client_credentials"],
                },
            }})
        );
        for e in &events {
            assert_eq!(
                (e.actor_kind.as_str(), e.actor.as_str()),
                ("support", "cli")
            );
            let detail = e.detail.to_string();
            for secret in [&first, &second, &third] {
                assert!(!detail.contains(secret.as_str()), "{detail}");
                assert!(
                    !detail.contains(&tobira_auth::crypto::sha256_hex(secret)),
                    "{detail}"
                );
            }
        }
    }
}
