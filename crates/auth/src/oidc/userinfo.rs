//! The UserInfo endpoint (OIDC Core §5.3), GET and POST, with the bearer token in the
//! `Authorization` header or (POST only) the form body (RFC 6750 §2.1, §2.2).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};

use super::error::{ErrorCode, bearer_error, no_store};
use super::params::Params;
use super::tokens::{AccessTokenError, check_access_token, userinfo_claims};
use crate::state::AppState;

pub async fn userinfo(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let from_header = crate::web::authorization(&headers, "bearer").map(str::to_owned);
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let from_body = if method == Method::POST && is_form {
        match Params::parse(&body) {
            Ok(params) => params.get("access_token").map(str::to_owned),
            Err(e) => return bearer_error(Some(ErrorCode::InvalidRequest), &e.to_string()),
        }
    } else {
        None
    };
    let token = match (from_header, from_body) {
        (Some(_), Some(_)) => {
            return bearer_error(
                Some(ErrorCode::InvalidRequest),
                "send the token one way only",
            );
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return bearer_error(None, ""),
    };
    match check_access_token(&state, &token).await {
        Ok(super::tokens::LiveAccessToken {
            claims,
            subject: Some((_, user)),
        }) => {
            // The token's own scope: a narrowing refresh gives a token that sees less.
            let scope = claims.get("scope").and_then(|v| v.as_str()).unwrap_or("");
            let mut res = Json(userinfo_claims(scope, &user)).into_response();
            no_store(res.headers_mut());
            res
        }
        Ok(_) => bearer_error(
            Some(ErrorCode::InvalidToken),
            "the token was issued to a client, not a member",
        ),
        // The token may well be good: say the check is what failed, not the token.
        Err(e @ AccessTokenError::CannotCheck) => {
            super::error::OAuthError::unavailable(e).into_response()
        }
        Err(AccessTokenError::Refused(why)) => bearer_error(Some(ErrorCode::InvalidToken), why),
    }
}
