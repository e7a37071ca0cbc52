//! Password-guessing defence that never locks the owner out.
//!
//! Three counts, all in the ephemeral store (shared by replicas on Redis), all expiring
//! by the app's clock:
//!
//! - **Per account** (keyed by a keyed hash of the typed address, so an unknown address
//!   is counted exactly like a known one): `account_failures` consecutive failures lock
//!   it for `lock_minutes`, each further `account_failures` double the lock up to
//!   `max_lock_minutes`; after `hard_lock_failures` it stays locked until the unlock
//!   link, a reset or support. The count is forgotten `failure_memory_minutes` after the
//!   last failure or the end of the last lock, whichever is later.
//! - **Per known device**: a device that signed in to the account before is exempt from
//!   the account's lock and from the address limit for that account, and has a count of
//!   its own (the same doubling lock, for that device alone). An attacker's failures
//!   therefore never keep the owner out.
//! - **Per client address** (IPv6 by /64): failures against `ip_accounts` different
//!   accounts within `ip_window_minutes` refuse the address for `ip_block_minutes`. A
//!   success takes its account out of the address's count, so one member's typos never
//!   block a shared address.
//!
//! An attempt is counted as a failure when it is admitted ([`Throttle::admit`]), before
//! the password is checked, and a success takes it back ([`Throttle::succeeded`]): ten
//! guesses sent at once are counted as ten, not as the one each of them saw. Every
//! update is a compare-and-swap, so concurrent requests on several replicas lose none.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::config::ThrottleConfig;
use crate::domain::Email;
use crate::keys::IdentifierHasher;
use crate::store::{Ephemeral, EphemeralError};

/// A compare-and-swap that keeps losing this many times is refused as busy: the key
/// is under a flood, and failing closed is the safe answer.
const MAX_SWAPS: usize = 32;
/// Addresses remembered per account (for `tobira users unlock --email`).
const MAX_ADDRESSES: usize = 32;

/// The account a sign-in names: a keyed hash of the normalised address (or of what was
/// typed, when it is no address). Never the account id, so that an unknown address is
/// throttled exactly like a known one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountKey(String);

impl AccountKey {
    /// The key of an account's own address.
    pub fn for_user(identifiers: &IdentifierHasher, user: &crate::domain::User) -> Self {
        Self::of(identifiers, user.email.normalized())
    }

    pub fn of(identifiers: &IdentifierHasher, typed: &str) -> Self {
        let normalized = match Email::parse(typed) {
            Ok(email) => email.normalized().to_owned(),
            Err(_) => typed.trim().to_lowercase(),
        };
        Self(identifiers.pseudonym(&normalized))
    }

    /// A key kept earlier (in an unlock link's record).
    pub fn from_stored(key: String) -> Self {
        Self(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One sign-in attempt, as the throttle sees it.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub account: AccountKey,
    /// `ip_bucket` of the client address.
    pub address: String,
    /// The device id (hash of the device cookie), when the device has signed in to this
    /// account before.
    pub known_device: Option<String>,
}

/// What refused an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Account,
    Device,
    Address,
}

/// A lock: until when, or `None` until an unlock link, a reset or support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lock {
    pub scope: Scope,
    pub until: Option<OffsetDateTime>,
}

/// The answer to [`Throttle::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go on and check the password. `locks` is the lock this attempt sets if it fails
    /// (the attempt that sets a lock is the only one told, so its owner gets one mail
    /// per lock period).
    Admitted {
        locks: Option<Lock>,
    },
    Refused(Lock),
}

#[derive(Clone, Debug)]
pub struct Throttle {
    store: Ephemeral,
    clock: Clock,
    config: ThrottleConfig,
}

/// Consecutive failures and the lock they set (times in unix ms; 0: none).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Count {
    #[serde(default)]
    n: u32,
    /// The last failure.
    #[serde(default)]
    last: i64,
    /// End of the lock.
    #[serde(default)]
    until: i64,
}

impl Count {
    /// The later of the last failure and the lock's end: `memory` after it the count is
    /// forgotten.
    fn end(&self) -> i64 {
        self.last.max(self.until)
    }

    fn locked(&self, now: i64) -> Option<i64> {
        (self.until > now).then_some(self.until)
    }

    /// Counts one failure; the end of the lock it sets, if it sets one (every `per`-th).
    fn fail(&mut self, throttle: &Throttle, per: u32, now: i64) -> Option<i64> {
        self.n += 1;
        self.last = now;
        let lock = throttle.lock_after(self.n, per, now);
        if let Some(until) = lock {
            self.until = until;
        }
        lock
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AccountState {
    /// The count of devices not known to the account.
    #[serde(default, flatten)]
    count: Count,
    /// Locked until unlocked (the failure cap was reached).
    #[serde(default)]
    hard: bool,
    /// Client address buckets that counted this account.
    #[serde(default)]
    ips: Vec<String>,
    /// Known devices' own counts, by device id.
    #[serde(default)]
    dev: BTreeMap<String, Count>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AddressState {
    /// Account key → its last failure from this address (unix ms).
    #[serde(default)]
    acc: BTreeMap<String, i64>,
    /// Refused until (unix ms; 0: not refused).
    #[serde(default)]
    until: i64,
}

impl AddressState {
    /// When nothing in it matters any more: its last failure has left the window and
    /// its refusal has ended.
    fn expiry(&self, window: i64) -> i64 {
        let last = self.acc.values().max().map_or(0, |l| l + window);
        last.max(self.until)
    }
}

/// What a change to a stored state decided: write it back, or leave the store alone.
enum Step<T> {
    Write(T),
    Keep(T),
}

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Beyond what `OffsetDateTime` holds a time saturates: a lock never ends early.
fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(if ms > 0 {
        time::macros::datetime!(9999-12-31 0:00 UTC)
    } else {
        OffsetDateTime::UNIX_EPOCH
    })
}

fn minutes(m: u32) -> i64 {
    i64::from(m) * 60_000
}

fn account_key(account: &AccountKey) -> String {
    format!("throttle:acct:{}", account.0)
}

fn address_key(bucket: &str) -> String {
    format!("throttle:ip:{bucket}")
}

impl Throttle {
    pub fn new(store: Ephemeral, clock: Clock, config: ThrottleConfig) -> Self {
        Self {
            store,
            clock,
            config,
        }
    }

    /// The lock of the `k`-th lock period (1, 2, 4 … × `lock_minutes`, at most
    /// `max_lock_minutes`), in ms.
    fn lock_ms(&self, k: u32) -> i64 {
        let base = minutes(self.config.lock_minutes);
        let max = minutes(self.config.max_lock_minutes);
        let doublings = k.saturating_sub(1).min(40);
        base.saturating_mul(1_i64 << doublings).min(max)
    }

    /// Counts a failure of `n` consecutive ones: the lock it sets, if any.
    fn lock_after(&self, n: u32, per: u32, now: i64) -> Option<i64> {
        (per > 0 && n > 0 && n.is_multiple_of(per))
            .then(|| now.saturating_add(self.lock_ms(n / per)))
    }

    /// Forgets failures old enough to drop out.
    fn prune(&self, s: &mut AccountState, now: i64) {
        let memory = minutes(self.config.failure_memory_minutes);
        if !s.hard && now >= s.count.end() + memory {
            s.count = Count::default();
        }
        s.dev.retain(|_, d| now < d.end() + memory);
    }

    fn expiry(&self, s: &AccountState, now: i64) -> i64 {
        if s.hard {
            return now + i64::from(self.config.hard_lock_days) * 24 * 3_600_000;
        }
        let memory = minutes(self.config.failure_memory_minutes);
        let devices = s.dev.values().map(Count::end).max().unwrap_or(0);
        s.count.end().max(devices) + memory
    }

    /// The lock devices not known to the account meet.
    fn lock_of(s: &AccountState, now: i64) -> Option<Lock> {
        if s.hard {
            return Some(Lock {
                scope: Scope::Account,
                until: None,
            });
        }
        s.count.locked(now).map(|until| Lock {
            scope: Scope::Account,
            until: Some(at(until)),
        })
    }

    /// Reads, changes and writes one value, retrying when another request changed it
    /// in between; `expiry` says until when to keep what `change` made (`None`: nothing
    /// worth keeping).
    async fn update<S, T>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut S, i64) -> Step<T>,
        expiry: impl Fn(&S, i64) -> Option<i64>,
    ) -> Result<T, EphemeralError>
    where
        S: Default + Serialize + for<'de> Deserialize<'de>,
    {
        for _ in 0..MAX_SWAPS {
            let read = self.store.get_versioned(key).await?;
            let mut state: S = match &read.value {
                // A value we cannot read (an older format) is started afresh.
                Some(bytes) => serde_json::from_slice(bytes).unwrap_or_default(),
                None => S::default(),
            };
            let now = ms(self.clock.now());
            let answer = match change(&mut state, now) {
                Step::Keep(answer) => return Ok(answer),
                Step::Write(answer) => answer,
            };
            let stored = match expiry(&state, now) {
                Some(until) if until > now => {
                    let bytes =
                        serde_json::to_vec(&state).map_err(|_| EphemeralError::Malformed)?;
                    self.store
                        .swap(key, read.version.as_deref(), &bytes, at(until))
                        .await?
                }
                // Nothing worth keeping, and nothing there.
                _ if read.version.is_none() => true,
                // Nothing worth keeping: replace it with a value that expires at once
                // (which a concurrent writer's swap would have beaten).
                _ => {
                    self.store
                        .swap(key, read.version.as_deref(), b"{}", at(now))
                        .await?
                }
            };
            if stored {
                return Ok(answer);
            }
        }
        Err(EphemeralError::Unavailable(format!(
            "{key} changed under {MAX_SWAPS} tries in a row"
        )))
    }

    /// Decides whether an attempt may check a password, and counts it as a failure in
    /// advance (see the module). A refusal writes nothing.
    pub async fn admit(&self, attempt: &Attempt) -> Result<Admission, EphemeralError> {
        let c = &self.config;
        // The address limit does not hold for a known device on its own account.
        if attempt.known_device.is_none()
            && c.ip_accounts > 0
            && let Some(lock) = self.admit_address(attempt).await?
        {
            return Ok(Admission::Refused(lock));
        }
        self.update(
            &account_key(&attempt.account),
            |s: &mut AccountState, now| {
                self.prune(s, now);
                if let Some(device) = &attempt.known_device {
                    let d = s.dev.entry(device.clone()).or_default();
                    if let Some(until) = d.locked(now) {
                        return Step::Keep(Admission::Refused(Lock {
                            scope: Scope::Device,
                            until: Some(at(until)),
                        }));
                    }
                    let locks = d.fail(self, c.device_failures, now).map(|u| Lock {
                        scope: Scope::Device,
                        until: Some(at(u)),
                    });
                    return Step::Write(Admission::Admitted { locks });
                }
                if let Some(lock) = Self::lock_of(s, now) {
                    return Step::Keep(Admission::Refused(lock));
                }
                let timed = s.count.fail(self, c.account_failures, now);
                if !s.ips.contains(&attempt.address) {
                    if s.ips.len() >= MAX_ADDRESSES {
                        s.ips.remove(0);
                    }
                    s.ips.push(attempt.address.clone());
                }
                let locks = if c.hard_lock_failures > 0 && s.count.n >= c.hard_lock_failures {
                    s.hard = true;
                    Some(Lock {
                        scope: Scope::Account,
                        until: None,
                    })
                } else {
                    timed.map(|u| Lock {
                        scope: Scope::Account,
                        until: Some(at(u)),
                    })
                };
                Step::Write(Admission::Admitted { locks })
            },
            |s, now| Some(self.expiry(s, now)),
        )
        .await
    }

    /// Counts the account in the address's accounts, in one compare-and-swap with the
    /// check, so that guesses at many accounts sent all at once cannot all slip under
    /// the limit. The account that would be one too many is refused, and refuses the
    /// address for `ip_block_minutes`.
    async fn admit_address(&self, attempt: &Attempt) -> Result<Option<Lock>, EphemeralError> {
        let c = &self.config;
        let window = minutes(c.ip_window_minutes);
        let limit = c.ip_accounts as usize;
        let refused = |until: i64| {
            Some(Lock {
                scope: Scope::Address,
                until: Some(at(until)),
            })
        };
        self.update(
            &address_key(&attempt.address),
            |s: &mut AddressState, now| {
                if s.until > now {
                    return Step::Keep(refused(s.until));
                }
                s.acc.retain(|_, last| now < *last + window);
                if !s.acc.contains_key(&attempt.account.0) && s.acc.len() >= limit {
                    s.until = now + minutes(c.ip_block_minutes);
                    return Step::Write(refused(s.until));
                }
                s.acc.insert(attempt.account.0.clone(), now);
                Step::Write(None)
            },
            |s, _| Some(s.expiry(window)),
        )
        .await
    }

    /// The password was right. The attempt counted in advance is taken back and the
    /// account leaves the address's count. A device not known to the account ends the
    /// account's consecutive failures (and its lock, which a parallel guess may have
    /// set); a known device ends only its own: an attack going on meanwhile gets no
    /// fresh guesses (nor escapes the failure cap) because the owner signed in.
    pub async fn succeeded(&self, attempt: &Attempt) -> Result<(), EphemeralError> {
        self.update(
            &account_key(&attempt.account),
            |s: &mut AccountState, now| {
                self.prune(s, now);
                match &attempt.known_device {
                    Some(device) => {
                        s.dev.remove(device);
                    }
                    None => {
                        s.count = Count::default();
                        s.hard = false;
                    }
                }
                Step::Write(())
            },
            |s, now| {
                (s.count.n > 0 || s.hard || s.count.until > now || !s.dev.is_empty())
                    .then(|| self.expiry(s, now))
            },
        )
        .await?;
        self.forget_in_address(&attempt.account, &attempt.address)
            .await
    }

    /// Takes back an attempt counted by `admit` whose password was never checked (the
    /// hasher was busy, or the check failed): a server under load must not lock its
    /// members out. `locks` is what `admit` said the attempt would lock; that lock is
    /// lifted again. The address's count keeps the account (it counts accounts, not
    /// attempts, and the account was tried).
    pub async fn refund(
        &self,
        attempt: &Attempt,
        locks: Option<Lock>,
    ) -> Result<(), EphemeralError> {
        self.update(
            &account_key(&attempt.account),
            |s: &mut AccountState, _| {
                let count = match &attempt.known_device {
                    Some(device) => match s.dev.get_mut(device) {
                        Some(d) => d,
                        None => return Step::Keep(()),
                    },
                    None => &mut s.count,
                };
                count.n = count.n.saturating_sub(1);
                match locks {
                    Some(Lock { until: None, .. }) => s.hard = false,
                    Some(_) => count.until = 0,
                    None => {}
                }
                Step::Write(())
            },
            |s, now| Some(self.expiry(s, now)),
        )
        .await
    }

    async fn forget_in_address(
        &self,
        account: &AccountKey,
        address: &str,
    ) -> Result<(), EphemeralError> {
        let window = minutes(self.config.ip_window_minutes);
        self.update(
            &address_key(address),
            |s: &mut AddressState, _| match s.acc.remove(&account.0) {
                Some(_) => Step::Write(()),
                None => Step::Keep(()),
            },
            |s, _| Some(s.expiry(window)),
        )
        .await
    }

    /// The lock an unknown device meets on this account now, if any.
    pub async fn account_lock(&self, account: &AccountKey) -> Result<Option<Lock>, EphemeralError> {
        let Some(bytes) = self.store.get(&account_key(account)).await? else {
            return Ok(None);
        };
        let mut s: AccountState = serde_json::from_slice(&bytes).unwrap_or_default();
        let now = ms(self.clock.now());
        self.prune(&mut s, now);
        Ok(Self::lock_of(&s, now))
    }

    /// Clears the account's count and lock, its devices' counts, and its failures in
    /// every address's count (support, the unlock link, a password reset).
    pub async fn unlock_account(&self, account: &AccountKey) -> Result<(), EphemeralError> {
        let key = account_key(account);
        if let Some(bytes) = self.store.take(&key).await? {
            let s: AccountState = serde_json::from_slice(&bytes).unwrap_or_default();
            for address in &s.ips {
                self.forget_in_address(account, address).await?;
            }
        }
        Ok(())
    }

    /// Clears one client address's count and refusal (`ip_bucket` form).
    pub async fn unlock_address(&self, bucket: &str) -> Result<(), EphemeralError> {
        self.store.delete(&address_key(bucket)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        throttle_on(Clock::system())
    }

    fn throttle_on(clock: Clock) -> Throttle {
        throttle_with(clock, ThrottleConfig::default())
    }

    /// The lock an admitted attempt would set; a refusal fails the test.
    async fn admitted(t: &Throttle, attempt: &Attempt) -> Option<Lock> {
        match t.admit(attempt).await.unwrap() {
            Admission::Admitted { locks } => locks,
            Admission::Refused(lock) => panic!("refused: {lock:?}"),
        }
    }

    #[test]
    fn locks_double_from_one_minute_up_to_a_day() {
        let t = throttle();
        let m = |k| t.lock_ms(k) / 60_000;
        assert_eq!(
            (1..=12).map(m).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1440]
        );
        assert_eq!(m(19), 1440);
        assert_eq!(m(200), 1440);
    }

    #[tokio::test]
    async fn an_attempt_taken_back_neither_counts_nor_locks() {
        let t = throttle();
        let attempt = stranger_at("192.0.2.1");
        let admit = || admitted(&t, &attempt);
        // Taken back at once: never a second failure.
        for _ in 0..10 {
            let locks = admit().await;
            assert_eq!(locks, None);
            t.refund(&attempt, locks).await.unwrap();
        }
        // Four counted; the fifth would lock, but is taken back: no lock, and the next
        // counted one locks.
        for _ in 0..4 {
            assert_eq!(admit().await, None);
        }
        let locks = admit().await;
        assert!(locks.is_some());
        assert!(t.account_lock(&attempt.account).await.unwrap().is_some());
        t.refund(&attempt, locks).await.unwrap();
        assert_eq!(t.account_lock(&attempt.account).await.unwrap(), None);
        assert!(admit().await.is_some());
        assert!(t.account_lock(&attempt.account).await.unwrap().is_some());
    }

    #[test]
    fn only_every_fifth_failure_locks() {
        let t = throttle();
        let locks: Vec<u32> = (1..=20)
            .filter(|n| t.lock_after(*n, 5, 0).is_some())
            .collect();
        assert_eq!(locks, [5, 10, 15, 20]);
        assert_eq!(t.lock_after(5, 0, 0), None, "0 turns the lock off");
    }

    /// The owner's phone: a device known to the account `attempt` names.
    fn owners_phone(attempt: &Attempt) -> Attempt {
        Attempt {
            known_device: Some("owners-phone".to_owned()),
            ..attempt.clone()
        }
    }

    /// Four failures of `counted`; 14 minutes later one of `keeper` keeps the account's
    /// record alive for 15 more; at 15 minutes `counted`'s four are forgotten all the
    /// same: four more pass and the fifth since then sets the lock of `scope`.
    async fn forgotten_while_another_keeps_the_record(counted: &Attempt, keeper: &Attempt) {
        let clock = Clock::manual_at_now();
        let t = throttle_on(clock.clone());
        for _ in 0..4 {
            assert_eq!(admitted(&t, counted).await, None);
        }
        clock.advance(time::Duration::minutes(14));
        assert_eq!(admitted(&t, keeper).await, None);
        clock.advance(time::Duration::minutes(1));
        for _ in 0..4 {
            assert_eq!(admitted(&t, counted).await, None);
        }
        let scope = match counted.known_device {
            Some(_) => Scope::Device,
            None => Scope::Account,
        };
        let lock = admitted(&t, counted)
            .await
            .expect("the fifth since then locks");
        assert_eq!(lock.scope, scope);
    }

    #[tokio::test]
    async fn failures_are_forgotten_after_the_memory_even_while_a_device_keeps_the_record() {
        let stranger = stranger_at("192.0.2.1");
        forgotten_while_another_keeps_the_record(&stranger, &owners_phone(&stranger)).await;
    }

    #[tokio::test]
    async fn a_known_devices_failures_are_forgotten_after_the_memory_while_others_keep_the_record()
    {
        let stranger = stranger_at("192.0.2.1");
        forgotten_while_another_keeps_the_record(&owners_phone(&stranger), &stranger).await;
    }

    fn throttle_with(clock: Clock, config: ThrottleConfig) -> Throttle {
        Throttle::new(
            std::sync::Arc::new(crate::store::ephemeral::MemoryStore::new(clock.clone())),
            clock,
            config,
        )
    }

    /// An attempt at `email`'s account from `address`, on a device it does not know.
    fn attempt(email: &str, address: &str) -> Attempt {
        let ids = crate::keys::IdentifierHasher::for_tests();
        Attempt {
            account: AccountKey::of(&ids, email),
            address: address.to_owned(),
            known_device: None,
        }
    }

    fn stranger_at(address: &str) -> Attempt {
        attempt("hanako@example.jp", address)
    }

    /// A known device's success keeps a lock that is still running (the lock belongs to
    /// the strangers' guesses) even once refunds took its count to zero, and forgets one
    /// that has ended.
    #[tokio::test]
    async fn a_known_devices_success_keeps_a_running_lock_and_forgets_an_ended_one() {
        let clock = Clock::manual_at_now();
        let t = throttle_on(clock.clone());
        let stranger = stranger_at("192.0.2.1");
        for _ in 0..4 {
            assert_eq!(admitted(&t, &stranger).await, None);
        }
        let lock = admitted(&t, &stranger).await.expect("the fifth locks");
        for _ in 0..5 {
            t.refund(&stranger, None).await.unwrap();
        }
        let phone = owners_phone(&stranger);
        assert_eq!(admitted(&t, &phone).await, None);
        t.succeeded(&phone).await.unwrap();
        assert_eq!(t.account_lock(&stranger.account).await.unwrap(), Some(lock));
        clock.advance(time::Duration::minutes(1));
        assert_eq!(admitted(&t, &phone).await, None);
        t.succeeded(&phone).await.unwrap();
        assert_eq!(
            t.store.get(&account_key(&stranger.account)).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn an_address_limit_of_zero_turns_it_off() {
        let t = throttle_with(
            Clock::manual_at_now(),
            ThrottleConfig {
                ip_accounts: 0,
                ..ThrottleConfig::default()
            },
        );
        for n in 0..40 {
            let guess = attempt(&format!("member{n}@example.jp"), "192.0.2.1");
            assert_eq!(admitted(&t, &guess).await, None, "account {n}");
        }
    }

    /// What the throttle stores lives as long as it matters and no longer: a failure's
    /// records are gone from the store once it has left the account's memory and the
    /// address's window.
    #[tokio::test]
    async fn a_failures_records_expire_with_its_memory_and_window() {
        let clock = Clock::manual_at_now();
        let t = throttle_on(clock.clone());
        let stranger = stranger_at("192.0.2.1");
        assert_eq!(admitted(&t, &stranger).await, None);
        let keys = [account_key(&stranger.account), address_key("192.0.2.1")];
        for key in &keys {
            assert!(t.store.get(key).await.unwrap().is_some(), "{key} kept");
        }
        clock.advance(time::Duration::minutes(15) - time::Duration::seconds(1));
        for key in &keys {
            assert!(
                t.store.get(key).await.unwrap().is_some(),
                "{key} still kept"
            );
        }
        clock.advance(time::Duration::seconds(1));
        for key in &keys {
            assert_eq!(t.store.get(key).await.unwrap(), None, "{key} expired");
        }
    }

    #[test]
    fn times_are_kept_in_milliseconds_and_saturate_beyond_what_a_date_holds() {
        let epoch = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(ms(epoch + time::Duration::milliseconds(1_500)), 1_500);
        assert_eq!(
            ms(time::macros::datetime!(2026-01-01 0:00 UTC)),
            1_767_225_600_000
        );
        assert_eq!(at(1_500), epoch + time::Duration::milliseconds(1_500));
        assert_eq!(
            at(1_767_225_600_000),
            time::macros::datetime!(2026-01-01 0:00 UTC)
        );
        // A lock that would end beyond year 9999 ends then, never early; before 1970, never.
        assert_eq!(at(i64::MAX), time::macros::datetime!(9999-12-31 0:00 UTC));
        assert_eq!(at(i64::MIN), epoch);
        assert_eq!(minutes(15), 900_000);
    }

    #[test]
    fn a_lock_ends_its_period_after_the_failure_that_set_it() {
        let t = throttle();
        assert_eq!(t.lock_after(0, 5, 1_000), None, "no failure locks nothing");
        assert_eq!(t.lock_after(5, 5, 1_000), Some(61_000));
        assert_eq!(t.lock_after(10, 5, 1_000), Some(121_000));
        assert_eq!(t.lock_after(7, 5, 1_000), None);
    }

    #[tokio::test]
    async fn the_failure_cap_locks_for_its_days_however_long_ago_the_last_failure() {
        let clock = Clock::manual_at_now();
        let t = throttle_with(
            clock.clone(),
            ThrottleConfig {
                account_failures: 0,
                hard_lock_failures: 3,
                ..ThrottleConfig::default()
            },
        );
        let attempt = stranger_at("192.0.2.1");
        assert_eq!(admitted(&t, &attempt).await, None);
        assert_eq!(admitted(&t, &attempt).await, None);
        let hard = Lock {
            scope: Scope::Account,
            until: None,
        };
        assert_eq!(admitted(&t, &attempt).await, Some(hard));
        // Long past the failures' memory, up to the last second of the 30 days: locked.
        clock.advance(time::Duration::days(30) - time::Duration::seconds(1));
        assert_eq!(t.account_lock(&attempt.account).await.unwrap(), Some(hard));
        assert_eq!(t.admit(&attempt).await.unwrap(), Admission::Refused(hard));
        // A refusal writes nothing: the 30 days still run from the last counted failure.
        clock.advance(time::Duration::seconds(1));
        assert_eq!(t.account_lock(&attempt.account).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_success_from_a_new_device_keeps_the_known_devices_own_counts() {
        let clock = Clock::manual_at_now();
        let t = throttle_on(clock.clone());
        let stranger = stranger_at("192.0.2.1");
        let device = owners_phone(&stranger);
        for _ in 0..4 {
            assert_eq!(admitted(&t, &device).await, None);
        }
        // The member signs in on a new laptop: the account's count ends, the phone's not.
        assert_eq!(admitted(&t, &stranger).await, None);
        t.succeeded(&stranger).await.unwrap();
        let lock = admitted(&t, &device)
            .await
            .expect("the phone's fifth failure locks it");
        assert_eq!(lock.scope, Scope::Device);
    }

    #[tokio::test]
    async fn an_unlock_reaches_the_last_thirty_two_addresses_an_account_was_tried_from() {
        // One account per address, remembered for the unlock; an account tried from more
        // addresses than are remembered stays counted at the oldest.
        let t = throttle_with(
            Clock::manual_at_now(),
            ThrottleConfig {
                ip_accounts: 1,
                account_failures: 0,
                hard_lock_failures: 0,
                ..ThrottleConfig::default()
            },
        );
        let address = |n: usize| format!("192.0.2.{n}");
        let victim = |n: usize| stranger_at(&address(n));
        for n in 0..=MAX_ADDRESSES {
            assert_eq!(admitted(&t, &victim(n)).await, None);
        }
        t.unlock_account(&victim(0).account).await.unwrap();
        let other = |n: usize| attempt("taro@example.jp", &address(n));
        assert_eq!(
            admitted(&t, &other(1)).await,
            None,
            "the unlock reached 192.0.2.1"
        );
        assert_eq!(admitted(&t, &other(MAX_ADDRESSES)).await, None);
        let refused = t.admit(&other(0)).await.unwrap();
        assert!(
            matches!(
                refused,
                Admission::Refused(Lock {
                    scope: Scope::Address,
                    ..
                })
            ),
            "the 33rd address back was not remembered: {refused:?}"
        );
    }

    #[tokio::test]
    async fn a_lock_ends_at_its_end_to_the_millisecond() {
        let clock = Clock::manual_at_now();
        let t = throttle_on(clock.clone());
        let attempt = stranger_at("192.0.2.1");
        for _ in 0..4 {
            assert_eq!(admitted(&t, &attempt).await, None);
        }
        assert!(
            admitted(&t, &attempt).await.is_some(),
            "the fifth locks for a minute"
        );
        clock.advance(time::Duration::minutes(1) - time::Duration::milliseconds(1));
        assert!(matches!(
            t.admit(&attempt).await.unwrap(),
            Admission::Refused(_)
        ));
        clock.advance(time::Duration::milliseconds(1));
        assert_eq!(admitted(&t, &attempt).await, None, "the minute is over");
    }

    fn account(email: &str) -> Attempt {
        attempt(email, "192.0.2.1")
    }

    #[tokio::test]
    async fn an_accounts_failure_leaves_the_addresss_window_at_its_end_to_the_millisecond() {
        // Two accounts per address: the second's later failure keeps the address's
        // record after the first's has left the window.
        let clock = Clock::manual_at_now();
        let t = throttle_with(
            clock.clone(),
            ThrottleConfig {
                ip_accounts: 2,
                ..ThrottleConfig::default()
            },
        );
        assert_eq!(admitted(&t, &account("hanako@example.jp")).await, None);
        clock.advance(time::Duration::minutes(5));
        assert_eq!(admitted(&t, &account("jiro@example.jp")).await, None);
        clock.advance(time::Duration::minutes(10));
        assert_eq!(
            admitted(&t, &account("taro@example.jp")).await,
            None,
            "the first account's failure is 15 minutes old: out of the window"
        );
    }

    #[tokio::test]
    async fn an_addresss_refusal_ends_at_its_end_to_the_millisecond() {
        // A refusal shorter than the window: at its end the address's record is still
        // there, and the account it counts may try again.
        let clock = Clock::manual_at_now();
        let t = throttle_with(
            clock.clone(),
            ThrottleConfig {
                ip_accounts: 1,
                ip_block_minutes: 5,
                ..ThrottleConfig::default()
            },
        );
        let (counted, other) = (account("hanako@example.jp"), account("taro@example.jp"));
        assert_eq!(admitted(&t, &counted).await, None);
        clock.advance(time::Duration::minutes(1));
        let Admission::Refused(lock) = t.admit(&other).await.unwrap() else {
            panic!("a second account from the address is one too many");
        };
        assert_eq!(lock.scope, Scope::Address);
        assert_eq!(lock.until, Some(clock.now() + time::Duration::minutes(5)));
        clock.advance(time::Duration::minutes(5) - time::Duration::milliseconds(1));
        assert!(matches!(
            t.admit(&counted).await.unwrap(),
            Admission::Refused(_)
        ));
        clock.advance(time::Duration::milliseconds(1));
        assert_eq!(admitted(&t, &counted).await, None, "the refusal is over");
    }
}
