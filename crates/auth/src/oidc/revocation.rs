//! Token revocation (RFC 7009) and introspection (RFC 7662), both for authenticated
//! clients and both about the caller's own tokens only: another client's token is
//! "inactive" to introspection, and revoking it is refused.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::error::{ErrorCode, OAuthError, answer};
use super::params::FormParams;
use super::tokens::{
    AccessTokenError, LiveAccessToken, authenticate_client, check_access_token, grant_if_live,
    revoked_jti_key,
};
use crate::domain::{Client, UserStatus};
use crate::state::AppState;
use crate::store::FullGrant;
use crate::web::client_ip::ClientAddr;

/// A token, as far as this client may know about it. One lives for one request on the
/// stack: its size does not matter, boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Found {
    Access(LiveAccessToken),
    Refresh {
        grant: crate::domain::Grant,
        info: crate::store::RefreshTokenInfo,
        sub: String,
    },
    /// Unknown, malformed, expired, revoked — or another client's.
    Nothing,
    Foreign,
}

async fn find(
    state: &AppState,
    client: &Client,
    token: &str,
    hint: Option<&str>,
) -> Result<Found, OAuthError> {
    // The hint only orders the lookups (RFC 7009 §2.1).
    let access_first = hint != Some("refresh_token");
    for access in [access_first, !access_first] {
        let found = if access {
            find_access(state, client, token).await?
        } else {
            find_refresh(state, client, token).await?
        };
        if !matches!(found, Found::Nothing) {
            return Ok(found);
        }
    }
    Ok(Found::Nothing)
}

async fn find_access(state: &AppState, client: &Client, token: &str) -> Result<Found, OAuthError> {
    // Only a JWT can be an access token; skip the signature check for anything else.
    if token.split('.').count() != 3 {
        return Ok(Found::Nothing);
    }
    Ok(match check_access_token(state, token).await {
        Ok(live) if live.client_id() == Some(client.client_id.as_str()) => Found::Access(live),
        Ok(_) => Found::Foreign,
        // Not knowing is not "no such token": a revocation answered 200 would not have
        // happened, an introspection answered inactive would be wrong.
        Err(e @ AccessTokenError::CannotCheck) => return Err(OAuthError::unavailable(e)),
        Err(AccessTokenError::Refused(_)) => Found::Nothing,
    })
}

async fn find_refresh(state: &AppState, client: &Client, token: &str) -> Result<Found, OAuthError> {
    let Some(info) = state
        .db
        .refresh_tokens()
        .find(token)
        .await
        .map_err(OAuthError::server)?
    else {
        return Ok(Found::Nothing);
    };
    if info.spent || info.expires_at <= state.clock.now() {
        return Ok(Found::Nothing);
    }
    let Some(FullGrant { grant, user, .. }) = grant_if_live(state, info.grant_id)
        .await
        .map_err(OAuthError::server)?
    else {
        return Ok(Found::Nothing);
    };
    if grant.client_id != client.client_id {
        return Ok(Found::Foreign);
    }
    Ok(if user.status == UserStatus::Active {
        Found::Refresh {
            grant,
            info,
            sub: user.sub.as_str().to_owned(),
        }
    } else {
        Found::Nothing
    })
}

async fn parse(
    state: &AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    form: Result<FormParams, OAuthError>,
) -> Result<(std::sync::Arc<Client>, String, Option<String>), OAuthError> {
    let FormParams(params) = form?;
    let client = authenticate_client(state, ip, headers, &params).await?;
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "token is required"))?
        .to_owned();
    Ok((
        client,
        token,
        params.get("token_type_hint").map(str::to_owned),
    ))
}

/// RFC 7662 §2.2: `active` and, when active, what the token says.
pub async fn introspect(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    form: Result<FormParams, OAuthError>,
) -> Response {
    let result = async {
        let (client, token, hint) = parse(&state, ip, &headers, form).await?;
        let body = match find(&state, &client, &token, hint.as_deref()).await? {
            Found::Access(live) => {
                let c = &live.claims;
                let mut body = json!({ "active": true, "token_type": "Bearer" });
                for key in [
                    "scope",
                    "client_id",
                    "sub",
                    "aud",
                    "iss",
                    "exp",
                    "iat",
                    "jti",
                ] {
                    if let Some(v) = c.get(key) {
                        body[key] = v.clone();
                    }
                }
                body
            }
            Found::Refresh { grant, info, sub } => json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": grant.scope,
                "client_id": grant.client_id,
                "sub": sub,
                "iss": state.config.issuer.as_str(),
                "exp": info.expires_at.unix_timestamp(),
                "iat": info.created_at.unix_timestamp(),
            }),
            Found::Nothing | Found::Foreign => json!({ "active": false }),
        };
        Ok::<Value, OAuthError>(body)
    }
    .await;
    answer(result.map(Json))
}

/// RFC 7009 §2.2: 200 whether or not the token existed, so that revocation cannot be
/// used to probe for tokens. Revoking a refresh token revokes its grant, and with it the
/// access tokens issued from it (§2.1).
pub async fn revoke(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    form: Result<FormParams, OAuthError>,
) -> Response {
    let result = async {
        let (client, token, hint) = parse(&state, ip, &headers, form).await?;
        let now = state.clock.now();
        match find(&state, &client, &token, hint.as_deref()).await? {
            Found::Access(live) => {
                let jti = live
                    .claims
                    .get("jti")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                let exp = live
                    .claims
                    .get("exp")
                    .and_then(Value::as_i64)
                    .unwrap_or_default();
                let until = time::OffsetDateTime::from_unix_timestamp(exp).unwrap_or(now);
                state
                    .ephemeral
                    .put(&revoked_jti_key(jti), b"1", until)
                    .await
                    .map_err(OAuthError::store)?;
            }
            Found::Refresh { grant, .. } => {
                state
                    .db
                    .grants()
                    .revoke(grant.id, now)
                    .await
                    .map_err(OAuthError::server)?;
            }
            Found::Nothing => {}
            // §2.1: a client may revoke only its own tokens.
            Found::Foreign => {
                return Err(OAuthError::new(
                    ErrorCode::UnauthorizedClient,
                    "the token was not issued to this client",
                ));
            }
        }
        Ok::<(), OAuthError>(())
    }
    .await;
    answer(result.map(|()| StatusCode::OK))
}
