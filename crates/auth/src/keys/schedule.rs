//! Signing keys over time: the schedule (`tick`) that publishes, promotes, retires and
//! forgets keys, and the operator's `rotate` and `revoke`. All of it only changes rows,
//! under the signing-key lock and with a compare-and-set on every key's state, so
//! replicas and the CLI may run it at once; each replica's ring picks the change up on
//! its next reload. Every change is recorded in the audit log, in the transaction that
//! makes it: as the person who asked for it (`rotate`, `revoke`), or as `system` (the
//! schedule).

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Alg, KeyError, KeyPolicy, KeyState, MasterKey, generate};
use crate::admin::audit::{self, Context, Target};
use crate::clock::{Clock, rfc3339};
use crate::store::{AuditEvent, Db, DbError, Lock, StoreError, StoredKey};

/// The job queue of the schedule: one recurring row, shared by every replica.
pub const QUEUE: &str = "keys.schedule";

/// The schedule's row in `jobs`: a fixed id, so that every replica ensuring it at start
/// finds the same row and the schedule runs once across all of them.
pub const JOB_ID: Uuid = Uuid::from_u128(0x746f_6269_7261_4000_8000_6b65_7973_0001);

/// One change of one key, made only if the key is still in the state it was read in
/// (`SigningKeyRepo::apply` makes a batch of them in one transaction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyChange {
    /// A new key row (a `next` key, or an `active` one replacing a revoked key).
    Add(StoredKey),
    /// `from` → `active`: it signs from `at`.
    Activate {
        kid: String,
        from: KeyState,
        at: OffsetDateTime,
    },
    /// `active` → `retiring`: it stops signing and stays published until `retire_after`.
    Retiring {
        kid: String,
        retire_after: OffsetDateTime,
    },
    /// `from` → `retired` at `at`; its private half is wiped (it never signs again:
    /// less to steal).
    Retire {
        kid: String,
        from: KeyState,
        at: OffsetDateTime,
    },
    /// `from` → `revoked` at `at`; its private half is wiped.
    Revoke {
        kid: String,
        from: KeyState,
        at: OffsetDateTime,
    },
    /// A waiting `next` key signs from `activate_after` instead.
    Reschedule {
        kid: String,
        activate_after: OffsetDateTime,
    },
    /// A `retired` key goes.
    Delete { kid: String },
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(
        "a next {alg} key ({kid}) already waits to sign from {at}: `tobira keys rotate --now` makes it sign at once"
    )]
    NextWaiting {
        alg: &'static str,
        kid: String,
        at: String,
    },
    #[error("no signing key has the kid {0:?} (`tobira keys list` shows them)")]
    UnknownKid(String),
    #[error("signing key {kid} was revoked already, at {at}")]
    AlreadyRevoked { kid: String, at: String },
    #[error("the signing keys changed while this ran; run it again")]
    Conflict,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What one `tick` changed, key by key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// `next` keys published by `keys.rotate_every_days`.
    pub published: usize,
    /// `next` keys that started signing.
    pub activated: usize,
    /// Keys that stopped signing and stay published.
    pub retiring: usize,
    /// Keys no longer published (their private half wiped).
    pub retired: usize,
    /// Retired keys forgotten.
    pub deleted: usize,
}

impl TickReport {
    pub fn changed(&self) -> bool {
        *self != Self::default()
    }
}

/// What `revoke` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub kid: String,
    pub alg: String,
    /// The state it was revoked in.
    pub was: KeyState,
    /// The key that signs instead (when the revoked one was signing).
    pub replacement: Option<Replacement>,
    /// By when every replica has reloaded its ring and stopped trusting it (one reload
    /// interval).
    pub effective_by: OffsetDateTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    pub kid: String,
    pub from: ReplacedBy,
}

/// Where the key signing instead of a revoked one came from, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplacedBy {
    /// The waiting `next` key: published already.
    Next,
    /// A `retiring` key: published already, and clients have it cached.
    Retiring,
    /// A key made on the spot: no client has it yet, so each fetches the JWKS again
    /// when it first sees its kid.
    Generated,
}

impl ReplacedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Retiring => "retiring",
            Self::Generated => "generated",
        }
    }
}

impl Replacement {
    /// Whether clients must fetch the JWKS again before they can check its tokens.
    pub fn clients_must_refetch(&self) -> bool {
        self.from == ReplacedBy::Generated
    }
}

impl std::fmt::Display for Revocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "revoked {} ({}, was {})",
            self.kid,
            self.alg,
            self.was.as_str()
        )?;
        match &self.replacement {
            None => {}
            Some(r) => match r.from {
                ReplacedBy::Next => write!(f, "; the next key {} signs instead", r.kid)?,
                ReplacedBy::Retiring => {
                    write!(f, "; the retiring key {} signs again instead", r.kid)?
                }
                ReplacedBy::Generated => write!(
                    f,
                    "; a new key {} signs instead (clients will fetch the JWKS again to check its tokens)",
                    r.kid
                )?,
            },
        }
        write!(
            f,
            "; every replica stops using it within one reload interval (by {})",
            rfc3339(self.effective_by)
        )
    }
}

/// A key as operators see it (CLI `--json`, admin API): everything but its private half.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub kid: String,
    /// `RS256`, `ES256` or `EdDSA`.
    pub alg: String,
    /// `next`, `active`, `retiring`, `retired` or `revoked`.
    pub state: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// A `next` key signs from this time on.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub activate_after: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub activated_at: Option<OffsetDateTime>,
    /// A `retiring` key leaves the JWKS at this time.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retire_after: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retired_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<&StoredKey> for KeyView {
    fn from(k: &StoredKey) -> Self {
        Self {
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            state: k.state.clone(),
            created_at: k.created_at,
            activate_after: k.activate_after,
            activated_at: k.activated_at,
            retire_after: k.retire_after,
            retired_at: k.retired_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// Every key (revoked and retired ones too), oldest first.
pub async fn list(db: &Db) -> Result<Vec<StoredKey>, RotationError> {
    Ok(db.signing_keys().all().await?)
}

/// A key read with its state parsed.
struct Row {
    key: StoredKey,
    state: KeyState,
}

impl Row {
    fn is(&self, alg: Alg, state: KeyState) -> bool {
        self.state == state && self.key.alg == alg.as_str()
    }
}

/// Every key, oldest first; a state this version does not know is an error rather
/// than a key silently left alone.
async fn rows(db: &Db) -> Result<Vec<Row>, RotationError> {
    db.signing_keys()
        .all()
        .await?
        .into_iter()
        .map(|key| match KeyState::parse(&key.state) {
            Some(state) => Ok(Row { key, state }),
            None => Err(KeyError::Corrupt {
                reason: format!("unknown state {:?}", key.state),
                kid: key.kid,
            }
            .into()),
        })
        .collect()
}

fn log_change(key: &StoredKey, from: &str, to: KeyState) {
    tracing::info!(kid = %key.kid, alg = %key.alg, from, to = to.as_str(), "signing key changed state");
}

/// The audit record of a change of the key `(kid, alg)` made at `at`, with its kid, alg
/// and `more` in the detail. `SigningKeyRepo::apply` writes it in the change's
/// transaction: a change that does not happen (a conflict) is never recorded, and a
/// change whose record cannot be written does not happen.
fn event(
    at: OffsetDateTime,
    ctx: &Context,
    action: &str,
    (kid, alg): (&str, &str),
    more: serde_json::Value,
) -> AuditEvent {
    let mut detail = json!({ "kid": kid, "alg": alg });
    if let (Some(detail), serde_json::Value::Object(more)) = (detail.as_object_mut(), more) {
        detail.extend(more);
    }
    audit::event(at, ctx, action, Target::Key(kid.to_owned()), detail)
}

/// A new key of `alg`, published now, signing from `activate_after`.
fn next_key(
    alg: Alg,
    master: &MasterKey,
    now: OffsetDateTime,
    activate_after: OffsetDateTime,
) -> Result<StoredKey, KeyError> {
    let mut key = generate(alg, master, &Clock::manual(now))?;
    key.state = KeyState::Next.as_str().to_owned();
    key.activated_at = None;
    key.activate_after = Some(activate_after);
    Ok(key)
}

/// Moves every key along its life as far as `now` allows (see `KeyState`): publishes a
/// successor `policy.publish_ahead` before `policy.rotate_every` runs out, promotes due
/// `next` keys, retires `retiring` keys past `retiring_for`, forgets retired keys past
/// `keep_retired`. Running it twice, or on several replicas at once, changes nothing more.
pub async fn tick(
    db: &Db,
    master: &MasterKey,
    now: OffsetDateTime,
    policy: &KeyPolicy,
) -> Result<TickReport, RotationError> {
    db.locked(Lock::SigningKeys, tick_locked(db, master, now, policy))
        .await?
}

async fn tick_locked(
    db: &Db,
    master: &MasterKey,
    now: OffsetDateTime,
    policy: &KeyPolicy,
) -> Result<TickReport, RotationError> {
    let repo = db.signing_keys();
    let mut report = TickReport::default();
    let system = Context::system();

    // 1. A successor, published ahead so that clients' cached JWKS know it before it
    // signs.
    if let Some(every) = policy.rotate_every {
        let keys = rows(db).await?;
        for alg in Alg::ALL {
            if keys.iter().any(|r| r.is(alg, KeyState::Next)) {
                continue;
            }
            let newest_start = keys
                .iter()
                .filter(|r| r.is(alg, KeyState::Active))
                .map(|r| r.key.activated_at.unwrap_or(r.key.created_at))
                .max();
            // No active key: nothing to succeed (the ring creates the first one).
            let Some(since) = newest_start else { continue };
            if since + every - policy.publish_ahead <= now {
                let activate_after = now + policy.publish_ahead;
                let key = next_key(alg, master, now, activate_after)?;
                let signs_from = rfc3339(activate_after);
                let more = json!({ "activate_after": signs_from, "scheduled": true });
                let record = event(now, &system, "key.rotate", (&key.kid, &key.alg), more);
                repo.apply(&[KeyChange::Add(key.clone())], &[record])
                    .await?;
                log_change(&key, "-", KeyState::Next);
                report.published += 1;
            }
        }
    }

    // 2. Due `next` keys sign; the keys they replace stay published while their tokens
    // live.
    let keys = rows(db).await?;
    for alg in Alg::ALL {
        let due: Vec<&Row> = keys
            .iter()
            .filter(|r| r.is(alg, KeyState::Next))
            .filter(|r| r.key.activate_after.is_none_or(|at| at <= now))
            .collect();
        // Oldest first: the last is the newest.
        let Some((promoted, passed_over)) = due.split_last() else {
            continue;
        };
        let replaced: Vec<&Row> = keys
            .iter()
            .filter(|r| r.is(alg, KeyState::Active))
            .collect();
        let retire_after = now + policy.retiring_for;
        let mut changes = vec![KeyChange::Activate {
            kid: promoted.key.kid.clone(),
            from: KeyState::Next,
            at: now,
        }];
        changes.extend(replaced.iter().map(|r| KeyChange::Retiring {
            kid: r.key.kid.clone(),
            retire_after,
        }));
        // Never signed, so no token needs them: they go at once.
        changes.extend(passed_over.iter().map(|r| KeyChange::Retire {
            kid: r.key.kid.clone(),
            from: KeyState::Next,
            at: now,
        }));
        let replaces: Vec<&str> = replaced.iter().map(|r| r.key.kid.as_str()).collect();
        let more = json!({ "from": "next", "replaces": replaces });
        let promoted_key = (promoted.key.kid.as_str(), promoted.key.alg.as_str());
        let mut records = vec![event(now, &system, "key.promote", promoted_key, more)];
        records.extend(passed_over.iter().map(|r| {
            let more = json!({ "from": "next", "passed_over_by": promoted.key.kid });
            event(now, &system, "key.retire", (&r.key.kid, &r.key.alg), more)
        }));
        if repo.apply(&changes, &records).await? {
            log_change(&promoted.key, "next", KeyState::Active);
            replaced
                .iter()
                .for_each(|r| log_change(&r.key, "active", KeyState::Retiring));
            passed_over
                .iter()
                .for_each(|r| log_change(&r.key, "next", KeyState::Retired));
            report.activated += 1;
            report.retiring += replaced.len();
            report.retired += passed_over.len();
        }
    }

    // 3. Retiring keys whose tokens have all expired leave the JWKS.
    let keys = rows(db).await?;
    for row in keys.iter().filter(|r| r.state == KeyState::Retiring) {
        if row.key.retire_after.is_none_or(|at| at <= now) {
            let retire = KeyChange::Retire {
                kid: row.key.kid.clone(),
                from: KeyState::Retiring,
                at: now,
            };
            let more = json!({ "from": "retiring" });
            let record = event(
                now,
                &system,
                "key.retire",
                (&row.key.kid, &row.key.alg),
                more,
            );
            if repo.apply(&[retire], &[record]).await? {
                log_change(&row.key, "retiring", KeyState::Retired);
                report.retired += 1;
            }
        }
    }

    // 4. Retired keys that no session's `id_token_hint` can name any more go.
    let keys = rows(db).await?;
    for row in keys.iter().filter(|r| r.state == KeyState::Retired) {
        let since = row.key.retired_at.unwrap_or(row.key.created_at);
        if since + policy.keep_retired <= now {
            let delete = KeyChange::Delete {
                kid: row.key.kid.clone(),
            };
            let more = json!({ "from": "retired", "retired_at": rfc3339(since) });
            let record = event(
                now,
                &system,
                "key.delete",
                (&row.key.kid, &row.key.alg),
                more,
            );
            if repo.apply(&[delete], &[record]).await? {
                tracing::info!(kid = %row.key.kid, alg = %row.key.alg, from = "retired", to = "-", "signing key forgotten");
                report.deleted += 1;
            }
        }
    }
    Ok(report)
}

/// Publishes a `next` key of each of `algs`. Scheduled, it signs after
/// `policy.publish_ahead` (clients' cached JWKS know it by then); `at_once`, after one
/// reload interval (every replica publishes it before any signs with it), and a key
/// already waiting is brought forward instead of another being made. Without `at_once`
/// a waiting key is refused, before anything changes. Each key is recorded as a
/// `key.rotate` by `ctx`.
pub async fn rotate(
    db: &Db,
    master: &MasterKey,
    now: OffsetDateTime,
    policy: &KeyPolicy,
    algs: &[Alg],
    at_once: bool,
    ctx: &Context,
) -> Result<Vec<StoredKey>, RotationError> {
    db.locked(Lock::SigningKeys, async {
        let keys = rows(db).await?;
        let activate_after = now
            + if at_once {
                policy.reload
            } else {
                policy.publish_ahead
            };
        let mut algs = algs.to_vec();
        algs.dedup();
        let waiting = |alg: Alg| {
            keys.iter()
                .rfind(|r| r.is(alg, KeyState::Next))
                .map(|r| &r.key)
        };
        if !at_once && let Some(key) = algs.iter().find_map(|&alg| waiting(alg)) {
            return Err(RotationError::NextWaiting {
                alg: Alg::parse(&key.alg).map_or("?", Alg::as_str),
                kid: key.kid.clone(),
                at: key.activate_after.map_or_else(|| "now".to_owned(), rfc3339),
            });
        }
        let mut published = Vec::new();
        for alg in algs {
            // The key that signs next and the change that makes it so: a new key, or the
            // waiting one brought forward (or left as it is, when it signs soon enough).
            let (key, change) = match waiting(alg) {
                Some(key) => {
                    let mut key = key.clone();
                    let change = key
                        .activate_after
                        .is_none_or(|at| at > activate_after)
                        .then(|| KeyChange::Reschedule {
                            kid: key.kid.clone(),
                            activate_after,
                        });
                    if change.is_some() {
                        key.activate_after = Some(activate_after);
                    }
                    (key, change)
                }
                None => {
                    let key = next_key(alg, master, now, activate_after)?;
                    let change = KeyChange::Add(key.clone());
                    (key, Some(change))
                }
            };
            let more = json!({
                "activate_after": key.activate_after.map(rfc3339),
                "now": at_once,
                "was_waiting": waiting(alg).is_some(),
            });
            let record = event(now, ctx, "key.rotate", (&key.kid, &key.alg), more);
            let changes: Vec<KeyChange> = change.into_iter().collect();
            if !db.signing_keys().apply(&changes, &[record]).await? {
                return Err(RotationError::Conflict);
            }
            match changes.first() {
                Some(KeyChange::Add(_)) => log_change(&key, "-", KeyState::Next),
                Some(_) => {
                    tracing::info!(kid = %key.kid, alg = %key.alg, activate_after = %rfc3339(activate_after), "next signing key brought forward");
                }
                None => {}
            }
            published.push(key);
        }
        Ok(published)
    })
    .await?
}

/// Revokes a key in an emergency: it leaves the JWKS, its private half is wiped, and
/// nothing it signed is accepted any more. If it was the key signing for its algorithm,
/// another signs at once: the waiting `next` key, else the newest `retiring` one (clients
/// have it cached), else a new key. Recorded as a `key.revoke` by `ctx`, and the key
/// signing instead as a `key.promote`.
pub async fn revoke(
    db: &Db,
    master: &MasterKey,
    now: OffsetDateTime,
    policy: &KeyPolicy,
    kid: &str,
    ctx: &Context,
) -> Result<Revocation, RotationError> {
    db.locked(Lock::SigningKeys, async {
        let keys = rows(db).await?;
        let Some(row) = keys.iter().find(|r| r.key.kid == kid) else {
            return Err(RotationError::UnknownKid(kid.to_owned()));
        };
        if row.state == KeyState::Revoked {
            return Err(RotationError::AlreadyRevoked {
                kid: kid.to_owned(),
                at: row.key.revoked_at.map_or_else(String::new, rfc3339),
            });
        }
        let mut changes = vec![KeyChange::Revoke {
            kid: kid.to_owned(),
            from: row.state,
            at: now,
        }];
        let alg = Alg::parse(&row.key.alg);
        let still_signing = |alg: Alg| {
            keys.iter()
                .any(|r| r.key.kid != kid && r.is(alg, KeyState::Active))
        };
        let mut replacement = None;
        if let Some(alg) = alg.filter(|&a| row.state == KeyState::Active && !still_signing(a)) {
            let newest = |state: KeyState| keys.iter().rfind(|r| r.is(alg, state));
            let (kid, from) = if let Some(next) = newest(KeyState::Next) {
                (next.key.kid.clone(), ReplacedBy::Next)
            } else if let Some(retiring) = newest(KeyState::Retiring) {
                (retiring.key.kid.clone(), ReplacedBy::Retiring)
            } else {
                let key = generate(alg, master, &Clock::manual(now))?;
                let kid = key.kid.clone();
                changes.push(KeyChange::Add(key));
                (kid, ReplacedBy::Generated)
            };
            let state = match from {
                ReplacedBy::Next => Some(KeyState::Next),
                ReplacedBy::Retiring => Some(KeyState::Retiring),
                ReplacedBy::Generated => None,
            };
            if let Some(from) = state {
                changes.push(KeyChange::Activate {
                    kid: kid.clone(),
                    from,
                    at: now,
                });
            }
            replacement = Some(Replacement { kid, from });
        }
        let more = json!({
            "was": row.state.as_str(),
            "replaced_by": replacement.as_ref().map(|r| r.kid.as_str()),
        });
        let mut records = vec![event(
            now,
            ctx,
            "key.revoke",
            (&row.key.kid, &row.key.alg),
            more,
        )];
        if let Some(r) = &replacement {
            let more = json!({ "from": r.from.as_str(), "replaces": kid });
            let promoted = (r.kid.as_str(), row.key.alg.as_str());
            records.push(event(now, ctx, "key.promote", promoted, more));
        }
        if !db.signing_keys().apply(&changes, &records).await? {
            return Err(RotationError::Conflict);
        }
        tracing::warn!(kid, alg = %row.key.alg, from = row.state.as_str(), to = "revoked", "signing key revoked");
        if let Some(r) = &replacement {
            tracing::info!(kid = %r.kid, alg = %row.key.alg, replaced = ?r.from, "signing key made active in place of a revoked one");
        }
        Ok(Revocation {
            kid: kid.to_owned(),
            alg: row.key.alg.clone(),
            was: row.state,
            replacement,
            effective_by: now + policy.reload,
        })
    })
    .await?
}
