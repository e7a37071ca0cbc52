//! What every handler can reach. Cheap to clone: one shared allocation, so that the
//! clones each request makes (the state extractor, every middleware that reads it) cost
//! one reference count each, not one per field.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::authn::password::PasswordHasher;
use crate::authn::session::SessionPolicy;
use crate::authn::throttle::Throttle;
use crate::clock::Clock;
use crate::config::Config;
use crate::keys::{IdentifierHasher, KeyRing, MasterKey};
use crate::mail::Mailer;
use crate::ops::Metrics;
use crate::store::{Db, Ephemeral};
use crate::web::cookies::CookiePolicy;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub config: Arc<Config>,
    pub db: Db,
    pub ephemeral: Ephemeral,
    pub clock: Clock,
    pub hasher: PasswordHasher,
    /// A hash of a random password, verified when an address is unknown so that the
    /// answer takes as long as for a real account.
    pub dummy_hash: Arc<str>,
    pub keys: KeyRing,
    /// The discovery document as served, and the caching both it and the JWKS carry.
    pub discovery: crate::oidc::discovery::Published,
    /// Seals queued mail bodies (they may hold secret links).
    pub master: Arc<MasterKey>,
    pub mailer: Mailer,
    /// Posts back-channel logout tokens to clients.
    pub backchannel: crate::oidc::backchannel::Sender,
    /// Pseudonyms of typed identifiers, for logs.
    pub identifiers: IdentifierHasher,
    pub sessions: SessionPolicy,
    /// Password-guessing defence: counts per account, known device and client address.
    pub throttle: Throttle,
    pub cookies: CookiePolicy,
    /// The issuer's origin (`https://id.example.jp`), which our own forms must come from.
    pub issuer_origin: Arc<str>,
    pub metrics: Metrics,
    /// Work a handler leaves running after its answer (writes that must not delay it);
    /// shutdown waits for it, so a deploy loses none of it.
    pub background: tokio_util::task::TaskTracker,
    /// The WebAuthn relying party; `None` when the issuer cannot have passkeys (an IP
    /// address host): no passkey buttons then.
    pub webauthn: Option<Arc<webauthn_rs::Webauthn>>,
    /// The upstream providers of social sign-in, in the order of their buttons.
    pub federation: Arc<crate::federation::Providers>,
    /// Set when shutdown begins: `/readyz` answers 503 so the load balancer stops
    /// sending requests while they are still served (`server.drain_secs`).
    pub draining: Arc<AtomicBool>,
    /// Where the management listener answers (`server.management_bind` with the real
    /// port when configured with port 0); `None` when everything is on `server.bind`.
    pub management_addr: Option<SocketAddr>,
}
