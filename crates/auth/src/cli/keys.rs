//! `tobira keys`: signing keys and the master key.

use std::io::Write;

use clap::Subcommand;
use tobira_auth::admin::audit::Context;
use tobira_auth::keys::reseal;
use tobira_auth::keys::schedule::{self, KeyView};
use tobira_auth::keys::{Alg, KeyPolicy, KeyRing, MasterKey};
use tobira_auth::startup;
use tobira_auth::store::Db;
use tobira_auth::{Clock, Config};

use super::{AlgArg, rfc3339};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List every signing key with its state and times.
    List {
        /// Print one JSON array on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Publish a next key of each algorithm (or of --alg): it signs once clients have
    /// had time to see it (`keys.publish_ahead_secs`). With --now it signs after one
    /// reload interval, and the command returns when it does.
    Rotate {
        #[arg(long, value_enum)]
        alg: Option<AlgArg>,
        /// An emergency: sign with the new key as soon as every replica publishes it.
        #[arg(long)]
        now: bool,
    },
    /// Revoke a key (an emergency: it leaked). It leaves the JWKS and nothing it signed
    /// is accepted any more; if it was signing, another key signs at once.
    Revoke {
        #[arg(long)]
        kid: String,
    },
    /// Re-encrypt everything the master key protects under `keys.master_key`, while the
    /// earlier key (in `keys.previous_master_keys`) still opens it; says when the earlier
    /// key can go.
    RotateMaster,
    /// Print a new random master key (base64url, 32 bytes) for `keys.master_key`.
    GenerateMaster,
}

pub async fn run(command: KeysCommand, config: &Config) -> Result<(), String> {
    let algs = |alg: Option<AlgArg>| alg.map_or_else(|| Alg::ALL.to_vec(), |a| vec![a.into()]);
    match command {
        KeysCommand::GenerateMaster => generate_master(),
        KeysCommand::RotateMaster => {
            let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
            let master = MasterKey::load_or_create(config).map_err(|e| e.to_string())?;
            let report = reseal::rotate_master(&db, &master)
                .await
                .map_err(|e| e.to_string())?;
            println!("{report}");
            // The report is printed first: the re-sealing stands whether or not the
            // record can be written, and the operator needs it either way.
            reseal::record(&db, &Clock::system(), &Context::cli(), &report)
                .await
                .map_err(|e| {
                    format!("re-sealed as above, but the audit log could not record it: {e}")
                })
        }
        KeysCommand::List { json } => {
            let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
            keys_list(&db, json).await
        }
        KeysCommand::Rotate { alg, now: false } => {
            let (db, master, clock, policy) = signing_keys(config).await?;
            let ctx = Context::cli();
            let keys =
                schedule::rotate(&db, &master, clock.now(), &policy, &algs(alg), false, &ctx)
                    .await
                    .map_err(|e| e.to_string())?;
            let mut out = std::io::stdout().lock();
            for key in &keys {
                writeln!(
                    out,
                    "{}\t{}\tsigns from {}",
                    key.kid,
                    key.alg,
                    key.activate_after.map_or_else(String::new, rfc3339)
                )
                .map_err(|e| e.to_string())?;
            }
            eprintln!(
                "published; the schedule of a running tobira serve makes them sign at that time"
            );
            Ok(())
        }
        KeysCommand::Rotate { alg, now: true } => {
            let (db, master, clock, policy) = signing_keys(config).await?;
            rotate_now(&db, &master, &clock, &policy, &algs(alg)).await
        }
        KeysCommand::Revoke { kid } => {
            // No ring: an emergency revoke opens no private key, so a key this master
            // key cannot open (the one that leaked, say) must not stand in its way.
            let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
            let master = MasterKey::load_or_create(config).map_err(|e| e.to_string())?;
            let (clock, policy) = (Clock::system(), KeyPolicy::from_config(config));
            let ctx = Context::cli();
            let revocation = schedule::revoke(&db, &master, clock.now(), &policy, &kid, &ctx)
                .await
                .map_err(|e| e.to_string())?;
            println!("{revocation}");
            Ok(())
        }
    }
}

/// What changing signing keys needs: the store, the master key, the clock and the
/// policy; with the keys `tobira serve` makes on its first start, so that a new key has
/// one to follow. Fails early, naming it, on the wrong master key.
async fn signing_keys(config: &Config) -> Result<(Db, MasterKey, Clock, KeyPolicy), String> {
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let master = MasterKey::load_or_create(config).map_err(|e| e.to_string())?;
    let clock = Clock::system();
    let policy = KeyPolicy::from_config(config);
    KeyRing::load_or_init(&db, &master, &clock, policy)
        .await
        .map_err(|e| e.to_string())?;
    Ok((db, master, clock, policy))
}

/// `keys rotate --now`: publishes at once, waits until every replica has published the
/// key, makes it sign, and waits until every replica signs with it.
async fn rotate_now(
    db: &Db,
    master: &MasterKey,
    clock: &Clock,
    policy: &KeyPolicy,
    algs: &[Alg],
) -> Result<(), String> {
    let keys = schedule::rotate(db, master, clock.now(), policy, algs, true, &Context::cli())
        .await
        .map_err(|e| e.to_string())?;
    let mut due = clock.now();
    for key in &keys {
        let at = key.activate_after.unwrap_or(due);
        due = due.max(at);
        eprintln!(
            "published {} ({}); it signs from {}",
            key.kid,
            key.alg,
            rfc3339(at)
        );
    }
    sleep_for(due - clock.now()).await;
    schedule::tick(db, master, clock.now(), policy)
        .await
        .map_err(|e| e.to_string())?;
    for key in &keys {
        let state = db
            .signing_keys()
            .lookup(&key.kid)
            .await
            .map_err(|e| e.to_string())?
            .map(|k| k.state);
        if state.as_deref() != Some("active") {
            return Err(format!(
                "{} is {} instead of active: another change to the keys came first (`tobira keys list`)",
                key.kid,
                state.as_deref().unwrap_or("gone")
            ));
        }
    }
    // A replica sees the promotion at its next reload, up to one interval
    // plus a query later; the second interval is the margin for that query
    // and for a replica slowed by load.
    eprintln!(
        "active; waiting two reload intervals ({} ms each) for every replica to load it",
        policy.reload.whole_milliseconds()
    );
    sleep_for(policy.reload * 2).await;
    for key in &keys {
        println!("{} signs now", key.kid);
    }
    Ok(())
}

async fn sleep_for(duration: time::Duration) {
    if let Ok(duration) = std::time::Duration::try_from(duration) {
        tokio::time::sleep(duration).await;
    }
}

async fn keys_list(db: &Db, json: bool) -> Result<(), String> {
    let keys = schedule::list(db).await.map_err(|e| e.to_string())?;
    let views: Vec<KeyView> = keys.iter().map(KeyView::from).collect();
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string(&views).map_err(|e| e.to_string())?;
        return writeln!(out, "{text}").map_err(|e| e.to_string());
    }
    if views.is_empty() {
        eprintln!("no signing keys yet: `tobira serve` makes them when it first starts");
    }
    for v in views {
        let times = [
            ("activate after", v.activate_after),
            ("activated", v.activated_at),
            ("retire after", v.retire_after),
            ("retired", v.retired_at),
            ("revoked", v.revoked_at),
        ]
        .into_iter()
        .filter_map(|(label, t)| t.map(|t| format!("{label} {}", rfc3339(t))))
        .collect::<Vec<_>>()
        .join("\t");
        writeln!(
            out,
            "{}\t{}\t{}\tcreated {}\t{times}",
            v.kid,
            v.alg,
            v.state,
            rfc3339(v.created_at)
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A new master key on standard output, for the operator to store; nothing else is
/// touched.
fn generate_master() -> Result<(), String> {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    rand::Rng::fill_bytes(&mut rand::rng(), &mut key[..]);
    let text = zeroize::Zeroizing::new(tobira_auth::crypto::b64url(&key[..]));
    writeln!(std::io::stdout().lock(), "{}", text.as_str()).map_err(|e| e.to_string())
}
