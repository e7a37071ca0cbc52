//! Registering relying parties on behalf of an operator.

use serde::Serialize;
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::crypto::{random_token, sha256_hex};
use crate::domain::{Client, GrantType, RedirectUri, RedirectUriError};
use crate::keys::Alg;
use crate::store::{Db, StoreError};

pub struct AddClient {
    pub name: String,
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

#[derive(Debug, thiserror::Error)]
pub enum AddClientError {
    #[error("name must be 1 to 200 characters without control characters")]
    Name,
    #[error("at least one --redirect-uri is required")]
    NoRedirectUri,
    #[error("invalid redirect URI: {0}")]
    RedirectUri(#[from] RedirectUriError),
    #[error("invalid back-channel logout URI: {0}")]
    BackchannelLogoutUri(RedirectUriError),
    #[error("--backchannel-logout-session-required needs a back-channel logout URI")]
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
    #[error(transparent)]
    Store(StoreError),
}

/// The new client, and its secret in the clear: shown once, stored only as SHA-256.
pub struct Added {
    pub client: Client,
    pub secret: Option<String>,
}

/// Client secrets carry 256 random bits, so a plain SHA-256 is enough to store them and
/// cheap at the token endpoint (a password hash would cap it at the hashing rate).
const MIN_SECRET_LEN: usize = 32;

pub async fn add_client(db: &Db, clock: &Clock, req: AddClient) -> Result<Added, AddClientError> {
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(AddClientError::Name);
    }
    if req.redirect_uris.is_empty() {
        return Err(AddClientError::NoRedirectUri);
    }
    let redirect_uris = req
        .redirect_uris
        .iter()
        .map(|u| RedirectUri::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    let post_logout_redirect_uris = req
        .post_logout_redirect_uris
        .iter()
        .map(|u| RedirectUri::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    let backchannel_logout_uri = req
        .backchannel_logout_uri
        .as_deref()
        .map(RedirectUri::parse)
        .transpose()
        .map_err(AddClientError::BackchannelLogoutUri)?;
    if req.backchannel_logout_session_required && backchannel_logout_uri.is_none() {
        return Err(AddClientError::SessionRequiredWithoutUri);
    }
    let client_id = match req.client_id {
        Some(id) if valid_client_id(&id) => id,
        Some(_) => return Err(AddClientError::ClientId),
        None => random_token(&mut rand::rng(), 16),
    };
    let secret = match (req.public, req.secret) {
        (true, Some(_)) => return Err(AddClientError::SecretForPublic),
        (true, None) => None,
        (false, Some(s)) if s.len() < MIN_SECRET_LEN => return Err(AddClientError::WeakSecret),
        (false, Some(s)) => Some(s),
        (false, None) => Some(random_token(&mut rand::rng(), 32)),
    };
    if req.public && req.extra_grants.contains(&GrantType::ClientCredentials) {
        return Err(AddClientError::CredentialsForPublic);
    }
    if let Some(unknown) = req
        .scopes
        .iter()
        .find(|s| !API_SCOPES.contains(&s.as_str()))
    {
        return Err(AddClientError::UnknownScope(unknown.clone()));
    }
    if !req.scopes.is_empty() && !req.extra_grants.contains(&GrantType::ClientCredentials) {
        return Err(AddClientError::ScopeWithoutCredentials);
    }
    let mut scopes = req.scopes;
    scopes.sort();
    scopes.dedup();
    let mut grant_types = vec![GrantType::AuthorizationCode];
    for g in req.extra_grants {
        if !grant_types.contains(&g) {
            grant_types.push(g);
        }
    }
    let client = Client {
        client_id,
        name,
        secret_hash: secret.as_deref().map(sha256_hex),
        redirect_uris,
        post_logout_redirect_uris,
        grant_types,
        public: req.public,
        first_party: req.first_party,
        id_token_alg: req.id_token_alg,
        backchannel_logout_uri,
        backchannel_logout_session_required: req.backchannel_logout_session_required,
        created_at: clock.now(),
        scopes,
        previous_secret: None,
    };
    db.clients().add(&client).await.map_err(|e| match e {
        StoreError::ClientIdTaken => AddClientError::ClientIdTaken,
        other => AddClientError::Store(other),
    })?;
    Ok(Added { client, secret })
}

fn valid_client_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-~".contains(&b))
}

/// A client as shown to operators: never the secret or its hash.
#[derive(Debug, Serialize)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub public: bool,
    pub first_party: bool,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    pub grant_types: Vec<GrantType>,
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

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
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
            previous_credential_expires_at: c.previous_secret.as_ref().map(|p| p.1),
            created_at: c.created_at,
        }
    }
}
