//! The in-process store of the embedded default (one replica).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use super::{Counter, EphemeralError, EphemeralStore};
use crate::clock::Clock;

#[derive(Debug)]
pub struct MemoryStore {
    clock: Clock,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    values: HashMap<String, Entry>,
    writes_since_sweep: usize,
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    count: u64,
    expires_at: OffsetDateTime,
}

/// Expired entries are swept every this many writes, so memory stays bounded by what
/// is live rather than by what was ever written.
const SWEEP_EVERY: usize = 1024;

impl MemoryStore {
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner, OffsetDateTime) -> T) -> T {
        let now = self.clock.now();
        // A panic while holding the lock cannot leave a half-written map behind (every
        // write is one `insert`), so a poisoned lock is still usable.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut inner, now)
    }
}

impl Inner {
    fn live(&mut self, key: &str, now: OffsetDateTime) -> Option<&mut Entry> {
        match self.values.get(key) {
            Some(e) if e.expires_at <= now => {
                self.values.remove(key);
                None
            }
            _ => self.values.get_mut(key),
        }
    }

    fn wrote(&mut self, now: OffsetDateTime) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY {
            self.writes_since_sweep = 0;
            self.values.retain(|_, e| e.expires_at > now);
        }
    }
}

#[async_trait]
impl EphemeralStore for MemoryStore {
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<(), EphemeralError> {
        self.with(|inner, now| {
            inner.values.insert(
                key.to_owned(),
                Entry {
                    value: value.to_vec(),
                    count: 0,
                    expires_at,
                },
            );
            inner.wrote(now);
        });
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        Ok(self.with(|inner, now| inner.live(key, now).map(|e| e.value.clone())))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        Ok(self.with(|inner, now| {
            let entry = inner.values.remove(key)?;
            (entry.expires_at > now).then_some(entry.value)
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), EphemeralError> {
        self.with(|inner, _| inner.values.remove(key));
        Ok(())
    }

    async fn incr(&self, key: &str, window: Duration) -> Result<Counter, EphemeralError> {
        Ok(self.with(|inner, now| {
            let counter = match inner.live(key, now) {
                Some(e) => {
                    e.count += 1;
                    Counter {
                        count: e.count,
                        expires_at: e.expires_at,
                    }
                }
                None => {
                    let expires_at = now + window;
                    inner.values.insert(
                        key.to_owned(),
                        Entry {
                            value: Vec::new(),
                            count: 1,
                            expires_at,
                        },
                    );
                    Counter {
                        count: 1,
                        expires_at,
                    }
                }
            };
            inner.wrote(now);
            counter
        }))
    }

    async fn ping(&self) -> Result<(), EphemeralError> {
        Ok(())
    }
}
