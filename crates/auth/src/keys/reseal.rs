//! Master-key rotation (`tobira keys rotate-master`): re-seals under the current master
//! key every value sealed under another one, so the previous key can be retired.
//!
//! Replicas keep serving throughout: each row is re-written with a compare-and-set, so a
//! value changed meanwhile (a new enrolment, a mail sent and its job deleted) is left as
//! its writer left it and counted as skipped, never overwritten with older contents. A
//! value under a key this server does not have is named, not fatal: it was unreadable
//! before the run too. Running it again re-seals what the last run skipped, and nothing
//! else. Each run is one `key.master_rotate` event in the audit log ([`record`]).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::json;

use super::{KeyError, MasterKey};
use crate::admin::audit::{self, Context, Target};
use crate::clock::Clock;
use crate::store::{Db, RowId, Sealed, SealedRepo, SealedRow, StoreError};

/// Rows read and re-written per query: small enough that a run holds no long lock and
/// little memory, large enough that a queue of thousands of mails takes few queries.
const BATCH: u64 = 100;

/// What a run did, per kind of sealed value, and what is left under other keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResealReport {
    /// The key everything is re-sealed under.
    pub current: String,
    /// The keys configured in `keys.previous_master_keys`.
    pub previous: Vec<String>,
    /// In the order of `Sealed::ALL`.
    pub tables: Vec<TableReport>,
    /// After the run: how many values each key other than the current one still seals
    /// (rows changed meanwhile, or under a key this server does not have).
    pub left: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableReport {
    pub what: Sealed,
    pub resealed: u64,
    pub already_current: u64,
    /// Changed or gone between the read and the write: left as they are.
    pub skipped: u64,
    pub unreadable: Vec<Unreadable>,
}

/// A value the run could not open, left as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub row: RowId,
    pub reason: String,
}

impl TableReport {
    fn new(what: Sealed) -> Self {
        Self {
            what,
            resealed: 0,
            already_current: 0,
            skipped: 0,
            unreadable: Vec::new(),
        }
    }
}

impl ResealReport {
    /// The counts for one kind of value.
    pub fn table(&self, what: Sealed) -> &TableReport {
        self.tables
            .iter()
            .find(|t| t.what == what)
            .expect("a run reports every kind of sealed value")
    }

    /// How many values are still sealed under one of `keys.previous_master_keys`.
    pub fn left_under_previous(&self) -> u64 {
        self.left
            .iter()
            .filter(|(id, _)| self.previous.contains(id))
            .map(|(_, n)| n)
            .sum()
    }

    /// Values under keys neither current nor previous (unreadable here).
    fn left_under_unknown(&self) -> Vec<(&str, u64)> {
        self.left
            .iter()
            .filter(|(id, _)| !self.previous.contains(id))
            .map(|(id, n)| (id.as_str(), *n))
            .collect()
    }
}

impl fmt::Display for ResealReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Re-sealing under master key {}:", self.current)?;
        for t in &self.tables {
            writeln!(
                f,
                "  {}: {} re-sealed, {} already current, {} skipped (changed meanwhile), {} unreadable",
                t.what,
                t.resealed,
                t.already_current,
                t.skipped,
                t.unreadable.len()
            )?;
        }
        let unreadable: Vec<_> = self
            .tables
            .iter()
            .flat_map(|t| t.unreadable.iter().map(move |u| (t.what, u)))
            .collect();
        if !unreadable.is_empty() {
            writeln!(f, "Left as they are, unreadable:")?;
            for (what, u) in unreadable {
                writeln!(f, "  {what}, row {}: {}", u.row, u.reason)?;
            }
        }
        let unknown = self.left_under_unknown();
        if !unknown.is_empty() {
            let listed: Vec<String> = unknown
                .iter()
                .map(|(id, n)| format!("{n} under {id}"))
                .collect();
            writeln!(
                f,
                "Sealed under master keys this server does not have: {}. They could not be \
                 opened before this run either; to keep them, add those keys to \
                 keys.previous_master_keys and run this again.",
                listed.join(", ")
            )?;
        }
        let left = self.left_under_previous();
        if self.previous.is_empty() {
            writeln!(
                f,
                "No previous master key is configured (keys.previous_master_keys): there is \
                 nothing to retire."
            )
        } else if left == 0 {
            writeln!(
                f,
                "Nothing is sealed under {} any more. To retire it: remove it from \
                 keys.previous_master_keys on every replica, then restart them one by one.",
                self.previous.join(", ")
            )
        } else {
            writeln!(
                f,
                "{left} values are still sealed under {} (changed while this ran, or written \
                 by a replica that still seals with an old key): once every replica runs with \
                 keys.master_key = {}, run `tobira keys rotate-master` again.",
                self.previous.join(", "),
                self.current
            )
        }
    }
}

/// Re-seals under `master`'s current key everything sealed under any other key, kind
/// by kind, a batch at a time. Idempotent: a second run finds everything current.
pub async fn rotate_master(db: &Db, master: &MasterKey) -> Result<ResealReport, KeyError> {
    let repo = db.sealed();
    let mut tables = Vec::new();
    for what in Sealed::ALL {
        let report = reseal_all(&repo, master, what).await?;
        tracing::info!(
            what = %what,
            resealed = report.resealed,
            already_current = report.already_current,
            skipped = report.skipped,
            unreadable = report.unreadable.len(),
            "master key rotation"
        );
        tables.push(report);
    }
    Ok(ResealReport {
        current: master.id().to_owned(),
        previous: master
            .previous_ids()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        tables,
        left: census(&repo, master).await?,
    })
}

/// Records the run `report` as one `key.master_rotate` event by `ctx`: the master keys'
/// public ids and the counts per kind of value (never a value, nor a row's id). Written
/// after the run, which is many transactions of its own (a batch each, so that replicas
/// keep serving): a failure here leaves the re-sealing done, and the caller says so.
pub async fn record(
    db: &Db,
    clock: &Clock,
    ctx: &Context,
    report: &ResealReport,
) -> Result<(), StoreError> {
    let tables: serde_json::Map<String, serde_json::Value> = report
        .tables
        .iter()
        .map(|t| {
            let counts = json!({
                "resealed": t.resealed,
                "already_current": t.already_current,
                "skipped": t.skipped,
                "unreadable": t.unreadable.len(),
            });
            (t.what.as_str().to_owned(), counts)
        })
        .collect();
    let detail = json!({
        "master_key": report.current,
        "previous": report.previous,
        "resealed": report.tables.iter().map(|t| t.resealed).sum::<u64>(),
        "tables": tables,
        "left_under_previous": report.left_under_previous(),
    });
    audit::record(db, clock, ctx, "key.master_rotate", Target::None, detail).await
}

/// How many values are sealed under a key other than the current one (a previous key,
/// or one this server does not have): what still needs the old key.
pub async fn sealed_under_other_keys(db: &Db, master: &MasterKey) -> Result<u64, KeyError> {
    Ok(census(&db.sealed(), master).await?.values().sum())
}

async fn reseal_all(
    repo: &SealedRepo<'_>,
    master: &MasterKey,
    what: Sealed,
) -> Result<TableReport, KeyError> {
    let mut report = TableReport::new(what);
    let mut after: Option<RowId> = None;
    loop {
        let rows = repo.batch(what, after.as_ref(), BATCH).await?;
        for row in &rows {
            match reseal(repo, master, row).await? {
                Outcome::Resealed => report.resealed += 1,
                Outcome::Current => report.already_current += 1,
                Outcome::Skipped => report.skipped += 1,
                Outcome::Unreadable(reason) => report.unreadable.push(Unreadable {
                    row: row.id.clone(),
                    reason,
                }),
            }
        }
        match rows.last() {
            Some(last) if rows.len() as u64 == BATCH => after = Some(last.id.clone()),
            _ => return Ok(report),
        }
    }
}

enum Outcome {
    Resealed,
    Current,
    Skipped,
    Unreadable(String),
}

async fn reseal(
    repo: &SealedRepo<'_>,
    master: &MasterKey,
    row: &SealedRow,
) -> Result<Outcome, KeyError> {
    let id = match MasterKey::sealed_by(&row.sealed) {
        Ok(id) => id,
        Err(e) => return Ok(Outcome::Unreadable(e.to_string())),
    };
    if id == master.id() {
        return Ok(Outcome::Current);
    }
    // Unknown keys and damaged values alike: the error says which.
    let plaintext = match master.decrypt(&row.sealed) {
        Ok(p) => p,
        Err(e) => return Ok(Outcome::Unreadable(e.to_string())),
    };
    let resealed = master.encrypt(&plaintext)?;
    Ok(if repo.replace(row, &resealed, master.id()).await? {
        Outcome::Resealed
    } else {
        Outcome::Skipped
    })
}

/// Values sealed under each key other than the current one. Values that name no key
/// (not sealed at all) are not counted: no key would open them.
async fn census(
    repo: &SealedRepo<'_>,
    master: &MasterKey,
) -> Result<BTreeMap<String, u64>, KeyError> {
    let mut left = BTreeMap::new();
    for what in Sealed::ALL {
        let mut after: Option<RowId> = None;
        loop {
            let rows = repo.batch(what, after.as_ref(), BATCH).await?;
            for row in &rows {
                if let Ok(id) = MasterKey::sealed_by(&row.sealed)
                    && id != master.id()
                {
                    *left.entry(id).or_insert(0) += 1;
                }
            }
            match rows.last() {
                Some(last) if rows.len() as u64 == BATCH => after = Some(last.id.clone()),
                _ => break,
            }
        }
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(left: &[(&str, u64)]) -> ResealReport {
        ResealReport {
            current: "NEW".to_owned(),
            previous: vec!["OLD".to_owned()],
            tables: Sealed::ALL.into_iter().map(TableReport::new).collect(),
            left: left.iter().map(|(id, n)| ((*id).to_owned(), *n)).collect(),
        }
    }

    #[test]
    fn the_report_says_to_retire_the_old_key_only_when_nothing_needs_it() {
        let done = report(&[]).to_string();
        assert!(
            done.contains("Nothing is sealed under OLD any more")
                && done.contains("remove it from keys.previous_master_keys on every replica")
                && !done.contains("again"),
            "{done}"
        );
        for kind in Sealed::ALL {
            assert!(done.contains(kind.as_str()), "{done}");
        }

        let left = report(&[("OLD", 2)]);
        assert_eq!(left.left_under_previous(), 2);
        let text = left.to_string();
        assert!(
            text.contains("2 values are still sealed under OLD")
                && text.contains("run `tobira keys rotate-master` again")
                && !text.contains("restart them one by one"),
            "{text}"
        );

        // Values under a key nobody has do not hold the old key back, and are named.
        let stranger = report(&[("XYZ", 1)]);
        assert_eq!(stranger.left_under_previous(), 0);
        let text = stranger.to_string();
        assert!(
            text.contains("1 under XYZ") && text.contains("restart them one by one"),
            "{text}"
        );
    }
}
