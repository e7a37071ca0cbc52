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
    #[error("sign-in failed: {0}")]
    Internal(String),
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

pub async fn with_password(
    state: &AppState,
    attempt: PasswordAttempt<'_>,
) -> Result<User, SignInError> {
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
    if let Some(user) = &user {
        record(state, user.id, &attempt, &outcome, known);
    }
    if let Ok(user) = &outcome {
        risk::after_sign_in(
            state,
            SignedIn {
                user: user.clone(),
                device: attempt.device.to_owned(),
                known_before: known,
                ip: attempt.ip,
                user_agent: attempt.user_agent.to_owned(),
                at: state.clock.now(),
            },
        );
    }
    outcome
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
    let locks = match state.throttle.admit(&counted).await.map_err(internal)? {
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
    state.throttle.succeeded(&counted).await.map_err(internal)?;
    match user.status {
        UserStatus::Active if user.reset_required => Err(SignInError::ResetRequired),
        UserStatus::Active if attempt.device.is_empty() => Ok(user),
        UserStatus::Active => {
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
            Ok(user)
        }
        // The right password of a sign-up whose address is not verified yet: the page
        // offers to send the link again (only the owner of the password gets that far).
        UserStatus::Unverified => Err(SignInError::Unverified { user: user.id }),
        UserStatus::Frozen | UserStatus::Deleted => Err(SignInError::AccountUnavailable),
    }
}

/// Writes the attempt into the member's history, after the answer (a write that only
/// existing accounts cause must not show in the timing). Refused attempts are recorded
/// at most once a minute per account: a flood of them must not become a flood of writes.
fn record(
    state: &AppState,
    user: UserId,
    attempt: &PasswordAttempt<'_>,
    outcome: &Result<User, SignInError>,
    known: bool,
) {
    let result = match outcome {
        Ok(_) => LoginResult::Success,
        Err(SignInError::InvalidCredentials { .. }) => LoginResult::WrongPassword,
        Err(SignInError::Throttled(_)) => LoginResult::Throttled,
        Err(SignInError::Unverified { .. }) => LoginResult::Unverified,
        Err(SignInError::AccountUnavailable) => LoginResult::Frozen,
        Err(SignInError::ResetRequired) => LoginResult::ResetRequired,
        // Not checked: not an attempt the member made or suffered.
        Err(SignInError::Busy | SignInError::Internal(_)) => return,
    };
    let event = LoginEvent {
        id: Uuid::new_v4(),
        user,
        at: state.clock.now(),
        ip: attempt.ip.to_string(),
        user_agent: attempt.user_agent.to_owned(),
        device_hash: attempt.device.to_owned(),
        method: METHOD_PASSWORD.to_owned(),
        result,
        new_device: !known && !attempt.device.is_empty(),
    };
    let state = state.clone();
    state.background.clone().spawn(async move {
        if result == LoginResult::Throttled {
            let key = format!("history:throttled:{}", user.0);
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
