//! The marketplace as an OpenID Connect client of Tobira, through the `openidconnect`
//! crate: discovery, code + PKCE + nonce + state, full ID token validation, userinfo,
//! refresh. Its HTTP client never follows redirects (openidconnect's SSRF advice).

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreTokenResponse};
use openidconnect::{
    AccessToken, AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadataWithLogout,
    RedirectUrl, RefreshToken, Scope, TokenResponse,
};

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the sign-in service cannot be reached: {0}")]
    Unreachable(String),
    #[error("the sign-in response was refused: {0}")]
    Refused(String),
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
    http: Http,
    pub issuer: String,
    pub end_session: Option<String>,
}

/// A sign-in to start: where to send the browser, and what to keep until it returns.
pub struct Start {
    pub url: url::Url,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// A completed sign-in or refresh.
pub struct Tokens {
    pub sub: String,
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_secs: i64,
    pub amr: Vec<String>,
}

async fn transport(
    http: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, reqwest::Error> {
    let answer = http.execute(request.try_into()?).await?;
    let mut builder = openidconnect::http::Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        builder = builder.header(name, value);
    }
    let body = answer.bytes().await?.to_vec();
    Ok(builder
        .body(body)
        .expect("status and headers came from a response"))
}

impl Provider {
    pub async fn discover(
        issuer: &str,
        client_id: &str,
        secret: &str,
        redirect_uri: &str,
    ) -> Result<Self, OidcError> {
        let http = Http(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| OidcError::Unreachable(e.to_string()))?,
        );
        let issuer_url =
            IssuerUrl::new(issuer.to_owned()).map_err(|e| OidcError::Unreachable(e.to_string()))?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer_url, &http)
            .await
            .map_err(|e| OidcError::Unreachable(e.to_string()))?;
        let end_session = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
            .map(|u| u.to_string());
        let secret = (!secret.is_empty()).then(|| ClientSecret::new(secret.to_owned()));
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client_id.to_owned()),
            secret,
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_owned())
                .map_err(|e| OidcError::Unreachable(e.to_string()))?,
        );
        Ok(Self {
            client,
            http,
            issuer: issuer.to_owned(),
            end_session,
        })
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
        let verifier = self.client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|e| OidcError::Refused(format!("ID token: {e}")))?;
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| OidcError::Refused(e.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| OidcError::Refused(e.to_string()))?;
            let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
                .map_err(|e| OidcError::Refused(e.to_string()))?;
            if &actual != expected {
                return Err(OidcError::Refused("at_hash does not match".to_owned()));
            }
        }
        let amr = claims
            .auth_method_refs()
            .map(|v| v.iter().map(|a| a.as_str().to_owned()).collect())
            .unwrap_or_default();
        Ok(Tokens {
            sub: claims.subject().as_str().to_owned(),
            id_token: id_token.to_string(),
            access_token: response.access_token().secret().clone(),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            expires_in_secs: response.expires_in().map_or(300, |d| d.as_secs() as i64),
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

    /// Rotates the refresh token; the caller must store the new one before anyone else
    /// uses the old one (the OP revokes the grant on reuse).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, OidcError> {
        let response: CoreTokenResponse = self
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_owned()))
            .map_err(|e| OidcError::Refused(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Refused(format!("refresh: {e}")))?;
        let (sub, id_token) = match response.id_token() {
            Some(t) => {
                let claims = t
                    .claims(&self.client.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
                    .map_err(|e| OidcError::Refused(format!("ID token: {e}")))?;
                (claims.subject().as_str().to_owned(), t.to_string())
            }
            None => (String::new(), String::new()),
        };
        Ok(Tokens {
            sub,
            id_token,
            access_token: response.access_token().secret().clone(),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            expires_in_secs: response.expires_in().map_or(300, |d| d.as_secs() as i64),
            amr: Vec::new(),
        })
    }
}
