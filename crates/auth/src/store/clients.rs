//! Registered clients. Every change an operator makes is written with its audit event
//! in one transaction: a change without its record (or the reverse) cannot happen.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::entity::clients;
use super::{AuditEvent, ByKey, StoreError, on_unique_violation};
use crate::domain::{Client, GrantType, RedirectUri};

pub struct ClientRepo<'c> {
    conn: &'c DatabaseConnection,
    cache: &'c ClientCache,
}

/// How long a replica answers from its copy of a client before reading it again: what
/// another replica (or the CLI) changed counts here within this time. A change made
/// through this process counts at once (the copy is dropped).
pub const CLIENT_CACHE_TTL: Duration = Duration::from_secs(1);

/// Clients read on the hot paths (`/token`'s client authentication, every access-token
/// check), kept in memory for [`CLIENT_CACHE_TTL`]. Only clients that exist are kept, so
/// its size is bounded by the registrations, whatever ids requests make up.
#[derive(Default)]
pub struct ClientCache {
    entries: Mutex<HashMap<String, (Instant, Arc<Client>)>>,
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.entries.lock().map_or(0, |e| e.len());
        f.debug_struct("ClientCache").field("held", &held).finish()
    }
}

impl ClientCache {
    fn get(&self, client_id: &str) -> Option<Arc<Client>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(client_id)
            .filter(|(read, _)| read.elapsed() < CLIENT_CACHE_TTL)
            .map(|(_, client)| Arc::clone(client))
    }

    fn put(&self, client: &Client) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Copies past their time go whenever one is added: the map never holds more
        // than the clients read within the last second or so.
        entries.retain(|_, (read, _)| read.elapsed() < CLIENT_CACHE_TTL);
        entries.insert(
            client.client_id.clone(),
            (Instant::now(), Arc::new(client.clone())),
        );
    }

    fn forget(&self, client_id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(client_id);
    }
}

impl<'c> ClientRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection, cache: &'c ClientCache) -> Self {
        Self { conn, cache }
    }

    /// Like [`find`](Self::find), from this replica's copy when it was read less than
    /// [`CLIENT_CACHE_TTL`] ago. For the hot paths only: a caller about to refuse
    /// because of what the copy says (a secret that does not match) reads again with
    /// `find` first, so a change made elsewhere a moment ago never refuses a client.
    /// Shared, not copied: a client is read on every token request.
    pub async fn find_cached(&self, client_id: &str) -> Result<Option<Arc<Client>>, StoreError> {
        if let Some(client) = self.cache.get(client_id) {
            return Ok(Some(client));
        }
        Ok(self.find(client_id).await?.map(Arc::new))
    }

    /// `ClientIdTaken` when the id exists (and nothing is recorded).
    pub async fn add(&self, client: &Client, event: &AuditEvent) -> Result<(), StoreError> {
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
        let txn = self.conn.begin().await?;
        clients::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
            .map_err(|e| on_unique_violation(e, StoreError::ClientIdTaken))?;
        super::audit::insert(&txn, event).await?;
        txn.commit().await?;
        self.cache.forget(&client.client_id);
        Ok(())
    }

    pub async fn find(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        // PostgreSQL refuses a NUL in text outright; no client_id has one (see
        // `admin::clients`), so such an id from `/token` or a URL names no client.
        if client_id.contains('\0') {
            return Ok(None);
        }
        let client = clients::Entity::find_by_id(client_id.to_owned())
            .by_key(self.conn)
            .await?
            .map(to_client)
            .transpose()?;
        match &client {
            Some(c) => self.cache.put(c),
            None => self.cache.forget(client_id),
        }
        Ok(client)
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

    /// At most `limit` clients ordered by client_id, from the first after `after`: a
    /// unique, immutable key, so pages neither skip nor repeat a client while others
    /// are added or removed.
    pub async fn page(&self, after: Option<&str>, limit: u64) -> Result<Vec<Client>, StoreError> {
        let mut query = clients::Entity::find()
            .order_by_asc(clients::Column::ClientId)
            .limit(limit);
        if let Some(after) = after {
            query = query.filter(clients::Column::ClientId.gt(after));
        }
        query
            .all(self.conn)
            .await?
            .into_iter()
            .map(to_client)
            .collect()
    }

    /// Writes what an operator may change (name, URIs, grants, algorithm, back-channel
    /// logout, first party, scopes; never the secret, `public` or the creation time);
    /// whether the client exists.
    /// Writes `client`'s settings over `before`'s: compare-and-set on every setting, so
    /// an update made from an older read (another admin's at the same time) changes
    /// nothing instead of silently putting back what the other removed (an `admin`
    /// scope, say). `false` when no client with `before`'s settings exists.
    pub async fn update(
        &self,
        before: &Client,
        client: &Client,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await?;
        let backchannel = match &before.backchannel_logout_uri {
            Some(uri) => clients::Column::BackchannelLogoutUri.eq(uri.as_str()),
            None => clients::Column::BackchannelLogoutUri.is_null(),
        };
        let done = clients::Entity::update_many()
            .col_expr(clients::Column::Name, Expr::value(client.name.clone()))
            .col_expr(
                clients::Column::RedirectUris,
                Expr::value(json_list(
                    client.redirect_uris.iter().map(RedirectUri::as_str),
                )),
            )
            .col_expr(
                clients::Column::PostLogoutRedirectUris,
                Expr::value(json_list(
                    client
                        .post_logout_redirect_uris
                        .iter()
                        .map(RedirectUri::as_str),
                )),
            )
            .col_expr(
                clients::Column::GrantTypes,
                Expr::value(json_list(client.grant_types.iter().map(|g| g.as_str()))),
            )
            .col_expr(clients::Column::FirstParty, Expr::value(client.first_party))
            .col_expr(
                clients::Column::IdTokenAlg,
                Expr::value(client.id_token_alg.as_str()),
            )
            .col_expr(
                clients::Column::BackchannelLogoutUri,
                Expr::value(
                    client
                        .backchannel_logout_uri
                        .as_ref()
                        .map(|u| u.as_str().to_owned()),
                ),
            )
            .col_expr(
                clients::Column::BackchannelLogoutSessionRequired,
                Expr::value(client.backchannel_logout_session_required),
            )
            .col_expr(
                clients::Column::Scopes,
                Expr::value(json_list(client.scopes.iter().map(String::as_str))),
            )
            .filter(clients::Column::ClientId.eq(client.client_id.as_str()))
            .filter(clients::Column::Name.eq(before.name.as_str()))
            .filter(clients::Column::RedirectUris.eq(json_list(
                before.redirect_uris.iter().map(RedirectUri::as_str),
            )))
            .filter(
                clients::Column::PostLogoutRedirectUris.eq(json_list(
                    before
                        .post_logout_redirect_uris
                        .iter()
                        .map(RedirectUri::as_str),
                )),
            )
            .filter(
                clients::Column::GrantTypes
                    .eq(json_list(before.grant_types.iter().map(|g| g.as_str()))),
            )
            .filter(clients::Column::FirstParty.eq(before.first_party))
            .filter(clients::Column::IdTokenAlg.eq(before.id_token_alg.as_str()))
            .filter(backchannel)
            .filter(
                clients::Column::BackchannelLogoutSessionRequired
                    .eq(before.backchannel_logout_session_required),
            )
            .filter(clients::Column::Scopes.eq(json_list(before.scopes.iter().map(String::as_str))))
            .exec(&txn)
            .await?;
        if done.rows_affected == 0 {
            return Ok(false);
        }
        super::audit::insert(&txn, event).await?;
        txn.commit().await?;
        self.cache.forget(&client.client_id);
        Ok(true)
    }

    /// Replaces the secret whose hash is `current` with `new`. The old one stays valid
    /// until `previous_until` (a rotation before that replaces it: only one previous
    /// secret is kept), or stops at once when `None`. Compare-and-set on the current
    /// hash, so two rotations at the same time cannot both believe they retired the
    /// same secret: `false` (nothing written) when no client has that id and secret.
    pub async fn rotate_secret(
        &self,
        client_id: &str,
        current: &str,
        new: &str,
        previous_until: Option<OffsetDateTime>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await?;
        let done = clients::Entity::update_many()
            .col_expr(clients::Column::SecretHash, Expr::value(new))
            .col_expr(
                clients::Column::PreviousSecretHash,
                Expr::value(previous_until.map(|_| current.to_owned())),
            )
            .col_expr(
                clients::Column::PreviousSecretExpiresAt,
                Expr::value(previous_until),
            )
            .filter(clients::Column::ClientId.eq(client_id))
            .filter(clients::Column::SecretHash.eq(current))
            .exec(&txn)
            .await?;
        if done.rows_affected == 0 {
            return Ok(false);
        }
        super::audit::insert(&txn, event).await?;
        txn.commit().await?;
        self.cache.forget(client_id);
        Ok(true)
    }

    /// Whether a client was removed. Its grants and refresh tokens go with it (foreign
    /// keys cascade), so every token issued to it stops working.
    pub async fn remove(&self, client_id: &str, event: &AuditEvent) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await?;
        let res = clients::Entity::delete_by_id(client_id.to_owned())
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Ok(false);
        }
        super::audit::insert(&txn, event).await?;
        txn.commit().await?;
        self.cache.forget(client_id);
        Ok(true)
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
