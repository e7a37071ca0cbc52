//! `POST /backchannel-logout` (OpenID Connect Back-Channel Logout 1.0 §2.5–2.8): the OP,
//! server to server, says an OP session (or all of a member's) has ended, and every
//! marketplace session started from it ends at once. No browser and no cookie take part:
//! the member forms' origin and CSRF checks (`ProtectedForm`) do not apply here; the
//! signed logout token is the only credential, and nothing changes unless it passes.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::jws::{Compact, JwsError};
use crate::logout_token::{self, LogoutTokenError, Rules};
use crate::state::AppState;
use crate::store::logouts::{Logout, Outcome};

pub const PATH: &str = "/backchannel-logout";

/// A logout token is well under 2 KiB; the form around it has no reason to be large.
const MAX_BODY: usize = 16 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, post(backchannel_logout).fallback(not_post))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// Why a back-channel logout changed nothing. Rendered as §2.8 asks: 400 with a JSON
/// error, never cached.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("only POST is allowed")]
    Method,
    #[error("the body must be application/x-www-form-urlencoded")]
    ContentType,
    #[error("the body is larger than 16 KiB")]
    TooLarge,
    #[error("the body cannot be read as a UTF-8 form")]
    Unreadable,
    #[error("logout_token is missing")]
    Missing,
    #[error("logout_token is given more than once")]
    Repeated,
    #[error(transparent)]
    Token(#[from] LogoutTokenError),
    #[error("logout_token has been used before (its jti was seen)")]
    Replayed,
    /// Ours or the OP's fault; the cause is logged, never sent.
    #[error("the logout could not be carried out; nothing has changed")]
    Internal(String),
}

impl From<JwsError> for Refusal {
    fn from(e: JwsError) -> Self {
        Self::Token(e.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, error) = match &self {
            Self::Method => (StatusCode::METHOD_NOT_ALLOWED, "invalid_request"),
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "back-channel logout failed");
                (StatusCode::BAD_REQUEST, "server_error")
            }
            refused => {
                tracing::warn!(reason = %refused, "back-channel logout refused");
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
        };
        let body = serde_json::json!({
            "error": error,
            "error_description": self.to_string(),
        });
        let mut res = (status, axum::Json(body)).into_response();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        no_store(res)
    }
}

/// §2.8: the response must not be cached.
fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The back-channel logout request (§2.5): one `logout_token` in a form body. Other
/// parameters are ignored, as OAuth endpoints ignore what they do not know.
struct LogoutRequest {
    logout_token: String,
}

impl LogoutRequest {
    fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, Refusal> {
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(Refusal::ContentType);
        }
        let body = std::str::from_utf8(body).map_err(|_| Refusal::Unreadable)?;
        let mut token = None;
        for (name, value) in url::form_urlencoded::parse(body.as_bytes()) {
            if name == "logout_token" && token.replace(value).is_some() {
                return Err(Refusal::Repeated);
            }
        }
        let logout_token = token
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Missing)?
            .into_owned();
        Ok(Self { logout_token })
    }
}

async fn backchannel_logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Refusal::TooLarge,
        _ => Refusal::Unreadable,
    })?;
    let request = LogoutRequest::parse(&headers, &body)?;
    // §2.6 step 2: the signature, by the OP's key the header names, with an algorithm
    // we accept; the header is checked first, so junk never makes us fetch keys.
    let jws = Compact::parse(&request.logout_token)?;
    let kid = logout_token::check_header(&jws)?.to_owned();
    let provider = state
        .provider()
        .await
        .map_err(|e| Refusal::Internal(e.to_string()))?;
    let now = state.clock.now();
    let keys = provider.signing_keys(&kid, now).await;
    let claims = jws.verify(keys.keys())?;
    // Steps 3–5.
    let config = &state.config;
    let rules = Rules {
        issuer: &provider.issuer,
        client_id: &config.oidc.client_id,
        max_age: config.backchannel_logout.max_age(),
        skew: config.backchannel_logout.clock_skew(),
    };
    let token = logout_token::validate(&claims, &rules, now)?;
    // Step 6 and §2.7, in one transaction: the jti is spent exactly when the sessions
    // it names end.
    let outcome = state
        .store
        .logouts()
        .accept(
            now,
            Logout {
                issuer: &provider.issuer,
                jti: &token.jti,
                remember_until: token.remember_until,
                ends: &token.ends,
            },
        )
        .await
        .map_err(|e| Refusal::Internal(e.to_string()))?;
    match outcome {
        Outcome::Replayed => Err(Refusal::Replayed),
        Outcome::Ended(sessions) => {
            tracing::info!(sessions, "back-channel logout from the OP");
            Ok(no_store(StatusCode::OK.into_response()))
        }
    }
}

async fn not_post() -> Refusal {
    Refusal::Method
}
