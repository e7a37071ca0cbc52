//! Passwords: the policy (in the `Password` type, so a weak one cannot reach the hasher)
//! and argon2id hashing on threads of its own, bounded in number and below the request
//! threads in priority.
//!
//! Passwords are NFKC-normalised before anything else (NIST SP 800-63B §5.1.1.2), so a
//! full-width password typed on a phone matches the half-width one typed on a PC. They
//! are never trimmed: spaces are characters.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, RECOMMENDED_SALT_LEN, Version};

use tokio::sync::{Semaphore, oneshot};
use unicode_normalization::UnicodeNormalization;

use crate::authn::feedback::StrengthFeedback;
use crate::config::PasswordConfig;
use crate::domain::Email;
use crate::web::i18n::Msg;

pub const MIN_CHARS: usize = 8;
pub const MAX_CHARS: usize = 128;
/// zxcvbn's "safely unguessable: moderate protection from offline slow-hash scenario".
const MIN_ZXCVBN_SCORE: u8 = 3;
/// A local part shorter than this ("jo@…") would forbid too many good passwords.
const MIN_LOCAL_PART_CHECKED: usize = 4;

/// A password that satisfies the policy, NFKC-normalised.
#[derive(Clone)]
pub struct Password(String);

/// Not `Copy` (nor `Eq`: zxcvbn's enums are only `PartialEq`): `TooWeak` carries the
/// advice the page shows next to the refusal.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PasswordPolicyError {
    #[error("shorter than {MIN_CHARS} characters")]
    TooShort,
    #[error("longer than {MAX_CHARS} characters")]
    TooLong,
    /// zxcvbn scored it below `MIN_ZXCVBN_SCORE`; `feedback` says why and what to do.
    #[error("too easy to guess")]
    TooWeak { feedback: StrengthFeedback },
    #[error("contains part of the email address")]
    ContainsEmail,
}

/// The headline message; for `TooWeak` the page adds the feedback's warning and
/// suggestions below it.
impl From<&PasswordPolicyError> for Msg {
    fn from(e: &PasswordPolicyError) -> Self {
        match e {
            PasswordPolicyError::TooShort => Msg::PasswordTooShort,
            PasswordPolicyError::TooLong => Msg::PasswordTooLong,
            PasswordPolicyError::TooWeak { .. } => Msg::PasswordTooWeak,
            PasswordPolicyError::ContainsEmail => Msg::PasswordContainsEmail,
        }
    }
}

impl From<PasswordPolicyError> for Msg {
    fn from(e: PasswordPolicyError) -> Self {
        Self::from(&e)
    }
}

impl Password {
    /// A new password for the account of `email`, checked against the policy.
    pub fn new(raw: &str, email: &Email) -> Result<Self, PasswordPolicyError> {
        let normalized: String = raw.nfkc().collect();
        // Code points, not bytes: "パスワード" is five characters (SP 800-63B).
        let chars = normalized.chars().count();
        if chars < MIN_CHARS {
            return Err(PasswordPolicyError::TooShort);
        }
        if chars > MAX_CHARS {
            return Err(PasswordPolicyError::TooLong);
        }
        let local = email.local_part();
        if local.chars().count() >= MIN_LOCAL_PART_CHECKED
            && normalized.to_lowercase().contains(local)
        {
            return Err(PasswordPolicyError::ContainsEmail);
        }
        let strength = zxcvbn::zxcvbn(&normalized, &[local, email.normalized()]);
        if u8::from(strength.score()) < MIN_ZXCVBN_SCORE {
            return Err(PasswordPolicyError::TooWeak {
                feedback: StrengthFeedback::from_zxcvbn(strength.feedback()),
            });
        }
        Ok(Self(normalized))
    }

    /// A password typed at sign-in: normalised the same way, never policy-checked (the
    /// policy of the day it was set is what it had to meet).
    pub fn for_verification(raw: &str) -> Self {
        Self(raw.nfkc().collect())
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// argon2id with a bound on concurrent hashes: each hash holds `m` KiB of memory and
/// a core for ~15 ms, so a burst of sign-ins queues here instead of exhausting memory or
/// stalling the async runtime.
///
/// The hashes run on threads of their own (`tobira-hash`, one per permit), at a lower
/// scheduling priority than the runtime's (`password.hashing_nice`): when a hash and a
/// request both want a core, the request runs first, so a storm of sign-ins slows the
/// token endpoint far less, while hashes still have every core nobody else wants.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// Hashes waiting for a permit, and how many may wait (0: no bound). Beyond it a
    /// request is refused at once (503) instead of queueing until it times out: under a
    /// flood, a quick "try again" serves members better than a 30-second hang.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// argon2's working memory (`m` KiB per hash), kept for the next hash instead of
    /// freed: at most one per permit. Allocated afresh for each hash, the blocks stayed
    /// in the allocator's per-thread arenas of whichever blocking thread ran it, and the
    /// server's memory grew with every hash (to 475 MB after 500 verifies with two
    /// permits, where the reused blocks hold it at 45 MB). Not cleared between hashes,
    /// as argon2 does not clear its own: the next hash overwrites them.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    threads: Arc<HashingThreads>,
}

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads. A job is sent only with a permit, and there is a thread per
/// permit, so a job waits here at most for a thread to finish handing back its last
/// answer. The threads end when the last clone of the hasher is dropped (the channel
/// closes).
struct HashingThreads {
    jobs: mpsc::Sender<Job>,
    /// The threads' shared end of the channel: gone once every thread has ended.
    #[cfg(test)]
    queue: std::sync::Weak<Mutex<mpsc::Receiver<Job>>>,
}

impl HashingThreads {
    fn start(count: usize, nice: i32) -> Result<Self, HashError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        #[cfg(test)]
        let weak = Arc::downgrade(&queue);
        for _ in 0..count {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name("tobira-hash".into())
                .spawn(move || {
                    lower_priority(nice);
                    loop {
                        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok(job) = job else { return };
                        // A panic fails its own hash (its answer is dropped), not the
                        // thread: the pool keeps its size.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                    }
                })
                .map_err(|e| HashError::Thread(e.to_string()))?;
        }
        Ok(Self {
            jobs,
            #[cfg(test)]
            queue: weak,
        })
    }

    fn run(&self, job: Job) -> Result<(), HashError> {
        self.jobs
            .send(job)
            .map_err(|_| HashError::Thread("the hashing threads have stopped".into()))
    }
}

/// Lowers the calling thread's scheduling priority by `nice` levels (at most to 19), as
/// `nice -n` would: on Linux the nice value is the thread's own. Raising it back would
/// need a privilege, which is why hashes have threads of their own rather than the
/// runtime's shared blocking pool. Where it cannot be lowered, hashes run at the
/// process's priority, as before, and the reason is logged.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid, getpriority and setpriority take and return plain integers.
        // getpriority cannot fail for the calling thread (its -1 is a nice value).
        let lowered = unsafe {
            let tid = libc::gettid() as libc::id_t;
            let own = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, own.saturating_add(nice).min(19))
        };
        if lowered != 0 {
            tracing::warn!(
                nice,
                error = %std::io::Error::last_os_error(),
                "could not lower the hashing thread's priority"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    tracing::debug!(nice, "thread priorities are set on Linux only");
}

/// Counts a waiting hash for as long as it waits, including when its request is dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Who waits for a hash: anyone up to the waiting bound; the sign-in of a device known
/// to its account up to twice that (still bounded: a known device is throttled on its
/// own, but its owner could script it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    Anyone,
    KnownDevice,
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Argon2(String),
    #[error("password hashing thread failed: {0}")]
    Thread(String),
    #[error("too many password hashes are waiting")]
    Busy,
}

impl PasswordHasher {
    /// `config` has been validated (`Config::validate` checks the parameters).
    pub fn new(
        config: &PasswordConfig,
        max_concurrent: usize,
        max_waiting: usize,
    ) -> Result<Self, HashError> {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .map_err(|e| HashError::Argon2(e.to_string()))?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
            memory: Arc::new(Mutex::new(Vec::new())),
            threads: Arc::new(HashingThreads::start(
                max_concurrent.max(1),
                config.hashing_nice,
            )?),
        })
    }

    /// Gives back the kept working memory (the next hashes allocate it again). For the
    /// hash made at start-up: a server that nobody signs in to holds none.
    pub fn release_memory(&self) {
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many hashes wait for a free hashing thread now (the queue whose bound turns
    /// sign-ins away with 503).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) with a random salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let password = password.clone();
        let params = self.params.clone();
        self.blocking(Queue::Anyone, move |memory| {
            let salt: [u8; RECOMMENDED_SALT_LEN] = rand::random();
            let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
            let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
            argon2
                .hash_password_into_with_memory(
                    password.as_bytes(),
                    &salt,
                    &mut out,
                    blocks(memory, params.block_count()),
                )
                .map_err(argon2_error)?;
            let phc = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&params).map_err(argon2_error)?,
                salt: Some(Salt::new(&salt).map_err(argon2_error)?),
                hash: Some(Output::new(&out).map_err(argon2_error)?),
            };
            Ok(phc.to_string())
        })
        .await
    }

    /// Whether `password` matches the PHC string. The parameters come from the string,
    /// so hashes made under older settings keep verifying.
    pub async fn verify(&self, password: &Password, phc: &str) -> Result<bool, HashError> {
        self.verify_queued(password, phc, Queue::Anyone).await
    }

    /// Like `verify`, in the given queue: the sign-in of a device known to its account
    /// may wait where others are already refused, so that a flood of guesses from
    /// elsewhere, which fills the queue, makes the owner wait rather than fail.
    pub async fn verify_queued(
        &self,
        password: &Password,
        phc: &str,
        queue: Queue,
    ) -> Result<bool, HashError> {
        let password = password.clone();
        let phc = PasswordHash::new(phc).map_err(argon2_error)?;
        let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
            return Err(HashError::Argon2(
                "the PHC string has no salt or hash".into(),
            ));
        };
        let algorithm = Algorithm::try_from(phc.algorithm.as_str()).map_err(argon2_error)?;
        let version = phc
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(argon2_error)?
            .unwrap_or_default();
        let params = Params::try_from(&phc).map_err(argon2_error)?;
        let pooled = self.params.block_count();
        self.blocking(queue, move |memory| {
            let mut out = vec![0u8; expected.len()];
            let needed = params.block_count();
            let argon2 = Argon2::new(algorithm, version, params);
            let computed = if needed <= pooled {
                argon2.hash_password_into_with_memory(
                    password.as_bytes(),
                    &salt,
                    &mut out,
                    blocks(memory, needed),
                )
            } else {
                // More memory than any hash made under this configuration: an old
                // setting's hash, verified once with memory of its own.
                argon2.hash_password_into(password.as_bytes(), &salt, &mut out)
            };
            computed.map_err(argon2_error)?;
            // `Output`'s comparison takes the same time wherever the bytes differ.
            Ok(Output::new(&out).map_err(argon2_error)? == expected)
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        queue: Queue,
        work: impl FnOnce(&mut Vec<Block>) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let bound = match queue {
            Queue::Anyone => self.max_waiting,
            Queue::KnownDevice => self.max_waiting.saturating_mul(2),
        };
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let before = self.waiting.fetch_add(1, Ordering::AcqRel);
                let waiting = Waiting(&self.waiting);
                if bound > 0 && before >= bound {
                    return Err(HashError::Busy);
                }
                let permit = Arc::clone(&self.permits)
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                drop(waiting);
                permit
            }
        };
        let pool = Arc::clone(&self.memory);
        let (answer, answered) = oneshot::channel();
        self.threads.run(Box::new(move || {
            let mut memory = pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .unwrap_or_default();
            let result = work(&mut memory);
            pool.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(memory);
            // Given back before the answer, so that whoever got the answer finds the
            // thread free. The request may be gone: the hash held its permit anyway.
            drop(permit);
            let _ = answer.send(result);
        }))?;
        answered
            .await
            .map_err(|_| HashError::Thread("the hash panicked".into()))?
    }
}

/// The first `count` blocks of `memory`, which grows to them the first time.
fn blocks(memory: &mut Vec<Block>, count: usize) -> &mut [Block] {
    if memory.len() < count {
        memory.resize(count, Block::new());
    }
    &mut memory[..count]
}

fn argon2_error(e: impl fmt::Display) -> HashError {
    HashError::Argon2(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::i18n::Lang;

    #[tokio::test]
    async fn hashes_beyond_the_waiting_bound_are_refused_at_once() {
        let hasher = PasswordHasher::new(&PasswordConfig::default(), 1, 1).unwrap();
        let pw = Password::for_verification("x");
        let phc = hasher.hash(&pw).await.unwrap();
        // One runs, one waits, the third is refused; the first two still succeed.
        let (a, b, c) = tokio::join!(
            hasher.verify(&pw, &phc),
            hasher.verify(&pw, &phc),
            hasher.verify(&pw, &phc)
        );
        assert!(a.unwrap() && b.unwrap());
        assert!(matches!(c, Err(HashError::Busy)));
        // Nothing is left counted as waiting.
        assert_eq!(hasher.waiting.load(Ordering::Acquire), 0);
        assert!(hasher.verify(&pw, &phc).await.unwrap());
        // 0 turns the bound off.
        let unbounded = PasswordHasher::new(&PasswordConfig::default(), 1, 0).unwrap();
        let (a, b, c) = tokio::join!(
            unbounded.verify(&pw, &phc),
            unbounded.verify(&pw, &phc),
            unbounded.verify(&pw, &phc)
        );
        assert!(a.unwrap() && b.unwrap() && c.unwrap());
    }

    /// `waiting()` (the gauge on /metrics) counts a hash queued behind a busy thread,
    /// and nothing once it has run.
    #[tokio::test]
    async fn waiting_counts_the_hashes_queued_for_a_thread() {
        let hasher = Arc::new(PasswordHasher::new(&PasswordConfig::default(), 1, 4).unwrap());
        let pw = Password::for_verification("x");
        let phc = hasher.hash(&pw).await.unwrap();
        assert_eq!(hasher.waiting(), 0);
        let held = Arc::clone(&hasher.permits).try_acquire_owned().unwrap();
        let queued = tokio::spawn({
            let (hasher, pw, phc) = (Arc::clone(&hasher), pw.clone(), phc.clone());
            async move { hasher.verify(&pw, &phc).await }
        });
        while hasher.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(hasher.waiting(), 1);
        drop(held);
        assert!(queued.await.unwrap().unwrap());
        assert_eq!(hasher.waiting(), 0);
    }

    /// What a hashing thread is: its name, its id and its nice value, read on the thread
    /// itself once `together` more jobs have reached a thread of their own.
    #[cfg(target_os = "linux")]
    async fn hashing_thread(
        hasher: &PasswordHasher,
        together: Arc<std::sync::Barrier>,
    ) -> (Option<String>, i32, i32) {
        hasher
            .blocking(Queue::Anyone, move |_| {
                together.wait();
                let name = std::thread::current().name().map(str::to_owned);
                // SAFETY: no arguments, an integer back.
                Ok((name, unsafe { libc::gettid() }, this_threads_nice()))
            })
            .await
            .unwrap()
    }

    #[cfg(target_os = "linux")]
    fn this_threads_nice() -> i32 {
        // SAFETY: plain integers in and out.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    /// Hashes run on threads of their own, below the requests' priority by the
    /// configured nice value; the thread that asked keeps its own.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashes_run_on_their_own_threads_below_the_requests_priority() {
        let own = this_threads_nice();
        assert!(
            own <= 12,
            "run this test at a nice value of 12 or less: at {own}, 7 levels lower is out of reach"
        );
        let config = PasswordConfig {
            hashing_nice: 7,
            ..PasswordConfig::default()
        };
        let hasher = PasswordHasher::new(&config, 2, 0).unwrap();
        // Both threads: two jobs that wait for each other run on two.
        let together = Arc::new(std::sync::Barrier::new(2));
        let (a, b) = tokio::join!(
            hashing_thread(&hasher, Arc::clone(&together)),
            hashing_thread(&hasher, together)
        );
        assert_ne!(a.1, b.1);
        for (name, _, nice) in [a, b] {
            assert_eq!(name.as_deref(), Some("tobira-hash"));
            assert_eq!(nice, own + 7);
        }
        assert_eq!(this_threads_nice(), own);
        let pw = Password::for_verification("x");
        let phc = hasher.hash(&pw).await.unwrap();
        assert!(hasher.verify(&pw, &phc).await.unwrap());

        // 0: the process's own priority.
        let config = PasswordConfig {
            hashing_nice: 0,
            ..PasswordConfig::default()
        };
        let hasher = PasswordHasher::new(&config, 1, 0).unwrap();
        let (name, _, nice) = hashing_thread(&hasher, Arc::new(std::sync::Barrier::new(1))).await;
        assert_eq!((name.as_deref(), nice), (Some("tobira-hash"), own));
    }

    /// Lowering a thread's priority says nothing when it works: the warning is for a
    /// failure only, and would otherwise greet operators at every start.
    #[cfg(target_os = "linux")]
    #[test]
    fn lowering_the_priority_logs_nothing_when_it_works() {
        struct Logged(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Logged {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let logged = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let writer = Arc::clone(&logged);
        let (before, after) = std::thread::spawn(move || {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || Logged(Arc::clone(&writer)))
                .with_ansi(false)
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                let before = this_threads_nice();
                lower_priority(3);
                (before, this_threads_nice())
            })
        })
        .join()
        .unwrap();
        assert_eq!(after, (before + 3).min(19));
        assert_eq!(String::from_utf8_lossy(&logged.lock().unwrap()), "");
    }

    /// A hash that panics fails alone: the thread lives on, and so does the next hash.
    #[tokio::test]
    async fn a_panicking_hash_fails_itself_and_not_the_thread() {
        let hasher = PasswordHasher::new(&PasswordConfig::default(), 1, 0).unwrap();
        let failed = hasher
            .blocking::<()>(Queue::Anyone, |_| panic!("a hash that panics"))
            .await;
        assert!(matches!(failed, Err(HashError::Thread(_))), "{failed:?}");
        // Had the panic ended the only thread, the channel would be closed and this
        // hash would fail ("the hashing threads have stopped").
        let pw = Password::for_verification("x");
        let phc = hasher.hash(&pw).await.unwrap();
        assert!(hasher.verify(&pw, &phc).await.unwrap());
    }

    /// `work`'s answer, or a failure (not a hang) when it takes longer than 10 s.
    async fn within_seconds<T>(work: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(10), work)
            .await
            .expect("no answer within 10 s: a hashing thread or permit is gone")
    }

    /// A request that gives up does not give the hash's thread back early: its permit is
    /// held until the hash is done, so no more hashes run at once than the bound.
    #[tokio::test]
    async fn a_hash_whose_request_is_gone_still_holds_its_thread() {
        let hasher = PasswordHasher::new(&PasswordConfig::default(), 1, 0).unwrap();
        let (started, start) = std::sync::mpsc::channel();
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let gone = tokio::spawn({
            let hasher = hasher.clone();
            async move {
                hasher
                    .blocking(Queue::Anyone, move |_| {
                        started.send(()).unwrap();
                        finished.recv().unwrap();
                        Ok(())
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || start.recv().unwrap())
            .await
            .unwrap();
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        assert_eq!(hasher.permits.available_permits(), 0);
        finish.send(()).unwrap();
        let _ = within_seconds(hasher.permits.acquire()).await.unwrap();
    }

    /// The threads end with the last clone of the hasher.
    #[tokio::test]
    async fn the_hashing_threads_end_with_the_hasher() {
        let hasher = PasswordHasher::new(&PasswordConfig::default(), 3, 0).unwrap();
        let clone = hasher.clone();
        let pw = Password::for_verification("x");
        clone.hash(&pw).await.unwrap();
        let queue = hasher.threads.queue.clone();
        drop(hasher);
        assert!(queue.upgrade().is_some(), "a clone still holds them");
        drop(clone);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while queue.upgrade().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the threads did not end"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    fn email() -> Email {
        Email::parse("hanako.yamada@example.jp").unwrap()
    }

    #[test]
    fn the_policy_counts_characters_and_refuses_weak_passwords() {
        let e = email();
        assert_eq!(
            Password::new("aB3$xY", &e).unwrap_err(),
            PasswordPolicyError::TooShort
        );
        // Eight characters of three bytes each is still eight characters.
        assert_eq!(
            Password::new("パスワ", &e).unwrap_err(),
            PasswordPolicyError::TooShort
        );
        assert!(Password::new("川辺で朝焼けを眺める猫と犬", &e).is_ok());
        assert_eq!(
            Password::new(&"x".repeat(129), &e).unwrap_err(),
            PasswordPolicyError::TooLong
        );
        assert!(Password::new(&"correct horse battery staple ".repeat(4)[..116], &e).is_ok());
        for weak in [
            "password",
            "password123",
            "qwertyuiop",
            "12345678",
            "iloveyou1",
        ] {
            assert!(
                matches!(
                    Password::new(weak, &e).unwrap_err(),
                    PasswordPolicyError::TooWeak { .. }
                ),
                "{weak}"
            );
        }
        assert!(Password::new("violet-tunnel-ramen-42", &e).is_ok());
    }

    #[test]
    fn a_weak_password_is_refused_with_zxcvbn_advice_in_both_languages() {
        let err = Password::new("password1", &email()).unwrap_err();
        let PasswordPolicyError::TooWeak { feedback } = &err else {
            panic!("{err:?}");
        };
        // "password1" is a common password; zxcvbn names it and says what to do.
        assert!(feedback.warning.is_some(), "{feedback:?}");
        assert!(!feedback.suggestions.is_empty(), "{feedback:?}");
        for lang in [Lang::Ja, Lang::En] {
            assert!(!feedback.warning_text(lang).unwrap_or("").is_empty());
            assert!(
                feedback
                    .suggestion_texts(lang)
                    .iter()
                    .all(|t| !t.is_empty())
            );
        }
        assert!(
            feedback
                .warning_text(Lang::Ja)
                .unwrap()
                .contains("パスワード")
        );
        assert_eq!(Msg::from(&err), Msg::PasswordTooWeak);
        // A passphrase of unrelated words passes.
        assert!(Password::new("川辺で朝焼けを眺める猫と犬", &email()).is_ok());
        assert!(Password::new("lantern orbit pickle meadow", &email()).is_ok());
    }

    #[test]
    fn the_policy_refuses_the_email_local_part_in_any_case_or_width() {
        let e = email();
        for bad in ["my-Hanako.Yamada-2026!", "ｈａｎａｋｏ.ｙａｍａｄａ#Zx9q"] {
            assert_eq!(
                Password::new(bad, &e).unwrap_err(),
                PasswordPolicyError::ContainsEmail,
                "{bad}"
            );
        }
        // A local part under four characters is not checked.
        let short = Email::parse("kei@example.jp").unwrap();
        assert!(Password::new("kei-violet-tunnel-ramen", &short).is_ok());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify_nfkc_equivalents() {
        let hasher = PasswordHasher::new(&PasswordConfig::default(), 2, 0).unwrap();
        let pw = Password::new("ＶｉｏｌｅｔＴｕｎｎｅｌ４２", &email()).unwrap();
        let phc = hasher.hash(&pw).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            hasher
                .verify(&Password::for_verification("VioletTunnel42"), &phc)
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(&Password::for_verification("VioletTunnel43"), &phc)
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(&Password::for_verification(" VioletTunnel42"), &phc)
                .await
                .unwrap()
        );
        assert!(hasher.verify(&pw, "not a phc string").await.is_err());
        assert!(!format!("{pw:?}").contains("Violet"));
    }

    #[tokio::test]
    async fn hashes_verify_with_the_argon2_crate_and_its_hashes_with_ours() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = PasswordHasher::new(&PasswordConfig::default(), 2, 0).unwrap();
        let pw = Password::for_verification("lantern orbit pickle meadow");
        // Ours, checked by the argon2 crate's own verifier.
        let ours = hasher.hash(&pw).await.unwrap();
        let reference = Argon2::default();
        assert!(
            reference
                .verify_password(pw.as_bytes(), ours.as_str())
                .is_ok()
        );
        assert!(
            reference
                .verify_password(b"lantern orbit pickle", ours.as_str())
                .is_err()
        );
        // Hashes stored before (made by the crate), under the current parameters and
        // under an older, larger setting and another variant, verify with ours.
        for (algorithm, m_cost) in [
            (Algorithm::Argon2id, 19456),
            (Algorithm::Argon2id, 32768),
            (Algorithm::Argon2i, 8192),
        ] {
            let params = Params::new(m_cost, 2, 1, None).unwrap();
            let theirs = Argon2::new(algorithm, Version::V0x13, params)
                .hash_password(pw.as_bytes())
                .unwrap()
                .to_string();
            assert!(hasher.verify(&pw, &theirs).await.unwrap(), "{theirs}");
            let wrong = Password::for_verification("lantern orbit pickle meadoW");
            assert!(!hasher.verify(&wrong, &theirs).await.unwrap(), "{theirs}");
        }
        // A PHC string without its hash, or with a garbled one, is an error, not a match.
        let cut = &ours[..ours.rfind('$').unwrap()];
        assert!(hasher.verify(&pw, cut).await.is_err());
        assert!(hasher.verify(&pw, &format!("{ours}!")).await.is_err());
    }

    #[tokio::test]
    async fn the_working_memory_is_reused_one_block_set_per_permit() {
        let hasher = PasswordHasher::new(&PasswordConfig::default(), 2, 0).unwrap();
        let pw = Password::for_verification("x");
        let phc = hasher.hash(&pw).await.unwrap();
        let mut all = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (hasher, pw, phc) = (hasher.clone(), pw.clone(), phc.clone());
            all.spawn(async move { hasher.verify(&pw, &phc).await.unwrap() });
        }
        assert!(all.join_all().await.into_iter().all(|ok| ok));
        let kept = |hasher: &PasswordHasher| {
            let memory = hasher.memory.lock().unwrap();
            memory.iter().map(Vec::len).collect::<Vec<_>>()
        };
        let blocks = hasher.params.block_count();
        let sizes = kept(&hasher);
        assert!((1..=2).contains(&sizes.len()), "{sizes:?}");
        assert!(sizes.iter().all(|&n| n == blocks), "{sizes:?}");
        // A hash under an older, larger setting does not grow the kept memory.
        let larger = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(32768, 1, 1, None).unwrap(),
        );
        let old = argon2::password_hash::PasswordHasher::hash_password(&larger, pw.as_bytes())
            .unwrap()
            .to_string();
        assert!(hasher.verify(&pw, &old).await.unwrap());
        assert!(kept(&hasher).iter().all(|&n| n == blocks));
        hasher.release_memory();
        assert!(kept(&hasher).is_empty());
        assert!(hasher.verify(&pw, &phc).await.unwrap());
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let pw = Password::for_verification("correct horse battery staple");
        assert_eq!(format!("{pw:?}"), "Password([redacted])");
        let wrapped = format!("{:?}", Some(&pw));
        assert!(!wrapped.contains("horse"), "{wrapped}");
    }
}
