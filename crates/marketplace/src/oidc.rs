//! The marketplace as an OpenID Connect client of Tobira, through the `openidconnect`
//! crate: discovery, code + PKCE + nonce + state, full ID token validation, userinfo,
//! refresh (with the §12.2 identity check) and introspection. Its HTTP client never
//! follows redirects (openidconnect's SSRF advice). The OP's signing keys are kept for
//! the tokens the marketplace verifies itself (`keys`).

mod keys;

use std::sync::Arc;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGenderClaim, CoreGrantType, CoreIdTokenVerifier, CoreJsonWebKey,
    CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType, CoreTokenResponse,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalProviderMetadata, AuthorizationCode, ClientId,
    ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest,
    HttpResponse, IntrospectionUrl, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadata, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    TokenIntrospectionResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use self::keys::SigningKeys;
use crate::jws::{ACCEPTED_ALGS, Compact};

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The same client with the OP's introspection endpoint (RFC 7662) set.
type Introspector = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Discovery fields the `Core*` aliases leave out.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Extra {
    #[serde(default)]
    end_session_endpoint: Option<String>,
    #[serde(default)]
    introspection_endpoint: Option<String>,
    /// RFC 9207 §3: the OP puts `iss` in every authorization response.
    #[serde(default)]
    authorization_response_iss_parameter_supported: Option<bool>,
}
impl AdditionalProviderMetadata for Extra {}

type Metadata = ProviderMetadata<
    Extra,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The OP could not be asked, or its answer could not be read: nothing is known
    /// about the member's grant, so nothing may be concluded from it.
    #[error("the sign-in service cannot be reached: {0}")]
    Unreachable(String),
    /// The OP answered, and the answer is no (or it failed validation).
    #[error("the sign-in response was refused: {0}")]
    Refused(String),
}

/// A token request's failure: an error response from the OP is a refusal, anything
/// else (transport, unreadable body) leaves the grant's fate unknown.
fn token_error<RE, TE>(what: &str, e: RequestTokenError<RE, TE>) -> OidcError
where
    RE: std::error::Error + 'static,
    TE: openidconnect::ErrorResponse + 'static,
{
    match e {
        RequestTokenError::ServerResponse(r) => OidcError::Refused(format!("{what}: {r}")),
        other => OidcError::Unreachable(format!("{what}: {other}")),
    }
}

/// oauth2's HTTP client trait over reqwest (a boxed future keeps the handlers `Send`).
struct Http(reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = reqwest::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(transport(&self.0, request))
    }
}

pub struct Provider {
    client: Client,
    introspector: Option<Introspector>,
    http: Http,
    client_id: String,
    pub issuer: String,
    pub end_session: Option<String>,
    keys: SigningKeys,
    /// RFC 9207: when the OP says it sends `iss`, a response without one is refused
    /// (it may come from another OP the member was sent to: a mix-up attack).
    pub iss_in_response: bool,
}

/// A sign-in to start: where to send the browser, and what to keep until it returns.
pub struct Start {
    pub url: url::Url,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// A completed sign-in.
pub struct Tokens {
    pub sub: String,
    /// The OP's session id (the ID token's `sid`), which back-channel logouts name.
    pub sid: Option<String>,
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_secs: i64,
    pub amr: Vec<String>,
}

/// A completed refresh. The ID token, when the OP sends one, has passed the §12.2
/// identity check.
pub struct Refreshed {
    pub id_token: Option<String>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_secs: i64,
}

async fn transport(
    http: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, reqwest::Error> {
    let answer = http.execute(request.try_into()?).await?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut response = openidconnect::http::Response::new(answer.bytes().await?.to_vec());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

fn expires_in_secs(response: &CoreTokenResponse) -> i64 {
    // Without expires_in, assume a short life: the next use refreshes early rather
    // than presenting a dead token.
    response
        .expires_in()
        .map_or(300, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Provider {
    /// Reads the OP's metadata and keys; `now` is when (the keys' age counts from it).
    pub async fn discover(
        issuer: &str,
        client_id: &str,
        secret: &str,
        redirect_uri: &str,
        now: OffsetDateTime,
    ) -> Result<Self, OidcError> {
        let unreachable = |e: &dyn std::fmt::Display| OidcError::Unreachable(e.to_string());
        let http = Http(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| unreachable(&e))?,
        );
        let issuer_url = IssuerUrl::new(issuer.to_owned()).map_err(|e| unreachable(&e))?;
        let metadata = Metadata::discover_async(issuer_url, &http)
            .await
            .map_err(|e| unreachable(&e))?;
        let extra = metadata.additional_metadata().clone();
        let keys = SigningKeys::new(metadata.jwks_uri().clone(), metadata.jwks().clone(), now);
        let secret = (!secret.is_empty()).then(|| ClientSecret::new(secret.to_owned()));
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client_id.to_owned()),
            secret,
        )
        .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| unreachable(&e))?);
        let introspector = extra
            .introspection_endpoint
            .map(IntrospectionUrl::new)
            .transpose()
            .map_err(|e| unreachable(&e))?
            .map(|url| client.clone().set_introspection_url(url));
        Ok(Self {
            client,
            introspector,
            http,
            client_id: client_id.to_owned(),
            issuer: issuer.to_owned(),
            end_session: extra.end_session_endpoint,
            keys,
            iss_in_response: extra
                .authorization_response_iss_parameter_supported
                .unwrap_or(false),
        })
    }

    /// ID tokens are held to the same algorithms as every other token from the OP
    /// (openidconnect alone would accept RS256 only).
    fn id_token_verifier(&self) -> CoreIdTokenVerifier<'_> {
        self.client
            .id_token_verifier()
            .set_allowed_algs(ACCEPTED_ALGS)
    }

    /// The OP's signing keys for a token signed with key `kid` (fetched again if the
    /// OP has rotated, at most every 30 s).
    pub async fn signing_keys(&self, kid: &str, now: OffsetDateTime) -> Arc<CoreJsonWebKeySet> {
        self.keys.for_kid(&self.http, kid, now).await
    }

    pub fn start(&self) -> Start {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".to_owned()))
            .add_scope(Scope::new("email".to_owned()))
            .set_pkce_challenge(challenge)
            .url();
        Start {
            url,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        }
    }

    /// Redeems a code and validates the ID token (signature, issuer, audience, expiry,
    /// nonce, and at_hash).
    pub async fn finish(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Tokens, OidcError> {
        let response: CoreTokenResponse = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Refused(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Refused(format!("token request: {e}")))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::Refused("no ID token".to_owned()))?;
        let verifier = self.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|e| OidcError::Refused(format!("ID token: {e}")))?;
        if let Some(expected) = claims.access_token_hash() {
            let refused = |e: &dyn std::fmt::Display| OidcError::Refused(e.to_string());
            let alg = id_token.signing_alg().map_err(|e| refused(&e))?;
            let key = id_token.signing_key(&verifier).map_err(|e| refused(&e))?;
            let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
                .map_err(|e| refused(&e))?;
            if &actual != expected {
                return Err(OidcError::Refused("at_hash does not match".to_owned()));
            }
        }
        let id_token = id_token.to_string();
        // Verified just above; openidconnect's `Core` claims have no field for it.
        let sid = Compact::parse(&id_token).ok().and_then(|jws| {
            match jws.verified_payload().remove("sid") {
                Some(serde_json::Value::String(sid)) if !sid.is_empty() => Some(sid),
                _ => None,
            }
        });
        let amr = claims
            .auth_method_refs()
            .map(|v| v.iter().map(|a| a.as_str().to_owned()).collect())
            .unwrap_or_default();
        Ok(Tokens {
            sub: claims.subject().as_str().to_owned(),
            sid,
            id_token,
            access_token: response.access_token().secret().clone(),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            expires_in_secs: expires_in_secs(&response),
            amr,
        })
    }

    /// The member's name and email from userinfo, checked against the expected `sub`.
    pub async fn userinfo(
        &self,
        access_token: &str,
        sub: &str,
    ) -> Result<(String, String), OidcError> {
        let claims: openidconnect::UserInfoClaims<
            openidconnect::EmptyAdditionalClaims,
            CoreGenderClaim,
        > = self
            .client
            .user_info(
                AccessToken::new(access_token.to_owned()),
                Some(openidconnect::SubjectIdentifier::new(sub.to_owned())),
            )
            .map_err(|e| OidcError::Refused(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Refused(format!("userinfo: {e}")))?;
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        let email = claims
            .email()
            .map(|e| e.as_str().to_owned())
            .unwrap_or_default();
        Ok((name, email))
    }

    /// Rotates the refresh token of the member `sub`; the caller must store the new one
    /// before anyone else uses the old one (the OP revokes the grant on reuse).
    ///
    /// OIDC Core §12.2: a refreshed ID token must name the same issuer, subject and
    /// audience as the one the session began with. The verifier holds iss to the OP
    /// and aud to this client alone; `sub` is compared here. Anything else is a
    /// refusal: the session it belongs to must end.
    pub async fn refresh(&self, refresh_token: &str, sub: &str) -> Result<Refreshed, OidcError> {
        let response: CoreTokenResponse = self
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_owned()))
            .map_err(|e| OidcError::Unreachable(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|e| token_error("refresh", e))?;
        let id_token = match response.id_token() {
            Some(t) => {
                let claims = t
                    .claims(&self.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
                    .map_err(|e| OidcError::Refused(format!("refreshed ID token: {e}")))?;
                let same_audience = claims.audiences().len() == 1
                    && claims.audiences()[0].as_str() == self.client_id;
                if claims.issuer().as_str() != self.issuer
                    || claims.subject().as_str() != sub
                    || !same_audience
                {
                    return Err(OidcError::Refused(
                        "the refreshed ID token is about someone else".to_owned(),
                    ));
                }
                Some(t.to_string())
            }
            None => None,
        };
        Ok(Refreshed {
            id_token,
            access_token: response.access_token().secret().clone(),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            expires_in_secs: expires_in_secs(&response),
        })
    }

    /// Whether the OP still honours the member's grant, by introspecting `token`
    /// (RFC 7662; a refresh token is live exactly as long as its grant). `None` when
    /// the OP offers no introspection. A token of another member or client counts as
    /// inactive.
    pub async fn grant_is_active(
        &self,
        token: &str,
        is_refresh_token: bool,
        sub: &str,
    ) -> Result<Option<bool>, OidcError> {
        let Some(introspector) = &self.introspector else {
            return Ok(None);
        };
        let token = AccessToken::new(token.to_owned());
        let hint = if is_refresh_token {
            "refresh_token"
        } else {
            "access_token"
        };
        let answer = introspector
            .introspect(&token)
            .set_token_type_hint(hint)
            .request_async(&self.http)
            .await
            // Even an error response says nothing about the grant (it is about us).
            .map_err(|e| OidcError::Unreachable(format!("introspection: {e}")))?;
        let ours = answer.sub().is_none_or(|s| s == sub)
            && answer
                .client_id()
                .is_none_or(|c| c.as_str() == self.client_id);
        Ok(Some(answer.active() && ours))
    }
}
