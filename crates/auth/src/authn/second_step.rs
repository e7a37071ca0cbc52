//! The second step of a sign-in (二段階認証): what a member whose password was right must
//! still show when the account has a second factor — an authenticator code, a code mailed
//! to them, or one of their recovery codes.
//!
//! Between the two steps nothing is signed in: the first step leaves a `Pending` record in
//! the ephemeral store under the parked request's id, bound to the same browser as the
//! park. Guesses are counted twice with atomic counters: per pending sign-in (5, then it
//! is void and the password is asked again) and per account (10 in 15 minutes, then the
//! second step is locked for the rest of the window). The account count is not reset by a
//! right password, so someone holding the password cannot buy new guesses with it.

use axum::http::HeaderMap;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::crypto::{constant_time_eq, sha256_hex};
use crate::domain::{ACR_ONE, ACR_TWO, AMR_MCA, AMR_MFA, AMR_OTP, AMR_POP, User, UserId};
use crate::flow::Binding;
use crate::keys::IdentifierHasher;
use crate::state::AppState;
use crate::store::{EphemeralError, Factors, StoreError};
use crate::web::cookies::{BIND, CookiePolicy};

/// The history's names of the factors (the `method` of a login event).
pub const METHOD_TOTP: &str = "totp";
pub const METHOD_EMAIL_CODE: &str = "email_code";
pub const METHOD_RECOVERY_CODE: &str = "recovery_code";
/// A passkey (alone, or as the second step: "password+passkey").
pub const METHOD_PASSKEY: &str = "passkey";
/// Two-step verification as a whole (turned off; reset by support).
pub const METHOD_TWO_STEP: &str = "two_step";

/// How long the second step may take after the password.
pub const PENDING_LIFETIME: Duration = Duration::minutes(10);
/// Wrong codes per pending sign-in before it is void.
pub const TRIES_PER_SIGN_IN: u64 = 5;
/// Wrong codes per account in `ACCOUNT_WINDOW` before the second step locks.
pub const TRIES_PER_ACCOUNT: u64 = 10;
pub const ACCOUNT_WINDOW: Duration = Duration::minutes(15);
/// An email code lives 10 minutes and allows 5 tries.
pub const EMAIL_CODE_LIFETIME: Duration = Duration::minutes(10);
pub const EMAIL_CODE_TRIES: u64 = 5;
/// Recovery codes made at a time.
pub const RECOVERY_CODES: usize = 10;

/// A sign-in whose first step passed, waiting for the second.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    /// Names this very first step: the same parked request can be given another first
    /// step (the password of another account) while a code for this one is checked, and
    /// what is taken at the end must be what was checked (`finish`).
    nonce: String,
    pub user: Uuid,
    /// SHA-256 of the binding cookie of the browser that passed the first step.
    binding: String,
    /// `amr` of the first step (["pwd"]).
    pub first_amr: Vec<String>,
    /// The history's name of the first step ("password").
    pub first_method: String,
    /// "Keep me signed in", as ticked on the first page.
    pub remember: bool,
    /// The device cookie's hash, and whether the account knew the device before.
    pub device: String,
    pub known_device: bool,
    pub ip: String,
    pub user_agent: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The email code mailed for this sign-in (its hash) and until when it works.
    #[serde(default)]
    pub email_code: Option<EmailCode>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EmailCode {
    pub hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// What the member typed on the second-step page.
pub enum Proof<'a> {
    Totp(&'a str),
    EmailCode(&'a str),
    Recovery(&'a str),
    /// A passkey's assertion, checked by the caller (webauthn-rs): whether it verified,
    /// for a credential of this member that still exists. Not guessable, but a refused
    /// one counts like a wrong code all the same (the same limits for every factor).
    Passkey {
        verified: bool,
    },
}

/// A second step passed: what the session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Achieved {
    pub amr: Vec<String>,
    pub acr: &'static str,
    /// The history's name: "password+totp".
    pub method: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SecondStepError {
    /// Unknown, expired, already used, or taken by its own success.
    #[error("no sign-in is waiting for its second step")]
    Expired,
    /// The sign-in was started in another browser.
    #[error("the sign-in belongs to another browser")]
    OtherBrowser,
    /// A wrong (or spent) code; `left` more tries for this sign-in.
    #[error("wrong code")]
    Wrong { left: u64 },
    /// The last try for this sign-in was wrong: it is void, the password is asked again.
    #[error("too many wrong codes for this sign-in")]
    TooMany,
    /// Too many wrong codes for the account: the second step is locked until `until`.
    #[error("the second step is locked")]
    Locked { until: OffsetDateTime },
    /// An email code was typed but none was sent, or it expired.
    #[error("the email code expired")]
    CodeExpired,
    /// The account does not have this factor.
    #[error("this factor is not enrolled")]
    NotEnrolled,
    #[error(transparent)]
    Ephemeral(#[from] EphemeralError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

fn key(tx: &str) -> String {
    format!("second_step:{tx}")
}

fn tries_key(tx: &str) -> String {
    format!("second_step_tries:{tx}")
}

fn email_tries_key(tx: &str) -> String {
    format!("email_code_tries:{tx}")
}

fn account_key(user: UserId) -> String {
    format!("second_step_fail:{}", user.0)
}

fn lock_key(user: UserId) -> String {
    format!("second_step_lock:{}", user.0)
}

impl Pending {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        now: OffsetDateTime,
        binding: &Binding,
        user: UserId,
        first_amr: Vec<String>,
        first_method: &str,
        remember: bool,
        device: &str,
        known_device: bool,
        ip: &str,
        user_agent: &str,
    ) -> Self {
        Self {
            nonce: crate::crypto::random_token(&mut rand::rng(), 16),
            user: user.0,
            binding: binding.hash(),
            first_amr,
            first_method: first_method.to_owned(),
            remember,
            device: device.to_owned(),
            known_device,
            ip: ip.to_owned(),
            user_agent: user_agent.chars().take(512).collect(),
            created_at: now,
            email_code: None,
        }
    }

    pub fn user_id(&self) -> UserId {
        UserId(self.user)
    }
}

/// Leaves `pending` under the parked request `tx` (replacing an earlier one: a new first
/// step starts over).
pub async fn start(state: &AppState, tx: &str, pending: &Pending) -> Result<(), SecondStepError> {
    let bytes =
        serde_json::to_vec(pending).map_err(|e| SecondStepError::Internal(e.to_string()))?;
    state.ephemeral.delete(&tries_key(tx)).await?;
    state.ephemeral.delete(&email_tries_key(tx)).await?;
    state
        .ephemeral
        .put_bounded(&key(tx), &bytes, pending.created_at + PENDING_LIFETIME)
        .await?;
    Ok(())
}

fn bound(pending: &Pending, headers: &HeaderMap, cookies: CookiePolicy) -> bool {
    let presented = cookies
        .get(headers, BIND)
        .map(|v| sha256_hex(&v))
        .unwrap_or_default();
    constant_time_eq(presented.as_bytes(), pending.binding.as_bytes())
}

/// The sign-in waiting under `tx`, if this browser started it.
pub async fn resume(
    state: &AppState,
    headers: &HeaderMap,
    tx: &str,
) -> Result<Pending, SecondStepError> {
    if tx.is_empty() || tx.len() > 64 {
        return Err(SecondStepError::Expired);
    }
    let pending: Pending = state
        .ephemeral
        .get(&key(tx))
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(SecondStepError::Expired)?;
    if state.clock.now() >= pending.created_at + PENDING_LIFETIME {
        return Err(SecondStepError::Expired);
    }
    if !bound(&pending, headers, state.cookies) {
        return Err(SecondStepError::OtherBrowser);
    }
    Ok(pending)
}

/// Stores `pending` again (an email code was sent), keeping its expiry — only while the
/// same sign-in is still waiting: a plain put racing a successful `finish` would bring a
/// spent sign-in back (compare-and-swap on the value read just before).
pub async fn save(state: &AppState, tx: &str, pending: &Pending) -> Result<(), SecondStepError> {
    let bytes =
        serde_json::to_vec(pending).map_err(|e| SecondStepError::Internal(e.to_string()))?;
    let read = state.ephemeral.get_versioned(&key(tx)).await?;
    let same = read
        .value
        .as_deref()
        .and_then(|b| serde_json::from_slice::<Pending>(b).ok())
        .is_some_and(|p| constant_time_eq(p.nonce.as_bytes(), pending.nonce.as_bytes()));
    if !same {
        return Err(SecondStepError::Expired);
    }
    let swapped = state
        .ephemeral
        .swap(
            &key(tx),
            read.version.as_deref(),
            &bytes,
            pending.created_at + PENDING_LIFETIME,
        )
        .await?;
    if !swapped {
        return Err(SecondStepError::Expired);
    }
    Ok(())
}

/// Takes the pending sign-in for good once its second step passed: of two concurrent
/// successes one gets it (the other sees `Expired`). Taken only when it is this
/// browser's and still the one whose proof was checked: another browser's request, or a
/// success for a sign-in the same browser has since replaced, leaves it as it is.
pub async fn finish(
    state: &AppState,
    headers: &HeaderMap,
    tx: &str,
    checked: &Pending,
) -> Result<Pending, SecondStepError> {
    let read = state.ephemeral.get_versioned(&key(tx)).await?;
    let pending: Pending = read
        .value
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok())
        .ok_or(SecondStepError::Expired)?;
    if !bound(&pending, headers, state.cookies) {
        return Err(SecondStepError::OtherBrowser);
    }
    // Another first step replaced the one whose code was checked (the same browser gave
    // the password of another account meanwhile): it signs nothing in.
    if !constant_time_eq(pending.nonce.as_bytes(), checked.nonce.as_bytes()) {
        return Err(SecondStepError::Expired);
    }
    // Taken as read, or not at all: an empty value that ends now is gone at once.
    let now = state.clock.now();
    if !state
        .ephemeral
        .swap(&key(tx), read.version.as_deref(), b"", now)
        .await?
    {
        return Err(SecondStepError::Expired);
    }
    Ok(pending)
}

/// Voids the pending sign-in (after its last wrong try).
pub async fn abandon(state: &AppState, tx: &str) -> Result<(), SecondStepError> {
    state.ephemeral.delete(&key(tx)).await?;
    Ok(())
}

/// A new email code for `pending`: the code to mail (6 digits); its hash and expiry are
/// kept in `pending` (the caller saves it) and its tries start again.
pub async fn new_email_code(
    state: &AppState,
    tx: &str,
    pending: &mut Pending,
) -> Result<String, SecondStepError> {
    let code = format!("{:06}", rand::rng().random_range(0..1_000_000_u32));
    pending.email_code = Some(EmailCode {
        hash: email_code_hash(pending.user_id(), tx, &code),
        expires_at: state.clock.now() + EMAIL_CODE_LIFETIME,
    });
    state.ephemeral.delete(&email_tries_key(tx)).await?;
    Ok(code)
}

fn email_code_hash(user: UserId, tx: &str, code: &str) -> String {
    sha256_hex(&format!("{}:{tx}:{code}", user.0))
}

/// The account's second step is locked until then (too many wrong codes), if it is.
pub async fn locked_until(
    state: &AppState,
    user: UserId,
) -> Result<Option<OffsetDateTime>, SecondStepError> {
    let Some(bytes) = state.ephemeral.get(&lock_key(user)).await? else {
        return Ok(None);
    };
    let until = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
    Ok(until.filter(|u| *u > state.clock.now()))
}

/// Counts a wrong code against the account (the console's enrolment codes count too);
/// the lock's end when this one locked it.
pub async fn count_failure(
    state: &AppState,
    user: UserId,
) -> Result<Option<OffsetDateTime>, SecondStepError> {
    let counter = state
        .ephemeral
        .incr(&account_key(user), ACCOUNT_WINDOW)
        .await?;
    if counter.count < TRIES_PER_ACCOUNT {
        return Ok(None);
    }
    Ok(Some(lock(state, user).await?))
}

/// Locks the account's second step for `ACCOUNT_WINDOW` from now (from the last guess,
/// not from the window's start: guesses bunched at a window's end and the next one's
/// start must not pass at once); when it ends.
async fn lock(state: &AppState, user: UserId) -> Result<OffsetDateTime, SecondStepError> {
    let until = state.clock.now() + ACCOUNT_WINDOW;
    state
        .ephemeral
        .put(
            &lock_key(user),
            until.unix_timestamp().to_string().as_bytes(),
            until,
        )
        .await?;
    Ok(until)
}

/// Checks `proof` for the sign-in waiting under `tx`. On success the pending sign-in is
/// still there (the caller takes it with `finish`).
///
/// Every guess is counted, for the sign-in and for the account, before it is checked:
/// counted after, a burst of requests sent at once would all be checked before the first
/// failure was counted, and the limits would bound nothing. A right code clears the
/// account's count (as a right password clears the password throttle's).
pub async fn verify(
    state: &AppState,
    tx: &str,
    pending: &Pending,
    user: &User,
    proof: Proof<'_>,
) -> Result<Achieved, SecondStepError> {
    if let Some(until) = locked_until(state, user.id).await? {
        return Err(SecondStepError::Locked { until });
    }
    // What is not a guess is refused before anything is counted.
    let totp = match &proof {
        Proof::Totp(_) => Some(
            state
                .db
                .two_step()
                .totp(user.id)
                .await?
                .ok_or(SecondStepError::NotEnrolled)?,
        ),
        _ => None,
    };
    let sent = match &proof {
        Proof::EmailCode(_) => {
            if !state.db.two_step().factors(user.id).await?.email {
                return Err(SecondStepError::NotEnrolled);
            }
            let sent = pending
                .email_code
                .clone()
                .filter(|c| c.expires_at > state.clock.now())
                .ok_or(SecondStepError::CodeExpired)?;
            Some(sent)
        }
        _ => None,
    };
    let attempts = state
        .ephemeral
        .incr(&account_key(user.id), ACCOUNT_WINDOW)
        .await?;
    if attempts.count > TRIES_PER_ACCOUNT {
        let until = lock(state, user.id).await?;
        abandon(state, tx).await?;
        return Err(SecondStepError::Locked { until });
    }
    let tries = state
        .ephemeral
        .incr(&tries_key(tx), PENDING_LIFETIME)
        .await?;
    if tries.count > TRIES_PER_SIGN_IN {
        abandon(state, tx).await?;
        return Err(SecondStepError::TooMany);
    }
    let right = match (&proof, totp, sent) {
        (Proof::Totp(code), Some(stored), _) => totp_matches(state, user, &stored, code).await?,
        (Proof::Recovery(code), _, _) => check_recovery_code(state, user.id, code).await?,
        (Proof::Passkey { verified }, _, _) => *verified,
        (Proof::EmailCode(code), _, Some(sent)) => {
            let tries = state
                .ephemeral
                .incr(&email_tries_key(tx), EMAIL_CODE_LIFETIME)
                .await?;
            let typed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            let typed = email_code_hash(user.id, tx, &typed);
            tries.count <= EMAIL_CODE_TRIES
                && constant_time_eq(typed.as_bytes(), sent.hash.as_bytes())
        }
        _ => false,
    };
    if right {
        state.ephemeral.delete(&account_key(user.id)).await?;
        return Ok(achieved(&pending.first_amr, &pending.first_method, &proof));
    }
    if attempts.count >= TRIES_PER_ACCOUNT {
        let until = lock(state, user.id).await?;
        abandon(state, tx).await?;
        return Err(SecondStepError::Locked { until });
    }
    if tries.count >= TRIES_PER_SIGN_IN {
        abandon(state, tx).await?;
        return Err(SecondStepError::TooMany);
    }
    Err(SecondStepError::Wrong {
        left: TRIES_PER_SIGN_IN - tries.count,
    })
}

/// What the session reports after a first step (`first_amr`) and this second one
/// (RFC 8176): a one-time code of the member's own makes two factors (`acr` 2); an email
/// code protects the member but is another channel, not a second factor (`acr` 1).
pub fn achieved(first_amr: &[String], first_method: &str, proof: &Proof<'_>) -> Achieved {
    let mut amr = first_amr.to_vec();
    let (added, acr, method): (&[&str], _, _) = match proof {
        Proof::Totp(_) => (&[AMR_OTP, AMR_MFA], ACR_TWO, METHOD_TOTP),
        Proof::Recovery(_) => (&[AMR_OTP, AMR_MFA], ACR_TWO, METHOD_RECOVERY_CODE),
        Proof::EmailCode(_) => (&[AMR_MCA], ACR_ONE, METHOD_EMAIL_CODE),
        // Proof of possession of a key of the member's own (RFC 8176 `pop`): with the
        // password, two factors.
        Proof::Passkey { .. } => (&[AMR_POP, AMR_MFA], ACR_TWO, METHOD_PASSKEY),
    };
    for a in added {
        if !amr.iter().any(|x| x == a) {
            amr.push((*a).to_owned());
        }
    }
    Achieved {
        amr,
        acr,
        method: format!("{first_method}+{method}"),
    }
}

/// Whether a session's factors (`amr`) satisfy an account with `factors`: none needed
/// without a second step; with an authenticator app, a one-time code of the member's own
/// (the app's or a recovery code) — an email code alone must not let whoever holds the
/// mailbox and the password remove the app; with email codes only, an email code.
/// A passkey with user verification (`pop` and `mfa`: a key of the member's own and
/// their face, fingerprint or PIN) passes every rule, alone or after the password.
pub fn session_passed_second_step(amr: &[String], factors: &Factors) -> bool {
    let has = |m: &str| amr.iter().any(|a| a == m);
    if has(AMR_POP) && has(AMR_MFA) {
        true
    } else if factors.totp {
        has(AMR_OTP)
    } else if factors.email {
        has(AMR_OTP) || has(AMR_MCA)
    } else {
        true
    }
}

/// Checks an authenticator code and spends its time step (a code is accepted once,
/// whichever replica sees it).
pub async fn check_totp(
    state: &AppState,
    user: &User,
    code: &str,
) -> Result<bool, SecondStepError> {
    let Some(stored) = state.db.two_step().totp(user.id).await? else {
        return Err(SecondStepError::NotEnrolled);
    };
    totp_matches(state, user, &stored, code).await
}

async fn totp_matches(
    state: &AppState,
    user: &User,
    stored: &crate::store::StoredTotp,
    code: &str,
) -> Result<bool, SecondStepError> {
    let secret = state
        .master
        .decrypt(&stored.secret_enc)
        .map_err(|e| SecondStepError::Internal(e.to_string()))?;
    let app = super::totp::Authenticator::new(&secret, TOTP_ISSUER, user.email.display())
        .map_err(SecondStepError::Internal)?;
    let Some(step) = app.check(code, state.clock.now().unix_timestamp()) else {
        return Ok(false);
    };
    Ok(state.db.two_step().accept_totp_step(user.id, step).await?)
}

/// The name members see for Tobira in their authenticator app.
pub const TOTP_ISSUER: &str = "Tobira";

/// The alphabet of recovery codes: lower-case letters and digits without the ones that
/// are easily misread (0/o, 1/l/i, u/v).
const RECOVERY_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstwxyz";

/// `RECOVERY_CODES` new recovery codes as the member sees them ("k7m2p-xq9ra"), 10
/// characters of 29 each (about 48 bits: with the per-account throttle, unguessable).
pub fn new_recovery_codes(rng: &mut impl rand::CryptoRng) -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let chars: String = (0..10)
                .map(|_| {
                    let i = rng.random_range(0..RECOVERY_ALPHABET.len());
                    RECOVERY_ALPHABET[i] as char
                })
                .collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect()
}

/// The stored form of a recovery code of `user`: typed case, spaces and hyphens do not
/// matter, and the hash names the account, so a code of one account is nothing to
/// another.
pub fn recovery_code_hash(identifiers: &IdentifierHasher, user: UserId, typed: &str) -> String {
    let normalized: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    identifiers.recovery_code(user.0, &normalized)
}

async fn check_recovery_code(
    state: &AppState,
    user: UserId,
    typed: &str,
) -> Result<bool, SecondStepError> {
    if typed.len() > 64 {
        return Ok(false);
    }
    Ok(state
        .db
        .two_step()
        .use_recovery_code(
            state.clock.now(),
            user,
            &recovery_code_hash(&state.identifiers, user, typed),
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amr_and_acr_say_what_the_sign_in_achieved() {
        let pwd = vec!["pwd".to_owned()];
        let totp = achieved(&pwd, "password", &Proof::Totp("1"));
        assert_eq!(totp.amr, ["pwd", "otp", "mfa"]);
        assert_eq!(totp.acr, "2");
        assert_eq!(totp.method, "password+totp");
        let rec = achieved(&pwd, "password", &Proof::Recovery("1"));
        assert_eq!(rec.amr, ["pwd", "otp", "mfa"]);
        assert_eq!(rec.acr, "2");
        let mail = achieved(&pwd, "password", &Proof::EmailCode("1"));
        assert_eq!(mail.amr, ["pwd", "mca"]);
        assert_eq!(mail.acr, "1");
        let key = achieved(&pwd, "password", &Proof::Passkey { verified: true });
        assert_eq!(key.amr, ["pwd", "pop", "mfa"]);
        assert_eq!(key.acr, "2");
        assert_eq!(key.method, "password+passkey");
    }

    #[test]
    fn a_passkey_with_user_verification_passes_every_accounts_rule() {
        let amr = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let totp = Factors {
            totp: true,
            ..Factors::default()
        };
        let email = Factors {
            email: true,
            ..Factors::default()
        };
        for factors in [&totp, &email, &Factors::default()] {
            assert!(session_passed_second_step(
                &amr(&["pop", "user", "mfa"]),
                factors
            ));
            assert!(session_passed_second_step(
                &amr(&["pwd", "pop", "mfa"]),
                factors
            ));
        }
        // Without user verification a passkey is one factor.
        assert!(!session_passed_second_step(&amr(&["pop", "user"]), &totp));
        assert!(!session_passed_second_step(&amr(&["pop", "user"]), &email));
        assert!(!session_passed_second_step(&amr(&["pwd"]), &totp));
    }

    #[test]
    fn recovery_codes_are_ten_distinct_and_typed_loosely() {
        let codes = new_recovery_codes(&mut rand::rng());
        assert_eq!(codes.len(), 10);
        let distinct: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), 10);
        let user = UserId(Uuid::new_v4());
        let other = UserId(Uuid::new_v4());
        let code = &codes[0];
        assert_eq!(code.len(), 11);
        let keys = IdentifierHasher::for_tests();
        let hash = recovery_code_hash(&keys, user, code);
        assert_eq!(recovery_code_hash(&keys, user, &code.to_uppercase()), hash);
        assert_eq!(
            recovery_code_hash(&keys, user, &code.replace('-', " ")),
            hash
        );
        assert_ne!(recovery_code_hash(&keys, other, code), hash);
    }
}
