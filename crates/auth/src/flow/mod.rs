//! The parked authorization request: what `/authorize` leaves in the ephemeral store while
//! the member signs in or decides on consent, and the rules for picking it up again.
//!
//! A park belongs to the browser that started it (the hash of that browser's binding
//! cookie is stored in it) and records which session acted on it. Without the binding,
//! anyone holding a park id could resume it in their own browser: an attacker who
//! allowed his own client on the consent page could hand the `continue` link to a victim
//! and receive a code for the victim's account (the consent-bypass of issue #8). The park
//! is taken atomically when it yields a code or an error redirect, so it answers once.

use std::net::IpAddr;

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::crypto::{constant_time_eq, random_token, sha256_hex};
use crate::oidc::authorize::AuthRequest;
use crate::state::AppState;
use crate::store::EphemeralError;
use crate::web::client_ip::ip_bucket;
use crate::web::cookies::{BIND, CookiePolicy};

/// A sign-in started from an authorization request may take this long.
pub const PARK_LIFETIME: Duration = Duration::minutes(30);

/// Where a parked request stands. Each later stage names the session that reached it, so
/// that a stage reached by one session never counts for another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// Waiting for the member to sign in or to decide.
    Parked,
    /// The member signed in for this request, creating this session.
    SignedIn { session: Uuid },
    /// This session (signed in as this account) allowed the request on the consent page.
    Consented { session: Uuid, user: Uuid },
}

/// An authorization request waiting for the member.
#[derive(Debug, Serialize, Deserialize)]
pub struct Park {
    pub request: AuthRequest,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// SHA-256 of the binding cookie of the browser that started the request.
    binding: String,
    pub stage: Stage,
}

impl Park {
    /// Whether `session` signed in for this very request (which satisfies `prompt=login`
    /// and `max_age`, even if another tab signed in meanwhile).
    pub fn signed_in_by(&self, session: Uuid) -> bool {
        match self.stage {
            Stage::Parked => false,
            Stage::SignedIn { session: s } | Stage::Consented { session: s, .. } => s == session,
        }
    }

    /// Whether `session`, signed in as `user`, allowed this request.
    pub fn consented_by(&self, session: Uuid, user: Uuid) -> bool {
        matches!(self.stage, Stage::Consented { session: s, user: u } if s == session && u == user)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// Unknown or expired id (or already answered).
    #[error("the parked request is unknown or expired")]
    Expired,
    /// The id is real but this browser did not start the request.
    #[error("the parked request belongs to another browser")]
    OtherBrowser,
    #[error("the request is too large to park")]
    TooLarge,
    /// This address parked too many requests in the current minute.
    #[error("too many parked requests from one address")]
    TooMany { retry_after: i64 },
    #[error(transparent)]
    Store(#[from] EphemeralError),
    #[error("a parked request could not be encoded: {0}")]
    Encoding(#[from] serde_json::Error),
}

/// The browser's binding cookie: created when absent and never overwritten, so several
/// tabs of one browser can each have a parked request.
pub struct Binding {
    value: String,
    /// `Set-Cookie` to send when the browser had none.
    pub set_cookie: Option<String>,
}

impl Binding {
    pub fn of(cookies: CookiePolicy, headers: &HeaderMap) -> Self {
        match cookies.get(headers, BIND).filter(|v| v.len() == 43) {
            Some(value) => Self {
                value,
                set_cookie: None,
            },
            None => {
                let value = random_token(&mut rand::rng(), 32);
                // Ends with the browser: a park lives 30 minutes anyway.
                let set_cookie = Some(cookies.set(BIND, &value, None));
                Self { value, set_cookie }
            }
        }
    }
}

impl Binding {
    /// The cookie's value, for a record that keeps its own hash of it (a passkey
    /// ceremony, `authn::passkey::keep`).
    pub fn cookie_value(&self) -> &str {
        &self.value
    }

    /// What records bound to this browser keep: the hash, never the cookie.
    pub fn hash(&self) -> String {
        sha256_hex(&self.value)
    }
}

fn key(id: &str) -> String {
    format!("login_tx:{id}")
}

/// Parked values are bounded: with every protocol value capped by the parameter parser,
/// a park is a few KiB; this is the backstop.
const MAX_PARK_BYTES: usize = 32 * 1024;

/// Parks `request` for the browser of `binding`; returns the park id.
pub async fn park(
    state: &AppState,
    binding: &Binding,
    request: AuthRequest,
) -> Result<String, FlowError> {
    let now = state.clock.now();
    let id = random_token(&mut rand::rng(), 24);
    let park = Park {
        request,
        created_at: now,
        binding: sha256_hex(&binding.value),
        stage: Stage::Parked,
    };
    let bytes = serde_json::to_vec(&park)?;
    if bytes.len() > MAX_PARK_BYTES {
        return Err(FlowError::TooLarge);
    }
    state
        .ephemeral
        .put_bounded(&key(&id), &bytes, now + PARK_LIFETIME)
        .await?;
    Ok(id)
}

/// Parking is rate-limited per client address (IPv6 by /64): anyone can park a request
/// without signing in, and each park holds memory for 30 minutes.
pub async fn check_park_rate(state: &AppState, ip: IpAddr) -> Result<(), FlowError> {
    let limit = state.config.limits.park_per_ip_per_minute;
    if limit == 0 {
        return Ok(());
    }
    let counter = state
        .ephemeral
        .incr(
            &format!("park_rate:{}", ip_bucket(ip)),
            Duration::minutes(1),
        )
        .await?;
    if counter.count > u64::from(limit) {
        let retry_after = (counter.expires_at - state.clock.now()).whole_seconds();
        return Err(FlowError::TooMany { retry_after });
    }
    Ok(())
}

fn decode(
    bytes: Option<Vec<u8>>,
    headers: &HeaderMap,
    cookies: CookiePolicy,
) -> Result<Park, FlowError> {
    let park: Park = bytes
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(FlowError::Expired)?;
    if !bound_to(&park.binding, headers, cookies) {
        return Err(FlowError::OtherBrowser);
    }
    Ok(park)
}

/// The parked request `id`, if this browser started it.
pub async fn resume(state: &AppState, headers: &HeaderMap, id: &str) -> Result<Park, FlowError> {
    if id.is_empty() || id.len() > 64 {
        return Err(FlowError::Expired);
    }
    let bytes = state.ephemeral.get(&key(id)).await?;
    decode(bytes, headers, state.cookies)
}

/// Moves the park to `stage` (keeping its original expiry).
pub async fn advance(
    state: &AppState,
    id: &str,
    park: &mut Park,
    stage: Stage,
) -> Result<(), FlowError> {
    park.stage = stage;
    let bytes = serde_json::to_vec(&*park)?;
    state
        .ephemeral
        .put_bounded(&key(id), &bytes, park.created_at + PARK_LIFETIME)
        .await?;
    Ok(())
}

/// A sign-in with no client involved: the member opened a console page (`/account…`)
/// without a session, signs in, and comes back to it. Bound to the browser like a park.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConsolePark {
    /// A path under `/account` on this origin (checked when parked).
    pub return_to: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    binding: String,
    /// A re-authentication (`account::reauth`): the signed-in member's address, which the
    /// page fills in, and a word on why the password is asked for again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reauth: Option<String>,
}

/// What a sign-in page was opened for.
pub enum SignInFor {
    Authorize(Box<Park>),
    Console(ConsolePark),
}

fn console_key(id: &str) -> String {
    format!("console_tx:{id}")
}

/// The paths a console sign-in may return to: our own console, nothing else (an open
/// redirect otherwise).
pub fn console_path(path: &str) -> bool {
    (path == "/account" || path.starts_with("/account/") || path.starts_with("/account?"))
        && path.len() <= 512
        && !path.contains("//")
        && !path.contains('\\')
        && path.chars().all(|c| c.is_ascii_graphic())
}

/// Parks a console sign-in that returns to `return_to` (refused unless `console_path`);
/// `reauth` names the signed-in member's address when it asks them to sign in again.
pub async fn park_console(
    state: &AppState,
    binding: &Binding,
    return_to: &str,
    reauth: Option<String>,
) -> Result<String, FlowError> {
    if !console_path(return_to) {
        return Err(FlowError::TooLarge);
    }
    let now = state.clock.now();
    let id = random_token(&mut rand::rng(), 24);
    let park = ConsolePark {
        return_to: return_to.to_owned(),
        created_at: now,
        binding: binding.hash(),
        reauth,
    };
    state
        .ephemeral
        .put_bounded(
            &console_key(&id),
            &serde_json::to_vec(&park)?,
            now + PARK_LIFETIME,
        )
        .await?;
    Ok(id)
}

fn bound_to(binding: &str, headers: &HeaderMap, cookies: CookiePolicy) -> bool {
    let presented = cookies
        .get(headers, BIND)
        .map(|v| sha256_hex(&v))
        .unwrap_or_default();
    constant_time_eq(presented.as_bytes(), binding.as_bytes())
}

/// The sign-in `id` stands for, if this browser started it: an authorization request
/// or a console visit.
pub async fn resume_sign_in(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<SignInFor, FlowError> {
    match resume(state, headers, id).await {
        Err(FlowError::Expired) => {}
        other => return other.map(|park| SignInFor::Authorize(Box::new(park))),
    }
    let console: ConsolePark = state
        .ephemeral
        .get(&console_key(id))
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(FlowError::Expired)?;
    if !bound_to(&console.binding, headers, state.cookies) {
        return Err(FlowError::OtherBrowser);
    }
    Ok(SignInFor::Console(console))
}

/// Ends a console sign-in once the member signed in: where to go back to.
pub async fn finish_console(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<String, FlowError> {
    let console: ConsolePark = state
        .ephemeral
        .take(&console_key(id))
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(FlowError::Expired)?;
    if !bound_to(&console.binding, headers, state.cookies) {
        return Err(FlowError::OtherBrowser);
    }
    Ok(console.return_to)
}

/// Takes the park for good, when it yields a code or an error redirect. Of two concurrent
/// takes one wins; the other gets `Expired`. The binding is checked again on the taken
/// value (a stranger's take would have been refused before reaching here; this keeps the
/// rule in one place).
pub async fn finish(state: &AppState, headers: &HeaderMap, id: &str) -> Result<Park, FlowError> {
    let bytes = state.ephemeral.take(&key(id)).await?;
    decode(bytes, headers, state.cookies)
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::{Binding, console_path};
    use crate::crypto::sha256_hex;
    use crate::web::cookies::{BIND, CookiePolicy};

    #[test]
    fn a_binding_is_the_browsers_cookie_and_records_keep_only_its_hash() {
        let policy = CookiePolicy { secure: true };
        let value = "b".repeat(43);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{}={value}", policy.name(BIND))).unwrap(),
        );
        let kept = Binding::of(policy, &headers);
        assert_eq!(kept.cookie_value(), value);
        assert_eq!(kept.hash(), sha256_hex(&value));
        assert!(kept.set_cookie.is_none(), "the browser has it already");
        // None yet, or not one we could have set: a new one, set on the answer.
        for cookie in [
            String::new(),
            format!("{}={}", policy.name(BIND), "b".repeat(42)),
        ] {
            let mut headers = HeaderMap::new();
            if !cookie.is_empty() {
                headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
            }
            let new = Binding::of(policy, &headers);
            assert_eq!(new.cookie_value().len(), 43);
            assert_ne!(new.cookie_value(), value);
            let set = new.set_cookie.as_deref().expect("set on the answer");
            assert!(
                set.starts_with(&format!("{}={}", policy.name(BIND), new.cookie_value())),
                "{set}"
            );
        }
    }

    #[test]
    fn a_console_sign_in_returns_only_to_the_console_on_this_origin() {
        for ok in [
            "/account",
            "/account?x=1",
            "/account/sessions",
            "/account/history?before=a",
        ] {
            assert!(console_path(ok), "{ok}");
        }
        for bad in [
            "",
            "/",
            "/accounts",
            "/account-evil",
            "//evil.example/account",
            "/account//evil.example",
            "/account/\\evil",
            "https://evil.example/account",
            "/account/\u{3042}",
            "/account/ x",
            "/account\r\nSet-Cookie: x",
        ] {
            assert!(!console_path(bad), "{bad:?}");
        }
        // 512 characters at most, to the character.
        let longest = format!("/account/{}", "a".repeat(512 - "/account/".len()));
        assert!(console_path(&longest));
        assert!(!console_path(&format!("{longest}a")));
    }
}
