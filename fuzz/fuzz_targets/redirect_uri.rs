//! Redirect URI registration rules and matching: whatever is accepted is absolute, https
//! (or http on loopback), without a fragment, control characters or spaces; a client
//! matches a candidate only by exact string equality.
#![no_main]

use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use tobira_auth::domain::{Client, GrantType, RedirectUri};
use tobira_auth::keys::Alg;

fn client(registered: RedirectUri) -> Client {
    Client {
        client_id: "rp".to_owned(),
        name: "RP".to_owned(),
        secret_hash: None,
        redirect_uris: vec![registered],
        post_logout_redirect_uris: Vec::new(),
        grant_types: vec![GrantType::AuthorizationCode],
        public: true,
        first_party: false,
        id_token_alg: Alg::RS256,
        backchannel_logout_uri: None,
        backchannel_logout_session_required: false,
        created_at: OffsetDateTime::UNIX_EPOCH,
        scopes: Vec::new(),
        previous_secret: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The registered URI, then what a request presents.
    let (registered, candidate) = text.split_once('\n').unwrap_or((text, text));
    let Ok(uri) = RedirectUri::parse(registered) else {
        return;
    };
    let s = uri.as_str();
    assert!(s.len() <= 2000, "{s}");
    assert!(!s.contains('#'), "{s}");
    assert!(
        !s.chars().any(|c| c.is_control() || c.is_whitespace()),
        "{s:?}"
    );
    // The scheme in any case (RFC 3986 §3.1), then an authority.
    let lower = s.to_ascii_lowercase();
    assert!(
        lower.starts_with("https://") || lower.starts_with("http://"),
        "{s}"
    );
    // Parsing again gives the same URI (what is stored is what is compared).
    assert_eq!(
        RedirectUri::parse(s).map(|u| u.as_str().to_owned()).ok(),
        Some(s.to_owned())
    );
    let client = client(uri.clone());
    assert_eq!(
        client.redirect_uri(candidate).is_some(),
        candidate == s,
        "{candidate:?} against {s:?}"
    );
});
