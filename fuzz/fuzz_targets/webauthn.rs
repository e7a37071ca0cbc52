//! Passkey answers as a browser (or an attacker) posts them: the JSON of the form field,
//! read by Tobira's `parse_answer`, then checked by webauthn-rs against a real ceremony
//! exactly as the console (registration) and the sign-in pages (a second step, a
//! usernameless sign-in) do. Nothing panics, and an assertion whose signed bytes
//! (`clientDataJSON`, `authenticatorData`) differ from what the passkey signed never
//! verifies.
//!
//! The first byte chooses what the rest is:
//! - 0: a registration answer's whole JSON text;
//! - 1: a sign-in answer's whole JSON text (second step, then usernameless);
//! - 2, 3: the raw bytes of a genuine registration answer's `clientDataJSON`,
//!   `attestationObject` (the CBOR webauthn-rs decodes);
//! - 4 to 7: the raw bytes of a genuine sign-in answer's `clientDataJSON`,
//!   `authenticatorData`, `signature`, `userHandle`.
//!
//! The genuine answers come from a software passkey answering ceremonies started once,
//! so the fuzzer's bytes meet the checks behind the challenge and the origin.
#![no_main]

use std::sync::{Arc, LazyLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tobira_auth::authn::passkey::{parse_answer, relying_party};
use url::Url;
use uuid::Uuid;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::RequestChallengeResponse;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::Webauthn;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential,
};

const ISSUER: &str = "https://id.example.jp";

struct Fixture {
    rp: Arc<Webauthn>,
    registration: PasskeyRegistration,
    /// The passkey's answer to `registration`, as the browser posts it.
    registered: Value,
    passkey: Passkey,
    second_step: PasskeyAuthentication,
    asserted: Value,
    sign_in: DiscoverableAuthentication,
    discovered: Value,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let rp = relying_party(ISSUER).expect("a relying party for a domain issuer");
    let origin = Url::parse(ISSUER).expect("origin");
    let mut key = SoftPasskey::new(true);
    let handle = Uuid::new_v4();

    let (creation, registration) = rp
        .start_passkey_registration(handle, "member@example.jp", "member", None)
        .expect("registration options");
    let mut creation = serde_json::to_value(&creation).expect("JSON");
    // The soft passkey refuses a required resident key (the flag is not signed).
    creation["publicKey"]["authenticatorSelection"]["requireResidentKey"] = Value::Bool(false);
    let answer = key
        .do_registration(
            origin.clone(),
            serde_json::from_value(creation).expect("options"),
        )
        .expect("the soft passkey registers");
    let passkey = rp
        .finish_passkey_registration(&answer, &registration)
        .expect("the genuine registration verifies");

    let (request, second_step) = rp
        .start_passkey_authentication(std::slice::from_ref(&passkey))
        .expect("request options");
    let asserted = key
        .do_authentication(origin.clone(), request)
        .expect("the soft passkey signs");

    let (request, sign_in) = rp
        .start_discoverable_authentication()
        .expect("discoverable request options");
    let mut request = serde_json::to_value(&request).expect("JSON");
    request["publicKey"]["allowCredentials"] =
        json!([{ "type": "public-key", "id": URL_SAFE_NO_PAD.encode(passkey.cred_id()) }]);
    let request: RequestChallengeResponse = serde_json::from_value(request).expect("options");
    let mut discovered = key
        .do_authentication(origin, request)
        .expect("the soft passkey signs");
    // A discoverable credential names its user; the soft passkey keeps no resident keys.
    discovered.response.user_handle = Some(handle.as_bytes().to_vec());

    let fixture = Fixture {
        registered: serde_json::to_value(&answer).expect("JSON"),
        asserted: serde_json::to_value(&asserted).expect("JSON"),
        discovered: serde_json::to_value(&discovered).expect("JSON"),
        rp,
        registration,
        passkey,
        second_step,
        sign_in,
    };
    for name in ["clientDataJSON", "authenticatorData"] {
        assert!(
            !field(&fixture.asserted, name).is_empty(),
            "{name} reads back"
        );
        assert!(
            !field(&fixture.discovered, name).is_empty(),
            "{name} reads back"
        );
    }
    // The genuine answers pass through the same path as the fuzzer's.
    assert!(register(&fixture, &fixture.registered.to_string()));
    assert_eq!(
        authenticate(&fixture, &fixture.asserted.to_string()).0,
        Some(true)
    );
    assert_eq!(
        authenticate(&fixture, &fixture.discovered.to_string()).1,
        Some(true)
    );
    fixture
});

/// Whether a registration answer verifies.
fn register(f: &Fixture, json: &str) -> bool {
    parse_answer::<RegisterPublicKeyCredential>(json).is_some_and(|answer| {
        f.rp.finish_passkey_registration(&answer, &f.registration)
            .is_ok()
    })
}

/// Whether a sign-in answer verifies as a second step and as a usernameless sign-in
/// (`None`: it is not an answer at all).
fn authenticate(f: &Fixture, json: &str) -> (Option<bool>, Option<bool>) {
    let Some(answer) = parse_answer::<PublicKeyCredential>(json) else {
        return (None, None);
    };
    let second =
        f.rp.finish_passkey_authentication(&answer, &f.second_step)
            .is_ok();
    let usernameless = f
        .rp
        .identify_discoverable_authentication(&answer)
        .is_ok_and(|(_, cred_id)| {
            // The sign-in page finds the stored passkey by the id the answer names.
            cred_id == f.passkey.cred_id().as_slice()
                && f.rp
                    .finish_discoverable_authentication_v2(&answer, f.sign_in.clone(), &f.passkey)
                    .is_ok()
        });
    (Some(second), Some(usernameless))
}

/// `answer` with `response.<field>` replaced by `bytes` (base64url, as browsers send it).
fn with_field(answer: &Value, field: &str, bytes: &[u8]) -> String {
    let mut answer = answer.clone();
    answer["response"][field] = Value::String(URL_SAFE_NO_PAD.encode(bytes));
    answer.to_string()
}

/// The bytes of a genuine answer's field.
fn field(answer: &Value, field: &str) -> Vec<u8> {
    answer["response"][field]
        .as_str()
        .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = &*FIXTURE;
    match mode % 8 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                register(f, text);
            }
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                authenticate(f, text);
            }
        }
        2 => {
            register(f, &with_field(&f.registered, "clientDataJSON", rest));
        }
        3 => {
            register(f, &with_field(&f.registered, "attestationObject", rest));
        }
        m => {
            let name = [
                "clientDataJSON",
                "authenticatorData",
                "signature",
                "userHandle",
            ][usize::from(m - 4)];
            let (second, usernameless) = (
                authenticate(f, &with_field(&f.asserted, name, rest)).0,
                authenticate(f, &with_field(&f.discovered, name, rest)).1,
            );
            // What the passkey signed cannot be changed and still verify.
            if matches!(name, "clientDataJSON" | "authenticatorData") {
                if second == Some(true) {
                    assert_eq!(rest, field(&f.asserted, name), "a forged {name} verified");
                }
                if usernameless == Some(true) {
                    assert_eq!(rest, field(&f.discovered, name), "a forged {name} verified");
                }
            }
        }
    }
});
