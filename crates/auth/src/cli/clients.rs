//! `tobira clients`: relying parties.

use std::io::Write;

use clap::{Args, Subcommand, ValueEnum};
use tobira_auth::admin::clients::{AddClient, ClientView, add_client};
use tobira_auth::domain::GrantType;
use tobira_auth::startup;
use tobira_auth::{Clock, Config};

use super::{AlgArg, read_secret_stdin};

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
    /// Remove a client; its grants and tokens stop working.
    Remove {
        #[arg(value_name = "CLIENT_ID")]
        client_id: String,
    },
}

#[derive(Args)]
pub struct ClientsAdd {
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
        scopes: args.scopes,
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

pub async fn run(command: ClientsCommand, config: &Config) -> Result<(), String> {
    match command {
        ClientsCommand::Add(args) => clients_add(args, config).await,
        ClientsCommand::List { json } => clients_list(json, config).await,
        ClientsCommand::Remove { client_id } => {
            let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
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
