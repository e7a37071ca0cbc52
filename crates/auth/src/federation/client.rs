//! Building the providers from the configuration (secrets and Apple's key read now, so
//! that a bad entry stops start-up), and each provider's authorization request,
//! callback and revocation, whatever its kind.

use std::sync::Arc;
use std::time::Duration;

use super::apple::{AppleSecret, name_from_user_field};
use super::facebook::Facebook;
use super::http::Http;
use super::id_token::check_subject;
use super::presets::{self, Settings, preset};
use super::upstream::{ClientAuth, OidcUpstream};
use super::{CallbackAnswer, Identity, Provider, Providers, Started, UpstreamError, UpstreamFlow};
use crate::clock::Clock;
use crate::config::{Config, ProviderConfig, ProviderKind};

/// A name longer than this is cut (it names an account; no real name is this long).
const MAX_NAME: usize = 100;

/// An address longer than this is no address (RFC 5321 §4.5.3.1 bounds the parts).
const MAX_EMAIL: usize = 320;

/// A code, or an error code, longer than this is not one.
const MAX_CODE: usize = 4096;

/// The per-kind half of a provider.
pub(super) enum Upstream {
    /// Boxed: it holds caches and locks, Facebook's half a few strings.
    Oidc(Box<OidcUpstream>),
    Facebook(Facebook),
}

impl Providers {
    /// Builds every configured provider on the wall clock; see [`Providers::build`].
    pub fn from_config(config: &Config) -> Result<Self, String> {
        Self::build(config, Clock::system())
    }

    /// Builds every configured provider (checks each entry, reads secret files and
    /// Apple's key, makes the one HTTP client). ID tokens' expiry and Apple's client
    /// secret are reckoned on `clock`. Fails with a message naming the offending
    /// provider. Nothing is fetched: discovery and keys wait for the first sign-in, so
    /// that the server starts while a provider is down.
    pub fn build(config: &Config, clock: Clock) -> Result<Self, String> {
        let federation = &config.federation;
        if federation.providers.is_empty() {
            return Ok(Self::none());
        }
        presets::check_all(federation).map_err(|p| p.to_string())?;
        let http = Http::new(Duration::from_millis(federation.timeout_ms))?;
        let list = federation
            .providers
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                build_one(entry, http.clone(), clock.clone()).map_err(|(field, why)| {
                    presets::Problem {
                        index: Some(index),
                        id: format!("{:?}", entry.id),
                        field,
                        reason: why,
                    }
                    .to_string()
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            list: list.into_iter().map(Arc::new).collect(),
        })
    }
}

/// A provider from its (checked) entry. Errors name the key at fault.
fn build_one(
    entry: &ProviderConfig,
    http: Http,
    clock: Clock,
) -> Result<Provider, (&'static str, String)> {
    let settings = Settings::of(entry);
    let preset = preset(entry.kind);
    let secret = || -> Result<String, (&'static str, String)> {
        if !entry.client_secret.is_empty() {
            return Ok(entry.client_secret.expose().to_owned());
        }
        let path = &entry.client_secret_file;
        let text = std::fs::read_to_string(path)
            .map_err(|e| ("client_secret_file", format!("cannot read {path}: {e}")))?;
        let text = text.trim_end_matches(['\r', '\n']).to_owned();
        if text.is_empty() {
            return Err(("client_secret_file", format!("{path} is empty")));
        }
        Ok(text)
    };
    let upstream = match entry.kind {
        ProviderKind::Facebook => Upstream::Facebook(Facebook::new(
            entry.client_id.clone(),
            secret()?,
            settings.authorization_endpoint.clone().unwrap_or_default(),
            settings.token_endpoint.clone().unwrap_or_default(),
            settings.graph_endpoint.clone().unwrap_or_default(),
            settings.scopes.clone(),
            http,
        )),
        kind => {
            let auth = if kind == ProviderKind::Apple {
                let path = &entry.private_key_file;
                let pem = std::fs::read(path)
                    .map(zeroize::Zeroizing::new)
                    .map_err(|e| ("private_key_file", format!("cannot read {path}: {e}")))?;
                ClientAuth::Apple(
                    AppleSecret::from_pem(&pem, &entry.team_id, &entry.key_id, &entry.client_id)
                        .map_err(|e| ("private_key_file", format!("{path}: {e}")))?,
                )
            } else {
                ClientAuth::Secret(secret()?)
            };
            Upstream::Oidc(Box::new(OidcUpstream::new(
                preset,
                entry.client_id.clone(),
                auth,
                settings.clone(),
                http,
                clock,
            )))
        }
    };
    Ok(Provider {
        id: entry.id.clone(),
        kind: entry.kind,
        label: settings.label,
        label_en: settings.label_en,
        config: entry.clone(),
        upstream,
    })
}

impl Provider {
    /// The authorization request for `state`, answering at `redirect_uri`. `fresh` asks
    /// the provider to sign the member in again rather than answer from its session (a
    /// re-authentication in the console, a link, a client's `prompt=login` or
    /// `max_age`).
    pub async fn start(
        &self,
        redirect_uri: &str,
        state: &str,
        fresh: bool,
    ) -> Result<Started, UpstreamError> {
        match &self.upstream {
            Upstream::Oidc(oidc) => {
                let (url, flow) = oidc.start(redirect_uri, state, fresh).await?;
                Ok(Started { url, flow })
            }
            Upstream::Facebook(facebook) => Ok(Started {
                url: facebook.start(redirect_uri, state, fresh)?,
                // Facebook takes no nonce: there is no ID token to carry it back (nor an
                // `auth_time` to check a fresh sign-in by).
                flow: UpstreamFlow {
                    nonce: String::new(),
                    pkce_verifier: None,
                    signed_in_after: None,
                },
            }),
        }
    }

    /// Checks the callback's answer against `flow` and gives the member's identity.
    /// (`state` is the caller's to check before this is called.)
    pub async fn finish(
        &self,
        redirect_uri: &str,
        flow: &UpstreamFlow,
        answer: &CallbackAnswer,
    ) -> Result<Identity, UpstreamError> {
        let code = code_of(self.kind, answer)?;
        match &self.upstream {
            Upstream::Oidc(oidc) => {
                let answered = oidc.finish(redirect_uri, flow, code).await?;
                let claims = answered.claims;
                let name = match (&claims.name, self.kind, &answer.user) {
                    (Some(name), _, _) => clean(name, MAX_NAME),
                    // Apple: in the `user` field, on the first authorization only.
                    (None, ProviderKind::Apple, Some(user)) => {
                        let (given, family) = name_from_user_field(user);
                        full_name(given.as_deref(), family.as_deref())
                    }
                    (None, _, _) => {
                        full_name(claims.given_name.as_deref(), claims.family_name.as_deref())
                    }
                };
                Ok(Identity {
                    provider: self.id.clone(),
                    issuer: answered.issuer,
                    subject: claims.sub,
                    email: claims.email.as_deref().and_then(email),
                    email_verified: claims.email_verified.unwrap_or(false),
                    name,
                    refresh_token: answered.refresh_token,
                })
            }
            Upstream::Facebook(facebook) => {
                let me = facebook.finish(redirect_uri, code).await?;
                check_subject(&me.id)?;
                Ok(Identity {
                    provider: self.id.clone(),
                    issuer: facebook.issuer(),
                    subject: me.id,
                    email: me.email.as_deref().and_then(email),
                    // Facebook says nothing about having verified the address.
                    email_verified: false,
                    name: me.name.as_deref().and_then(|n| clean(n, MAX_NAME)),
                    refresh_token: None,
                })
            }
        }
    }

    /// Revokes a refresh token at the provider (Apple, on account deletion); nothing for
    /// the providers that have no such endpoint.
    pub async fn revoke(&self, refresh_token: &str) -> Result<(), UpstreamError> {
        match &self.upstream {
            Upstream::Oidc(oidc) => oidc.revoke(refresh_token).await,
            Upstream::Facebook(_) => Ok(()),
        }
    }
}

/// The code in a callback, or why there is none: a cancel at the provider
/// (`access_denied`, Apple's `user_cancelled_authorize`, Facebook's
/// `error_reason=user_denied`, or Yahoo! JAPAN's `bail=1` return without a code) is
/// `Cancelled`; any other error refuses.
pub(super) fn code_of(kind: ProviderKind, answer: &CallbackAnswer) -> Result<&str, UpstreamError> {
    let cancelled = matches!(
        answer.error.as_deref(),
        Some("access_denied" | "user_cancelled_authorize")
    ) || answer.error_reason.as_deref() == Some("user_denied");
    if cancelled {
        return Err(UpstreamError::Cancelled);
    }
    if let Some(error) = &answer.error {
        let error = clean(error, 64).unwrap_or_default();
        let description = answer
            .error_description
            .as_deref()
            .and_then(|d| clean(d, 200))
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        return Err(UpstreamError::Refused(format!(
            "the provider answered {error:?}{description}"
        )));
    }
    match answer.code.as_deref() {
        Some(code) if !code.is_empty() && code.len() <= MAX_CODE => Ok(code),
        None | Some("") if kind == ProviderKind::YahooJapan => Err(UpstreamError::Cancelled),
        _ => Err(UpstreamError::Refused(
            "the callback carries no usable code".to_owned(),
        )),
    }
}

/// `value` trimmed, without control characters, cut to `max` characters; `None` if
/// nothing is left.
fn clean(value: &str, max: usize) -> Option<String> {
    let cleaned: String = value
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect();
    let cleaned = cleaned.trim();
    (!cleaned.is_empty()).then(|| cleaned.to_owned())
}

/// An address as the provider gave it (parsed later), if it can be one.
fn email(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty() && value.len() <= MAX_EMAIL && !value.chars().any(char::is_control))
        .then(|| value.to_owned())
}

/// A name from its parts: Japanese names family first (山田 太郎), others given first
/// (Taro Yamada).
fn full_name(given: Option<&str>, family: Option<&str>) -> Option<String> {
    let given = given.and_then(|g| clean(g, MAX_NAME));
    let family = family.and_then(|f| clean(f, MAX_NAME));
    let joined = match (given, family) {
        (Some(g), Some(f)) if is_japanese(&g) || is_japanese(&f) => format!("{f} {g}"),
        (Some(g), Some(f)) => format!("{g} {f}"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => return None,
    };
    clean(&joined, MAX_NAME)
}

/// Kanji, hiragana or katakana.
fn is_japanese(text: &str) -> bool {
    text.chars().any(|c| {
        matches!(c,
            '\u{3040}'..='\u{30FF}' // hiragana, katakana
            | '\u{3400}'..='\u{4DBF}' // CJK extension A
            | '\u{4E00}'..='\u{9FFF}' // CJK unified ideographs
            | '\u{FF66}'..='\u{FF9F}' // half-width katakana
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(pairs: &[(&str, &str)]) -> CallbackAnswer {
        let query = serde_urlencoded::to_string(pairs).expect("query");
        serde_urlencoded::from_str(&query).expect("answer")
    }

    #[test]
    fn cancels_at_the_provider_are_told_apart_from_errors() {
        use ProviderKind::*;
        for (kind, pairs) in [
            (Google, vec![("error", "access_denied"), ("state", "s")]),
            (
                Apple,
                vec![("error", "user_cancelled_authorize"), ("state", "s")],
            ),
            (
                Facebook,
                vec![
                    ("error_reason", "user_denied"),
                    ("error", "access_denied"),
                    ("error_description", "Permissions error."),
                ],
            ),
            (Facebook, vec![("error_reason", "user_denied")]),
            (YahooJapan, vec![("state", "s")]),
            (YahooJapan, vec![("state", "s"), ("code", "")]),
            (YahooJapan, vec![("error", "access_denied"), ("state", "s")]),
        ] {
            let e = code_of(kind, &answer(&pairs)).err();
            assert!(
                matches!(e, Some(UpstreamError::Cancelled)),
                "{kind:?} {pairs:?}"
            );
        }
        for (kind, pairs) in [
            (Google, vec![("error", "server_error")]),
            (Oidc, vec![("error", "invalid_request"), ("code", "c")]),
            (Oidc, vec![("error", "login_required\n\u{1b}[31m")]),
            (Google, vec![("state", "s")]),
            (Apple, vec![("code", "")]),
            (Facebook, vec![("error_reason", "other")]),
        ] {
            let e = code_of(kind, &answer(&pairs)).err();
            assert!(
                matches!(e, Some(UpstreamError::Refused(_))),
                "{kind:?} {pairs:?}"
            );
            if let Some(UpstreamError::Refused(why)) = e {
                assert!(!why.contains(['\n', '\u{1b}']), "escaped: {why}");
            }
        }
        let long = "c".repeat(MAX_CODE + 1);
        assert!(code_of(Google, &answer(&[("code", &long)])).is_err());
        assert_eq!(
            code_of(Google, &answer(&[("code", "abc")])).ok(),
            Some("abc")
        );
    }

    fn entry(id: &str, kind: ProviderKind) -> ProviderConfig {
        ProviderConfig {
            id: id.to_owned(),
            kind,
            client_id: "client-1".to_owned(),
            client_secret: crate::config::Secret::new("s"),
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

    fn config(providers: Vec<ProviderConfig>) -> Config {
        let mut config = Config::default();
        config.federation.providers = providers;
        config
    }

    fn apple_entry(key_file: &std::path::Path) -> ProviderConfig {
        ProviderConfig {
            client_secret: crate::config::Secret::default(),
            team_id: "TEAM123456".to_owned(),
            key_id: "KEY1234567".to_owned(),
            private_key_file: key_file.to_string_lossy().into_owned(),
            ..entry("apple", ProviderKind::Apple)
        }
    }

    fn query(url: &str) -> std::collections::HashMap<String, String> {
        url::Url::parse(url)
            .expect("url")
            .query_pairs()
            .into_owned()
            .collect()
    }

    #[tokio::test]
    async fn providers_are_built_in_order_with_their_files_read() {
        use josekit::jwk::KeyPair;
        let dir = tempfile::tempdir().expect("dir");
        let secret = dir.path().join("yahoo");
        std::fs::write(&secret, "from-file\n").expect("write");
        let p8 = dir.path().join("AuthKey.p8");
        let key = josekit::jwk::alg::ec::EcKeyPair::generate(josekit::jwk::alg::ec::EcCurve::P256)
            .expect("key");
        std::fs::write(&p8, key.to_pem_private_key()).expect("write");
        let yahoo = ProviderConfig {
            client_secret: crate::config::Secret::default(),
            client_secret_file: secret.to_string_lossy().into_owned(),
            ..entry("yahoo", ProviderKind::YahooJapan)
        };
        let providers = Providers::build(
            &config(vec![
                yahoo,
                apple_entry(&p8),
                entry("fb", ProviderKind::Facebook),
            ]),
            Clock::system(),
        )
        .expect("built");
        let ids: Vec<_> = providers.all().iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["yahoo", "apple", "fb"]);
        assert!(providers.find("apple").expect("apple").form_post());
        assert_eq!(
            providers.label("yahoo", crate::web::i18n::Lang::Ja),
            "Yahoo! JAPAN IDでログイン"
        );

        // Nothing is fetched to start these: their endpoints are the presets'.
        let yahoo = providers.find("yahoo").expect("yahoo");
        let started = yahoo
            .start("https://id.example.jp/cb", "st", false)
            .await
            .expect("url");
        assert!(
            started
                .url
                .starts_with("https://auth.login.yahoo.co.jp/yconnect/v2/authorization?")
        );
        let q = query(&started.url);
        assert_eq!(q["bail"], "1");
        assert_eq!(q["scope"], "openid profile email");
        assert_eq!(q["code_challenge_method"], "S256");
        assert!(started.flow.pkce_verifier.is_some());

        let apple = providers.find("apple").expect("apple");
        let started = apple
            .start("https://id.example.jp/cb", "st", false)
            .await
            .expect("url");
        assert!(
            started
                .url
                .starts_with("https://appleid.apple.com/auth/authorize?")
        );
        let q = query(&started.url);
        assert_eq!(q["response_mode"], "form_post");
        assert_eq!(q["scope"], "openid name email");
        assert_eq!(q["nonce"], started.flow.nonce);
        assert!(!q.contains_key("code_challenge"), "Apple takes no PKCE");
        assert_eq!(started.flow.pkce_verifier, None);

        let fb = providers.find("fb").expect("fb");
        let started = fb
            .start("https://id.example.jp/cb", "st", false)
            .await
            .expect("url");
        assert!(
            started
                .url
                .starts_with("https://www.facebook.com/v19.0/dialog/oauth?")
        );
        assert!(!query(&started.url).contains_key("nonce"));
        assert_eq!(fb.revoke("rt").await.ok(), Some(()), "nothing to revoke");
    }

    #[test]
    fn unreadable_files_stop_the_build_naming_the_provider() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("missing");
        let google = ProviderConfig {
            client_secret: crate::config::Secret::default(),
            client_secret_file: missing.to_string_lossy().into_owned(),
            ..entry("google", ProviderKind::Google)
        };
        let e = Providers::build(&config(vec![google]), Clock::system())
            .err()
            .expect("refused");
        assert!(
            e.starts_with(
                r#"federation.providers[0] (id "google"): client_secret_file: cannot read"#
            ),
            "{e}"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let google = ProviderConfig {
            client_secret: crate::config::Secret::default(),
            client_secret_file: empty.to_string_lossy().into_owned(),
            ..entry("google", ProviderKind::Google)
        };
        assert!(Providers::build(&config(vec![google]), Clock::system()).is_err());

        let not_a_key = dir.path().join("AuthKey.p8");
        std::fs::write(
            &not_a_key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let e = Providers::build(
            &config(vec![
                entry("g", ProviderKind::Google),
                apple_entry(&not_a_key),
            ]),
            Clock::system(),
        )
        .err()
        .expect("refused");
        assert!(
            e.starts_with(r#"federation.providers[1] (id "apple"): private_key_file: "#),
            "{e}"
        );
        let e = Providers::build(&config(vec![apple_entry(&missing)]), Clock::system())
            .err()
            .expect("refused");
        assert!(e.contains("private_key_file: cannot read"), "{e}");
        // No providers: no buttons, nothing read.
        assert!(
            Providers::build(&config(vec![]), Clock::system())
                .expect("none")
                .is_empty()
        );
    }

    #[test]
    fn names_are_cleaned_and_ordered_by_their_script() {
        assert_eq!(
            full_name(Some("Taro"), Some("Yamada")).as_deref(),
            Some("Taro Yamada")
        );
        assert_eq!(
            full_name(Some("太郎"), Some("山田")).as_deref(),
            Some("山田 太郎")
        );
        assert_eq!(full_name(Some(" 花子 "), None).as_deref(), Some("花子"));
        assert_eq!(full_name(Some(" "), Some("\u{7}")), None);
        assert_eq!(full_name(None, None), None);
        assert_eq!(clean("a\u{0}b\nc", 10).as_deref(), Some("abc"));
        assert_eq!(
            clean(&"名".repeat(300), MAX_NAME).map(|n| n.chars().count()),
            Some(MAX_NAME)
        );
        assert_eq!(email(" a@example.jp "), Some("a@example.jp".to_owned()));
        assert_eq!(email(&format!("{}@example.jp", "a".repeat(320))), None);
        assert_eq!(email("a@example.jp\r\nBcc: x@example.jp"), None);
        assert_eq!(email(""), None);
    }
}
