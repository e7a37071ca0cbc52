//! The Redis store for several replicas. Values carry their expiry (see the module
//! above); the Redis TTL is set a little past it, for cleanup only. `rediss://` URLs
//! speak TLS (rustls on aws-lc-rs), verifying the server against the system roots or
//! against a private CA given as a PEM file.

use std::path::Path;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use time::{Duration, OffsetDateTime};

use super::{
    Counter, EphemeralError, EphemeralStore, Spent, Versioned, decode, encode, from_unix_ms,
    unix_ms,
};
use crate::clock::Clock;

pub struct RedisStore {
    clock: Clock,
    conn: ConnectionManager,
    prefix: String,
    incr: redis::Script,
    spend: redis::Script,
    swap: redis::Script,
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

/// Spends a single-use value (KEYS[1]) atomically: moves it to KEYS[2] wrapped in a new
/// expiry header (ARGV[1], as `encode` writes it) with a TTL of ARGV[2] ms. Returns
/// {1, value} when it was there, {2, spent} for a replay, {0, ''} otherwise.
const SPEND_SCRIPT: &str = r"
local v = redis.call('GET', KEYS[1])
if v then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], ARGV[1] .. v, 'PX', ARGV[2])
  return {1, v}
end
local u = redis.call('GET', KEYS[2])
if u then
  return {2, u}
end
return {0, ''}
";

/// Compare-and-set: stores ARGV[2] with a TTL of ARGV[3] ms only if KEYS[1] holds
/// exactly ARGV[1] (the bytes read before), or nothing when ARGV[1] is empty (a stored
/// value is never empty: it starts with its expiry). Returns 1 when it stored.
const SWAP_SCRIPT: &str = r"
local v = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if v then return 0 end
elseif v ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

impl RedisStore {
    /// Connects, failing fast (not retrying for long) when Redis is unreachable, so a
    /// misconfigured start-up says so at once.
    pub async fn connect(url: &str, prefix: &str, clock: Clock) -> Result<Self, EphemeralError> {
        Self::connect_trusting(url, prefix, None, clock).await
    }

    /// Like [`RedisStore::connect`]; for a `rediss://` URL, `ca_file` (PEM) names the
    /// only certificate authorities trusted to have signed the server's certificate,
    /// instead of the system's roots.
    pub async fn connect_trusting(
        url: &str,
        prefix: &str,
        ca_file: Option<&Path>,
        clock: Clock,
    ) -> Result<Self, EphemeralError> {
        let target = super::super::db::redact_url(url);
        let unavailable = |e: redis::RedisError| {
            // rustls says "invalid peer certificate: UnknownIssuer"; say what to do.
            let hint = if url.starts_with("rediss://") && e.to_string().contains("certificate") {
                match ca_file {
                    None => "; if a private CA signed it, name it in ephemeral.tls_ca_file",
                    Some(_) => "; is ephemeral.tls_ca_file the CA that signed it?",
                }
            } else {
                ""
            };
            EphemeralError::Unavailable(format!("{e} ({target}){hint}"))
        };
        let client = match ca_file {
            None => redis::Client::open(url),
            Some(path) => {
                let pem = read_ca_file(path)?;
                redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
        }
        .map_err(unavailable)?;
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
            spend: redis::Script::new(SPEND_SCRIPT),
            swap: redis::Script::new(SWAP_SCRIPT),
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

/// Reads the CA file, refusing one without a certificate: an empty trust store would
/// fail every connection later with a far less helpful message.
fn read_ca_file(path: &Path) -> Result<Vec<u8>, EphemeralError> {
    let invalid = |reason: String| {
        EphemeralError::Unavailable(format!(
            "ephemeral.tls_ca_file {}: {reason}",
            path.display()
        ))
    };
    let pem = std::fs::read(path).map_err(|e| invalid(format!("cannot read it: {e}")))?;
    if !pem
        .windows(CERTIFICATE_PEM.len())
        .any(|w| w == CERTIFICATE_PEM)
    {
        return Err(invalid("holds no PEM certificate".to_owned()));
    }
    Ok(pem)
}

const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";

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

    async fn put_bounded(
        &self,
        key: &str,
        value: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<(), EphemeralError> {
        self.put(key, value, expires_at).await
    }

    async fn spend(
        &self,
        key: &str,
        spent_key: &str,
        remember_until: OffsetDateTime,
    ) -> Result<Spent, EphemeralError> {
        let header = encode(&[], remember_until);
        let mut conn = self.conn.clone();
        let (found, bytes): (u8, Vec<u8>) = self
            .spend
            .key(self.key(key))
            .key(self.key(spent_key))
            .arg(header)
            .arg(self.ttl_ms(remember_until))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(match found {
            1 => match self.live(Some(bytes))? {
                Some(value) => Spent::Fresh(value),
                None => Spent::Absent,
            },
            2 => {
                // The spent marker's own expiry wraps the value as it was stored.
                match self.live(Some(bytes))? {
                    Some(inner) => Spent::Replayed(decode(&inner)?.1.to_vec()),
                    None => Spent::Absent,
                }
            }
            _ => Spent::Absent,
        })
    }

    async fn delete(&self, key: &str) -> Result<(), EphemeralError> {
        let mut conn = self.conn.clone();
        conn.del::<_, ()>(self.key(key)).await.map_err(unavailable)
    }

    async fn get_versioned(&self, key: &str) -> Result<Versioned, EphemeralError> {
        let mut conn = self.conn.clone();
        let bytes: Option<Vec<u8>> = conn.get(self.key(key)).await.map_err(unavailable)?;
        Ok(Versioned {
            value: self.live(bytes.clone())?,
            version: bytes,
        })
    }

    async fn swap(
        &self,
        key: &str,
        read: Option<&[u8]>,
        value: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<bool, EphemeralError> {
        let mut conn = self.conn.clone();
        let stored: u8 = self
            .swap
            .key(self.key(key))
            .arg(read.unwrap_or_default())
            .arg(encode(value, expires_at))
            .arg(self.ttl_ms(expires_at))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(stored == 1)
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
