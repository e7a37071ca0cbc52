//! The Redis store for several replicas. Values carry their expiry (see the module
//! above); the Redis TTL is set a little past it, for cleanup only.

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use time::{Duration, OffsetDateTime};

use super::{Counter, EphemeralError, EphemeralStore, decode, encode, from_unix_ms, unix_ms};
use crate::clock::Clock;

pub struct RedisStore {
    clock: Clock,
    conn: ConnectionManager,
    prefix: String,
    incr: redis::Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Redis keeps a key this much longer than its logical expiry, so a clock a little
/// ahead of Redis's never sees a live value vanish early.
const TTL_SLACK_MS: i64 = 5_000;

/// A fixed-window counter as a hash {n: count, e: window end in unix ms}. A window
/// that ended by the app's clock (ARGV[1]) is restarted, so expiry follows the app's
/// `Clock` rather than Redis's TTL.
const INCR_SCRIPT: &str = r"
local e = tonumber(redis.call('HGET', KEYS[1], 'e'))
if (not e) or e <= tonumber(ARGV[1]) then
  e = tonumber(ARGV[2])
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'e', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
return {n, e}
";

impl RedisStore {
    /// Connects, failing fast (not retrying for long) when Redis is unreachable, so a
    /// misconfigured start-up says so at once.
    pub async fn connect(url: &str, prefix: &str, clock: Clock) -> Result<Self, EphemeralError> {
        let unavailable = |e: redis::RedisError| {
            EphemeralError::Unavailable(format!("{} ({})", e, super::super::db::redact_url(url)))
        };
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_connection_timeout(Some(StdDuration::from_secs(3)))
            .set_response_timeout(Some(StdDuration::from_secs(3)));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            clock,
            conn,
            prefix: prefix.to_owned(),
            incr: redis::Script::new(INCR_SCRIPT),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    fn ttl_ms(&self, expires_at: OffsetDateTime) -> i64 {
        (unix_ms(expires_at) - unix_ms(self.clock.now())).max(0) + TTL_SLACK_MS
    }

    fn live(&self, bytes: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, EphemeralError> {
        let Some(bytes) = bytes else { return Ok(None) };
        let (expires_at, value) = decode(&bytes)?;
        Ok((expires_at > self.clock.now()).then(|| value.to_vec()))
    }
}

fn unavailable(e: redis::RedisError) -> EphemeralError {
    EphemeralError::Unavailable(e.to_string())
}

#[async_trait]
impl EphemeralStore for RedisStore {
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<(), EphemeralError> {
        let ttl = self.ttl_ms(expires_at) as u64;
        let mut conn = self.conn.clone();
        conn.pset_ex::<_, _, ()>(self.key(key), encode(value, expires_at), ttl)
            .await
            .map_err(unavailable)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        let mut conn = self.conn.clone();
        let bytes: Option<Vec<u8>> = conn.get(self.key(key)).await.map_err(unavailable)?;
        self.live(bytes)
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        let mut conn = self.conn.clone();
        // GETDEL (Redis ≥ 6.2) is atomic: one of two concurrent takers gets the value.
        let bytes: Option<Vec<u8>> = conn.get_del(self.key(key)).await.map_err(unavailable)?;
        self.live(bytes)
    }

    async fn delete(&self, key: &str) -> Result<(), EphemeralError> {
        let mut conn = self.conn.clone();
        conn.del::<_, ()>(self.key(key)).await.map_err(unavailable)
    }

    async fn incr(&self, key: &str, window: Duration) -> Result<Counter, EphemeralError> {
        let now = self.clock.now();
        let expires_at = now + window;
        let mut conn = self.conn.clone();
        let (count, end): (u64, i64) = self
            .incr
            .key(self.key(key))
            .arg(unix_ms(now))
            .arg(unix_ms(expires_at))
            .arg(self.ttl_ms(expires_at))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(Counter {
            count,
            expires_at: from_unix_ms(end)?,
        })
    }

    async fn ping(&self) -> Result<(), EphemeralError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(unavailable)
    }
}
