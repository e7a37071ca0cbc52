//! Support's unlock (`tobira users unlock`, `POST /admin/api/v1/users/{id}/unlock`). The
//! counters live in the ephemeral store, which for the embedded default is the memory of
//! the running server: the CLI cannot reach it. So an unlock is a durable job that a
//! running replica applies (at once, on its next poll); on Redis any replica applies it
//! for all. The API queues it the same way, so one rule serves both, and the job is
//! recorded in the audit log in the transaction that queues it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Context, Target};
use crate::authn::throttle::AccountKey;
use crate::clock::Clock;
use crate::domain::User;
use crate::state::AppState;
use crate::store::{Db, StoreError};
use crate::web::client_ip::ip_bucket;

pub const SUPPORT_QUEUE: &str = "support";

/// What support unlocks (the job's payload).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unlock {
    /// The account's count and lock, its devices' counts, and its failures in every
    /// address's count. The counters are keyed by the normalised address.
    Account { email: String },
    /// One client address (IPv6 by /64).
    Address { ip: IpAddr },
}

#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Queues the unlock of `user`'s account (`user.unlock`); returns the job's id (it is
/// gone from the queue once applied).
pub async fn account(
    db: &Db,
    clock: &Clock,
    ctx: &Context,
    user: &User,
) -> Result<Uuid, UnlockError> {
    let unlock = Unlock::Account {
        email: user.email.normalized().to_owned(),
    };
    queue(
        db,
        clock,
        ctx,
        &unlock,
        ("user.unlock", Target::User(user.id)),
        json!({}),
    )
    .await
}

/// Queues the unlock of one client address (`address.unlock`, with the address).
pub async fn address(
    db: &Db,
    clock: &Clock,
    ctx: &Context,
    ip: IpAddr,
) -> Result<Uuid, UnlockError> {
    let unlock = Unlock::Address { ip };
    queue(
        db,
        clock,
        ctx,
        &unlock,
        ("address.unlock", Target::None),
        json!({ "ip": ip.to_string() }),
    )
    .await
}

async fn queue(
    db: &Db,
    clock: &Clock,
    ctx: &Context,
    unlock: &Unlock,
    (action, target): (&str, Target),
    detail: serde_json::Value,
) -> Result<Uuid, UnlockError> {
    let now = clock.now();
    let payload = serde_json::to_string(unlock).expect("an unlock serialises");
    let record = audit::event(now, ctx, action, target, detail);
    Ok(db
        .accounts()
        .queue_recorded(now, SUPPORT_QUEUE, payload, &record)
        .await?)
}

/// Waits up to `wait` for a running server to apply the queued unlock `id`; whether one
/// did (else the next to run will).
pub async fn applied_within(
    db: &Db,
    id: Uuid,
    wait: std::time::Duration,
) -> Result<bool, StoreError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let pending = db.jobs().pending(SUPPORT_QUEUE).await?;
        if !pending.iter().any(|job| job.id == id) {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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
