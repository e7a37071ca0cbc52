//! `tobira-bench`: measurements for `scripts/load.sh`, never part of the server (the
//! image builds only `tobira`, and nothing here is a route).
//!
//! `limits` measures, on this machine and now, what no request can cost less than: a
//! signature and its check per algorithm through the OP's own `KeyRing`, and an argon2
//! verification through its own `PasswordHasher` with the configured parameters. The
//! load script divides its figures by these. `seed` gives one member many live sessions,
//! grants and refresh tokens, written as sign-ins write them, to measure memory and
//! query plans beside them.
//!
//! Both read the configuration as `tobira` does (`--config`, `TOBIRA_CONFIG`, then
//! `TOBIRA_*`), so they see the same database, argon2 parameters and hashing threads.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use tobira_auth::authn::password::{Password, PasswordHasher};
use tobira_auth::authn::session::SessionPolicy;
use tobira_auth::domain::{Email, GrantType};
use tobira_auth::keys::{Alg, KeyPolicy, KeyRing, MasterKey};
use tobira_auth::store::Db;
use tobira_auth::store::bench::{LiveSessions, SEED_BATCH, seed_live_sessions};
use tobira_auth::{Clock, Config, startup, telemetry};

#[derive(Parser)]
#[command(
    name = "tobira-bench",
    version,
    about = "Measurements for the Tobira load script (not part of the server)"
)]
struct Cli {
    /// Configuration file (TOML); also `TOBIRA_CONFIG`. As for `tobira`.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The same-run limits: CPU time per signature and per signature check for each
    /// algorithm, and per argon2 verification with the configured parameters, measured
    /// one at a time after a warm-up; the hashing threads the server would use and the
    /// cores.
    Limits {
        /// Print one JSON object on standard output.
        #[arg(long)]
        json: bool,
        /// Seconds of measurement per operation (after a warm-up of a fifth of it).
        #[arg(long, default_value_t = 1.0, value_parser = positive_seconds)]
        seconds: f64,
    },
    /// Gives the member ADDR N live browser sessions, each with a grant for the client
    /// and a live refresh token in it, as N sign-ins with an authorization code exchange
    /// would leave them; in transactions of 1000 sessions.
    Seed {
        /// How many sessions (and grants, and refresh tokens).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        sessions: u32,
        /// The member's address (the account must exist).
        #[arg(long)]
        email: String,
        /// The client the grants are for; it must be allowed refresh tokens.
        #[arg(long)]
        client_id: String,
        /// The scope of every grant.
        #[arg(long, default_value = "openid email")]
        scope: String,
        /// Print one JSON object, with the secrets of the first `--sample` sessions (a
        /// session cookie and a refresh token each), on standard output.
        #[arg(long)]
        json: bool,
        /// How many sessions' secrets `--json` prints.
        #[arg(long, default_value_t = 16)]
        sample: usize,
    },
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 600.0 => Ok(v),
        _ => Err(format!("{s} is not a number of seconds in (0, 600]")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    // The answer is what matters; the library's progress lines would only drown it.
    let mut log = config.log.clone();
    if log.level == "info" {
        log.level = "warn".to_owned();
    }
    let logs = telemetry::init(&log);
    // One thread runs the measurements, so nothing of the runtime competes with them;
    // the hasher still hashes on its own blocking threads, as in the server.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let outcome = match cli.command {
        Command::Limits { json, seconds } => limits(&runtime, &config, seconds, json),
        Command::Seed {
            sessions,
            email,
            client_id,
            scope,
            json,
            sample,
        } => runtime.block_on(seed(
            &config,
            SeedArgs {
                sessions: sessions as usize,
                email: &email,
                client_id: &client_id,
                scope: &scope,
                json,
                sample,
            },
        )),
    };
    drop(logs);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

// --- limits -------------------------------------------------------------------------

/// CPU time of this thread, or of the whole process, in nanoseconds, from `/proc`.
///
/// `schedstat` counts nanoseconds on the CPU; where the kernel lacks it, `stat` counts
/// clock ticks (USER_HZ, 100 on Linux), which over a measurement of a second or more is
/// still within a few per cent. The standard library has no thread CPU clock.
mod cpu {
    use std::fs;

    /// USER_HZ: the unit of `utime`/`stime` in `/proc/*/stat` on Linux.
    const TICKS_PER_SECOND: u64 = 100;

    /// The calling thread's CPU time.
    pub fn thread_ns() -> Option<u64> {
        task_ns("/proc/thread-self")
    }

    /// The CPU time of every live thread of this process: the hasher verifies on its own
    /// blocking threads, not on the caller's. A thread that ends while it is read is
    /// skipped (the runtime keeps its blocking threads while they are busy, so none of
    /// the hashing ones ends during a measurement).
    pub fn process_ns() -> Option<u64> {
        let tasks = fs::read_dir("/proc/self/task").ok()?;
        Some(
            tasks
                .filter_map(|task| task_ns(&task.ok()?.path().to_string_lossy()))
                .sum(),
        )
    }

    /// Which clock `thread_ns` and `process_ns` read.
    pub fn source() -> &'static str {
        if fs::read_to_string("/proc/thread-self/schedstat").is_ok() {
            "schedstat (ns)"
        } else {
            "stat (clock ticks)"
        }
    }

    fn task_ns(dir: &str) -> Option<u64> {
        if let Ok(line) = fs::read_to_string(format!("{dir}/schedstat")) {
            return line.split_whitespace().next()?.parse().ok();
        }
        let stat = fs::read_to_string(format!("{dir}/stat")).ok()?;
        // The command name, in parentheses, may hold spaces: count fields after it.
        let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks * (1_000_000_000 / TICKS_PER_SECOND))
    }
}

/// One operation measured: CPU time per operation (the clock read around the whole run,
/// divided, so reading it costs nothing per operation) and each operation's wall time.
struct Measured {
    ops: usize,
    cpu_us: f64,
    wall_us: Vec<f64>,
}

impl Measured {
    fn wall_percentile(&self, p: f64) -> f64 {
        // Nearest rank, as the load script computes its percentiles.
        let rank = ((p / 100.0) * self.wall_us.len() as f64).ceil().max(1.0) as usize;
        self.wall_us[rank - 1]
    }

    fn wall_mean(&self) -> f64 {
        self.wall_us.iter().sum::<f64>() / self.wall_us.len() as f64
    }

    fn to_json(&self, unit: f64) -> Value {
        json!({
            "ops": self.ops,
            "cpu": self.cpu_us / unit,
            "wall_mean": self.wall_mean() / unit,
            "wall_p50": self.wall_percentile(50.0) / unit,
            "wall_p90": self.wall_percentile(90.0) / unit,
        })
    }
}

/// Runs `op` for a fifth of `seconds` to warm caches and the branch predictor, then for
/// `seconds` and at least `min_ops` times, one after another; `cpu` is the clock that
/// sees the work (the thread's own, or the process's when the work runs elsewhere).
fn measure(
    seconds: f64,
    min_ops: usize,
    cpu: fn() -> Option<u64>,
    mut op: impl FnMut() -> Result<(), String>,
) -> Result<Measured, String> {
    let warm = Duration::from_secs_f64(seconds / 5.0);
    let start = Instant::now();
    while start.elapsed() < warm {
        op()?;
    }
    let run = Duration::from_secs_f64(seconds);
    let mut wall_us = Vec::new();
    let cpu0 = cpu().ok_or("cannot read the CPU time from /proc")?;
    let start = Instant::now();
    while wall_us.len() < min_ops || start.elapsed() < run {
        let t = Instant::now();
        op()?;
        wall_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let cpu1 = cpu().ok_or("cannot read the CPU time from /proc")?;
    wall_us.sort_by(f64::total_cmp);
    Ok(Measured {
        ops: wall_us.len(),
        cpu_us: cpu1.saturating_sub(cpu0) as f64 / 1e3 / wall_us.len() as f64,
        wall_us,
    })
}

/// Claims shaped like a real ID token (as in `benches/signing.rs`), so the payload and
/// its hashing cost are realistic.
fn id_token_claims(alg: Alg, now: i64) -> Value {
    json!({
        "iss": "https://id.example.jp",
        "sub": "0196f1c2-7a4e-7d53-9b1e-3f0c8a2d5e71",
        "aud": "mJ3kq9VbX2tLr8YwPz5nHc",
        "exp": now + 600,
        "iat": now,
        "auth_time": now - 42,
        "nonce": "n-0S6_WzA2Mj-8a3Xk2fPq9LrT",
        "amr": ["pwd"],
        "acr": "1",
        "at_hash": alg.token_hash("eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9.example.signature"),
        "sid": "b7Qk2xN9vLmR4tYpZs8wJc",
    })
}

/// A directory removed with everything in it when dropped (the key ring's database).
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self, String> {
        let dir =
            std::env::temp_dir().join(format!("tobira-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A key ring of fresh keys, one per algorithm, over a SQLite database of its own: the
/// same key types and sizes as the server's, without touching its database or master key.
async fn scratch_ring(config: &Config, dir: &Path, clock: &Clock) -> Result<(KeyRing, Db), String> {
    let url = format!("sqlite://{}?mode=rwc", dir.join("keys.db").display());
    let db = Db::connect(&url, 2, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    let master = MasterKey::from_bytes(rand::random());
    let ring = KeyRing::load_or_init(&db, &master, clock, KeyPolicy::from_config(config))
        .await
        .map_err(|e| e.to_string())?;
    Ok((ring, db))
}

fn limits(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    seconds: f64,
    as_json: bool,
) -> Result<(), String> {
    let clock = Clock::system();
    let dir = ScratchDir::new()?;
    let (ring, db) = runtime.block_on(scratch_ring(config, dir.path(), &clock))?;
    let now = clock.now().unix_timestamp();

    let mut sign = serde_json::Map::new();
    let mut verify = serde_json::Map::new();
    let mut rows = Vec::new();
    for alg in Alg::ALL {
        let claims = id_token_claims(alg, now);
        // `KeyRing::sign` is synchronous, on the caller's thread, as in `/token`.
        let signed = measure(seconds, 20, cpu::thread_ns, || {
            ring.sign(alg, "JWT", &claims)
                .map(drop)
                .map_err(|e| e.to_string())
        })?;
        let token = ring.sign(alg, "JWT", &claims).map_err(|e| e.to_string())?;
        let checked = measure(seconds, 20, cpu::thread_ns, || {
            ring.verify(&token).map(drop).map_err(|e| e.to_string())
        })?;
        sign.insert(alg.as_str().to_owned(), signed.to_json(1.0));
        verify.insert(alg.as_str().to_owned(), checked.to_json(1.0));
        rows.push((format!("sign {}", alg.as_str()), signed, "µs"));
        rows.push((format!("verify {}", alg.as_str()), checked, "µs"));
    }

    let threads = config.max_concurrent_hashes();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hasher = PasswordHasher::new(&config.password, threads, 0).map_err(|e| e.to_string())?;
    let password = Password::for_verification("violet-tunnel-ramen-42");
    let phc = runtime
        .block_on(hasher.hash(&password))
        .map_err(|e| e.to_string())?;
    // The right password: a wrong one costs the same (argon2 always runs in full).
    let verified = measure(seconds * 2.0, 10, cpu::process_ns, || {
        match runtime.block_on(hasher.verify(&password, &phc)) {
            Ok(true) => Ok(()),
            Ok(false) => Err("the password did not verify against its own hash".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    })?;
    // The process's clock: on SQLite the query runs on the connection's own thread.
    let round_trip = measure(seconds, 100, cpu::process_ns, || {
        runtime
            .block_on(tobira_auth::store::bench::round_trip(&db))
            .map_err(|e| e.to_string())
    })?;
    runtime.block_on(db.close()).map_err(|e| e.to_string())?;
    // No more verifications at once than hashing threads, nor than cores to run them.
    let limit_per_second = threads.min(cores) as f64 / (verified.cpu_us / 1e6);
    let p = &config.password;

    if as_json {
        let out = json!({
            "cores": cores,
            "cpu_clock": cpu::source(),
            "access_token_alg": config.tokens.access_token_alg.as_str(),
            "sign_us": sign,
            "verify_us": verify,
            "argon2": {
                "memory_kib": p.argon2_memory_kib,
                "iterations": p.argon2_iterations,
                "parallelism": p.argon2_parallelism,
                "hashing_threads": threads,
                "verify_ms": verified.to_json(1e3),
                "limit_per_second": limit_per_second,
            },
            "sqlite_round_trip_us": round_trip.to_json(1.0),
        });
        println!("{out}");
        return Ok(());
    }
    let verify_ms = verified.cpu_us / 1e3;
    rows.push(("SQLite round trip (SELECT 1)".to_owned(), round_trip, "µs"));
    rows.push((
        format!(
            "argon2id verify (m={} KiB, t={}, p={})",
            p.argon2_memory_kib, p.argon2_iterations, p.argon2_parallelism
        ),
        verified,
        "ms",
    ));
    let width = rows
        .iter()
        .map(|(name, _, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    println!(
        "cores {cores}; hashing threads {threads} (password.max_concurrent_hashes); CPU clock {}",
        cpu::source()
    );
    println!(
        "{:<width$} {:>10} {:>10} {:>10} {:>7}",
        "operation", "CPU/op", "wall p50", "wall p90", "ops"
    );
    for (name, m, unit) in &rows {
        let scale = if *unit == "ms" { 1e3 } else { 1.0 };
        println!(
            "{name:<width$} {:>7.1} {unit} {:>7.1} {unit} {:>7.1} {unit} {:>7}",
            m.cpu_us / scale,
            m.wall_percentile(50.0) / scale,
            m.wall_percentile(90.0) / scale,
            m.ops
        );
    }
    println!(
        "argon2 limit: {} threads ÷ {verify_ms:.1} ms = {limit_per_second:.1} verifications/s",
        threads.min(cores),
    );
    Ok(())
}

// --- seed ---------------------------------------------------------------------------

struct SeedArgs<'a> {
    sessions: usize,
    email: &'a str,
    client_id: &'a str,
    scope: &'a str,
    json: bool,
    sample: usize,
}

async fn seed(config: &Config, args: SeedArgs<'_>) -> Result<(), String> {
    let email = Email::parse(args.email).map_err(|e| format!("--email: {e}"))?;
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let user = db
        .users()
        .find_by_email(&email)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no account with the address {}", args.email))?;
    let client = db
        .clients()
        .find(args.client_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no client {}", args.client_id))?;
    // Refresh tokens of a client that may not use them would never be presented.
    if !client.allows(GrantType::RefreshToken) {
        return Err(format!(
            "the client {} may not use refresh tokens (register it with --grant refresh_token)",
            args.client_id
        ));
    }
    let started = Instant::now();
    let seeded = seed_live_sessions(
        &db,
        &Clock::system(),
        &mut rand::rng(),
        LiveSessions {
            user_id: user.id,
            client_id: &client.client_id,
            scope: args.scope,
            count: args.sessions,
            session_lifetime: SessionPolicy::from(&config.session).lifetime(false),
            refresh_lifetime: time::Duration::days(config.tokens.refresh_token_days.into()),
            sample: if args.json { args.sample } else { 0 },
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed().as_secs_f64();
    db.close().await.map_err(|e| e.to_string())?;
    if args.json {
        let sample: Vec<Value> = seeded
            .sample
            .iter()
            .map(|s| json!({"session": s.session_secret, "refresh_token": s.refresh_token}))
            .collect();
        println!(
            "{}",
            json!({
                "sessions": seeded.sessions,
                "grants": seeded.grants,
                "refresh_tokens": seeded.refresh_tokens,
                "batches": seeded.batches,
                "batch_size": SEED_BATCH,
                "seconds": elapsed,
                "sample": sample,
            })
        );
    } else {
        println!(
            "seeded {} sessions, {} grants and {} refresh tokens for {} in {elapsed:.1} s \
             ({} transactions)",
            seeded.sessions, seeded.grants, seeded.refresh_tokens, args.email, seeded.batches
        );
    }
    Ok(())
}
