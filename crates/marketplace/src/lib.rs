//! The skill marketplace: a relying party that hands every sign-in to Tobira. It keeps
//! its own members (keyed by issuer + `sub`), server-side sessions holding the tokens,
//! public profiles, and the privacy setting that hides a member's last sign-in time.
//! The OP ends its sessions through back-channel logout tokens.

pub mod clock;
pub mod config;
mod form;
pub mod i18n;
/// Public for the fuzz targets (`fuzz/`): they parse what the OP's back channel sends.
pub mod jws;
pub mod logout_token;
pub mod oidc;
mod routes;
mod session;
mod state;
pub mod store;
mod web;

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

pub use crate::clock::Clock;
use crate::config::Config;
use crate::state::AppState;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot read the listener's address: {0}")]
    Listener(std::io::Error),
    #[error("cannot open the database: {0}")]
    Database(sea_orm::DbErr),
}

/// For callers that report start-up failures as text (the demo).
impl From<BuildError> for String {
    fn from(e: BuildError) -> Self {
        e.to_string()
    }
}

pub struct App {
    listener: TcpListener,
    router: Router,
}

impl App {
    /// Builds the marketplace on a bound listener, on the wall clock; `public_url`
    /// defaults to the listener's address.
    pub async fn build_on(listener: TcpListener, config: Config) -> Result<Self, BuildError> {
        Self::build_on_with_clock(listener, config, Clock::system()).await
    }

    /// As `build_on`, with the clock every lifetime is judged by (tests move it).
    pub async fn build_on_with_clock(
        listener: TcpListener,
        config: Config,
        clock: Clock,
    ) -> Result<Self, BuildError> {
        let addr = listener.local_addr().map_err(BuildError::Listener)?;
        let public_url = if config.public_url.is_empty() {
            format!("http://{addr}")
        } else {
            config.public_url.trim_end_matches('/').to_owned()
        };
        let store = Store::open(&config.database_url())
            .await
            .map_err(BuildError::Database)?;
        let state = AppState::new(config, public_url, store, clock);
        Ok(Self {
            listener,
            router: routes::router(state),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!("listening on http://{}", self.listener.local_addr()?);
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}
