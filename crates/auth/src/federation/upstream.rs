//! The OpenID Connect kinds (google, yahoo_japan, apple, oidc) through openidconnect:
//! discovery (lazy, cached), the authorization URL (state, nonce, PKCE, the preset's
//! parameters), the code exchange, the ID token's checks (`id_token`) and userinfo.

use std::sync::{Arc, RwLock};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessToken, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EmptyAdditionalClaims, EndpointNotSet, EndpointSet, ExtraTokenFields, IdToken, IssuerUrl,
    JsonWebKeySet, JsonWebKeySetUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardErrorResponse,
    StandardTokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::apple::AppleSecret;
use super::http::{Http, HttpError, is_json};
use super::id_token::{self, Claims, Expected, KeyCache, describe};
use super::presets::{ACCEPTED_ALGS, Preset, Settings, TokenAuth, endpoint};
use super::{UpstreamError, UpstreamFlow};
use crate::clock::Clock;
use crate::config::ProviderKind;

/// Where the discovery document lives, under the issuer (OIDC Discovery §4).
const DISCOVERY_PATH: &str = ".well-known/openid-configuration";

/// Discovery documents are kept this long.
const DISCOVERY_MAX_AGE: Duration = Duration::hours(1);

/// After a failed discovery, sign-ins are answered "unavailable" at once for this long
/// instead of each waiting for the provider's timeout in turn.
const DISCOVERY_RETRY: Duration = Duration::seconds(10);

/// The token response with the ID token left as text: it is checked by `id_token`,
/// whose claims type takes Apple's string booleans (openidconnect's would refuse the
/// whole response before anything could be checked).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RawIdToken {
    #[serde(default)]
    id_token: Option<String>,
}
impl ExtraTokenFields for RawIdToken {}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(transparent)]
pub struct TokenAnswer(StandardTokenResponse<RawIdToken, CoreTokenType>);

impl OAuth2TokenResponse for TokenAnswer {
    type TokenType = CoreTokenType;

    fn access_token(&self) -> &AccessToken {
        self.0.access_token()
    }
    fn token_type(&self) -> &CoreTokenType {
        self.0.token_type()
    }
    fn expires_in(&self) -> Option<std::time::Duration> {
        self.0.expires_in()
    }
    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.0.refresh_token()
    }
    fn scopes(&self) -> Option<&Vec<Scope>> {
        self.0.scopes()
    }
}

/// openidconnect's client wants a token response that offers a typed ID token; ours
/// never does (see `RawIdToken`).
impl
    openidconnect::TokenResponse<
        EmptyAdditionalClaims,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    > for TokenAnswer
{
    fn id_token(
        &self,
    ) -> Option<
        &IdToken<
            EmptyAdditionalClaims,
            CoreGenderClaim,
            CoreJweContentEncryptionAlgorithm,
            CoreJwsSigningAlgorithm,
        >,
    > {
        None
    }
}

/// openidconnect's client over our token response, with the endpoints `A`uthorization
/// and `T`oken set or not.
type Client<A, T> = openidconnect::Client<
    EmptyAdditionalClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenAnswer,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    A,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    T,
    EndpointNotSet,
>;

/// Where to send the member and where to ask, from the configuration, the preset and
/// discovery (in that order).
#[derive(Debug)]
pub struct Endpoints {
    authorization: String,
    token: String,
    userinfo: Option<String>,
    jwks: String,
    algs: Vec<CoreJwsSigningAlgorithm>,
    token_auth: TokenAuth,
}

/// How the client proves itself at the token endpoint.
pub enum ClientAuth {
    Secret(String),
    /// Apple: a client secret JWT signed with the team's key.
    Apple(AppleSecret),
}

/// One provider of an OpenID Connect kind.
pub struct OidcUpstream {
    pub kind: ProviderKind,
    preset: &'static Preset,
    client_id: String,
    auth: ClientAuth,
    settings: Settings,
    /// Set when nothing needs discovering (every endpoint is known).
    fixed: Option<Arc<Endpoints>>,
    discovered: RwLock<Option<Discovered>>,
    discovering: tokio::sync::Mutex<()>,
    keys: KeyCache,
    http: Http,
    clock: Clock,
}

#[derive(Clone)]
struct Discovered {
    /// `None` until a discovery succeeds.
    endpoints: Option<Arc<Endpoints>>,
    fetched_at: OffsetDateTime,
    tried_at: OffsetDateTime,
}

/// What the ID token (and userinfo) said, checked.
#[derive(Debug)]
pub struct Answer {
    pub issuer: String,
    pub claims: Claims,
    pub refresh_token: Option<String>,
}

impl OidcUpstream {
    pub fn new(
        preset: &'static Preset,
        client_id: String,
        auth: ClientAuth,
        settings: Settings,
        http: Http,
        clock: Clock,
    ) -> Self {
        let fixed = match (
            &settings.authorization_endpoint,
            &settings.token_endpoint,
            &settings.jwks_uri,
        ) {
            (Some(authorization), Some(token), Some(jwks)) => Some(Arc::new(Endpoints {
                authorization: authorization.clone(),
                token: token.clone(),
                userinfo: settings.userinfo_endpoint.clone(),
                jwks: jwks.clone(),
                algs: preset.algs.to_vec(),
                token_auth: preset.token_auth,
            })),
            _ => None,
        };
        Self {
            kind: preset.kind,
            preset,
            client_id,
            auth,
            settings,
            fixed,
            discovered: RwLock::new(None),
            discovering: tokio::sync::Mutex::new(()),
            keys: KeyCache::default(),
            http,
            clock,
        }
    }

    /// The endpoints: fixed, or from discovery (fetched on first use, kept an hour; a
    /// provider that cannot be discovered is unavailable, and an old document stays in
    /// use while it is).
    async fn endpoints(&self) -> Result<Arc<Endpoints>, UpstreamError> {
        if let Some(fixed) = &self.fixed {
            return Ok(fixed.clone());
        }
        let now = self.clock.now();
        let read = || {
            self.discovered
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        // Only a document is fresh: a failure is retried after `DISCOVERY_RETRY`.
        let fresh =
            |d: &Discovered| d.endpoints.is_some() && now - d.fetched_at < DISCOVERY_MAX_AGE;
        if let Some(endpoints) = read().filter(fresh).and_then(|d| d.endpoints) {
            return Ok(endpoints);
        }
        let _turn = self.discovering.lock().await;
        let held = read();
        if let Some(held) = &held
            && (fresh(held) || now - held.tried_at < DISCOVERY_RETRY)
        {
            return held.endpoints.clone().ok_or_else(|| {
                UpstreamError::Unavailable("discovery failed moments ago".to_owned())
            });
        }
        let result = self.discover(now).await;
        let next = match (&result, held) {
            (Ok(endpoints), _) => Discovered {
                endpoints: Some(endpoints.clone()),
                fetched_at: now,
                tried_at: now,
            },
            (Err(e), Some(held)) => {
                tracing::warn!(error = %e, issuer = self.settings.issuer, "discovery failed; the old document stays in use");
                Discovered {
                    tried_at: now,
                    ..held
                }
            }
            (Err(_), None) => Discovered {
                endpoints: None,
                fetched_at: now,
                tried_at: now,
            },
        };
        *self.discovered.write().unwrap_or_else(|e| e.into_inner()) = Some(next.clone());
        match (result, next.endpoints) {
            (Ok(endpoints), _) => Ok(endpoints),
            (Err(_), Some(old)) => Ok(old),
            (Err(e), None) => Err(e),
        }
    }

    /// Reads `{issuer}/.well-known/openid-configuration` (its `issuer` must be exactly
    /// ours, OIDC Discovery §4.3), checks every endpoint it names by the rule configured
    /// endpoints follow (`endpoint`), and only then fetches its JWKS: a document must
    /// not be able to make Tobira fetch an address of its choosing (SSRF).
    async fn discover(&self, now: OffsetDateTime) -> Result<Arc<Endpoints>, UpstreamError> {
        let s = &self.settings;
        let unavailable = |why: String| UpstreamError::Unavailable(format!("discovery: {why}"));
        let misconfigured = |why: String| UpstreamError::Misconfigured(format!("discovery: {why}"));
        let issuer = IssuerUrl::new(s.issuer.clone())
            .map_err(|e| UpstreamError::Misconfigured(format!("issuer: {e}")))?;
        let url = issuer
            .join(DISCOVERY_PATH)
            .map_err(|e| UpstreamError::Misconfigured(format!("issuer: {e}")))?;
        endpoint(url.as_str())
            .map_err(|why| UpstreamError::Misconfigured(format!("issuer {:?}: {why}", s.issuer)))?;
        let answer = self
            .http
            .send(
                self.http
                    .get(url.as_str())
                    .header(reqwest::header::ACCEPT, "application/json"),
            )
            .await
            .map_err(|e| unavailable(describe(&e)))?;
        if answer.status() != reqwest::StatusCode::OK {
            return Err(unavailable(format!("HTTP {}", answer.status())));
        }
        if !is_json(&answer) {
            return Err(unavailable("the document is not JSON".to_owned()));
        }
        let metadata: CoreProviderMetadata = serde_json::from_slice(answer.body())
            .map_err(|e| unavailable(format!("the document cannot be read: {e}")))?;
        // §4.3: exactly ours, not merely equivalent.
        if metadata.issuer().as_str() != s.issuer {
            return Err(misconfigured(format!(
                "the document is for issuer {:?}, not {:?}",
                metadata
                    .issuer()
                    .as_str()
                    .chars()
                    .take(200)
                    .collect::<String>(),
                s.issuer
            )));
        }
        let pick = |configured: &Option<String>, discovered: Option<String>, what: &str| {
            let url = configured
                .clone()
                .or(discovered)
                .ok_or_else(|| unavailable(format!("the document names no {what}")))?;
            // A document may not send us to plain http elsewhere.
            endpoint(&url).map_err(|why| misconfigured(format!("{what} {url:?}: {why}")))?;
            Ok::<_, UpstreamError>(url)
        };
        let authorization = pick(
            &s.authorization_endpoint,
            Some(metadata.authorization_endpoint().to_string()),
            "authorization_endpoint",
        )?;
        let token = pick(
            &s.token_endpoint,
            metadata.token_endpoint().map(ToString::to_string),
            "token_endpoint",
        )?;
        let jwks = pick(
            &s.jwks_uri,
            Some(metadata.jwks_uri().to_string()),
            "jwks_uri",
        )?;
        let userinfo = match (&s.userinfo_endpoint, metadata.userinfo_endpoint()) {
            (None, None) => None,
            (configured, discovered) => Some(pick(
                configured,
                discovered.map(ToString::to_string),
                "userinfo_endpoint",
            )?),
        };
        let algs: Vec<_> = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| ACCEPTED_ALGS.contains(a))
            .cloned()
            .collect();
        if algs.is_empty() {
            return Err(UpstreamError::Misconfigured(
                "the provider signs ID tokens with no algorithm Tobira accepts".to_owned(),
            ));
        }
        let methods = metadata.token_endpoint_auth_methods_supported();
        let has = |m: &CoreClientAuthMethod| methods.is_some_and(|v| v.contains(m));
        let token_auth = if has(&CoreClientAuthMethod::ClientSecretPost)
            && !has(&CoreClientAuthMethod::ClientSecretBasic)
        {
            TokenAuth::Post
        } else {
            TokenAuth::Basic
        };
        // The keys, now that their address has passed the rule (a configured `jwks_uri`
        // is fetched when a token first needs it, as with fixed endpoints).
        if s.jwks_uri.is_none() {
            let url = JsonWebKeySetUrl::new(jwks.clone())
                .map_err(|e| misconfigured(format!("jwks_uri {jwks:?}: {e}")))?;
            let set = JsonWebKeySet::fetch_async(&url, &self.http)
                .await
                .map_err(|e| unavailable(format!("the signing keys: {}", describe(&e))))?;
            self.keys.seed(&jwks, set, now);
        }
        tracing::info!(issuer = s.issuer, "discovered a provider");
        Ok(Arc::new(Endpoints {
            authorization,
            token,
            userinfo,
            jwks,
            algs,
            token_auth,
        }))
    }

    fn client(
        &self,
        endpoints: &Endpoints,
        redirect_uri: &str,
    ) -> Result<Client<EndpointSet, EndpointSet>, UpstreamError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            UpstreamError::Misconfigured(format!("{what}: {e}"))
        };
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| bad("issuer", &e))?;
        let client = Client::<EndpointNotSet, EndpointNotSet>::new(
            ClientId::new(self.client_id.clone()),
            issuer,
            JsonWebKeySet::new(Vec::new()),
        )
        .set_auth_uri(
            AuthUrl::new(endpoints.authorization.clone())
                .map_err(|e| bad("authorization_endpoint", &e))?,
        )
        .set_token_uri(
            TokenUrl::new(endpoints.token.clone()).map_err(|e| bad("token_endpoint", &e))?,
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| bad("redirect_uri", &e))?,
        )
        .set_auth_type(match endpoints.token_auth {
            TokenAuth::Basic => AuthType::BasicAuth,
            TokenAuth::Post => AuthType::RequestBody,
        });
        Ok(client)
    }

    /// The authorization URL: client_id, redirect_uri, `response_type=code`, scope,
    /// state, a fresh nonce, PKCE S256 where the preset takes it, and the preset's
    /// parameters (`bail=1`, `response_mode=form_post`).
    pub async fn start(
        &self,
        redirect_uri: &str,
        state: &str,
        fresh: bool,
    ) -> Result<(String, UpstreamFlow), UpstreamError> {
        let endpoints = self.endpoints().await?;
        let client = self.client(&endpoints, redirect_uri)?;
        let state = state.to_owned();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            Nonce::new_random,
        );
        // openidconnect puts `openid` first by itself.
        for scope in self.settings.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let verifier = if self.preset.pkce {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            request = request.set_pkce_challenge(challenge);
            Some(verifier.into_secret())
        } else {
            None
        };
        for (name, value) in self.preset.extra_params {
            request = request.add_extra_param(*name, *value);
        }
        // A fresh sign-in: `max_age=0` (OIDC Core §3.1.2.1, as `prompt=login`), checked
        // against `auth_time`. Apple neither takes it nor sends `auth_time`.
        let signed_in_after = if fresh && self.kind != ProviderKind::Apple {
            request = request.add_extra_param("max_age", "0");
            Some(self.clock.now().unix_timestamp())
        } else {
            None
        };
        let (url, _, nonce) = request.url();
        Ok((
            url.to_string(),
            UpstreamFlow {
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier,
                signed_in_after,
            },
        ))
    }

    /// Redeems `code`, checks the ID token, and reads userinfo where the address lives
    /// there (Yahoo! JAPAN) or the ID token left it out.
    pub async fn finish(
        &self,
        redirect_uri: &str,
        flow: &UpstreamFlow,
        code: &str,
    ) -> Result<Answer, UpstreamError> {
        let endpoints = self.endpoints().await?;
        let now = self.clock.now();
        let secret = match &self.auth {
            ClientAuth::Secret(secret) => secret.clone(),
            ClientAuth::Apple(apple) => apple.current(now)?,
        };
        let client = self
            .client(&endpoints, redirect_uri)?
            .set_client_secret(ClientSecret::new(secret));
        let mut exchange = client.exchange_code(AuthorizationCode::new(code.to_owned()));
        if let Some(verifier) = &flow.pkce_verifier {
            exchange = exchange.set_pkce_verifier(PkceCodeVerifier::new(verifier.clone()));
        }
        let tokens = exchange
            .request_async(&self.http)
            .await
            .map_err(|e| token_error(e, self.kind))?;
        let raw = tokens.0.extra_fields().id_token.as_deref().ok_or_else(|| {
            UpstreamError::Refused("the token response has no ID token".to_owned())
        })?;
        let expected = Expected {
            issuer: &self.settings.issuer,
            issuer_slash_optional: self.preset.issuer_slash_optional,
            client_id: &self.client_id,
            nonce: &flow.nonce,
            signed_in_after: flow.signed_in_after,
            algs: &endpoints.algs,
            now,
        };
        let verified =
            id_token::verify(raw, &self.http, &self.keys, &endpoints.jwks, &expected).await?;
        verified.check_access_token(tokens.access_token())?;
        let mut claims = verified.claims;
        let wants_userinfo = self.preset.userinfo_required
            || claims.email.is_none()
            || (claims.name.is_none() && claims.given_name.is_none());
        match (&endpoints.userinfo, wants_userinfo) {
            (Some(url), true) => {
                let info = self
                    .userinfo(url, tokens.access_token(), &claims.sub)
                    .await?;
                merge(&mut claims, info, self.preset.userinfo_required);
            }
            (None, _) if self.preset.userinfo_required => {
                return Err(UpstreamError::Misconfigured(
                    "this provider needs a userinfo endpoint".to_owned(),
                ));
            }
            _ => {}
        }
        Ok(Answer {
            // The configured spelling (the ID token's `iss` matched it, give or take the
            // trailing slash Yahoo! JAPAN may add).
            issuer: self.settings.issuer.clone(),
            claims,
            refresh_token: match self.kind {
                // Only Apple's is kept: it is what revokes the member's Apple tokens.
                ProviderKind::Apple => tokens.refresh_token().map(|t| t.secret().clone()),
                _ => None,
            },
        })
    }

    /// Userinfo (OIDC Core §5.3) with the access token; its `sub` must be the ID
    /// token's (§5.3.2: else the answer may be about someone else).
    async fn userinfo(
        &self,
        url: &str,
        access_token: &AccessToken,
        sub: &str,
    ) -> Result<Claims, UpstreamError> {
        let refused = |why: String| UpstreamError::Refused(format!("userinfo: {why}"));
        let answer = self
            .http
            .send(
                self.http
                    .get(url)
                    .bearer_auth(access_token.secret())
                    .header(reqwest::header::ACCEPT, "application/json"),
            )
            .await?;
        if answer.status() != reqwest::StatusCode::OK {
            return Err(refused(format!("HTTP {}", answer.status())));
        }
        if !is_json(&answer) {
            return Err(refused(
                "the answer is not JSON (signed answers are not supported)".to_owned(),
            ));
        }
        let info: Claims =
            serde_json::from_slice(answer.body()).map_err(|e| refused(e.to_string()))?;
        if info.sub != sub {
            return Err(refused("the answer is about another subject".to_owned()));
        }
        Ok(info)
    }

    /// Revokes a refresh token (Apple only has an endpoint for it).
    pub async fn revoke(&self, token: &str) -> Result<(), UpstreamError> {
        let (ClientAuth::Apple(apple), Some(url)) =
            (&self.auth, &self.settings.revocation_endpoint)
        else {
            return Ok(());
        };
        apple
            .revoke(&self.http, url, &self.client_id, token, self.clock.now())
            .await
    }
}

/// Userinfo fills in what the ID token left out; where the preset says the address
/// lives in userinfo, userinfo's address and its verification win.
fn merge(claims: &mut Claims, info: Claims, userinfo_first: bool) {
    if userinfo_first || claims.email.is_none() {
        claims.email = info.email;
        claims.email_verified = info.email_verified;
    }
    if claims.name.is_none() && claims.given_name.is_none() && claims.family_name.is_none() {
        claims.name = info.name;
        claims.given_name = info.given_name;
        claims.family_name = info.family_name;
    }
}

/// A failed code exchange, by what it says about whom: the provider refusing our client
/// is our configuration's fault; a refused code is the answer's.
pub fn token_error(
    e: RequestTokenError<HttpError, StandardErrorResponse<CoreErrorResponseType>>,
    kind: ProviderKind,
) -> UpstreamError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let described = format!(
                "{}{}",
                r.error().as_ref(),
                r.error_description()
                    .map(|d| format!(" ({})", d.chars().take(200).collect::<String>()))
                    .unwrap_or_default()
            );
            match r.error() {
                CoreErrorResponseType::InvalidClient if kind == ProviderKind::Apple => {
                    UpstreamError::Misconfigured(format!(
                        "Apple refused the client secret: {described}"
                    ))
                }
                CoreErrorResponseType::InvalidClient
                | CoreErrorResponseType::UnauthorizedClient => UpstreamError::Misconfigured(
                    format!("the provider refused this client: {described}"),
                ),
                CoreErrorResponseType::Extension(code)
                    if code == "temporarily_unavailable" || code == "server_error" =>
                {
                    UpstreamError::Unavailable(format!("the token endpoint: {described}"))
                }
                _ => UpstreamError::Refused(format!("the code was refused: {described}")),
            }
        }
        RequestTokenError::Request(e) => e.into(),
        RequestTokenError::Parse(e, _) => {
            UpstreamError::Refused(format!("the token response cannot be read: {e}"))
        }
        RequestTokenError::Other(why) => {
            UpstreamError::Refused(format!("the token response: {why}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use axum::extract::{Form, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use serde_json::{Value, json};

    use super::super::id_token::tests::{NOW, TestKey};
    use super::super::presets::preset;
    use super::*;
    use crate::config::{ProviderConfig, Secret};

    /// How the stand-in's token endpoint answers.
    #[derive(Clone, Copy, Default, PartialEq)]
    enum TokenMode {
        #[default]
        Good,
        InvalidClient,
        InvalidGrant,
        Down,
    }

    #[derive(Default)]
    struct Seen {
        nonce: String,
        mode: TokenMode,
        discoveries: usize,
        /// Requests for the stand-in's JWKS.
        jwks: usize,
        /// Fields of the discovery document replaced (a hostile or mistaken issuer).
        doc: serde_json::Map<String, Value>,
        authorization: Option<String>,
        form: HashMap<String, String>,
    }

    struct StandIn {
        base: String,
        key: TestKey,
        seen: Mutex<Seen>,
    }

    /// A small OpenID provider: discovery, JWKS, token (ID token without an address),
    /// userinfo (the address, verified as a string).
    async fn op() -> Arc<StandIn> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let op = Arc::new(StandIn {
            base,
            key: TestKey::new("k1"),
            seen: Mutex::new(Seen::default()),
        });
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route(
                "/jwks",
                get(|State(op): State<Arc<StandIn>>| async move {
                    op.seen.lock().expect("seen").jwks += 1;
                    axum::Json(op.key.jwks())
                }),
            )
            .route("/token", post(token))
            .route(
                "/userinfo",
                get(|| async {
                    axum::Json(json!({
                        "sub": "user-1",
                        "email": "a@example.jp",
                        "email_verified": "true",
                        "name": "Hanako",
                    }))
                }),
            )
            .with_state(op.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        op
    }

    async fn discovery(State(op): State<Arc<StandIn>>) -> axum::Json<Value> {
        let patch = {
            let mut seen = op.seen.lock().expect("seen");
            seen.discoveries += 1;
            seen.doc.clone()
        };
        let b = &op.base;
        let mut doc = json!({
            "issuer": b,
            "authorization_endpoint": format!("{b}/authorize"),
            "token_endpoint": format!("{b}/token"),
            "userinfo_endpoint": format!("{b}/userinfo"),
            "jwks_uri": format!("{b}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "HS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        });
        if let Some(doc) = doc.as_object_mut() {
            doc.extend(patch);
        }
        axum::Json(doc)
    }

    async fn token(
        State(op): State<Arc<StandIn>>,
        headers: HeaderMap,
        Form(form): Form<HashMap<String, String>>,
    ) -> Response {
        let (mode, nonce) = {
            let mut seen = op.seen.lock().expect("seen");
            seen.authorization = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            seen.form = form;
            (seen.mode, seen.nonce.clone())
        };
        let error = |status: StatusCode, code: &str| {
            (status, axum::Json(json!({ "error": code }))).into_response()
        };
        match mode {
            TokenMode::InvalidClient => error(StatusCode::UNAUTHORIZED, "invalid_client"),
            TokenMode::InvalidGrant => error(StatusCode::BAD_REQUEST, "invalid_grant"),
            TokenMode::Down => (StatusCode::BAD_GATEWAY, "<html>down</html>").into_response(),
            TokenMode::Good => axum::Json(json!({
                "access_token": "at-1",
                "token_type": "Bearer",
                "expires_in": 300,
                "refresh_token": "rt-1",
                "id_token": op.key.sign(json!({
                    "iss": op.base,
                    "sub": "user-1",
                    "aud": "client-1",
                    "exp": NOW + 300,
                    "iat": NOW,
                    "nonce": nonce,
                })),
            }))
            .into_response(),
        }
    }

    fn upstream(op: &StandIn) -> OidcUpstream {
        let entry = ProviderConfig {
            id: "op".to_owned(),
            kind: ProviderKind::Oidc,
            client_id: "client-1".to_owned(),
            client_secret: Secret::new("s3cret:+"),
            client_secret_file: String::new(),
            team_id: String::new(),
            key_id: String::new(),
            private_key_file: String::new(),
            issuer: op.base.clone(),
            scopes: Vec::new(),
            label: String::new(),
            label_en: String::new(),
            authorization_endpoint: String::new(),
            token_endpoint: String::new(),
            userinfo_endpoint: String::new(),
            jwks_uri: String::new(),
            revocation_endpoint: String::new(),
            graph_endpoint: String::new(),
        };
        OidcUpstream::new(
            preset(ProviderKind::Oidc),
            entry.client_id.clone(),
            ClientAuth::Secret(entry.client_secret.expose().to_owned()),
            Settings::of(&entry),
            Http::new(std::time::Duration::from_secs(5)).expect("http"),
            Clock::manual(OffsetDateTime::from_unix_timestamp(NOW).expect("time")),
        )
    }

    const REDIRECT: &str = "https://rp.example/federation/op/callback";

    /// Starts a flow and lets the stand-in know its nonce, as the browser's trip would.
    async fn started(op: &StandIn, up: &OidcUpstream) -> (HashMap<String, String>, UpstreamFlow) {
        let (url, flow) = up.start(REDIRECT, "state-1", false).await.expect("started");
        let url = url::Url::parse(&url).expect("url");
        assert!(url.as_str().starts_with(&format!("{}/authorize?", op.base)));
        let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
        op.seen.lock().expect("seen").nonce = query["nonce"].clone();
        (query, flow)
    }

    #[tokio::test]
    async fn a_discovered_provider_signs_a_member_in_with_pkce_and_basic_auth() {
        let op = op().await;
        let up = upstream(&op);
        let (query, flow) = started(&op, &up).await;
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["client_id"], "client-1");
        assert_eq!(query["redirect_uri"], REDIRECT);
        assert_eq!(query["scope"], "openid email profile");
        assert_eq!(query["state"], "state-1");
        assert_eq!(query["nonce"], flow.nonce);
        assert_eq!(query["code_challenge_method"], "S256");
        let verifier = flow.pkce_verifier.clone().expect("PKCE");
        assert_eq!(
            query["code_challenge"],
            crate::crypto::b64url(&crate::crypto::sha256(verifier.as_bytes()))
        );

        let answer = up
            .finish(REDIRECT, &flow, "code-1")
            .await
            .expect("signed in");
        assert_eq!(answer.issuer, op.base);
        assert_eq!(answer.claims.sub, "user-1");
        // The ID token had no address: userinfo's, with its string boolean.
        assert_eq!(answer.claims.email.as_deref(), Some("a@example.jp"));
        assert_eq!(answer.claims.email_verified, Some(true));
        assert_eq!(answer.claims.name.as_deref(), Some("Hanako"));
        assert_eq!(answer.refresh_token, None, "kept for Apple only");

        let seen = op.seen.lock().expect("seen");
        // RFC 6749 §2.3.1: id and secret form-urlencoded before base64.
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode("client-1:s3cret%3A%2B");
        assert_eq!(
            seen.authorization.as_deref(),
            Some(format!("Basic {basic}").as_str())
        );
        assert_eq!(seen.form["code"], "code-1");
        assert_eq!(seen.form["code_verifier"], verifier);
        assert_eq!(seen.form["redirect_uri"], REDIRECT);
        assert!(!seen.form.contains_key("client_secret"));
        assert_eq!(seen.discoveries, 1, "discovery is cached");
        assert_eq!(seen.jwks, 1, "the keys are fetched once, with the document");
    }

    /// Sets a field of the stand-in's discovery document.
    fn document(op: &StandIn, field: &str, value: Value) {
        op.seen
            .lock()
            .expect("seen")
            .doc
            .insert(field.to_owned(), value);
    }

    fn misconfigured(e: Option<UpstreamError>, naming: &str) {
        match e {
            Some(UpstreamError::Misconfigured(why)) => assert!(why.contains(naming), "{why}"),
            e => panic!("expected Misconfigured naming {naming}, got {e:?}"),
        }
    }

    #[tokio::test]
    async fn a_document_naming_plain_http_elsewhere_for_its_keys_is_misconfigured_and_not_fetched()
    {
        let op = op().await;
        document(&op, "jwks_uri", json!("http://10.0.0.1/keys"));
        let up = upstream(&op);
        misconfigured(up.start(REDIRECT, "s", false).await.err(), "jwks_uri");
        {
            let seen = op.seen.lock().expect("seen");
            assert_eq!(seen.discoveries, 1);
            assert_eq!(seen.jwks, 0, "no keys were fetched");
        }
    }

    #[tokio::test]
    async fn every_endpoint_a_document_names_follows_the_endpoint_rule() {
        for field in [
            "authorization_endpoint",
            "token_endpoint",
            "userinfo_endpoint",
        ] {
            let op = op().await;
            document(&op, field, json!("http://10.0.0.1/x"));
            let up = upstream(&op);
            misconfigured(up.start(REDIRECT, "s", false).await.err(), field);
            assert_eq!(op.seen.lock().expect("seen").jwks, 0, "{field}");
        }
    }

    #[tokio::test]
    async fn a_document_for_another_issuer_is_misconfigured() {
        let op = op().await;
        for issuer in [
            "https://elsewhere.example".to_owned(),
            format!("{}/", op.base),
        ] {
            document(&op, "issuer", json!(issuer));
            let up = upstream(&op);
            misconfigured(up.start(REDIRECT, "s", false).await.err(), "issuer");
        }
        assert_eq!(
            op.seen.lock().expect("seen").jwks,
            0,
            "no keys were fetched"
        );
    }

    #[tokio::test]
    async fn a_bad_document_later_leaves_the_old_one_in_use_and_is_retried_after_a_while() {
        let op = op().await;
        let up = upstream(&op);
        started(&op, &up).await;
        document(&op, "jwks_uri", json!("http://10.0.0.1/keys"));
        up.clock.advance(DISCOVERY_MAX_AGE + Duration::seconds(1));
        started(&op, &up).await;
        started(&op, &up).await;
        {
            let seen = op.seen.lock().expect("seen");
            assert_eq!(seen.discoveries, 2, "the failure is not retried at once");
            assert_eq!(seen.jwks, 1);
        }
        up.clock.advance(DISCOVERY_RETRY + Duration::seconds(1));
        op.seen.lock().expect("seen").doc.clear();
        started(&op, &up).await;
        let seen = op.seen.lock().expect("seen");
        assert_eq!(seen.discoveries, 3);
        assert_eq!(seen.jwks, 2, "a fresh document brings its keys");
    }

    #[tokio::test]
    async fn a_token_for_another_flow_is_refused() {
        let op = op().await;
        let up = upstream(&op);
        let (_, flow) = started(&op, &up).await;
        op.seen.lock().expect("seen").nonce = "another flow's nonce".to_owned();
        let e = up.finish(REDIRECT, &flow, "code-1").await.err();
        assert!(matches!(e, Some(UpstreamError::Refused(_))), "{e:?}");
    }

    #[tokio::test]
    async fn token_endpoint_errors_say_whose_fault_they_are() {
        let op = op().await;
        let up = upstream(&op);
        let (_, flow) = started(&op, &up).await;
        for (mode, check) in [
            (
                TokenMode::InvalidClient,
                (|e| matches!(e, UpstreamError::Misconfigured(_))) as fn(&UpstreamError) -> bool,
            ),
            (TokenMode::InvalidGrant, |e| {
                matches!(e, UpstreamError::Refused(_))
            }),
            (TokenMode::Down, |e| {
                matches!(e, UpstreamError::Unavailable(_))
            }),
        ] {
            op.seen.lock().expect("seen").mode = mode;
            let e = up
                .finish(REDIRECT, &flow, "code-1")
                .await
                .expect_err("fails");
            assert!(check(&e), "{e:?}");
        }
    }

    #[tokio::test]
    async fn a_provider_that_cannot_be_discovered_is_unavailable_without_stopping_anything() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let op = StandIn {
            base,
            key: TestKey::new("k1"),
            seen: Mutex::new(Seen::default()),
        };
        let up = upstream(&op);
        for _ in 0..2 {
            let e = up.start(REDIRECT, "s", false).await.err();
            assert!(matches!(e, Some(UpstreamError::Unavailable(_))), "{e:?}");
        }
    }
}
