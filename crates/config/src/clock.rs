//! The apps' notion of "now". Every expiry (codes, locks, sessions, keys, marketplace
//! sessions) is checked against this clock, so tests move time forward instead of
//! sleeping — on the in-process store and on Redis alike. `clippy.toml` bans reading the
//! system time anywhere else. Shared by the OP and the marketplace.

use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

#[derive(Clone, Debug)]
pub struct Clock(Arc<Source>);

#[derive(Debug)]
enum Source {
    System,
    Manual(Mutex<OffsetDateTime>),
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Self(Arc::new(Source::System))
    }

    /// A clock that stands still until `advance` moves it; for tests.
    pub fn manual(start: OffsetDateTime) -> Self {
        Self(Arc::new(Source::Manual(Mutex::new(start))))
    }

    /// A manual clock starting at the current wall-clock time, truncated to whole
    /// milliseconds so stored and re-read times compare equal on every database.
    pub fn manual_at_now() -> Self {
        let now = system_now();
        let ms = now.millisecond();
        Self::manual(now.replace_millisecond(ms).unwrap_or(now))
    }

    pub fn now(&self) -> OffsetDateTime {
        match &*self.0 {
            Source::System => system_now(),
            Source::Manual(t) => *t.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Moves a manual clock forward. Panics on the system clock: a test that tries to
    /// move real time is a bug.
    pub fn advance(&self, by: Duration) {
        match &*self.0 {
            Source::System => panic!("the system clock cannot be moved"),
            Source::Manual(t) => *t.lock().unwrap_or_else(|e| e.into_inner()) += by,
        }
    }
}

#[allow(clippy::disallowed_methods)] // the one place that reads the wall clock
fn system_now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = Clock::manual_at_now();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        clock.clone().advance(Duration::minutes(5));
        assert_eq!(clock.now(), start + Duration::minutes(5));
    }
}
