//! One parser for the parameters of every protocol endpoint (`/authorize`, `/token`,
//! `/revoke`, `/introspect`, `/end-session`, `/userinfo`), from a query string or an
//! `application/x-www-form-urlencoded` body.
//!
//! These endpoints answer anyone, before any client is authenticated, so the parser
//! bounds what a request can cost: a set finds repeated parameters (RFC 6749 §3.1, §3.2:
//! a parameter must not appear twice) in linear time, and the count and sizes are capped.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;

use super::error::{ErrorCode, OAuthError};

/// At most this many parameters per request.
pub const MAX_PARAMS: usize = 64;
/// At most this many bytes per value (decoded)…
pub const MAX_VALUE_BYTES: usize = 2 * 1024;
/// …except an `id_token_hint`, which carries a whole signed ID token.
pub const MAX_HINT_BYTES: usize = 8 * 1024;
/// At most this many bytes of encoded parameters per request.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("parameter {0} is repeated")]
    Repeated(String),
    #[error("too many parameters (at most {MAX_PARAMS})")]
    TooMany,
    #[error("parameter {0} is too long")]
    TooLong(String),
    #[error("the request is too large (at most {MAX_REQUEST_BYTES} bytes of parameters)")]
    TooLarge,
}

impl ParamError {
    /// The parameter the problem is about, if one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Repeated(n) | Self::TooLong(n) => Some(n),
            Self::TooMany | Self::TooLarge => None,
        }
    }
}

/// Parameters by name; a name appears once.
#[derive(Clone, Debug, Default)]
pub struct Params {
    map: HashMap<String, String>,
}

impl Params {
    /// Parses strictly: any problem is an error.
    pub fn parse(encoded: &[u8]) -> Result<Self, ParamError> {
        match Self::parse_lenient(encoded) {
            (params, None) => Ok(params),
            (_, Some(e)) => Err(e),
        }
    }

    /// Parses what it can and reports the first problem beside it. `/authorize` needs
    /// this: whether an error may be sent to the client depends on `client_id` and
    /// `redirect_uri`, which must be read even from a request that is otherwise wrong.
    /// A repeated or oversized parameter is left out of the result.
    pub fn parse_lenient(encoded: &[u8]) -> (Self, Option<ParamError>) {
        if encoded.len() > MAX_REQUEST_BYTES {
            return (Self::default(), Some(ParamError::TooLarge));
        }
        let mut map = HashMap::new();
        let mut problem = None;
        let mut dropped: Vec<String> = Vec::new();
        for (count, (k, v)) in url::form_urlencoded::parse(encoded).enumerate() {
            if count >= MAX_PARAMS {
                problem.get_or_insert(ParamError::TooMany);
                break;
            }
            let limit = if k == "id_token_hint" {
                MAX_HINT_BYTES
            } else {
                MAX_VALUE_BYTES
            };
            if v.len() > limit || k.len() > MAX_VALUE_BYTES {
                problem.get_or_insert_with(|| ParamError::TooLong(truncated(&k)));
                dropped.push(k.into_owned());
                continue;
            }
            match map.entry(k.into_owned()) {
                Entry::Occupied(e) => {
                    problem.get_or_insert_with(|| ParamError::Repeated(truncated(e.key())));
                    dropped.push(e.key().clone());
                }
                Entry::Vacant(e) => {
                    e.insert(v.into_owned());
                }
            }
        }
        for k in dropped {
            map.remove(&k);
        }
        (Self { map }, problem)
    }

    /// A value, unless absent or empty (RFC 6749 §3.1: empty means omitted).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A value as sent, empty included (`state` is echoed exactly).
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The parameters of a form-encoded request body (`/token`, `/revoke`, `/introspect`),
/// or an `invalid_request` answered as JSON.
pub struct FormParams(pub Params);

impl<S: Send + Sync> FromRequest<S> for FormParams {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| OAuthError::new(ErrorCode::InvalidRequest, "the body is too large"))?;
        Params::parse(&body)
            .map(Self)
            .map_err(|e| OAuthError::new(ErrorCode::InvalidRequest, e.to_string()))
    }
}

/// Parameter names are echoed in error descriptions: keep them short.
fn truncated(name: &str) -> String {
    name.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_missing_empty_and_present_values_are_told_apart() {
        let p = Params::parse(b"a=1&b=&c=x%20y").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.raw("b"), Some(""));
        assert_eq!(p.get("c"), Some("x y"));
        assert_eq!(p.get("d"), None);
        assert_eq!(
            Params::parse(b"a=1&b=2&a=3").unwrap_err(),
            ParamError::Repeated("a".into())
        );
        let (lenient, problem) = Params::parse_lenient(b"client_id=x&scope=a&scope=b");
        assert_eq!(problem, Some(ParamError::Repeated("scope".into())));
        assert_eq!(lenient.get("client_id"), Some("x"));
        assert_eq!(lenient.get("scope"), None, "a repeated value is not used");
    }

    #[test]
    fn counts_and_sizes_are_capped() {
        let many: String = (0..65).map(|i| format!("k{i}=v&")).collect();
        assert_eq!(
            Params::parse(many.as_bytes()).unwrap_err(),
            ParamError::TooMany
        );
        let ok: String = (0..64).map(|i| format!("k{i}=v&")).collect();
        assert!(Params::parse(ok.as_bytes()).is_ok());

        let long = format!("state={}", "x".repeat(MAX_VALUE_BYTES + 1));
        assert_eq!(
            Params::parse(long.as_bytes()).unwrap_err(),
            ParamError::TooLong("state".into())
        );
        let hint = format!("id_token_hint={}", "x".repeat(MAX_HINT_BYTES));
        assert!(Params::parse(hint.as_bytes()).is_ok());
        let hint = format!("id_token_hint={}", "x".repeat(MAX_HINT_BYTES + 1));
        assert!(Params::parse(hint.as_bytes()).is_err());

        let big = format!("a={}", "x".repeat(MAX_REQUEST_BYTES));
        assert_eq!(
            Params::parse(big.as_bytes()).unwrap_err(),
            ParamError::TooLarge
        );
    }

    #[test]
    fn each_cap_is_the_documented_size_and_itself_allowed() {
        // 2 KiB per value and per name, 8 KiB for an id_token_hint, 16 KiB in all: the
        // limit passes, one byte more is refused (in literal numbers: a changed constant
        // must fail here, not move the test along with it).
        let sized = |name: &str, len: usize| format!("{name}={}", "x".repeat(len));
        assert!(Params::parse(sized("state", 2048).as_bytes()).is_ok());
        assert_eq!(
            Params::parse(sized("state", 2049).as_bytes()).unwrap_err(),
            ParamError::TooLong("state".into())
        );
        assert!(Params::parse(sized("id_token_hint", 8192).as_bytes()).is_ok());
        assert!(Params::parse(sized("id_token_hint", 8193).as_bytes()).is_err());
        assert!(Params::parse(sized(&"n".repeat(2048), 1).as_bytes()).is_ok());
        let (lenient, problem) =
            Params::parse_lenient(format!("{}=1&a=2", "n".repeat(2049)).as_bytes());
        assert_eq!(problem, Some(ParamError::TooLong("n".repeat(40))));
        assert_eq!(lenient.iter().collect::<Vec<_>>(), [("a", "2")]);

        // Values of at most 2 KiB, as many as make the request `len` bytes long.
        let request_of = |len: usize| {
            let mut s = String::new();
            for i in 0.. {
                if !s.is_empty() {
                    s.push('&');
                }
                let head = format!("p{i}=");
                let room = (len - s.len() - head.len()).min(2048);
                s.push_str(&head);
                s.push_str(&"x".repeat(room));
                if s.len() == len {
                    return s;
                }
            }
            unreachable!()
        };
        assert!(Params::parse(request_of(16 * 1024).as_bytes()).is_ok());
        assert_eq!(
            Params::parse(request_of(16 * 1024 + 1).as_bytes()).unwrap_err(),
            ParamError::TooLarge
        );
    }

    #[test]
    fn an_error_names_its_parameter_when_it_has_one() {
        assert_eq!(
            ParamError::Repeated("client_id".into()).name(),
            Some("client_id")
        );
        assert_eq!(ParamError::TooLong("state".into()).name(), Some("state"));
        assert_eq!(ParamError::TooMany.name(), None);
        assert_eq!(ParamError::TooLarge.name(), None);
    }

    #[test]
    fn thousands_of_distinct_keys_cost_one_pass() {
        // 7,000 distinct keys (45 KB) once cost ~45 ms in a quadratic duplicate check;
        // now the request is refused by size before any key is compared.
        let flood: String = (0..7000).map(|i| format!("k{i}=&")).collect();
        assert_eq!(
            Params::parse(flood.as_bytes()).unwrap_err(),
            ParamError::TooLarge
        );
    }
}
