//! What every handler can reach: the configuration, the store, the clock, the cookie
//! policy, the OP's metadata (discovered on first use) and the refresh locks.

use std::ops::Deref;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;

use crate::clock::Clock;
use crate::config::Config;
use crate::oidc::{OidcError, Provider};
use crate::session::RefreshLocks;
use crate::store::Store;
use crate::store::sessions::Lifetimes;
use crate::web::Cookies;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    /// Where members reach the marketplace, without a trailing slash.
    pub public_url: String,
    /// `scheme://host[:port]` of `public_url`, as browsers send it in `Origin`.
    pub origin: String,
    pub store: Store,
    pub clock: Clock,
    pub cookies: Cookies,
    pub lifetimes: Lifetimes,
    provider: RwLock<Option<Arc<Provider>>>,
    pub refreshing: RefreshLocks,
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config, public_url: String, store: Store, clock: Clock) -> Self {
        let origin = url::Url::parse(&public_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| public_url.clone());
        let lifetimes = Lifetimes {
            idle: config.session.idle(),
            absolute: config.session.absolute(),
        };
        Self(Arc::new(Inner {
            cookies: Cookies::for_public_url(&public_url),
            config,
            public_url,
            origin,
            store,
            clock,
            lifetimes,
            provider: RwLock::new(None),
            refreshing: RefreshLocks::default(),
        }))
    }

    /// The OP's metadata, discovered on first use and kept.
    pub async fn provider(&self) -> Result<Arc<Provider>, OidcError> {
        if let Some(p) = self.provider.read().await.as_ref() {
            return Ok(p.clone());
        }
        let mut slot = self.provider.write().await;
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let c = &self.config.oidc;
        let redirect = format!("{}/callback", self.public_url);
        let p = Arc::new(
            Provider::discover(
                &c.issuer,
                &c.client_id,
                c.client_secret.expose(),
                &redirect,
                self.clock.now(),
            )
            .await?,
        );
        *slot = Some(p.clone());
        Ok(p)
    }
}

/// A random value for cookies, ids and tokens.
pub fn random(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// What the database keeps of a cookie value: its SHA-256.
pub fn hash(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}
