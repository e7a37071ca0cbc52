//! Account identifiers. The row id is a UUIDv7 (index-friendly, but it reveals the
//! sign-up time), so it never leaves the OP; `sub` is random and opaque, and pairwise
//! subjects for partners will be derived from it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::CryptoRng;
use serde::Serialize;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl UserId {
    pub fn new_v7(now: time::OffsetDateTime) -> Self {
        Self(row_id(now))
    }
}

/// A time-ordered row id (UUIDv7) stamped by the app's clock: index-friendly, and never
/// shown outside the OP since it reveals when the row was made.
pub fn row_id(now: time::OffsetDateTime) -> Uuid {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        now.unix_timestamp() as u64,
        now.nanosecond(),
    );
    Uuid::new_v7(ts)
}

/// The OIDC `sub`: 128 random bits, base64url (22 characters, within OIDC's 255).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Subject(String);

impl Subject {
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
