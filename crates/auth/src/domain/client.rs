//! Relying parties registered with the OP.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use crate::crypto::{constant_time_eq, sha256_hex};

/// A redirect URI, kept exactly as registered: OAuth compares them as strings
/// (RFC 9700 §2.1), so `https://rp/cb` and `https://rp/cb/` are different URIs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct RedirectUri(String);

/// The longest redirect URI we register: browsers and proxies cut URLs somewhere past
/// 2000 characters, and every authorization request carries this one.
pub const REDIRECT_URI_MAX: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("a URI is longer than 2000 characters")]
    TooLong,
    /// The URL parser drops CR/LF and keeps NUL: a URI so registered could never be a
    /// `Location` header, and NUL cannot be stored on PostgreSQL.
    #[error("{0:?} contains control characters or spaces")]
    Control(String),
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
        if input.len() > REDIRECT_URI_MAX {
            return Err(RedirectUriError::TooLong);
        }
        if input.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(RedirectUriError::Control(input.to_owned()));
        }
        let url = Url::parse(input).map_err(|_| RedirectUriError::NotAbsolute(input.to_owned()))?;
        // The URL standard repairs `https:/host`, `https:host` and backslashes for
        // slashes; RFC 3986 (and other parsers) read them otherwise, so a relying party,
        // a browser and this check could disagree on the host. The URI is kept byte for
        // byte, so it must be the plain `scheme://authority` form to begin with.
        let authority = input
            .split_once(':')
            .is_some_and(|(_, rest)| rest.starts_with("//"));
        if !authority || input.contains('\\') {
            return Err(RedirectUriError::NotAbsolute(input.to_owned()));
        }
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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

    /// Whether `given` is this client's secret: the current one, or the one before the
    /// last rotation until its grace period ends (so the client can be redeployed with
    /// the new secret without an outage). Both hashes are compared in constant time, and
    /// always both, so the answer's timing says nothing about which one matched.
    pub fn secret_matches(&self, given: &str, now: OffsetDateTime) -> bool {
        let given = sha256_hex(given);
        let current = self
            .secret_hash
            .as_deref()
            .is_some_and(|stored| constant_time_eq(stored.as_bytes(), given.as_bytes()));
        let previous = self
            .live_previous_secret(now)
            .is_some_and(|stored| constant_time_eq(stored.as_bytes(), given.as_bytes()));
        current | previous
    }

    /// The hash of the secret before the last rotation while it still works.
    fn live_previous_secret(&self, now: OffsetDateTime) -> Option<&str> {
        self.previous_secret
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(hash, _)| hash.as_str())
    }

    /// When the secret before the last rotation stops working, while it still does.
    pub fn previous_secret_expires_at(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.previous_secret
            .as_ref()
            .map(|(_, until)| *until)
            .filter(|until| now < *until)
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
    fn control_characters_and_spaces_are_refused_not_dropped() {
        for bad in [
            "https://rp.example.jp/cb\r\nSet-Cookie: x=1",
            "https://rp.example.jp/\u{0}",
            "https://rp.example.jp/\u{7f}",
            "https://rp.example.jp/c b",
            "https://rp.example.jp/cb\t",
        ] {
            assert!(
                matches!(RedirectUri::parse(bad), Err(RedirectUriError::Control(_))),
                "{bad:?}"
            );
        }
    }

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
        assert_eq!(
            RedirectUri::parse(&format!("https://rp.example.jp/{}", "a".repeat(2000))),
            Err(RedirectUriError::TooLong)
        );
        // Found by the `redirect_uri` fuzz target: forms the URL standard repairs (to
        // another host than other parsers see, for the backslash ones) are refused.
        for repaired in [
            "https:/rp.example.jp/cb",
            "https:rp.example.jp/cb",
            "https:/http://rp.example.jp/cb",
            "https:\\\\rp.example.jp\\cb",
            "https://rp.example.jp\\@evil.example.jp/cb",
            "http:\\\\127.0.0.1/cb",
        ] {
            assert!(
                matches!(
                    RedirectUri::parse(repaired),
                    Err(RedirectUriError::NotAbsolute(_))
                ),
                "{repaired}"
            );
        }
        // Kept byte for byte.
        assert_eq!(
            RedirectUri::parse("https://RP.example.jp/cb")
                .unwrap()
                .as_str(),
            "https://RP.example.jp/cb"
        );
    }

    fn client_with(current: &str, previous: Option<(&str, OffsetDateTime)>) -> Client {
        Client {
            client_id: "rp".to_owned(),
            name: "RP".to_owned(),
            secret_hash: Some(sha256_hex(current)),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            grant_types: vec![GrantType::AuthorizationCode],
            public: false,
            first_party: false,
            id_token_alg: crate::keys::Alg::RS256,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            created_at: OffsetDateTime::UNIX_EPOCH,
            scopes: Vec::new(),
            previous_secret: previous.map(|(s, until)| (sha256_hex(s), until)),
        }
    }

    #[test]
    fn the_previous_secret_works_until_its_expiry_and_never_after() {
        let until = OffsetDateTime::UNIX_EPOCH + time::Duration::hours(24);
        let client = client_with("new", Some(("old", until)));
        let before = until - time::Duration::seconds(1);
        assert!(client.secret_matches("new", before));
        assert!(client.secret_matches("old", before));
        assert!(!client.secret_matches("other", before));
        assert!(client.secret_matches("new", until));
        assert!(
            !client.secret_matches("old", until),
            "expired at the instant"
        );
        assert_eq!(client.previous_secret_expires_at(until), None);
        assert_eq!(client.previous_secret_expires_at(before), Some(until));
        let public = Client {
            secret_hash: None,
            ..client_with("x", None)
        };
        assert!(!public.secret_matches("", before));
    }
}
