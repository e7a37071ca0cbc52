//! What the JWS targets share: a signing key made once per run, and the split of an input
//! into its mode and its text.

use josekit::jws::RS256;
use josekit::jws::alg::rsassa::RsassaJwsSigner;

/// A signer of a new RSA key and its public JWK (`kid`, RS256, for signatures) as JSON.
pub fn rsa_key(kid: &str) -> (RsassaJwsSigner, String) {
    let pair = RS256.generate_key_pair(2048).expect("an RSA key");
    let mut jwk = pair.to_jwk_public_key();
    jwk.set_key_id(kid);
    jwk.set_algorithm("RS256");
    jwk.set_key_use("sig");
    let signer = RS256
        .signer_from_der(pair.to_der_private_key())
        .expect("a signer");
    (signer, jwk.to_string())
}

/// What an input is: token text as it arrives, or claims (JSON) for the key to sign.
pub enum Input<'a> {
    Token(&'a str),
    Claims(&'a str),
}

/// The first byte picks the kind (even: a token, odd: claims); `None` for what is not
/// text.
pub fn input(data: &[u8]) -> Option<Input<'_>> {
    let (&mode, rest) = data.split_first()?;
    let text = std::str::from_utf8(rest).ok()?;
    Some(if mode % 2 == 0 {
        Input::Token(text)
    } else {
        Input::Claims(text)
    })
}
