//! An OpenID provider stand-in, in three flavours that reproduce what the real providers
//! do on the wire: a generic provider with discovery (also Google's shape), Yahoo!
//! JAPAN's YConnect v2 (userinfo on another host, `bail=1`, `aud` as an array) and Sign in
//! with Apple (form_post, the `user` field on the first authorization only, the ES256
//! client-secret JWT, string booleans, refresh tokens and their revocation). Each has
//! knobs to misbehave the ways a provider can.
//!
//! The stand-in checks what a real provider checks (client authentication, redirect URI,
//! single-use codes, PKCE) and records every request, so that a test can assert what the
//! downstream sent as well as what it made of the answers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use josekit::jwk::Jwk;
use josekit::jwk::KeyPair;
use josekit::jws::{JwsHeader, JwsSigner};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use tobira_auth::clock::Clock;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Sign in with Apple's fixed audience for client secrets.
pub const APPLE_AUDIENCE: &str = "https://appleid.apple.com";

/// A small server on 127.0.0.1 with a port chosen by the OS; stops when dropped.
pub struct Served {
    /// `http://{host}:{port}` (the host as the downstream is told to reach it).
    pub url: String,
    task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` on 127.0.0.1; `host` is the name in its URL (`127.0.0.1` or
/// `localhost`, so that two stand-ins are two hosts as the downstream sees them).
pub async fn serve(router: Router, host: &str) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let port = listener.local_addr().expect("bound").port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Served {
        url: format!("http://{host}:{port}"),
        task,
    }
}

/// A random token (codes, access and refresh tokens).
pub fn random() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A signing key the test makes, with its public JWK.
pub struct SigningKey {
    pub kid: String,
    signer: Box<dyn JwsSigner>,
    pub public: Jwk,
    /// PKCS#8 PEM of the private key (what Apple hands out as a `.p8` file).
    pub private_pem: Vec<u8>,
}

impl SigningKey {
    pub fn rs256(kid: &str) -> Self {
        let pair = josekit::jws::RS256
            .generate_key_pair(2048)
            .expect("an RSA key");
        let signer = josekit::jws::RS256
            .signer_from_jwk(&pair.to_jwk_private_key())
            .expect("an RS256 signer");
        Self::made(
            kid,
            Box::new(signer),
            pair.to_jwk_public_key(),
            "RS256",
            pair.to_pem_private_key(),
        )
    }

    pub fn es256(kid: &str) -> Self {
        let pair = josekit::jws::ES256.generate_key_pair().expect("an EC key");
        let signer = josekit::jws::ES256
            .signer_from_jwk(&pair.to_jwk_private_key())
            .expect("an ES256 signer");
        Self::made(
            kid,
            Box::new(signer),
            pair.to_jwk_public_key(),
            "ES256",
            pair.to_pem_private_key(),
        )
    }

    fn made(
        kid: &str,
        signer: Box<dyn JwsSigner>,
        mut public: Jwk,
        alg: &str,
        pem: Vec<u8>,
    ) -> Self {
        public.set_key_id(kid);
        public.set_algorithm(alg);
        public.set_key_use("sig");
        Self {
            kid: kid.to_owned(),
            signer,
            public,
            private_pem: pem,
        }
    }

    /// A compact JWS of `claims` exactly as given (string booleans stay strings).
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(claims, &self.kid)
    }

    /// Like `sign`, naming another key id in the header.
    pub fn sign_as(&self, claims: &Value, kid: &str) -> String {
        let mut header = JwsHeader::new();
        header.set_token_type("JWT");
        header.set_key_id(kid);
        let payload = serde_json::to_vec(claims).expect("claims serialise");
        josekit::jws::serialize_compact(&payload, &header, &*self.signer).expect("signed")
    }
}

/// `at_hash`: the left half of SHA-256 of the access token (RS256 and ES256 alike).
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// Which provider an [`Op`] stands in for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// A provider with discovery (any OpenID provider, and Google's shape).
    Generic,
    /// Yahoo! JAPAN ID連携 v2: endpoints under `/yconnect/v2`, userinfo on another host.
    Yahoo,
    /// Sign in with Apple: `/auth/authorize`, `/auth/token`, `/auth/keys`, `/auth/revoke`.
    Apple,
}

/// How the ID token goes wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdTokenFault {
    #[default]
    None,
    /// Signed by a key that is not in the JWKS, under the published key's `kid`.
    ForeignKey,
    /// Signed by a key that is not in the JWKS, under a `kid` the JWKS does not have.
    UnknownKid,
    WrongAudience,
    WrongNonce,
    Expired,
    WrongIssuer,
}

/// How the token endpoint goes wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenFault {
    #[default]
    None,
    /// `500` with an HTML body, as a load balancer in trouble answers.
    ServerError,
    /// Never answers (until the test ends).
    Hang,
    /// Refuses the code: `invalid_grant`.
    InvalidGrant,
    /// Refuses the client: `invalid_client`.
    InvalidClient,
}

/// The knobs a test turns before the downstream talks to the stand-in.
#[derive(Clone, Debug, Default)]
pub struct Knobs {
    pub id_token: IdTokenFault,
    pub token: TokenFault,
    /// The member declines consent (「同意しない」, Cancel).
    pub cancel: bool,
    /// Discovery answers 500.
    pub discovery_down: bool,
    /// Yahoo: userinfo answers for another `sub` than the ID token's.
    pub userinfo_other_sub: bool,
    /// Yahoo: the ID token's `iss` carries a trailing slash (the spelling Yahoo moved to).
    pub iss_trailing_slash: bool,
    /// Apple: the `user` field the browser posts on the first authorization, instead of
    /// the real one (it passes through the browser unsigned: anyone can write it).
    pub apple_user: Option<String>,
}

/// The member signed in at the provider.
#[derive(Clone, Debug)]
pub struct Member {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub given_name: String,
    pub family_name: String,
}

impl Member {
    pub fn name(&self) -> String {
        format!("{} {}", self.family_name, self.given_name)
    }
}

/// A token request as it arrived.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub form: HashMap<String, String>,
    /// `client_secret_basic`'s (id, secret), URL-decoded.
    pub basic: Option<(String, String)>,
}

/// What the stand-in saw.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub authorize: Vec<HashMap<String, String>>,
    pub token: Vec<TokenRequest>,
    /// Userinfo requests: the `Host` header each arrived with.
    pub userinfo_hosts: Vec<String>,
    /// Apple: the claims of every client secret that passed the check.
    pub client_secrets: Vec<Value>,
    /// Apple: revocation requests that passed the client check.
    pub revoked: Vec<HashMap<String, String>>,
    /// Apple: the refresh tokens issued.
    pub refresh_tokens: Vec<String>,
}

/// How the client authenticates at the token endpoint.
pub enum ClientAuth {
    /// A shared secret, by `client_secret_basic` or `client_secret_post`.
    Secret(String),
    /// Apple: an ES256 JWT signed with the team's key.
    AppleKey {
        team_id: String,
        key_id: String,
        /// The team key's public half as a JWK.
        public: Jwk,
    },
}

/// An authorization code issued and not yet redeemed.
struct Grant {
    redirect_uri: String,
    nonce: Option<String>,
    challenge: Option<String>,
}

pub struct OpState {
    flavor: Flavor,
    /// The base URL the downstream reaches it at.
    base: String,
    /// The issuer as the stand-in states it in discovery and ID tokens.
    issuer: String,
    userinfo_url: Mutex<String>,
    client_id: String,
    auth: ClientAuth,
    /// The published key (in the JWKS) and the key nobody published.
    key: SigningKey,
    foreign: SigningKey,
    clock: Mutex<Clock>,
    /// How far the stand-in's clock runs ahead of the shared one.
    ahead: Mutex<Duration>,
    expected_redirect: Mutex<Option<String>>,
    pub member: Mutex<Member>,
    pub knobs: Mutex<Knobs>,
    pub seen: Mutex<Seen>,
    codes: Mutex<HashMap<String, Grant>>,
    access_tokens: Mutex<HashMap<String, String>>,
    /// Apple: the members who authorized this client before (no `user` field again).
    authorized: Mutex<HashSet<String>>,
}

/// A running stand-in.
pub struct Op {
    pub state: Arc<OpState>,
    _server: Served,
    _userinfo: Option<Served>,
}

impl Op {
    /// Starts a stand-in of `flavor` for the client `client_id`.
    pub async fn start(flavor: Flavor, client_id: &str, auth: ClientAuth, member: Member) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let port = listener.local_addr().expect("bound").port();
        let base = format!("http://127.0.0.1:{port}");
        let issuer = match flavor {
            Flavor::Yahoo => format!("{base}/yconnect/v2"),
            Flavor::Generic | Flavor::Apple => base.clone(),
        };
        let key = match flavor {
            // Apple and Yahoo sign ID tokens with RS256; the generic one too, as Tobira
            // does by default.
            Flavor::Generic | Flavor::Yahoo | Flavor::Apple => SigningKey::rs256("key-1"),
        };
        let state = Arc::new(OpState {
            flavor,
            base: base.clone(),
            issuer,
            userinfo_url: Mutex::new(format!("{base}/userinfo")),
            client_id: client_id.to_owned(),
            auth,
            key,
            foreign: SigningKey::rs256("key-1"),
            clock: Mutex::new(Clock::system()),
            ahead: Mutex::new(Duration::ZERO),
            expected_redirect: Mutex::new(None),
            member: Mutex::new(member),
            knobs: Mutex::new(Knobs::default()),
            seen: Mutex::new(Seen::default()),
            codes: Mutex::new(HashMap::new()),
            access_tokens: Mutex::new(HashMap::new()),
            authorized: Mutex::new(HashSet::new()),
        });
        let router = match flavor {
            Flavor::Generic => Router::new()
                .route("/.well-known/openid-configuration", get(discovery))
                .route("/authorize", get(authorize))
                .route("/token", post(token))
                .route("/jwks", get(jwks))
                .route("/userinfo", get(userinfo)),
            Flavor::Yahoo => Router::new()
                .route("/yconnect/v2/authorization", get(authorize))
                .route("/yconnect/v2/token", post(token))
                .route("/yconnect/v2/jwks", get(jwks)),
            Flavor::Apple => Router::new()
                .route("/auth/authorize", get(authorize))
                .route("/auth/token", post(token))
                .route("/auth/keys", get(jwks))
                .route("/auth/revoke", post(revoke)),
        }
        .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let server = Served { url: base, task };
        // Yahoo's 属性取得API lives on another host (userinfo.yahooapis.jp): here another
        // port, named `localhost` where the rest is `127.0.0.1`.
        let userinfo = if flavor == Flavor::Yahoo {
            let router = Router::new()
                .route("/yconnect/v2/attribute", get(userinfo))
                .with_state(state.clone());
            let served = serve(router, "localhost").await;
            *state.userinfo_url.lock().unwrap() = format!("{}/yconnect/v2/attribute", served.url);
            Some(served)
        } else {
            None
        };
        Self {
            state,
            _server: server,
            _userinfo: userinfo,
        }
    }

    pub fn base(&self) -> &str {
        &self.state.base
    }

    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    pub fn userinfo_url(&self) -> String {
        self.state.userinfo_url.lock().unwrap().clone()
    }

    /// Reads time from `clock` (the downstream's), so both sides agree on "now".
    pub fn use_clock(&self, clock: &Clock) {
        *self.state.clock.lock().unwrap() = clock.clone();
    }

    /// Runs the stand-in's clock `by` ahead of the shared one.
    pub fn run_ahead(&self, by: Duration) {
        *self.state.ahead.lock().unwrap() = by;
    }

    /// The only redirect URI registered for the client.
    pub fn register_redirect(&self, uri: &str) {
        *self.state.expected_redirect.lock().unwrap() = Some(uri.to_owned());
    }

    pub fn knobs(&self, change: impl FnOnce(&mut Knobs)) {
        change(&mut self.state.knobs.lock().unwrap());
    }

    pub fn seen(&self) -> Seen {
        self.state.seen.lock().unwrap().clone()
    }
}

impl OpState {
    fn now(&self) -> OffsetDateTime {
        self.clock.lock().unwrap().now() + *self.ahead.lock().unwrap()
    }

    fn knobs(&self) -> Knobs {
        self.knobs.lock().unwrap().clone()
    }

    fn path(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.base)
    }
}

/// An OAuth error answer (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// A page at the provider: what a browser sees when the request cannot go back to the
/// client (an unknown client or an unregistered redirect URI is never redirected to).
fn provider_page(text: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(format!("<p id=\"provider-error\">{text}</p>")),
    )
        .into_response()
}

async fn discovery(State(op): State<Arc<OpState>>) -> Response {
    if op.knobs().discovery_down {
        return (StatusCode::INTERNAL_SERVER_ERROR, "discovery is down").into_response();
    }
    Json(json!({
        "issuer": op.issuer,
        "authorization_endpoint": op.path("/authorize"),
        "token_endpoint": op.path("/token"),
        "userinfo_endpoint": op.path("/userinfo"),
        "jwks_uri": op.path("/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email", "email_verified", "name"],
    }))
    .into_response()
}

async fn jwks(State(op): State<Arc<OpState>>) -> Response {
    let key: &serde_json::Map<String, Value> = op.key.public.as_ref();
    Json(json!({ "keys": [key] })).into_response()
}

/// The scopes of a request (space separated; Facebook also takes commas).
fn scopes(q: &HashMap<String, String>) -> HashSet<String> {
    q.get("scope")
        .map(|s| {
            s.split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Appends query parameters to a redirect URI.
fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(uri).expect("an absolute redirect URI");
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

/// The page Apple answers with for `response_mode=form_post`: a form the browser posts
/// to the client's redirect URI at once.
pub fn form_post_page(action: &str, fields: &[(&str, &str)]) -> Response {
    let inputs: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html><body onload=\"document.forms[0].submit()\">\
         <form method=\"post\" action=\"{}\">{inputs}</form></body></html>",
        escape(action)
    ))
    .into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&#39;")
}

async fn authorize(
    State(op): State<Arc<OpState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    op.seen.lock().unwrap().authorize.push(q.clone());
    if q.get("client_id") != Some(&op.client_id) {
        return provider_page("invalid_client: unknown client_id");
    }
    let Some(redirect_uri) = q.get("redirect_uri").cloned() else {
        return provider_page("invalid_request: redirect_uri missing");
    };
    if let Some(expected) = op.expected_redirect.lock().unwrap().as_ref()
        && *expected != redirect_uri
    {
        return provider_page("invalid_request: redirect_uri is not registered");
    }
    let state = q.get("state").cloned().unwrap_or_default();
    let scopes = scopes(&q);
    if q.get("response_type").map(String::as_str) != Some("code") {
        return Redirect::to(&with_query(
            &redirect_uri,
            &[("error", "unsupported_response_type"), ("state", &state)],
        ))
        .into_response();
    }
    if op.flavor == Flavor::Apple
        && (scopes.contains("name") || scopes.contains("email"))
        && q.get("response_mode").map(String::as_str) != Some("form_post")
    {
        // Apple: "response_mode must be form_post when name or email scope is requested".
        return provider_page("invalid_request: response_mode must be form_post");
    }
    if op.flavor != Flavor::Apple && !scopes.contains("openid") {
        return Redirect::to(&with_query(
            &redirect_uri,
            &[("error", "invalid_scope"), ("state", &state)],
        ))
        .into_response();
    }
    if op.knobs().cancel {
        return match op.flavor {
            // 「同意しない」 with `bail=1` comes back with the state and nothing else;
            // without it Yahoo! sends the member to its top page and the flow is lost.
            Flavor::Yahoo if q.get("bail").map(String::as_str) == Some("1") => {
                Redirect::to(&with_query(&redirect_uri, &[("state", &state)])).into_response()
            }
            Flavor::Yahoo => Redirect::to("https://www.yahoo.co.jp/").into_response(),
            Flavor::Apple => form_post_page(
                &redirect_uri,
                &[("error", "user_cancelled_authorize"), ("state", &state)],
            ),
            Flavor::Generic => Redirect::to(&with_query(
                &redirect_uri,
                &[
                    ("error", "access_denied"),
                    ("error_description", "The member declined."),
                    ("state", &state),
                ],
            ))
            .into_response(),
        };
    }
    let challenge = match (q.get("code_challenge"), q.get("code_challenge_method")) {
        (Some(c), Some(m)) if m == "S256" => Some(c.clone()),
        (Some(_), _) => {
            return Redirect::to(&with_query(
                &redirect_uri,
                &[
                    ("error", "invalid_request"),
                    ("error_description", "only S256"),
                    ("state", &state),
                ],
            ))
            .into_response();
        }
        _ => None,
    };
    let code = random();
    op.codes.lock().unwrap().insert(
        code.clone(),
        Grant {
            redirect_uri: redirect_uri.clone(),
            nonce: q.get("nonce").cloned(),
            challenge,
        },
    );
    match op.flavor {
        Flavor::Apple => {
            let member = op.member.lock().unwrap().clone();
            let first = op.authorized.lock().unwrap().insert(member.sub.clone());
            let user = op.knobs().apple_user.unwrap_or_else(|| {
                json!({
                    "name": { "firstName": member.given_name, "lastName": member.family_name },
                    "email": member.email,
                })
                .to_string()
            });
            let mut fields = vec![("code", code.as_str()), ("state", state.as_str())];
            // The name comes once: on the first authorization of this Apple ID for the
            // client, never again.
            if first {
                fields.push(("user", user.as_str()));
            }
            form_post_page(&redirect_uri, &fields)
        }
        Flavor::Generic | Flavor::Yahoo => Redirect::to(&with_query(
            &redirect_uri,
            &[("code", &code), ("state", &state)],
        ))
        .into_response(),
    }
}

/// `client_secret_basic`: `Basic base64(urlencode(id):urlencode(secret))`.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let id = url::form_urlencoded::parse(format!("x={id}").as_bytes())
        .next()?
        .1
        .into_owned();
    let secret = url::form_urlencoded::parse(format!("x={secret}").as_bytes())
        .next()?
        .1
        .into_owned();
    Some((id, secret))
}

/// Checks Apple's client secret JWT: ES256 with the team key, `kid`, iss = team id,
/// sub = client id, aud = Apple, not expired, not issued in the future. The claims, or why
/// not.
fn apple_client_secret(op: &OpState, jwt: &str) -> Result<Value, String> {
    let ClientAuth::AppleKey {
        team_id,
        key_id,
        public,
    } = &op.auth
    else {
        return Err("not an Apple client".to_owned());
    };
    let verifier = josekit::jws::ES256
        .verifier_from_jwk(public)
        .map_err(|e| e.to_string())?;
    let (payload, header) =
        josekit::jws::deserialize_compact(jwt, &verifier).map_err(|e| format!("signature: {e}"))?;
    if header.key_id() != Some(key_id.as_str()) {
        return Err(format!("kid {:?}", header.key_id()));
    }
    let claims: Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
    let now = op.now().unix_timestamp();
    let aud_ok = match &claims["aud"] {
        Value::String(a) => a == APPLE_AUDIENCE,
        Value::Array(a) => a.iter().any(|a| a == APPLE_AUDIENCE),
        _ => false,
    };
    if claims["iss"] != team_id.as_str() {
        return Err("iss".to_owned());
    }
    if claims["sub"] != op.client_id.as_str() {
        return Err("sub".to_owned());
    }
    if !aud_ok {
        return Err("aud".to_owned());
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err("iat/exp".to_owned());
    };
    if exp <= now {
        return Err("expired".to_owned());
    }
    if iat > now + 60 {
        return Err("issued in the future".to_owned());
    }
    // Apple refuses secrets valid longer than six months.
    if exp - iat > 15_777_000 {
        return Err("valid too long".to_owned());
    }
    Ok(claims)
}

/// Whether the token (or revocation) request authenticates the client.
fn client_ok(
    op: &OpState,
    form: &HashMap<String, String>,
    basic: Option<&(String, String)>,
) -> bool {
    match &op.auth {
        ClientAuth::Secret(secret) => match basic {
            Some((id, s)) => *id == op.client_id && s == secret,
            None => {
                form.get("client_id") == Some(&op.client_id)
                    && form.get("client_secret") == Some(secret)
            }
        },
        ClientAuth::AppleKey { .. } => {
            if form.get("client_id") != Some(&op.client_id) {
                return false;
            }
            let Some(jwt) = form.get("client_secret") else {
                return false;
            };
            match apple_client_secret(op, jwt) {
                Ok(claims) => {
                    op.seen.lock().unwrap().client_secrets.push(claims);
                    true
                }
                Err(_) => false,
            }
        }
    }
}

async fn token(
    State(op): State<Arc<OpState>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let basic = basic_auth(&headers);
    op.seen.lock().unwrap().token.push(TokenRequest {
        form: form.clone(),
        basic: basic.clone(),
    });
    match op.knobs().token {
        TokenFault::None => {}
        TokenFault::ServerError => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<h1>500 Internal Server Error</h1>"),
            )
                .into_response();
        }
        TokenFault::Hang => {
            tokio::time::sleep(StdDuration::from_secs(120)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        TokenFault::InvalidGrant => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "The code has expired.",
            );
        }
        TokenFault::InvalidClient => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed.",
            );
        }
    }
    if !client_ok(&op, &form, basic.as_ref()) {
        // Apple answers 400 for a bad client secret; RFC 6749 allows 401.
        let status = if op.flavor == Flavor::Apple {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNAUTHORIZED
        };
        return oauth_error(status, "invalid_client", "Client authentication failed.");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "");
    }
    // Single use: a code is gone once presented, right or wrong.
    let grant = form
        .get("code")
        .and_then(|c| op.codes.lock().unwrap().remove(c));
    let Some(grant) = grant else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Unknown or used code.",
        );
    };
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri differs.",
        );
    }
    if let Some(challenge) = &grant.challenge {
        let Some(verifier) = form.get("code_verifier") else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "code_verifier missing.",
            );
        };
        if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != *challenge {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "PKCE check failed.",
            );
        }
    }
    let member = op.member.lock().unwrap().clone();
    let access_token = random();
    op.access_tokens
        .lock()
        .unwrap()
        .insert(access_token.clone(), member.sub.clone());
    let id_token = id_token(&op, &member, &grant, &access_token);
    let mut answer = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 3600,
        "id_token": id_token,
    });
    if op.flavor != Flavor::Generic {
        let refresh = random();
        op.seen.lock().unwrap().refresh_tokens.push(refresh.clone());
        answer["refresh_token"] = json!(refresh);
    }
    ([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response()
}

/// The ID token for `member`, as the flavour writes it, with the fault the knobs ask for.
fn id_token(op: &OpState, member: &Member, grant: &Grant, access_token: &str) -> String {
    let knobs = op.knobs();
    let now = op.now().unix_timestamp();
    let mut iss = op.issuer.clone();
    if knobs.iss_trailing_slash {
        iss.push('/');
    }
    let mut claims = json!({
        "iss": iss,
        "sub": member.sub,
        "aud": op.client_id,
        "iat": now,
        "exp": now + 600,
        "auth_time": now - 5,
        "at_hash": at_hash(access_token),
    });
    if let Some(nonce) = &grant.nonce {
        claims["nonce"] = json!(nonce);
    }
    match op.flavor {
        Flavor::Generic => {
            claims["email"] = json!(member.email);
            claims["email_verified"] = json!(member.email_verified);
            claims["name"] = json!(member.name());
            claims["given_name"] = json!(member.given_name);
            claims["family_name"] = json!(member.family_name);
        }
        Flavor::Yahoo => {
            // YConnect: `aud` is an array; no email in the ID token (userinfo has it).
            claims["aud"] = json!([op.client_id]);
            claims["amr"] = json!(["pwd"]);
        }
        Flavor::Apple => {
            // Apple writes booleans as strings in many tokens.
            claims["email"] = json!(member.email);
            claims["email_verified"] = json!(if member.email_verified {
                "true"
            } else {
                "false"
            });
            if member.email.ends_with("@privaterelay.appleid.com") {
                claims["is_private_email"] = json!("true");
            }
            claims["nonce_supported"] = json!(true);
            claims["real_user_status"] = json!(2);
        }
    }
    match knobs.id_token {
        IdTokenFault::None | IdTokenFault::ForeignKey | IdTokenFault::UnknownKid => {}
        IdTokenFault::WrongAudience => claims["aud"] = json!("someone-else"),
        IdTokenFault::WrongNonce => claims["nonce"] = json!("not-the-nonce-that-was-sent"),
        IdTokenFault::Expired => {
            claims["iat"] = json!(now - 1200);
            claims["exp"] = json!(now - 600);
        }
        IdTokenFault::WrongIssuer => claims["iss"] = json!("https://impostor.example"),
    }
    match knobs.id_token {
        IdTokenFault::ForeignKey => op.foreign.sign(&claims),
        IdTokenFault::UnknownKid => op.foreign.sign_as(&claims, "key-unpublished"),
        _ => op.key.sign(&claims),
    }
}

async fn userinfo(State(op): State<Arc<OpState>>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    op.seen.lock().unwrap().userinfo_hosts.push(host);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    let sub = op.access_tokens.lock().unwrap().get(token).cloned();
    let Some(mut sub) = sub else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        )
            .into_response();
    };
    if op.knobs().userinfo_other_sub {
        sub = "ANOTHERMEMBER0000000000000".to_owned();
    }
    let member = op.member.lock().unwrap().clone();
    Json(json!({
        "sub": sub,
        "name": member.name(),
        "given_name": member.given_name,
        "family_name": member.family_name,
        "email": member.email,
        "email_verified": member.email_verified,
        "locale": "ja-JP",
    }))
    .into_response()
}

/// Apple's `/auth/revoke`: the client authenticates as at the token endpoint; 200 with no
/// body, even for a token already invalid.
async fn revoke(
    State(op): State<Arc<OpState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !client_ok(&op, &form, None) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "");
    }
    op.seen.lock().unwrap().revoked.push(form);
    StatusCode::OK.into_response()
}
