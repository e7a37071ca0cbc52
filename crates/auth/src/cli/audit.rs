//! `tobira audit`: the audit log, through `admin::audit::list` (the function the admin
//! API's `GET /audit-events` calls).

use std::io::Write;

use clap::Subcommand;
use tobira_auth::admin::audit::{self, AuditView, FilterText, MAX_PAGE};
use tobira_auth::{Config, startup};

use super::rfc3339;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// List audit events, newest first.
    List {
        /// Only events by this actor: a member's id, an operator's login name, an admin
        /// client's id.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (`user.freeze`), or every action under a prefix ending in
        /// `.` (`user.`).
        #[arg(long)]
        action: Option<String>,
        /// Only events on this member's id, client's id or key's kid.
        #[arg(long)]
        target: Option<String>,
        /// Only events at or after this time (RFC 3339, such as 2026-04-01T09:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Only events before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// How many events at most (1 to 200).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=MAX_PAGE))]
        limit: u64,
        /// Print one JSON array on standard output.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: AuditCommand, config: &Config) -> Result<(), String> {
    let AuditCommand::List {
        actor,
        action,
        target,
        since,
        until,
        limit,
        json,
    } = command;
    // The filter's rules are the admin API's (`FilterText::parse`), and so are its words.
    let filter = FilterText {
        actor: actor.as_deref(),
        action: action.as_deref(),
        target: target.as_deref(),
        since: since.as_deref(),
        until: until.as_deref(),
    }
    .parse()
    .map_err(|e| e.to_string())?;
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let (events, more) = audit::list(&db, &filter, limit)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string(&events).map_err(|e| e.to_string())?;
        return writeln!(out, "{text}").map_err(|e| e.to_string());
    }
    if events.is_empty() {
        eprintln!("no audit events match");
    }
    for event in &events {
        writeln!(out, "{}", line(event)).map_err(|e| e.to_string())?;
    }
    if more.is_some() {
        eprintln!("the newest {limit} shown; --limit, --until or a filter shows others");
    }
    Ok(())
}

/// One event on one line: time, actor, action, target, IP, request id, detail; `-` for
/// what it lacks.
fn line(e: &AuditView) -> String {
    let pair = |kind: &str, value: &str| match (kind.is_empty(), value.is_empty()) {
        (true, true) => "-".to_owned(),
        (false, true) => kind.to_owned(),
        _ => format!("{kind}:{value}"),
    };
    let or_dash = |s: &str| if s.is_empty() { "-" } else { s }.to_owned();
    [
        rfc3339(e.at),
        pair(&e.actor_kind, &e.actor),
        e.action.clone(),
        pair(&e.target_kind, &e.target),
        or_dash(&e.ip),
        or_dash(&e.request_id),
        e.detail.to_string(),
    ]
    .iter()
    .map(|field| printable(field))
    .collect::<Vec<_>>()
    .join("\t")
}

/// Recorded text came from requests: control characters (a tab, an escape sequence for
/// the operator's terminal) are shown escaped, never written as they are.
fn printable(field: &str) -> String {
    field
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}
