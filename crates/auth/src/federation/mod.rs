//! Social sign-in: Tobira as a relying party of upstream providers (Google, Yahoo! JAPAN,
//! Apple, Facebook, any OpenID provider).
//!
//! This module speaks to the providers and nothing else: it builds the authorization
//! request, checks what comes back (state is the caller's, everything else here: the
//! code exchange, the ID token's signature, issuer, audience, nonce and expiry, PKCE) and
//! gives an [`Identity`]. What an identity means for accounts (a link, a new account, an
//! address another account uses) is decided by `oidc::federation` and
//! `account::linked`, with the links in `store::links`.
//!
//! A link is (issuer, subject), never the email alone and never the provider's configured
//! id: renaming a provider in the configuration keeps its links, and two providers that
//! are the same issuer share them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::config::ProviderKind;
use crate::config::{Config, ProviderConfig};
use crate::web::i18n::Lang;

/// What a provider said about the member, after every check passed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The configured provider id it came through (for the pages and the history).
    pub provider: String,
    /// The issuer the subject belongs to: the ID token's `iss` (for Facebook, which has
    /// none, `https://www.facebook.com/{app id}`: its user ids are app-scoped).
    pub issuer: String,
    /// The provider's stable user id (`sub`; Facebook's app-scoped id).
    pub subject: String,
    /// The address the provider gave, if any, as given (not yet parsed).
    pub email: Option<String>,
    /// Whether the provider says it verified that address (never true for Facebook).
    pub email_verified: bool,
    /// The member's name as the provider gave it (Apple: only on the first authorization).
    pub name: Option<String>,
    /// Apple: the refresh token, kept sealed so that the member's Apple tokens can be
    /// revoked when the account is deleted.
    pub refresh_token: Option<String>,
}

/// What the browser brought back to the callback (query, or Apple's form post).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallbackAnswer {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
    /// Facebook's cancel says `error_reason=user_denied`.
    #[serde(default)]
    pub error_reason: Option<String>,
    /// Apple, first authorization only: `{"name":{"firstName","lastName"},"email"}`.
    #[serde(default)]
    pub user: Option<String>,
}

/// The per-request secrets of an authorization request, kept server-side by the caller
/// (with the `state`) until the callback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpstreamFlow {
    pub nonce: String,
    /// The PKCE verifier, where the provider takes PKCE.
    pub pkce_verifier: Option<String>,
    /// A fresh sign-in was asked for (`max_age=0`): the ID token's `auth_time` must be at
    /// or after this (unix seconds), or a provider that ignored the request and answered
    /// from an old session is refused.
    #[serde(default)]
    pub signed_in_after: Option<i64>,
}

/// An authorization request to send the browser to.
#[derive(Clone, Debug)]
pub struct Started {
    /// The provider's authorization URL with every parameter.
    pub url: String,
    pub flow: UpstreamFlow,
}

/// Why a provider gave no identity. Every case is shown as a page that offers the other
/// ways in.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The member cancelled at the provider (「同意しない」, `access_denied`, …).
    #[error("the member cancelled at the provider")]
    Cancelled,
    /// The provider is down, slow, or answered with a server error.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// What came back failed a check (signature, issuer, audience, nonce, expiry, an
    /// unknown or reused code, a Graph API error).
    #[error("the provider's answer was refused: {0}")]
    Refused(String),
    /// Our side is wrong: the provider refused our client (an expired Apple client
    /// secret, a wrong client secret), or the configuration cannot work.
    #[error("the provider refused this client: {0}")]
    Misconfigured(String),
}

/// The configured providers, in the order their buttons appear.
#[derive(Clone, Default)]
pub struct Providers {
    list: Vec<Arc<Provider>>,
}

impl Providers {
    /// No providers: no buttons.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn all(&self) -> &[Arc<Provider>] {
        &self.list
    }

    pub fn find(&self, id: &str) -> Option<&Arc<Provider>> {
        self.list.iter().find(|p| p.id == id)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The button text of provider `id` (its id when it is no longer configured, for old
    /// history lines).
    pub fn label<'a>(&'a self, id: &'a str, lang: Lang) -> &'a str {
        self.find(id).map_or(id, |p| p.label(lang))
    }
}

/// One configured provider.
pub struct Provider {
    /// The configured id (in URLs).
    pub id: String,
    pub kind: ProviderKind,
    label: String,
    label_en: String,
    config: ProviderConfig,
    /// The kind's half: openidconnect's flow, or Facebook's.
    upstream: client::Upstream,
}

impl Provider {
    /// The button's text.
    pub fn label(&self, lang: Lang) -> &str {
        match lang {
            Lang::Ja => &self.label,
            Lang::En => &self.label_en,
        }
    }

    /// Whether the callback arrives as a cross-site form POST (Apple's
    /// `response_mode=form_post`).
    pub fn form_post(&self) -> bool {
        self.kind == ProviderKind::Apple
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }
}

/// The callback URL to register at a provider: `{issuer}/federation/{id}/callback`.
pub fn callback_url(config: &Config, id: &str) -> String {
    format!(
        "{}/federation/{id}/callback",
        config.issuer.as_str().trim_end_matches('/')
    )
}

mod apple;
mod client;
mod facebook;
/// Public for the fuzz targets (`fuzz/`), which check upstream ID tokens offline.
pub mod http;
pub mod id_token;
mod presets;
mod upstream;

/// The rules of `[federation]` that need no file, for `Config::validate`.
pub(crate) use presets::check_all as check_config;
