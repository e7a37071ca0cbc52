//! `tobira`: the OP's server and its operator commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tobira_auth::startup::{self, Application};
use tobira_auth::{Clock, Config, telemetry};

mod cli;

#[derive(Parser)]
#[command(
    name = "tobira",
    version,
    about = "Tobira OpenID Connect identity provider"
)]
struct Cli {
    /// Configuration file (TOML); also `TOBIRA_CONFIG`. Without one, built-in defaults
    /// and `TOBIRA_*` environment variables apply.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (applies pending migrations first unless
    /// `database.migrate_on_start = false`).
    Serve,
    /// Apply pending database migrations (printing each) and exit; `migrate status`
    /// lists every migration as applied or pending.
    Migrate {
        #[command(subcommand)]
        command: Option<cli::migrate::MigrateCommand>,
    },
    /// Manage member accounts.
    #[command(subcommand)]
    Users(cli::users::UsersCommand),
    /// Manage relying parties (OAuth clients).
    #[command(subcommand)]
    Clients(cli::clients::ClientsCommand),
    /// Housekeeping a running server also does on its own.
    #[command(subcommand)]
    Maintenance(MaintenanceCommand),
    /// Signing keys and the master key (see "Key rotation" in the README).
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// The audit log: who changed what, from where.
    #[command(subcommand)]
    Audit(cli::audit::AuditCommand),
}

#[derive(Subcommand)]
enum MaintenanceCommand {
    /// Remove what has outlived its time now: sign-ups never verified, old sign-in
    /// history, remembered devices past their time, and the personal data of accounts deleted more than
    /// `account.retention_days` ago. Prints how many rows went.
    Purge,
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    // Operator commands print their answer; progress lines would only drown it.
    let mut log = config.log.clone();
    if !matches!(cli.command, Command::Serve) && log.level == "info" {
        log.level = "warn".to_owned();
    }
    let logs = telemetry::init(&log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let outcome = runtime.block_on(run(cli.command, config));
    drop(runtime);
    // The buffered lines first, then the error that ends them.
    drop(logs);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

/// glibc's malloc gives threads arenas of their own, up to 8 per core, and keeps what is
/// freed in each for later. With the SQLite connections' threads beside the runtime's, a
/// 30-minute soak's RSS grew about 33 MB/h after the warm-up while the live heap stayed
/// flat (heaptrack): memory freed but kept in a dozen arenas. One arena per core cut the
/// growth by more than half, with a lower RSS from the start (README, "Soak").
///
/// glibc also raises its mmap threshold (from 128 KiB up to 32 MiB) each time a block it
/// had mapped is freed, so that later blocks of that size come from the arenas instead,
/// where freeing them leaves holes the arenas keep. With the threshold fixed at 128 KiB,
/// large blocks are mapped and given back whole when freed: the soak's growth after the
/// warm-up halved again (16.8 → 8.0 MB/h over 30 minutes, with SQLite's own memory flat
/// at 4–6 MB in both). The argon2 working memory is kept for reuse, so hashing maps
/// nothing new. The growth left is fragmentation that jemalloc shows as well (README).
///
/// What the environment sets (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`,
/// `GLIBC_TUNABLES`) wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let set = |variable: &str, tunable: &str| {
        std::env::var_os(variable).is_some() || tunables.contains(tunable)
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
    // SAFETY: `mallopt` only sets a parameter of the allocator, and this runs first in
    // `main`, before any other thread exists. It returns 0 on failure, leaving glibc's
    // default: nothing to do about that.
    unsafe {
        if !set("MALLOC_ARENA_MAX", "glibc.malloc.arena_max") {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
        if !set("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold") {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

async fn run(command: Command, config: Config) -> Result<(), String> {
    match command {
        Command::Serve => {
            let app = Application::build(config, Clock::system())
                .await
                .map_err(|e| e.to_string())?;
            app.run_draining(startup::shutdown_signal())
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Migrate { command } => cli::migrate::run(command, &config).await,
        Command::Users(command) => cli::users::run(command, &config).await,
        Command::Maintenance(MaintenanceCommand::Purge) => {
            let db = startup::open_db(&config).await.map_err(|e| e.to_string())?;
            let removed = tobira_auth::jobs::purge_store(&db, Clock::system().now(), &config)
                .await
                .map_err(|e| e.to_string())?;
            println!("purged {removed} rows");
            Ok(())
        }
        Command::Keys(command) => cli::keys::run(command, &config).await,
        Command::Clients(command) => cli::clients::run(command, &config).await,
        Command::Audit(command) => cli::audit::run(command, &config).await,
    }
}
