//! Server-side sessions: the cookie holds a random value, the row its hash and the
//! member's tokens. A session ends after an idle period or, however active, an absolute
//! lifetime (both configurable); expired rows are pruned in bounded batches. Each keeps
//! the OP's session id, so a back-channel logout from the OP can end it.

use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, TransactionTrait,
};
use time::{Duration, OffsetDateTime};

use super::PRUNE_BATCH;
use super::entity::{members, sessions};
use super::logouts::Ends;

/// How long sessions live (from `[session]` in the config).
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub idle: Duration,
    pub absolute: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the cookie value: a database leak does not hand out sessions.
    pub id_hash: String,
    pub member_id: String,
    /// Synchronizer token for this session's forms.
    pub csrf: String,
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub access_expires_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    /// The OP's session id (`sid`), when its ID token named one.
    pub op_sid: Option<String>,
}

impl Session {
    pub fn is_live(&self, now: OffsetDateTime, lifetimes: Lifetimes) -> bool {
        now < self.created_at + lifetimes.absolute && now < self.last_seen_at + lifetimes.idle
    }
}

/// What a sign-in starts a session with.
pub struct NewSession {
    pub id_hash: String,
    pub member_id: String,
    pub csrf: String,
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub access_expires_at: OffsetDateTime,
    /// The `sid` claim of the ID token, which a back-channel logout names.
    pub op_sid: Option<String>,
}

/// What a refresh brings.
pub struct Refreshed {
    /// `None` when the OP sent no new ID token: the old one stays.
    pub id_token: Option<String>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub access_expires_at: OffsetDateTime,
}

pub struct SessionRepo<'c> {
    conn: &'c DatabaseConnection,
}

fn to_session(m: sessions::Model) -> Session {
    Session {
        id_hash: m.id_hash,
        member_id: m.member_id,
        csrf: m.csrf,
        id_token: m.id_token,
        access_token: m.access_token,
        refresh_token: m.refresh_token,
        access_expires_at: m.access_expires_at,
        created_at: m.created_at,
        last_seen_at: m.last_seen_at,
        op_sid: m.op_sid,
    }
}

impl<'c> SessionRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Starts a session. In the same transaction the browser's previous session (the
    /// one its cookie named, `replaces`) ends, so signing in again — perhaps as someone
    /// else — leaves no second live session behind, and a batch of expired ones goes.
    pub async fn start(
        &self,
        now: OffsetDateTime,
        lifetimes: Lifetimes,
        new: NewSession,
        replaces: Option<&str>,
    ) -> Result<(), DbErr> {
        let txn = self.conn.begin().await?;
        if let Some(previous) = replaces {
            end(&txn, previous).await?;
        }
        prune(&txn, now, lifetimes).await?;
        sessions::Entity::insert(sessions::ActiveModel {
            id_hash: Set(new.id_hash),
            member_id: Set(new.member_id),
            csrf: Set(new.csrf),
            id_token: Set(new.id_token),
            access_token: Set(new.access_token),
            refresh_token: Set(new.refresh_token),
            access_expires_at: Set(new.access_expires_at),
            created_at: Set(now),
            last_seen_at: Set(now),
            op_sid: Set(new.op_sid),
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await
    }

    /// The session, live or not: the caller judges its lifetimes with its clock.
    pub async fn lookup(&self, id_hash: &str) -> Result<Option<Session>, DbErr> {
        Ok(sessions::Entity::find_by_id(id_hash.to_owned())
            .one(self.conn)
            .await?
            .map(to_session))
    }

    /// Records activity, restarting the idle period.
    pub async fn touch(&self, id_hash: &str, now: OffsetDateTime) -> Result<(), DbErr> {
        sessions::Entity::update_many()
            .col_expr(sessions::Column::LastSeenAt, Expr::value(now))
            .filter(sessions::Column::IdHash.eq(id_hash))
            .exec(self.conn)
            .await?;
        Ok(())
    }

    pub async fn update_tokens(&self, id_hash: &str, tokens: Refreshed) -> Result<(), DbErr> {
        let mut update = sessions::Entity::update_many()
            .col_expr(
                sessions::Column::AccessToken,
                Expr::value(tokens.access_token),
            )
            .col_expr(
                sessions::Column::RefreshToken,
                Expr::value(tokens.refresh_token),
            )
            .col_expr(
                sessions::Column::AccessExpiresAt,
                Expr::value(tokens.access_expires_at),
            );
        if let Some(id_token) = tokens.id_token {
            update = update.col_expr(sessions::Column::IdToken, Expr::value(id_token));
        }
        update
            .filter(sessions::Column::IdHash.eq(id_hash))
            .exec(self.conn)
            .await?;
        Ok(())
    }

    pub async fn end(&self, id_hash: &str) -> Result<(), DbErr> {
        end(self.conn, id_hash).await
    }

    /// Deletes up to one batch of expired sessions; returns how many went.
    pub async fn prune(&self, now: OffsetDateTime, lifetimes: Lifetimes) -> Result<u64, DbErr> {
        prune(self.conn, now, lifetimes).await
    }
}

async fn end(conn: &impl ConnectionTrait, id_hash: &str) -> Result<(), DbErr> {
    sessions::Entity::delete_by_id(id_hash.to_owned())
        .exec(conn)
        .await?;
    Ok(())
}

/// Deletes, in one statement, every session a back-channel logout names: those started
/// from the OP session `sid` (only the member's, when `sub` is named too), or every
/// session of the member whose OP subject is `sub`. Returns how many ended.
pub(super) async fn end_matching(
    conn: &impl ConnectionTrait,
    issuer: &str,
    ends: &Ends,
) -> Result<u64, DbErr> {
    let member = |sub: &str| {
        Query::select()
            .column(members::Column::Id)
            .from(members::Entity)
            .and_where(members::Column::Issuer.eq(issuer))
            .and_where(members::Column::Sub.eq(sub))
            .to_owned()
    };
    let which = match ends {
        Ends::OpSession { sid, sub } => {
            let of_sid = Condition::all().add(sessions::Column::OpSid.eq(sid.as_str()));
            match sub {
                Some(sub) => of_sid.add(sessions::Column::MemberId.in_subquery(member(sub))),
                None => of_sid,
            }
        }
        Ends::Member { sub } => {
            Condition::all().add(sessions::Column::MemberId.in_subquery(member(sub)))
        }
    };
    let done = sessions::Entity::delete_many()
        .filter(which)
        .exec(conn)
        .await?;
    Ok(done.rows_affected)
}

async fn prune(
    conn: &impl ConnectionTrait,
    now: OffsetDateTime,
    lifetimes: Lifetimes,
) -> Result<u64, DbErr> {
    let expired = Query::select()
        .column(sessions::Column::IdHash)
        .from(sessions::Entity)
        .cond_where(
            Condition::any()
                .add(sessions::Column::CreatedAt.lte(now - lifetimes.absolute))
                .add(sessions::Column::LastSeenAt.lte(now - lifetimes.idle)),
        )
        .limit(PRUNE_BATCH)
        .to_owned();
    let done = sessions::Entity::delete_many()
        .filter(sessions::Column::IdHash.in_subquery(expired))
        .exec(conn)
        .await?;
    Ok(done.rows_affected)
}
