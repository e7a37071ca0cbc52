//! The mails, rendered in the member's language: plain text and HTML from askama
//! templates (`.txt` is not escaped, `.html` is). Links are built from the issuer by the
//! caller, never from the request's Host header.

use askama::Template;

use super::Mail;
use crate::web::i18n::Lang;

#[derive(Template)]
#[template(path = "mail/reset.txt")]
struct ResetText<'a> {
    ja: bool,
    name: &'a str,
    link: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "mail/reset.html")]
struct ResetHtml<'a> {
    ja: bool,
    name: &'a str,
    link: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "mail/password_changed.txt")]
struct ChangedText<'a> {
    ja: bool,
    name: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/password_changed.html")]
struct ChangedHtml<'a> {
    ja: bool,
    name: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/verify.txt")]
struct VerifyText<'a> {
    ja: bool,
    name: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/verify.html")]
struct VerifyHtml<'a> {
    ja: bool,
    name: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/signup_exists.txt")]
struct ExistsText<'a> {
    ja: bool,
    name: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/signup_exists.html")]
struct ExistsHtml<'a> {
    ja: bool,
    name: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/account_locked.txt")]
struct LockedText<'a> {
    ja: bool,
    name: &'a str,
    until: Option<&'a str>,
    unlock_link: &'a str,
    hours: u32,
    reset_link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/account_locked.html")]
struct LockedHtml<'a> {
    ja: bool,
    name: &'a str,
    until: Option<&'a str>,
    unlock_link: &'a str,
    hours: u32,
    reset_link: &'a str,
}

/// Links of the lock mail.
pub struct LockLinks<'a> {
    /// Single use, valid `hours`.
    pub unlock: &'a str,
    pub hours: u32,
    /// The forgot-password page.
    pub reset: &'a str,
}

/// "Someone typed wrong passwords": the lock (`until`, already in words; `None` until
/// unlocked), the unlock link and the way to reset.
pub fn account_locked(
    lang: Lang,
    to: &str,
    display_name: &str,
    until: Option<&str>,
    links: &LockLinks<'_>,
) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】ログインを一時的に制限しました".to_owned()
        } else {
            "[Tobira] Sign-in to your account is paused".to_owned()
        },
        text: render(&LockedText {
            ja,
            name,
            until,
            unlock_link: links.unlock,
            hours: links.hours,
            reset_link: links.reset,
        }),
        html: render(&LockedHtml {
            ja,
            name,
            until,
            unlock_link: links.unlock,
            hours: links.hours,
            reset_link: links.reset,
        }),
    }
}

/// The link that verifies a signed-up address.
pub fn verify(lang: Lang, to: &str, display_name: &str, link: &str) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】メールアドレスの確認".to_owned()
        } else {
            "[Tobira] Confirm your email address".to_owned()
        },
        text: render(&VerifyText { ja, name, link }),
        html: render(&VerifyHtml { ja, name, link }),
    }
}

/// Told to the owner of an address that someone tried to sign up with.
pub fn signup_exists(lang: Lang, to: &str, display_name: &str, reset_link: &str) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】このアドレスでの新規登録について".to_owned()
        } else {
            "[Tobira] Someone tried to sign up with your address".to_owned()
        },
        text: render(&ExistsText {
            ja,
            name,
            link: reset_link,
        }),
        html: render(&ExistsHtml {
            ja,
            name,
            link: reset_link,
        }),
    }
}

fn render(t: &impl Template) -> String {
    t.render().expect("mail templates render")
}

/// The greeting's name: the display name, else the address.
fn name<'a>(display_name: &'a str, to: &'a str) -> &'a str {
    if display_name.trim().is_empty() {
        to
    } else {
        display_name
    }
}

/// The reset link mail.
pub fn reset(lang: Lang, to: &str, display_name: &str, link: &str, minutes: i64) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】パスワードの再設定".to_owned()
        } else {
            "[Tobira] Reset your password".to_owned()
        },
        text: render(&ResetText {
            ja,
            name,
            link,
            minutes,
        }),
        html: render(&ResetHtml {
            ja,
            name,
            link,
            minutes,
        }),
    }
}

/// "Your password was changed", with a link to reset again.
pub fn password_changed(lang: Lang, to: &str, display_name: &str, link: &str) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】パスワードが変更されました".to_owned()
        } else {
            "[Tobira] Your password was changed".to_owned()
        },
        text: render(&ChangedText { ja, name, link }),
        html: render(&ChangedHtml { ja, name, link }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mails_are_localised_and_html_is_escaped() {
        let m = reset(
            Lang::Ja,
            "a@example.jp",
            "<b>花子</b>",
            "https://id.example.jp/r?t=1&x=2",
            30,
        );
        assert!(m.subject.contains("パスワード"));
        assert!(
            m.text.contains("<b>花子</b> 様"),
            "plain text is not escaped"
        );
        assert!(m.text.contains("https://id.example.jp/r?t=1&x=2"));
        assert!(m.html.contains("&#60;b&#62;花子") || m.html.contains("&lt;b&gt;花子"));
        assert!(!m.html.contains("<b>花子"));
        let en = password_changed(Lang::En, "a@example.jp", "", "https://id.example.jp/f");
        assert!(en.text.starts_with("Hello a@example.jp,"));
        assert!(en.html.contains("Reset my password"));
    }
}
