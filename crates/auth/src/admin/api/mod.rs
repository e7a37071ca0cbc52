//! The admin API (`/admin/api/v1`): JSON over HTTP for operators' tools, authenticated
//! with access tokens a client registered with the `admin` scope gets by
//! client_credentials. Each endpoint calls the same `admin` function as the CLI. Errors
//! are RFC 9457 problem details; lists are pages with an opaque cursor. The OpenAPI 3.1
//! document is generated from the handlers (utoipa) and served at
//! `/admin/api/v1/openapi.json`.

pub mod audit;
pub mod clients;
pub mod keys;
pub mod users;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use super::audit::{Actor, Context};
use super::clients::ADMIN_SCOPE;
use crate::domain::GrantType;
use crate::state::AppState;
use crate::web::client_ip::ClientAddr;

/// Where the API lives.
pub const BASE: &str = "/admin/api/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tobira admin API",
        description = "Manage members, clients, signing keys and read the audit log. \
            Authenticate with a bearer access token from the client_credentials grant of \
            a client registered with the `admin` scope.",
    ),
    servers((url = "/admin/api/v1")),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(Problem)),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(users::routes())
        .merge(clients::routes())
        .merge(keys::routes())
        .merge(audit::routes())
}

/// The OpenAPI document: every route of [`router`], with paths relative to [`BASE`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

/// The API under [`BASE`], and its document at `BASE/openapi.json`.
pub fn router() -> Router<AppState> {
    let (routes, doc) = api().split_for_parts();
    let doc = std::sync::Arc::new(doc);
    let routes = routes.route(
        "/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    );
    Router::new().nest(BASE, routes.fallback(not_found))
}

async fn not_found() -> Problem {
    Problem::not_found("no such endpoint")
}

/// RFC 9457 problem details, sent as `application/problem+json`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Set on server errors: what the logs know this request by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip)]
    #[schema(ignore)]
    www_authenticate: Option<&'static str>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: Some(detail.into()),
            request_id: None,
            www_authenticate: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "about:blank", detail)
    }

    /// A request the rules refuse (`invalid` problems name what to change).
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "urn:tobira:problem:invalid",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "about:blank", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "urn:tobira:problem:conflict", detail)
    }

    fn unauthorized(detail: &str) -> Self {
        Self {
            www_authenticate: Some("Bearer error=\"invalid_token\""),
            ..Self::new(StatusCode::UNAUTHORIZED, "about:blank", detail)
        }
    }

    fn forbidden(detail: &str) -> Self {
        Self {
            www_authenticate: Some("Bearer error=\"insufficient_scope\", scope=\"admin\""),
            ..Self::new(StatusCode::FORBIDDEN, "about:blank", detail)
        }
    }

    /// A server-side failure: logged with its cause, answered with the request id only.
    pub fn internal(admin: &Admin, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, request_id = %admin.ctx.request_id, "admin API request failed");
        Self {
            request_id: Some(admin.ctx.request_id.clone()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "about:blank",
                "the request failed; the logs know it by its request_id",
            )
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let challenge = self.www_authenticate;
        let mut response = (status, Json(&self)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

impl From<JsonRejection> for Problem {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "about:blank",
                "send the body as application/json",
            ),
            JsonRejection::JsonDataError(e) => Self::invalid(e.body_text()),
            other => Self::bad_request(other.body_text()),
        }
    }
}

impl From<QueryRejection> for Problem {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<PathRejection> for Problem {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

/// `axum::Json` whose refusals are problem details.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(Problem))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query` whose refusals are problem details.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` whose refusals are problem details.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub struct ApiPath<T>(pub T);

/// A caller the API let in: an admin client, with where its request came from (what
/// the audit log records).
#[derive(Clone, Debug)]
pub struct Admin {
    pub client_id: String,
    pub ctx: Context,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = crate::web::authorization(&parts.headers, "bearer").ok_or_else(|| {
            Problem::unauthorized("send an access token: Authorization: Bearer …")
        })?;
        let live = crate::oidc::tokens::check_access_token(state, token)
            .await
            .map_err(|why| match why {
                // The revocation list is in the ephemeral store: while it is away the
                // token is not known bad, and a tool must not throw its credentials away.
                crate::oidc::tokens::AccessTokenError::CannotCheck => Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "about:blank",
                    "the token cannot be checked now; retry",
                ),
                crate::oidc::tokens::AccessTokenError::Refused(why) => Problem::unauthorized(why),
            })?;
        // A member's token is never an admin's, whatever its scope says.
        if live.subject.is_some() {
            return Err(Problem::forbidden(
                "the admin API takes client_credentials tokens only",
            ));
        }
        let scoped = live
            .claims
            .get("scope")
            .and_then(|v| v.as_str())
            .is_some_and(|s| s.split(' ').any(|s| s == ADMIN_SCOPE));
        let client_id = live.client_id().unwrap_or_default().to_owned();
        if !scoped {
            return Err(Problem::forbidden("the token lacks the admin scope"));
        }
        // Removing the client, its grant or its scope ends its access at once, not when
        // its tokens expire. `check_access_token` already refused a removed client's
        // tokens; the client is read again here for its grants and scopes, and its
        // existence and registration time are checked again so that this gate holds on
        // its own.
        let client = state.db.clients().find(&client_id).await.map_err(|e| {
            tracing::error!(error = %e, "admin API: cannot read the client");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "about:blank",
                "the database is unavailable",
            )
        })?;
        // A token older than the client (a deleted client registered again under the
        // same id), or issued before a rotation's old secret stopped working (a leaked
        // secret rotated with no grace), is refused too: ending a credential ends what
        // was got with it.
        let iat = live
            .claims
            .get("iat")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(i64::MIN);
        let now = state.clock.now();
        let allowed = client.is_some_and(|c| {
            let superseded = c
                .previous_secret
                .as_ref()
                .is_some_and(|(_, until)| *until <= now && iat <= until.unix_timestamp());
            c.allows(GrantType::ClientCredentials)
                && c.scopes.iter().any(|s| s == ADMIN_SCOPE)
                && crate::oidc::tokens::issued_to(&c, iat)
                && !superseded
        });
        if !allowed {
            return Err(Problem::forbidden(
                "this client may no longer use the admin API",
            ));
        }
        let ClientAddr(ip) = ClientAddr::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|never| match never {});
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Self {
            ctx: Context {
                actor: Actor::Client(client_id.clone()),
                ip: ip.to_string(),
                request_id,
            },
            client_id,
        })
    }
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Where a page starts and how long it is.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 200; 50 by default.
    pub limit: Option<u32>,
}

/// The longest page.
pub const MAX_LIMIT: u32 = 200;

impl PageParams {
    /// The page length, refused outside 1..=200.
    pub fn limit(&self) -> Result<u64, Problem> {
        match self.limit {
            None => Ok(50),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n.into()),
            Some(_) => Err(Problem::bad_request("limit must be between 1 and 200")),
        }
    }

    /// The position the cursor names (what [`cursor`] was given), refused when it is
    /// not one of ours.
    pub fn position(&self) -> Result<Option<String>, Problem> {
        self.cursor
            .as_deref()
            .map(|c| {
                URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .filter(|s| !s.is_empty() && s.len() <= 512)
                    .ok_or_else(|| Problem::bad_request("cursor is not a cursor this API gave"))
            })
            .transpose()
    }
}

/// An opaque cursor for a position in a list (callers must not build their own).
pub fn cursor(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position)
}
