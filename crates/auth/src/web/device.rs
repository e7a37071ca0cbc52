//! A device described in words from its user agent (the `woothee` parser): browser, OS
//! and kind, for the sign-in history, the device list and the new-device mail.

use woothee::parser::Parser;

use super::i18n::Lang;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Phone,
    Computer,
    Other,
}

/// What a user agent says of its device; `None` parts are unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub browser: Option<String>,
    pub os: Option<String>,
    pub kind: Kind,
}

fn known(value: &str) -> Option<String> {
    (!value.is_empty() && value != woothee::woothee::VALUE_UNKNOWN).then(|| value.to_owned())
}

impl Device {
    pub fn of(user_agent: &str) -> Self {
        let Some(found) = Parser::new().parse(user_agent) else {
            return Self {
                browser: None,
                os: None,
                kind: Kind::Other,
            };
        };
        let kind = match found.category {
            "smartphone" | "mobilephone" => Kind::Phone,
            "pc" => Kind::Computer,
            _ => Kind::Other,
        };
        let os = known(found.os).map(|os| match known(&found.os_version) {
            // "Windows 10" already carries its version; iOS and Android do not.
            Some(v) if !os.contains(&v) && kind == Kind::Phone => format!("{os} {v}"),
            _ => os,
        });
        Self {
            browser: known(found.name),
            os,
            kind,
        }
    }

    /// "Chrome（Windows 10・パソコン）" / "Chrome on Windows 10 (computer)".
    pub fn describe(&self, lang: Lang) -> String {
        let kind = match (self.kind, lang) {
            (Kind::Phone, Lang::Ja) => Some("スマートフォン"),
            (Kind::Phone, Lang::En) => Some("phone"),
            (Kind::Computer, Lang::Ja) => Some("パソコン"),
            (Kind::Computer, Lang::En) => Some("computer"),
            (Kind::Other, _) => None,
        };
        let browser = self.browser.clone().unwrap_or_else(|| match lang {
            Lang::Ja => "不明なブラウザ".to_owned(),
            Lang::En => "Unknown browser".to_owned(),
        });
        match lang {
            Lang::Ja => {
                let details: Vec<&str> = self.os.as_deref().into_iter().chain(kind).collect();
                if details.is_empty() {
                    browser
                } else {
                    format!("{browser}（{}）", details.join("・"))
                }
            }
            Lang::En => {
                let mut text = browser;
                if let Some(os) = &self.os {
                    text.push_str(" on ");
                    text.push_str(os);
                }
                if let Some(kind) = kind {
                    text.push_str(&format!(" ({kind})"));
                }
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    #[test]
    fn devices_are_described_in_the_members_language() {
        let phone = Device::of(IPHONE);
        assert_eq!(phone.kind, Kind::Phone);
        assert_eq!(
            phone.describe(Lang::Ja),
            "Safari（iPhone 17.1・スマートフォン）"
        );
        assert_eq!(phone.describe(Lang::En), "Safari on iPhone 17.1 (phone)");
        let pc = Device::of(WINDOWS);
        assert_eq!(pc.describe(Lang::Ja), "Chrome（Windows 10・パソコン）");
        assert_eq!(pc.describe(Lang::En), "Chrome on Windows 10 (computer)");
        assert_eq!(Device::of("").describe(Lang::Ja), "不明なブラウザ");
        assert!(!Device::of("curl/8.5.0").describe(Lang::En).is_empty());
    }
}
