//! Password sign-in. The answer for an unknown address and for a wrong password is the
//! same, and takes the same time (a dummy hash is verified), so the form cannot be used
//! to find out who has an account.

use super::password::{HashError, Password, PasswordHasher};
use crate::domain::{Email, User, UserId, UserStatus};
use crate::store::Db;

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Unknown address or wrong password (told apart only in the log: `account`).
    #[error("invalid email address or password")]
    InvalidCredentials { account: Option<UserId> },
    /// Frozen by support. Said only after the right password, so it reveals nothing to
    /// someone who does not already hold the account.
    #[error("account unavailable")]
    AccountUnavailable,
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

pub async fn with_password(
    db: &Db,
    hasher: &PasswordHasher,
    dummy_hash: &str,
    email: &str,
    password: &str,
) -> Result<User, SignInError> {
    let password = Password::for_verification(password);
    let user = match Email::parse(email) {
        Ok(email) => db
            .users()
            .find_by_email(&email)
            .await
            .map_err(|e| SignInError::Internal(e.to_string()))?,
        Err(_) => None,
    };
    let Some((user, hash)) = user.and_then(|u| u.password_hash.clone().map(|h| (u, h))) else {
        // Spend the same time as a real verification (and be just as busy).
        hasher.verify(&password, dummy_hash).await?;
        return Err(SignInError::InvalidCredentials { account: None });
    };
    let ok = hasher.verify(&password, &hash).await?;
    if !ok {
        return Err(SignInError::InvalidCredentials {
            account: Some(user.id),
        });
    }
    match user.status {
        UserStatus::Active => Ok(user),
        // The right password of a sign-up whose address is not verified yet: the page
        // offers to send the link again (only the owner of the password gets that far).
        UserStatus::Unverified => Err(SignInError::Unverified { user: user.id }),
        UserStatus::Frozen | UserStatus::Deleted => Err(SignInError::AccountUnavailable),
    }
}
