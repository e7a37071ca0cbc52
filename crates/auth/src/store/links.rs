//! Links of accounts to upstream identities (issuer, subject) — see the `federated_links`
//! migration — and the accounts a provider creates. Every change writes its history line
//! and its mail in the same transaction; the last way in to an account (password,
//! passkey, link) is never removed. The unique index on (issuer, subject) decides who
//! holds an identity, so two links made at once cannot both succeed.
//!
//! Also the first-verification rule: an account a provider created without verifying
//! its address loses every earlier way in the first time the address is verified through
//! a link Tobira mailed ([`first_verification`], called by the reset and the sign-up
//! verification in their own transactions, so no caller can forget it).

use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::entity::{
    email_factors, email_verifications, federated_links, passkeys, recovery_codes, totp_factors,
    users,
};
use super::{AuditEvent, FactorChange, MAIL_QUEUE, NewUser, StoreError, jobs, on_unique_violation};
use crate::clock::Clock;
use crate::domain::{User, UserId, UserStatus};

/// The queue of the jobs that revoke an upstream refresh token (Apple's) whose link went
/// away: the account was deleted, the link removed, or its ways in wiped.
const REVOKE_QUEUE: &str = "upstream_revoke";
/// The queue of the jobs that tell a member every earlier way in was removed (the job
/// renders the mail: the store cannot, and the caller of a reset could forget it).
const WAYS_IN_REMOVED_QUEUE: &str = "ways_in_removed";

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

/// An upstream refresh token to revoke (payload of a `LinkRepo::REVOKE_QUEUE` job).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The configured provider id the link was made through.
    pub provider: String,
    /// The refresh token, sealed with the master key (the job table is not a place for
    /// a live credential).
    pub sealed_token: String,
}

/// A member to tell that every earlier way in was removed (payload of a
/// `LinkRepo::WAYS_IN_REMOVED_QUEUE` job): the account only, no address, so the job row
/// holds nothing personal; the mail goes to the address the account has when it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaysInRemoved {
    pub user: Uuid,
    /// When they were removed (unix seconds).
    pub at: i64,
}

fn to_domain(m: federated_links::Model) -> Link {
    Link {
        id: m.id,
        user: UserId(m.user_id),
        provider: m.provider,
        issuer: m.issuer,
        subject: m.subject,
        email: m.email,
        created_at: m.created_at,
        last_used_at: m.last_used_at,
    }
}

fn row(now: OffsetDateTime, user: UserId, link: NewLink) -> federated_links::ActiveModel {
    federated_links::ActiveModel {
        // Random, not time-ordered: the id goes into the console's forms.
        id: Set(Uuid::new_v4()),
        user_id: Set(user.0),
        provider: Set(link.provider),
        issuer: Set(link.issuer),
        subject: Set(link.subject),
        email: Set(link.email),
        refresh_token_sealed: Set(link.sealed_refresh_token),
        created_at: Set(now),
        last_used_at: Set(None),
    }
}

/// Inserts a link; false (the transaction is spoilt: roll it back) when its identity is
/// linked already, as the unique index on (issuer, subject) decides.
async fn insert_link(
    conn: &impl ConnectionTrait,
    link: federated_links::ActiveModel,
) -> Result<bool, StoreError> {
    match federated_links::Entity::insert(link)
        .exec_without_returning(conn)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) => match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Ok(false),
            _ => Err(StoreError::Db(e)),
        },
    }
}

/// Writes what a change causes: its history line and its mail.
async fn trace(
    conn: &impl ConnectionTrait,
    now: OffsetDateTime,
    change: FactorChange,
) -> Result<(), StoreError> {
    super::history::insert(conn, &change.event).await?;
    if let Some(mail) = change.mail {
        jobs::add(conn, now, MAIL_QUEUE, mail.payload).await?;
    }
    Ok(())
}

/// Takes the account's row (a no-op write) so that changes to its ways in queue up behind
/// each other: a count made after it holds until the commit. On SQLite a transaction that
/// read before writing would fail as soon as another write landed in between, where one
/// that writes first waits its turn. False when there is no such account.
async fn take_row(conn: &impl ConnectionTrait, user: UserId) -> Result<bool, StoreError> {
    let taken = users::Entity::update_many()
        .col_expr(
            users::Column::UpdatedAt,
            Expr::col(users::Column::UpdatedAt),
        )
        .filter(users::Column::Id.eq(user.0))
        .exec(conn)
        .await?;
    Ok(taken.rows_affected == 1)
}

/// How many links the account has, but `except`.
async fn count_links(
    conn: &impl ConnectionTrait,
    user: UserId,
    except: Option<Uuid>,
) -> Result<u64, StoreError> {
    let mut query =
        federated_links::Entity::find().filter(federated_links::Column::UserId.eq(user.0));
    if let Some(id) = except {
        query = query.filter(federated_links::Column::Id.ne(id));
    }
    Ok(query.count(conn).await?)
}

/// Queues the revocation of every sealed refresh token the account's links hold, and
/// forgets the tokens (the job has them now). On the caller's transaction.
pub(super) async fn revoke_tokens_of(
    conn: &impl ConnectionTrait,
    now: OffsetDateTime,
    user: UserId,
) -> Result<(), StoreError> {
    let held: Vec<(String, Option<String>)> = federated_links::Entity::find()
        .select_only()
        .column(federated_links::Column::Provider)
        .column(federated_links::Column::RefreshTokenSealed)
        .filter(federated_links::Column::UserId.eq(user.0))
        .filter(federated_links::Column::RefreshTokenSealed.is_not_null())
        .into_tuple()
        .all(conn)
        .await?;
    for (provider, token) in held {
        if let Some(sealed_token) = token {
            queue_revocation(conn, now, provider, sealed_token).await?;
        }
    }
    federated_links::Entity::update_many()
        .col_expr(
            federated_links::Column::RefreshTokenSealed,
            Expr::value(None::<String>),
        )
        .filter(federated_links::Column::UserId.eq(user.0))
        .exec(conn)
        .await?;
    Ok(())
}

async fn queue_revocation(
    conn: &impl ConnectionTrait,
    now: OffsetDateTime,
    provider: String,
    sealed_token: String,
) -> Result<(), StoreError> {
    let payload = serde_json::to_string(&Revocation {
        provider,
        sealed_token,
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    jobs::add(conn, now, REVOKE_QUEUE, payload).await?;
    Ok(())
}

/// Removes every way in the account has but its password: its links (their upstream
/// tokens revoked), passkeys (and the handle that named it to authenticators), second
/// steps (authenticator app, email codes, recovery codes), remembered devices, and every
/// session and grant (with back-channel logouts). On the caller's transaction, after it
/// took the account's row.
pub(super) async fn remove_ways_in(
    conn: &impl ConnectionTrait,
    now: OffsetDateTime,
    user: UserId,
) -> Result<(), StoreError> {
    revoke_tokens_of(conn, now, user).await?;
    federated_links::Entity::delete_many()
        .filter(federated_links::Column::UserId.eq(user.0))
        .exec(conn)
        .await?;
    passkeys::Entity::delete_many()
        .filter(passkeys::Column::UserId.eq(user.0))
        .exec(conn)
        .await?;
    users::Entity::update_many()
        .col_expr(users::Column::WebauthnHandle, Expr::value(None::<Uuid>))
        .filter(users::Column::Id.eq(user.0))
        .exec(conn)
        .await?;
    totp_factors::Entity::delete_by_id(user.0)
        .exec(conn)
        .await?;
    email_factors::Entity::delete_by_id(user.0)
        .exec(conn)
        .await?;
    recovery_codes::Entity::delete_many()
        .filter(recovery_codes::Column::UserId.eq(user.0))
        .exec(conn)
        .await?;
    super::two_step::forget_devices(conn, user, None).await?;
    super::accounts::end_everything(conn, now, user).await?;
    Ok(())
}

/// The first-verification rule, on the caller's transaction (a reset completing, a
/// sign-up verification): if a provider created the account without verifying its
/// address, the address is now verified through a link Tobira mailed, so whoever holds
/// the mailbox is the owner and every way in made before (by whoever claimed the address
/// at the provider) goes: links, passkeys, second steps, remembered devices, sessions.
/// The password the caller sets stays. The member is told by a queued mail. Whether the
/// rule applied.
pub(super) async fn first_verification(
    conn: &impl ConnectionTrait,
    now: OffsetDateTime,
    user: UserId,
) -> Result<bool, StoreError> {
    let flagged = users::Entity::update_many()
        .col_expr(users::Column::FederatedUnverified, Expr::value(false))
        .col_expr(users::Column::EmailVerified, Expr::value(true))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::Id.eq(user.0))
        .filter(users::Column::FederatedUnverified.eq(true))
        .exec(conn)
        .await?;
    if flagged.rows_affected != 1 {
        return Ok(false);
    }
    remove_ways_in(conn, now, user).await?;
    let payload = serde_json::to_string(&WaysInRemoved {
        user: user.0,
        at: now.unix_timestamp(),
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    jobs::add(conn, now, WAYS_IN_REMOVED_QUEUE, payload).await?;
    Ok(true)
}

/// The accounts that have a link (for conditions such as "never purge a federated
/// account").
pub(super) fn linked_users() -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(federated_links::Column::UserId)
        .from(federated_links::Entity)
        .to_owned()
}

pub struct LinkRepo<'c> {
    conn: &'c DatabaseConnection,
    /// Written with the next change (`audited`).
    audit: Option<AuditEvent>,
}

impl<'c> LinkRepo<'c> {
    /// The queue of upstream token revocations (payload: [`LinkRepo::revocation`]).
    pub const REVOKE_QUEUE: &'static str = REVOKE_QUEUE;
    /// The queue of "every earlier way in was removed" notices (payload:
    /// [`LinkRepo::ways_in_removed`]).
    pub const WAYS_IN_REMOVED_QUEUE: &'static str = WAYS_IN_REMOVED_QUEUE;

    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn, audit: None }
    }

    /// Records `event` in the audit log with the change this repository makes next, in
    /// that change's transaction: a change and its record are written together, and
    /// nothing is recorded when nothing changes (a dead link, a refused removal).
    pub fn audited(mut self, event: AuditEvent) -> Self {
        self.audit = Some(event);
        self
    }

    /// Reads the payload of a `REVOKE_QUEUE` job.
    pub fn revocation(payload: &str) -> Result<Revocation, serde_json::Error> {
        serde_json::from_str(payload)
    }

    /// Reads the payload of a `WAYS_IN_REMOVED_QUEUE` job.
    pub fn ways_in_removed(payload: &str) -> Result<WaysInRemoved, serde_json::Error> {
        serde_json::from_str(payload)
    }

    /// The link of an upstream identity.
    pub async fn find(&self, issuer: &str, subject: &str) -> Result<Option<Link>, StoreError> {
        Ok(federated_links::Entity::find()
            .filter(federated_links::Column::Issuer.eq(issuer))
            .filter(federated_links::Column::Subject.eq(subject))
            .one(self.conn)
            .await?
            .map(to_domain))
    }

    /// The member's links, oldest first.
    pub async fn list(&self, user: UserId) -> Result<Vec<Link>, StoreError> {
        Ok(federated_links::Entity::find()
            .filter(federated_links::Column::UserId.eq(user.0))
            .order_by_asc(federated_links::Column::CreatedAt)
            .order_by_asc(federated_links::Column::Id)
            .all(self.conn)
            .await?
            .into_iter()
            .map(to_domain)
            .collect())
    }

    /// Links an upstream identity to an existing account, with its history line and mail.
    /// Whether the identity is free is decided by the unique index, not by a look before
    /// the insert: of two links of one identity made at once, one wins.
    pub async fn link(
        &self,
        now: OffsetDateTime,
        user: UserId,
        link: NewLink,
        change: FactorChange,
    ) -> Result<Linking, StoreError> {
        let (issuer, subject) = (link.issuer.clone(), link.subject.clone());
        let txn = self.conn.begin().await?;
        if !insert_link(&txn, row(now, user, link)).await? {
            // A failed statement ends a PostgreSQL transaction: ask outside it.
            txn.rollback().await?;
            let holder = self.find(&issuer, &subject).await?;
            return Ok(match holder {
                Some(l) if l.user == user => Linking::AlreadyThis,
                // Held by another account, or unlinked since the insert failed (the
                // member can try again; nothing changed either way).
                _ => Linking::OtherAccount,
            });
        }
        trace(&txn, now, change).await?;
        if let Some(event) = &self.audit {
            super::audit::insert(&txn, event).await?;
        }
        txn.commit().await?;
        Ok(Linking::Linked)
    }

    /// Creates an account (no password), its link, its history line and the audit record
    /// `audit` makes of it, in one transaction. `StoreError::EmailTaken` when a live
    /// account has the address (nothing is written).
    /// `unverified` marks an account whose address the provider did not verify: the first
    /// verification of its address through a link Tobira mailed removes every way in it
    /// had before (`first_verification`).
    pub async fn create_account(
        &self,
        clock: &Clock,
        new: NewUser,
        link: NewLink,
        change: impl FnOnce(&User) -> FactorChange + Send,
        audit: impl FnOnce(&User) -> AuditEvent + Send,
    ) -> Result<User, StoreError> {
        let now = clock.now();
        let provider_verified = new.email_verified;
        let mut account = {
            // Dropped before the first await: a thread-local RNG must not live in the
            // future.
            let mut rng = rand::rng();
            super::users::new_row(
                clock,
                &mut rng,
                NewUser {
                    password_hash: None,
                    ..new
                },
                UserStatus::Active,
            )
        };
        account.federated_unverified = Set(!provider_verified);
        let txn = self.conn.begin().await?;
        let model = users::Entity::insert(account)
            .exec_with_returning(&txn)
            .await
            .map_err(|e| on_unique_violation(e, StoreError::EmailTaken))?;
        let user = super::users::to_user(model)?;
        if !insert_link(&txn, row(now, user.id, link)).await? {
            // Another first sign-in of this identity won, for another address: the
            // caller finds its link and signs in there.
            txn.rollback().await?;
            return Err(StoreError::Db(sea_orm::DbErr::Custom(
                "this upstream identity was linked meanwhile".to_owned(),
            )));
        }
        trace(&txn, now, change(&user)).await?;
        super::audit::insert(&txn, &audit(&user)).await?;
        txn.commit().await?;
        Ok(user)
    }

    /// The pre-hijacking case: a sign-up still waiting for its verification link, whose
    /// address a provider verified.
    /// Its password and every other way in are discarded, its address is marked
    /// verified, and the link is made, in one transaction (recorded when `audited`).
    /// `Ok(false)` when the account was verified meanwhile, is not active, or the
    /// identity was linked to another account meanwhile (nothing changed, nothing
    /// recorded).
    pub async fn take_over_unverified(
        &self,
        now: OffsetDateTime,
        user: UserId,
        link: NewLink,
        change: FactorChange,
    ) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await?;
        // The account's row first, changed only while its address is unverified: a
        // verification landing meanwhile makes this a no-op.
        let taken = users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(None::<String>))
            .col_expr(users::Column::EmailVerified, Expr::value(true))
            .col_expr(users::Column::AwaitingVerification, Expr::value(false))
            .col_expr(users::Column::FederatedUnverified, Expr::value(false))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(users::Column::Id.eq(user.0))
            .filter(users::Column::EmailVerified.eq(false))
            // Only a sign-up still waiting for its verification link: an account made
            // unverified another way (`tobira users add` without `--verified`, a provider
            // that verifies nothing) is a member's real account, linked only after its
            // own sign-in.
            .filter(users::Column::AwaitingVerification.eq(true))
            .filter(users::Column::Status.eq(UserStatus::Active.as_str()))
            .exec(&txn)
            .await?;
        if taken.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        // The sign-up's verification links and any reset link were mailed on the
        // strength of a claim the provider has now settled.
        email_verifications::Entity::delete_many()
            .filter(email_verifications::Column::UserId.eq(user.0))
            .exec(&txn)
            .await?;
        super::accounts::void_links(&txn, user).await?;
        remove_ways_in(&txn, now, user).await?;
        if !insert_link(&txn, row(now, user, link)).await? {
            txn.rollback().await?;
            return Ok(false);
        }
        trace(&txn, now, change).await?;
        if let Some(event) = &self.audit {
            super::audit::insert(&txn, event).await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Removes a link of the member's, never the last way in. Decided in the transaction
    /// that removes it, after taking the account's row, so two removals at once (of a
    /// link and a passkey, say) cannot each leave the other as the last. An upstream
    /// refresh token the link held is revoked by a queued job.
    pub async fn unlink(
        &self,
        now: OffsetDateTime,
        user: UserId,
        id: Uuid,
        change: FactorChange,
    ) -> Result<Unlinking, StoreError> {
        let txn = self.conn.begin().await?;
        if !take_row(&txn, user).await? {
            txn.rollback().await?;
            return Ok(Unlinking::NotFound);
        }
        let Some(found) = federated_links::Entity::find_by_id(id)
            .filter(federated_links::Column::UserId.eq(user.0))
            .one(&txn)
            .await?
        else {
            txn.rollback().await?;
            return Ok(Unlinking::NotFound);
        };
        if !other_ways_in(&txn, user, WayIn::Link(id)).await? {
            txn.rollback().await?;
            return Ok(Unlinking::LastWayIn);
        }
        federated_links::Entity::delete_by_id(id).exec(&txn).await?;
        if let Some(sealed_token) = found.refresh_token_sealed {
            queue_revocation(&txn, now, found.provider, sealed_token).await?;
        }
        trace(&txn, now, change).await?;
        if let Some(event) = &self.audit {
            super::audit::insert(&txn, event).await?;
        }
        txn.commit().await?;
        Ok(Unlinking::Unlinked)
    }

    /// Records a sign-in through the link (and Apple's newest refresh token, sealed).
    pub async fn used(
        &self,
        now: OffsetDateTime,
        id: Uuid,
        sealed_refresh_token: Option<String>,
    ) -> Result<(), StoreError> {
        let mut update = federated_links::Entity::update_many()
            .col_expr(federated_links::Column::LastUsedAt, Expr::value(now))
            .filter(federated_links::Column::Id.eq(id));
        if let Some(sealed) = sealed_refresh_token {
            update = update.col_expr(
                federated_links::Column::RefreshTokenSealed,
                Expr::value(sealed),
            );
        }
        update.exec(self.conn).await?;
        Ok(())
    }
}

/// A way in about to be removed.
#[derive(Clone, Copy, Debug)]
pub(super) enum WayIn<'a> {
    Link(Uuid),
    Passkey(&'a str),
}

/// Whether the account keeps a way in without `leaving`: its password, a passkey or a
/// link other than it. The one rule every removal asks, on its transaction, after it took
/// the account's row.
pub(super) async fn other_ways_in(
    conn: &impl ConnectionTrait,
    user: UserId,
    leaving: WayIn<'_>,
) -> Result<bool, StoreError> {
    let has_password = users::Entity::find_by_id(user.0)
        .one(conn)
        .await?
        .is_some_and(|u| u.password_hash.is_some());
    if has_password {
        return Ok(true);
    }
    let mut keys = passkeys::Entity::find().filter(passkeys::Column::UserId.eq(user.0));
    if let WayIn::Passkey(cred_id) = leaving {
        keys = keys.filter(passkeys::Column::CredId.ne(cred_id));
    }
    if keys.count(conn).await? > 0 {
        return Ok(true);
    }
    let except = match leaving {
        WayIn::Link(id) => Some(id),
        WayIn::Passkey(_) => None,
    };
    Ok(count_links(conn, user, except).await? > 0)
}
