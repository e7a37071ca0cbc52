//! `tobira migrate`: the schema.

use tobira_auth::Config;

/// Applies pending migrations.
pub async fn run(config: &Config) -> Result<(), String> {
    let db = tobira_auth::store::Db::connect(
        &config.database_url(),
        config.database.max_connections,
        std::time::Duration::from_secs(config.database.connect_timeout_secs),
    )
    .await
    .map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    eprintln!("migrations applied");
    Ok(())
}
