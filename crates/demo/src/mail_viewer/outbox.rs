//! The OP's file outbox as the mail viewer reads it: `<job uuid>.eml` files that the OP's
//! mailer (`tobira_auth::mail`) writes whole and renames into place, so a file we see is a
//! complete mail; hidden `.<id>.eml.part` files are still being written and are skipped.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use mail_parser::{Address, DateTime, MessageParser};
use uuid::Uuid;

/// Mails larger than this are not the OP's and are not read (the OP's are a few KiB).
const MAX_MAIL_BYTES: u64 = 2 * 1024 * 1024;

/// A mail's name: the OP's job id. The file name is rebuilt from the parsed UUID, never
/// taken from the request, so no request (`../`, an absolute path, a `.part` file) can
/// name another file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MailId(Uuid);

impl MailId {
    /// Only the hyphenated lowercase form the OP writes, so each mail has one URL.
    pub fn parse(s: &str) -> Option<Self> {
        let id = Uuid::try_parse(s).ok()?;
        (id.hyphenated().to_string() == s).then_some(Self(id))
    }

    fn file_name(self) -> String {
        format!("{}.eml", self.0.hyphenated())
    }
}

impl fmt::Display for MailId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A mail as the viewer shows it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub id: MailId,
    pub from: String,
    pub to: String,
    /// The Date header as written, e.g. `2026-04-01 09:30:00 +09:00`.
    pub date: Option<String>,
    pub subject: String,
    /// The text/plain part (mail-parser derives one from the HTML part if there is none).
    pub text: String,
    /// The text/html part, if the mail has one.
    pub html: Option<String>,
}

impl Mail {
    pub fn parse(id: MailId, raw: &[u8]) -> Self {
        let Some(msg) = MessageParser::default().parse(raw) else {
            return Self {
                id,
                from: String::new(),
                to: String::new(),
                date: None,
                subject: String::new(),
                text: String::from_utf8_lossy(raw).into_owned(),
                html: None,
            };
        };
        Self {
            id,
            from: addresses(msg.from()),
            to: addresses(msg.to()),
            date: msg.date().map(show_date),
            subject: msg.subject().unwrap_or_default().to_owned(),
            text: msg.body_text(0).unwrap_or_default().into_owned(),
            html: msg
                .html_bodies()
                .find(|part| part.is_text_html())
                .and_then(|part| part.text_contents())
                .map(str::to_owned),
        }
    }
}

fn addresses(address: Option<&Address<'_>>) -> String {
    let Some(address) = address else {
        return String::new();
    };
    address
        .iter()
        .map(|a| match (a.name(), a.address()) {
            (Some(name), Some(addr)) => format!("{name} <{addr}>"),
            (None, Some(addr)) => addr.to_owned(),
            (Some(name), None) => name.to_owned(),
            (None, None) => String::new(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn show_date(d: &DateTime) -> String {
    let sign = if d.tz_before_gmt { '-' } else { '+' };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {sign}{:02}:{:02}",
        d.year, d.month, d.day, d.hour, d.minute, d.second, d.tz_hour, d.tz_minute
    )
}

#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The newest `limit` mails, newest first. Delivery order is the files' modification
    /// time (the Date header has whole seconds only; two mails of one sign-up share one).
    pub async fn list(&self, limit: usize) -> io::Result<Vec<Mail>> {
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            // No mail was ever sent: the OP creates the directory with the first one.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut found: Vec<(SystemTime, MailId)> = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".eml"))
                .and_then(MailId::parse)
            else {
                continue;
            };
            let meta = entry.metadata().await?;
            if meta.is_file() && meta.len() <= MAX_MAIL_BYTES {
                found.push((meta.modified()?, id));
            }
        }
        found.sort_unstable_by(|a, b| b.cmp(a));
        found.truncate(limit);
        let mut mails = Vec::with_capacity(found.len());
        for (_, id) in found {
            // Gone since the directory was read (someone cleaned the outbox): skip it.
            if let Some(raw) = self.raw(id).await? {
                mails.push(Mail::parse(id, &raw));
            }
        }
        Ok(mails)
    }

    /// The mail's bytes as the OP wrote them; `None` if there is no such mail.
    pub async fn raw(&self, id: MailId) -> io::Result<Option<Vec<u8>>> {
        let path = self.dir.join(id.file_name());
        let meta = match tokio::fs::metadata(&path).await {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !meta.is_file() || meta.len() > MAX_MAIL_BYTES {
            return Ok(None);
        }
        match tokio::fs::read(&path).await {
            Ok(raw) => Ok(Some(raw)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn lookup(&self, id: MailId) -> io::Result<Option<Mail>> {
        Ok(self.raw(id).await?.map(|raw| Mail::parse(id, &raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_uuid_names_a_mail() {
        let id = "0192f0c4-7b1e-4a8e-9d3c-5f6a7b8c9d0e";
        assert_eq!(
            MailId::parse(id).map(|m| m.to_string()).as_deref(),
            Some(id)
        );
        for bad in [
            "../../etc/passwd",
            "/etc/passwd",
            "..",
            "",
            "0192f0c4-7b1e-4a8e-9d3c-5f6a7b8c9d0e/../x",
            "0192F0C4-7B1E-4A8E-9D3C-5F6A7B8C9D0E",
            "0192f0c47b1e4a8e9d3c5f6a7b8c9d0e",
            "{0192f0c4-7b1e-4a8e-9d3c-5f6a7b8c9d0e}",
            "urn:uuid:0192f0c4-7b1e-4a8e-9d3c-5f6a7b8c9d0e",
            ".0192f0c4-7b1e-4a8e-9d3c-5f6a7b8c9d0e.eml.part",
        ] {
            assert_eq!(MailId::parse(bad), None, "{bad}");
        }
    }
}
