//! Accounts in the durable store.

use rand::CryptoRng;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::entity::users;
use super::{ByKey, StoreError, on_unique_violation};
use crate::clock::Clock;
use crate::domain::{Email, Subject, User, UserId, UserStatus};

pub struct UserRepo<'c> {
    conn: &'c DatabaseConnection,
}

/// What it takes to create an account; the repository makes the ids and timestamps.
pub struct NewUser {
    pub email: Email,
    pub email_verified: bool,
    pub password_hash: Option<String>,
    pub display_name: String,
    pub locale: String,
}

/// The row of a new account in `status`, with fresh ids and timestamps.
pub(super) fn new_row(
    clock: &Clock,
    rng: &mut impl CryptoRng,
    new: NewUser,
    status: UserStatus,
) -> users::ActiveModel {
    let now = clock.now();
    users::ActiveModel {
        id: Set(UserId::new_v7(now).0),
        sub: Set(Subject::generate(rng).as_str().to_owned()),
        email: Set(new.email.normalized().to_owned()),
        email_display: Set(new.email.display().to_owned()),
        email_verified: Set(new.email_verified),
        password_hash: Set(new.password_hash),
        display_name: Set(new.display_name),
        locale: Set(new.locale),
        // Unverified is stored as an active row awaiting verification (see migration 6).
        status: Set(match status {
            UserStatus::Unverified => UserStatus::Active,
            other => other,
        }
        .as_str()
        .to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
        deleted_at: Set(None),
        awaiting_verification: Set(status == UserStatus::Unverified),
        reset_required: Set(false),
        frozen_reason: Set(None),
        purged_at: Set(None),
        webauthn_handle: Set(None),
        federated_unverified: Set(false),
    }
}

impl<'c> UserRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Creates an account. `EmailTaken` when a live account has the same normalised
    /// address (decided by the unique index, so two concurrent sign-ups cannot both win).
    ///
    /// The ids and timestamps are made before the returned future first runs, so the
    /// future does not hold the random source (a thread-local RNG is not `Send`).
    pub fn add(
        &self,
        clock: &Clock,
        rng: &mut impl CryptoRng,
        new: NewUser,
    ) -> impl Future<Output = Result<User, StoreError>> + Send + 'c {
        let row = new_row(clock, rng, new, UserStatus::Active);
        let conn = self.conn;
        async move {
            let model = users::Entity::insert(row)
                .exec_with_returning(conn)
                .await
                .map_err(|e| on_unique_violation(e, StoreError::EmailTaken))?;
            to_user(model)
        }
    }

    /// The live (not deleted) account with this address.
    pub async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        users::Entity::find()
            .filter(users::Column::Email.eq(email.normalized()))
            .filter(users::Column::Status.ne(UserStatus::Deleted.as_str()))
            .one(self.conn)
            .await?
            .map(to_user)
            .transpose()
    }

    /// Operators' search: the accounts (deleted ones included) that `query` names, by
    /// their id, their `sub` or their address (as the normalised address), whichever it
    /// is; in `status`; with an id less than `before` (the last of the previous page).
    /// By id from the greatest (ids are UUIDv7: the newest first), at most `limit`;
    /// ordering by the unique id keeps pages stable while accounts are added.
    pub async fn list(
        &self,
        query: Option<&str>,
        status: Option<UserStatus>,
        before: Option<UserId>,
        limit: u64,
    ) -> Result<Vec<User>, StoreError> {
        let q = query;
        let mut query = users::Entity::find()
            .order_by_desc(users::Column::Id)
            .limit(limit);
        if let Some(q) = q {
            let mut any = Condition::any().add(users::Column::Sub.eq(q));
            if let Ok(id) = Uuid::parse_str(q) {
                any = any.add(users::Column::Id.eq(id));
            }
            if let Ok(email) = Email::parse(q) {
                any = any.add(users::Column::Email.eq(email.normalized()));
            }
            query = query.filter(any);
        }
        query = match status {
            None => query,
            // Unverified is an active row awaiting verification (see `new_row`).
            Some(UserStatus::Unverified) => query
                .filter(users::Column::Status.eq(UserStatus::Active.as_str()))
                .filter(users::Column::AwaitingVerification.eq(true)),
            Some(UserStatus::Active) => query
                .filter(users::Column::Status.eq(UserStatus::Active.as_str()))
                .filter(users::Column::AwaitingVerification.eq(false)),
            Some(status) => query.filter(users::Column::Status.eq(status.as_str())),
        };
        if let Some(before) = before {
            query = query.filter(users::Column::Id.lt(before.0));
        }
        query
            .all(self.conn)
            .await?
            .into_iter()
            .map(to_user)
            .collect()
    }

    pub async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        users::Entity::find_by_id(id.0)
            .by_key(self.conn)
            .await?
            .map(to_user)
            .transpose()
    }

    /// The member's display name and language (`ja` or `en`).
    pub async fn set_profile(
        &self,
        id: UserId,
        display_name: &str,
        locale: &str,
        clock: &Clock,
    ) -> Result<(), StoreError> {
        use sea_orm::sea_query::Expr;
        users::Entity::update_many()
            .col_expr(users::Column::DisplayName, Expr::value(display_name))
            .col_expr(users::Column::Locale, Expr::value(locale))
            .col_expr(users::Column::UpdatedAt, Expr::value(clock.now()))
            .filter(users::Column::Id.eq(id.0))
            .exec(self.conn)
            .await?;
        Ok(())
    }

    /// Freezes, unfreezes or marks an account deleted.
    pub async fn set_status(
        &self,
        id: UserId,
        status: UserStatus,
        clock: &Clock,
    ) -> Result<(), StoreError> {
        let now = clock.now();
        let deleted_at = (status == UserStatus::Deleted).then_some(now);
        users::Entity::update_many()
            .col_expr(
                users::Column::Status,
                sea_orm::sea_query::Expr::value(status.as_str()),
            )
            .col_expr(
                users::Column::UpdatedAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .col_expr(
                users::Column::DeletedAt,
                sea_orm::sea_query::Expr::value(deleted_at),
            )
            .filter(users::Column::Id.eq(id.0))
            .exec(self.conn)
            .await?;
        Ok(())
    }

    pub async fn find_by_sub(&self, sub: &Subject) -> Result<Option<User>, StoreError> {
        users::Entity::find()
            .filter(users::Column::Sub.eq(sub.as_str()))
            .by_key(self.conn)
            .await?
            .map(to_user)
            .transpose()
    }
}

pub(super) fn to_user(m: users::Model) -> Result<User, StoreError> {
    let status = match UserStatus::parse(&m.status) {
        Some(UserStatus::Active) if m.awaiting_verification => UserStatus::Unverified,
        Some(status) => status,
        None => {
            return Err(StoreError::Corrupt(format!(
                "user {} has status {:?}",
                m.id, m.status
            )));
        }
    };
    Ok(User {
        id: UserId(m.id),
        sub: Subject::from_stored(m.sub),
        email: Email::from_stored(m.email, m.email_display),
        email_verified: m.email_verified,
        password_hash: m.password_hash,
        display_name: m.display_name,
        locale: m.locale,
        status,
        created_at: m.created_at,
        updated_at: m.updated_at,
        reset_required: m.reset_required,
        frozen_reason: m.frozen_reason,
        deleted_at: m.deleted_at,
    })
}
