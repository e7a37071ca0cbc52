//! Storage. The durable store (sea-orm over SQLite or PostgreSQL, one implementation for
//! both) hands out domain types through one repository per kind of data; sea-orm models
//! never leave this module. The ephemeral store holds short-lived values (codes,
//! challenges, counters) in process or in Redis.

mod accounts;
mod apps;
mod audit;
pub mod bench;
mod clients;
mod consents;
mod db;
mod devices;
mod email_changes;
mod entity;
pub mod ephemeral;
mod history;
pub mod jobs;
mod links;
mod logouts;
mod passkeys;
mod passwords;
mod readers;
mod reseal;
mod resets;
mod server_secrets;
mod sessions;
mod signing_keys;
mod signups;
mod two_step;
mod users;
mod writer;

pub use accounts::{AccountRepo, ReregistrationBlock};
pub use apps::{AppRepo, ConnectedApp};
pub use audit::{AuditEvent, AuditFilter, AuditRepo};
pub use clients::{CLIENT_CACHE_TTL, ClientCache, ClientRepo};
pub use consents::ConsentRepo;
pub use db::{Db, DbError, Lock};
pub use devices::{KnownDevice, KnownDeviceRepo};
pub use email_changes::{Confirmed, EmailChangeRepo, EmailUndo, NewLink, PendingChange, Undone};
pub use ephemeral::{Counter, Ephemeral, EphemeralError, EphemeralStore, Versioned};
pub use history::{LoginEvent, LoginEventRepo, LoginResult};
pub use jobs::{Job, JobRepo, QueueStats};
pub use links::{Link, LinkRepo, Linking, NewLink as NewFederatedLink, Unlinking};
pub use logouts::{BACKCHANNEL_QUEUE, Logout};
pub use passkeys::{NAME_MAX as PASSKEY_NAME_MAX, PasskeyRemoval, PasskeyRepo, StoredPasskey};
pub use passwords::{PasswordChange, PasswordRepo};
pub use reseal::{RowId, Sealed, SealedRepo, SealedRow};
pub use resets::{MAIL_QUEUE, PasswordResetRepo, QueuedMail};
pub use server_secrets::{SealedSecret, ServerSecretRepo};
pub use sessions::{
    Decision, FullGrant, GrantRepo, NewGrant, NewSession, RefreshTokenInfo, RefreshTokenRepo,
    Rotated, SessionRepo,
};
pub use signing_keys::{SigningKeyRepo, StoredKey};
pub use signups::{NewVerification, SignupRepo, Verification};
pub use two_step::{CodeHashes, Factor, FactorChange, Factors, StoredTotp, TwoStepRepo};
pub use users::{NewUser, UserRepo};

/// Errors of the durable store. "Not found" is not an error: lookups return `Option`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("this email address is already registered")]
    EmailTaken,
    #[error("a client with this client_id exists")]
    ClientIdTaken,
    #[error("this passkey is registered already")]
    PasskeyTaken,
    #[error("the account has as many passkeys as it may")]
    TooManyPasskeys,
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A value the store will not write or search for (a control character where the
    /// audit log keeps text): refused before the database sees it, since PostgreSQL
    /// fails on a NUL in text with an error that says nothing useful.
    #[error("{0}")]
    Refused(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// From SQLite's own connections (`store::readers`, `store::writer`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Turns a unique-key violation into the domain error it means (one place, not string
/// matching in every caller).
fn on_unique_violation(err: sea_orm::DbErr, meaning: StoreError) -> StoreError {
    match err.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => meaning,
        _ => StoreError::Db(err),
    }
}

/// The SQL text of a statement that never changes but for its values, built once per
/// backend. Building a select with sea-query costs as much CPU as running it on SQLite for
/// a three-table join (every column of every table named, aliased and quoted, then
/// dropped), on a path that runs for every token: the grant lookup of `/userinfo` and of
/// each refresh. The text is built the first time from the statement itself, so it is
/// always what sea-orm would send; the values are bound anew on every use.
pub(crate) struct Prebuilt {
    sqlite: std::sync::OnceLock<String>,
    postgres: std::sync::OnceLock<String>,
}

impl Prebuilt {
    pub(crate) const fn new() -> Self {
        Self {
            sqlite: std::sync::OnceLock::new(),
            postgres: std::sync::OnceLock::new(),
        }
    }

    /// The statement for `values` on `backend`; `build` makes it with the same values
    /// (called only the first time for a backend; its values must be `values`, in order).
    pub(crate) fn statement(
        &self,
        backend: sea_orm::DbBackend,
        values: Vec<sea_orm::Value>,
        build: impl FnOnce() -> sea_orm::Statement,
    ) -> sea_orm::Statement {
        // Not a backend Tobira runs on: nothing kept.
        let Some(slot) = self.slot(backend) else {
            return build();
        };
        if let Some(sql) = slot.get() {
            return sea_orm::Statement::from_sql_and_values(backend, sql.clone(), values);
        }
        let built = build();
        debug_assert_eq!(built.values.as_ref().map(|v| &v.0), Some(&values));
        // Two first uses at once build the same text; either one is kept.
        let _ = slot.set(built.sql.clone());
        built
    }

    /// The kept text alone, for a statement run outside sea-orm (its values bound there,
    /// as sea-orm binds them); `build` makes the statement the first time.
    pub(crate) fn text(
        &self,
        backend: sea_orm::DbBackend,
        build: impl FnOnce() -> sea_orm::Statement,
    ) -> Option<&str> {
        Some(self.slot(backend)?.get_or_init(|| build().sql))
    }

    fn slot(&self, backend: sea_orm::DbBackend) -> Option<&std::sync::OnceLock<String>> {
        match backend {
            sea_orm::DbBackend::Postgres => Some(&self.postgres),
            sea_orm::DbBackend::Sqlite => Some(&self.sqlite),
            _ => None,
        }
    }
}

/// `.one()` for a lookup by a unique key, without the `LIMIT ?` that `.one()` adds: SQLite
/// (3.47 on) plans a statement with a bound LIMIT for the value bound, so binding it marks
/// the statement to be prepared again, at every execution (measured with sqlx on a
/// three-table join: 45 µs of CPU a query with it, 38 without). Only where the key allows
/// one row at most: the rows are not limited.
trait ByKey<M> {
    fn by_key(
        self,
        conn: &impl sea_orm::ConnectionTrait,
    ) -> impl Future<Output = Result<Option<M>, sea_orm::DbErr>> + Send;
}

impl<E: sea_orm::EntityTrait> ByKey<E::Model> for sea_orm::Select<E>
where
    E::Model: Send + Sync,
{
    async fn by_key(
        self,
        conn: &impl sea_orm::ConnectionTrait,
    ) -> Result<Option<E::Model>, sea_orm::DbErr> {
        Ok(self.all(conn).await?.pop())
    }
}
