//! Registered clients.

use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait, QueryOrder};

use super::entity::clients;
use super::{StoreError, on_unique_violation};
use crate::domain::{Client, GrantType, RedirectUri};

pub struct ClientRepo<'c> {
    conn: &'c DatabaseConnection,
}

impl<'c> ClientRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    /// `ClientIdTaken` when the id exists.
    pub async fn add(&self, client: &Client) -> Result<(), StoreError> {
        let row = clients::ActiveModel {
            client_id: Set(client.client_id.clone()),
            name: Set(client.name.clone()),
            secret_hash: Set(client.secret_hash.clone()),
            redirect_uris: Set(json_list(
                client.redirect_uris.iter().map(RedirectUri::as_str),
            )),
            post_logout_redirect_uris: Set(json_list(
                client
                    .post_logout_redirect_uris
                    .iter()
                    .map(RedirectUri::as_str),
            )),
            grant_types: Set(json_list(client.grant_types.iter().map(|g| g.as_str()))),
            public: Set(client.public),
            first_party: Set(client.first_party),
            id_token_alg: Set(client.id_token_alg.as_str().to_owned()),
            backchannel_logout_uri: Set(client
                .backchannel_logout_uri
                .as_ref()
                .map(|u| u.as_str().to_owned())),
            backchannel_logout_session_required: Set(client.backchannel_logout_session_required),
            created_at: Set(client.created_at),
            scopes: Set(json_list(client.scopes.iter().map(String::as_str))),
            previous_secret_hash: Set(client.previous_secret.as_ref().map(|p| p.0.clone())),
            previous_secret_expires_at: Set(client.previous_secret.as_ref().map(|p| p.1)),
        };
        clients::Entity::insert(row)
            .exec_without_returning(self.conn)
            .await
            .map_err(|e| on_unique_violation(e, StoreError::ClientIdTaken))?;
        Ok(())
    }

    pub async fn find(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        clients::Entity::find_by_id(client_id.to_owned())
            .one(self.conn)
            .await?
            .map(to_client)
            .transpose()
    }

    pub async fn list(&self) -> Result<Vec<Client>, StoreError> {
        clients::Entity::find()
            .order_by_asc(clients::Column::CreatedAt)
            .all(self.conn)
            .await?
            .into_iter()
            .map(to_client)
            .collect()
    }

    /// Whether a client was removed. Its grants and refresh tokens go with it.
    pub async fn remove(&self, client_id: &str) -> Result<bool, StoreError> {
        let res = clients::Entity::delete_by_id(client_id.to_owned())
            .exec(self.conn)
            .await?;
        Ok(res.rows_affected > 0)
    }
}

fn json_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    serde_json::to_string(&items.collect::<Vec<_>>()).expect("a list of strings serialises")
}

fn parse_list(column: &str, value: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(value).map_err(|e| StoreError::Corrupt(format!("clients.{column}: {e}")))
}

fn to_client(m: clients::Model) -> Result<Client, StoreError> {
    let grant_types = parse_list("grant_types", &m.grant_types)?
        .iter()
        .map(|g| {
            GrantType::parse(g)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown grant type {g:?}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Client {
        redirect_uris: parse_list("redirect_uris", &m.redirect_uris)?
            .into_iter()
            .map(RedirectUri::from_stored)
            .collect(),
        post_logout_redirect_uris: parse_list(
            "post_logout_redirect_uris",
            &m.post_logout_redirect_uris,
        )?
        .into_iter()
        .map(RedirectUri::from_stored)
        .collect(),
        grant_types,
        id_token_alg: crate::keys::Alg::parse(&m.id_token_alg).ok_or_else(|| {
            StoreError::Corrupt(format!("clients.id_token_alg {:?}", m.id_token_alg))
        })?,
        client_id: m.client_id,
        name: m.name,
        secret_hash: m.secret_hash,
        public: m.public,
        first_party: m.first_party,
        backchannel_logout_uri: m.backchannel_logout_uri.map(RedirectUri::from_stored),
        backchannel_logout_session_required: m.backchannel_logout_session_required,
        created_at: m.created_at,
        scopes: parse_list("scopes", &m.scopes)?,
        previous_secret: m.previous_secret_hash.zip(m.previous_secret_expires_at),
    })
}
