//! A relying party built on the `openidconnect` crate, as a real client would use it:
//! discovery, JWKS, ID token validation. Its HTTP client never follows redirects.

use std::future::Future;
use std::pin::Pin;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreClaimName, CoreClaimType, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AdditionalProviderMetadata, AsyncHttpClient, AuthType, Client, ClientId,
    ClientSecret, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    HttpRequest, HttpResponse, IdTokenClaims, IdTokenFields, IssuerUrl, PkceCodeChallengeMethod,
    ProviderMetadata, RedirectUrl, StandardErrorResponse, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};

/// oauth2's transport over reqwest, without redirects (openidconnect's SSRF advice).
#[derive(Clone)]
pub struct Http(pub reqwest::Client);

impl Http {
    pub fn new() -> Self {
        Self(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("HTTP client"),
        )
    }
}

async fn send(
    client: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, reqwest::Error> {
    let response = client.execute(reqwest::Request::try_from(request)?).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    let mut out = openidconnect::http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

/// Discovery fields the `Core*` aliases leave out.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Extra {
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<PkceCodeChallengeMethod>>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
}
impl AdditionalProviderMetadata for Extra {}

pub type Metadata = ProviderMetadata<
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

/// ID token claims beyond OIDC Core's standard set.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Claims {
    #[serde(default)]
    pub sid: Option<String>,
}
impl AdditionalClaims for Claims {}

pub type TokenResponse = StandardTokenResponse<
    IdTokenFields<
        Claims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;
pub type IdClaims = IdTokenClaims<Claims, CoreGenderClaim>;

pub type Rp = Client<
    Claims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

pub enum Auth {
    /// Public client: PKCE only.
    None,
    /// client_secret_basic.
    Basic(String),
    /// client_secret_post.
    Post(String),
}

pub async fn discover(http: &Http, issuer: &str) -> Metadata {
    Metadata::discover_async(IssuerUrl::new(issuer.to_owned()).unwrap(), http)
        .await
        .expect("discovery succeeds")
}

pub async fn client(
    http: &Http,
    issuer: &str,
    client_id: &str,
    auth: Auth,
    redirect_uri: &str,
) -> Rp {
    let metadata = discover(http, issuer).await;
    let (secret, auth_type) = match auth {
        Auth::None => (None, AuthType::BasicAuth),
        Auth::Basic(s) => (Some(ClientSecret::new(s)), AuthType::BasicAuth),
        Auth::Post(s) => (Some(ClientSecret::new(s)), AuthType::RequestBody),
    };
    Rp::from_provider_metadata(metadata, ClientId::new(client_id.to_owned()), secret)
        .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).unwrap())
        .set_auth_type(auth_type)
}
