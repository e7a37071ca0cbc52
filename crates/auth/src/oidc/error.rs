//! OAuth 2.0 / OpenID Connect error codes (RFC 6749 §4.1.2.1 and §5.2, OIDC Core §3.1.2.6,
//! RFC 6750 §3.1) and how they travel: JSON at the token endpoint, a redirect at the
//! authorization endpoint, a `WWW-Authenticate` challenge at resource endpoints.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    UnauthorizedClient,
    AccessDenied,
    UnsupportedResponseType,
    InvalidScope,
    ServerError,
    LoginRequired,
    ConsentRequired,
    RequestNotSupported,
    RequestUriNotSupported,
    InvalidClient,
    InvalidGrant,
    UnsupportedGrantType,
    InvalidToken,
    /// A store the request needs is down or full (RFC 6749 §4.1.2.1; at `/revoke`, RFC
    /// 7009 §2.2.1's 503): try again later.
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::ServerError => "server_error",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::RequestNotSupported => "request_not_supported",
            Self::RequestUriNotSupported => "request_uri_not_supported",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidToken => "invalid_token",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

#[derive(Clone, Debug)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
    /// The client tried HTTP Basic authentication: a 401 must carry a Basic challenge
    /// (RFC 6749 §5.2).
    pub basic_challenge: bool,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            basic_challenge: false,
        }
    }

    /// An internal failure: logged with its cause, answered without it.
    pub fn server(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "token endpoint failure");
        Self::new(ErrorCode::ServerError, "internal error")
    }

    /// A failure of the ephemeral store: its being down or full is a 503 with
    /// `Retry-After`, as on the pages; anything else is internal.
    pub fn store(e: crate::store::EphemeralError) -> Self {
        if e.is_transient() {
            Self::unavailable(e)
        } else {
            Self::server(e)
        }
    }

    /// A store the answer depends on is down: 503 `temporarily_unavailable`.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "token endpoint: a store is unavailable");
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            "the service is temporarily unavailable; try again shortly",
        )
    }
}

/// The JSON form, for the token endpoint.
impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = match self.code {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let body = json!({ "error": self.code.as_str(), "error_description": self.description });
        let mut res = (status, Json(body)).into_response();
        let h = res.headers_mut();
        no_store(h);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        if status == StatusCode::UNAUTHORIZED && self.basic_challenge {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="tobira""#),
            );
        }
        res
    }
}

/// The answer of a token-family endpoint (token, revoke, introspect): JSON errors, and
/// nothing cached either way.
pub fn answer(result: Result<impl IntoResponse, OAuthError>) -> Response {
    match result {
        Ok(body) => {
            let mut res = body.into_response();
            no_store(res.headers_mut());
            res
        }
        Err(e) => e.into_response(),
    }
}

/// Token responses must not be cached (RFC 6749 §5.1).
pub fn no_store(h: &mut axum::http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A bearer-token failure at a resource endpoint (RFC 6750 §3): 401 with a challenge;
/// `None` for a request that carried no token at all (no error code, §3.1).
pub fn bearer_error(code: Option<ErrorCode>, description: &str) -> Response {
    let (status, challenge) = match code {
        None => (
            StatusCode::UNAUTHORIZED,
            r#"Bearer realm="tobira""#.to_owned(),
        ),
        Some(code) => {
            let status = if code == ErrorCode::InvalidRequest {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNAUTHORIZED
            };
            (
                status,
                format!(
                    r#"Bearer realm="tobira", error="{}", error_description="{}""#,
                    code.as_str(),
                    description.replace(['"', '\\'], "")
                ),
            )
        }
    };
    let mut res = status.into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    no_store(res.headers_mut());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(e: OAuthError) -> (u16, serde_json::Value, axum::http::HeaderMap) {
        let res = e.into_response();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), 4096)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&body).expect("JSON"),
            headers,
        )
    }

    #[tokio::test]
    async fn each_token_endpoint_error_has_its_status_and_headers() {
        for (code, status) in [
            (ErrorCode::InvalidRequest, 400),
            (ErrorCode::InvalidGrant, 400),
            (ErrorCode::UnsupportedGrantType, 400),
            (ErrorCode::InvalidClient, 401),
            (ErrorCode::ServerError, 500),
            (ErrorCode::TemporarilyUnavailable, 503),
        ] {
            let (got, body, headers) = parts(OAuthError::new(code, "why")).await;
            assert_eq!(got, status, "{code:?}");
            assert_eq!(
                body,
                json!({ "error": code.as_str(), "error_description": "why" })
            );
            assert_eq!(headers["cache-control"], "no-store", "{code:?}");
            assert_eq!(headers["pragma"], "no-cache", "{code:?}");
            assert_eq!(
                headers.get("retry-after").map(|v| v.to_str().unwrap()),
                (status == 503).then_some("30"),
                "{code:?}"
            );
            assert!(!headers.contains_key("www-authenticate"), "{code:?}");
        }
        // A client that tried HTTP Basic is challenged (RFC 6749 §5.2); others are not.
        let mut basic = OAuthError::new(ErrorCode::InvalidClient, "who?");
        basic.basic_challenge = true;
        let (status, _, headers) = parts(basic).await;
        assert_eq!(status, 401);
        assert_eq!(headers["www-authenticate"], r#"Basic realm="tobira""#);
        let mut not_401 = OAuthError::new(ErrorCode::InvalidGrant, "spent");
        not_401.basic_challenge = true;
        assert!(!parts(not_401).await.2.contains_key("www-authenticate"));
    }
}
