//! `tobira audit`: the audit log, through `admin::audit::list` (the function the admin
//! API's `GET /audit-events` calls).

use std::io::Write;

use clap::Subcommand;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use tobira_auth::admin::audit::{self, AuditView, MAX_PAGE};
use tobira_auth::store::AuditFilter;
use tobira_auth::{Config, startup};

use super::rfc3339;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// List audit events, newest first.
    List {
        /// Only events by this actor: a member's id, an operator's login name, an admin
        /// client's id.
        #[arg(long, value_parser = filter_text)]
        actor: Option<String>,
        /// Only this action (`user.freeze`), or every action under a prefix ending in
        /// `.` (`user.`).
        #[arg(long, value_parser = filter_text)]
        action: Option<String>,
        /// Only events on this member's id, client's id or key's kid.
        #[arg(long, value_parser = filter_text)]
        target: Option<String>,
        /// Only events at or after this time (RFC 3339, such as 2026-04-01T09:00:00Z).
        #[arg(long, value_parser = parse_time)]
        since: Option<OffsetDateTime>,
        /// Only events before this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        until: Option<OffsetDateTime>,
        /// How many events at most (1 to 200).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=MAX_PAGE))]
        limit: u64,
        /// Print one JSON array on standard output.
        #[arg(long)]
        json: bool,
    },
}

/// As the admin API: a value longer than the widest column matches nothing and is more
/// likely a mistake than a question.
fn filter_text(text: &str) -> Result<String, String> {
    match text.chars().count() {
        1..=200 => Ok(text.to_owned()),
        _ => Err("1 to 200 characters".to_owned()),
    }
}

/// In UTC, as the admin API takes it: the store compares times as it writes them.
fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| t.to_offset(UtcOffset::UTC))
        .map_err(|_| "an RFC 3339 time, such as 2026-04-01T09:00:00Z".to_owned())
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
    let filter = AuditFilter {
        actor,
        action,
        target,
        since,
        until,
        before: None,
    };
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
