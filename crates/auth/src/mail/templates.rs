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
    /// Sent because the member undid an email change: sign-in waits for this reset.
    undone: bool,
}

#[derive(Template)]
#[template(path = "mail/reset.html")]
struct ResetHtml<'a> {
    ja: bool,
    name: &'a str,
    link: &'a str,
    minutes: i64,
    /// Sent because the member undid an email change: sign-in waits for this reset.
    undone: bool,
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
    reset_mail(lang, to, display_name, link, minutes, false)
}

/// The reset link sent when the owner undid an email change: not "ignore this mail", but
/// why sign-in waits for a new password.
pub fn reset_after_undo(
    lang: Lang,
    to: &str,
    display_name: &str,
    link: &str,
    minutes: i64,
) -> Mail {
    reset_mail(lang, to, display_name, link, minutes, true)
}

fn reset_mail(
    lang: Lang,
    to: &str,
    display_name: &str,
    link: &str,
    minutes: i64,
    undone: bool,
) -> Mail {
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
            undone,
        }),
        html: render(&ResetHtml {
            ja,
            name,
            link,
            minutes,
            undone,
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

/// What the sign-in help mail tells the owner about their account.
pub enum AccountHelp<'a> {
    /// Signed in as usual: its lock, its ways in, a reset link.
    Active {
        lock: Option<HelpLock<'a>>,
        /// Whether it has a password (later issues add social sign-in and passkeys).
        password: bool,
        /// The services linked to it (`account::linked`), oldest first.
        linked: &'a [HelpLink],
        reset: &'a str,
        reset_minutes: i64,
    },
    /// Signed up, address not verified: a fresh verification link, and the sign-up page
    /// for an owner who forgot the password they chose.
    Unverified {
        lock: Option<HelpLock<'a>>,
        verify: &'a str,
        verify_hours: i64,
        signup: &'a str,
    },
    /// Frozen by support: nothing to click, support to contact.
    Frozen,
}

/// A lock the help mail reports.
pub struct HelpLock<'a> {
    /// The end, already in words; `None` until unlocked.
    pub until: Option<&'a str>,
    /// Single use, valid `hours`.
    pub unlock: &'a str,
    pub hours: u32,
}

#[derive(Template)]
#[template(path = "mail/signin_help.txt")]
struct HelpText<'a> {
    ja: bool,
    name: &'a str,
    help: &'a AccountHelp<'a>,
}

#[derive(Template)]
#[template(path = "mail/signin_help.html")]
struct HelpHtml<'a> {
    ja: bool,
    name: &'a str,
    help: &'a AccountHelp<'a>,
}

/// The sign-in help for an account, to its owner.
pub fn signin_help(lang: Lang, to: &str, display_name: &str, help: &AccountHelp<'_>) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】ログインについてのご案内".to_owned()
        } else {
            "[Tobira] Help with signing in".to_owned()
        },
        text: render(&HelpText { ja, name, help }),
        html: render(&HelpHtml { ja, name, help }),
    }
}

#[derive(Template)]
#[template(path = "mail/no_account.txt")]
struct NoAccountText<'a> {
    ja: bool,
    to: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/no_account.html")]
struct NoAccountHtml<'a> {
    ja: bool,
    to: &'a str,
    link: &'a str,
}

/// The sign-in help for an address no account uses: check for a typo or another address;
/// `signup_link` to create one.
pub fn no_account(lang: Lang, to: &str, signup_link: &str) -> Mail {
    let ja = lang == Lang::Ja;
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】このアドレスのアカウントはありません".to_owned()
        } else {
            "[Tobira] No account uses this address".to_owned()
        },
        text: render(&NoAccountText {
            ja,
            to,
            link: signup_link,
        }),
        html: render(&NoAccountHtml {
            ja,
            to,
            link: signup_link,
        }),
    }
}

/// What the new-device mail says of the sign-in, already in words and links.
pub struct NewDeviceSignIn<'a> {
    /// The time, with its zone ("2026-12-04 15:42（日本時間）").
    pub at: &'a str,
    /// The device in words ("Chrome（Windows 10・パソコン）").
    pub device: &'a str,
    pub ip: &'a str,
    /// The console's list of signed-in devices, to sign that one out.
    pub sessions: &'a str,
    /// The forgot-password page.
    pub reset: &'a str,
}

#[derive(Template)]
#[template(path = "mail/new_device.txt")]
struct NewDeviceText<'a> {
    ja: bool,
    name: &'a str,
    at: &'a str,
    device: &'a str,
    ip: &'a str,
    sessions_link: &'a str,
    reset_link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/new_device.html")]
struct NewDeviceHtml<'a> {
    ja: bool,
    name: &'a str,
    at: &'a str,
    device: &'a str,
    ip: &'a str,
    sessions_link: &'a str,
    reset_link: &'a str,
}

/// "Your account was signed in to from a new device": when, what, from where; the way
/// to sign that device out and, if it was not the member, to change the password.
pub fn new_device(lang: Lang, to: &str, display_name: &str, s: &NewDeviceSignIn<'_>) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】新しい端末からログインがありました".to_owned()
        } else {
            "[Tobira] New sign-in to your account".to_owned()
        },
        text: render(&NewDeviceText {
            ja,
            name,
            at: s.at,
            device: s.device,
            ip: s.ip,
            sessions_link: s.sessions,
            reset_link: s.reset,
        }),
        html: render(&NewDeviceHtml {
            ja,
            name,
            at: s.at,
            device: s.device,
            ip: s.ip,
            sessions_link: s.sessions,
            reset_link: s.reset,
        }),
    }
}

// Email change (account/email.rs)

#[derive(Template)]
#[template(path = "mail/email_confirm.txt")]
struct EmailConfirmText<'a> {
    ja: bool,
    to: &'a str,
    link: &'a str,
    hours: i64,
}

#[derive(Template)]
#[template(path = "mail/email_confirm.html")]
struct EmailConfirmHtml<'a> {
    ja: bool,
    to: &'a str,
    link: &'a str,
    hours: i64,
}

#[derive(Template)]
#[template(path = "mail/email_changed.txt")]
struct EmailChangedText<'a> {
    ja: bool,
    name: &'a str,
    to: &'a str,
    new_address: &'a str,
    link: &'a str,
    days: i64,
}

#[derive(Template)]
#[template(path = "mail/email_changed.html")]
struct EmailChangedHtml<'a> {
    ja: bool,
    name: &'a str,
    to: &'a str,
    new_address: &'a str,
    link: &'a str,
    days: i64,
}

/// The link that confirms an address change, to the new address. It greets the address,
/// not the member: the mailbox is not yet proven theirs, and a mistyped address must not
/// learn the member's name.
pub fn email_change_confirm(lang: Lang, to: &str, link: &str, hours: i64) -> Mail {
    let ja = lang == Lang::Ja;
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】新しいメールアドレスの確認".to_owned()
        } else {
            "[Tobira] Confirm your new email address".to_owned()
        },
        text: render(&EmailConfirmText {
            ja,
            to,
            link,
            hours,
        }),
        html: render(&EmailConfirmHtml {
            ja,
            to,
            link,
            hours,
        }),
    }
}

/// "Your address was changed", to the address the change left, with the link that undoes
/// it (and what undoing does). `new_address` is as the caller chose to show it.
pub fn email_changed(
    lang: Lang,
    to: &str,
    display_name: &str,
    new_address: &str,
    link: &str,
    days: i64,
) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】メールアドレスが変更されました".to_owned()
        } else {
            "[Tobira] Your email address was changed".to_owned()
        },
        text: render(&EmailChangedText {
            ja,
            name,
            to,
            new_address,
            link,
            days,
        }),
        html: render(&EmailChangedHtml {
            ja,
            name,
            to,
            new_address,
            link,
            days,
        }),
    }
}

// Password change (account/password.rs)

#[derive(Template)]
#[template(path = "mail/password_changed_console.txt")]
struct ChangedByMemberText<'a> {
    ja: bool,
    name: &'a str,
    link: &'a str,
    others_signed_out: bool,
}

#[derive(Template)]
#[template(path = "mail/password_changed_console.html")]
struct ChangedByMemberHtml<'a> {
    ja: bool,
    name: &'a str,
    link: &'a str,
    others_signed_out: bool,
}

/// "Your password was changed" after a change on the console: unlike the reset's mail
/// (`password_changed`), the browser it was changed on stays signed in, and the other
/// devices only when the member chose so; the mail says which, and links to a reset
/// ("this wasn't me"), which signs out everything.
pub fn password_changed_by_member(
    lang: Lang,
    to: &str,
    display_name: &str,
    link: &str,
    others_signed_out: bool,
) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】パスワードが変更されました".to_owned()
        } else {
            "[Tobira] Your password was changed".to_owned()
        },
        text: render(&ChangedByMemberText {
            ja,
            name,
            link,
            others_signed_out,
        }),
        html: render(&ChangedByMemberHtml {
            ja,
            name,
            link,
            others_signed_out,
        }),
    }
}

// Freeze and support (admin/support.rs)

#[derive(Template)]
#[template(path = "mail/account_frozen.txt")]
struct FrozenText<'a> {
    ja: bool,
    name: &'a str,
    reason: Option<&'a str>,
    contact: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "mail/account_frozen.html")]
struct FrozenHtml<'a> {
    ja: bool,
    name: &'a str,
    reason: Option<&'a str>,
    contact: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "mail/account_unfrozen.txt")]
struct UnfrozenText<'a> {
    ja: bool,
    name: &'a str,
    contact: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "mail/account_unfrozen.html")]
struct UnfrozenHtml<'a> {
    ja: bool,
    name: &'a str,
    contact: Option<&'a str>,
}

/// "Support suspended your account": sign-in is refused meanwhile; support's `reason`
/// only when support chose to tell it; how to reach support (`contact`, else in general).
pub fn account_frozen(
    lang: Lang,
    to: &str,
    display_name: &str,
    reason: Option<&str>,
    contact: Option<&str>,
) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】アカウントの利用を停止しました".to_owned()
        } else {
            "[Tobira] Your account has been suspended".to_owned()
        },
        text: render(&FrozenText {
            ja,
            name,
            reason,
            contact,
        }),
        html: render(&FrozenHtml {
            ja,
            name,
            reason,
            contact,
        }),
    }
}

/// "Your account can be used again".
pub fn account_unfrozen(lang: Lang, to: &str, display_name: &str, contact: Option<&str>) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】アカウントの利用停止を解除しました".to_owned()
        } else {
            "[Tobira] Your account can be used again".to_owned()
        },
        text: render(&UnfrozenText { ja, name, contact }),
        html: render(&UnfrozenHtml { ja, name, contact }),
    }
}

// Deletion (account/delete.rs)

#[derive(Template)]
#[template(path = "mail/account_deleted.txt")]
struct DeletedText<'a> {
    ja: bool,
    name: &'a str,
    to: &'a str,
    retention_days: u32,
    erased_from: &'a str,
    again_from: Option<&'a str>,
    support: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "mail/account_deleted.html")]
struct DeletedHtml<'a> {
    ja: bool,
    name: &'a str,
    to: &'a str,
    retention_days: u32,
    erased_from: &'a str,
    again_from: Option<&'a str>,
    support: Option<&'a str>,
}

/// What the deletion mail says, already in words.
pub struct Deletion<'a> {
    /// How long the personal data is kept, and from when it is erased.
    pub retention_days: u32,
    pub erased_from: &'a str,
    /// From when the address can sign up again; `None` when it can at once.
    pub again_from: Option<&'a str>,
    /// `account.support_contact`, when configured.
    pub support: Option<&'a str>,
}

/// "Your account was deleted": what ended, how long the data is kept, from when the
/// address can sign up again.
pub fn account_deleted(lang: Lang, to: &str, display_name: &str, d: &Deletion<'_>) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】退会手続きが完了しました".to_owned()
        } else {
            "[Tobira] Your account was deleted".to_owned()
        },
        text: render(&DeletedText {
            ja,
            name,
            to,
            retention_days: d.retention_days,
            erased_from: d.erased_from,
            again_from: d.again_from,
            support: d.support,
        }),
        html: render(&DeletedHtml {
            ja,
            name,
            to,
            retention_days: d.retention_days,
            erased_from: d.erased_from,
            again_from: d.again_from,
            support: d.support,
        }),
    }
}

#[derive(Template)]
#[template(path = "mail/signup_cooldown.txt")]
struct CooldownText<'a> {
    ja: bool,
    to: &'a str,
    again_from: &'a str,
}

#[derive(Template)]
#[template(path = "mail/signup_cooldown.html")]
struct CooldownHtml<'a> {
    ja: bool,
    to: &'a str,
    again_from: &'a str,
}

/// A sign-up with the address of a recently deleted account: from when (in words) it
/// can sign up again.
pub fn signup_cooldown(lang: Lang, to: &str, again_from: &str) -> Mail {
    let ja = lang == Lang::Ja;
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】このアドレスでの新規登録について".to_owned()
        } else {
            "[Tobira] About signing up with this address".to_owned()
        },
        text: render(&CooldownText { ja, to, again_from }),
        html: render(&CooldownHtml { ja, to, again_from }),
    }
}

// provider linked / unlinked (account/linked.rs)

/// A linked service as the sign-in help mail lists it among the ways in.
pub struct HelpLink {
    /// The service's name ("Google").
    pub provider: String,
    /// The address the service gave for the account there, which tells the member which
    /// of their accounts at the service it is.
    pub account: Option<String>,
}

/// What the link mail tells: which service, linked or unlinked, when and from where.
pub struct LinkedMail<'a> {
    /// True when the service was linked, false when the link was removed.
    pub linked: bool,
    /// The service's name ("Google"), from the configuration.
    pub provider: &'a str,
    /// The address the service gave for the account at the service, if it gave one:
    /// it tells the member which of their accounts there it is.
    pub account: Option<&'a str>,
    pub at: &'a str,
    pub device: &'a str,
    pub ip: &'a str,
    /// The console's linked-accounts page.
    pub console: &'a str,
    /// The password reset page.
    pub reset: &'a str,
}

#[derive(Template)]
#[template(path = "mail/provider_linked.txt")]
struct LinkedText<'a> {
    ja: bool,
    name: &'a str,
    m: &'a LinkedMail<'a>,
}

#[derive(Template)]
#[template(path = "mail/provider_linked.html")]
struct LinkedHtml<'a> {
    ja: bool,
    name: &'a str,
    m: &'a LinkedMail<'a>,
}

/// 「Googleを連携しました」 / 「Googleの連携を解除しました」: a new way in (or one fewer) is
/// news the member must hear of even when someone else made it.
pub fn provider_linked(lang: Lang, to: &str, display_name: &str, m: &LinkedMail<'_>) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    let subject = match (m.linked, ja) {
        (true, true) => format!("【Tobira】{}を連携しました", m.provider),
        (true, false) => format!("[Tobira] {} was linked to your account", m.provider),
        (false, true) => format!("【Tobira】{}の連携を解除しました", m.provider),
        (false, false) => format!("[Tobira] {} was unlinked from your account", m.provider),
    };
    Mail {
        to: to.to_owned(),
        subject,
        text: render(&LinkedText { ja, name, m }),
        html: render(&LinkedHtml { ja, name, m }),
    }
}

#[cfg(test)]
mod linked_mail_tests {
    use super::*;

    fn mail(linked: bool, lang: Lang, account: Option<&str>) -> Mail {
        provider_linked(
            lang,
            "a@example.jp",
            "<b>花子</b>",
            &LinkedMail {
                linked,
                provider: "Google",
                account,
                at: "2026-12-04 15:42（日本時間）",
                device: "Chrome（Windows 10・パソコン）",
                ip: "203.0.113.7",
                console: "https://id.example.jp/account/linked",
                reset: "https://id.example.jp/password/forgot",
            },
        )
    }

    #[test]
    fn the_link_mails_say_which_service_when_and_from_where_and_escape_what_they_quote() {
        let linked = mail(true, Lang::Ja, Some("<i>h</i>@gmail.com"));
        assert_eq!(linked.subject, "【Tobira】Googleを連携しました");
        for says in [
            "<b>花子</b> 様",
            "Google（<i>h</i>@gmail.com）",
            "2026-12-04 15:42",
            "Chrome（Windows 10・パソコン）",
            "203.0.113.7",
            "https://id.example.jp/account/linked",
            "https://id.example.jp/password/forgot",
            "お心当たりがない場合",
            "見覚えのない連携を解除",
        ] {
            assert!(linked.text.contains(says), "{says}: {}", linked.text);
        }
        assert!(!linked.html.contains("<b>花子") && !linked.html.contains("<i>h</i>"));

        let unlinked = mail(false, Lang::Ja, None);
        assert_eq!(unlinked.subject, "【Tobira】Googleの連携を解除しました");
        assert!(
            unlinked.text.contains("サービス: Google\n"),
            "{}",
            unlinked.text
        );
        assert!(!unlinked.text.contains("見覚えのない連携を解除"));

        let english = mail(true, Lang::En, None);
        assert_eq!(
            english.subject,
            "[Tobira] Google was linked to your account"
        );
        assert!(
            english.text.starts_with("Hello <b>花子</b>,"),
            "{}",
            english.text
        );
        assert!(english.text.contains("If this was not you"));
        let english = mail(false, Lang::En, None);
        assert_eq!(
            english.subject,
            "[Tobira] Google was unlinked from your account"
        );
    }

    #[test]
    fn the_sign_in_help_lists_the_linked_services() {
        let linked = [
            HelpLink {
                provider: "Google".to_owned(),
                account: Some("<h>@gmail.com".to_owned()),
            },
            HelpLink {
                provider: "Apple".to_owned(),
                account: None,
            },
        ];
        let help = AccountHelp::Active {
            lock: None,
            password: false,
            linked: &linked,
            reset: "https://id.example.jp/password/reset?token=r",
            reset_minutes: 30,
        };
        let ja = signin_help(Lang::Ja, "a@example.jp", "", &help);
        assert!(
            ja.text
                .contains("Google でログイン（<h>@gmail.com）\nApple でログイン\n"),
            "{}",
            ja.text
        );
        assert!(ja.html.contains("<li>Apple でログイン</li>"), "{}", ja.html);
        assert!(!ja.html.contains("<h>@"));
        let en = signin_help(Lang::En, "a@example.jp", "", &help);
        assert!(
            en.text
                .contains("Sign in with Google (<h>@gmail.com)\nSign in with Apple\n"),
            "{}",
            en.text
        );
    }
}
// END-F4-MAIL
// every earlier way in removed on the first verification (store side)

/// What the "earlier ways in removed" mail tells.
pub struct WaysInRemovedMail<'a> {
    /// When they were removed, in words.
    pub at: &'a str,
    /// Whether the account has a password now (the reset that verified the address set
    /// one): the mail says how to sign in from now on.
    pub password: bool,
    /// The console's linked-accounts page.
    pub console: &'a str,
    /// The password reset page.
    pub reset: &'a str,
}

#[derive(Template)]
#[template(path = "mail/ways_in_removed.txt")]
struct WaysInRemovedText<'a> {
    ja: bool,
    name: &'a str,
    to: &'a str,
    at: &'a str,
    password: bool,
    console: &'a str,
    reset: &'a str,
}

#[derive(Template)]
#[template(path = "mail/ways_in_removed.html")]
struct WaysInRemovedHtml<'a> {
    ja: bool,
    name: &'a str,
    to: &'a str,
    at: &'a str,
    password: bool,
    console: &'a str,
    reset: &'a str,
}

/// 「以前のログイン方法を削除しました」: an account a provider created without verifying
/// its address had it verified through a link Tobira mailed, and lost every earlier way
/// in (links, passkeys, second steps, sessions). Whoever made those ways in may not be
/// the mailbox's owner; the owner must hear why they are gone.
pub fn ways_in_removed(
    lang: Lang,
    to: &str,
    display_name: &str,
    m: &WaysInRemovedMail<'_>,
) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】以前のログイン方法を削除しました".to_owned()
        } else {
            "[Tobira] We removed the earlier ways to sign in".to_owned()
        },
        text: render(&WaysInRemovedText {
            ja,
            name,
            to,
            at: m.at,
            password: m.password,
            console: m.console,
            reset: m.reset,
        }),
        html: render(&WaysInRemovedHtml {
            ja,
            name,
            to,
            at: m.at,
            password: m.password,
            console: m.console,
            reset: m.reset,
        }),
    }
}
// END-F2-MAIL
// Passkey added / removed (account/passkeys.rs)

/// What the passkey mail tells: which passkey, added or removed, when and from where.
pub struct PasskeyMail<'a> {
    /// True when the passkey was registered, false when it was removed.
    pub added: bool,
    /// The passkey's name, as the member gave it.
    pub passkey: &'a str,
    pub at: &'a str,
    pub device: &'a str,
    pub ip: &'a str,
    /// The console's passkey page.
    pub console: &'a str,
    /// The password reset page.
    pub reset: &'a str,
}

#[derive(Template)]
#[template(path = "mail/passkey_changed.txt")]
struct PasskeyText<'a> {
    ja: bool,
    name: &'a str,
    m: &'a PasskeyMail<'a>,
}

#[derive(Template)]
#[template(path = "mail/passkey_changed.html")]
struct PasskeyHtml<'a> {
    ja: bool,
    name: &'a str,
    m: &'a PasskeyMail<'a>,
}

/// "A passkey was registered" / "A passkey was removed": a new way in (or one fewer)
/// is news the member must hear of even when someone else made it.
pub fn passkey_changed(lang: Lang, to: &str, display_name: &str, m: &PasskeyMail<'_>) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    let subject = match (m.added, ja) {
        (true, true) => "【Tobira】パスキーが登録されました",
        (true, false) => "[Tobira] A passkey was registered",
        (false, true) => "【Tobira】パスキーが削除されました",
        (false, false) => "[Tobira] A passkey was removed",
    };
    Mail {
        to: to.to_owned(),
        subject: subject.to_owned(),
        text: render(&PasskeyText { ja, name, m }),
        html: render(&PasskeyHtml { ja, name, m }),
    }
}

// The second step's mails (oidc/second_step.rs)

#[derive(Template)]
#[template(path = "mail/email_code.txt")]
struct EmailCodeText<'a> {
    ja: bool,
    name: &'a str,
    code: &'a str,
    minutes: i64,
    reset_link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/email_code.html")]
struct EmailCodeHtml<'a> {
    ja: bool,
    name: &'a str,
    code: &'a str,
    minutes: i64,
    reset_link: &'a str,
}

/// The 6-digit code that finishes a sign-in (valid `minutes`), with the way out for a
/// member who did not sign in: someone has the password, so change it.
pub fn email_code(
    lang: Lang,
    to: &str,
    display_name: &str,
    code: &str,
    minutes: i64,
    reset_link: &str,
) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        // The code stays out of the subject: lock screens and mail lists show subjects.
        subject: if ja {
            "【Tobira】ログインの確認コード".to_owned()
        } else {
            "[Tobira] Your sign-in code".to_owned()
        },
        text: render(&EmailCodeText {
            ja,
            name,
            code,
            minutes,
            reset_link,
        }),
        html: render(&EmailCodeHtml {
            ja,
            name,
            code,
            minutes,
            reset_link,
        }),
    }
}

#[derive(Template)]
#[template(path = "mail/recovery_code_used.txt")]
struct RecoveryUsedText<'a> {
    ja: bool,
    name: &'a str,
    left: u64,
    few: bool,
    link: &'a str,
    reset_link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/recovery_code_used.html")]
struct RecoveryUsedHtml<'a> {
    ja: bool,
    name: &'a str,
    left: u64,
    few: bool,
    link: &'a str,
    reset_link: &'a str,
}

/// Recovery codes left below which the mail asks for new ones.
const FEW_RECOVERY_CODES: u64 = 3;

/// "A recovery code was used to sign in": how many are left, the two-step settings
/// (`link`) to set the factor up again, and the reset for a member who did not sign in.
pub fn recovery_code_used(
    lang: Lang,
    to: &str,
    display_name: &str,
    left: u64,
    link: &str,
    reset_link: &str,
) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    let few = left < FEW_RECOVERY_CODES;
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】リカバリーコードが使用されました".to_owned()
        } else {
            "[Tobira] A recovery code was used".to_owned()
        },
        text: render(&RecoveryUsedText {
            ja,
            name,
            left,
            few,
            link,
            reset_link,
        }),
        html: render(&RecoveryUsedHtml {
            ja,
            name,
            left,
            few,
            link,
            reset_link,
        }),
    }
}

// Two-step changes (account/two_step.rs)

/// What a member changed in their second steps on `/account/2fa` (the two-step mail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwoStepChange {
    TotpOn,
    /// Another authenticator app (a new secret) replaced the one set up before.
    TotpReplaced,
    EmailOn,
    TotpOff,
    EmailOff,
    /// Two-step verification turned off altogether: every factor and recovery code.
    AllOff,
    RecoveryRenewed,
}

impl TwoStepChange {
    /// What happened, in a sentence.
    fn what(self, ja: bool) -> &'static str {
        match (self, ja) {
            (Self::TotpOn, true) => "Tobiraアカウントに認証アプリが登録されました。",
            (Self::TotpOn, false) => "An authenticator app was set up for your Tobira account.",
            (Self::TotpReplaced, true) => {
                "Tobiraアカウントの認証アプリが別のものに変更されました。以前のアプリのコードは使えなくなりました。"
            }
            (Self::TotpReplaced, false) => {
                "The authenticator app of your Tobira account was replaced. Codes from the previous app no longer work."
            }
            (Self::EmailOn, true) => {
                "Tobiraアカウントへのログインの際に、メールで確認コードを受け取る設定が有効になりました。"
            }
            (Self::EmailOn, false) => {
                "Signing in to your Tobira account now asks for a code sent to you by email."
            }
            (Self::TotpOff, true) => "Tobiraアカウントの認証アプリの登録が解除されました。",
            (Self::TotpOff, false) => "The authenticator app was removed from your Tobira account.",
            (Self::EmailOff, true) => {
                "Tobiraアカウントの、メールで確認コードを受け取る設定が解除されました。"
            }
            (Self::EmailOff, false) => {
                "Signing in to your Tobira account no longer asks for a code sent by email."
            }
            (Self::AllOff, true) => {
                "Tobiraアカウントの二段階認証がオフにされ、すべての確認方法とリカバリーコードが削除されました。"
            }
            (Self::AllOff, false) => {
                "Two-step verification was turned off for your Tobira account: every verification method and recovery code was removed."
            }
            (Self::RecoveryRenewed, true) => {
                "Tobiraアカウントのリカバリーコードが再発行されました。以前のコードは使えなくなりました。"
            }
            (Self::RecoveryRenewed, false) => {
                "New recovery codes were made for your Tobira account. The previous codes no longer work."
            }
        }
    }
}

/// What the two-step mail says, already in words and links.
pub struct TwoStepMail<'a> {
    pub change: TwoStepChange,
    /// Whether two-step verification was on before the change, and is on after it.
    pub was_on: bool,
    pub now_on: bool,
    /// The time with its zone, the device in words, the address it came from.
    pub at: &'a str,
    pub device: &'a str,
    pub ip: &'a str,
    /// `/account/2fa`, and the forgot-password page for "this wasn't me".
    pub console: &'a str,
    pub reset: &'a str,
}

#[derive(Template)]
#[template(path = "mail/two_step_changed.txt")]
struct TwoStepText<'a> {
    ja: bool,
    name: &'a str,
    what: &'a str,
    now_on: bool,
    m: &'a TwoStepMail<'a>,
}

#[derive(Template)]
#[template(path = "mail/two_step_changed.html")]
struct TwoStepHtml<'a> {
    ja: bool,
    name: &'a str,
    what: &'a str,
    now_on: bool,
    m: &'a TwoStepMail<'a>,
}

/// A change to the account's second steps: what changed, whether sign-in now asks for a
/// second step, from where, and what to do if it was not the member (someone with the
/// password and a signed-in browser may be taking the account over).
pub fn two_step_changed(lang: Lang, to: &str, display_name: &str, m: &TwoStepMail<'_>) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    let subject = match (m.change, m.was_on, m.now_on, ja) {
        (TwoStepChange::RecoveryRenewed, _, _, true) => {
            "【Tobira】リカバリーコードが再発行されました"
        }
        (TwoStepChange::RecoveryRenewed, _, _, false) => "[Tobira] New recovery codes were made",
        (_, false, true, true) => "【Tobira】二段階認証が有効になりました",
        (_, false, true, false) => "[Tobira] Two-step verification is on",
        (_, true, false, true) => "【Tobira】二段階認証が無効になりました",
        (_, true, false, false) => "[Tobira] Two-step verification is off",
        (_, _, _, true) => "【Tobira】二段階認証の設定が変更されました",
        (_, _, _, false) => "[Tobira] Your two-step verification changed",
    };
    let what = m.change.what(ja);
    Mail {
        to: to.to_owned(),
        subject: subject.to_owned(),
        text: render(&TwoStepText {
            ja,
            name,
            what,
            now_on: m.now_on,
            m,
        }),
        html: render(&TwoStepHtml {
            ja,
            name,
            what,
            now_on: m.now_on,
            m,
        }),
    }
}

// Support's reset of two-step verification (admin/support.rs)

#[derive(Template)]
#[template(path = "mail/two_step_reset.txt")]
struct TwoStepResetText<'a> {
    ja: bool,
    name: &'a str,
    link: &'a str,
    contact: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "mail/two_step_reset.html")]
struct TwoStepResetHtml<'a> {
    ja: bool,
    name: &'a str,
    link: &'a str,
    contact: Option<&'a str>,
}

/// "Support turned off your two-step verification": the password alone signs in now, set
/// it up again at `link` (the console), and tell support (`contact`) if you did not ask:
/// whoever talked support into it may not be the member.
pub fn two_step_reset(
    lang: Lang,
    to: &str,
    display_name: &str,
    link: &str,
    contact: Option<&str>,
) -> Mail {
    let ja = lang == Lang::Ja;
    let name = name(display_name, to);
    Mail {
        to: to.to_owned(),
        subject: if ja {
            "【Tobira】サポートにより二段階認証が解除されました".to_owned()
        } else {
            "[Tobira] Support turned off your two-step verification".to_owned()
        },
        text: render(&TwoStepResetText {
            ja,
            name,
            link,
            contact,
        }),
        html: render(&TwoStepResetHtml {
            ja,
            name,
            link,
            contact,
        }),
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

    #[test]
    fn sign_in_help_escapes_the_display_name_and_says_what_holds_the_account() {
        let lock = HelpLock {
            until: Some("15:42"),
            unlock: "https://id.example.jp/unlock?token=u&tx=1",
            hours: 24,
        };
        let help = AccountHelp::Active {
            lock: Some(lock),
            password: true,
            linked: &[],
            reset: "https://id.example.jp/password/reset?token=r",
            reset_minutes: 30,
        };
        let m = signin_help(Lang::Ja, "a@example.jp", "<b>花子</b>", &help);
        assert_eq!(m.subject, "【Tobira】ログインについてのご案内");
        assert!(
            m.text.starts_with("<b>花子</b> 様"),
            "plain text is not escaped"
        );
        assert!(m.text.contains("15:42 まで"));
        assert!(m.text.contains("https://id.example.jp/unlock?token=u&tx=1"));
        assert!(
            m.text
                .contains("https://id.example.jp/password/reset?token=r")
        );
        assert!(m.html.contains("&#60;b&#62;花子") || m.html.contains("&lt;b&gt;花子"));
        assert!(!m.html.contains("<b>花子"));
        assert!(
            m.html
                .contains("https://id.example.jp/unlock?token=u&#38;tx=1")
                || m.html
                    .contains("https://id.example.jp/unlock?token=u&amp;tx=1")
        );

        let frozen = signin_help(Lang::En, "a@example.jp", "", &AccountHelp::Frozen);
        assert_eq!(frozen.subject, "[Tobira] Help with signing in");
        assert!(frozen.text.starts_with("Hello a@example.jp,"));
        assert!(frozen.text.contains("contact support"));
        assert!(
            !frozen.text.contains("http"),
            "no links for a frozen account"
        );

        let none = no_account(Lang::En, "<x>@example.jp", "https://id.example.jp/signup");
        assert_eq!(none.subject, "[Tobira] No account uses this address");
        assert!(none.text.contains("https://id.example.jp/signup"));
        assert!(!none.html.contains("<x>"));
    }
}
