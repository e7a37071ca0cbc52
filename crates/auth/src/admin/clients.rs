//! Relying parties as operators manage them: register, show, list, change, rotate the
//! secret, remove. The CLI (`tobira clients …`) and the admin API (`/clients`) both call
//! these functions, so each rule about a client lives here once, and every change is
//! written together with its audit event.

use serde::Serialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::audit::{self, Actor, Context, Target};
use crate::clock::{Clock, rfc3339};
use crate::config::AdminConfig;
use crate::crypto::{random_token, sha256_hex};
use crate::domain::{Client, GrantType, RedirectUri, RedirectUriError};
use crate::keys::Alg;
use crate::store::{Db, StoreError};

pub struct AddClient {
    pub name: String,
    /// Where the authorization code flow may return; none for a client that only uses
    /// client_credentials (which then has no authorization_code grant).
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub public: bool,
    pub first_party: bool,
    pub extra_grants: Vec<GrantType>,
    pub id_token_alg: Alg,
    /// Where logout tokens go (OIDC Back-Channel Logout 1.0).
    pub backchannel_logout_uri: Option<String>,
    /// Every logout token carries `sid` (needs a back-channel logout URI).
    pub backchannel_logout_session_required: bool,
    /// Chosen by the operator; generated otherwise.
    pub client_id: Option<String>,
    /// Given by the operator (confidential clients); generated otherwise.
    pub secret: Option<String>,
    /// API scopes for client_credentials: [`API_SCOPES`].
    pub scopes: Vec<String>,
}

/// The scopes a client may be given for client_credentials. `admin` calls the admin API.
pub const API_SCOPES: &[&str] = &[ADMIN_SCOPE];
pub const ADMIN_SCOPE: &str = "admin";

/// The most URIs of one kind a client registers: enough for every environment of an
/// app, and a bound on what one request makes us store and compare.
pub const MAX_URIS: usize = 20;

/// The longest grace period a rotation gives the old secret (as `admin.client_secret_grace_hours`).
pub const MAX_GRACE_HOURS: u32 = 24 * 90;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("name must be 1 to 200 characters without control characters")]
    Name,
    #[error(
        "at least one redirect URI is required (only a client_credentials client may have none)"
    )]
    NoRedirectUri,
    #[error(
        "refresh_token needs a redirect URI: refresh tokens come from the authorization code flow"
    )]
    RefreshWithoutRedirectUri,
    #[error("at most 20 redirect URIs and 20 post-logout redirect URIs")]
    TooManyUris,
    #[error("invalid redirect URI: {0}")]
    RedirectUri(#[from] RedirectUriError),
    #[error("invalid post-logout redirect URI: {0}")]
    PostLogoutRedirectUri(RedirectUriError),
    #[error("invalid back-channel logout URI: {0}")]
    BackchannelLogoutUri(RedirectUriError),
    #[error("backchannel_logout_session_required needs a back-channel logout URI")]
    SessionRequiredWithoutUri,
    #[error("client_id must be 1 to 128 characters of A-Z a-z 0-9 . _ - ~")]
    ClientId,
    #[error("a public client has no secret")]
    SecretForPublic,
    #[error("client_credentials needs a confidential client (it authenticates with its secret)")]
    CredentialsForPublic,
    #[error("the client secret must be at least 32 characters (use a generated one)")]
    WeakSecret,
    #[error("a client with this client_id exists")]
    ClientIdTaken,
    #[error("unknown scope {0:?} (API scopes: admin)")]
    UnknownScope(String),
    #[error("an API scope needs the client_credentials grant")]
    ScopeWithoutCredentials,
    #[error("no client with this client_id")]
    NotFound,
    #[error("the cursor is not one this list gave")]
    BadCursor,
    #[error("the grace period must be at most 2160 hours (90 days)")]
    Grace,
    #[error("the secret changed while it was being rotated; try again")]
    RotationRaced,
    #[error("the client changed while it was being updated; read it again and retry")]
    UpdateRaced,
    #[error(
        "an admin client cannot delete itself (it would lose its access mid-request); \
         use another admin client or `tobira clients remove`"
    )]
    DeleteSelf,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ClientError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ClientIdTaken => Self::ClientIdTaken,
            other => Self::Store(other),
        }
    }
}

/// The settings of a client as given, before any rule: what registration and a change
/// both produce, so both are checked by [`check`].
struct Draft {
    name: String,
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    public: bool,
    first_party: bool,
    /// Beyond authorization_code, which every client with a redirect URI has.
    extra_grants: Vec<GrantType>,
    id_token_alg: Alg,
    backchannel_logout_uri: Option<String>,
    backchannel_logout_session_required: bool,
    scopes: Vec<String>,
}

/// A draft that passed every rule.
struct Settings {
    name: String,
    redirect_uris: Vec<RedirectUri>,
    post_logout_redirect_uris: Vec<RedirectUri>,
    first_party: bool,
    grant_types: Vec<GrantType>,
    id_token_alg: Alg,
    backchannel_logout_uri: Option<RedirectUri>,
    backchannel_logout_session_required: bool,
    scopes: Vec<String>,
}

/// Every rule a client's settings obey, at registration and after each change.
fn check(d: Draft) -> Result<Settings, ClientError> {
    let name = d.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ClientError::Name);
    }
    // The authorization code flow needs somewhere to send the code: a client registered
    // with no redirect URI cannot use it, and is a service that only authenticates with
    // its own secret (client_credentials), such as an admin console. Refresh tokens come
    // only from that flow.
    let authorization_code = !d.redirect_uris.is_empty();
    if !authorization_code {
        if !d.extra_grants.contains(&GrantType::ClientCredentials) {
            return Err(ClientError::NoRedirectUri);
        }
        if d.extra_grants.contains(&GrantType::RefreshToken) {
            return Err(ClientError::RefreshWithoutRedirectUri);
        }
    }
    if d.redirect_uris.len() > MAX_URIS || d.post_logout_redirect_uris.len() > MAX_URIS {
        return Err(ClientError::TooManyUris);
    }
    let redirect_uris = parse_uris(&d.redirect_uris)?;
    let post_logout_redirect_uris =
        parse_uris(&d.post_logout_redirect_uris).map_err(ClientError::PostLogoutRedirectUri)?;
    let backchannel_logout_uri = d
        .backchannel_logout_uri
        .as_deref()
        .map(RedirectUri::parse)
        .transpose()
        .map_err(ClientError::BackchannelLogoutUri)?;
    if d.backchannel_logout_session_required && backchannel_logout_uri.is_none() {
        return Err(ClientError::SessionRequiredWithoutUri);
    }
    if d.public && d.extra_grants.contains(&GrantType::ClientCredentials) {
        return Err(ClientError::CredentialsForPublic);
    }
    if let Some(unknown) = d.scopes.iter().find(|s| !API_SCOPES.contains(&s.as_str())) {
        // Quoted with Debug and cut: the message goes back to whoever sent the scope.
        let shown: String = unknown.chars().take(64).collect();
        return Err(ClientError::UnknownScope(shown));
    }
    if !d.scopes.is_empty() && !d.extra_grants.contains(&GrantType::ClientCredentials) {
        return Err(ClientError::ScopeWithoutCredentials);
    }
    let mut scopes = d.scopes;
    scopes.sort();
    scopes.dedup();
    let mut grant_types = Vec::new();
    if authorization_code {
        grant_types.push(GrantType::AuthorizationCode);
    }
    for g in d.extra_grants {
        if !grant_types.contains(&g) {
            grant_types.push(g);
        }
    }
    Ok(Settings {
        name,
        redirect_uris,
        post_logout_redirect_uris,
        first_party: d.first_party,
        grant_types,
        id_token_alg: d.id_token_alg,
        backchannel_logout_uri,
        backchannel_logout_session_required: d.backchannel_logout_session_required,
        scopes,
    })
}

fn parse_uris(uris: &[String]) -> Result<Vec<RedirectUri>, RedirectUriError> {
    uris.iter().map(|u| RedirectUri::parse(u)).collect()
}

/// The new client, and its secret in the clear: shown once, stored only as SHA-256.
pub struct Added {
    pub client: Client,
    pub secret: Option<String>,
}

/// Client secrets carry 256 random bits, so a plain SHA-256 is enough to store them and
/// cheap at the token endpoint (a password hash would cap it at the hashing rate).
const MIN_SECRET_LEN: usize = 32;

/// Registers a client on Tobira's own behalf (seeding, tests); recorded as `system`.
pub async fn add_client(db: &Db, clock: &Clock, req: AddClient) -> Result<Added, ClientError> {
    create_client(db, clock, &Context::system(), req).await
}

/// Registers a client and records `client.create` for `ctx`.
pub async fn create_client(
    db: &Db,
    clock: &Clock,
    ctx: &Context,
    req: AddClient,
) -> Result<Added, ClientError> {
    let settings = check(Draft {
        name: req.name,
        redirect_uris: req.redirect_uris,
        post_logout_redirect_uris: req.post_logout_redirect_uris,
        public: req.public,
        first_party: req.first_party,
        extra_grants: req.extra_grants,
        id_token_alg: req.id_token_alg,
        backchannel_logout_uri: req.backchannel_logout_uri,
        backchannel_logout_session_required: req.backchannel_logout_session_required,
        scopes: req.scopes,
    })?;
    let client_id = match req.client_id {
        Some(id) if valid_client_id(&id) => id,
        Some(_) => return Err(ClientError::ClientId),
        None => random_token(&mut rand::rng(), 16),
    };
    let secret = match (req.public, req.secret) {
        (true, Some(_)) => return Err(ClientError::SecretForPublic),
        (true, None) => None,
        (false, Some(s)) if s.len() < MIN_SECRET_LEN => return Err(ClientError::WeakSecret),
        (false, Some(s)) => Some(s),
        (false, None) => Some(new_secret()),
    };
    let now = clock.now();
    let client = Client {
        client_id,
        name: settings.name,
        secret_hash: secret.as_deref().map(sha256_hex),
        redirect_uris: settings.redirect_uris,
        post_logout_redirect_uris: settings.post_logout_redirect_uris,
        grant_types: settings.grant_types,
        public: req.public,
        first_party: settings.first_party,
        id_token_alg: settings.id_token_alg,
        backchannel_logout_uri: settings.backchannel_logout_uri,
        backchannel_logout_session_required: settings.backchannel_logout_session_required,
        created_at: now,
        scopes: settings.scopes,
        previous_secret: None,
    };
    let event = audit::event(
        now,
        ctx,
        "client.create",
        Target::Client(client.client_id.clone()),
        json!({
            "name": client.name,
            "public": client.public,
            "first_party": client.first_party,
            "grant_types": client.grant_types,
            "scopes": client.scopes,
        }),
    );
    db.clients().add(&client, &event).await?;
    Ok(Added { client, secret })
}

fn new_secret() -> String {
    random_token(&mut rand::rng(), 32)
}

fn valid_client_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-~".contains(&b))
}

/// The client with this id.
pub async fn show_client(db: &Db, client_id: &str) -> Result<Client, ClientError> {
    db.clients()
        .find(client_id)
        .await?
        .ok_or(ClientError::NotFound)
}

/// One page of clients by client_id, after `after`, and the position of the next page
/// when there may be one.
pub async fn list_clients(
    db: &Db,
    after: Option<&str>,
    limit: u64,
) -> Result<(Vec<Client>, Option<String>), ClientError> {
    // Positions are client_ids: anything else was not made by this list.
    if after.is_some_and(|a| !valid_client_id(a)) {
        return Err(ClientError::BadCursor);
    }
    let clients = db.clients().page(after, limit).await?;
    let next = (clients.len() as u64 == limit)
        .then(|| clients.last().map(|c| c.client_id.clone()))
        .flatten();
    Ok((clients, next))
}

/// What a change sets; `None` keeps the field as it is.
#[derive(Debug, Default)]
pub struct ClientChanges {
    pub name: Option<String>,
    /// An empty list leaves a client_credentials client without the authorization code
    /// flow.
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// Beyond authorization_code, which stays while the client has a redirect URI.
    pub extra_grants: Option<Vec<GrantType>>,
    pub id_token_alg: Option<Alg>,
    /// `Some(None)` removes the back-channel logout URI.
    pub backchannel_logout_uri: Option<Option<String>>,
    pub backchannel_logout_session_required: Option<bool>,
    pub first_party: Option<bool>,
    pub scopes: Option<Vec<String>>,
}

/// Changes a client: every registration rule applies to the result. The secret stays.
/// Records `client.update` with each setting that changed, old and new value; a change
/// that changes nothing records nothing.
pub async fn update_client(
    db: &Db,
    clock: &Clock,
    ctx: &Context,
    client_id: &str,
    changes: ClientChanges,
) -> Result<Client, ClientError> {
    let before = show_client(db, client_id).await?;
    let strings = |uris: &[RedirectUri]| uris.iter().map(|u| u.as_str().to_owned()).collect();
    let settings = check(Draft {
        name: changes.name.unwrap_or_else(|| before.name.clone()),
        redirect_uris: changes
            .redirect_uris
            .unwrap_or_else(|| strings(&before.redirect_uris)),
        post_logout_redirect_uris: changes
            .post_logout_redirect_uris
            .unwrap_or_else(|| strings(&before.post_logout_redirect_uris)),
        public: before.public,
        first_party: changes.first_party.unwrap_or(before.first_party),
        extra_grants: changes.extra_grants.unwrap_or_else(|| {
            before
                .grant_types
                .iter()
                .copied()
                .filter(|g| *g != GrantType::AuthorizationCode)
                .collect()
        }),
        id_token_alg: changes.id_token_alg.unwrap_or(before.id_token_alg),
        backchannel_logout_uri: changes.backchannel_logout_uri.unwrap_or_else(|| {
            before
                .backchannel_logout_uri
                .as_ref()
                .map(|u| u.as_str().to_owned())
        }),
        backchannel_logout_session_required: changes
            .backchannel_logout_session_required
            .unwrap_or(before.backchannel_logout_session_required),
        scopes: changes.scopes.unwrap_or_else(|| before.scopes.clone()),
    })?;
    let after = Client {
        name: settings.name,
        redirect_uris: settings.redirect_uris,
        post_logout_redirect_uris: settings.post_logout_redirect_uris,
        grant_types: settings.grant_types,
        first_party: settings.first_party,
        id_token_alg: settings.id_token_alg,
        backchannel_logout_uri: settings.backchannel_logout_uri,
        backchannel_logout_session_required: settings.backchannel_logout_session_required,
        scopes: settings.scopes,
        ..before.clone()
    };
    let changed = changed_settings(&before, &after);
    if changed.is_empty() {
        return Ok(before);
    }
    let event = audit::event(
        clock.now(),
        ctx,
        "client.update",
        Target::Client(after.client_id.clone()),
        json!({ "changed": changed }),
    );
    if !db.clients().update(&before, &after, &event).await? {
        // Gone, or changed by someone else since it was read.
        return Err(match db.clients().find(client_id).await? {
            Some(_) => ClientError::UpdateRaced,
            None => ClientError::NotFound,
        });
    }
    Ok(after)
}

/// What an operator may change of a client, by the names [`ClientView`] gives them, in
/// the form it shows them. The secret (and its hash) is not among them, so
/// `client.update` can record every value: no secret can reach the audit log this way.
fn settings(c: &Client) -> [(&'static str, serde_json::Value); 9] {
    [
        ("name", json!(c.name)),
        ("redirect_uris", json!(c.redirect_uris)),
        (
            "post_logout_redirect_uris",
            json!(c.post_logout_redirect_uris),
        ),
        ("grant_types", json!(c.grant_types)),
        ("id_token_signed_response_alg", json!(c.id_token_alg)),
        ("backchannel_logout_uri", json!(c.backchannel_logout_uri)),
        (
            "backchannel_logout_session_required",
            json!(c.backchannel_logout_session_required),
        ),
        ("first_party", json!(c.first_party)),
        ("scopes", json!(c.scopes)),
    ]
}

/// Each setting that differs, with its value before and after (`{"old": …, "new": …}`):
/// an operator reading the log sees which redirect URI or scope came or went, not only
/// that the list changed.
fn changed_settings(before: &Client, after: &Client) -> serde_json::Map<String, serde_json::Value> {
    settings(before)
        .into_iter()
        .zip(settings(after))
        .filter(|((_, old), (_, new))| old != new)
        .map(|((name, old), (_, new))| (name.to_owned(), json!({ "old": old, "new": new })))
        .collect()
}

/// A new secret (in the clear: shown once) and until when the old one still works.
pub struct Rotated {
    pub client: Client,
    pub secret: String,
    pub previous_expires_at: Option<OffsetDateTime>,
}

/// Gives a confidential client a new secret. The old one keeps working for
/// `grace_hours` (`admin.client_secret_grace_hours` when not given; at most
/// [`MAX_GRACE_HOURS`]; 0 ends it at once), so the client can be redeployed without an
/// outage; a secret kept from an earlier rotation stops at once. Records
/// `client.secret_rotate` with the grace and its end, never a secret or hash.
pub async fn rotate_secret(
    db: &Db,
    clock: &Clock,
    ctx: &Context,
    config: &AdminConfig,
    client_id: &str,
    grace_hours: Option<u32>,
) -> Result<Rotated, ClientError> {
    let grace_hours = grace_hours.unwrap_or(config.client_secret_grace_hours);
    if grace_hours > MAX_GRACE_HOURS {
        return Err(ClientError::Grace);
    }
    let client = show_client(db, client_id).await?;
    let current = match (&client.secret_hash, client.public) {
        (Some(hash), false) => hash.clone(),
        _ => return Err(ClientError::SecretForPublic),
    };
    let now = clock.now();
    let previous_expires_at =
        (grace_hours > 0).then(|| now + Duration::hours(i64::from(grace_hours)));
    let secret = new_secret();
    let new_hash = sha256_hex(&secret);
    let event = audit::event(
        now,
        ctx,
        "client.secret_rotate",
        Target::Client(client.client_id.clone()),
        json!({
            "grace_hours": grace_hours,
            "previous_secret_expires_at": previous_expires_at.map(rfc3339),
        }),
    );
    let rotated = db
        .clients()
        .rotate_secret(
            &client.client_id,
            &current,
            &new_hash,
            // With no grace the old secret is kept already expired: its end is when
            // the admin API stops taking tokens got with it.
            Some(previous_expires_at.unwrap_or(now)),
            &event,
        )
        .await?;
    if !rotated {
        // Gone, or another rotation replaced the secret since it was read.
        return Err(match db.clients().find(client_id).await? {
            Some(_) => ClientError::RotationRaced,
            None => ClientError::NotFound,
        });
    }
    Ok(Rotated {
        client: Client {
            secret_hash: Some(new_hash),
            previous_secret: Some((current, previous_expires_at.unwrap_or(now))),
            ..client
        },
        secret,
        previous_expires_at,
    })
}

/// Removes a client; its grants and tokens go with it. Records `client.delete`. An
/// admin client may not delete itself: the request would end its own access halfway,
/// and a script pointed at the wrong id should not lock the operators out of the API.
pub async fn delete_client(
    db: &Db,
    clock: &Clock,
    ctx: &Context,
    client_id: &str,
) -> Result<(), ClientError> {
    if ctx.actor == Actor::Client(client_id.to_owned()) {
        return Err(ClientError::DeleteSelf);
    }
    let client = show_client(db, client_id).await?;
    let event = audit::event(
        clock.now(),
        ctx,
        "client.delete",
        Target::Client(client.client_id.clone()),
        json!({ "name": client.name }),
    );
    if !db.clients().remove(&client.client_id, &event).await? {
        return Err(ClientError::NotFound);
    }
    Ok(())
}

/// A client as shown to operators: never the secret or its hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub public: bool,
    pub first_party: bool,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    pub grant_types: Vec<GrantType>,
    /// `RS256`, `ES256` or `EdDSA`.
    #[schema(value_type = String, example = "RS256")]
    pub id_token_signed_response_alg: Alg,
    pub backchannel_logout_uri: Option<RedirectUri>,
    pub backchannel_logout_session_required: bool,
    /// API scopes for client_credentials.
    pub scopes: Vec<String>,
    /// When the secret before the last rotation stops working, while it still does.
    #[serde(with = "time::serde::rfc3339::option")]
    pub previous_credential_expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl ClientView {
    /// The client as it stands at `now` (a previous secret past its grace is not shown).
    pub fn new(c: &Client, now: OffsetDateTime) -> Self {
        Self {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            public: c.public,
            first_party: c.first_party,
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            grant_types: c.grant_types.clone(),
            id_token_signed_response_alg: c.id_token_alg,
            backchannel_logout_uri: c.backchannel_logout_uri.clone(),
            backchannel_logout_session_required: c.backchannel_logout_session_required,
            scopes: c.scopes.clone(),
            previous_credential_expires_at: c.previous_secret_expires_at(now),
            created_at: c.created_at,
        }
    }
}
