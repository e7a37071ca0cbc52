//! What each kind of provider is: its endpoints, scopes, button text and quirks, and the
//! rules a `[[federation.providers]]` entry must follow. `Config::validate` runs the same
//! rules (every one that needs no file) so that a bad entry stops the process at load.

use openidconnect::core::CoreJwsSigningAlgorithm;
use url::Url;

use crate::config::{FederationConfig, Issuer, ProviderConfig, ProviderKind, is_loopback_host};

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAuth {
    /// `client_secret_basic`, unless discovery says the provider takes only
    /// `client_secret_post` (OIDC Core §9: basic is the default).
    Basic,
    /// `client_secret_post` (Apple and Facebook take nothing else).
    Post,
}

/// One kind's built-in knowledge. Empty endpoints mean "from discovery"
/// (`{issuer}/.well-known/openid-configuration`), or none.
#[derive(Debug)]
pub struct Preset {
    pub kind: ProviderKind,
    /// The issuer: where discovery starts and what `iss` must say.
    pub issuer: &'static str,
    pub authorization_endpoint: &'static str,
    pub token_endpoint: &'static str,
    pub userinfo_endpoint: &'static str,
    pub jwks_uri: &'static str,
    pub revocation_endpoint: &'static str,
    pub graph_endpoint: &'static str,
    pub scopes: &'static [&'static str],
    pub pkce: bool,
    /// Extra authorization parameters.
    pub extra_params: &'static [(&'static str, &'static str)],
    /// ID token algorithms when discovery does not say (never HMAC, never `none`).
    pub algs: &'static [CoreJwsSigningAlgorithm],
    pub token_auth: TokenAuth,
    /// The address and whether it is verified come from userinfo, not the ID token.
    pub userinfo_required: bool,
    /// `iss` is accepted with or without a trailing slash (Yahoo! JAPAN has published
    /// both spellings); the identity keeps the configured spelling, so that links
    /// survive the provider switching between them.
    pub issuer_slash_optional: bool,
    pub label: &'static str,
    pub label_en: &'static str,
}

const RS256: CoreJwsSigningAlgorithm = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;

/// The asymmetric algorithms accepted on an ID token when discovery lists them: what
/// openidconnect's JWK type verifies, without HMAC (the client secret would sign, and
/// anyone holding it could forge, RFC 8725 §3.1) and without `none`.
pub const ACCEPTED_ALGS: &[CoreJwsSigningAlgorithm] = &[
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

const GOOGLE: Preset = Preset {
    kind: ProviderKind::Google,
    issuer: "https://accounts.google.com",
    authorization_endpoint: "",
    token_endpoint: "",
    userinfo_endpoint: "",
    jwks_uri: "",
    revocation_endpoint: "",
    graph_endpoint: "",
    scopes: &["openid", "email", "profile"],
    pkce: true,
    extra_params: &[],
    algs: &[RS256],
    token_auth: TokenAuth::Basic,
    userinfo_required: false,
    issuer_slash_optional: false,
    label: "Google でログイン",
    label_en: "Sign in with Google",
};

/// Yahoo! ID連携 v2. `bail=1`: 「同意しない」 comes back to the callback (without a code)
/// instead of leaving the member on Yahoo! JAPAN's top page.
const YAHOO_JAPAN: Preset = Preset {
    kind: ProviderKind::YahooJapan,
    issuer: "https://auth.login.yahoo.co.jp/yconnect/v2",
    authorization_endpoint: "https://auth.login.yahoo.co.jp/yconnect/v2/authorization",
    token_endpoint: "https://auth.login.yahoo.co.jp/yconnect/v2/token",
    userinfo_endpoint: "https://userinfo.yahooapis.jp/yconnect/v2/attribute",
    jwks_uri: "https://auth.login.yahoo.co.jp/yconnect/v2/jwks",
    revocation_endpoint: "",
    graph_endpoint: "",
    scopes: &["openid", "profile", "email"],
    pkce: true,
    extra_params: &[("bail", "1")],
    algs: &[RS256],
    token_auth: TokenAuth::Basic,
    userinfo_required: true,
    issuer_slash_optional: true,
    label: "Yahoo! JAPAN IDでログイン",
    label_en: "Sign in with Yahoo! JAPAN ID",
};

/// Sign in with Apple: `form_post` is required as soon as a scope is asked for; the
/// client secret is an ES256 JWT (`apple`); no PKCE.
const APPLE: Preset = Preset {
    kind: ProviderKind::Apple,
    issuer: "https://appleid.apple.com",
    authorization_endpoint: "https://appleid.apple.com/auth/authorize",
    token_endpoint: "https://appleid.apple.com/auth/token",
    userinfo_endpoint: "",
    jwks_uri: "https://appleid.apple.com/auth/keys",
    revocation_endpoint: "https://appleid.apple.com/auth/revoke",
    graph_endpoint: "",
    scopes: &["name", "email"],
    pkce: false,
    extra_params: &[("response_mode", "form_post")],
    algs: &[RS256],
    token_auth: TokenAuth::Post,
    userinfo_required: false,
    issuer_slash_optional: false,
    label: "Appleでサインイン",
    label_en: "Sign in with Apple",
};

/// Facebook Login: OAuth 2.0 and the Graph API, no ID token.
const FACEBOOK: Preset = Preset {
    kind: ProviderKind::Facebook,
    issuer: "https://www.facebook.com",
    authorization_endpoint: "https://www.facebook.com/v19.0/dialog/oauth",
    token_endpoint: "https://graph.facebook.com/v19.0/oauth/access_token",
    userinfo_endpoint: "",
    jwks_uri: "",
    revocation_endpoint: "",
    graph_endpoint: "https://graph.facebook.com/v19.0",
    scopes: &["email", "public_profile"],
    pkce: false,
    extra_params: &[],
    algs: &[],
    token_auth: TokenAuth::Post,
    userinfo_required: false,
    issuer_slash_optional: false,
    label: "Facebookでログイン",
    label_en: "Log in with Facebook",
};

/// Any OpenID provider; the issuer and the button text come from the configuration.
const OIDC: Preset = Preset {
    kind: ProviderKind::Oidc,
    issuer: "",
    authorization_endpoint: "",
    token_endpoint: "",
    userinfo_endpoint: "",
    jwks_uri: "",
    revocation_endpoint: "",
    graph_endpoint: "",
    scopes: &["openid", "email", "profile"],
    pkce: true,
    extra_params: &[],
    algs: &[RS256],
    token_auth: TokenAuth::Basic,
    userinfo_required: false,
    issuer_slash_optional: false,
    label: "",
    label_en: "",
};

pub fn preset(kind: ProviderKind) -> &'static Preset {
    match kind {
        ProviderKind::Google => &GOOGLE,
        ProviderKind::YahooJapan => &YAHOO_JAPAN,
        ProviderKind::Apple => &APPLE,
        ProviderKind::Facebook => &FACEBOOK,
        ProviderKind::Oidc => &OIDC,
    }
}

/// A provider entry with the preset filled in: what the configuration says, else what
/// the preset says. Endpoints still `None` come from discovery.
#[derive(Clone, Debug)]
pub struct Settings {
    pub issuer: String,
    pub scopes: Vec<String>,
    pub label: String,
    pub label_en: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    pub revocation_endpoint: Option<String>,
    pub graph_endpoint: Option<String>,
}

impl Settings {
    /// The entry's settings; call after `check` (an oidc entry has an issuer).
    pub fn of(config: &ProviderConfig) -> Self {
        let preset = preset(config.kind);
        let pick = |configured: &str, built_in: &'static str| {
            let value = if configured.is_empty() {
                built_in
            } else {
                configured
            };
            (!value.is_empty()).then(|| value.to_owned())
        };
        let issuer = pick(&config.issuer, preset.issuer).unwrap_or_default();
        let host = Url::parse(&issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let (label, label_en) = match config.kind {
            ProviderKind::Oidc => (format!("{host} でログイン"), format!("Sign in with {host}")),
            _ => (preset.label.to_owned(), preset.label_en.to_owned()),
        };
        Self {
            scopes: if config.scopes.is_empty() {
                preset.scopes.iter().map(|s| (*s).to_owned()).collect()
            } else {
                config.scopes.clone()
            },
            label: pick(&config.label, "").unwrap_or(label),
            label_en: pick(&config.label_en, "").unwrap_or(label_en),
            authorization_endpoint: pick(
                &config.authorization_endpoint,
                preset.authorization_endpoint,
            ),
            token_endpoint: pick(&config.token_endpoint, preset.token_endpoint),
            userinfo_endpoint: pick(&config.userinfo_endpoint, preset.userinfo_endpoint),
            jwks_uri: pick(&config.jwks_uri, preset.jwks_uri),
            revocation_endpoint: pick(&config.revocation_endpoint, preset.revocation_endpoint),
            graph_endpoint: pick(&config.graph_endpoint, preset.graph_endpoint),
            issuer,
        }
    }
}

/// A rule a provider entry breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The entry's position in `[[federation.providers]]` (`None`: the section itself).
    pub index: Option<usize>,
    /// The entry's id, shortened and escaped for the message.
    pub id: String,
    /// The offending key within the entry (or the section).
    pub field: &'static str,
    pub reason: String,
}

impl Problem {
    /// The dotted key, for `ConfigError::Invalid`.
    pub fn key(&self) -> String {
        match self.index {
            Some(i) => format!("federation.providers[{i}].{}", self.field),
            None => format!("federation.{}", self.field),
        }
    }
}

/// `federation.providers[2] (id "apple"): team_id: must be set for kind apple`.
impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(
                f,
                "federation.providers[{i}] (id {}): {}: {}",
                self.id, self.field, self.reason
            ),
            None => write!(f, "federation.{}: {}", self.field, self.reason),
        }
    }
}

/// Every rule that needs no file: the section and each entry.
pub fn check_all(federation: &FederationConfig) -> Result<(), Problem> {
    if !(100..=60_000).contains(&federation.timeout_ms) {
        return Err(Problem {
            index: None,
            id: String::new(),
            field: "timeout_ms",
            reason: "must be between 100 and 60000".to_owned(),
        });
    }
    for (index, provider) in federation.providers.iter().enumerate() {
        check(index, provider)?;
        if federation.providers[..index]
            .iter()
            .any(|p| p.id == provider.id)
        {
            return Err(problem(
                index,
                provider,
                "id",
                "is used by an earlier provider",
            ));
        }
    }
    Ok(())
}

fn problem(index: usize, provider: &ProviderConfig, field: &'static str, reason: &str) -> Problem {
    // Debug-escaped and shortened: an id may be anything before it is checked.
    let mut id: String = provider.id.chars().take(40).collect();
    if provider.id.chars().count() > 40 {
        id.push('…');
    }
    Problem {
        index: Some(index),
        id: format!("{id:?}"),
        field,
        reason: reason.to_owned(),
    }
}

/// The rules of one entry.
pub fn check(index: usize, p: &ProviderConfig) -> Result<(), Problem> {
    let fail = |field, reason: &str| Err(problem(index, p, field, reason));
    let id_ok = (1..=32).contains(&p.id.len())
        && p.id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !id_ok {
        return fail(
            "id",
            "must be 1 to 32 characters of a-z, 0-9, _ and - (it appears in URLs)",
        );
    }
    if p.client_id.is_empty() {
        return fail("client_id", "must be set");
    }
    if p.client_id.len() > 255 || p.client_id.chars().any(|c| c.is_control() || c == ' ') {
        return fail(
            "client_id",
            "must be at most 255 characters, without spaces or control characters",
        );
    }
    let apple = p.kind == ProviderKind::Apple;
    let has_secret = !p.client_secret.is_empty();
    let has_secret_file = !p.client_secret_file.is_empty();
    if apple {
        if has_secret || has_secret_file {
            return fail(
                "client_secret",
                "is not used by kind apple: its client secret is signed with private_key_file",
            );
        }
        for (field, value) in [("team_id", &p.team_id), ("key_id", &p.key_id)] {
            if value.is_empty() {
                return fail(field, "must be set for kind apple");
            }
            if value.len() > 64 || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return fail(
                    field,
                    "must be letters and digits (Apple's are 10 characters)",
                );
            }
        }
        if p.private_key_file.is_empty() {
            return fail(
                "private_key_file",
                "must name the .p8 key file (PKCS#8 PEM, EC P-256) for kind apple",
            );
        }
    } else {
        if has_secret && has_secret_file {
            return fail(
                "client_secret",
                "set either client_secret or client_secret_file, not both",
            );
        }
        if !has_secret && !has_secret_file {
            return fail("client_secret", "must be set (or client_secret_file)");
        }
        for (field, value) in [
            ("team_id", &p.team_id),
            ("key_id", &p.key_id),
            ("private_key_file", &p.private_key_file),
            ("revocation_endpoint", &p.revocation_endpoint),
        ] {
            if !value.is_empty() {
                return fail(field, "is only for kind apple");
            }
        }
    }
    if p.kind != ProviderKind::Facebook && !p.graph_endpoint.is_empty() {
        return fail("graph_endpoint", "is only for kind facebook");
    }
    if p.kind == ProviderKind::Facebook {
        for (field, value) in [
            ("issuer", &p.issuer),
            ("userinfo_endpoint", &p.userinfo_endpoint),
            ("jwks_uri", &p.jwks_uri),
        ] {
            if !value.is_empty() {
                return fail(
                    field,
                    "is not used by kind facebook (no ID token; users come from graph_endpoint)",
                );
            }
        }
    }
    if p.kind == ProviderKind::Oidc && p.issuer.is_empty() {
        return fail(
            "issuer",
            "must be set for kind oidc (discovery starts there)",
        );
    }
    if !p.issuer.is_empty()
        && let Err(why) = Issuer::parse(&p.issuer)
    {
        return fail("issuer", &why);
    }
    for (field, value) in [
        ("authorization_endpoint", &p.authorization_endpoint),
        ("token_endpoint", &p.token_endpoint),
        ("userinfo_endpoint", &p.userinfo_endpoint),
        ("jwks_uri", &p.jwks_uri),
        ("revocation_endpoint", &p.revocation_endpoint),
        ("graph_endpoint", &p.graph_endpoint),
    ] {
        if !value.is_empty()
            && let Err(why) = endpoint(value)
        {
            return fail(field, &why);
        }
    }
    if p.scopes.len() > 20 {
        return fail("scopes", "at most 20");
    }
    // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
    let scope_ok = |s: &String| {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
    };
    if !p.scopes.iter().all(scope_ok) {
        return fail(
            "scopes",
            "each must be 1 to 64 printable ASCII characters, without spaces, quotes or backslashes",
        );
    }
    for (field, value) in [("label", &p.label), ("label_en", &p.label_en)] {
        if value.chars().count() > 64 || value.chars().any(char::is_control) {
            return fail(
                field,
                "must be at most 64 characters, without control characters",
            );
        }
    }
    Ok(())
}

/// An endpoint URL: https, or plain http on this machine only (a test's stand-in), so
/// that codes, secrets and tokens never cross a network in the clear.
pub fn endpoint(value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&url) => {}
        "http" => {
            return Err(
                "plain http is allowed only for localhost / loopback addresses; use https"
                    .to_owned(),
            );
        }
        _ => return Err("must be an https URL".to_owned()),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".to_owned());
    }
    if url.fragment().is_some() || value.contains('#') {
        return Err("must not have a fragment".to_owned());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn entry(kind: ProviderKind) -> ProviderConfig {
        ProviderConfig {
            id: "p".to_owned(),
            kind,
            client_id: "client".to_owned(),
            client_secret: Secret::new("secret"),
            client_secret_file: String::new(),
            team_id: String::new(),
            key_id: String::new(),
            private_key_file: String::new(),
            issuer: String::new(),
            scopes: Vec::new(),
            label: String::new(),
            label_en: String::new(),
            authorization_endpoint: String::new(),
            token_endpoint: String::new(),
            userinfo_endpoint: String::new(),
            jwks_uri: String::new(),
            revocation_endpoint: String::new(),
            graph_endpoint: String::new(),
        }
    }

    fn apple() -> ProviderConfig {
        ProviderConfig {
            client_secret: Secret::default(),
            team_id: "TEAM123456".to_owned(),
            key_id: "KEY1234567".to_owned(),
            private_key_file: "/run/secrets/apple.p8".to_owned(),
            ..entry(ProviderKind::Apple)
        }
    }

    fn refused(p: &ProviderConfig) -> Problem {
        check(3, p).expect_err("refused")
    }

    #[test]
    fn every_preset_is_valid_as_it_stands() {
        for kind in [
            ProviderKind::Google,
            ProviderKind::YahooJapan,
            ProviderKind::Facebook,
        ] {
            check(0, &entry(kind)).expect("valid");
        }
        check(0, &apple()).expect("valid");
        let oidc = ProviderConfig {
            issuer: "https://id.example.jp".to_owned(),
            ..entry(ProviderKind::Oidc)
        };
        check(0, &oidc).expect("valid");
    }

    #[test]
    fn ids_are_short_url_safe_and_named_in_the_message() {
        for id in [
            "",
            "Google",
            "a b",
            "../admin",
            "%2e%2e",
            "google\n",
            "ｇｏｏｇｌｅ",
            "a.b",
            &"a".repeat(33),
        ] {
            let p = ProviderConfig {
                id: id.to_owned(),
                ..entry(ProviderKind::Google)
            };
            let e = refused(&p);
            assert_eq!(e.field, "id", "{id:?}");
            assert_eq!(e.key(), "federation.providers[3].id");
            assert!(!e.to_string().contains('\n'), "escaped: {e}");
        }
        for id in ["google", "yahoo_japan", "my-op-2", &"a".repeat(32)] {
            let p = ProviderConfig {
                id: id.to_owned(),
                ..entry(ProviderKind::Google)
            };
            check(0, &p).expect(id);
        }
        let p = ProviderConfig {
            id: "apple".to_owned(),
            team_id: String::new(),
            ..apple()
        };
        assert_eq!(
            check(2, &p).unwrap_err().to_string(),
            "federation.providers[2] (id \"apple\"): team_id: must be set for kind apple"
        );
    }

    #[test]
    fn ids_are_unique_and_the_timeout_bounded() {
        let mut federation = FederationConfig {
            providers: vec![entry(ProviderKind::Google), entry(ProviderKind::Facebook)],
            ..FederationConfig::default()
        };
        let e = check_all(&federation).unwrap_err();
        assert_eq!((e.index, e.field), (Some(1), "id"));
        federation.providers[1].id = "fb".to_owned();
        check_all(&federation).expect("valid");
        for ms in [0, 99, 60_001] {
            federation.timeout_ms = ms;
            assert_eq!(
                check_all(&federation).unwrap_err().key(),
                "federation.timeout_ms"
            );
        }
    }

    #[test]
    fn a_client_id_and_exactly_one_secret_are_needed_except_for_apple() {
        let p = ProviderConfig {
            client_id: String::new(),
            ..entry(ProviderKind::Google)
        };
        assert_eq!(refused(&p).field, "client_id");
        let p = ProviderConfig {
            client_id: "a b".to_owned(),
            ..entry(ProviderKind::Google)
        };
        assert_eq!(refused(&p).field, "client_id");
        for kind in [
            ProviderKind::Google,
            ProviderKind::YahooJapan,
            ProviderKind::Facebook,
        ] {
            let p = ProviderConfig {
                client_secret: Secret::default(),
                ..entry(kind)
            };
            assert_eq!(refused(&p).field, "client_secret");
            let p = ProviderConfig {
                client_secret: Secret::default(),
                client_secret_file: "/run/secrets/x".to_owned(),
                ..entry(kind)
            };
            check(0, &p).expect("a file is enough");
            let p = ProviderConfig {
                client_secret_file: "/run/secrets/x".to_owned(),
                ..entry(kind)
            };
            assert_eq!(refused(&p).field, "client_secret");
        }
    }

    #[test]
    fn apple_needs_its_team_key_and_key_file_and_no_secret() {
        for (field, p) in [
            (
                "team_id",
                ProviderConfig {
                    team_id: String::new(),
                    ..apple()
                },
            ),
            (
                "team_id",
                ProviderConfig {
                    team_id: "TEAM 12345".to_owned(),
                    ..apple()
                },
            ),
            (
                "key_id",
                ProviderConfig {
                    key_id: String::new(),
                    ..apple()
                },
            ),
            (
                "private_key_file",
                ProviderConfig {
                    private_key_file: String::new(),
                    ..apple()
                },
            ),
            (
                "client_secret",
                ProviderConfig {
                    client_secret: Secret::new("s"),
                    ..apple()
                },
            ),
        ] {
            assert_eq!(refused(&p).field, field);
        }
        let p = ProviderConfig {
            team_id: "TEAM123456".to_owned(),
            ..entry(ProviderKind::Google)
        };
        assert_eq!(refused(&p).field, "team_id");
    }

    #[test]
    fn oidc_needs_an_issuer_and_urls_are_https_or_loopback_http() {
        assert_eq!(refused(&entry(ProviderKind::Oidc)).field, "issuer");
        for (field, url) in [
            ("issuer", "http://id.example.jp"),
            ("issuer", "https://id.example.jp?x=1"),
            ("issuer", "ftp://id.example.jp"),
            ("issuer", "not a url"),
            ("authorization_endpoint", "http://example.com/authorize"),
            ("token_endpoint", "http://10.0.0.1/token"),
            ("token_endpoint", "http://localhost.evil.example/token"),
            ("token_endpoint", "http://127.0.0.1.nip.io/token"),
            ("token_endpoint", "https://user:pw@example.com/token"),
            ("token_endpoint", "javascript:alert(1)"),
            ("jwks_uri", "file:///etc/passwd"),
            ("userinfo_endpoint", "https://example.com/userinfo#x"),
        ] {
            let mut p = ProviderConfig {
                issuer: "https://id.example.jp".to_owned(),
                ..entry(ProviderKind::Oidc)
            };
            match field {
                "issuer" => p.issuer = url.to_owned(),
                "authorization_endpoint" => p.authorization_endpoint = url.to_owned(),
                "token_endpoint" => p.token_endpoint = url.to_owned(),
                "jwks_uri" => p.jwks_uri = url.to_owned(),
                _ => p.userinfo_endpoint = url.to_owned(),
            }
            assert_eq!(refused(&p).field, field, "{url}");
        }
        for url in [
            "http://localhost:8080/token",
            "http://127.0.0.1:9/token",
            "http://[::1]:9/token",
            "https://oauth2.googleapis.com/token",
        ] {
            let p = ProviderConfig {
                token_endpoint: url.to_owned(),
                ..entry(ProviderKind::Google)
            };
            check(0, &p).expect(url);
        }
    }

    #[test]
    fn kind_specific_keys_are_refused_elsewhere() {
        let p = ProviderConfig {
            graph_endpoint: "https://graph.example".to_owned(),
            ..entry(ProviderKind::Google)
        };
        assert_eq!(refused(&p).field, "graph_endpoint");
        let p = ProviderConfig {
            jwks_uri: "https://graph.example/keys".to_owned(),
            ..entry(ProviderKind::Facebook)
        };
        assert_eq!(refused(&p).field, "jwks_uri");
    }

    #[test]
    fn scopes_and_labels_are_bounded() {
        for scopes in [
            vec![String::new()],
            vec!["openid email".to_owned()],
            vec!["a\"b".to_owned()],
            vec!["メール".to_owned()],
            vec!["s".to_owned(); 21],
        ] {
            let p = ProviderConfig {
                scopes,
                ..entry(ProviderKind::Google)
            };
            assert_eq!(refused(&p).field, "scopes");
        }
        let p = ProviderConfig {
            label: "a\u{7}".to_owned(),
            ..entry(ProviderKind::Google)
        };
        assert_eq!(refused(&p).field, "label");
        let p = ProviderConfig {
            label_en: "x".repeat(65),
            ..entry(ProviderKind::Google)
        };
        assert_eq!(refused(&p).field, "label_en");
    }

    #[test]
    fn labels_default_to_the_presets_wording() {
        let labels = |p: &ProviderConfig| {
            let s = Settings::of(p);
            (s.label, s.label_en)
        };
        assert_eq!(
            labels(&entry(ProviderKind::Google)),
            ("Google でログイン".into(), "Sign in with Google".into())
        );
        assert_eq!(
            labels(&entry(ProviderKind::YahooJapan)),
            (
                "Yahoo! JAPAN IDでログイン".into(),
                "Sign in with Yahoo! JAPAN ID".into()
            )
        );
        assert_eq!(
            labels(&apple()),
            ("Appleでサインイン".into(), "Sign in with Apple".into())
        );
        assert_eq!(
            labels(&entry(ProviderKind::Facebook)),
            ("Facebookでログイン".into(), "Log in with Facebook".into())
        );
        let oidc = ProviderConfig {
            issuer: "https://id.example.jp:8443/tenant".to_owned(),
            ..entry(ProviderKind::Oidc)
        };
        assert_eq!(
            labels(&oidc),
            (
                "id.example.jp でログイン".into(),
                "Sign in with id.example.jp".into()
            )
        );
        let own = ProviderConfig {
            label: "社内ID".to_owned(),
            ..oidc
        };
        assert_eq!(
            labels(&own),
            ("社内ID".into(), "Sign in with id.example.jp".into())
        );
    }

    #[test]
    fn loading_the_configuration_runs_the_same_rules() {
        let load = |text: &str| {
            let table: toml::Table = toml::from_str(text).expect("toml");
            crate::config::Config::from_layers(Some(table), &[])
        };
        let ok = load(
            r#"
            [[federation.providers]]
            id = "google"
            kind = "google"
            client_id = "c"
            client_secret = "s"
            "#,
        );
        assert!(ok.is_ok(), "{ok:?}");
        let e = load(
            r#"
            [[federation.providers]]
            id = "google"
            kind = "google"
            client_id = "c"
            client_secret = "s"

            [[federation.providers]]
            id = "apple"
            kind = "apple"
            client_id = "jp.example.web"
            key_id = "KEY1234567"
            private_key_file = "/run/secrets/apple.p8"
            "#,
        )
        .expect_err("refused");
        let text = e.to_string();
        assert!(text.contains("federation.providers[1].team_id"), "{text}");
        assert!(text.contains(r#""apple""#), "{text}");
        let e = load("[federation]\ntimeout_ms = 0\n").expect_err("refused");
        assert!(e.to_string().contains("federation.timeout_ms"), "{e}");
    }

    #[test]
    fn overrides_replace_the_presets_endpoints() {
        let p = ProviderConfig {
            token_endpoint: "http://127.0.0.1:1/token".to_owned(),
            ..entry(ProviderKind::YahooJapan)
        };
        let s = Settings::of(&p);
        assert_eq!(
            s.token_endpoint.as_deref(),
            Some("http://127.0.0.1:1/token")
        );
        assert_eq!(
            s.userinfo_endpoint.as_deref(),
            Some("https://userinfo.yahooapis.jp/yconnect/v2/attribute")
        );
        assert_eq!(s.issuer, "https://auth.login.yahoo.co.jp/yconnect/v2");
        assert_eq!(s.scopes, ["openid", "profile", "email"]);
        let g = Settings::of(&entry(ProviderKind::Google));
        assert_eq!(g.authorization_endpoint, None, "from discovery");
    }
}
