//! Email addresses as members type them: whatever is accepted has the RFC 5321 lengths,
//! one `@`, and normalises to a fixed point (the store's unique key must not depend on
//! how often an address went through the parser).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tobira_auth::domain::Email;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(email) = Email::parse(text) else {
        return;
    };
    let normalized = email.normalized();
    assert!(normalized.len() <= 254, "{normalized}");
    let (local, domain) = normalized.rsplit_once('@').expect("an @");
    assert!(!local.is_empty() && local.len() <= 64, "{normalized}");
    assert!(domain.contains('.'), "{normalized}");
    assert!(
        !normalized.chars().any(char::is_whitespace),
        "{normalized:?}"
    );
    let again = Email::parse(normalized).expect("a normalised address parses");
    assert_eq!(again.normalized(), normalized);
    let shown = Email::parse(email.display()).expect("the address as shown parses");
    assert_eq!(shown.normalized(), normalized);
});
