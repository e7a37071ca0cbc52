//! The token endpoint (RFC 6749 §3.2, §4.1.3, §6; OIDC Core §3.1.3, §12) and the tokens
//! it issues: RS256 ID tokens, RFC 9068 JWT access tokens, rotating opaque refresh tokens.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::Duration;
use uuid::Uuid;

use super::error::{ErrorCode, OAuthError, answer};
use super::params::{FormParams, Params};
use crate::crypto::{b64url, constant_time_eq, random_token, sha256, sha256_hex};
use crate::domain::{Client, Grant, GrantType, User};
use crate::state::AppState;
use crate::store::ephemeral::Spent;
use crate::store::{Decision, FullGrant, Rotated};
use crate::web::client_ip::ClientAddr;

/// What an authorization code is bound to (OIDC Core §3.1.3.2): checked at redemption.
#[derive(Debug, Serialize, Deserialize)]
pub struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub grant_id: Uuid,
    pub sid: String,
}

impl CodeRecord {
    /// Codes are looked up by hash, so a dump of the ephemeral store holds no usable code.
    pub fn key(code: &str) -> String {
        format!("code:{}", sha256_hex(code))
    }

    /// Marks a redeemed code, so a second presentation can be told from a made-up one
    /// and revoke what the first one produced (RFC 6749 §4.1.2).
    fn used_key(code: &str) -> String {
        format!("code_used:{}", sha256_hex(code))
    }
}

/// How long a redeemed code is remembered, to recognise its replay.
const USED_CODE_MEMORY: Duration = Duration::minutes(10);

#[derive(Serialize)]
pub(super) struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

pub async fn token(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    form: Result<FormParams, OAuthError>,
) -> Response {
    let result = async {
        let FormParams(params) = form?;
        let client = authenticate_client(&state, ip, &headers, &params).await?;
        let granted = match params.get("grant_type") {
            Some("authorization_code") => authorization_code(&state, &client, &params).await,
            Some("refresh_token") => refresh_token(&state, &client, &params).await,
            Some("client_credentials") => client_credentials(&state, &client, &params),
            Some(_) => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "unsupported grant_type",
            )),
            None => Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "grant_type is required",
            )),
        };
        crate::ops::token_grant(params.get("grant_type"), granted.is_ok());
        granted
    }
    .await;
    answer(result.map(Json))
}

/// client_secret_basic, client_secret_post or none (public clients). Exactly one
/// method per request (RFC 6749 §2.3).
pub(super) async fn authenticate_client(
    state: &AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Arc<Client>, OAuthError> {
    let result = client_by_credentials(state, headers, params).await;
    if let Err((client_id, e)) = &result
        && e.code == ErrorCode::InvalidClient
    {
        // Credential stuffing against clients shows here; the secret never does.
        tracing::warn!(client_id = %client_id, ip = %ip, reason = %e.description, "client authentication failed");
    }
    result.map_err(|(_, e)| e)
}

async fn client_by_credentials(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Arc<Client>, (String, OAuthError)> {
    let named = params.get("client_id").unwrap_or("").to_owned();
    let basic = crate::web::authorization(headers, "basic")
        .map(|credentials| {
            parse_basic(credentials).ok_or_else(|| {
                (
                    named.clone(),
                    invalid_client(true, "malformed Basic credentials"),
                )
            })
        })
        .transpose()?;
    let post_secret = params.get("client_secret");
    let (client_id, secret, used_basic) = match (basic, post_secret) {
        (Some(_), Some(_)) => {
            return Err((
                named,
                OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "use one client authentication method",
                ),
            ));
        }
        (Some((id, secret)), None) => {
            if params.get("client_id").is_some_and(|p| p != id) {
                return Err((
                    id,
                    OAuthError::new(
                        ErrorCode::InvalidRequest,
                        "client_id does not match the credentials",
                    ),
                ));
            }
            (id, Some(secret), true)
        }
        (None, secret) => {
            let id = params.get("client_id").ok_or_else(|| {
                (
                    String::new(),
                    invalid_client(false, "client authentication is required"),
                )
            })?;
            (id.to_owned(), secret.map(str::to_owned), false)
        }
    };
    let refuse = |why: &str| (client_id.clone(), invalid_client(used_basic, why));
    let server = |e| (client_id.clone(), OAuthError::server(e));
    // The secret before a rotation still counts until its grace period ends, by the
    // app's clock (`Client::secret_matches`).
    let accepts = |client: &Client| match (&client.secret_hash, &secret) {
        (Some(_), Some(given)) => client.secret_matches(given, state.clock.now()),
        (None, None) => client.public,
        _ => false,
    };
    let clients = state.db.clients();
    // This replica's copy first (no database read per request); before refusing, the
    // stored client, so that a secret rotated or a client added elsewhere a moment ago
    // counts at once.
    if let Some(client) = clients.find_cached(&client_id).await.map_err(server)?
        && accepts(&client)
    {
        return Ok(client);
    }
    match clients.find(&client_id).await.map_err(server)? {
        Some(client) if accepts(&client) => Ok(Arc::new(client)),
        _ => Err(refuse("unknown client or bad credentials")),
    }
}

fn invalid_client(basic: bool, description: &str) -> OAuthError {
    let mut e = OAuthError::new(ErrorCode::InvalidClient, description);
    e.basic_challenge = basic;
    e
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded, then joined by ':' and base64'd.
fn parse_basic(b64: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

async fn authorization_code(
    state: &AppState,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    if !client.allows(GrantType::AuthorizationCode) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use authorization codes",
        ));
    }
    let code = params
        .get("code")
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "code is required"))?;
    let invalid = |msg: &str| OAuthError::new(ErrorCode::InvalidGrant, msg);
    let now = state.clock.now();

    // Taking the code and marking it used are one atomic step: a replay that lands
    // between two steps would be refused without revoking anything.
    let spent = state
        .ephemeral
        .spend(
            &CodeRecord::key(code),
            &CodeRecord::used_key(code),
            now + USED_CODE_MEMORY,
        )
        .await
        .map_err(OAuthError::store)?;
    let bytes = match spent {
        Spent::Fresh(bytes) => bytes,
        Spent::Replayed(bytes) => {
            // Whatever the first redemption produced is revoked (RFC 6749 §4.1.2).
            if let Ok(first) = serde_json::from_slice::<CodeRecord>(&bytes) {
                state
                    .db
                    .grants()
                    .revoke(first.grant_id, now)
                    .await
                    .map_err(OAuthError::server)?;
                tracing::warn!(grant = %first.grant_id, client = %client.client_id, "authorization code replayed: grant revoked");
            }
            return Err(invalid("the code is invalid, expired or already used"));
        }
        Spent::Absent => return Err(invalid("the code is invalid, expired or already used")),
    };
    let record: CodeRecord = serde_json::from_slice(&bytes).map_err(OAuthError::server)?;

    // From here on the code is spent; any mismatch means it leaked, so its grant goes.
    let revoke_and = |msg: &'static str| async move {
        state
            .db
            .grants()
            .revoke(record.grant_id, now)
            .await
            .map_err(OAuthError::server)?;
        Err::<TokenResponse, _>(invalid(msg))
    };
    if record.client_id != client.client_id {
        return revoke_and("the code was issued to another client").await;
    }
    if params.get("redirect_uri") != Some(record.redirect_uri.as_str()) {
        return revoke_and("redirect_uri does not match the authorization request").await;
    }
    match (&record.code_challenge, params.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            let computed = b64url(&sha256(verifier.as_bytes()));
            if !constant_time_eq(computed.as_bytes(), challenge.as_bytes()) {
                return revoke_and("code_verifier does not match the code_challenge").await;
            }
        }
        (Some(_), None) => return revoke_and("code_verifier is required").await,
        // RFC 9700 §2.1.1: a verifier for a code issued without a challenge means the
        // request was tampered with (PKCE downgrade).
        (None, Some(_)) => {
            return revoke_and("code_verifier given but the code was issued without a challenge")
                .await;
        }
        (None, None) => {}
    }
    let full = live_grant(state, record.grant_id).await?;
    let user = usable_user(&full)?;
    let grant = &full.grant;
    let refresh_token = if grant.offline || client.allows(GrantType::RefreshToken) {
        let lifetime = refresh_lifetime(state, grant);
        let issue =
            state
                .db
                .refresh_tokens()
                .issue(&state.clock, &mut rand::rng(), grant.id, lifetime);
        Some(issue.await.map_err(OAuthError::server)?)
    } else {
        None
    };
    sign_tokens(
        state,
        client,
        grant,
        &grant.scope,
        user,
        record.nonce.as_deref(),
        Some(&record.sid),
        refresh_token,
    )
}

async fn refresh_token(
    state: &AppState,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let token = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "refresh_token is required"))?;
    let invalid = |msg: &str| OAuthError::new(ErrorCode::InvalidGrant, msg);
    let now = state.clock.now();
    // The checks run on the token's grant inside the rotation's transaction, before
    // anything is signed. A refusal rolls the spend back (a client's mistake, such as
    // asking for more scope, must not burn its token and make its retry look like a
    // reuse), except where the token is shown to have leaked.
    let asked = params.get("scope");
    let rotation = state
        .db
        .refresh_tokens()
        .rotate(&mut rand::rng(), token, now, move |grant| {
            match refusal(state, client, asked, grant) {
                Some(Refusal::KeepToken(e)) => Decision::Keep(e),
                Some(Refusal::RevokeGrant(e)) => Decision::Revoke(e),
                None => Decision::Issue(refresh_lifetime(state, &grant.grant)),
            }
        });
    let (refresh_token, full) = match rotation.await.map_err(OAuthError::server)? {
        Rotated::Issued { token, grant } => (token, grant),
        Rotated::Kept(e) | Rotated::Revoked(e) => return Err(e),
        Rotated::Reused { grant_id } => {
            // A spent token came back: the token family leaked (RFC 9700 §4.14.2).
            crate::ops::refresh_token_reused();
            state
                .db
                .grants()
                .revoke(grant_id, now)
                .await
                .map_err(OAuthError::server)?;
            tracing::warn!(grant = %grant_id, client = %client.client_id, "refresh token reused: grant revoked");
            return Err(invalid(
                "the refresh token was already used; the grant is revoked",
            ));
        }
        Rotated::Expired | Rotated::Unknown => {
            return Err(invalid("the refresh token is invalid or expired"));
        }
    };
    // Signed after the commit, so that signatures never hold the store's write lock.
    let sid = full
        .session
        .as_ref()
        .filter(|s| s.ended_at.is_none())
        .map(|s| s.sid.as_str());
    // The new access token carries the narrower scope everywhere it is read (userinfo,
    // introspection); the grant, and so the rotated refresh token, keeps the original
    // (RFC 6749 §6: "the same as the scope originally granted" when omitted).
    let scope = match params.get("scope") {
        Some(asked) => narrowed(&full.grant, asked),
        None => full.grant.scope.clone(),
    };
    sign_tokens(
        state,
        client,
        &full.grant,
        &scope,
        &full.user,
        None,
        sid,
        Some(refresh_token),
    )
}

/// Why a refresh with a live token is refused, and what becomes of the token.
enum Refusal {
    /// The spend rolls back: the token stays usable.
    KeepToken(OAuthError),
    /// The token leaked (another client presented it): the grant ends.
    RevokeGrant(OAuthError),
}

/// The checks of a refresh on the grant its token belongs to, `asked` being the scope
/// asked for; `None` when a successor may be issued.
fn refusal(
    state: &AppState,
    client: &Client,
    asked: Option<&str>,
    full: &FullGrant,
) -> Option<Refusal> {
    let grant = &full.grant;
    let refused = if !is_live(state, full) {
        OAuthError::new(
            ErrorCode::InvalidGrant,
            "the grant was revoked or its session ended",
        )
    } else if grant.client_id != client.client_id {
        return Some(Refusal::RevokeGrant(OAuthError::new(
            ErrorCode::InvalidGrant,
            "the refresh token was issued to another client",
        )));
    } else if !(grant.offline || client.allows(GrantType::RefreshToken)) {
        OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use refresh tokens",
        )
    } else if asked.is_some_and(|asked| exceeds(grant, asked)) {
        // A narrower scope may be asked for, never a wider one (RFC 6749 §6).
        OAuthError::new(ErrorCode::InvalidScope, "scope exceeds the original grant")
    } else {
        usable_user(full).err()?
    };
    Some(Refusal::KeepToken(refused))
}

/// RFC 6749 §4.4: a confidential client acting for itself. A JWT access token whose
/// `sub` is the client (RFC 9068 §2.2); no refresh token, no ID token.
fn client_credentials(
    state: &AppState,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    if client.public || !client.allows(GrantType::ClientCredentials) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use client_credentials",
        ));
    }
    // Only the API scopes registered for this client: member scopes (`openid`,
    // `email`…) make no sense without a member. Nothing asked for, nothing granted.
    let mut scopes: Vec<&str> = params
        .get("scope")
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    if scopes
        .iter()
        .any(|s| !client.scopes.iter().any(|c| c == *s))
    {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "a scope asked for is not registered for this client",
        ));
    }
    let scope = scopes.join(" ");
    let now = state.clock.now();
    let tokens = &state.config.tokens;
    let access_token = state
        .keys
        .sign(
            tokens.access_token_alg,
            "at+jwt",
            &json!({
                "iss": state.config.issuer.as_str(),
                "sub": client.client_id,
                "aud": client.client_id,
                "exp": (now + Duration::seconds(tokens.access_token_secs.into())).unix_timestamp(),
                "iat": now.unix_timestamp(),
                "jti": random_token(&mut rand::rng(), 16),
                "client_id": client.client_id,
                "scope": scope,
            }),
        )
        .map_err(OAuthError::server)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: tokens.access_token_secs,
        scope,
        id_token: None,
        refresh_token: None,
    })
}

async fn live_grant(state: &AppState, id: Uuid) -> Result<FullGrant, OAuthError> {
    match grant_if_live(state, id).await.map_err(OAuthError::server)? {
        Some(full) => Ok(full),
        None => Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            "the grant was revoked or its session ended",
        )),
    }
}

/// The grant, with its session and member, if it is live (`is_live`).
pub(super) async fn grant_if_live(
    state: &AppState,
    id: Uuid,
) -> Result<Option<FullGrant>, crate::store::StoreError> {
    Ok(state
        .db
        .grants()
        .find_full(id)
        .await?
        .filter(|full| is_live(state, full)))
}

/// A grant that is not revoked and, unless offline, whose browser session has not
/// ended or passed its absolute lifetime (such grants end with the session).
fn is_live(state: &AppState, full: &FullGrant) -> bool {
    let now = state.clock.now();
    if full.grant.revoked_at.is_some() {
        return false;
    }
    if let Some(end) = offline_end(state, &full.grant) {
        return end > now;
    }
    full.session
        .as_ref()
        .is_some_and(|s| s.ended_at.is_none() && s.expires_at > now)
}

/// When an offline grant ends for good (`tokens.offline_max_days` after it was made);
/// `None` for grants that end with their browser session.
fn offline_end(state: &AppState, grant: &Grant) -> Option<time::OffsetDateTime> {
    grant
        .offline
        .then(|| grant.created_at + Duration::days(state.config.tokens.offline_max_days.into()))
}

/// How long a new refresh token in `grant` lives: an idle window, but an offline grant
/// ends at its absolute lifetime whatever the rotations (otherwise rotation would extend
/// it forever).
fn refresh_lifetime(state: &AppState, grant: &Grant) -> Duration {
    let idle = Duration::days(state.config.tokens.refresh_token_days.into());
    match offline_end(state, grant) {
        Some(end) => idle.min(end - state.clock.now()),
        None => idle,
    }
}

fn usable_user(full: &FullGrant) -> Result<&User, OAuthError> {
    Some(&full.user)
        .filter(|u| u.usable())
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidGrant, "the account is not available"))
}

#[derive(Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    amr: &'a [String],
    acr: &'a str,
    at_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
}

/// RFC 9068 §2.2.
#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    jti: String,
    client_id: &'a str,
    scope: &'a str,
    auth_time: i64,
    /// The grant this token hangs from: revoking it makes the token inactive.
    gid: String,
}

/// Whether `asked` names a scope the grant does not have.
fn exceeds(grant: &Grant, asked: &str) -> bool {
    asked
        .split(' ')
        .filter(|s| !s.is_empty())
        .any(|s| !grant.has_scope(s))
}

/// The granted scopes that were asked for, in the grant's order.
fn narrowed(grant: &Grant, asked: &str) -> String {
    let asked: Vec<&str> = asked.split(' ').filter(|s| !s.is_empty()).collect();
    grant
        .scope
        .split(' ')
        .filter(|s| asked.contains(s))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Signs the tokens of `grant` (the refresh token, if any, is already stored); `scope` is
/// what this access token may do (the grant's, or less after a narrowing refresh).
#[allow(clippy::too_many_arguments)]
fn sign_tokens(
    state: &AppState,
    client: &Client,
    grant: &Grant,
    scope: &str,
    user: &User,
    nonce: Option<&str>,
    sid: Option<&str>,
    refresh_token: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let now = state.clock.now();
    let tokens = &state.config.tokens;
    let issuer = state.config.issuer.as_str();
    let access_token = state
        .keys
        .sign(
            tokens.access_token_alg,
            "at+jwt",
            &AccessTokenClaims {
                iss: issuer,
                sub: user.sub.as_str(),
                aud: &client.client_id,
                exp: (now + Duration::seconds(tokens.access_token_secs.into())).unix_timestamp(),
                iat: now.unix_timestamp(),
                jti: random_token(&mut rand::rng(), 16),
                client_id: &client.client_id,
                scope,
                auth_time: grant.auth_time.unix_timestamp(),
                gid: grant.id.to_string(),
            },
        )
        .map_err(OAuthError::server)?;
    let id_token = if scope.split(' ').any(|s| s == "openid") {
        // at_hash: left half of the SHA-256 of the access token (OIDC Core §3.1.3.6).
        let claims = IdTokenClaims {
            iss: issuer,
            sub: user.sub.as_str(),
            aud: &client.client_id,
            exp: (now + Duration::seconds(tokens.id_token_secs.into())).unix_timestamp(),
            iat: now.unix_timestamp(),
            auth_time: grant.auth_time.unix_timestamp(),
            nonce,
            amr: &grant.amr,
            acr: &grant.acr,
            at_hash: client.id_token_alg.token_hash(&access_token),
            sid,
        };
        Some(
            state
                .keys
                .sign(client.id_token_alg, "JWT", &claims)
                .map_err(OAuthError::server)?,
        )
    } else {
        None
    };
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: tokens.access_token_secs,
        scope: scope.to_owned(),
        id_token,
        refresh_token,
    })
}

/// An access token that passed every check.
pub struct LiveAccessToken {
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The grant and member, for tokens issued to a member (not client credentials).
    pub subject: Option<(Grant, User)>,
}

impl LiveAccessToken {
    pub fn client_id(&self) -> Option<&str> {
        self.claims.get("client_id").and_then(|v| v.as_str())
    }
}

/// Why [`check_access_token`] did not accept a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessTokenError {
    /// The token is not (or no longer) good; the text is for the bearer error.
    #[error("{0}")]
    Refused(&'static str),
    /// A store the decision needs is unavailable: the token is not known to be bad.
    #[error("the access token cannot be checked")]
    CannotCheck,
}

impl From<&'static str> for AccessTokenError {
    fn from(why: &'static str) -> Self {
        Self::Refused(why)
    }
}

/// Whether a token issued at `iat` (seconds) was issued to this registration of the
/// client, not to an earlier one removed since whose client_id was registered again:
/// removing a client ends what was issued to it, and a new registration under the same
/// id (someone else's app, perhaps) must not bring that back. Tokens carry whole seconds,
/// so one issued in the second of the registration counts as the new one's.
pub fn issued_to(client: &Client, iat: i64) -> bool {
    iat >= client.created_at.unix_timestamp()
}

/// Checks an access token: our signature, our issuer, `typ: at+jwt` (an ID token is not
/// an access token), not expired, not revoked, its client still registered (and
/// registered before the token was issued), and its grant and member still live.
pub async fn check_access_token(
    state: &AppState,
    token: &str,
) -> Result<LiveAccessToken, AccessTokenError> {
    let (claims, typ) = state
        .keys
        .verify(token)
        .map_err(|_| "the access token is invalid")?;
    if typ.as_deref() != Some("at+jwt") {
        return Err("not an access token".into());
    }
    if claims.get("iss").and_then(|v| v.as_str()) != Some(state.config.issuer.as_str()) {
        return Err("the access token is invalid".into());
    }
    let exp = claims
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .ok_or("the access token is invalid")?;
    if exp <= state.clock.now().unix_timestamp() {
        return Err("the access token expired".into());
    }
    let jti = claims
        .get("jti")
        .and_then(|v| v.as_str())
        .ok_or("the access token is invalid")?;
    if state
        .ephemeral
        .get(&revoked_jti_key(jti))
        .await
        .map_err(|_| AccessTokenError::CannotCheck)?
        .is_some()
    {
        return Err("the access token was revoked".into());
    }
    // Every path that takes an access token (userinfo, introspection, revocation, the
    // admin API) comes through here, so none can forget that a removed client's tokens
    // are dead. A member's grants go with their client, but a client_credentials token
    // hangs from nothing else.
    let client_id = claims
        .get("client_id")
        .and_then(|v| v.as_str())
        .ok_or("the access token is invalid")?;
    let iat = claims
        .get("iat")
        .and_then(serde_json::Value::as_i64)
        .ok_or("the access token is invalid")?;
    // From this replica's copy: a client removed through another replica or the CLI
    // stops counting here within `CLIENT_CACHE_TTL` (through this one, at once).
    let client = state
        .db
        .clients()
        .find_cached(client_id)
        .await
        .map_err(|_| AccessTokenError::CannotCheck)?;
    if !client.is_some_and(|c| issued_to(&c, iat)) {
        return Err("the access token was revoked".into());
    }
    let Some(gid) = claims.get("gid") else {
        return Ok(LiveAccessToken {
            claims,
            subject: None,
        });
    };
    let gid = gid
        .as_str()
        .and_then(|s| s.parse::<Uuid>().ok())
        .ok_or("the access token is invalid")?;
    let FullGrant { grant, user, .. } = grant_if_live(state, gid)
        .await
        .map_err(|_| AccessTokenError::CannotCheck)?
        .filter(|full| full.user.usable())
        .ok_or("the access token was revoked")?;
    if claims.get("sub").and_then(|v| v.as_str()) != Some(user.sub.as_str()) {
        return Err("the access token is invalid".into());
    }
    Ok(LiveAccessToken {
        claims,
        subject: Some((grant, user)),
    })
}

/// A revoked access token's `jti` is remembered until the token would have expired.
pub fn revoked_jti_key(jti: &str) -> String {
    format!("revoked_jti:{jti}")
}

/// Userinfo claims for an access token's scope (OIDC Core §5.4).
pub fn userinfo_claims(scope: &str, user: &User) -> serde_json::Value {
    let has = |s: &str| scope.split(' ').any(|x| x == s);
    let mut claims = json!({ "sub": user.sub.as_str() });
    if has("email") {
        claims["email"] = json!(user.email.display());
        claims["email_verified"] = json!(user.email_verified);
    }
    if has("profile") {
        if !user.display_name.is_empty() {
            claims["name"] = json!(user.display_name);
            claims["preferred_username"] = json!(user.display_name);
        }
        claims["locale"] = json!(user.locale);
        claims["updated_at"] = json!(user.updated_at.unix_timestamp());
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_url_decoded() {
        let header = STANDARD.encode("my%3Aclient:s3cr%3At%2B");
        assert_eq!(
            parse_basic(&header),
            Some(("my:client".to_owned(), "s3cr:t+".to_owned()))
        );
        assert_eq!(parse_basic("%%%"), None);
        assert_eq!(parse_basic(&STANDARD.encode("no-colon")), None);
    }
}
