//! Creating and showing accounts on behalf of an operator.

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use super::audit::{self, Context, Target};
use crate::authn::password::{HashError, Password, PasswordHasher, PasswordPolicyError};
use crate::clock::Clock;
use crate::domain::{Email, EmailError, User, UserStatus};
use crate::store::{Db, NewUser, StoreError};
use crate::web::i18n::{Lang, Msg};

pub struct AddUser<'a> {
    pub email: &'a str,
    pub password: Option<&'a str>,
    pub email_verified: bool,
    pub display_name: String,
    pub locale: Lang,
}

#[derive(Debug, thiserror::Error)]
pub enum AddUserError {
    #[error("invalid email address: {0}")]
    Email(#[from] EmailError),
    #[error("password refused: {0}")]
    Password(#[from] PasswordPolicyError),
    #[error("this email address is already registered")]
    EmailTaken,
    #[error(
        "display name is longer than {MAX_DISPLAY_NAME} characters or contains control characters"
    )]
    DisplayName,
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Store(StoreError),
}

impl AddUserError {
    /// The message for a person, when the catalogue has one.
    pub fn message(&self, lang: Lang) -> Option<&'static str> {
        let msg = match self {
            Self::Email(e) => Msg::from(*e),
            Self::Password(e) => Msg::from(e),
            Self::EmailTaken => Msg::EmailTaken,
            _ => return None,
        };
        Some(msg.text(lang))
    }
}

const MAX_DISPLAY_NAME: usize = 100;

/// Validates everything first, then hashes, then writes once: a refused account leaves
/// nothing behind. The account is recorded as a `user.create` by `ctx` in the same
/// transaction.
pub async fn add_user(
    db: &Db,
    hasher: &PasswordHasher,
    clock: &Clock,
    ctx: &Context,
    req: AddUser<'_>,
) -> Result<User, AddUserError> {
    let email = Email::parse(req.email)?;
    let display_name = req.display_name.trim().to_owned();
    if display_name.chars().count() > MAX_DISPLAY_NAME || display_name.chars().any(char::is_control)
    {
        return Err(AddUserError::DisplayName);
    }
    let password = req.password.map(|p| Password::new(p, &email)).transpose()?;
    // Answer "taken" before spending a hash on it; the unique index still decides races.
    if db
        .users()
        .find_by_email(&email)
        .await
        .map_err(AddUserError::Store)?
        .is_some()
    {
        return Err(AddUserError::EmailTaken);
    }
    let password_hash = match &password {
        Some(p) => Some(hasher.hash(p).await?),
        None => None,
    };
    // Whether it has a password and a verified address; never the address itself.
    let detail = json!({
        "method": "operator",
        "email_verified": req.email_verified,
        "password": password_hash.is_some(),
    });
    let new = NewUser {
        email,
        email_verified: req.email_verified,
        password_hash,
        display_name,
        locale: req.locale.tag().to_owned(),
    };
    let now = clock.now();
    let insert = db.accounts().add(clock, &mut rand::rng(), new, |user| {
        audit::event(now, ctx, "user.create", Target::User(user), detail)
    });
    insert.await.map_err(|e| match e {
        StoreError::EmailTaken => AddUserError::EmailTaken,
        other => AddUserError::Store(other),
    })
}

/// An account as shown to operators (CLI `--json`, admin API): never a hash or secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    /// The account's id (a UUID): what the admin API names it by.
    #[schema(format = Uuid)]
    pub id: String,
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub has_password: bool,
    pub display_name: String,
    pub locale: String,
    /// `unverified`, `active`, `frozen` or `deleted`.
    #[schema(value_type = String, example = "active")]
    pub status: UserStatus,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// Support's reason, while the account is frozen: for support, never the member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frozen_reason: Option<String>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.0.to_string(),
            sub: u.sub.as_str().to_owned(),
            email: u.email.display().to_owned(),
            email_verified: u.email_verified,
            has_password: u.password_hash.is_some(),
            display_name: u.display_name.clone(),
            locale: u.locale.clone(),
            status: u.status,
            created_at: u.created_at,
            updated_at: u.updated_at,
            frozen_reason: u
                .frozen_reason
                .clone()
                .filter(|_| u.status == UserStatus::Frozen),
        }
    }
}
