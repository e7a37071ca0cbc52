//! The app's clock: see `tobira_config::clock` (the marketplace uses the same one), and
//! the one way the OP writes a time as text.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use tobira_config::Clock;

/// `t` as RFC 3339 (`2026-04-01T09:00:00Z`): how times appear in audit details, the CLI's
/// output and its messages, so that an operator can paste one into a filter. A time RFC
/// 3339 cannot write (a year past 9999) is shown in `time`'s own form rather than lost.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}
