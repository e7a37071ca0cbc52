//! FOUNDATION PLACEHOLDER (helper H2 implements every body, with migration 13
//! `federated_links`): links of accounts to upstream identities (issuer, subject).
//! Every change writes its history line and its mail in the same transaction; the last
//! way in to an account (password, passkey, link) is never removed.

use sea_orm::DatabaseConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{FactorChange, NewUser, StoreError};
use crate::clock::Clock;
use crate::domain::{User, UserId};

/// One link as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub id: Uuid,
    pub user: UserId,
    /// The configured provider id it was made through (for the pages; the link itself is
    /// `issuer` + `subject`).
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    /// The address the provider gave when the link was made (shown in the console).
    pub email: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

/// A link to make: the upstream identity's part.
#[derive(Clone, Debug)]
pub struct NewLink {
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    /// Apple's refresh token, already sealed with the master key.
    pub sealed_refresh_token: Option<String>,
}

/// What linking did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linking {
    Linked,
    /// This upstream identity is linked to this account already (nothing changed).
    AlreadyThis,
    /// This upstream identity is linked to another account: nothing changed.
    OtherAccount,
}

/// What an unlink did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlinking {
    Unlinked,
    NotFound,
    /// It is the account's only way in (no password, no passkey, no other link): kept.
    LastWayIn,
}

pub struct LinkRepo<'c> {
    conn: &'c DatabaseConnection,
}

impl<'c> LinkRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    /// The link of an upstream identity.
    pub async fn find(&self, issuer: &str, subject: &str) -> Result<Option<Link>, StoreError> {
        let _ = (self.conn, issuer, subject);
        todo!("H2")
    }

    /// The member's links, oldest first.
    pub async fn list(&self, user: UserId) -> Result<Vec<Link>, StoreError> {
        let _ = user;
        todo!("H2")
    }

    /// Links an upstream identity to an existing account, with its history line and mail.
    pub async fn link(
        &self,
        now: OffsetDateTime,
        user: UserId,
        link: NewLink,
        change: FactorChange,
    ) -> Result<Linking, StoreError> {
        let _ = (now, user, link, change);
        todo!("H2")
    }

    /// Creates an account (no password) and its link in one transaction.
    /// `StoreError::EmailTaken` when a live account has the address (nothing is written).
    /// `unverified` marks an account whose address the provider did not verify: the first
    /// verification of its address through a link Tobira mailed removes every way in it
    /// had before (`wipe_ways_in`).
    pub async fn create_account(
        &self,
        clock: &Clock,
        new: NewUser,
        link: NewLink,
        change: impl FnOnce(&User) -> FactorChange + Send,
    ) -> Result<User, StoreError> {
        let _ = (clock, new, link, change);
        todo!("H2")
    }

    /// The pre-hijacking case: an unverified sign-up whose address a provider verified.
    /// Its password and every other way in are discarded, its address is marked
    /// verified, and the link is made, in one transaction. `Ok(false)` when the account
    /// was verified meanwhile (nothing changed).
    pub async fn take_over_unverified(
        &self,
        now: OffsetDateTime,
        user: UserId,
        link: NewLink,
        change: FactorChange,
    ) -> Result<bool, StoreError> {
        let _ = (now, user, link, change);
        todo!("H2")
    }

    /// Removes a link of the member's, never the last way in.
    pub async fn unlink(
        &self,
        now: OffsetDateTime,
        user: UserId,
        id: Uuid,
        change: FactorChange,
    ) -> Result<Unlinking, StoreError> {
        let _ = (now, user, id, change);
        todo!("H2")
    }

    /// Records a sign-in through the link (and Apple's newest refresh token, sealed).
    pub async fn used(
        &self,
        now: OffsetDateTime,
        id: Uuid,
        sealed_refresh_token: Option<String>,
    ) -> Result<(), StoreError> {
        let _ = (now, id, sealed_refresh_token);
        todo!("H2")
    }
}
