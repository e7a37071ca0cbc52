//! Admin API: signing keys. The same `keys::schedule` functions as `tobira keys`; after a
//! change this replica reloads its ring at once, the others within their reload interval.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use super::{Admin, ApiJson, ApiPath, Problem};
use crate::keys::schedule::{self, KeyView, Revocation, RotationError};
use crate::keys::{Alg, KeyPolicy};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list_keys))
        .routes(utoipa_axum::routes!(rotate_keys))
        .routes(utoipa_axum::routes!(revoke_key))
}

/// An algorithm Tobira signs with.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[allow(clippy::upper_case_acronyms)]
enum AlgName {
    RS256,
    ES256,
    EdDSA,
}

impl From<AlgName> for Alg {
    fn from(alg: AlgName) -> Self {
        match alg {
            AlgName::RS256 => Alg::RS256,
            AlgName::ES256 => Alg::ES256,
            AlgName::EdDSA => Alg::EdDSA,
        }
    }
}

/// Which algorithms get a next key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    /// Only this algorithm; every algorithm when absent.
    alg: Option<AlgName>,
}

/// What an emergency revoke did.
#[derive(Debug, Serialize, ToSchema)]
struct RevocationView {
    kid: String,
    alg: String,
    /// The state the key was revoked in.
    was: String,
    /// The key signing instead, when the revoked one was signing.
    replacement: Option<ReplacementView>,
    /// By when every replica has stopped trusting the key (one reload interval).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    effective_by: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
struct ReplacementView {
    kid: String,
    /// `next` (the waiting key), `retiring` (a key clients have cached) or `generated`
    /// (a new key).
    from: String,
    /// Whether clients must fetch the JWKS again before they can check its tokens.
    clients_must_refetch: bool,
}

impl From<Revocation> for RevocationView {
    fn from(r: Revocation) -> Self {
        Self {
            replacement: r.replacement.map(|p| ReplacementView {
                clients_must_refetch: p.clients_must_refetch(),
                from: p.from.as_str().to_owned(),
                kid: p.kid,
            }),
            kid: r.kid,
            alg: r.alg,
            was: r.was.as_str().to_owned(),
            effective_by: r.effective_by,
        }
    }
}

/// A refusal of the schedule as a problem; the store's failures as a 500.
fn problem(admin: &Admin, e: RotationError) -> Problem {
    match e {
        RotationError::UnknownKid(_) => Problem::not_found(e.to_string()),
        RotationError::NextWaiting { .. }
        | RotationError::AlreadyRevoked { .. }
        | RotationError::Conflict => Problem::conflict(e.to_string()),
        other => Problem::internal(admin, &other),
    }
}

/// This replica sees the change at once; a failed reload only delays it to the next
/// reload interval, like every other replica's, so the change still stands.
async fn reload(state: &AppState) {
    if let Err(e) = state.keys.refresh(&state.db, &state.master).await {
        tracing::warn!(error = %e, "key ring: reload after an admin change failed; the reloader will pick it up");
    }
}

/// Every signing key, oldest first (retired and revoked ones too), without private
/// material.
#[utoipa::path(
    get,
    path = "/keys",
    tag = "keys",
    responses(
        (status = 200, description = "Every signing key", body = Vec<KeyView>),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin client", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn list_keys(
    admin: Admin,
    State(state): State<AppState>,
) -> Result<axum::Json<Vec<KeyView>>, Problem> {
    let keys = schedule::list(&state.db)
        .await
        .map_err(|e| problem(&admin, e))?;
    Ok(axum::Json(keys.iter().map(KeyView::from).collect()))
}

/// Publishes a next key of each algorithm (or of `alg`), like `tobira keys rotate`: it
/// signs once clients have had time to see it (`keys.publish_ahead_secs`). Refused while
/// a next key of that algorithm waits.
#[utoipa::path(
    post,
    path = "/keys/rotate",
    tag = "keys",
    request_body = RotateRequest,
    responses(
        (status = 200, description = "The published keys, with when they sign (`activate_after`)", body = Vec<KeyView>),
        (status = 400, description = "The body is not JSON of this shape", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin client", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A next key already waits, or the keys changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown algorithm or field", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn rotate_keys(
    admin: Admin,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RotateRequest>,
) -> Result<axum::Json<Vec<KeyView>>, Problem> {
    let algs = request
        .alg
        .map_or_else(|| Alg::ALL.to_vec(), |a| vec![a.into()]);
    let policy = KeyPolicy::from_config(&state.config);
    let now = state.clock.now();
    let keys = schedule::rotate(
        &state.db,
        &state.master,
        now,
        &policy,
        &algs,
        false,
        &admin.ctx,
    )
    .await
    .map_err(|e| problem(&admin, e))?;
    reload(&state).await;
    Ok(axum::Json(keys.iter().map(KeyView::from).collect()))
}

/// Revokes a key in an emergency, like `tobira keys revoke`: it leaves the JWKS and
/// nothing it signed is accepted any more; if it was signing, another key signs at once.
#[utoipa::path(
    post,
    path = "/keys/{kid}/revoke",
    tag = "keys",
    params(("kid" = String, Path, description = "The key's `kid`")),
    responses(
        (status = 200, description = "Revoked; what signs instead", body = RevocationView),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin client", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No key has this kid", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Revoked already, or the keys changed meanwhile", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn revoke_key(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(kid): ApiPath<String>,
) -> Result<axum::Json<RevocationView>, Problem> {
    let policy = KeyPolicy::from_config(&state.config);
    let now = state.clock.now();
    let revocation = schedule::revoke(&state.db, &state.master, now, &policy, &kid, &admin.ctx)
        .await
        .map_err(|e| problem(&admin, e))?;
    reload(&state).await;
    Ok(axum::Json(revocation.into()))
}
