//! Support's unlock (`tobira users unlock`). The counters live in the ephemeral store,
//! which for the embedded default is the memory of the running server: the CLI cannot
//! reach it. So an unlock is a durable job that a running replica applies (at once, on
//! its next poll); on Redis any replica applies it for all.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::authn::throttle::AccountKey;
use crate::clock::Clock;
use crate::domain::Email;
use crate::state::AppState;
use crate::store::{Db, StoreError};
use crate::web::client_ip::ip_bucket;

pub const SUPPORT_QUEUE: &str = "support";

/// What support unlocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unlock {
    /// The account's count and lock, its devices' counts, and its failures in every
    /// address's count.
    Account { email: String },
    /// One client address (IPv6 by /64).
    Address { ip: IpAddr },
}

#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error("no account with the email address {0}")]
    NoAccount(String),
    #[error("{0}")]
    InvalidEmail(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Queues an unlock; returns the job's id (it is gone from the queue once applied).
pub async fn request(db: &Db, clock: &Clock, unlock: Unlock) -> Result<Uuid, UnlockError> {
    if let Unlock::Account { email } = &unlock {
        let parsed = Email::parse(email).map_err(|e| UnlockError::InvalidEmail(e.to_string()))?;
        if db.users().find_by_email(&parsed).await?.is_none() {
            return Err(UnlockError::NoAccount(email.clone()));
        }
    }
    let payload = serde_json::to_string(&unlock).expect("an unlock serialises");
    Ok(db.jobs().add(clock.now(), SUPPORT_QUEUE, payload).await?)
}

/// Applies a queued unlock (the job runner calls this).
pub async fn apply(state: &AppState, payload: &str) -> Result<(), String> {
    let unlock: Unlock = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    match unlock {
        Unlock::Account { email } => {
            let account = AccountKey::of(&state.identifiers, &email);
            state
                .throttle
                .unlock_account(&account)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(identifier = %state.identifiers.pseudonym(&email), "support unlocked an account");
        }
        Unlock::Address { ip } => {
            state
                .throttle
                .unlock_address(&ip_bucket(ip))
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(ip = %ip, "support unlocked a client address");
        }
    }
    Ok(())
}
