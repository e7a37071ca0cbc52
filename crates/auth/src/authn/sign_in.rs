//! Password sign-in, throttled. The answer for an unknown address and for a wrong
//! password is the same, and takes the same time (a dummy hash is verified, the same
//! store lookups are made), so the form cannot be used to find out who has an account;
//! an unknown address is throttled exactly like a known one.

use std::net::IpAddr;

use uuid::Uuid;

use super::password::{HashError, Password, Queue};
use super::risk::{self, SignedIn};
use super::throttle::{AccountKey, Admission, Attempt, Lock};
use crate::domain::{Email, User, UserId, UserStatus};
use crate::state::AppState;
use crate::store::{LoginEvent, LoginResult};
use crate::web::client_ip::ip_bucket;

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Unknown address or wrong password (told apart only in the log: `account`).
    /// `locked`: this failure locked the account (or the device): the owner is told.
    #[error("invalid email address or password")]
    InvalidCredentials {
        account: Option<UserId>,
        locked: Option<Lock>,
    },
    /// Too many failures: the password was not checked.
    #[error("too many failed sign-ins")]
    Throttled(Lock),
    /// Frozen by support. Said only after the right password, so it reveals nothing to
    /// someone who does not already hold the account.
    #[error("account unavailable")]
    AccountUnavailable,
    /// Its owner undid an email change (`account::email`): whoever changed the address
    /// may know the password, so it works again only after a reset from the owner's
    /// address. Said only after the right password, like a freeze.
    #[error("the password must be reset first")]
    ResetRequired,
    #[error("the address is not verified yet")]
    Unverified { user: UserId },
    /// Too many sign-ins wait for the password hasher: try again shortly.
    #[error("too many sign-ins at once")]
    Busy,
    /// A store the sign-in needs (the ephemeral store's counters) is down or full: try
    /// again shortly, as for `Busy`.
    #[error("a store the sign-in needs is unavailable: {0}")]
    Unavailable(String),
    #[error("sign-in failed: {0}")]
    Internal(String),
}

impl From<crate::store::EphemeralError> for SignInError {
    fn from(e: crate::store::EphemeralError) -> Self {
        if e.is_transient() {
            Self::Unavailable(e.to_string())
        } else {
            Self::Internal(e.to_string())
        }
    }
}

impl From<HashError> for SignInError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::Busy,
            other => Self::Internal(other.to_string()),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> SignInError {
    SignInError::Internal(e.to_string())
}

/// A password sign-in from a client address and a device (the hash of its device
/// cookie; empty for a client without one, which is never a known device).
pub struct PasswordAttempt<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub ip: IpAddr,
    pub device: &'a str,
    pub user_agent: &'a str,
}

/// The first step passed: the right password of an active account. Nothing is signed in
/// yet: the caller either asks for the second step or calls `completed`.
#[derive(Debug)]
pub struct FirstStep {
    pub user: User,
    /// Whether the device had signed in to the account before this attempt.
    pub known_device: bool,
}

/// Checks a password. Failures are recorded in the member's history here; a success is
/// recorded by `completed`, once every step of the sign-in passed.
pub async fn with_password(
    state: &AppState,
    attempt: PasswordAttempt<'_>,
) -> Result<FirstStep, SignInError> {
    let user = match Email::parse(attempt.email) {
        Ok(email) => state
            .db
            .users()
            .find_by_email(&email)
            .await
            .map_err(internal)?,
        Err(_) => None,
    };
    // The same lookup whether or not the account exists.
    let known = state
        .db
        .known_devices()
        .is_known(
            user.as_ref().map_or(UserId(Uuid::nil()), |u| u.id),
            attempt.device,
        )
        .await
        .map_err(internal)?;
    let outcome = check(state, &attempt, user.clone(), known).await;
    let refused = match &outcome {
        Ok(_) => None,
        Err(SignInError::InvalidCredentials { .. }) => Some(LoginResult::WrongPassword),
        Err(SignInError::Throttled(_)) => Some(LoginResult::Throttled),
        Err(SignInError::Unverified { .. }) => Some(LoginResult::Unverified),
        Err(SignInError::AccountUnavailable) => Some(LoginResult::Frozen),
        Err(SignInError::ResetRequired) => Some(LoginResult::ResetRequired),
        // Not checked: not an attempt the member made or suffered.
        Err(SignInError::Busy | SignInError::Unavailable(_) | SignInError::Internal(_)) => None,
    };
    if let (None, Some(result)) = (&user, refused) {
        crate::ops::sign_in_attempt(METHOD_PASSWORD, result, false);
    }
    if let (Some(user), Some(result)) = (&user, refused) {
        record(
            state,
            Attempted {
                user: user.id,
                ip: attempt.ip,
                device: attempt.device,
                user_agent: attempt.user_agent,
                method: METHOD_PASSWORD,
                known_device: known,
            },
            result,
        );
    }
    outcome.map(|user| FirstStep {
        user,
        known_device: known,
    })
}

/// Who signed in (or tried), from where, and how: what the history and the new-device
/// check need.
pub struct Attempted<'a> {
    pub user: UserId,
    pub ip: IpAddr,
    pub device: &'a str,
    pub user_agent: &'a str,
    /// The history's name of the method ("password", "password+totp").
    pub method: &'a str,
    /// Whether the device had signed in to the account before.
    pub known_device: bool,
}

/// Every step of a sign-in passed: the device becomes known to the account, the success
/// goes into the history, and a new device is told about by mail (`risk`).
pub async fn completed(
    state: &AppState,
    user: &User,
    attempt: Attempted<'_>,
) -> Result<(), SignInError> {
    if !attempt.device.is_empty() {
        state
            .db
            .known_devices()
            .signed_in(
                state.clock.now(),
                user.id,
                attempt.device,
                &attempt.ip.to_string(),
                attempt.user_agent,
            )
            .await
            .map_err(internal)?;
    }
    risk::after_sign_in(
        state,
        SignedIn {
            user: user.clone(),
            device: attempt.device.to_owned(),
            known_before: attempt.known_device,
            ip: attempt.ip,
            user_agent: attempt.user_agent.to_owned(),
            at: state.clock.now(),
        },
    );
    record(state, attempt, LoginResult::Success);
    Ok(())
}

/// The throttled check itself, once the account (if any) and whether the device is known
/// to it are looked up.
async fn check(
    state: &AppState,
    attempt: &PasswordAttempt<'_>,
    user: Option<User>,
    known: bool,
) -> Result<User, SignInError> {
    let password = Password::for_verification(attempt.password);
    let counted = Attempt {
        account: AccountKey::of(&state.identifiers, attempt.email),
        address: ip_bucket(attempt.ip),
        known_device: known.then(|| attempt.device.to_owned()),
    };
    let locks = match state.throttle.admit(&counted).await? {
        Admission::Refused(lock) => return Err(SignInError::Throttled(lock)),
        Admission::Admitted { locks } => locks,
    };
    let found = user.and_then(|u| u.password_hash.clone().map(|h| (u, h)));
    // An unknown address verifies a dummy hash: the same time, and just as busy.
    let hash = found
        .as_ref()
        .map_or(&*state.dummy_hash, |(_, h)| h.as_str());
    let queue = if known {
        Queue::KnownDevice
    } else {
        Queue::Anyone
    };
    let right = match state.hasher.verify_queued(&password, hash, queue).await {
        Ok(right) => right,
        Err(e) => {
            // Not checked (busy, or a broken hash): not a failure of the member's.
            if let Err(refund) = state.throttle.refund(&counted, locks).await {
                tracing::warn!(error = %refund, "cannot take back an unchecked sign-in attempt");
            }
            return Err(e.into());
        }
    };
    let Some((user, _)) = found else {
        return Err(SignInError::InvalidCredentials {
            account: None,
            locked: locks,
        });
    };
    if !right {
        return Err(SignInError::InvalidCredentials {
            account: Some(user.id),
            locked: locks,
        });
    }
    state.throttle.succeeded(&counted).await?;
    match user.status {
        UserStatus::Active if user.reset_required => Err(SignInError::ResetRequired),
        // The device becomes known only when every step passed (`completed`): a password
        // alone must not make a stranger's device trusted.
        UserStatus::Active => Ok(user),
        // The right password of a sign-up whose address is not verified yet: the page
        // offers to send the link again (only the owner of the password gets that far).
        UserStatus::Unverified => Err(SignInError::Unverified { user: user.id }),
        UserStatus::Frozen | UserStatus::Deleted => Err(SignInError::AccountUnavailable),
    }
}

/// Writes the attempt into the member's history, after the answer (a write that only
/// existing accounts cause must not show in the timing). Refused attempts are recorded
/// at most once a minute per account: a flood of them must not become a flood of writes.
pub fn record(state: &AppState, attempt: Attempted<'_>, result: LoginResult) {
    crate::ops::sign_in_attempt(attempt.method, result, true);
    let user = attempt.user;
    let event = LoginEvent {
        id: Uuid::new_v4(),
        user,
        at: state.clock.now(),
        ip: attempt.ip.to_string(),
        user_agent: attempt.user_agent.to_owned(),
        device_hash: attempt.device.to_owned(),
        method: attempt.method.to_owned(),
        result,
        new_device: !attempt.known_device && !attempt.device.is_empty(),
    };
    let state = state.clone();
    state.background.clone().spawn(async move {
        if matches!(result, LoginResult::Throttled | LoginResult::WrongCode) {
            let key = format!("history:{}:{}", result.as_str(), user.0);
            match state.ephemeral.incr(&key, time::Duration::minutes(1)).await {
                Ok(counter) if counter.count > 1 => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "sign-in history: cannot rate refused attempts");
                    return;
                }
            }
        }
        if let Err(e) = state.db.login_events().record(&event).await {
            tracing::error!(error = %e, user = %user.0, "cannot record a sign-in attempt");
        }
    });
}

/// The history's name of a password sign-in.
pub const METHOD_PASSWORD: &str = "password";
