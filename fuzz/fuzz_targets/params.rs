//! The one parameter parser of `/authorize`, `/token`, `/revoke`, `/introspect`,
//! `/end-session` and `/userinfo`: any bytes, strict and lenient agree, and the caps hold.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tobira_auth::oidc::params::{
    MAX_HINT_BYTES, MAX_PARAMS, MAX_REQUEST_BYTES, MAX_VALUE_BYTES, Params,
};

fn sorted(params: &Params) -> BTreeMap<&str, &str> {
    params.iter().collect()
}

fuzz_target!(|data: &[u8]| {
    let (lenient, problem) = Params::parse_lenient(data);
    match Params::parse(data) {
        Ok(strict) => {
            assert!(problem.is_none());
            assert_eq!(sorted(&strict), sorted(&lenient));
            assert!(data.len() <= MAX_REQUEST_BYTES);
        }
        Err(e) => assert_eq!(Some(e), problem),
    }
    assert!(lenient.iter().count() <= MAX_PARAMS);
    for (name, value) in lenient.iter() {
        let limit = if name == "id_token_hint" {
            MAX_HINT_BYTES
        } else {
            MAX_VALUE_BYTES
        };
        assert!(value.len() <= limit, "{name} kept at {} bytes", value.len());
        assert!(name.len() <= MAX_VALUE_BYTES);
        // `get` is `raw` without the empty value (RFC 6749 §3.1).
        assert_eq!(
            lenient.get(name),
            lenient.raw(name).filter(|v| !v.is_empty())
        );
    }
});
