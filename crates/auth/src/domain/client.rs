//! Relying parties registered with the OP.

use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;
use url::Url;

/// A redirect URI, kept exactly as registered: OAuth compares them as strings
/// (RFC 9700 §2.1), so `https://rp/cb` and `https://rp/cb/` are different URIs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RedirectUri(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("{0:?} is not an absolute URL")]
    NotAbsolute(String),
    #[error("{0:?} has a fragment, which a redirect URI must not have (RFC 6749 §3.1.2)")]
    Fragment(String),
    #[error("{0:?} uses plain http on a host other than localhost / loopback")]
    InsecureHttp(String),
    #[error("{0:?} must use https (or http on localhost / loopback)")]
    Scheme(String),
}

impl RedirectUri {
    pub fn parse(input: &str) -> Result<Self, RedirectUriError> {
        let url = Url::parse(input).map_err(|_| RedirectUriError::NotAbsolute(input.to_owned()))?;
        if url.fragment().is_some() || input.contains('#') {
            return Err(RedirectUriError::Fragment(input.to_owned()));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => return Err(RedirectUriError::InsecureHttp(input.to_owned())),
            _ => return Err(RedirectUriError::Scheme(input.to_owned())),
        }
        if url.host().is_none() {
            return Err(RedirectUriError::NotAbsolute(input.to_owned()));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// SHA-256 (hex) of the secret; `None` for public clients.
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    pub grant_types: Vec<GrantType>,
    pub public: bool,
    /// Our own apps (the marketplace): no consent screen, refresh tokens by registration.
    pub first_party: bool,
    /// `id_token_signed_response_alg` (OIDC Dynamic Client Registration §2).
    pub id_token_alg: crate::keys::Alg,
    /// Where logout tokens go (OIDC Back-Channel Logout 1.0 §2.2): the same rules as a
    /// redirect URI (absolute, https or http on loopback, no fragment).
    pub backchannel_logout_uri: Option<RedirectUri>,
    /// Every logout token to this client carries `sid`.
    pub backchannel_logout_session_required: bool,
    pub created_at: OffsetDateTime,
    /// API scopes the client may ask for with client_credentials (`admin`); never
    /// granted through `/authorize`.
    pub scopes: Vec<String>,
    /// SHA-256 (hex) of the secret before the last rotation, and when it stops working.
    pub previous_secret: Option<(String, OffsetDateTime)>,
}

impl Client {
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Exact string comparison against the registered URIs.
    pub fn redirect_uri(&self, candidate: &str) -> Option<&RedirectUri> {
        self.redirect_uris.iter().find(|u| u.as_str() == candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_must_be_absolute_https_or_loopback_without_fragment() {
        for ok in [
            "https://rp.example.jp/callback",
            "https://rp.example.jp/cb?tenant=a",
            "http://127.0.0.1:3000/callback",
            "http://localhost/cb",
            "http://[::1]:8080/cb",
        ] {
            assert!(RedirectUri::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/callback",
            "rp.example.jp/cb",
            "https://rp.example.jp/cb#frag",
            "http://rp.example.jp/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "ftp://rp.example.jp/cb",
        ] {
            assert!(RedirectUri::parse(bad).is_err(), "{bad}");
        }
        // Kept byte for byte.
        assert_eq!(
            RedirectUri::parse("https://RP.example.jp/cb")
                .unwrap()
                .as_str(),
            "https://RP.example.jp/cb"
        );
    }
}
