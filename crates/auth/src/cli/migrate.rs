//! `tobira migrate`: the schema. `migrate` applies what is pending and names each
//! migration as it is applied; `migrate status` lists them all, applied or pending, and
//! changes nothing.

use clap::Subcommand;
use tobira_auth::Config;
use tobira_auth::store::Db;

#[derive(Subcommand)]
pub enum MigrateCommand {
    /// List every migration this binary knows, oldest first, as applied or pending
    /// (exits 0 either way; `serve` with `database.migrate_on_start = false` refuses to
    /// start while one is pending).
    Status,
}

pub async fn run(command: Option<MigrateCommand>, config: &Config) -> Result<(), String> {
    // Not `startup::open_db`: that would migrate (or refuse an outdated schema) first.
    let db = Db::connect(
        &config.database_url(),
        config.database.max_connections,
        std::time::Duration::from_secs(config.database.connect_timeout_secs),
    )
    .await
    .map_err(|e| e.to_string())?;
    match command {
        None => apply(&db).await,
        Some(MigrateCommand::Status) => status(&db).await,
    }
}

/// Applies pending migrations, one line per migration once it is committed: a run that
/// fails half-way shows which ones are in.
async fn apply(db: &Db) -> Result<(), String> {
    let applied = db
        .migrate_reporting(|name| println!("applied {name}"))
        .await
        .map_err(|e| e.to_string())?;
    if applied.is_empty() {
        println!("nothing to apply: the schema is up to date");
    } else {
        println!("{} migrations applied", applied.len());
    }
    Ok(())
}

async fn status(db: &Db) -> Result<(), String> {
    let migrations = db.migration_status().await.map_err(|e| e.to_string())?;
    let pending = migrations.iter().filter(|m| !m.applied).count();
    for m in &migrations {
        let word = if m.applied { "applied" } else { "pending" };
        println!("{word:<8} {}", m.name);
    }
    println!("{} applied, {pending} pending", migrations.len() - pending);
    Ok(())
}
