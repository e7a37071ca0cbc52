//! The authorization endpoint (OIDC Core §3.1.2, RFC 6749 §4.1, RFC 7636, RFC 9207).
//!
//! An unknown client or an unregistered `redirect_uri` gets an error page, never a
//! redirect (that would make us an open redirector). Every later error goes back to the
//! client with `error`, `error_description`, `state` and `iss`. A request that needs a
//! sign-in is parked in the ephemeral store as a login transaction and resumed by
//! `/authorize/continue` once the member has signed in.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::Duration;
use url::Url;

use super::error::ErrorCode;
use super::params::{MAX_REQUEST_BYTES, ParamError, Params};
use super::paths;
use super::tokens::CodeRecord;
use crate::authn::session;
use crate::crypto::random_token;
use crate::domain::{ACR_TWO, AMR_PASSWORD, BrowserSession, Client, GrantType, User};
use crate::flow::{self, Binding, FlowError, Park};
use crate::state::AppState;
use crate::store::NewGrant;
use crate::web::client_ip::client_ip;
use crate::web::cookies::SESSION;
use crate::web::i18n::Msg;
use crate::web::pages::{RequestId, error_page, page_lang, unavailable_page};

/// Scopes this OP knows; others are ignored (RFC 6749 §3.3 lets the server narrow).
pub const SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// Authorization codes live 60 s (RFC 6749 §4.1.2 recommends at most 10 minutes).
pub const CODE_LIFETIME: Duration = Duration::seconds(60);
/// A validated authorization request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uri: String,
    /// Known scopes only, in a stable order.
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt_none: bool,
    pub prompt_login: bool,
    pub prompt_consent: bool,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    /// The `sub` of a valid `id_token_hint`: only this member may be signed in.
    pub hint_sub: Option<String>,
    /// `response_mode=form_post`: the answer is POSTed by an auto-submitting page.
    #[serde(default)]
    pub form_post: bool,
    /// The `acr_values` we know ("1", "2"), in the client's order of preference. They are
    /// voluntary (OIDC Core §3.1.2.1): a request asking for "2" steps a one-factor
    /// session up when the member has a second step, and otherwise proceeds and reports
    /// the `acr` achieved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acr_values: Vec<String>,
}

impl AuthRequest {
    /// Whether the client asked for two factors (`acr_values` holding "2").
    pub fn wants_two_factors(&self) -> bool {
        self.acr_values.iter().any(|v| v == crate::domain::ACR_TWO)
    }

    /// Whether the member must prove every factor again, even on a device remembered as
    /// skipping the second step: `prompt=login`, `max_age` or `acr_values=2`.
    pub fn asks_every_factor(&self) -> bool {
        self.prompt_login || self.max_age.is_some() || self.wants_two_factors()
    }
}

/// Why a request cannot proceed.
pub enum Rejection {
    /// Client or redirect URI not trusted: shown to the person, never redirected.
    Page(StatusCode, Msg),
    /// Sent back to the client's redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        code: ErrorCode,
        description: String,
        form_post: bool,
    },
    /// A store we need is down or full: 503 with `Retry-After`, never a 500.
    Unavailable(String),
    /// This address parks too many requests: 429 with `Retry-After`.
    TooMany {
        retry_after: i64,
    },
    Internal(String),
}

impl From<FlowError> for Rejection {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Expired => Self::Page(StatusCode::BAD_REQUEST, Msg::LoginExpired),
            FlowError::OtherBrowser => Self::Page(StatusCode::FORBIDDEN, Msg::OtherBrowser),
            FlowError::TooLarge => Self::Page(StatusCode::BAD_REQUEST, Msg::BadRequest),
            FlowError::TooMany { retry_after } => Self::TooMany { retry_after },
            FlowError::Store(e) => e.into(),
            FlowError::Encoding(e) => Self::Internal(e.to_string()),
        }
    }
}

impl From<crate::store::EphemeralError> for Rejection {
    fn from(e: crate::store::EphemeralError) -> Self {
        if e.is_transient() {
            Self::Unavailable(e.to_string())
        } else {
            Self::Internal(e.to_string())
        }
    }
}

impl Rejection {
    fn to_client(req: &AuthRequest, code: ErrorCode, description: impl Into<String>) -> Self {
        Self::Redirect {
            redirect_uri: req.redirect_uri.clone(),
            state: req.state.clone(),
            code,
            description: description.into(),
            form_post: req.form_post,
        }
    }

    pub fn respond(self, state: &AppState, headers: &HeaderMap, request_id: RequestId) -> Response {
        let lang = page_lang(None, None, headers);
        match self {
            Self::Page(status, msg) => error_page(status, lang, msg, None),
            Self::Redirect {
                redirect_uri,
                state: rp_state,
                code,
                description,
                form_post,
            } => {
                let mut params = vec![
                    ("error", code.as_str().to_owned()),
                    ("error_description", description),
                ];
                if let Some(s) = rp_state {
                    params.push(("state", s));
                }
                respond_to_client(state, &redirect_uri, params, form_post)
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error = %cause, "authorization request: store unavailable");
                unavailable_page(lang)
            }
            Self::TooMany { retry_after } => {
                let mut res = error_page(
                    StatusCode::TOO_MANY_REQUESTS,
                    lang,
                    Msg::TooManyRequests,
                    None,
                );
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
                res
            }
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "authorization request failed");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    lang,
                    Msg::ServerError,
                    request_id.0,
                )
            }
        }
    }
}

/// The answer to an authorization request, sent to the client's (registered) redirect
/// URI with our `iss` added (RFC 9207): a 303 with the parameters in the query, or with
/// `form_post` an auto-submitting page that POSTs them (OAuth 2.0 Form Post Response
/// Mode), so they never appear in a URL or a Referer.
pub fn respond_to_client(
    state: &AppState,
    redirect_uri: &str,
    mut params: Vec<(&str, String)>,
    form_post: bool,
) -> Response {
    params.push(("iss", state.config.issuer.as_str().to_owned()));
    if form_post {
        return super::form_post::page(redirect_uri, &params);
    }
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    url.query_pairs_mut().extend_pairs(params);
    see_other(url.as_str(), &[])
}

pub fn see_other(location: &str, set_cookies: &[String]) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_cookies(res, set_cookies)
}

/// `res` with `set_cookies` added.
pub fn with_cookies(mut res: Response, set_cookies: &[String]) -> Response {
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

/// Parses and checks an authorization request, in the order the spec requires: first
/// whether we may redirect at all, then everything else.
pub async fn validate(
    state: &AppState,
    encoded: &[u8],
) -> Result<(AuthRequest, Client), Rejection> {
    let (params, problem) = Params::parse_lenient(encoded);
    let get = |k: &str| params.get(k).map(str::to_owned);
    // A request we could not read whole (too large, too many parameters), or whose
    // client_id or redirect_uri is unusable, cannot be answered by redirect.
    let about_target = problem.as_ref().is_some_and(|p| {
        matches!(p, ParamError::TooLarge | ParamError::TooMany)
            || matches!(p.name(), Some("client_id" | "redirect_uri"))
    });
    if about_target {
        return Err(Rejection::Page(StatusCode::BAD_REQUEST, Msg::BadRequest));
    }

    let client_id =
        get("client_id").ok_or(Rejection::Page(StatusCode::BAD_REQUEST, Msg::UnknownClient))?;
    let client = state
        .db
        .clients()
        .find(&client_id)
        .await
        .map_err(|e| Rejection::Internal(e.to_string()))?
        .ok_or(Rejection::Page(StatusCode::BAD_REQUEST, Msg::UnknownClient))?;
    // Exact string match (RFC 9700 §2.1): no prefix, no normalisation, no extra query.
    let redirect_uri = get("redirect_uri")
        .filter(|u| client.redirect_uri(u).is_some())
        .ok_or(Rejection::Page(
            StatusCode::BAD_REQUEST,
            Msg::BadRedirectUri,
        ))?;

    let mut req = AuthRequest {
        client_id,
        client_name: client.name.clone(),
        redirect_uri,
        scopes: Vec::new(),
        state: params.raw("state").map(str::to_owned),
        nonce: get("nonce"),
        code_challenge: get("code_challenge"),
        acr_values: Vec::new(),
        prompt_none: false,
        prompt_login: false,
        prompt_consent: false,
        max_age: None,
        login_hint: get("login_hint"),
        ui_locales: get("ui_locales"),
        hint_sub: None,
        form_post: false,
    };
    // The response mode decides how every later error travels, so it comes first.
    match get("response_mode").as_deref() {
        None | Some("query") => {}
        Some("form_post") => req.form_post = true,
        Some(_) => {
            return Err(Rejection::to_client(
                &req,
                ErrorCode::InvalidRequest,
                "response_mode must be query or form_post",
            ));
        }
    }
    let reject = |req: &AuthRequest, code, msg: &str| Err(Rejection::to_client(req, code, msg));

    if let Some(problem) = problem {
        return reject(&req, ErrorCode::InvalidRequest, &problem.to_string());
    }
    if params.contains("request") {
        return reject(
            &req,
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        );
    }
    if params.contains("request_uri") {
        return reject(
            &req,
            ErrorCode::RequestUriNotSupported,
            "request_uri is not supported",
        );
    }
    match get("response_type").as_deref() {
        None => return reject(&req, ErrorCode::InvalidRequest, "response_type is required"),
        Some("code") => {}
        Some(_) => {
            return reject(
                &req,
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            );
        }
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return reject(
            &req,
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization code flow",
        );
    }
    let requested: Vec<String> = get("scope")
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if !requested.iter().any(|s| s == "openid") {
        return reject(
            &req,
            ErrorCode::InvalidScope,
            "the openid scope is required",
        );
    }
    req.scopes = SCOPES
        .iter()
        .filter(|s| requested.iter().any(|r| r == *s))
        .map(|s| (*s).to_owned())
        .collect();

    // PKCE (RFC 7636). A challenge without a method means `plain` (§4.3), which lets
    // anyone who sees the request redeem the code: refused.
    match (&req.code_challenge, get("code_challenge_method").as_deref()) {
        (None, Some(_)) => {
            return reject(
                &req,
                ErrorCode::InvalidRequest,
                "code_challenge_method without code_challenge",
            );
        }
        (None, None) if client.public => {
            return reject(
                &req,
                ErrorCode::InvalidRequest,
                "public clients must use PKCE (code_challenge with S256)",
            );
        }
        (None, None) => {}
        (Some(_), Some("S256")) => {}
        (Some(_), Some("plain") | None) => {
            return reject(
                &req,
                ErrorCode::InvalidRequest,
                "code_challenge_method must be S256; plain is not allowed",
            );
        }
        (Some(_), Some(_)) => {
            return reject(
                &req,
                ErrorCode::InvalidRequest,
                "unsupported code_challenge_method",
            );
        }
    }
    if let Some(c) = &req.code_challenge
        && !is_pkce_value(c)
    {
        return reject(
            &req,
            ErrorCode::InvalidRequest,
            "code_challenge is malformed",
        );
    }

    for value in get("prompt")
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        match value {
            "none" => req.prompt_none = true,
            "login" => req.prompt_login = true,
            "consent" => req.prompt_consent = true,
            // We hold one account per browser: choosing one is signing in again.
            "select_account" => req.prompt_login = true,
            _ => {}
        }
    }
    if req.prompt_none && (req.prompt_login || req.prompt_consent) {
        return reject(
            &req,
            ErrorCode::InvalidRequest,
            "prompt=none cannot be combined with other values",
        );
    }
    // Unknown values are ignored (they are voluntary); the known ones are few, so the
    // park stays small whatever a client sends.
    for value in get("acr_values")
        .unwrap_or_default()
        .split(' ')
        .filter(|v| [crate::domain::ACR_ONE, crate::domain::ACR_TWO].contains(v))
    {
        if !req.acr_values.iter().any(|v| v == value) {
            req.acr_values.push(value.to_owned());
        }
    }
    if let Some(raw) = get("max_age") {
        match raw.parse::<i64>() {
            Ok(n) if n >= 0 => req.max_age = Some(n),
            _ => {
                return reject(
                    &req,
                    ErrorCode::InvalidRequest,
                    "max_age must be a non-negative integer",
                );
            }
        }
    }
    if let Some(hint) = get("id_token_hint") {
        match id_token_hint(state, &hint).and_then(|c| c.get("sub")?.as_str().map(str::to_owned)) {
            Some(sub) => req.hint_sub = Some(sub),
            None => {
                return reject(
                    &req,
                    ErrorCode::InvalidRequest,
                    "id_token_hint is not a valid ID token from this issuer",
                );
            }
        }
    }
    Ok((req, client))
}

/// The claims of an `id_token_hint` (at `/authorize` and `/end-session`): an ID token we
/// issued, with our signature (no `alg: none`, no foreign key) and our issuer. An expired
/// one is still a fine hint (OIDC Core §3.1.2.1); an access or logout token is not an ID
/// token (explicit typing, RFC 8725 §3.11: ours are `JWT`). A key retired since still
/// checks it (the hint may be as old as the session); a revoked one does not.
pub fn id_token_hint(
    state: &AppState,
    token: &str,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let (claims, typ) = state.keys.verify_hint(token).ok()?;
    if !matches!(typ.as_deref(), None | Some("JWT")) {
        return None;
    }
    (claims.get("iss")?.as_str()? == state.config.issuer.as_str()).then_some(claims)
}

/// RFC 7636 §4.2: 43–128 characters of [A-Za-z0-9-._~].
fn is_pkce_value(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

pub async fn get_authorize(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request_id: RequestId,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let (req, client) = match validate(&state, query.as_bytes()).await {
        Ok(ok) => ok,
        Err(r) => return r.respond(&state, &headers, request_id),
    };
    let ip = client_ip(peer, &headers, &state.config.server.trusted_proxies);
    match proceed(&state, &headers, ip, req, &client, None).await {
        Ok(res) => res,
        Err(r) => r.respond(&state, &headers, request_id),
    }
}

/// A POSTed request is sent back as a GET (303) to `path`, so that the SameSite=Lax
/// session cookie travels with it (it is not sent on cross-site POSTs). The body is
/// passed on as it came (the GET reports what is wrong with it), if it is a form of a
/// size the GET would read at all.
pub fn repost_as_get(path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let lang = page_lang(None, None, headers);
    if !is_form || body.len() > MAX_REQUEST_BYTES {
        return error_page(StatusCode::BAD_REQUEST, lang, Msg::BadRequest, None);
    }
    // Re-encoded, so that only form-urlencoded bytes reach the Location header.
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(url::form_urlencoded::parse(body))
        .finish();
    see_other(&format!("{path}?{query}"), &[])
}

pub async fn post_authorize(headers: HeaderMap, body: Bytes) -> Response {
    repost_as_get(paths::AUTHORIZE, &headers, &body)
}

#[derive(Deserialize)]
pub struct ContinueParams {
    tx: String,
}

/// After sign-in or consent: the parked request goes on, in the browser that parked it.
pub async fn get_continue(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request_id: RequestId,
    Query(p): Query<ContinueParams>,
) -> Response {
    let park = match flow::resume(&state, &headers, &p.tx).await {
        Ok(park) => park,
        Err(e) => return Rejection::from(e).respond(&state, &headers, request_id),
    };
    let client = match state.db.clients().find(&park.request.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Rejection::Page(StatusCode::BAD_REQUEST, Msg::UnknownClient)
                .respond(&state, &headers, request_id);
        }
        Err(e) => return Rejection::Internal(e.to_string()).respond(&state, &headers, request_id),
    };
    let request = park.request.clone();
    let resumed = Resumed { id: &p.tx, park };
    let ip = client_ip(peer, &headers, &state.config.server.trusted_proxies);
    match proceed(&state, &headers, ip, request, &client, Some(resumed)).await {
        Ok(res) => res,
        Err(r) => r.respond(&state, &headers, request_id),
    }
}

/// The parked request a browser comes back with from the sign-in or consent page.
struct Resumed<'a> {
    id: &'a str,
    park: Park,
}

/// What the member must do next, if anything.
enum Next<'a> {
    SignIn,
    Consent,
    Code {
        session: &'a BrowserSession,
        user: Box<User>,
        consented: bool,
    },
}

/// Decides between "issue a code now", "sign in first" and "ask for consent first". A
/// final answer to the client (a code or an error redirect) first takes the park, so a
/// parked request is answered once however many tabs continue it.
async fn proceed(
    state: &AppState,
    headers: &HeaderMap,
    ip: IpAddr,
    req: AuthRequest,
    client: &Client,
    resumed: Option<Resumed<'_>>,
) -> Result<Response, Rejection> {
    let internal = |e: &dyn std::fmt::Display| Rejection::Internal(e.to_string());
    let secret = state.cookies.get(headers, SESSION);
    let session = session::current(&state.db, &state.clock, &state.sessions, secret.as_deref())
        .await
        .map_err(|e| internal(&e))?;
    let user = match &session {
        Some(s) => state
            .db
            .users()
            .find_by_id(s.user_id)
            .await
            .map_err(|e| internal(&e))?,
        None => None,
    }
    .filter(User::usable);
    let park = resumed.as_ref().map(|r| &r.park);
    let next = decide(state, &req, client, session.as_ref(), user, park).await;
    let next = match next {
        Ok(next) => next,
        Err(refusal) => {
            if let Some(r) = &resumed {
                flow::finish(state, headers, r.id).await?;
            }
            return Err(refusal);
        }
    };
    let page = match next {
        Next::SignIn => paths::LOGIN,
        Next::Consent => paths::CONSENT,
        Next::Code {
            session,
            user,
            consented,
        } => {
            if let Some(r) = &resumed {
                flow::finish(state, headers, r.id).await?;
            }
            return issue_code(state, &req, client, session, &user, consented).await;
        }
    };
    let binding = Binding::of(state.cookies, headers);
    let id = match &resumed {
        Some(r) => r.id.to_owned(),
        None => {
            flow::check_park_rate(state, ip).await?;
            flow::park(state, &binding, req).await?
        }
    };
    let cookies: Vec<String> = binding.set_cookie.into_iter().collect();
    Ok(see_other(&format!("{page}?tx={id}"), &cookies))
}

async fn decide<'s>(
    state: &AppState,
    req: &AuthRequest,
    client: &Client,
    session: Option<&'s BrowserSession>,
    user: Option<User>,
    park: Option<&Park>,
) -> Result<Next<'s>, Rejection> {
    let now = state.clock.now();
    let signed_in = match (session, user) {
        (Some(s), Some(u)) => Some((s, u)),
        _ => None,
    };
    // Signed in for this very request (by this session): satisfies prompt=login/max_age.
    let fresh = match (park, &signed_in) {
        (Some(p), Some((s, _))) => p.signed_in_by(s.id),
        _ => false,
    };
    let needs_login = match &signed_in {
        None => true,
        // Whatever the sign-in just achieved is what the client is told: an email code
        // leaves `acr` 1, and asking again would loop.
        Some(_) if fresh => false,
        Some((s, u)) => {
            req.prompt_login
                || req
                    .max_age
                    .is_some_and(|max| now - s.auth_time > Duration::seconds(max))
                || steps_up(state, req, s, u).await?
        }
    };
    let wrong_member = match (&req.hint_sub, &signed_in) {
        (Some(hint), Some((_, u))) => hint != u.sub.as_str(),
        _ => false,
    };
    if needs_login || (wrong_member && !fresh) {
        if req.prompt_none {
            return Err(Rejection::to_client(
                req,
                ErrorCode::LoginRequired,
                "the member must sign in",
            ));
        }
        return Ok(Next::SignIn);
    }
    if wrong_member {
        // Signed in just now, but not as the member the client asked for.
        return Err(Rejection::to_client(
            req,
            ErrorCode::LoginRequired,
            "a different member is signed in",
        ));
    }
    let Some((session, user)) = signed_in else {
        return Err(Rejection::Internal("session without member".to_owned()));
    };
    // Consent counts only for the session (and account) that gave it.
    let consented = park.is_some_and(|p| p.consented_by(session.id, user.id.0));
    if needs_consent(state, req, client, &user, consented).await? {
        if req.prompt_none {
            return Err(Rejection::to_client(
                req,
                ErrorCode::ConsentRequired,
                "the member must allow this client",
            ));
        }
        return Ok(Next::Consent);
    }
    Ok(Next::Code {
        session,
        user: Box::new(user),
        consented,
    })
}

/// Whether a one-factor session must sign in again because the client asked for two
/// factors (`acr_values=2`) and the member has a second factor to give: an authenticator
/// app (an email code never makes `acr` 2, so signing in again would only cost the member
/// a mail). `acr_values` is voluntary (OIDC Core §3.1.2.1): a member without one
/// proceeds, and the ID token says `acr` 1.
async fn steps_up(
    state: &AppState,
    req: &AuthRequest,
    session: &BrowserSession,
    user: &User,
) -> Result<bool, Rejection> {
    if !req.wants_two_factors() || session.acr == ACR_TWO {
        return Ok(false);
    }
    let factors = state
        .db
        .two_step()
        .factors(user.id)
        .await
        .map_err(|e| Rejection::Internal(e.to_string()))?;
    Ok(factors.totp)
}

/// Whether the member must be asked (OIDC Core §3.1.2.4). Never for our own apps;
/// always for `prompt=consent` and for `offline_access` (which is never remembered,
/// §11); otherwise when the remembered consent does not cover every scope.
async fn needs_consent(
    state: &AppState,
    req: &AuthRequest,
    client: &Client,
    user: &User,
    consented_now: bool,
) -> Result<bool, Rejection> {
    if client.first_party || consented_now {
        return Ok(false);
    }
    if req.prompt_consent || req.scopes.iter().any(|s| s == "offline_access") {
        return Ok(true);
    }
    let remembered = state
        .db
        .consents()
        .find(user.id, &client.client_id)
        .await
        .map_err(|e| Rejection::Internal(e.to_string()))?
        .unwrap_or_default();
    Ok(!req.scopes.iter().all(|s| remembered.contains(s)))
}

/// Creates the grant and a single-use code bound to everything the token endpoint must
/// check, and sends the browser back to the client.
async fn issue_code(
    state: &AppState,
    req: &AuthRequest,
    client: &Client,
    session: &BrowserSession,
    user: &User,
    consented: bool,
) -> Result<Response, Rejection> {
    let internal = |e: &dyn std::fmt::Display| Rejection::Internal(e.to_string());
    // offline_access needs consent (OIDC Core §11): given on the consent page for this
    // very request, or implied for our own (first-party) apps.
    let offline =
        (client.first_party || consented) && req.scopes.iter().any(|s| s == "offline_access");
    let scope: Vec<&str> = req
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|s| *s != "offline_access" || offline)
        .collect();
    let grant = state
        .db
        .grants()
        .create(
            &state.clock,
            NewGrant {
                user_id: user.id,
                client_id: client.client_id.clone(),
                session_id: Some(session.id),
                scope: scope.join(" "),
                offline,
                auth_time: session.auth_time,
                amr: if session.amr.is_empty() {
                    vec![AMR_PASSWORD.to_owned()]
                } else {
                    session.amr.clone()
                },
                acr: session.acr.clone(),
            },
        )
        .await
        .map_err(|e| internal(&e))?;
    let code = random_token(&mut rand::rng(), 32);
    let record = CodeRecord {
        client_id: client.client_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        code_challenge: req.code_challenge.clone(),
        nonce: req.nonce.clone(),
        grant_id: grant.id,
        sid: session.sid.clone(),
    };
    let bytes = serde_json::to_vec(&record).map_err(|e| internal(&e))?;
    if let Err(e) = state
        .ephemeral
        .put(
            &CodeRecord::key(&code),
            &bytes,
            state.clock.now() + CODE_LIFETIME,
        )
        .await
    {
        // No code will ever name this grant: take it back rather than leave an app
        // "connected" that never got a token. The store being down is a 503.
        if let Err(revoke) = state.db.grants().revoke(grant.id, state.clock.now()).await {
            tracing::warn!(error = %revoke, grant = %grant.id, "cannot revoke a grant without its code");
        }
        return Err(e.into());
    }
    let mut params = vec![("code", code)];
    if let Some(s) = &req.state {
        params.push(("state", s.clone()));
    }
    Ok(respond_to_client(
        state,
        &req.redirect_uri,
        params,
        req.form_post,
    ))
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, StatusCode, header};

    use super::{MAX_REQUEST_BYTES, is_pkce_value, repost_as_get};

    #[test]
    fn a_posted_authorization_request_is_read_up_to_the_parsers_cap() {
        let mut form = HeaderMap::new();
        form.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let at_cap = format!("a={}", "x".repeat(MAX_REQUEST_BYTES - 2));
        let res = repost_as_get("/authorize", &form, at_cap.as_bytes());
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        let location = res.headers()[header::LOCATION].to_str().unwrap();
        assert_eq!(location, format!("/authorize?{at_cap}"));
        let over = format!("{at_cap}x");
        let res = repost_as_get("/authorize", &form, over.as_bytes());
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        // Only a form is reposted.
        let res = repost_as_get("/authorize", &HeaderMap::new(), b"a=b");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_code_challenge_is_43_to_128_unreserved_characters() {
        for ok in ["a".repeat(43), "-._~".repeat(32), "Z9".repeat(20) + "abc"] {
            assert!(is_pkce_value(&ok), "{ok}");
        }
        for bad in [
            "a".repeat(42),
            "a".repeat(129),
            format!("{}+", "a".repeat(42)),
            format!("{}=", "a".repeat(43)),
            String::new(),
        ] {
            assert!(!is_pkce_value(&bad), "{bad}");
        }
    }
}
