//! What every handler can reach. Cheap to clone (everything inside is shared).

use std::sync::Arc;

use crate::authn::password::PasswordHasher;
use crate::clock::Clock;
use crate::config::Config;
use crate::ops::Metrics;
use crate::store::{Db, Ephemeral};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub ephemeral: Ephemeral,
    pub clock: Clock,
    pub hasher: PasswordHasher,
    pub metrics: Metrics,
}
