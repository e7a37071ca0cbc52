//! Discovery (OIDC Discovery 1.0 §3) and the JWKS. The document lists only what works.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::paths;
use crate::domain::{ACR_ONE, ACR_TWO};
use crate::state::AppState;

/// Relying parties cache these for `keys.jwks_max_age_secs`; a new signing key is
/// published at least this long before it signs (see keys/).
fn cache(state: &AppState) -> String {
    format!("public, max-age={}", state.config.keys.jwks_max_age_secs)
}

pub fn document(state: &AppState) -> Value {
    let iss = &state.config.issuer;
    json!({
        "issuer": iss.as_str(),
        "authorization_endpoint": iss.endpoint(paths::AUTHORIZE),
        "token_endpoint": iss.endpoint(paths::TOKEN),
        "userinfo_endpoint": iss.endpoint(paths::USERINFO),
        "jwks_uri": iss.endpoint(paths::JWKS),
        "end_session_endpoint": iss.endpoint(paths::END_SESSION),
        "revocation_endpoint": iss.endpoint(paths::REVOKE),
        "introspection_endpoint": iss.endpoint(paths::INTROSPECT),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": super::authorize::SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": state.keys.signing_algs(),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "acr", "at_hash", "sid",
            "email", "email_verified", "name", "preferred_username", "locale", "updated_at"
        ],
        "prompt_values_supported": ["none", "login", "consent"],
        // One factor, and two of which the second is the member's own one-time code
        // (`acr_values=2` steps a one-factor session up; OIDC Core §3.1.2.1).
        "acr_values_supported": [ACR_ONE, ACR_TWO],
        "ui_locales_supported": ["ja", "en"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        // Discovery §3 defaults this to true: say no explicitly.
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        // Back-Channel Logout 1.0 §2.1: every logout token carries `sid` when the session
        // is known.
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    })
}

pub async fn openid_configuration(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, cache(&state))],
        Json(document(&state)),
    )
}

/// `GET /jwks`: the cached bytes, with an `ETag`; a relying party revalidating its copy
/// with `If-None-Match` gets `304 Not Modified` while the keys are the same.
pub async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (body, etag) = state.keys.jwks_response();
    let cached = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| names(v, &etag));
    let head = [
        (header::CACHE_CONTROL, cache(&state)),
        (header::ETAG, etag.to_string()),
    ];
    if cached {
        return (StatusCode::NOT_MODIFIED, head).into_response();
    }
    (head, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Whether an `If-None-Match` value names `etag`: `*`, or a list of tags compared weakly
/// (RFC 9110 §13.1.2: a `W/` prefix is ignored).
fn names(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag)
}
