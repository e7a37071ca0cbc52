//! Browser sessions, grants and refresh tokens: the state behind single sign-on and
//! every token the OP issues.

use rand::CryptoRng;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::entity::{grants, refresh_tokens, sessions, users};
use super::logouts;
use super::readers::{Columns, NotHere};
use super::users::to_user;
use super::{AuditEvent, ByKey, StoreError};
use crate::clock::Clock;
use crate::crypto::{random_token, sha256_hex};
use crate::domain::{BrowserSession, Grant, User, UserId};

/// The account's live sessions: not ended, before their absolute end, and (unless kept
/// signed in) used within `idle`.
fn live(user: UserId, now: OffsetDateTime, idle: Duration) -> sea_orm::Select<sessions::Entity> {
    sessions::Entity::find().filter(live_condition(user, now, idle))
}

/// The rule of `live` as a condition, for writes that end the live sessions.
fn live_condition(user: UserId, now: OffsetDateTime, idle: Duration) -> sea_orm::Condition {
    use sea_orm::Condition;
    Condition::all()
        .add(sessions::Column::UserId.eq(user.0))
        .add(sessions::Column::EndedAt.is_null())
        .add(sessions::Column::ExpiresAt.gt(now))
        .add(
            Condition::any()
                .add(sessions::Column::Remember.eq(true))
                .add(sessions::Column::LastSeenAt.gt(now - idle)),
        )
}

pub struct SessionRepo<'c> {
    conn: &'c DatabaseConnection,
}

pub struct NewSession {
    pub user_id: UserId,
    pub amr: Vec<String>,
    pub acr: String,
    pub device_id: String,
    pub ip: String,
    pub user_agent: String,
    pub remember: bool,
    /// Absolute lifetime from now.
    pub lifetime: Duration,
}

impl<'c> SessionRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Creates a session; returns it with the cookie secret (stored only as its hash).
    pub fn create(
        &self,
        clock: &Clock,
        rng: &mut impl CryptoRng,
        new: NewSession,
    ) -> impl Future<Output = Result<(BrowserSession, String), StoreError>> + Send + 'c {
        let now = clock.now();
        let secret = random_token(rng, 32);
        let row = sessions::ActiveModel {
            id: Set(Uuid::new_v4()),
            secret_hash: Set(sha256_hex(&secret)),
            sid: Set(random_token(rng, 16)),
            user_id: Set(new.user_id.0),
            auth_time: Set(now),
            amr: Set(serde_json::to_string(&new.amr).expect("strings serialise")),
            acr: Set(new.acr),
            device_id: Set(new.device_id),
            ip: Set(new.ip),
            user_agent: Set(new.user_agent.chars().take(512).collect()),
            remember: Set(new.remember),
            created_at: Set(now),
            last_seen_at: Set(now),
            expires_at: Set(now + new.lifetime),
            ended_at: Set(None),
        };
        let conn = self.conn;
        async move {
            let model = sessions::Entity::insert(row)
                .exec_with_returning(conn)
                .await?;
            Ok((to_session(model)?, secret))
        }
    }

    /// The session behind a cookie secret, unless it ended or passed its absolute end.
    pub async fn find_live(
        &self,
        secret: &str,
        now: OffsetDateTime,
    ) -> Result<Option<BrowserSession>, StoreError> {
        sessions::Entity::find()
            .filter(sessions::Column::SecretHash.eq(sha256_hex(secret)))
            .filter(sessions::Column::EndedAt.is_null())
            .filter(sessions::Column::ExpiresAt.gt(now))
            .by_key(self.conn)
            .await?
            .map(to_session)
            .transpose()
    }

    /// How many sessions of the account are live: not ended, before their absolute end,
    /// and (unless kept signed in) used within `idle`.
    pub async fn count_live(
        &self,
        user: UserId,
        now: OffsetDateTime,
        idle: Duration,
    ) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait;
        Ok(live(user, now, idle).count(self.conn).await?)
    }

    /// The live sessions of the account (the same rule as `count_live`), the most
    /// recently active first: the member's list of signed-in devices.
    pub async fn list_live(
        &self,
        user: UserId,
        now: OffsetDateTime,
        idle: Duration,
    ) -> Result<Vec<BrowserSession>, StoreError> {
        use sea_orm::QueryOrder;
        live(user, now, idle)
            .order_by_desc(sessions::Column::LastSeenAt)
            .order_by_desc(sessions::Column::CreatedAt)
            .all(self.conn)
            .await?
            .into_iter()
            .map(to_session)
            .collect()
    }

    pub async fn find(&self, id: Uuid) -> Result<Option<BrowserSession>, StoreError> {
        sessions::Entity::find_by_id(id)
            .by_key(self.conn)
            .await?
            .map(to_session)
            .transpose()
    }

    /// A fresh sign-in on an existing session: new auth_time, factors and level (`amr`,
    /// `acr`), a new cookie secret. `None` if the session ended meanwhile.
    pub fn reauthenticate(
        &self,
        rng: &mut impl CryptoRng,
        id: Uuid,
        now: OffsetDateTime,
        level: (&[String], &str),
        remember: bool,
        expires_at: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<(BrowserSession, String)>, StoreError>> + Send + 'c
    {
        let secret = random_token(rng, 32);
        let (amr, acr) = level;
        let amr = serde_json::to_string(amr).expect("strings serialise");
        let acr = acr.to_owned();
        let conn = self.conn;
        async move {
            let res = sessions::Entity::update_many()
                .col_expr(
                    sessions::Column::SecretHash,
                    Expr::value(sha256_hex(&secret)),
                )
                .col_expr(sessions::Column::AuthTime, Expr::value(now))
                .col_expr(sessions::Column::LastSeenAt, Expr::value(now))
                .col_expr(sessions::Column::Amr, Expr::value(amr))
                .col_expr(sessions::Column::Acr, Expr::value(acr))
                .col_expr(sessions::Column::Remember, Expr::value(remember))
                .col_expr(sessions::Column::ExpiresAt, Expr::value(expires_at))
                .filter(sessions::Column::Id.eq(id))
                .filter(sessions::Column::EndedAt.is_null())
                .exec(conn)
                .await?;
            if res.rows_affected == 0 {
                return Ok(None);
            }
            let model = sessions::Entity::find_by_id(id).by_key(conn).await?;
            Ok(model.map(to_session).transpose()?.map(|s| (s, secret)))
        }
    }

    pub async fn touch(&self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        sessions::Entity::update_many()
            .col_expr(sessions::Column::LastSeenAt, Expr::value(now))
            .filter(sessions::Column::Id.eq(id))
            .exec(self.conn)
            .await?;
        Ok(())
    }

    /// Ends a session, revokes the grants that live only as long as it (offline grants
    /// survive) and queues a back-channel logout to each client it signed in to, in one
    /// transaction. Ending a session that already ended changes nothing.
    pub async fn end(&self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        let txn = self.conn.begin().await?;
        let ended = end_where(&txn, now, sessions::Column::Id.eq(id)).await?;
        logouts::for_ended_sessions(&txn, now, &ended).await?;
        grants::Entity::update_many()
            .col_expr(grants::Column::RevokedAt, Expr::value(now))
            .filter(grants::Column::SessionId.eq(id))
            .filter(grants::Column::Offline.eq(false))
            .filter(grants::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Ends one session of the account `user` (support's "sign out this device"): as
    /// `end`, and an email change waiting for its link dies with it (as when the member
    /// ends another browser), with `audit` recorded, in one transaction. `false` (nothing
    /// changes, nothing is recorded) when the session is not the account's or had ended.
    pub async fn end_of(
        &self,
        now: OffsetDateTime,
        user: UserId,
        id: Uuid,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        self.end_own(now, user, id, true, audit).await
    }

    /// Ends one session of the member `user` from their console: as `end`, and when it
    /// is another browser's (`void_email_change`), an email change waiting for its link
    /// dies with it (that browser may have asked for it); with `audit` recorded, in one
    /// transaction. `false` (nothing changes, nothing is recorded) when the session is not
    /// the member's or had ended meanwhile.
    pub async fn end_own(
        &self,
        now: OffsetDateTime,
        user: UserId,
        id: Uuid,
        void_email_change: bool,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let txn = self.conn.begin().await?;
        let ended = end_where(
            &txn,
            now,
            sea_orm::Condition::all()
                .add(sessions::Column::Id.eq(id))
                .add(sessions::Column::UserId.eq(user.0)),
        )
        .await?;
        if ended.is_empty() {
            txn.rollback().await?;
            return Ok(false);
        }
        logouts::for_ended_sessions(&txn, now, &ended).await?;
        revoke_session_grants(&txn, now, vec![id]).await?;
        if void_email_change {
            super::email_changes::void_pending(&txn, user).await?;
        }
        super::audit::insert(&txn, audit).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Ends every live session of the member `user` but `keep` (the console's "sign out
    /// every other device"; live as in `list_live`), with their grants that live only as
    /// long as them and the back-channel logouts; an email change waiting for its link
    /// and every remembered device but `keep_device` go with them; and the record `audit`
    /// makes of how many sessions ended. One transaction: all of it, or none. Recorded
    /// even when no other session was live: the waiting email change and the remembered
    /// devices went all the same.
    pub async fn end_others(
        &self,
        now: OffsetDateTime,
        user: UserId,
        keep: Uuid,
        keep_device: &str,
        idle: Duration,
        audit: impl FnOnce(u64) -> AuditEvent + Send,
    ) -> Result<u64, StoreError> {
        let txn = self.conn.begin().await?;
        let others = live_condition(user, now, idle).add(sessions::Column::Id.ne(keep));
        let ended = end_where(&txn, now, others).await?;
        logouts::for_ended_sessions(&txn, now, &ended).await?;
        revoke_session_grants(&txn, now, ended.iter().map(|s| s.id).collect()).await?;
        super::email_changes::void_pending(&txn, user).await?;
        super::two_step::forget_devices(&txn, user, Some(keep_device)).await?;
        let count = ended.len() as u64;
        super::audit::insert(&txn, &audit(count)).await?;
        txn.commit().await?;
        Ok(count)
    }

    /// Ends every session of the account, revokes the grants that live only as long as
    /// one of them (offline grants survive, as with `end`) and queues the back-channel
    /// logouts, in one transaction; how many sessions had not ended yet.
    pub async fn end_all(&self, user: UserId, now: OffsetDateTime) -> Result<u64, StoreError> {
        use sea_orm::{QuerySelect, QueryTrait};
        let txn = self.conn.begin().await?;
        let ended = end_where(&txn, now, sessions::Column::UserId.eq(user.0)).await?;
        logouts::for_ended_sessions(&txn, now, &ended).await?;
        // Whatever a session asked for goes with it: an email change waiting for its link,
        // and the devices that skip the second step.
        super::email_changes::void_pending(&txn, user).await?;
        super::two_step::forget_devices(&txn, user, None).await?;
        let of_account = sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Id)
            .filter(sessions::Column::UserId.eq(user.0))
            .into_query();
        grants::Entity::update_many()
            .col_expr(grants::Column::RevokedAt, Expr::value(now))
            .filter(grants::Column::SessionId.in_subquery(of_account))
            .filter(grants::Column::Offline.eq(false))
            .filter(grants::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(ended.len() as u64)
    }
}

/// Ends the sessions matching `filter` that had not ended (`UPDATE … RETURNING`, so two
/// concurrent ends never both report the same session); the sessions it ended.
pub(super) async fn end_where(
    conn: &impl sea_orm::ConnectionTrait,
    now: OffsetDateTime,
    filter: impl sea_orm::sea_query::IntoCondition,
) -> Result<Vec<logouts::Ended>, StoreError> {
    Ok(sessions::Entity::update_many()
        .col_expr(sessions::Column::EndedAt, Expr::value(now))
        .filter(filter)
        .filter(sessions::Column::EndedAt.is_null())
        .exec_with_returning(conn)
        .await?
        .into_iter()
        .map(|m| logouts::Ended {
            id: m.id,
            sid: m.sid,
            user_id: m.user_id,
        })
        .collect())
}

/// Revokes the grants that live only as long as one of the sessions `ids` (offline grants
/// survive); no query when there are none.
async fn revoke_session_grants(
    conn: &impl sea_orm::ConnectionTrait,
    now: OffsetDateTime,
    ids: Vec<Uuid>,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    grants::Entity::update_many()
        .col_expr(grants::Column::RevokedAt, Expr::value(now))
        .filter(grants::Column::SessionId.is_in(ids))
        .filter(grants::Column::Offline.eq(false))
        .filter(grants::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

/// The id and `sid` of the sessions among `ids` (only those not ended yet when
/// `live_only`), for the logouts that name them; no query when there are none.
pub(super) async fn sids(
    conn: &impl sea_orm::ConnectionTrait,
    ids: Vec<Uuid>,
    live_only: bool,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    use sea_orm::QuerySelect;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = sessions::Entity::find()
        .select_only()
        .column(sessions::Column::Id)
        .column(sessions::Column::Sid)
        .filter(sessions::Column::Id.is_in(ids));
    if live_only {
        query = query.filter(sessions::Column::EndedAt.is_null());
    }
    Ok(query.into_tuple().all(conn).await?)
}

fn to_session(m: sessions::Model) -> Result<BrowserSession, StoreError> {
    Ok(BrowserSession {
        id: m.id,
        sid: m.sid,
        user_id: UserId(m.user_id),
        auth_time: m.auth_time,
        amr: parse_amr(&m.amr)?,
        acr: m.acr,
        device_id: m.device_id,
        ip: m.ip,
        user_agent: m.user_agent,
        remember: m.remember,
        created_at: m.created_at,
        last_seen_at: m.last_seen_at,
        expires_at: m.expires_at,
        ended_at: m.ended_at,
    })
}

fn parse_amr(value: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(value).map_err(|e| StoreError::Corrupt(format!("amr: {e}")))
}

pub struct GrantRepo<'c> {
    conn: &'c DatabaseConnection,
    readers: Option<&'c super::readers::Readers>,
}

pub struct NewGrant {
    pub user_id: UserId,
    pub client_id: String,
    pub session_id: Option<Uuid>,
    pub scope: String,
    pub offline: bool,
    pub auth_time: OffsetDateTime,
    pub amr: Vec<String>,
    pub acr: String,
}

impl<'c> GrantRepo<'c> {
    pub(super) fn new(
        conn: &'c DatabaseConnection,
        readers: Option<&'c super::readers::Readers>,
    ) -> Self {
        Self { conn, readers }
    }

    pub async fn create(&self, clock: &Clock, new: NewGrant) -> Result<Grant, StoreError> {
        let now = clock.now();
        let row = grants::ActiveModel {
            id: Set(crate::domain::row_id(now)),
            user_id: Set(new.user_id.0),
            client_id: Set(new.client_id),
            session_id: Set(new.session_id),
            scope: Set(new.scope),
            offline: Set(new.offline),
            auth_time: Set(new.auth_time),
            amr: Set(serde_json::to_string(&new.amr).expect("strings serialise")),
            acr: Set(new.acr),
            created_at: Set(now),
            revoked_at: Set(None),
        };
        to_grant(
            grants::Entity::insert(row)
                .exec_with_returning(self.conn)
                .await?,
        )
    }

    pub async fn find(&self, id: Uuid) -> Result<Option<Grant>, StoreError> {
        grants::Entity::find_by_id(id)
            .by_key(self.conn)
            .await?
            .map(to_grant)
            .transpose()
    }

    /// The grant with its browser session and its member, in one query: what every
    /// use of a token needs to decide whether it still counts.
    pub async fn find_full(&self, id: Uuid) -> Result<Option<FullGrant>, StoreError> {
        match self.readers {
            Some(readers) => find_full_reading(self.conn, readers, id).await,
            None => find_full(self.conn, id).await,
        }
    }

    /// Revokes a grant: its access tokens become inactive, its refresh tokens unusable.
    pub async fn revoke(&self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        grants::Entity::update_many()
            .col_expr(grants::Column::RevokedAt, Expr::value(now))
            .filter(grants::Column::Id.eq(id))
            .filter(grants::Column::RevokedAt.is_null())
            .exec(self.conn)
            .await?;
        Ok(())
    }
}

/// A grant, its browser session (`None` for a grant made without one) and its member.
#[derive(Debug)]
pub struct FullGrant {
    pub grant: Grant,
    pub session: Option<BrowserSession>,
    pub user: User,
}

/// The select of a grant with its session and member (sea-orm's `find_also_related`
/// twice, by its key).
pub(super) fn full_grant_select(
    id: Uuid,
) -> sea_orm::SelectThree<grants::Entity, sessions::Entity, users::Entity, sea_orm::TopologyStar> {
    grants::Entity::find_by_id(id)
        .find_also_related(sessions::Entity)
        .find_also_related(users::Entity)
}

/// The text of [`full_grant_select`], kept (every token use reads it).
static FULL_GRANT: super::Prebuilt = super::Prebuilt::new();

pub(super) async fn find_full(
    conn: &impl sea_orm::ConnectionTrait,
    id: Uuid,
) -> Result<Option<FullGrant>, StoreError> {
    use sea_orm::QueryTrait;
    let backend = conn.get_database_backend();
    let statement = FULL_GRANT.statement(backend, vec![id.into()], || {
        full_grant_select(id).build(backend)
    });
    // By its key, so at most one row; not `.one()` (see `ByKey`).
    let Some(row) = conn.query_all_raw(statement).await?.pop() else {
        return Ok(None);
    };
    full_grant_of(row).map(Some)
}

/// [`find_full`] on SQLite's own reading connections ([`super::readers`]), the same
/// statement; on the pool if it cannot answer there.
async fn find_full_reading(
    conn: &impl sea_orm::ConnectionTrait,
    readers: &super::readers::Readers,
    id: Uuid,
) -> Result<Option<FullGrant>, StoreError> {
    match readers.read(|conn| read_full_grant(conn, id)) {
        Ok(row) => row.map(to_full_grant).transpose(),
        Err(error) => {
            readers.fallbacks.count(&error);
            find_full(conn, id).await
        }
    }
}

/// A grant's row with its session's and member's, as sea-orm reads [`full_grant_select`].
type FullGrantRow = (grants::Model, Option<sessions::Model>, Option<users::Model>);

/// The row of [`full_grant_select`] for grant `id`, if any, on one of SQLite's own
/// connections (a reader's, or the writer's in its transaction).
pub(super) fn read_full_grant(
    conn: &rusqlite::Connection,
    id: Uuid,
) -> rusqlite::Result<Option<FullGrantRow>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached(full_grant_text())?
        .query_row([id.as_bytes()], |row| {
            full_grant_row(&mut Columns::new(row))
        })
        .optional()
}

/// A row of [`full_grant_select`] as sea-orm reads it: the grant's columns (`A_`), then
/// the session's (`B_`, all NULL without one), then the member's (`C_`).
fn full_grant_row(c: &mut Columns<'_, '_>) -> rusqlite::Result<FullGrantRow> {
    let grant = grants::Model {
        id: c.uuid("A_id")?,
        user_id: c.uuid("A_user_id")?,
        client_id: c.text("A_client_id")?,
        session_id: c.opt_uuid("A_session_id")?,
        scope: c.text("A_scope")?,
        offline: c.bool("A_offline")?,
        auth_time: c.time("A_auth_time")?,
        amr: c.text("A_amr")?,
        acr: c.text("A_acr")?,
        created_at: c.time("A_created_at")?,
        revoked_at: c.opt_time("A_revoked_at")?,
    };
    let session = if c.null("B_id")? {
        c.skip(<sessions::Column as sea_orm::Iterable>::iter().count() - 1);
        None
    } else {
        Some(sessions::Model {
            id: c.uuid("B_id")?,
            secret_hash: c.text("B_secret_hash")?,
            sid: c.text("B_sid")?,
            user_id: c.uuid("B_user_id")?,
            auth_time: c.time("B_auth_time")?,
            amr: c.text("B_amr")?,
            acr: c.text("B_acr")?,
            device_id: c.text("B_device_id")?,
            ip: c.text("B_ip")?,
            user_agent: c.text("B_user_agent")?,
            remember: c.bool("B_remember")?,
            created_at: c.time("B_created_at")?,
            last_seen_at: c.time("B_last_seen_at")?,
            expires_at: c.time("B_expires_at")?,
            ended_at: c.opt_time("B_ended_at")?,
        })
    };
    let user = if c.null("C_id")? {
        None
    } else {
        Some(users::Model {
            id: c.uuid("C_id")?,
            sub: c.text("C_sub")?,
            email: c.text("C_email")?,
            email_display: c.text("C_email_display")?,
            email_verified: c.bool("C_email_verified")?,
            password_hash: c.opt_text("C_password_hash")?,
            display_name: c.text("C_display_name")?,
            locale: c.text("C_locale")?,
            status: c.text("C_status")?,
            created_at: c.time("C_created_at")?,
            updated_at: c.time("C_updated_at")?,
            deleted_at: c.opt_time("C_deleted_at")?,
            awaiting_verification: c.bool("C_awaiting_verification")?,
            reset_required: c.bool("C_reset_required")?,
            frozen_reason: c.opt_text("C_frozen_reason")?,
            purged_at: c.opt_time("C_purged_at")?,
            webauthn_handle: c.opt_uuid("C_webauthn_handle")?,
            federated_unverified: c.bool("C_federated_unverified")?,
        })
    };
    c.end()?;
    Ok((grant, session, user))
}

/// The SQLite text of [`full_grant_select`], its one value the grant's id.
pub(super) fn full_grant_text() -> &'static str {
    use sea_orm::QueryTrait;
    let backend = sea_orm::DbBackend::Sqlite;
    FULL_GRANT
        .text(backend, || full_grant_select(Uuid::nil()).build(backend))
        .expect("SQLite statements are kept")
}

fn full_grant_of(row: sea_orm::QueryResult) -> Result<FullGrant, StoreError> {
    use sea_orm::{SelectThreeModel, SelectorTrait};
    let row =
        SelectThreeModel::<grants::Model, sessions::Model, users::Model>::from_raw_query_result(
            row,
        )?;
    to_full_grant(row)
}

pub(super) fn to_full_grant((grant, session, user): FullGrantRow) -> Result<FullGrant, StoreError> {
    // The member's row outlives the grant (the foreign key cascades the other way).
    let user =
        user.ok_or_else(|| StoreError::Corrupt(format!("grant {} has no member", grant.id)))?;
    Ok(FullGrant {
        grant: to_grant(grant)?,
        session: session.map(to_session).transpose()?,
        user: to_user(user)?,
    })
}

fn to_grant(m: grants::Model) -> Result<Grant, StoreError> {
    Ok(Grant {
        id: m.id,
        user_id: UserId(m.user_id),
        client_id: m.client_id,
        session_id: m.session_id,
        scope: m.scope,
        offline: m.offline,
        auth_time: m.auth_time,
        amr: parse_amr(&m.amr)?,
        acr: m.acr,
        created_at: m.created_at,
        revoked_at: m.revoked_at,
    })
}

#[derive(Debug)]
pub struct RefreshTokenInfo {
    pub grant_id: Uuid,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub spent: bool,
}

/// A refresh token and its row (the token stored only as its hash).
fn new_refresh_token(
    clock: &Clock,
    rng: &mut impl CryptoRng,
    grant_id: Uuid,
    lifetime: Duration,
) -> (String, refresh_tokens::ActiveModel) {
    let token = random_token(rng, 32);
    let row = refresh_token_row(&token, grant_id, clock.now(), lifetime);
    (token, row)
}

/// The row of `token`, issued at `now` in `grant_id`.
fn refresh_token_row(
    token: &str,
    grant_id: Uuid,
    now: OffsetDateTime,
    lifetime: Duration,
) -> refresh_tokens::ActiveModel {
    refresh_tokens::ActiveModel {
        token_hash: Set(sha256_hex(token)),
        grant_id: Set(grant_id),
        created_at: Set(now),
        expires_at: Set(now + lifetime),
        used_at: Set(None),
    }
}

pub struct RefreshTokenRepo<'c> {
    conn: &'c DatabaseConnection,
    writer: Option<&'c super::writer::Writer>,
}

impl<'c> RefreshTokenRepo<'c> {
    pub(super) fn new(
        conn: &'c DatabaseConnection,
        writer: Option<&'c super::writer::Writer>,
    ) -> Self {
        Self { conn, writer }
    }

    /// A new refresh token in `grant_id`; returns the token (stored only as its hash).
    pub fn issue(
        &self,
        clock: &Clock,
        rng: &mut impl CryptoRng,
        grant_id: Uuid,
        lifetime: Duration,
    ) -> impl Future<Output = Result<String, StoreError>> + Send + 'c {
        let (token, row) = new_refresh_token(clock, rng, grant_id, lifetime);
        let conn = self.conn;
        async move {
            refresh_tokens::Entity::insert(row)
                .exec_without_returning(conn)
                .await?;
            Ok(token)
        }
    }

    /// What a refresh token is, without spending it (for introspection and revocation).
    pub async fn find(&self, token: &str) -> Result<Option<RefreshTokenInfo>, StoreError> {
        Ok(refresh_tokens::Entity::find_by_id(sha256_hex(token))
            .by_key(self.conn)
            .await?
            .map(|m| RefreshTokenInfo {
                grant_id: m.grant_id,
                created_at: m.created_at,
                expires_at: m.expires_at,
                spent: m.used_at.is_some(),
            }))
    }

    /// Presents a refresh token: spends it, reads its grant (with session and member),
    /// asks `decide` what becomes of it, and writes that, all in one transaction, so a
    /// crash cannot leave the token spent without a successor, nor a successor without
    /// the spend. Of two concurrent presentations exactly one spends the token: the spend
    /// is a conditional update, not a read followed by a write. `decide` sees the grant
    /// before anything is signed; nothing is signed while the transaction is open.
    ///
    /// On a SQLite file the transaction runs in the calling thread on a connection of its
    /// own ([`super::writer`]), or on the pool when that one cannot begin at once.
    pub fn rotate<E: Send + 'c>(
        &self,
        rng: &mut impl CryptoRng,
        token: &str,
        now: OffsetDateTime,
        decide: impl Fn(&FullGrant) -> Decision<E> + Send + Sync + 'c,
    ) -> impl Future<Output = Result<Rotated<E>, StoreError>> + Send + 'c {
        let hash = sha256_hex(token);
        let successor = random_token(rng, 32);
        let (conn, writer) = (self.conn, self.writer);
        async move {
            if let Some(writer) = writer {
                let here = writer
                    .transaction(|tx| rotate_here(tx, &hash, &successor, now, &decide))
                    .await;
                match here {
                    // SQLite failed mid-way: rolled back, nothing written.
                    Ok(Err(StoreError::Sqlite(e))) => writer.fallbacks.count(&NotHere::Sqlite(e)),
                    Ok(done) => return done,
                    Err(error) => writer.fallbacks.count(&error),
                }
            }
            rotate_on_pool(conn, hash, successor, now, decide).await
        }
    }
}

/// What becomes of a live refresh token, decided on its grant.
pub enum Decision<E> {
    /// A successor in the same grant, live for this long; the token is spent.
    Issue(Duration),
    /// The spend rolls back: the token stays live, as if it had not been presented.
    Keep(E),
    /// The token is spent and the grant ends (the token leaked).
    Revoke(E),
}

/// What presenting a refresh token did.
pub enum Rotated<E> {
    /// Spent, with its successor (stored only as its hash) and its grant.
    Issued {
        token: String,
        grant: Box<FullGrant>,
    },
    /// `Decision::Keep`: nothing written.
    Kept(E),
    /// `Decision::Revoke`: spent, and the grant revoked.
    Revoked(E),
    /// The token was already spent: someone holds a copy (OAuth 2.0 Security BCP §4.14).
    /// Nothing written.
    Reused {
        grant_id: Uuid,
    },
    Expired,
    Unknown,
}

/// Why a token that could not be spent was not: `row` is its row, if any.
fn not_spent<E>(row: Option<(Uuid, OffsetDateTime, bool)>, now: OffsetDateTime) -> Rotated<E> {
    match row {
        Some((grant_id, _, true)) => Rotated::Reused { grant_id },
        Some((_, expires_at, false)) if expires_at <= now => Rotated::Expired,
        _ => Rotated::Unknown,
    }
}

/// [`RefreshTokenRepo::rotate`] on the pool (PostgreSQL, or SQLite when its writer could
/// not begin): the same statements through sea-orm.
async fn rotate_on_pool<E>(
    conn: &DatabaseConnection,
    hash: String,
    successor: String,
    now: OffsetDateTime,
    decide: impl Fn(&FullGrant) -> Decision<E>,
) -> Result<Rotated<E>, StoreError> {
    let txn = conn.begin().await?;
    if let Some(grant) = spend_and_read(&txn, &hash, now).await? {
        return Ok(match decide(&grant) {
            Decision::Keep(e) => {
                txn.rollback().await?;
                Rotated::Kept(e)
            }
            Decision::Revoke(e) => {
                grants::Entity::update_many()
                    .col_expr(grants::Column::RevokedAt, Expr::value(now))
                    .filter(grants::Column::Id.eq(grant.grant.id))
                    .filter(grants::Column::RevokedAt.is_null())
                    .exec(&txn)
                    .await?;
                txn.commit().await?;
                Rotated::Revoked(e)
            }
            Decision::Issue(lifetime) => {
                refresh_tokens::Entity::insert(refresh_token_row(
                    &successor,
                    grant.grant.id,
                    now,
                    lifetime,
                ))
                .exec_without_returning(&txn)
                .await?;
                txn.commit().await?;
                Rotated::Issued {
                    token: successor,
                    grant: Box::new(grant),
                }
            }
        });
    }
    txn.rollback().await?;
    // Not spent now: why, read after the fact (the rare path).
    let row = refresh_tokens::Entity::find_by_id(hash)
        .by_key(conn)
        .await?;
    Ok(not_spent(
        row.map(|row| (row.grant_id, row.expires_at, row.used_at.is_some())),
        now,
    ))
}

/// Spends the live token of hash `hash` and reads its grant, in `txn`: `None` when no
/// live token has that hash (or, which its foreign key rules out, it has no grant). On
/// PostgreSQL one statement, the spend in a `WITH` (a round trip fewer per refresh; SQLite
/// allows no `UPDATE` there): the grant is read as it stood when the statement began, as
/// a second statement would have read it moments later, neither locking it.
async fn spend_and_read(
    txn: &sea_orm::DatabaseTransaction,
    hash: &str,
    now: OffsetDateTime,
) -> Result<Option<FullGrant>, StoreError> {
    use sea_orm::{ConnectionTrait, QueryTrait};
    let spend = || {
        refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::UsedAt, Expr::value(now))
            .filter(refresh_tokens::Column::TokenHash.eq(hash))
            .filter(refresh_tokens::Column::UsedAt.is_null())
            .filter(refresh_tokens::Column::ExpiresAt.gt(now))
    };
    let backend = txn.get_database_backend();
    if backend != sea_orm::DbBackend::Postgres {
        let spent = spend().exec_with_returning(txn).await?;
        return match spent.into_iter().next() {
            Some(spent) => find_full(txn, spent.grant_id).await,
            None => Ok(None),
        };
    }
    let values = vec![now.into(), hash.into(), now.into()];
    let statement = SPEND_AND_READ.statement(backend, values, || {
        let mut spend = spend().into_query();
        spend.returning_col(refresh_tokens::Column::GrantId);
        let spend = backend.build(&spend);
        let read = grants::Entity::find()
            .filter(Expr::cust(
                r#""grants"."id" = (SELECT "grant_id" FROM "spent")"#,
            ))
            .find_also_related(sessions::Entity)
            .find_also_related(users::Entity)
            .build(backend);
        debug_assert!(read.values.as_ref().is_none_or(|v| v.0.is_empty()));
        sea_orm::Statement {
            sql: format!(r#"WITH "spent" AS ({}) {}"#, spend.sql, read.sql),
            ..spend
        }
    });
    // The token's hash is its key, so at most one row.
    match txn.query_all_raw(statement).await?.pop() {
        Some(row) => full_grant_of(row).map(Some),
        None => Ok(None),
    }
}

/// The text of [`spend_and_read`] on PostgreSQL, kept.
static SPEND_AND_READ: super::Prebuilt = super::Prebuilt::new();

/// [`RefreshTokenRepo::rotate`] in a transaction of SQLite's writer: the statements
/// sea-orm makes on the pool, with values bound as sqlx binds them (a UUID as its 16
/// bytes, a time as RFC 3339 text). Answers whether to commit.
fn rotate_here<E>(
    tx: &rusqlite::Transaction<'_>,
    hash: &str,
    successor: &str,
    now: OffsetDateTime,
    decide: &impl Fn(&FullGrant) -> Decision<E>,
) -> Result<(Rotated<E>, bool), StoreError> {
    use rusqlite::{OptionalExtension, params};
    let at = super::readers::sqlite_time(now)?;
    let spent: Option<Uuid> = tx
        .prepare_cached(
            "UPDATE refresh_tokens SET used_at = ?1 \
             WHERE token_hash = ?2 AND used_at IS NULL AND expires_at > ?1 RETURNING grant_id",
        )?
        .query_row(params![at, hash], |row| Columns::new(row).uuid("grant_id"))
        .optional()?;
    let Some(grant_id) = spent else {
        let row = tx
            .prepare_cached(
                "SELECT grant_id, expires_at, used_at FROM refresh_tokens WHERE token_hash = ?1",
            )?
            .query_row([hash], |row| {
                let mut c = Columns::new(row);
                Ok((
                    c.uuid("grant_id")?,
                    c.time("expires_at")?,
                    c.opt_time("used_at")?.is_some(),
                ))
            })
            .optional()?;
        return Ok((not_spent(row, now), false));
    };
    let full = read_full_grant(tx, grant_id)?;
    // The foreign key keeps a token's grant; rolled back, the token is what it was.
    let Some(full) = full else {
        return Ok((Rotated::Unknown, false));
    };
    let grant = to_full_grant(full)?;
    Ok(match decide(&grant) {
        Decision::Keep(e) => (Rotated::Kept(e), false),
        Decision::Revoke(e) => {
            tx.prepare_cached(
                "UPDATE grants SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
            )?
            .execute(params![at, grant_id.as_bytes()])?;
            (Rotated::Revoked(e), true)
        }
        Decision::Issue(lifetime) => {
            tx.prepare_cached(
                "INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at, used_at) \
                 VALUES (?1, ?2, ?3, ?4, NULL)",
            )?
            .execute(params![
                sha256_hex(successor),
                grant_id.as_bytes(),
                at,
                super::readers::sqlite_time(now + lifetime)?,
            ])?;
            (
                Rotated::Issued {
                    token: successor.to_owned(),
                    grant: Box::new(grant),
                },
                true,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{DbBackend, QueryTrait};

    /// After its first use a `Prebuilt` statement is made of kept text and new values:
    /// it must be exactly what sea-orm builds for those values, on both backends.
    #[test]
    fn the_grant_lookup_statement_is_what_sea_orm_builds_for_each_grant() {
        static SQL: crate::store::Prebuilt = crate::store::Prebuilt::new();
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            let first = Uuid::new_v4();
            let built = SQL.statement(backend, vec![first.into()], || {
                full_grant_select(first).build(backend)
            });
            assert_eq!(built, full_grant_select(first).build(backend));
            for _ in 0..3 {
                let id = Uuid::new_v4();
                let kept = SQL.statement(backend, vec![id.into()], || {
                    panic!("built again for {backend:?}")
                });
                assert_eq!(kept, full_grant_select(id).build(backend));
            }
        }
    }
}
