//! Discovery (OIDC Discovery 1.0 §3) and the JWKS. The document lists only what works.
//! Both are served from bytes built once, with an `ETag`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::paths;
use crate::config::Config;
use crate::domain::{ACR_ONE, ACR_TWO};
use crate::keys::KeyRing;
use crate::state::AppState;

/// What discovery and the JWKS answer with, built at start-up: the discovery document
/// depends only on the configuration, and the JWKS bytes come with each key snapshot.
pub struct Published {
    document: Bytes,
    etag: HeaderValue,
    /// Relying parties cache both for `keys.jwks_max_age_secs`; a new signing key is
    /// published at least this long before it signs (see keys/).
    cache_control: HeaderValue,
}

impl Published {
    pub fn new(config: &Config, keys: &KeyRing) -> Self {
        let document = document(config, keys).to_string();
        Self {
            etag: strong_etag(document.as_bytes()),
            document: Bytes::from(document),
            cache_control: HeaderValue::try_from(format!(
                "public, max-age={}",
                config.keys.jwks_max_age_secs
            ))
            .expect("digits are a valid header value"),
        }
    }
}

/// A strong validator of `body` (RFC 9110 §8.8.3), the same on every replica that
/// serves the same bytes.
pub fn strong_etag(body: &[u8]) -> HeaderValue {
    HeaderValue::try_from(format!(
        "\"{}\"",
        crate::crypto::b64url(&crate::crypto::sha256(body)[..16])
    ))
    .expect("base64url is a valid header value")
}

fn document(config: &Config, keys: &KeyRing) -> Value {
    let iss = &config.issuer;
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
        "id_token_signing_alg_values_supported": keys.signing_algs(),
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

pub async fn openid_configuration(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let published = &state.discovery;
    revalidated(
        &headers,
        published.document.clone(),
        published.etag.clone(),
        published.cache_control.clone(),
    )
}

/// `GET /jwks`: the bytes of the current key snapshot (shared, not copied).
pub async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (body, etag) = state.keys.jwks_response();
    revalidated(&headers, body, etag, state.discovery.cache_control.clone())
}

/// `body` with its `ETag`; a relying party revalidating its copy with `If-None-Match`
/// gets `304 Not Modified` while the bytes are the same.
fn revalidated(
    headers: &HeaderMap,
    body: Bytes,
    etag: HeaderValue,
    cache_control: HeaderValue,
) -> Response {
    let cached = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| names(v, etag.to_str().unwrap_or_default()));
    let head = [(header::CACHE_CONTROL, cache_control), (header::ETAG, etag)];
    if cached {
        return (StatusCode::NOT_MODIFIED, head).into_response();
    }
    (
        head,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
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
