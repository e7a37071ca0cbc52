//! Admin API: clients (relying parties). Register, list, show, change, rotate the
//! secret, remove: thin handlers over `admin::clients`, which the CLI calls too. A
//! secret appears once, in the answer that made it, never in a listing or the audit log.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Admin, ApiJson, ApiPath, ApiQuery, BASE, Page, PageParams, Problem, cursor};
use crate::admin::clients::{self as clients, AddClient, ClientChanges, ClientError, ClientView};
use crate::domain::GrantType;
use crate::keys::Alg;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, delete))
        .routes(routes!(rotate_secret))
}

/// A refusal as the problem it is: the rule's own message for what the caller can fix.
fn problem(admin: &Admin, e: ClientError) -> Problem {
    match e {
        ClientError::NotFound => Problem::not_found(e.to_string()),
        ClientError::BadCursor => Problem::bad_request(e.to_string()),
        ClientError::ClientIdTaken
        | ClientError::RotationRaced
        | ClientError::UpdateRaced
        | ClientError::DeleteSelf => Problem::conflict(e.to_string()),
        ClientError::Store(cause) => Problem::internal(admin, &cause),
        other => Problem::invalid(other.to_string()),
    }
}

/// A client to register (as `tobira clients add`). The secret is always generated: an
/// operator-chosen one would travel in this request and in whatever logged it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// 1 to 200 characters; shown to members on the consent page.
    pub name: String,
    /// Exact-match redirect URIs: https, or http on a loopback host; no fragment. At
    /// least one, unless the client only uses `client_credentials` (then it has no
    /// `authorization_code` grant).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// No secret; PKCE required (mobile apps, SPAs).
    #[serde(default)]
    pub public: bool,
    /// One of our own apps: no consent screen.
    #[serde(default)]
    pub first_party: bool,
    /// Grant types beyond `authorization_code`, which every client with a redirect URI
    /// has.
    #[serde(default)]
    pub grant_types: Vec<GrantType>,
    /// `RS256` (default), `ES256` or `EdDSA`.
    #[serde(default = "default_alg")]
    #[schema(value_type = String, example = "RS256")]
    pub id_token_alg: Alg,
    pub backchannel_logout_uri: Option<String>,
    #[serde(default)]
    pub backchannel_logout_session_required: bool,
    /// 1 to 128 characters of `A-Z a-z 0-9 . _ - ~`; generated when absent.
    pub client_id: Option<String>,
    /// API scopes for client_credentials (`admin`).
    #[serde(default)]
    pub scopes: Vec<String>,
}

fn default_alg() -> Alg {
    Alg::RS256
}

/// A client with a secret just made: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientWithSecret {
    #[serde(flatten)]
    pub client: ClientView,
    /// Absent for public clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// An answer with a secret shown once: not to be kept by caches on the way.
fn with_secret(status: StatusCode, location: Option<String>, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    response
}

#[utoipa::path(
    post,
    path = "/clients",
    tag = "clients",
    request_body = NewClient,
    responses(
        (status = 201, description = "Registered; the secret is shown only here", body = ClientWithSecret),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The client_id is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A rule refuses the settings", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn create(
    admin: Admin,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NewClient>,
) -> Result<Response, Problem> {
    let added = clients::create_client(
        &state.db,
        &state.clock,
        &admin.ctx,
        AddClient {
            name: req.name,
            redirect_uris: req.redirect_uris,
            post_logout_redirect_uris: req.post_logout_redirect_uris,
            public: req.public,
            first_party: req.first_party,
            extra_grants: req.grant_types,
            id_token_alg: req.id_token_alg,
            backchannel_logout_uri: req.backchannel_logout_uri,
            backchannel_logout_session_required: req.backchannel_logout_session_required,
            client_id: req.client_id,
            secret: None,
            scopes: req.scopes,
        },
    )
    .await
    .map_err(|e| problem(&admin, e))?;
    let location = location(&added.client.client_id);
    Ok(with_secret(
        StatusCode::CREATED,
        Some(location),
        ClientWithSecret {
            client: ClientView::new(&added.client, state.clock.now()),
            client_secret: added.secret,
        },
    ))
}

fn location(client_id: &str) -> String {
    let escaped: String = url::form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    format!("{BASE}/clients/{escaped}")
}

#[utoipa::path(
    get,
    path = "/clients",
    tag = "clients",
    params(PageParams),
    responses(
        (status = 200, description = "Clients by client_id", body = Page<ClientView>),
        (status = 400, description = "A bad cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn list(
    admin: Admin,
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<ClientView>>, Problem> {
    let limit = page.limit()?;
    let after = page.position()?;
    let (items, next) = clients::list_clients(&state.db, after.as_deref(), limit)
        .await
        .map_err(|e| problem(&admin, e))?;
    let now = state.clock.now();
    Ok(Json(Page {
        items: items.iter().map(|c| ClientView::new(c, now)).collect(),
        next_cursor: next.as_deref().map(cursor),
    }))
}

#[utoipa::path(
    get,
    path = "/clients/{client_id}",
    tag = "clients",
    params(("client_id" = String, Path, description = "The client's client_id")),
    responses(
        (status = 200, description = "The client", body = ClientView),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn show(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(client_id): ApiPath<String>,
) -> Result<Json<ClientView>, Problem> {
    let client = clients::show_client(&state.db, &client_id)
        .await
        .map_err(|e| problem(&admin, e))?;
    Ok(Json(ClientView::new(&client, state.clock.now())))
}

/// What to change; absent fields stay as they are. Lists replace the whole list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientUpdate {
    pub name: Option<String>,
    /// `[]` leaves a `client_credentials` client without the `authorization_code` grant.
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// Grant types beyond `authorization_code`, which stays while the client has a
    /// redirect URI.
    pub grant_types: Option<Vec<GrantType>>,
    #[schema(value_type = Option<String>, example = "ES256")]
    pub id_token_alg: Option<Alg>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub backchannel_logout_uri: Option<Option<String>>,
    pub backchannel_logout_session_required: Option<bool>,
    pub first_party: Option<bool>,
    pub scopes: Option<Vec<String>>,
}

/// A field that is present, even as `null` (which an `Option` alone cannot tell from
/// absent).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[utoipa::path(
    patch,
    path = "/clients/{client_id}",
    tag = "clients",
    params(("client_id" = String, Path, description = "The client's client_id")),
    request_body = ClientUpdate,
    responses(
        (status = 200, description = "The client as changed (its secret is unchanged)", body = ClientView),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A rule refuses the result", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn update(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(client_id): ApiPath<String>,
    ApiJson(req): ApiJson<ClientUpdate>,
) -> Result<Json<ClientView>, Problem> {
    let client = clients::update_client(
        &state.db,
        &state.clock,
        &admin.ctx,
        &client_id,
        ClientChanges {
            name: req.name,
            redirect_uris: req.redirect_uris,
            post_logout_redirect_uris: req.post_logout_redirect_uris,
            extra_grants: req.grant_types,
            id_token_alg: req.id_token_alg,
            backchannel_logout_uri: req.backchannel_logout_uri,
            backchannel_logout_session_required: req.backchannel_logout_session_required,
            first_party: req.first_party,
            scopes: req.scopes,
        },
    )
    .await
    .map_err(|e| problem(&admin, e))?;
    Ok(Json(ClientView::new(&client, state.clock.now())))
}

#[utoipa::path(
    delete,
    path = "/clients/{client_id}",
    tag = "clients",
    params(("client_id" = String, Path, description = "The client's client_id")),
    responses(
        (status = 204, description = "Removed, with its grants and tokens"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An admin client cannot delete itself", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn delete(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(client_id): ApiPath<String>,
) -> Result<StatusCode, Problem> {
    clients::delete_client(&state.db, &state.clock, &admin.ctx, &client_id)
        .await
        .map_err(|e| problem(&admin, e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// How long the old secret keeps working. The body may be left out altogether.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRotation {
    /// 0 to 2160; `admin.client_secret_grace_hours` when absent. 0 ends the old secret
    /// at once (when it leaked).
    pub grace_hours: Option<u32>,
}

/// A new secret, and until when the old one still works.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    #[serde(flatten)]
    pub client: ClientWithSecret,
    /// Absent when the old secret stopped at once.
    #[serde(with = "time::serde::rfc3339::option")]
    pub previous_secret_expires_at: Option<OffsetDateTime>,
}

#[utoipa::path(
    post,
    path = "/clients/{client_id}/rotate-secret",
    tag = "clients",
    params(("client_id" = String, Path, description = "The client's client_id")),
    request_body(content = Option<SecretRotation>, description = "Optional"),
    responses(
        (status = 200, description = "The new secret, shown only here", body = RotatedSecret),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such client", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another rotation changed the secret meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A public client, or a grace period too long", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn rotate_secret(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(client_id): ApiPath<String>,
    request: Request,
) -> Result<Response, Problem> {
    let SecretRotation { grace_hours } = if has_no_body(request.headers()) {
        SecretRotation::default()
    } else {
        ApiJson::<SecretRotation>::from_request(request, &state)
            .await?
            .0
    };
    let rotated = clients::rotate_secret(
        &state.db,
        &state.clock,
        &admin.ctx,
        &state.config.admin,
        &client_id,
        grace_hours,
    )
    .await
    .map_err(|e| problem(&admin, e))?;
    let body = RotatedSecret {
        client: ClientWithSecret {
            client: ClientView::new(&rotated.client, state.clock.now()),
            client_secret: Some(rotated.secret),
        },
        previous_secret_expires_at: rotated.previous_expires_at,
    };
    Ok(with_secret(StatusCode::OK, None, body))
}

/// A request without a body: no content type and no (or an empty) content length.
fn has_no_body(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_none()
        && headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|l| l.as_bytes() == b"0")
}
