//! The in-process store of the embedded default (one replica).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use super::{Counter, EphemeralError, EphemeralStore, Spent, Versioned, encode};
use crate::clock::Clock;

#[derive(Debug)]
pub struct MemoryStore {
    clock: Clock,
    /// At most this many bounded values (see `put_bounded`) at once.
    quota: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    values: HashMap<String, Entry>,
    /// How many entries of `values` are bounded.
    bounded: usize,
    writes_since_sweep: usize,
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    count: u64,
    expires_at: OffsetDateTime,
    bounded: bool,
}

impl Entry {
    fn new(value: Vec<u8>, expires_at: OffsetDateTime) -> Self {
        Self {
            value,
            count: 0,
            expires_at,
            bounded: false,
        }
    }
}

/// Bounded values allowed by `new`: parked sign-ins are a few KiB each, so this keeps
/// an anonymous flood of `/authorize` well under a GiB.
pub const DEFAULT_QUOTA: usize = 50_000;

/// Expired entries are swept every this many writes, so memory stays bounded by what
/// is live rather than by what was ever written.
const SWEEP_EVERY: usize = 1024;

impl MemoryStore {
    pub fn new(clock: Clock) -> Self {
        Self::with_quota(clock, DEFAULT_QUOTA)
    }

    pub fn with_quota(clock: Clock, quota: usize) -> Self {
        Self {
            clock,
            quota,
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
                self.remove(key);
                None
            }
            _ => self.values.get_mut(key),
        }
    }

    /// Every insertion and removal goes through these two, which keep `bounded` true.
    fn insert(&mut self, key: &str, entry: Entry) {
        self.bounded += usize::from(entry.bounded);
        if let Some(old) = self.values.insert(key.to_owned(), entry) {
            self.bounded -= usize::from(old.bounded);
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let old = self.values.remove(key)?;
        self.bounded -= usize::from(old.bounded);
        Some(old)
    }

    fn sweep(&mut self, now: OffsetDateTime) {
        self.writes_since_sweep = 0;
        self.values.retain(|_, e| e.expires_at > now);
        self.bounded = self.values.values().filter(|e| e.bounded).count();
    }

    fn wrote(&mut self, now: OffsetDateTime) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY {
            self.sweep(now);
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
            inner.insert(key, Entry::new(value.to_vec(), expires_at));
            inner.wrote(now);
        });
        Ok(())
    }

    async fn put_bounded(
        &self,
        key: &str,
        value: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<(), EphemeralError> {
        self.with(|inner, now| {
            let replaces = inner.values.get(key).is_some_and(|e| e.bounded);
            if !replaces && inner.bounded >= self.quota {
                inner.sweep(now);
                if inner.bounded >= self.quota {
                    return Err(EphemeralError::Full);
                }
            }
            let mut entry = Entry::new(value.to_vec(), expires_at);
            entry.bounded = true;
            inner.insert(key, entry);
            inner.wrote(now);
            Ok(())
        })
    }

    async fn spend(
        &self,
        key: &str,
        spent_key: &str,
        remember_until: OffsetDateTime,
    ) -> Result<Spent, EphemeralError> {
        Ok(self.with(|inner, now| {
            if let Some(entry) = inner.remove(key) {
                if entry.expires_at <= now {
                    return Spent::Absent;
                }
                inner.insert(spent_key, Entry::new(entry.value.clone(), remember_until));
                inner.wrote(now);
                return Spent::Fresh(entry.value);
            }
            match inner.live(spent_key, now) {
                Some(e) => Spent::Replayed(e.value.clone()),
                None => Spent::Absent,
            }
        }))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        Ok(self.with(|inner, now| inner.live(key, now).map(|e| e.value.clone())))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        Ok(self.with(|inner, now| {
            let entry = inner.remove(key)?;
            (entry.expires_at > now).then_some(entry.value)
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), EphemeralError> {
        self.with(|inner, _| inner.remove(key));
        Ok(())
    }

    async fn get_versioned(&self, key: &str) -> Result<Versioned, EphemeralError> {
        Ok(self.with(|inner, now| match inner.live(key, now) {
            Some(e) => Versioned {
                value: Some(e.value.clone()),
                version: Some(encode(&e.value, e.expires_at)),
            },
            None => Versioned::default(),
        }))
    }

    async fn swap(
        &self,
        key: &str,
        read: Option<&[u8]>,
        value: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<bool, EphemeralError> {
        Ok(self.with(|inner, now| {
            let current = inner.live(key, now).map(|e| encode(&e.value, e.expires_at));
            if current.as_deref() != read {
                return false;
            }
            inner.insert(key, Entry::new(value.to_vec(), expires_at));
            inner.wrote(now);
            true
        }))
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
                    let mut entry = Entry::new(Vec::new(), expires_at);
                    entry.count = 1;
                    inner.insert(key, entry);
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
