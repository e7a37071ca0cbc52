//! Short-lived values: authorization codes, challenges, login transactions, rate-limit
//! counters. In process for one machine, Redis for several replicas; both pass the same
//! test suite.
//!
//! Every value carries its `expires_at`, checked against the app's `Clock`. A Redis TTL
//! only cleans up, a little after the real expiry; correctness never depends on it, which
//! is what lets tests move time on Redis too.

mod memory;
mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;

#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    #[error("ephemeral store unavailable: {0}")]
    Unavailable(String),
    #[error("ephemeral store returned malformed data for a key")]
    Malformed,
    /// The in-process store holds its quota of values that anyone can create.
    #[error("ephemeral store is full")]
    Full,
}

impl EphemeralError {
    /// The store is down or full: the same request may succeed shortly, so it is answered
    /// 503 with `Retry-After` (a page, or `temporarily_unavailable`); `Malformed` is a
    /// bug, answered 500.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Full)
    }
}

/// What spending a single-use value found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spent {
    /// Live and unspent: it is now spent, and this caller alone has it.
    Fresh(Vec<u8>),
    /// Spent before (within the memory of spent values): a replay.
    Replayed(Vec<u8>),
    /// Unknown or expired.
    Absent,
}

/// What `get_versioned` read: the live value, and the version `swap` compares against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Versioned {
    pub value: Option<Vec<u8>>,
    /// Opaque; `None` when nothing is stored (an expired value still has a version).
    pub version: Option<Vec<u8>>,
}

/// A rate-limit window: how many hits so far and when the window closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    pub count: u64,
    pub expires_at: OffsetDateTime,
}

#[async_trait]
pub trait EphemeralStore: Send + Sync + std::fmt::Debug {
    /// Stores `value` under `key` until `expires_at`, replacing any previous value.
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<(), EphemeralError>;

    /// The value, unless absent or expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError>;

    /// Gets and deletes in one atomic step: of two concurrent takes, one gets the value.
    /// This is what makes an authorization code single-use.
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError>;

    /// Like `put`, for values that anyone can make us create (parked sign-ins). The
    /// in-process store refuses a new key beyond its quota with `Full`; Redis bounds its
    /// memory itself (`maxmemory`), so there it is a plain `put`.
    async fn put_bounded(
        &self,
        key: &str,
        value: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<(), EphemeralError>;

    /// Spends a single-use value in one atomic step: a live value under `key` moves to
    /// `spent_key` (kept until `remember_until`) and is returned as `Fresh`; a value
    /// already there is `Replayed`. Taking and marking in two steps would let a replay
    /// that lands between them pass unnoticed (RFC 6749 §4.1.2: a replayed code must
    /// revoke what the first use issued).
    async fn spend(
        &self,
        key: &str,
        spent_key: &str,
        remember_until: OffsetDateTime,
    ) -> Result<Spent, EphemeralError>;

    async fn delete(&self, key: &str) -> Result<(), EphemeralError>;

    /// The value under `key` with its version, for a later `swap`.
    async fn get_versioned(&self, key: &str) -> Result<Versioned, EphemeralError>;

    /// Stores `value` only if `key` still holds the version `read` (`None`: nothing
    /// was there); true when it did. A read-modify-write through this loses no
    /// concurrent update, from any replica (the throttling counters need that: two
    /// guesses at once must both count).
    async fn swap(
        &self,
        key: &str,
        read: Option<&[u8]>,
        value: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<bool, EphemeralError>;

    /// Adds one to a fixed-window counter. The first hit (or the first after the window
    /// closed) opens a window of length `window`; later hits keep its end.
    async fn incr(&self, key: &str, window: Duration) -> Result<Counter, EphemeralError>;

    /// Readiness: the store answers.
    async fn ping(&self) -> Result<(), EphemeralError>;
}

/// The store the app holds.
pub type Ephemeral = Arc<dyn EphemeralStore>;

/// `[expires_at as i64 unix milliseconds, big-endian][value]`: how a value and its
/// expiry travel together through stores that only keep bytes.
fn encode(value: &[u8], expires_at: OffsetDateTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&unix_ms(expires_at).to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn decode(bytes: &[u8]) -> Result<(OffsetDateTime, &[u8]), EphemeralError> {
    let (head, value) = bytes.split_at_checked(8).ok_or(EphemeralError::Malformed)?;
    let ms = i64::from_be_bytes(head.try_into().map_err(|_| EphemeralError::Malformed)?);
    Ok((from_unix_ms(ms)?, value))
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_unix_ms(ms: i64) -> Result<OffsetDateTime, EphemeralError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|_| EphemeralError::Malformed)
}
