//! Passwords: the policy (in the `Password` type, so a weak one cannot reach the hasher)
//! and argon2id hashing on a bounded blocking pool.
//!
//! Passwords are NFKC-normalised before anything else (NIST SP 800-63B §5.1.1.2), so a
//! full-width password typed on a phone matches the half-width one typed on a PC. They
//! are never trimmed: spaces are characters.

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;
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
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// Hashes waiting for a permit, and how many may wait (0: no bound). Beyond it a
    /// request is refused at once (503) instead of queueing until it times out: under a
    /// flood, a quick "try again" serves members better than a 30-second hang.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
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
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
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
        })
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
        self.blocking(Queue::Anyone, move || {
            argon2(params)
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| HashError::Argon2(e.to_string()))
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
        let phc = phc.to_owned();
        let params = self.params.clone();
        self.blocking(queue, move || {
            match argon2(params).verify_password(password.as_bytes(), phc.as_str()) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                Err(e) => Err(HashError::Argon2(e.to_string())),
            }
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        queue: Queue,
        work: impl FnOnce() -> Result<T, HashError> + Send + 'static,
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
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await?
    }
}

fn argon2(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
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
}
