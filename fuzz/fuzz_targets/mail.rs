//! Mail rendering up to the bytes that leave (no SMTP): a member's display name, address
//! and the links are theirs or an attacker's to choose. Whatever they hold, the message
//! has exactly one recipient and no header of theirs, and the HTML part shows no markup
//! of theirs.
#![no_main]

use lettre::message::Mailbox;
use libfuzzer_sys::fuzz_target;
use mail_parser::{HeaderName, MessageParser};
use tobira_auth::mail::{Mail, templates};
use tobira_auth::web::i18n::Lang;

/// `render` with the fuzzed display name, beside the same mail for a plain name: the
/// member's text adds no markup (not one `<`) to the HTML part.
fn check(render: impl Fn(&str) -> Mail, display_name: &str) {
    let mail = render(display_name);
    let plain = render("Hanako");
    assert_eq!(
        mail.html.matches('<').count(),
        plain.html.matches('<').count(),
        "markup from {display_name:?}"
    );
    let from: Mailbox = "Tobira <no-reply@id.example.jp>"
        .parse()
        .expect("a mailbox");
    // An address lettre cannot parse is refused, never sent somewhere else.
    let Ok(bytes) = mail.formatted(&from) else {
        return;
    };
    let message = MessageParser::default()
        .parse(&bytes)
        .expect("what we send parses");
    let count = |name: HeaderName<'_>| message.headers().iter().filter(|h| h.name == name).count();
    assert_eq!(count(HeaderName::To), 1);
    assert_eq!(count(HeaderName::From), 1);
    assert_eq!(count(HeaderName::Subject), 1);
    assert_eq!(count(HeaderName::Cc) + count(HeaderName::Bcc), 0);
    let to = message
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address());
    assert!(to.is_some_and(|a| !a.contains(['\r', '\n'])));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let to = parts.next().unwrap_or_default();
    let display_name = parts.next().unwrap_or_default();
    let link = parts.next().unwrap_or("https://id.example.jp/verify?t=x");
    for lang in [Lang::Ja, Lang::En] {
        check(|name| templates::verify(lang, to, name, link), display_name);
        check(
            |name| templates::reset(lang, to, name, link, 30),
            display_name,
        );
        check(
            |name| templates::account_unfrozen(lang, to, name, Some(link)),
            display_name,
        );
    }
});
