//! FOUNDATION PLACEHOLDER (helper H1 replaces every body here): building the providers
//! from the configuration, and the authorization request and callback of each kind.

use super::{CallbackAnswer, Identity, Provider, Providers, Started, UpstreamError, UpstreamFlow};
use crate::config::Config;

impl Providers {
    /// Builds every configured provider (reads secret files, checks endpoints, makes the
    /// HTTP client). Fails with a message naming the offending provider.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        if config.federation.providers.is_empty() {
            return Ok(Self::none());
        }
        Err("federation is not built yet".to_owned())
    }
}

impl Provider {
    /// The authorization request for `state`, answering at `redirect_uri`.
    pub async fn start(&self, redirect_uri: &str, state: &str) -> Result<Started, UpstreamError> {
        let _ = (redirect_uri, state);
        todo!("H1")
    }

    /// Checks the callback's answer against `flow` and gives the member's identity.
    pub async fn finish(
        &self,
        redirect_uri: &str,
        flow: &UpstreamFlow,
        answer: &CallbackAnswer,
    ) -> Result<Identity, UpstreamError> {
        let _ = (redirect_uri, flow, answer);
        todo!("H1")
    }

    /// Revokes a refresh token at the provider (Apple, on account deletion); nothing for
    /// the providers that have no such endpoint.
    pub async fn revoke(&self, refresh_token: &str) -> Result<(), UpstreamError> {
        let _ = refresh_token;
        todo!("H1")
    }
}
