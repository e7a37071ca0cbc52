//! An account as the rest of the OP sees it.

use serde::Serialize;
use time::OffsetDateTime;

use super::{Email, Subject, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    /// Signed up, address not yet verified: holds no usable way in for anyone but the
    /// address's owner (see `account::signup`).
    Unverified,
    Active,
    /// Frozen by support: cannot sign in, data kept.
    Frozen,
    /// Deleted by the member: kept for the retention period, then purged.
    Deleted,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unverified => "unverified",
            Self::Active => "active",
            Self::Frozen => "frozen",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unverified" => Some(Self::Unverified),
            "active" => Some(Self::Active),
            "frozen" => Some(Self::Frozen),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: UserId,
    pub sub: Subject,
    pub email: Email,
    pub email_verified: bool,
    /// PHC string; `None` for accounts that sign in only by federation or passkey.
    pub password_hash: Option<String>,
    pub display_name: String,
    pub locale: String,
    pub status: UserStatus,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// An email change was undone from the old address: sign-in is refused until the
    /// password is reset (`account::email`).
    pub reset_required: bool,
    /// Support's reason, while frozen.
    pub frozen_reason: Option<String>,
    /// When the member (or support) deleted the account.
    pub deleted_at: Option<OffsetDateTime>,
}

impl User {
    /// Whether the account may be signed in to and act through tokens now: active, and
    /// not waiting for a password reset. (Freezing, deleting and an undone email change
    /// also end every session and grant; this holds even if one survived.)
    pub fn usable(&self) -> bool {
        self.status == UserStatus::Active && !self.reset_required
    }
}
