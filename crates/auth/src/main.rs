//! `tobira`: the OP's server and its operator commands.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tobira_auth::account::delete::delete_account;
use tobira_auth::admin::clients::{AddClient, ClientView, add_client};
use tobira_auth::admin::support::{self, Outcome, SupportError, TwoStepReset};
use tobira_auth::admin::unlock::{self, Unlock};
use tobira_auth::admin::users::{AddUser, UserView, add_user};
use tobira_auth::authn::password::PasswordHasher;
use tobira_auth::domain::GrantType;
use tobira_auth::domain::{Email, User, UserStatus};
use tobira_auth::keys::schedule::{self, KeyView};
use tobira_auth::keys::{Alg, IdentifierHasher, KeyPolicy, KeyRing, MasterKey};
use tobira_auth::startup::{self, Application};
use tobira_auth::store::Db;
use tobira_auth::web::i18n::{Lang, Msg};
use tobira_auth::{Clock, Config, telemetry};

#[derive(Parser)]
#[command(
    name = "tobira",
    version,
    about = "Tobira OpenID Connect identity provider"
)]
struct Cli {
    /// Configuration file (TOML); also `TOBIRA_CONFIG`. Without one, built-in defaults
    /// and `TOBIRA_*` environment variables apply.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (applies pending migrations first unless
    /// `database.migrate_on_start = false`).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage member accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage relying parties (OAuth clients).
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Housekeeping a running server also does on its own.
    #[command(subcommand)]
    Maintenance(MaintenanceCommand),
    /// Signing keys and the master key (see "Key rotation" in the README).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List every signing key with its state and times.
    List {
        /// Print one JSON array on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Publish a next key of each algorithm (or of --alg): it signs once clients have
    /// had time to see it (`keys.publish_ahead_secs`). With --now it signs after one
    /// reload interval, and the command returns when it does.
    Rotate {
        #[arg(long, value_enum)]
        alg: Option<AlgArg>,
        /// An emergency: sign with the new key as soon as every replica publishes it.
        #[arg(long)]
        now: bool,
    },
    /// Revoke a key (an emergency: it leaked). It leaves the JWKS and nothing it signed
    /// is accepted any more; if it was signing, another key signs at once.
    Revoke {
        #[arg(long)]
        kid: String,
    },
    /// Re-encrypt everything the master key protects under `keys.master_key`, while the
    /// earlier key (in `keys.previous_master_keys`) still opens it; says when the earlier
    /// key can go.
    RotateMaster,
    /// Print a new random master key (base64url, 32 bytes) for `keys.master_key`.
    GenerateMaster,
}

#[derive(Subcommand)]
enum MaintenanceCommand {
    /// Remove what has outlived its time now: sign-ups never verified, old sign-in
    /// history, remembered devices past their time, and the personal data of accounts deleted more than
    /// `account.retention_days` ago. Prints how many rows went.
    Purge,
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Register a client. Prints its client_id and, for a confidential client, its
    /// secret (shown once; only a hash is kept).
    Add(ClientsAdd),
    /// List the registered clients.
    List {
        /// Print one JSON array on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Remove a client; its grants and tokens stop working.
    Remove {
        #[arg(value_name = "CLIENT_ID")]
        client_id: String,
    },
}

#[derive(Args)]
struct ClientsAdd {
    #[arg(long)]
    name: String,
    /// Registered redirect URI (exact match); repeat for several.
    #[arg(long = "redirect-uri", required = true)]
    redirect_uris: Vec<String>,
    /// Where RP-initiated logout may return; repeat for several.
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// A public client (no secret; PKCE required), e.g. a mobile app or SPA.
    #[arg(long)]
    public: bool,
    /// One of our own apps: no consent screen.
    #[arg(long)]
    first_party: bool,
    /// An extra grant type beyond authorization_code.
    #[arg(long = "grant", value_enum)]
    grants: Vec<GrantArg>,
    /// Signature algorithm of this client's ID tokens.
    #[arg(long, value_enum, default_value_t = AlgArg::RS256)]
    id_token_alg: AlgArg,
    /// Where Tobira posts logout tokens when a member's session ends (OpenID Connect
    /// Back-Channel Logout 1.0): https, or http on a loopback host.
    #[arg(long)]
    backchannel_logout_uri: Option<String>,
    /// Every logout token to this client carries the session id (`sid`).
    #[arg(long)]
    backchannel_logout_session_required: bool,
    /// Use this client_id instead of a generated one.
    #[arg(long)]
    client_id: Option<String>,
    /// Read the client secret from standard input instead of generating one.
    #[arg(long)]
    secret_stdin: bool,
    /// Print one JSON object on standard output.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum GrantArg {
    #[value(name = "refresh_token")]
    RefreshToken,
    #[value(name = "client_credentials")]
    ClientCredentials,
}

#[derive(Clone, Copy, ValueEnum)]
#[allow(clippy::upper_case_acronyms)]
enum AlgArg {
    #[value(name = "RS256")]
    RS256,
    #[value(name = "ES256")]
    ES256,
    #[value(name = "EdDSA")]
    EdDSA,
}

impl From<AlgArg> for Alg {
    fn from(alg: AlgArg) -> Self {
        match alg {
            AlgArg::RS256 => Alg::RS256,
            AlgArg::ES256 => Alg::ES256,
            AlgArg::EdDSA => Alg::EdDSA,
        }
    }
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create an account. Asks for the password twice on a terminal.
    Add(UsersAdd),
    /// Show an account.
    Show {
        #[arg(long)]
        email: String,
        /// Print one JSON object on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Lift sign-in throttling: of an account (its lock and count, its devices' counts,
    /// its failures in every address's count) or of one client address (IPv6 by /64).
    /// A running `tobira serve` applies it.
    #[command(group = clap::ArgGroup::new("target").required(true).args(["email", "ip"]))]
    Unlock {
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
    },
    /// Freeze an account: sign-in is refused (the member is shown the support contact),
    /// every session, grant and refresh token ends, clients are told by back-channel
    /// logout, and the member is mailed.
    Freeze {
        #[arg(long)]
        email: String,
        /// Why, for support's record (`users show` prints it); at most 500 characters
        /// on one line.
        #[arg(long)]
        reason: String,
        /// Tell the member the reason in the mail too.
        #[arg(long)]
        mail_reason: bool,
    },
    /// Lift a freeze; the member is mailed.
    Unfreeze {
        #[arg(long)]
        email: String,
    },
    /// End every session and token of an account (clients are told) without freezing
    /// it: the member can sign in again at once.
    SignOut {
        #[arg(long)]
        email: String,
    },
    /// Turn two-step verification (二段階認証) off for a member who lost every second
    /// factor and recovery code: the authenticator app, email codes, recovery codes and
    /// remembered devices go, the member is mailed and the history records it. The
    /// password alone signs in afterwards.
    #[command(name = "reset-2fa")]
    Reset2fa {
        #[arg(long)]
        email: String,
    },
    /// Delete an account, as its member can: sign-in is refused at once, sessions and
    /// tokens end, the member is mailed; personal data is purged after
    /// `account.retention_days`, and the address cannot sign up again for
    /// `account.reregister_cooldown_days`.
    Delete {
        #[arg(long)]
        email: String,
    },
}

#[derive(Args)]
struct UsersAdd {
    #[arg(long)]
    email: String,
    /// Read the password from standard input (one trailing newline is dropped).
    #[arg(long)]
    password_stdin: bool,
    /// Mark the email address as already verified.
    #[arg(long)]
    verified: bool,
    /// Display name.
    #[arg(long, default_value = "")]
    name: String,
    /// Language of mails and pages for this member.
    #[arg(long, value_enum, default_value_t = LocaleArg::Ja)]
    locale: LocaleArg,
    /// Print one JSON object on standard output.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum LocaleArg {
    Ja,
    En,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    // Operator commands print their answer; progress lines would only drown it.
    let mut log = config.log.clone();
    if !matches!(cli.command, Command::Serve) && log.level == "info" {
        log.level = "warn".to_owned();
    }
    telemetry::init(&log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// The operator's language, from the usual POSIX variables; English by default.
fn cli_lang() -> Lang {
    ["LC_ALL", "LC_MESSAGES", "LANG"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.is_empty())
        .and_then(|v| Lang::negotiate(&v))
        .unwrap_or(Lang::En)
}

async fn run(command: Command, config: Config) -> Result<(), String> {
    match command {
        Command::Serve => {
            let app = Application::build(config, Clock::system())
                .await
                .map_err(|e| e.to_string())?;
            app.run_until(startup::shutdown_signal())
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Migrate => {
            let db = tobira_auth::store::Db::connect(
                &config.database_url(),
                config.database.max_connections,
                std::time::Duration::from_secs(config.database.connect_timeout_secs),
            )
            .await
            .map_err(|e| e.to_string())?;
            db.migrate().await.map_err(|e| e.to_string())?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Users(UsersCommand::Add(args)) => users_add(args, &config).await,
        Command::Users(UsersCommand::Show { email, json }) => {
            users_show(&email, json, &config).await
        }
        Command::Users(UsersCommand::Unlock { email, ip }) => {
            users_unlock(email, ip, &config).await
        }
        Command::Users(UsersCommand::Freeze {
            email,
            reason,
            mail_reason,
        }) => users_freeze(&email, &reason, mail_reason, &config).await,
        Command::Users(UsersCommand::Unfreeze { email }) => users_unfreeze(&email, &config).await,
        Command::Users(UsersCommand::SignOut { email }) => users_sign_out(&email, &config).await,
        Command::Users(UsersCommand::Delete { email }) => users_delete(&email, &config).await,
        Command::Users(UsersCommand::Reset2fa { email }) => {
            users_reset_two_step(&email, &config).await
        }
        Command::Maintenance(MaintenanceCommand::Purge) => {
            let db = startup::open_db(&config).await.map_err(|e| e.to_string())?;
            let removed = tobira_auth::jobs::purge_store(&db, Clock::system().now(), &config)
                .await
                .map_err(|e| e.to_string())?;
            println!("purged {removed} rows");
            Ok(())
        }
        Command::Keys(command) => keys_command(command, &config).await,
        Command::Clients(ClientsCommand::Add(args)) => clients_add(args, &config).await,
        Command::Clients(ClientsCommand::List { json }) => clients_list(json, &config).await,
        Command::Clients(ClientsCommand::Remove { client_id }) => {
            let db = startup::open_db(&config).await.map_err(|e| e.to_string())?;
            if db
                .clients()
                .remove(&client_id)
                .await
                .map_err(|e| e.to_string())?
            {
                eprintln!("removed client {client_id}");
                Ok(())
            } else {
                Err(format!("no client with client_id {client_id}"))
            }
        }
    }
}

async fn keys_command(command: KeysCommand, config: &Config) -> Result<(), String> {
    let algs = |alg: Option<AlgArg>| alg.map_or_else(|| Alg::ALL.to_vec(), |a| vec![a.into()]);
    match command {
        KeysCommand::GenerateMaster => generate_master(),
        KeysCommand::RotateMaster => {
            let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
            let master = MasterKey::load_or_create(config).map_err(|e| e.to_string())?;
            let report = tobira_auth::keys::reseal::rotate_master(&db, &master)
                .await
                .map_err(|e| e.to_string())?;
            println!("{report}");
            Ok(())
        }
        KeysCommand::List { json } => {
            let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
            keys_list(&db, json).await
        }
        KeysCommand::Rotate { alg, now: false } => {
            let (db, master, clock, policy) = signing_keys(config).await?;
            let keys = schedule::rotate(&db, &master, clock.now(), &policy, &algs(alg), false)
                .await
                .map_err(|e| e.to_string())?;
            let mut out = std::io::stdout().lock();
            for key in &keys {
                writeln!(
                    out,
                    "{}\t{}\tsigns from {}",
                    key.kid,
                    key.alg,
                    key.activate_after.map_or_else(String::new, rfc3339)
                )
                .map_err(|e| e.to_string())?;
            }
            eprintln!(
                "published; the schedule of a running tobira serve makes them sign at that time"
            );
            Ok(())
        }
        KeysCommand::Rotate { alg, now: true } => {
            let (db, master, clock, policy) = signing_keys(config).await?;
            rotate_now(&db, &master, &clock, &policy, &algs(alg)).await
        }
        KeysCommand::Revoke { kid } => {
            // No ring: an emergency revoke opens no private key, so a key this master
            // key cannot open (the one that leaked, say) must not stand in its way.
            let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
            let master = MasterKey::load_or_create(config).map_err(|e| e.to_string())?;
            let (clock, policy) = (Clock::system(), KeyPolicy::from_config(config));
            let revocation = schedule::revoke(&db, &master, clock.now(), &policy, &kid)
                .await
                .map_err(|e| e.to_string())?;
            println!("{revocation}");
            Ok(())
        }
    }
}

/// What changing signing keys needs: the store, the master key, the clock and the
/// policy; with the keys `tobira serve` makes on its first start, so that a new key has
/// one to follow. Fails early, naming it, on the wrong master key.
async fn signing_keys(config: &Config) -> Result<(Db, MasterKey, Clock, KeyPolicy), String> {
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let master = MasterKey::load_or_create(config).map_err(|e| e.to_string())?;
    let clock = Clock::system();
    let policy = KeyPolicy::from_config(config);
    KeyRing::load_or_init(&db, &master, &clock, policy)
        .await
        .map_err(|e| e.to_string())?;
    Ok((db, master, clock, policy))
}

/// `keys rotate --now`: publishes at once, waits until every replica has published the
/// key, makes it sign, and waits until every replica signs with it.
async fn rotate_now(
    db: &Db,
    master: &MasterKey,
    clock: &Clock,
    policy: &KeyPolicy,
    algs: &[Alg],
) -> Result<(), String> {
    let keys = schedule::rotate(db, master, clock.now(), policy, algs, true)
        .await
        .map_err(|e| e.to_string())?;
    let mut due = clock.now();
    for key in &keys {
        let at = key.activate_after.unwrap_or(due);
        due = due.max(at);
        eprintln!(
            "published {} ({}); it signs from {}",
            key.kid,
            key.alg,
            rfc3339(at)
        );
    }
    sleep_for(due - clock.now()).await;
    schedule::tick(db, master, clock.now(), policy)
        .await
        .map_err(|e| e.to_string())?;
    for key in &keys {
        let state = db
            .signing_keys()
            .lookup(&key.kid)
            .await
            .map_err(|e| e.to_string())?
            .map(|k| k.state);
        if state.as_deref() != Some("active") {
            return Err(format!(
                "{} is {} instead of active: another change to the keys came first (`tobira keys list`)",
                key.kid,
                state.as_deref().unwrap_or("gone")
            ));
        }
    }
    // A replica sees the promotion at its next reload, up to one interval
    // plus a query later; the second interval is the margin for that query
    // and for a replica slowed by load.
    eprintln!(
        "active; waiting two reload intervals ({} ms each) for every replica to load it",
        policy.reload.whole_milliseconds()
    );
    sleep_for(policy.reload * 2).await;
    for key in &keys {
        println!("{} signs now", key.kid);
    }
    Ok(())
}

async fn sleep_for(duration: time::Duration) {
    if let Ok(duration) = std::time::Duration::try_from(duration) {
        tokio::time::sleep(duration).await;
    }
}

async fn keys_list(db: &Db, json: bool) -> Result<(), String> {
    let keys = schedule::list(db).await.map_err(|e| e.to_string())?;
    let views: Vec<KeyView> = keys.iter().map(KeyView::from).collect();
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string(&views).map_err(|e| e.to_string())?;
        return writeln!(out, "{text}").map_err(|e| e.to_string());
    }
    if views.is_empty() {
        eprintln!("no signing keys yet: `tobira serve` makes them when it first starts");
    }
    for v in views {
        let times = [
            ("activate after", v.activate_after),
            ("activated", v.activated_at),
            ("retire after", v.retire_after),
            ("retired", v.retired_at),
            ("revoked", v.revoked_at),
        ]
        .into_iter()
        .filter_map(|(label, t)| t.map(|t| format!("{label} {}", rfc3339(t))))
        .collect::<Vec<_>>()
        .join("\t");
        writeln!(
            out,
            "{}\t{}\t{}\tcreated {}\t{times}",
            v.kid,
            v.alg,
            v.state,
            rfc3339(v.created_at)
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A new master key on standard output, for the operator to store; nothing else is
/// touched.
fn generate_master() -> Result<(), String> {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    rand::Rng::fill_bytes(&mut rand::rng(), &mut key[..]);
    let text = zeroize::Zeroizing::new(tobira_auth::crypto::b64url(&key[..]));
    writeln!(std::io::stdout().lock(), "{}", text.as_str()).map_err(|e| e.to_string())
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

async fn clients_add(args: ClientsAdd, config: &Config) -> Result<(), String> {
    let secret = if args.secret_stdin {
        Some(read_secret_stdin("client secret")?)
    } else {
        None
    };
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let request = AddClient {
        name: args.name,
        redirect_uris: args.redirect_uris,
        post_logout_redirect_uris: args.post_logout_redirect_uris,
        public: args.public,
        first_party: args.first_party,
        extra_grants: args
            .grants
            .iter()
            .map(|g| match g {
                GrantArg::RefreshToken => GrantType::RefreshToken,
                GrantArg::ClientCredentials => GrantType::ClientCredentials,
            })
            .collect(),
        id_token_alg: args.id_token_alg.into(),
        backchannel_logout_uri: args.backchannel_logout_uri,
        backchannel_logout_session_required: args.backchannel_logout_session_required,
        client_id: args.client_id,
        secret,
    };
    let added = add_client(&db, &Clock::system(), request)
        .await
        .map_err(|e| e.to_string())?;
    let view = ClientView::from(&added.client);
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut value = serde_json::to_value(&view).map_err(|e| e.to_string())?;
        if let Some(secret) = &added.secret {
            value["client_secret"] = serde_json::Value::String(secret.clone());
        }
        writeln!(out, "{value}").map_err(|e| e.to_string())
    } else {
        writeln!(out, "client_id:     {}", view.client_id).map_err(|e| e.to_string())?;
        if let Some(secret) = &added.secret {
            writeln!(out, "client_secret: {secret}").map_err(|e| e.to_string())?;
            eprintln!("The secret is shown only now; Tobira keeps only its hash.");
        }
        Ok(())
    }
}

async fn clients_list(json: bool, config: &Config) -> Result<(), String> {
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let clients = db.clients().list().await.map_err(|e| e.to_string())?;
    let views: Vec<ClientView> = clients.iter().map(ClientView::from).collect();
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string(&views).map_err(|e| e.to_string())?;
        return writeln!(out, "{text}").map_err(|e| e.to_string());
    }
    for v in views {
        let kind = match (v.public, v.first_party) {
            (true, _) => "public",
            (false, true) => "confidential, first-party",
            (false, false) => "confidential",
        };
        let uris: Vec<&str> = v.redirect_uris.iter().map(|u| u.as_str()).collect();
        writeln!(
            out,
            "{}\t{}\t({kind})\t{}",
            v.client_id,
            v.name,
            uris.join(" ")
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn users_add(args: UsersAdd, config: &Config) -> Result<(), String> {
    let lang = cli_lang();
    // Refuse a bad address before asking for a password.
    Email::parse(&args.email).map_err(|e| Msg::from(e).text(lang).to_owned())?;
    let password = if args.password_stdin {
        read_secret_stdin("password")?
    } else {
        prompt_password_twice(lang)?
    };
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let hasher = PasswordHasher::new(&config.password, config.max_concurrent_hashes(), 0)
        .map_err(|e| e.to_string())?;
    let request = AddUser {
        email: &args.email,
        password: Some(&password),
        email_verified: args.verified,
        display_name: args.name,
        locale: match args.locale {
            LocaleArg::Ja => Lang::Ja,
            LocaleArg::En => Lang::En,
        },
    };
    let user = add_user(&db, &hasher, &Clock::system(), request)
        .await
        .map_err(|e| e.message(lang).map_or_else(|| e.to_string(), str::to_owned))?;
    print_user(&UserView::from(&user), args.json)
}

async fn users_unlock(
    email: Option<String>,
    ip: Option<std::net::IpAddr>,
    config: &Config,
) -> Result<(), String> {
    let lang = cli_lang();
    let unlock = match (email, ip) {
        (Some(email), _) => {
            Email::parse(&email).map_err(|e| Msg::from(e).text(lang).to_owned())?;
            Unlock::Account { email }
        }
        (None, Some(ip)) => Unlock::Address { ip },
        (None, None) => return Err("give --email or --ip".to_owned()),
    };
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let id = unlock::request(&db, &Clock::system(), unlock)
        .await
        .map_err(|e| e.to_string())?;
    // A running server takes the job within its poll interval.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let pending = db
            .jobs()
            .pending(unlock::SUPPORT_QUEUE)
            .await
            .map_err(|e| e.to_string())?;
        if !pending.iter().any(|job| job.id == id) {
            eprintln!("unlocked");
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    eprintln!(
        "queued: no running tobira serve applied it within 10 seconds; the next one to run will"
    );
    Ok(())
}

/// A support error in the operator's words.
fn support_error(e: SupportError) -> String {
    e.message(cli_lang())
        .map_or_else(|| e.to_string(), str::to_owned)
}

/// The master key, checked against the database: it must open the secrets sealed there
/// (a mail sealed with another key would never be sent). With the identifier key that
/// deletion needs.
async fn keys(
    db: &Db,
    config: &Config,
    clock: &Clock,
) -> Result<(MasterKey, IdentifierHasher), String> {
    let master = MasterKey::load_or_create(config).map_err(|e| e.to_string())?;
    let identifiers = IdentifierHasher::load_or_init(db, &master, clock)
        .await
        .map_err(|e| e.to_string())?;
    Ok((master, identifiers))
}

async fn users_freeze(
    email: &str,
    reason: &str,
    mail_reason: bool,
    config: &Config,
) -> Result<(), String> {
    // An unknown address is refused before the keys are read (or made).
    let (db, _) = account(email, config).await?;
    let clock = Clock::system();
    let (master, _) = keys(&db, config, &clock).await?;
    match support::freeze(&db, &master, config, &clock, email, reason, mail_reason)
        .await
        .map_err(support_error)?
    {
        Outcome::Changed => eprintln!(
            "frozen: every session and token of the account ended, and the member was mailed{}",
            if mail_reason { " with the reason" } else { "" }
        ),
        Outcome::Unchanged => eprintln!("the account was already frozen: nothing changed"),
    }
    Ok(())
}

async fn users_unfreeze(email: &str, config: &Config) -> Result<(), String> {
    let (db, _) = account(email, config).await?;
    let clock = Clock::system();
    let (master, _) = keys(&db, config, &clock).await?;
    match support::unfreeze(&db, &master, config, &clock, email)
        .await
        .map_err(support_error)?
    {
        Outcome::Changed => eprintln!("unfrozen: the member can sign in again and was mailed"),
        Outcome::Unchanged => eprintln!("the account was not frozen: nothing changed"),
    }
    Ok(())
}

async fn users_sign_out(email: &str, config: &Config) -> Result<(), String> {
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let ended = support::sign_out(&db, &Clock::system(), email)
        .await
        .map_err(support_error)?;
    println!("ended {ended} sessions");
    Ok(())
}

async fn users_reset_two_step(email: &str, config: &Config) -> Result<(), String> {
    let (db, _) = account(email, config).await?;
    let clock = Clock::system();
    let (master, _) = keys(&db, config, &clock).await?;
    match support::reset_two_step(&db, &master, config, &clock, email, "tobira CLI")
        .await
        .map_err(support_error)?
    {
        TwoStepReset::Reset(factors) => {
            let mut removed = Vec::new();
            if factors.totp {
                removed.push("the authenticator app".to_owned());
            }
            if factors.email {
                removed.push("email codes".to_owned());
            }
            removed.push(format!("{} unused recovery codes", factors.recovery_left));
            eprintln!(
                "two-step verification turned off ({} and every remembered device removed): the member signs in with the password alone, was mailed, and the history records it",
                removed.join(", ")
            );
        }
        TwoStepReset::NotOn => {
            eprintln!("the account has no two-step verification: nothing changed");
        }
    }
    Ok(())
}

async fn users_delete(email: &str, config: &Config) -> Result<(), String> {
    // A deleted account is not found by its address any more: a second deletion is told
    // there is no account.
    let (db, user) = account(email, config).await?;
    let clock = Clock::system();
    let (master, identifiers) = keys(&db, config, &clock).await?;
    let deleted = delete_account(&db, &master, &identifiers, config, clock.now(), &user)
        .await
        .map_err(|e| e.to_string())?;
    if deleted {
        eprintln!(
            "deleted: sign-in is refused, every session and token ended; personal data is purged after {} days",
            config.account.retention_days
        );
    } else {
        eprintln!("the account was already deleted: nothing changed");
    }
    Ok(())
}

/// The account (not deleted) with this address, and the open store.
async fn account(email: &str, config: &Config) -> Result<(Db, User), String> {
    // A bad address is refused before the store is opened.
    Email::parse(email).map_err(|e| support_error(e.into()))?;
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let user = support::account(&db, email).await.map_err(support_error)?;
    Ok((db, user))
}

async fn users_show(email: &str, json: bool, config: &Config) -> Result<(), String> {
    let (_, user) = account(email, config).await?;
    let view = UserView::from(&user);
    let reason = user
        .frozen_reason
        .as_deref()
        .filter(|_| user.status == UserStatus::Frozen);
    match (reason, json) {
        (None, _) => print_user(&view, json),
        // Support's reason is for support: `users show` is where they read it.
        (Some(reason), true) => {
            let mut value = serde_json::to_value(&view).map_err(|e| e.to_string())?;
            value["frozen_reason"] = serde_json::Value::String(reason.to_owned());
            writeln!(std::io::stdout().lock(), "{value}").map_err(|e| e.to_string())
        }
        (Some(reason), false) => {
            print_user(&view, false)?;
            writeln!(std::io::stdout().lock(), "frozen reason:  {reason}")
                .map_err(|e| e.to_string())
        }
    }
}

fn print_user(view: &UserView, json: bool) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let text = if json {
        serde_json::to_string(view).map_err(|e| e.to_string())?
    } else {
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        format!(
            "id:             {}\nsub:            {}\nemail:          {}\nemail verified: {}\npassword:       {}\ndisplay name:   {}\nlocale:         {}\nstatus:         {}\ncreated:        {}\nupdated:        {}",
            view.id,
            view.sub,
            view.email,
            view.email_verified,
            if view.has_password { "set" } else { "none" },
            view.display_name,
            view.locale,
            view.status.as_str(),
            fmt(view.created_at),
            fmt(view.updated_at),
        )
    };
    writeln!(out, "{text}").map_err(|e| e.to_string())
}

fn read_secret_stdin(what: &str) -> Result<String, String> {
    let mut buf = String::new();
    std::io::stdin()
        .read_to_string(&mut buf)
        .map_err(|e| format!("cannot read the {what} from standard input: {e}"))?;
    // Drop the newline `echo` adds; anything else (spaces included) is the secret.
    let secret = buf
        .strip_suffix("\r\n")
        .or_else(|| buf.strip_suffix('\n'))
        .unwrap_or(&buf);
    if secret.is_empty() {
        return Err(format!("no {what} on standard input"));
    }
    Ok(secret.to_owned())
}

fn prompt_password_twice(lang: Lang) -> Result<String, String> {
    if !std::io::stdin().is_terminal() {
        return Err(
            "no terminal to ask for the password on: pass it on standard input with --password-stdin"
                .to_owned(),
        );
    }
    let (first_prompt, second_prompt) = match lang {
        Lang::Ja => ("パスワード: ", "パスワード（確認）: "),
        Lang::En => ("Password: ", "Repeat password: "),
    };
    let first = rpassword::prompt_password(first_prompt).map_err(|e| e.to_string())?;
    let second = rpassword::prompt_password(second_prompt).map_err(|e| e.to_string())?;
    if first != second {
        return Err(Msg::PasswordsDoNotMatch.text(lang).to_owned());
    }
    Ok(first)
}
