//! Benchmark-only writes, for `tobira-bench seed` and nothing else: one member's many
//! live browser sessions, each with a grant and a live refresh token, inserted in bulk so
//! that the load script can measure memory and query plans beside 100,000 of them. No
//! route and no job of the server calls this module.
//!
//! Every row is what a password sign-in followed by an authorization code exchange
//! writes, column for column: `SessionRepo::create` (from `authn::session::sign_in`),
//! `GrantRepo::create` (from the authorize endpoint's `issue_code`) and
//! `RefreshTokenRepo::issue` (from the token endpoint). Only the batching differs.

use rand::CryptoRng;
use sea_orm::{ActiveValue::Set, EntityTrait, TransactionTrait};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::entity::{grants, refresh_tokens, sessions};
use super::{Db, StoreError};
use crate::clock::Clock;
use crate::crypto::{random_token, sha256_hex};
use crate::domain::{ACR_ONE, AMR_PASSWORD, UserId, row_id};

/// Sessions (with their grant and refresh token) per transaction: one bulk `INSERT` per
/// table and batch. A session row binds 15 values, so a batch binds 15,000, within
/// SQLite's 32,766 (since 3.32) and PostgreSQL's 65,535 parameters per statement.
pub const SEED_BATCH: usize = 1000;

/// A browser's `User-Agent` as sign-ins record it (the column keeps up to 512
/// characters), so that a seeded row is as large as a real one.
const USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                          (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// What to seed: `count` sessions of `user_id`, each with a grant of `scope` for
/// `client_id` (ending with its session, as a grant without `offline_access` does) and
/// one live refresh token in that grant.
pub struct LiveSessions<'a> {
    pub user_id: UserId,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub count: usize,
    /// A session's absolute lifetime (`SessionPolicy::lifetime`).
    pub session_lifetime: Duration,
    /// A refresh token's idle window (`tokens.refresh_token_days`).
    pub refresh_lifetime: Duration,
    /// How many of the new sessions to hand back with their secrets.
    pub sample: usize,
}

/// The secrets of one seeded session: its cookie value and its refresh token (the store
/// keeps only their hashes).
#[derive(Debug, Clone)]
pub struct SeededSession {
    pub session_secret: String,
    pub refresh_token: String,
}

/// What `seed_live_sessions` wrote.
#[derive(Debug)]
pub struct Seeded {
    pub sessions: u64,
    pub grants: u64,
    pub refresh_tokens: u64,
    pub batches: u64,
    /// The first `LiveSessions::sample` sessions' secrets, to make requests with.
    pub sample: Vec<SeededSession>,
}

/// Seeds `spec.count` live sessions, grants and refresh tokens in transactions of
/// `SEED_BATCH` sessions each. A failed batch rolls back alone; the batches before it
/// stay (they are as live and as valid as any).
pub async fn seed_live_sessions(
    db: &Db,
    clock: &Clock,
    rng: &mut impl CryptoRng,
    spec: LiveSessions<'_>,
) -> Result<Seeded, StoreError> {
    let mut seeded = Seeded {
        sessions: 0,
        grants: 0,
        refresh_tokens: 0,
        batches: 0,
        sample: Vec::with_capacity(spec.sample.min(spec.count)),
    };
    let mut done = 0;
    while done < spec.count {
        let size = SEED_BATCH.min(spec.count - done);
        let batch = Batch::new(clock.now(), rng, &spec, done, size);
        for secrets in batch.secrets {
            if seeded.sample.len() < spec.sample {
                seeded.sample.push(secrets);
            }
        }
        let txn = db.conn().begin().await?;
        seeded.sessions += sessions::Entity::insert_many(batch.sessions)
            .exec_without_returning(&txn)
            .await?;
        seeded.grants += grants::Entity::insert_many(batch.grants)
            .exec_without_returning(&txn)
            .await?;
        seeded.refresh_tokens += refresh_tokens::Entity::insert_many(batch.refresh_tokens)
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        seeded.batches += 1;
        done += size;
    }
    Ok(seeded)
}

/// A member of the benchmarks, a confidential client with the refresh grant, and
/// `sessions` of the member's live sessions in it (the first one's secrets handed back):
/// the database the benches (`benches/store.rs`, `benches/requests.rs`) measure on.
pub struct Fixture {
    pub user_id: UserId,
    pub client_id: String,
    pub client_secret: String,
    pub seeded: Seeded,
}

pub async fn fixture(db: &Db, clock: &Clock, sessions: usize) -> Result<Fixture, String> {
    use crate::admin::clients::{AddClient, add_client};
    let user = db
        .users()
        .add(
            clock,
            &mut rand::rng(),
            super::NewUser {
                email: crate::domain::Email::parse("bench@example.jp")
                    .map_err(|e| e.to_string())?,
                email_verified: true,
                password_hash: None,
                display_name: "ベンチ 太郎".to_owned(),
                locale: "ja".to_owned(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let added = add_client(
        db,
        clock,
        AddClient {
            name: "Bench RP".to_owned(),
            redirect_uris: vec!["https://rp.example.jp/callback".to_owned()],
            post_logout_redirect_uris: vec![],
            public: false,
            first_party: false,
            extra_grants: vec![crate::domain::GrantType::RefreshToken],
            id_token_alg: crate::keys::Alg::RS256,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            client_id: None,
            secret: None,
            scopes: vec![],
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let seeded = seed_live_sessions(
        db,
        clock,
        &mut rand::rng(),
        LiveSessions {
            user_id: user.id,
            client_id: &added.client.client_id,
            scope: "openid profile email",
            count: sessions,
            session_lifetime: Duration::days(30),
            refresh_lifetime: Duration::days(30),
            sample: 1,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(Fixture {
        user_id: user.id,
        client_id: added.client.client_id,
        client_secret: added.secret.ok_or("a confidential client has a secret")?,
        seeded,
    })
}

/// The rows of one transaction, and the secrets only their hashes are stored of.
struct Batch {
    sessions: Vec<sessions::ActiveModel>,
    grants: Vec<grants::ActiveModel>,
    refresh_tokens: Vec<refresh_tokens::ActiveModel>,
    secrets: Vec<SeededSession>,
}

impl Batch {
    /// `first` is the index of the batch's first session among all seeded ones (it picks
    /// each session's client address).
    fn new(
        now: OffsetDateTime,
        rng: &mut impl CryptoRng,
        spec: &LiveSessions<'_>,
        first: usize,
        size: usize,
    ) -> Self {
        let amr = serde_json::to_string(&[AMR_PASSWORD]).expect("strings serialise");
        let mut batch = Self {
            sessions: Vec::with_capacity(size),
            grants: Vec::with_capacity(size),
            refresh_tokens: Vec::with_capacity(size),
            secrets: Vec::with_capacity(size),
        };
        for i in first..first + size {
            // As `SessionRepo::create`: a 256-bit cookie secret kept as its hash, a
            // 128-bit `sid`, the device as the hash of its cookie.
            let session_secret = random_token(rng, 32);
            let session_id = Uuid::new_v4();
            batch.sessions.push(sessions::ActiveModel {
                id: Set(session_id),
                secret_hash: Set(sha256_hex(&session_secret)),
                sid: Set(random_token(rng, 16)),
                user_id: Set(spec.user_id.0),
                auth_time: Set(now),
                amr: Set(amr.clone()),
                acr: Set(ACR_ONE.to_owned()),
                device_id: Set(sha256_hex(&random_token(rng, 32))),
                ip: Set(client_address(i)),
                user_agent: Set(USER_AGENT.to_owned()),
                remember: Set(false),
                created_at: Set(now),
                last_seen_at: Set(now),
                expires_at: Set(now + spec.session_lifetime),
                ended_at: Set(None),
            });
            // As `GrantRepo::create` called by `issue_code` for this session.
            let grant_id = row_id(now);
            batch.grants.push(grants::ActiveModel {
                id: Set(grant_id),
                user_id: Set(spec.user_id.0),
                client_id: Set(spec.client_id.to_owned()),
                session_id: Set(Some(session_id)),
                scope: Set(spec.scope.to_owned()),
                offline: Set(false),
                auth_time: Set(now),
                amr: Set(amr.clone()),
                acr: Set(ACR_ONE.to_owned()),
                created_at: Set(now),
                revoked_at: Set(None),
            });
            // As `RefreshTokenRepo::issue`.
            let refresh_token = random_token(rng, 32);
            batch.refresh_tokens.push(refresh_tokens::ActiveModel {
                token_hash: Set(sha256_hex(&refresh_token)),
                grant_id: Set(grant_id),
                created_at: Set(now),
                expires_at: Set(now + spec.refresh_lifetime),
                used_at: Set(None),
            });
            batch.secrets.push(SeededSession {
                session_secret,
                refresh_token,
            });
        }
        batch
    }
}

/// A client address for the `i`th session, in 198.18.0.0/15 (RFC 2544's range for
/// benchmarks), so that sessions differ as real ones do.
fn client_address(i: usize) -> String {
    let n = i % (1 << 17);
    format!("198.{}.{}.{}", 18 + (n >> 16), (n >> 8) & 0xff, n & 0xff)
}

/// One read through the pool, the smallest a request can make: `SELECT 1`, its row
/// decoded. What each store round trip of a request costs at least (on SQLite a hand-off
/// to the connection's thread and back).
pub async fn round_trip(db: &Db) -> Result<(), StoreError> {
    use sea_orm::ConnectionTrait;
    let conn = db.conn();
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT 1 AS one",
        ))
        .await?
        .ok_or_else(|| StoreError::Corrupt("SELECT 1 returned no row".into()))?;
    row.try_get::<i32>("", "one")?;
    Ok(())
}

/// What [`GrantRepo::find_full`](super::GrantRepo::find_full) did before its statement was
/// [`Prebuilt`](super::Prebuilt): the same select, built by sea-query on every call, and
/// the same rows made of the answer. Kept only so that `benches/store.rs` can measure the
/// two side by side.
pub async fn find_full_built_per_call(
    db: &Db,
    id: Uuid,
) -> Result<Option<super::FullGrant>, StoreError> {
    super::sessions::full_grant_select(id)
        .all(db.conn())
        .await?
        .pop()
        .map(super::sessions::to_full_grant)
        .transpose()
}

/// [`GrantRepo::find_full`](super::GrantRepo::find_full) as it reads on PostgreSQL, and
/// read on SQLite before it read on connections of its own ([`super::readers`]): the kept
/// statement on a connection of sqlx's pool. Kept only for `benches/store.rs`.
pub async fn find_full_pooled(db: &Db, id: Uuid) -> Result<Option<super::FullGrant>, StoreError> {
    super::sessions::find_full(db.conn(), id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_stay_in_the_benchmark_range() {
        assert_eq!(client_address(0), "198.18.0.0");
        assert_eq!(client_address(65_536 + 257), "198.19.1.1");
        assert_eq!(client_address((1 << 17) + 3), "198.18.0.3");
    }
}
