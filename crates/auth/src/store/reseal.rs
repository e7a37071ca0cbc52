//! Every value sealed with the master key, where it lives, read a batch at a time and
//! re-written with a compare-and-set, for master-key rotation (`keys::reseal`). The
//! compare is on the sealed column alone: a replica that spends a TOTP step or retries
//! a job meanwhile does not make the re-seal fail, but a new enrolment, a job done and
//! deleted, or another re-seal does, and that row is left as the other writer left it.

use std::fmt;

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::entity::{federated_links, jobs, server_secrets, signing_keys, totp_factors};
use super::links::Revocation;
use super::{LinkRepo, MAIL_QUEUE, StoreError};

/// A kind of sealed value (one column, or one queue's job payloads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sealed {
    /// The private halves of signing keys.
    SigningKeys,
    /// Secrets the server made for itself (the identifier HMAC key).
    ServerSecrets,
    /// Authenticator-app secrets.
    TotpSecrets,
    /// Upstream (Apple's) refresh tokens of federated links.
    UpstreamTokens,
    /// Mail waiting in the job queue (a body may hold a secret link).
    QueuedMail,
    /// Upstream refresh tokens waiting to be revoked.
    UpstreamRevocations,
}

impl Sealed {
    pub const ALL: [Sealed; 6] = [
        Sealed::SigningKeys,
        Sealed::ServerSecrets,
        Sealed::TotpSecrets,
        Sealed::UpstreamTokens,
        Sealed::QueuedMail,
        Sealed::UpstreamRevocations,
    ];

    /// Where the values are, as an operator looking at the database would find them.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SigningKeys => "signing_keys.private_jwe",
            Self::ServerSecrets => "server_secrets.sealed",
            Self::TotpSecrets => "totp_factors.secret_enc",
            Self::UpstreamTokens => "federated_links.refresh_token_sealed",
            Self::QueuedMail => "jobs.payload (queue mail)",
            Self::UpstreamRevocations => "jobs.payload (queue upstream_revoke)",
        }
    }
}

impl fmt::Display for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row's primary key: a name (`signing_keys.kid`, `server_secrets.name`) or a UUID.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RowId {
    Name(String),
    Id(Uuid),
}

impl fmt::Display for RowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Id(id) => write!(f, "{id}"),
        }
    }
}

/// One sealed value as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedRow {
    pub what: Sealed,
    pub id: RowId,
    /// The sealed value (a compact JWE), or the payload as stored when a revocation
    /// job's payload cannot be read (it then names no key, and is reported so).
    pub sealed: String,
    /// The column as stored, which the compare-and-set compares: for a revocation job,
    /// the JSON around `sealed`.
    stored: String,
}

pub struct SealedRepo<'c> {
    conn: &'c DatabaseConnection,
}

impl<'c> SealedRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Up to `limit` values of `what` whose row comes after `after`, in primary-key
    /// order (pages by key, not offset: rows deleted meanwhile shift nothing).
    pub async fn batch(
        &self,
        what: Sealed,
        after: Option<&RowId>,
        limit: u64,
    ) -> Result<Vec<SealedRow>, StoreError> {
        let row = |id: RowId, stored: String| SealedRow {
            what,
            id,
            sealed: stored.clone(),
            stored,
        };
        Ok(match what {
            Sealed::SigningKeys => {
                let mut query = signing_keys::Entity::find();
                if let Some(after) = after {
                    query = query.filter(signing_keys::Column::Kid.gt(name(after)?));
                }
                query
                    .order_by_asc(signing_keys::Column::Kid)
                    .limit(limit)
                    .all(self.conn)
                    .await?
                    .into_iter()
                    .map(|m| row(RowId::Name(m.kid), m.private_jwe))
                    .collect()
            }
            Sealed::ServerSecrets => {
                let mut query = server_secrets::Entity::find();
                if let Some(after) = after {
                    query = query.filter(server_secrets::Column::Name.gt(name(after)?));
                }
                query
                    .order_by_asc(server_secrets::Column::Name)
                    .limit(limit)
                    .all(self.conn)
                    .await?
                    .into_iter()
                    .map(|m| row(RowId::Name(m.name), m.sealed))
                    .collect()
            }
            Sealed::TotpSecrets => {
                let mut query = totp_factors::Entity::find();
                if let Some(after) = after {
                    query = query.filter(totp_factors::Column::UserId.gt(uuid(after)?));
                }
                query
                    .order_by_asc(totp_factors::Column::UserId)
                    .limit(limit)
                    .all(self.conn)
                    .await?
                    .into_iter()
                    .map(|m| row(RowId::Id(m.user_id), m.secret_enc))
                    .collect()
            }
            Sealed::UpstreamTokens => {
                let mut query = federated_links::Entity::find()
                    .filter(federated_links::Column::RefreshTokenSealed.is_not_null());
                if let Some(after) = after {
                    query = query.filter(federated_links::Column::Id.gt(uuid(after)?));
                }
                query
                    .order_by_asc(federated_links::Column::Id)
                    .limit(limit)
                    .all(self.conn)
                    .await?
                    .into_iter()
                    .filter_map(|m| Some(row(RowId::Id(m.id), m.refresh_token_sealed?)))
                    .collect()
            }
            Sealed::QueuedMail | Sealed::UpstreamRevocations => {
                let mut query = jobs::Entity::find().filter(jobs::Column::Queue.eq(queue(what)));
                if let Some(after) = after {
                    query = query.filter(jobs::Column::Id.gt(uuid(after)?));
                }
                query
                    .order_by_asc(jobs::Column::Id)
                    .limit(limit)
                    .all(self.conn)
                    .await?
                    .into_iter()
                    .map(|m| {
                        let mut found = row(RowId::Id(m.id), m.payload);
                        if what == Sealed::UpstreamRevocations
                            && let Ok(revocation) = LinkRepo::revocation(&found.stored)
                        {
                            found.sealed = revocation.sealed_token;
                        }
                        found
                    })
                    .collect()
            }
        })
    }

    /// Replaces `row`'s sealed value with `sealed` (made under master key
    /// `master_key_id`) if the row still holds what was read; `false` (nothing written)
    /// when it changed or went meanwhile.
    pub async fn replace(
        &self,
        row: &SealedRow,
        sealed: &str,
        master_key_id: &str,
    ) -> Result<bool, StoreError> {
        let result = match row.what {
            Sealed::SigningKeys => {
                signing_keys::Entity::update_many()
                    .col_expr(signing_keys::Column::PrivateJwe, Expr::value(sealed))
                    .col_expr(
                        signing_keys::Column::MasterKeyId,
                        Expr::value(master_key_id),
                    )
                    .filter(signing_keys::Column::Kid.eq(name(&row.id)?))
                    .filter(signing_keys::Column::PrivateJwe.eq(row.stored.as_str()))
                    .exec(self.conn)
                    .await?
            }
            Sealed::ServerSecrets => {
                server_secrets::Entity::update_many()
                    .col_expr(server_secrets::Column::Sealed, Expr::value(sealed))
                    .col_expr(
                        server_secrets::Column::MasterKeyId,
                        Expr::value(master_key_id),
                    )
                    .filter(server_secrets::Column::Name.eq(name(&row.id)?))
                    .filter(server_secrets::Column::Sealed.eq(row.stored.as_str()))
                    .exec(self.conn)
                    .await?
            }
            Sealed::TotpSecrets => {
                totp_factors::Entity::update_many()
                    .col_expr(totp_factors::Column::SecretEnc, Expr::value(sealed))
                    .filter(totp_factors::Column::UserId.eq(uuid(&row.id)?))
                    .filter(totp_factors::Column::SecretEnc.eq(row.stored.as_str()))
                    .exec(self.conn)
                    .await?
            }
            Sealed::UpstreamTokens => {
                federated_links::Entity::update_many()
                    .col_expr(
                        federated_links::Column::RefreshTokenSealed,
                        Expr::value(sealed),
                    )
                    .filter(federated_links::Column::Id.eq(uuid(&row.id)?))
                    .filter(federated_links::Column::RefreshTokenSealed.eq(row.stored.as_str()))
                    .exec(self.conn)
                    .await?
            }
            Sealed::QueuedMail | Sealed::UpstreamRevocations => {
                let payload = if row.what == Sealed::UpstreamRevocations {
                    let revocation = LinkRepo::revocation(&row.stored)
                        .map_err(|e| StoreError::Corrupt(format!("job {}: {e}", row.id)))?;
                    serde_json::to_string(&Revocation {
                        sealed_token: sealed.to_owned(),
                        ..revocation
                    })
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?
                } else {
                    sealed.to_owned()
                };
                jobs::Entity::update_many()
                    .col_expr(jobs::Column::Payload, Expr::value(payload))
                    .filter(jobs::Column::Id.eq(uuid(&row.id)?))
                    .filter(jobs::Column::Queue.eq(queue(row.what)))
                    .filter(jobs::Column::Payload.eq(row.stored.as_str()))
                    .exec(self.conn)
                    .await?
            }
        };
        Ok(result.rows_affected == 1)
    }
}

fn queue(what: Sealed) -> &'static str {
    if what == Sealed::UpstreamRevocations {
        LinkRepo::REVOKE_QUEUE
    } else {
        MAIL_QUEUE
    }
}

fn name(id: &RowId) -> Result<&str, StoreError> {
    match id {
        RowId::Name(name) => Ok(name),
        RowId::Id(id) => Err(StoreError::Corrupt(format!(
            "row {id}: a UUID where a name is the key"
        ))),
    }
}

fn uuid(id: &RowId) -> Result<Uuid, StoreError> {
    match id {
        RowId::Id(id) => Ok(*id),
        RowId::Name(name) => Err(StoreError::Corrupt(format!(
            "row {name}: a name where a UUID is the key"
        ))),
    }
}
