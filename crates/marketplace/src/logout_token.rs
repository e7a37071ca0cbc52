//! The logout token (OpenID Connect Back-Channel Logout 1.0 §2.4) and its validation
//! (§2.6): explicitly typed, signed by the OP, for this client, fresh, about a back-channel
//! logout event, naming an OP session or subject, and never an ID token in disguise.
//! Plain values in, a `LogoutToken` out; the signature is `jws`'s, the HTTP the route's.

use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use crate::jws::{Compact, JwsError};
use crate::store::logouts::Ends;

/// The media type of logout tokens (§2.4, RFC 8725 §3.11).
pub const TYP: &str = "logout+jwt";

/// The member of `events` that makes a JWT a logout token (§2.4).
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a logout token is held to.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    /// The OP's issuer identifier, compared exactly.
    pub issuer: &'a str,
    /// This marketplace's client_id, which `aud` must contain.
    pub client_id: &'a str,
    /// A token issued longer ago than this is refused.
    pub max_age: Duration,
    /// How far the OP's clock may be ahead of ours (`iat`) or behind it (`exp`).
    pub skew: Duration,
}

/// A logout token that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutToken {
    pub jti: String,
    pub ends: Ends,
    /// Until then a replay would pass every other check, so the `jti` must be kept
    /// that long: the earlier of `exp` + skew and `iat` + max age, plus one more skew
    /// for replicas whose clocks lag this one's.
    pub remember_until: OffsetDateTime,
}

/// Why a logout token is refused; the text is the `error_description` the OP gets.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogoutTokenError {
    #[error("logout_token: {0}")]
    Jws(#[from] JwsError),
    #[error("logout_token's typ must be {TYP} (explicit typing, §2.4)")]
    Type,
    #[error("logout_token's iss is not this marketplace's OP")]
    Issuer,
    #[error("logout_token's aud does not name this client")]
    Audience,
    #[error("logout_token's {0} is missing or not a number of seconds since the epoch")]
    Time(&'static str),
    #[error("logout_token was issued in the future (iat)")]
    Future,
    #[error("logout_token was issued too long ago (iat more than {0} seconds ago)")]
    TooOld(i64),
    #[error("logout_token has expired (exp)")]
    Expired,
    #[error("logout_token's events must hold {EVENT} as a JSON object")]
    Event,
    #[error("logout_token's {0} must be a non-empty string")]
    NotAString(&'static str),
    #[error("logout_token names neither sub nor sid")]
    NoSubject,
    #[error("logout_token carries a nonce, which a logout token never does (§2.4)")]
    Nonce,
    #[error("logout_token has no jti")]
    NoJti,
}

/// Checks the JOSE header before any key is looked up: an accepted algorithm, the
/// logout token's own `typ` (so that no other JWT of the OP, an ID token above all,
/// can be played as a logout token), and a `kid`. Returns the `kid`.
pub fn check_header<'t>(jws: &'t Compact<'_>) -> Result<&'t str, LogoutTokenError> {
    jws.alg()?;
    // Media types are case-insensitive, and `application/` may be left out
    // (RFC 7515 §4.1.9).
    let typ = jws.header_str("typ").unwrap_or_default();
    let typ = typ
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("application/"))
        .map_or(typ, |_| &typ[12..]);
    if !typ.eq_ignore_ascii_case(TYP) {
        return Err(LogoutTokenError::Type);
    }
    Ok(jws.key_id()?)
}

/// Validates the verified claims of a logout token at `now` (§2.6 steps 3–5; the
/// replay check of step 6 is the store's).
pub fn validate(
    claims: &Map<String, Value>,
    rules: &Rules<'_>,
    now: OffsetDateTime,
) -> Result<LogoutToken, LogoutTokenError> {
    use LogoutTokenError as E;
    // Step 3: as for ID tokens.
    if claims.get("iss").and_then(Value::as_str) != Some(rules.issuer) {
        return Err(E::Issuer);
    }
    let ours = |a: &Value| a.as_str() == Some(rules.client_id);
    let for_us = match claims.get("aud") {
        Some(Value::Array(auds)) => auds.iter().any(ours),
        Some(aud) => ours(aud),
        None => false,
    };
    if !for_us {
        return Err(E::Audience);
    }
    let iat = numeric_date(claims, "iat")?;
    let exp = numeric_date(claims, "exp")?;
    if iat > now + rules.skew {
        return Err(E::Future);
    }
    if iat < now - rules.max_age {
        return Err(E::TooOld(rules.max_age.whole_seconds()));
    }
    // Saturating: an `exp` at the end of representable time (9999) is a long-lived
    // token, not an overflow.
    let valid_until = exp.saturating_add(rules.skew);
    if now >= valid_until {
        return Err(E::Expired);
    }
    // Step 4: a logout event, its value an object (§2.4).
    let event = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|events| events.get(EVENT));
    if !event.is_some_and(Value::is_object) {
        return Err(E::Event);
    }
    // Step 5: `sub`, `sid` or both; never a nonce (it would make an ID token pass).
    let sub = string_claim(claims, "sub")?;
    let sid = string_claim(claims, "sid")?;
    if claims.contains_key("nonce") {
        return Err(E::Nonce);
    }
    let ends = match (sid, sub) {
        (Some(sid), sub) => Ends::OpSession { sid, sub },
        (None, Some(sub)) => Ends::Member { sub },
        (None, None) => return Err(E::NoSubject),
    };
    let jti = string_claim(claims, "jti")?.ok_or(E::NoJti)?;
    Ok(LogoutToken {
        jti,
        ends,
        remember_until: valid_until.min(iat + rules.max_age) + rules.skew,
    })
}

/// A NumericDate claim (RFC 7519 §2): seconds since the epoch, perhaps fractional.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<OffsetDateTime, LogoutTokenError> {
    let value = claims.get(name);
    let secs = value
        .and_then(Value::as_i64)
        .or_else(|| {
            // Whole seconds are enough here; a fraction is rounded down.
            let f = value?.as_f64()?.floor();
            (f.is_finite() && f.abs() < 1e15).then_some(f as i64)
        })
        .ok_or(LogoutTokenError::Time(name))?;
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| LogoutTokenError::Time(name))
}

/// An optional string claim; present means a non-empty string.
fn string_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, LogoutTokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(LogoutTokenError::NotAString(name)),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;

    const OP: &str = "https://op.example";
    const US: &str = "marketplace";

    fn rules() -> Rules<'static> {
        Rules {
            issuer: OP,
            client_id: US,
            max_age: Duration::minutes(5),
            skew: Duration::seconds(60),
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn claims() -> Map<String, Value> {
        let t = now().unix_timestamp();
        let Value::Object(m) = json!({
            "iss": OP,
            "aud": US,
            "iat": t,
            "exp": t + 120,
            "jti": "j1",
            "events": { EVENT: {} },
            "sub": "s1",
            "sid": "op-session",
        }) else {
            unreachable!()
        };
        m
    }

    fn with(changes: &[(&str, Option<Value>)]) -> Map<String, Value> {
        let mut c = claims();
        for (k, v) in changes {
            match v {
                Some(v) => c.insert((*k).to_owned(), v.clone()),
                None => c.remove(*k),
            };
        }
        c
    }

    #[test]
    fn a_token_naming_an_op_session_ends_that_session_of_its_member() {
        let token = validate(&claims(), &rules(), now()).unwrap();
        assert_eq!(
            token.ends,
            Ends::OpSession {
                sid: "op-session".into(),
                sub: Some("s1".into())
            }
        );
        assert_eq!(token.jti, "j1");
        // exp + skew (3 min) comes before iat + max age (5 min); then one skew more.
        assert_eq!(token.remember_until, now() + Duration::minutes(4));
        let sub_only = validate(&with(&[("sid", None)]), &rules(), now()).unwrap();
        assert_eq!(sub_only.ends, Ends::Member { sub: "s1".into() });
        let sid_only = validate(&with(&[("sub", None)]), &rules(), now()).unwrap();
        assert_eq!(
            sid_only.ends,
            Ends::OpSession {
                sid: "op-session".into(),
                sub: None
            }
        );
        let among = with(&[("aud", Some(json!(["other", US])))]);
        assert!(validate(&among, &rules(), now()).is_ok());
        let long_lived = with(&[("exp", Some(json!(now().unix_timestamp() + 86_400)))]);
        assert_eq!(
            validate(&long_lived, &rules(), now())
                .unwrap()
                .remember_until,
            now() + Duration::minutes(6),
            "kept no longer than the token's iat keeps it acceptable"
        );
    }

    /// Found by the `logout_token` fuzz target: `exp + skew` past the last representable
    /// time (9999-12-31) panicked in the handler instead of answering.
    #[test]
    fn an_exp_at_the_end_of_time_is_a_long_lived_token_not_a_panic() {
        for exp in [json!(253_402_300_799_i64), json!(253_402_300_799.9)] {
            let token = validate(&with(&[("exp", Some(exp.clone()))]), &rules(), now())
                .unwrap_or_else(|e| panic!("{exp}: {e}"));
            assert_eq!(
                token.remember_until,
                now() + Duration::minutes(6),
                "{exp}: kept as long as its iat keeps it acceptable"
            );
        }
    }

    #[test]
    fn each_broken_rule_is_refused_with_its_own_reason() {
        use LogoutTokenError as E;
        let t = now().unix_timestamp();
        let cases: Vec<(Map<String, Value>, E)> = vec![
            (
                with(&[("iss", Some(json!("https://op.example/")))]),
                E::Issuer,
            ),
            (with(&[("iss", None)]), E::Issuer),
            (with(&[("aud", Some(json!("other")))]), E::Audience),
            (with(&[("aud", Some(json!(["other"])))]), E::Audience),
            (with(&[("aud", None)]), E::Audience),
            (with(&[("iat", None)]), E::Time("iat")),
            (with(&[("iat", Some(json!("1800000000")))]), E::Time("iat")),
            (with(&[("exp", None)]), E::Time("exp")),
            (with(&[("iat", Some(json!(t + 61)))]), E::Future),
            (with(&[("iat", Some(json!(t - 301)))]), E::TooOld(300)),
            (with(&[("exp", Some(json!(t - 60)))]), E::Expired),
            (with(&[("events", None)]), E::Event),
            (with(&[("events", Some(json!({})))]), E::Event),
            (with(&[("events", Some(json!({ EVENT: "yes" })))]), E::Event),
            (with(&[("events", Some(json!([EVENT])))]), E::Event),
            (with(&[("sub", None), ("sid", None)]), E::NoSubject),
            (with(&[("sub", Some(json!("")))]), E::NotAString("sub")),
            (with(&[("sid", Some(json!(7)))]), E::NotAString("sid")),
            (with(&[("nonce", Some(json!("n")))]), E::Nonce),
            (with(&[("jti", None)]), E::NoJti),
            (with(&[("jti", Some(json!(1)))]), E::NotAString("jti")),
        ];
        for (c, expected) in cases {
            assert_eq!(validate(&c, &rules(), now()), Err(expected), "{c:?}");
        }
        // Within the skew either way, and fractional times, pass.
        let lenient = with(&[
            ("iat", Some(json!(t as f64 + 59.5))),
            ("exp", Some(json!(t - 59))),
        ]);
        assert!(validate(&lenient, &rules(), now()).is_ok());
    }

    #[test]
    fn only_explicitly_typed_logout_tokens_pass_the_header_check() {
        let token = |typ: Option<&str>| {
            let mut header = json!({ "alg": "RS256", "kid": "k1" });
            if let Some(typ) = typ {
                header["typ"] = json!(typ);
            }
            let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
            format!("{}.{}.", b64(&header), b64(&json!({})))
        };
        for typ in ["logout+jwt", "application/logout+jwt", "Logout+JWT"] {
            let t = token(Some(typ));
            assert_eq!(
                check_header(&Compact::parse(&t).unwrap()),
                Ok("k1"),
                "{typ}"
            );
        }
        for typ in [None, Some("JWT"), Some("at+jwt"), Some("application/jwt")] {
            let t = token(typ);
            assert_eq!(
                check_header(&Compact::parse(&t).unwrap()),
                Err(LogoutTokenError::Type),
                "{typ:?}"
            );
        }
    }
}
