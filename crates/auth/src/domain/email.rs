//! Email addresses. Uniqueness is decided on a normalised form (trimmed, NFKC, lower-cased)
//! so that `Ｔａｒｏ@Example.com` and `taro@example.com` are one account; the typed form
//! is kept for display and for the mails we send.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

#[derive(Clone, PartialEq, Eq)]
pub struct Email {
    normalized: String,
    display: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("the email address is empty")]
    Empty,
    #[error("the email address is too long")]
    TooLong,
    #[error("the email address is not valid")]
    Invalid,
}

/// RFC 5321 §4.5.3.1: 64 octets of local part, 254 in a usable path.
const MAX_LOCAL: usize = 64;
const MAX_TOTAL: usize = 254;

impl Email {
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let display = input.trim();
        if display.is_empty() {
            return Err(EmailError::Empty);
        }
        let folded: String = display.nfkc().collect::<String>().to_lowercase();
        if folded.len() > MAX_TOTAL {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = folded.rsplit_once('@').ok_or(EmailError::Invalid)?;
        if local.is_empty() || local.len() > MAX_LOCAL || !local.chars().all(is_local_char) {
            return Err(EmailError::Invalid);
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(EmailError::Invalid);
        }
        // A domain name with at least two labels; letters of any script (IDN) are kept.
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 || labels.iter().any(|l| !is_domain_label(l)) {
            return Err(EmailError::Invalid);
        }
        Ok(Self {
            normalized: folded,
            display: display.nfkc().collect(),
        })
    }

    /// Rebuilds an address read back from the store (already normalised when saved).
    pub fn from_stored(normalized: String, display: String) -> Self {
        Self {
            normalized,
            display,
        }
    }

    /// The form that decides uniqueness and lookups.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// The address as the member typed it (trimmed, NFKC).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The normalised local part (before the `@`).
    pub fn local_part(&self) -> &str {
        self.normalized
            .rsplit_once('@')
            .map_or(self.normalized.as_str(), |(l, _)| l)
    }
}

fn is_local_char(c: char) -> bool {
    // The dot-atom of RFC 5322 plus UTF-8 letters (RFC 6531); no quoted local parts.
    c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
}

fn is_domain_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(|c| c.is_alphanumeric() || c == '-')
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({:?})", self.normalized)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_full_width_forms_normalise_to_one_address() {
        let a = Email::parse("taro@example.com").unwrap();
        for other in [
            "  Taro@Example.COM ",
            "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏｍ",
            "ＴＡＲＯ@example.com",
        ] {
            let b = Email::parse(other).unwrap();
            assert_eq!(a.normalized(), b.normalized(), "{other}");
        }
        let typed = Email::parse(" Taro@Example.COM ").unwrap();
        assert_eq!(typed.display(), "Taro@Example.COM");
        assert_eq!(typed.local_part(), "taro");
    }

    #[test]
    fn malformed_addresses_are_refused() {
        assert_eq!(Email::parse("   "), Err(EmailError::Empty));
        for bad in [
            "taro",
            "taro@",
            "@example.com",
            "taro@example",
            "taro@@example.com",
            "ta ro@example.com",
            "taro@exa mple.com",
            "taro@-example.com",
            "taro@example..com",
            ".taro@example.com",
            "ta..ro@example.com",
            "taro@exa\nmple.com",
            "<taro@example.com>",
            "taro@example.com\u{0000}",
            "\"taro\"@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(Email::parse(&long).is_err());
        let long = format!("a@{}.com", "b".repeat(260));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
    }

    #[test]
    fn international_addresses_are_accepted() {
        let e = Email::parse("山田@例え.jp").unwrap();
        assert_eq!(e.normalized(), "山田@例え.jp");
        assert!(Email::parse("first.last+tag@sub.example.co.jp").is_ok());
    }
}
