//! The members' sign-in history (see the `login_events` migration).

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use super::entity::login_events;
use crate::domain::UserId;

/// How a sign-in attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginResult {
    Success,
    WrongPassword,
    /// Refused by the throttle; the password was not checked.
    Throttled,
    /// The right password of an account awaiting verification.
    Unverified,
    /// The right password of a frozen account.
    Frozen,
    /// The right password of an account whose email change its owner undid: refused
    /// until the password is reset.
    ResetRequired,
    /// The right password, then a wrong or spent second-step code.
    WrongCode,
    /// Not a sign-in: the factor named by the method was turned on (or renewed).
    Enrolled,
    /// Not a sign-in: the factor named by the method was turned off.
    Removed,
    /// A passkey's assertion was refused (a replayed or foreign ceremony, a counter
    /// going backwards, another origin, a removed credential).
    PasskeyRefused,
}

impl LoginResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::WrongPassword => "wrong_password",
            Self::Throttled => "throttled",
            Self::Unverified => "unverified",
            Self::Frozen => "frozen",
            Self::ResetRequired => "reset_required",
            Self::WrongCode => "wrong_code",
            Self::Enrolled => "enrolled",
            Self::Removed => "removed",
            Self::PasskeyRefused => "passkey_refused",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "success" => Self::Success,
            "wrong_password" => Self::WrongPassword,
            "throttled" => Self::Throttled,
            "unverified" => Self::Unverified,
            "frozen" => Self::Frozen,
            "reset_required" => Self::ResetRequired,
            "wrong_code" => Self::WrongCode,
            "enrolled" => Self::Enrolled,
            "removed" => Self::Removed,
            "passkey_refused" => Self::PasskeyRefused,
            other => return Err(StoreError::Corrupt(format!("login result {other:?}"))),
        })
    }
}

/// One attempt, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginEvent {
    pub id: Uuid,
    pub user: UserId,
    pub at: OffsetDateTime,
    pub ip: String,
    pub user_agent: String,
    pub device_hash: String,
    /// `password` now; passkeys, second steps and federation later.
    pub method: String,
    pub result: LoginResult,
    pub new_device: bool,
}

/// What is stored of a user agent: enough to describe the device, bounded.
const USER_AGENT_MAX: usize = 512;

pub struct LoginEventRepo<'c> {
    conn: &'c DatabaseConnection,
}

impl<'c> LoginEventRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    pub async fn record(&self, event: &LoginEvent) -> Result<(), StoreError> {
        insert(self.conn, event).await
    }

    /// The account's attempts, newest first: `limit` of them, older than `before`
    /// (the last of the previous page: its time and id) when given.
    pub async fn page(
        &self,
        user: UserId,
        before: Option<(OffsetDateTime, Uuid)>,
        limit: u64,
    ) -> Result<Vec<LoginEvent>, StoreError> {
        let mut query = login_events::Entity::find()
            .filter(login_events::Column::UserId.eq(user.0))
            .order_by_desc(login_events::Column::CreatedAt)
            .order_by_desc(login_events::Column::Id)
            .limit(limit);
        if let Some((at, id)) = before {
            query = query.filter(
                Condition::any()
                    .add(login_events::Column::CreatedAt.lt(at))
                    .add(
                        Condition::all()
                            .add(login_events::Column::CreatedAt.eq(at))
                            .add(login_events::Column::Id.lt(id)),
                    ),
            );
        }
        query
            .all(self.conn)
            .await?
            .into_iter()
            .map(|m| {
                Ok(LoginEvent {
                    id: m.id,
                    user: UserId(m.user_id),
                    at: m.created_at,
                    ip: m.ip,
                    user_agent: m.user_agent,
                    device_hash: m.device_hash,
                    method: m.method,
                    result: LoginResult::parse(&m.result)?,
                    new_device: m.new_device,
                })
            })
            .collect()
    }

    /// Removes attempts older than `before`; how many.
    pub async fn purge(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let done = login_events::Entity::delete_many()
            .filter(login_events::Column::CreatedAt.lt(before))
            .exec(self.conn)
            .await?;
        Ok(done.rows_affected)
    }
}

/// Records `event` on the caller's connection or transaction (a change to the account's
/// factors writes its history entry with it).
pub(super) async fn insert(
    conn: &impl sea_orm::ConnectionTrait,
    event: &LoginEvent,
) -> Result<(), StoreError> {
    login_events::Entity::insert(login_events::ActiveModel {
        id: Set(event.id),
        user_id: Set(event.user.0),
        created_at: Set(event.at),
        ip: Set(event.ip.chars().take(64).collect()),
        user_agent: Set(event.user_agent.chars().take(USER_AGENT_MAX).collect()),
        device_hash: Set(event.device_hash.chars().take(64).collect()),
        method: Set(event.method.clone()),
        result: Set(event.result.as_str().to_owned()),
        new_device: Set(event.new_device),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}
