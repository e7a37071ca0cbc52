//! `tobira clients`: relying parties, through the same `admin::clients` functions as
//! the admin API (each change recorded in the audit log as the operator at the CLI).

use std::io::Write;

use clap::{Args, Subcommand, ValueEnum};
use tobira_auth::admin::audit::Context;
use tobira_auth::admin::clients::{self, AddClient, ClientChanges, ClientView};
use tobira_auth::domain::GrantType;
use tobira_auth::startup;
use tobira_auth::{Clock, Config};

use super::{AlgArg, read_secret_stdin, rfc3339};

#[derive(Subcommand)]
pub enum ClientsCommand {
    /// Register a client. Prints its client_id and, for a confidential client, its
    /// secret (shown once; only a hash is kept).
    Add(ClientsAdd),
    /// List the registered clients.
    List {
        /// Print one JSON array on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Show one client (never its secret).
    Show {
        #[arg(value_name = "CLIENT_ID")]
        client_id: String,
        /// Print one JSON object on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Change a client's settings; what is not given stays. The secret stays too.
    Update(ClientsUpdate),
    /// Give a confidential client a new secret (shown once). The old one keeps working
    /// for the grace period, so the client can be redeployed without an outage.
    RotateSecret {
        #[arg(value_name = "CLIENT_ID")]
        client_id: String,
        /// Hours the old secret keeps working (0: it stops now, e.g. when it leaked);
        /// `admin.client_secret_grace_hours` by default.
        #[arg(long)]
        grace_hours: Option<u32>,
        /// Print one JSON object on standard output.
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
pub struct ClientsUpdate {
    #[arg(value_name = "CLIENT_ID")]
    client_id: String,
    #[arg(long)]
    name: Option<String>,
    /// Replaces the registered redirect URIs; repeat for several.
    #[arg(long = "redirect-uri", conflicts_with = "no_redirect_uris")]
    redirect_uris: Vec<String>,
    /// Removes every redirect URI, and with them the authorization code flow (a
    /// client_credentials client only).
    #[arg(long)]
    no_redirect_uris: bool,
    /// Replaces the post-logout redirect URIs; repeat for several.
    #[arg(
        long = "post-logout-redirect-uri",
        conflicts_with = "no_post_logout_redirect_uris"
    )]
    post_logout_redirect_uris: Vec<String>,
    /// Removes every post-logout redirect URI.
    #[arg(long)]
    no_post_logout_redirect_uris: bool,
    /// Replaces the grant types beyond authorization_code; repeat for several.
    #[arg(long = "grant", value_enum, conflicts_with = "no_extra_grants")]
    grants: Vec<GrantArg>,
    /// Leaves authorization_code as the only grant type.
    #[arg(long)]
    no_extra_grants: bool,
    /// Signature algorithm of this client's ID tokens.
    #[arg(long, value_enum)]
    id_token_alg: Option<AlgArg>,
    /// Where Tobira posts logout tokens.
    #[arg(long, conflicts_with = "no_backchannel_logout_uri")]
    backchannel_logout_uri: Option<String>,
    /// Stops back-channel logout to this client.
    #[arg(long)]
    no_backchannel_logout_uri: bool,
    /// Whether every logout token carries the session id (`sid`).
    #[arg(long, value_name = "true|false")]
    backchannel_logout_session_required: Option<bool>,
    /// Whether this is one of our own apps (no consent screen).
    #[arg(long, value_name = "true|false")]
    first_party: Option<bool>,
    /// Replaces the API scopes for client_credentials; repeat for several.
    #[arg(long = "scope", conflicts_with = "no_scopes")]
    scopes: Vec<String>,
    /// Removes every API scope.
    #[arg(long)]
    no_scopes: bool,
    /// Print the client as one JSON object on standard output.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ClientsAdd {
    #[arg(long)]
    name: String,
    /// Registered redirect URI (exact match); repeat for several. Required unless the
    /// client only uses client_credentials (it then has no authorization_code grant).
    #[arg(long = "redirect-uri")]
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
    /// An API scope for client_credentials (`admin`: the admin API); repeat for several.
    #[arg(long = "scope")]
    scopes: Vec<String>,
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

impl From<GrantArg> for GrantType {
    fn from(g: GrantArg) -> Self {
        match g {
            GrantArg::RefreshToken => GrantType::RefreshToken,
            GrantArg::ClientCredentials => GrantType::ClientCredentials,
        }
    }
}

/// A list option: replaced when given, emptied by its `--no-…` flag, else unchanged.
fn replaced<T>(given: Vec<T>, clear: bool) -> Option<Vec<T>> {
    (clear || !given.is_empty()).then_some(given)
}

fn print_json(value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string(value).map_err(|e| e.to_string())?;
    writeln!(std::io::stdout().lock(), "{text}").map_err(|e| e.to_string())
}

fn print_client(view: &ClientView) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let uris = |list: &[tobira_auth::domain::RedirectUri]| {
        list.iter()
            .map(|u| u.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let grants: Vec<&str> = view.grant_types.iter().map(|g| g.as_str()).collect();
    let lines = [
        ("client_id", view.client_id.clone()),
        ("name", view.name.clone()),
        (
            "kind",
            match (view.public, view.first_party) {
                (true, _) => "public",
                (false, true) => "confidential, first-party",
                (false, false) => "confidential",
            }
            .to_owned(),
        ),
        ("redirect_uris", uris(&view.redirect_uris)),
        ("post_logout", uris(&view.post_logout_redirect_uris)),
        ("grant_types", grants.join(" ")),
        (
            "id_token_alg",
            view.id_token_signed_response_alg.as_str().to_owned(),
        ),
        (
            "backchannel",
            view.backchannel_logout_uri
                .as_ref()
                .map(|u| {
                    let sid = if view.backchannel_logout_session_required {
                        " (sid required)"
                    } else {
                        ""
                    };
                    format!("{u}{sid}")
                })
                .unwrap_or_default(),
        ),
        ("scopes", view.scopes.join(" ")),
        (
            "old_secret_ends",
            view.previous_credential_expires_at
                .map(rfc3339)
                .unwrap_or_default(),
        ),
        ("created_at", rfc3339(view.created_at)),
    ];
    for (label, value) in lines {
        writeln!(out, "{:<16} {value}", format!("{label}:")).map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn clients_show(client_id: &str, json: bool, config: &Config) -> Result<(), String> {
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let client = clients::show_client(&db, client_id)
        .await
        .map_err(|e| e.to_string())?;
    let view = ClientView::new(&client, Clock::system().now());
    if json {
        print_json(&view)
    } else {
        print_client(&view)
    }
}

async fn clients_update(args: ClientsUpdate, config: &Config) -> Result<(), String> {
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let clock = Clock::system();
    let changes = ClientChanges {
        name: args.name,
        redirect_uris: replaced(args.redirect_uris, args.no_redirect_uris),
        post_logout_redirect_uris: replaced(
            args.post_logout_redirect_uris,
            args.no_post_logout_redirect_uris,
        ),
        extra_grants: replaced(
            args.grants.into_iter().map(GrantType::from).collect(),
            args.no_extra_grants,
        ),
        id_token_alg: args.id_token_alg.map(Into::into),
        backchannel_logout_uri: if args.no_backchannel_logout_uri {
            Some(None)
        } else {
            args.backchannel_logout_uri.map(Some)
        },
        backchannel_logout_session_required: args.backchannel_logout_session_required,
        first_party: args.first_party,
        scopes: replaced(args.scopes, args.no_scopes),
    };
    let client = clients::update_client(&db, &clock, &Context::cli(), &args.client_id, changes)
        .await
        .map_err(|e| e.to_string())?;
    let view = ClientView::new(&client, clock.now());
    if args.json {
        print_json(&view)
    } else {
        eprintln!("updated client {}", view.client_id);
        print_client(&view)
    }
}

async fn clients_rotate_secret(
    client_id: &str,
    grace_hours: Option<u32>,
    json: bool,
    config: &Config,
) -> Result<(), String> {
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let clock = Clock::system();
    let rotated = clients::rotate_secret(
        &db,
        &clock,
        &Context::cli(),
        &config.admin,
        client_id,
        grace_hours,
    )
    .await
    .map_err(|e| e.to_string())?;
    if json {
        return print_json(&serde_json::json!({
            "client_id": rotated.client.client_id,
            "client_secret": rotated.secret,
            "previous_secret_expires_at": rotated.previous_expires_at.map(rfc3339),
        }));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "client_secret: {}", rotated.secret).map_err(|e| e.to_string())?;
    eprintln!("The secret is shown only now; Tobira keeps only its hash.");
    match rotated.previous_expires_at {
        Some(until) => eprintln!("The old secret works until {}.", rfc3339(until)),
        None => eprintln!("The old secret no longer works."),
    }
    Ok(())
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
        extra_grants: args.grants.into_iter().map(GrantType::from).collect(),
        id_token_alg: args.id_token_alg.into(),
        backchannel_logout_uri: args.backchannel_logout_uri,
        backchannel_logout_session_required: args.backchannel_logout_session_required,
        client_id: args.client_id,
        secret,
        scopes: args.scopes,
    };
    let clock = Clock::system();
    let added = clients::create_client(&db, &clock, &Context::cli(), request)
        .await
        .map_err(|e| e.to_string())?;
    let view = ClientView::new(&added.client, clock.now());
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
    let now = Clock::system().now();
    let views: Vec<ClientView> = clients.iter().map(|c| ClientView::new(c, now)).collect();
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

pub async fn run(command: ClientsCommand, config: &Config) -> Result<(), String> {
    match command {
        ClientsCommand::Add(args) => clients_add(args, config).await,
        ClientsCommand::List { json } => clients_list(json, config).await,
        ClientsCommand::Show { client_id, json } => clients_show(&client_id, json, config).await,
        ClientsCommand::Update(args) => clients_update(args, config).await,
        ClientsCommand::RotateSecret {
            client_id,
            grace_hours,
            json,
        } => clients_rotate_secret(&client_id, grace_hours, json, config).await,
        ClientsCommand::Remove { client_id } => {
            let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
            clients::delete_client(&db, &Clock::system(), &Context::cli(), &client_id)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!("removed client {client_id}");
            Ok(())
        }
    }
}
