//! `tobira audit`: the audit log.

use clap::Subcommand;
use tobira_auth::Config;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// List audit events, newest first.
    List {
        /// Print one JSON array on standard output.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: AuditCommand, config: &Config) -> Result<(), String> {
    let _ = (command, config);
    Err("not built yet".to_owned())
}
