//! `cargo run --release --bin demo`: the OP on `http://localhost:8080` and the
//! marketplace on `http://127.0.0.1:3000` (two sites, as in production), the marketplace
//! registered as a first-party client with refresh tokens, a demo member, and a mail
//! viewer on `http://127.0.0.1:8025` showing the OP's outbox. A second Tobira on
//! `http://127.0.0.1:8081` stands in for a social sign-in provider (「デモIDでログイン」 on
//! the sign-in page), with a member of its own. Everything lives in `./data/demo`; running
//! it again reuses what exists.

mod mail_viewer;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tobira_auth::admin::clients::{AddClient, add_client};
use tobira_auth::admin::users::{AddUser, add_user};
use tobira_auth::config::{Issuer, ProviderConfig, ProviderKind, Secret};
use tobira_auth::domain::{Email, GrantType};
use tobira_auth::keys::Alg;
use tobira_auth::state::AppState;
use tobira_auth::web::i18n::Lang;
use tobira_auth::{Application, Clock, Config, telemetry};
use tokio::net::TcpListener;

const CLIENT_ID: &str = "marketplace";
const EMAIL: &str = "member@example.jp";
const PASSWORD: &str = "hinoki-sakura-lantern-7";
/// The stand-in provider's id in Tobira's configuration (and in its callback URL).
const PROVIDER_ID: &str = "demo";
/// Tobira's client at the stand-in provider.
const UPSTREAM_CLIENT_ID: &str = "tobira";
/// The stand-in provider's own member: signs in to Tobira with 「デモIDでログイン」.
const SOCIAL_EMAIL: &str = "social@example.jp";
const SOCIAL_PASSWORD: &str = "kaede-yuzu-lantern-42";

fn port(var: &str, default: u16) -> Result<u16, String> {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{var} must be a port number, got {v:?}")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let data = PathBuf::from("data/demo");
    let op_port = port("DEMO_OP_PORT", 8080)?;
    let mp_port = port("DEMO_MP_PORT", 3000)?;
    // 8025: where MailHog and Mailpit serve their web UI, a port developers already know.
    let mail_port = port("DEMO_MAIL_PORT", 8025)?;

    let up_port = port("DEMO_UPSTREAM_PORT", 8081)?;
    let op_issuer = format!("http://localhost:{op_port}");
    // The stand-in provider is another site: 127.0.0.1, not localhost, so that the two
    // OPs' cookies (which ignore ports) never meet in the browser.
    let up_config = Config {
        data_dir: data.join("upstream"),
        issuer: Issuer::parse(&format!("http://127.0.0.1:{up_port}"))?,
        ..Config::default()
    };
    let _logs = telemetry::init(&up_config.log);
    let up_listener = TcpListener::bind(("127.0.0.1", up_port))
        .await
        .map_err(|e| {
            format!("cannot listen on 127.0.0.1:{up_port} (set DEMO_UPSTREAM_PORT): {e}")
        })?;
    let upstream = Application::build_on(up_listener, up_config, Clock::system())
        .await
        .map_err(|e| e.to_string())?;
    let up_state = upstream.state().clone();
    let up_secret = ensure_client(
        &up_state,
        DemoClient {
            client_id: UPSTREAM_CLIENT_ID,
            name: "Tobira",
            redirect_uri: format!("{op_issuer}/federation/{PROVIDER_ID}/callback"),
            home: op_issuer.clone(),
            backchannel: false,
        },
        &data.join("upstream-client-secret"),
    )
    .await?;
    ensure_member(&up_state, SOCIAL_EMAIL, SOCIAL_PASSWORD, "ソーシャル会員").await?;

    let mut op_config = Config {
        data_dir: data.join("op"),
        issuer: Issuer::parse(&op_issuer)?,
        ..Config::default()
    };
    op_config.federation.providers.push(ProviderConfig {
        id: PROVIDER_ID.to_owned(),
        kind: ProviderKind::Oidc,
        client_id: UPSTREAM_CLIENT_ID.to_owned(),
        client_secret: Secret::new(up_secret),
        client_secret_file: String::new(),
        team_id: String::new(),
        key_id: String::new(),
        private_key_file: String::new(),
        issuer: up_state.config.issuer.as_str().to_owned(),
        scopes: Vec::new(),
        label: "デモIDでログイン".to_owned(),
        label_en: "Sign in with Demo ID".to_owned(),
        authorization_endpoint: String::new(),
        token_endpoint: String::new(),
        userinfo_endpoint: String::new(),
        jwks_uri: String::new(),
        revocation_endpoint: String::new(),
        graph_endpoint: String::new(),
    });
    let op_listener = TcpListener::bind(("127.0.0.1", op_port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{op_port} (set DEMO_OP_PORT): {e}"))?;
    let mp_listener = TcpListener::bind(("127.0.0.1", mp_port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{mp_port} (set DEMO_MP_PORT): {e}"))?;
    // Loopback only: the viewer shows live password-reset links.
    let mail_listener = TcpListener::bind(("127.0.0.1", mail_port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{mail_port} (set DEMO_MAIL_PORT): {e}"))?;
    let marketplace_url = format!("http://127.0.0.1:{mp_port}");

    let op = Application::build_on(op_listener, op_config, Clock::system())
        .await
        .map_err(|e| e.to_string())?;
    let state = op.state().clone();
    let secret = ensure_client(
        &state,
        DemoClient {
            client_id: CLIENT_ID,
            name: "スキルマーケット",
            redirect_uri: format!("{marketplace_url}/callback"),
            home: format!("{marketplace_url}/"),
            backchannel: true,
        },
        &data.join("marketplace-client-secret"),
    )
    .await?;
    ensure_member(&state, EMAIL, PASSWORD, "デモ会員").await?;
    let issuer = state.config.issuer.as_str().to_owned();
    let outbox = mail_viewer::Outbox::new(state.config.outbox_dir());

    let mp_config = tobira_marketplace::config::Config {
        public_url: marketplace_url.clone(),
        data_dir: data.join("marketplace"),
        oidc: tobira_marketplace::config::OidcConfig {
            issuer: issuer.clone(),
            client_id: CLIENT_ID.to_owned(),
            client_secret: tobira_marketplace::config::Secret::new(secret),
        },
        ..Default::default()
    };
    let mp = tobira_marketplace::App::build_on(mp_listener, mp_config).await?;

    println!();
    println!("  Tobira demo is running (ctrl-c to stop)");
    println!("  marketplace:   {marketplace_url}/");
    println!("  OP (issuer):   {issuer}/.well-known/openid-configuration");
    println!("  mail (outbox): http://127.0.0.1:{mail_port}/");
    println!("  demo member:   {EMAIL}");
    println!("  password:      {PASSWORD}");
    println!("  social sign-in: 「デモIDでログイン」 as {SOCIAL_EMAIL} / {SOCIAL_PASSWORD}");
    println!(
        "                  (a second Tobira at {} stands in for the provider)",
        up_state.config.issuer.as_str()
    );
    println!("  data:          {}", data.display());
    println!();

    let (stop_up, up_stopped) = tokio::sync::oneshot::channel::<()>();
    let (stop_op, op_stopped) = tokio::sync::oneshot::channel::<()>();
    let (stop_mp, mp_stopped) = tokio::sync::oneshot::channel::<()>();
    let (stop_mail, mail_stopped) = tokio::sync::oneshot::channel::<()>();
    let up_task = tokio::spawn(upstream.run_until(async {
        let _ = up_stopped.await;
    }));
    let op_task = tokio::spawn(op.run_until(async {
        let _ = op_stopped.await;
    }));
    let mp_task = tokio::spawn(mp.run_until(async {
        let _ = mp_stopped.await;
    }));
    let mail_task = tokio::spawn(mail_viewer::serve(mail_listener, outbox, async {
        let _ = mail_stopped.await;
    }));
    tobira_auth::startup::shutdown_signal().await;
    let _ = stop_up.send(());
    let _ = stop_op.send(());
    let _ = stop_mp.send(());
    let _ = stop_mail.send(());
    let _ = up_task.await;
    let _ = op_task.await;
    let _ = mp_task.await;
    if let Ok(Err(e)) = mail_task.await {
        eprintln!("mail viewer: {e}");
    }
    Ok(())
}

/// A client the demo registers at one of its OPs.
struct DemoClient {
    client_id: &'static str,
    name: &'static str,
    redirect_uri: String,
    /// Where a logout may send the browser back to.
    home: String,
    /// Whether the client takes back-channel logout (at `{home}/backchannel-logout`).
    backchannel: bool,
}

/// A confidential client, registered once. Its secret is kept in `secret_file` (the OP
/// keeps only a hash), so the next run can reuse the registration.
async fn ensure_client(
    state: &AppState,
    client: DemoClient,
    secret_file: &Path,
) -> Result<String, String> {
    let existing = state
        .db
        .clients()
        .find(client.client_id)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(existing) = existing {
        let same_uri = existing.redirect_uri(&client.redirect_uri).is_some();
        if let (true, Ok(secret)) = (same_uri, std::fs::read_to_string(secret_file)) {
            return Ok(secret.trim().to_owned());
        }
        // A different port or a lost secret: register again.
        tobira_auth::admin::clients::delete_client(
            &state.db,
            &state.clock,
            &tobira_auth::admin::audit::Context::system(),
            client.client_id,
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    let backchannel = client
        .backchannel
        .then(|| format!("{}/backchannel-logout", client.home.trim_end_matches('/')));
    let added = add_client(
        &state.db,
        &state.clock,
        AddClient {
            name: client.name.to_owned(),
            redirect_uris: vec![client.redirect_uri],
            post_logout_redirect_uris: vec![client.home],
            public: false,
            first_party: true,
            extra_grants: vec![GrantType::RefreshToken],
            id_token_alg: Alg::RS256,
            backchannel_logout_uri: backchannel,
            backchannel_logout_session_required: false,
            scopes: Vec::new(),
            client_id: Some(client.client_id.to_owned()),
            secret: None,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let secret = added.secret.ok_or("a confidential client has a secret")?;
    write_private(secret_file, &secret)?;
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A verified member with a password, created once.
async fn ensure_member(
    state: &AppState,
    email: &str,
    password: &str,
    name: &str,
) -> Result<(), String> {
    let parsed = Email::parse(email).map_err(|e| e.to_string())?;
    if state
        .db
        .users()
        .find_by_email(&parsed)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(());
    }
    add_user(
        &state.db,
        &state.hasher,
        &state.clock,
        &tobira_auth::admin::audit::Context::cli(),
        AddUser {
            email,
            password: Some(password),
            email_verified: true,
            display_name: name.to_owned(),
            locale: Lang::Ja,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}
