//! Remembered consents: which scopes a member allowed a client.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};
use time::OffsetDateTime;

use super::StoreError;
use super::entity::consents;
use crate::domain::UserId;

pub struct ConsentRepo<'c> {
    conn: &'c DatabaseConnection,
}

impl<'c> ConsentRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    pub async fn find(
        &self,
        user: UserId,
        client_id: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        Ok(consents::Entity::find_by_id((user.0, client_id.to_owned()))
            .one(self.conn)
            .await?
            .map(|m| {
                m.scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }))
    }

    /// Records the scopes allowed, replacing what was remembered.
    pub async fn remember(
        &self,
        user: UserId,
        client_id: &str,
        scopes: &[String],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let row = consents::ActiveModel {
            user_id: Set(user.0),
            client_id: Set(client_id.to_owned()),
            scope: Set(scopes.join(" ")),
            created_at: Set(now),
            updated_at: Set(now),
        };
        consents::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([consents::Column::UserId, consents::Column::ClientId])
                    .update_columns([consents::Column::Scope, consents::Column::UpdatedAt])
                    .to_owned(),
            )
            .exec_without_returning(self.conn)
            .await?;
        Ok(())
    }
}
