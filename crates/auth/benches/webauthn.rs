//! Server CPU per WebAuthn verification: what Tobira spends checking a passkey's answer,
//! through the relying party it builds from the issuer.
//!
//! Run: `cargo bench -p tobira-auth --bench webauthn -j1`
//! (shorten with `-- --measurement-time 3`).
//!
//! A software passkey (webauthn-authenticator-rs, ES256, user verification reported)
//! registers once and answers one challenge per ceremony kind; each iteration verifies
//! that answer against a fresh copy of the ceremony state, as a request does after taking
//! the state from the ephemeral store. The usernameless ceremony is answered the way a
//! discoverable credential answers (the credential named by the browser, the user handle
//! in the answer), since the soft passkey keeps no resident keys.

use std::hint::black_box;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use tobira_auth::authn::passkey::relying_party;
use url::Url;
use uuid::Uuid;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::RequestChallengeResponse;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{Passkey, PublicKeyCredential};

const ISSUER: &str = "https://id.example.jp";

fn webauthn(c: &mut Criterion) {
    let rp = relying_party(ISSUER).expect("a relying party for a domain issuer");
    let origin = Url::parse(ISSUER).expect("origin");
    let mut key = SoftPasskey::new(true);
    let handle = Uuid::new_v4();

    // Registration, as the console runs it.
    let (creation, registration) = rp
        .start_passkey_registration(handle, "member@example.jp", "member", None)
        .expect("registration options");
    let mut creation = serde_json::to_value(&creation).expect("JSON");
    // The soft passkey refuses a required resident key (the flag is not signed).
    creation["publicKey"]["authenticatorSelection"]["requireResidentKey"] = Value::Bool(false);
    let answer = key
        .do_registration(
            origin.clone(),
            serde_json::from_value(creation).expect("creation options"),
        )
        .expect("the soft passkey registers");
    let passkey: Passkey = rp
        .finish_passkey_registration(&answer, &registration)
        .expect("registration verifies");
    let mut group = c.benchmark_group("webauthn");
    group.bench_function("finish_registration", |b| {
        b.iter(|| {
            rp.finish_passkey_registration(black_box(&answer), &registration.clone())
                .expect("registration verifies")
        })
    });

    // A passkey as the second step: the member's credentials are in the state.
    let (request, second_step) = rp
        .start_passkey_authentication(std::slice::from_ref(&passkey))
        .expect("request options");
    let asserted: PublicKeyCredential = key
        .do_authentication(origin.clone(), request)
        .expect("the soft passkey signs");
    group.bench_function("finish_second_step", |b| {
        b.iter(|| {
            rp.finish_passkey_authentication(black_box(&asserted), &second_step.clone())
                .expect("assertion verifies")
        })
    });

    // Usernameless sign-in: identify the credential, then verify against it.
    let (request, signin) = rp
        .start_discoverable_authentication()
        .expect("discoverable request options");
    let mut request = serde_json::to_value(&request).expect("JSON");
    request["publicKey"]["allowCredentials"] =
        json!([{ "type": "public-key", "id": URL_SAFE_NO_PAD.encode(passkey.cred_id()) }]);
    let request: RequestChallengeResponse = serde_json::from_value(request).expect("options");
    let mut discovered = key
        .do_authentication(origin, request)
        .expect("the soft passkey signs");
    discovered.response.user_handle = Some(handle.as_bytes().to_vec());
    group.bench_function("finish_usernameless_sign_in", |b| {
        b.iter(|| {
            let (found, _cred) = rp
                .identify_discoverable_authentication(black_box(&discovered))
                .expect("a user handle");
            assert_eq!(found, handle);
            rp.finish_discoverable_authentication_v2(&discovered, signin.clone(), &passkey)
                .expect("assertion verifies")
        })
    });
    group.finish();
}

criterion_group!(benches, webauthn);
criterion_main!(benches);
