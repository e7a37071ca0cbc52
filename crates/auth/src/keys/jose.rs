//! The part of JOSE that Tobira signs, checks and seals with, on aws-lc-rs (the library
//! rustls and sqlx already link, so the process carries one implementation of each
//! primitive): compact JWS with RS256, ES256 and EdDSA (RFC 7515, 7518 §3, 8037); the
//! JWKs of those keys, public and private (RFC 7517, 7518 §6, 8037 §2); compact JWE with
//! `dir` and `A256GCM` (RFC 7516, 7518 §4.5, §5.3). Nothing else is read: a header
//! naming another algorithm, a critical extension or a compressed payload is refused.

use aws_lc_rs::encoding::{AsBigEndian, AsDer};
use aws_lc_rs::signature::{self, KeyPair as _, ParsedPublicKey};
use aws_lc_rs::{aead, rand as lc_rand, rsa};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::Alg;
use crate::crypto::{b64url, b64url_decode};

/// Why a JOSE object or key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The signature does not verify, or the header names another algorithm than the
    /// key's.
    #[error("bad signature or algorithm")]
    Signature,
    /// A sealed value that does not open with this key (or was altered).
    #[error("cannot decrypt")]
    Decrypt,
    #[error("key: {0}")]
    Key(String),
    #[error("the crypto library failed")]
    Crypto,
}

impl From<aws_lc_rs::error::Unspecified> for JoseError {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        Self::Crypto
    }
}

fn rejected(e: aws_lc_rs::error::KeyRejected) -> JoseError {
    JoseError::Key(e.to_string())
}

/// A JWK as a JSON object.
pub type Jwk = Map<String, Value>;

/// The bytes of a base64url member of `jwk`, wiped when dropped (private members are
/// read through this too).
fn member(jwk: &Jwk, name: &'static str) -> Result<Zeroizing<Vec<u8>>, JoseError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .and_then(b64url_decode)
        .map(Zeroizing::new)
        .ok_or(JoseError::Malformed(name))
}

/// `kty` (and `crv`, when the key type has one) are what `alg` needs.
fn expect_type(jwk: &Jwk, alg: Alg) -> Result<(), JoseError> {
    let (kty, crv) = match alg {
        Alg::RS256 => ("RSA", None),
        Alg::ES256 => ("EC", Some("P-256")),
        Alg::EdDSA => ("OKP", Some("Ed25519")),
    };
    if jwk.get("kty").and_then(Value::as_str) != Some(kty) {
        return Err(JoseError::Key(format!(
            "{} needs a key of type {kty}",
            alg.as_str()
        )));
    }
    if crv.is_some() && jwk.get("crv").and_then(Value::as_str) != crv {
        return Err(JoseError::Key(format!(
            "{} needs the curve {crv:?}",
            alg.as_str()
        )));
    }
    // What the key says of itself, where it says it (RFC 7517 §4.2, §4.4), must agree:
    // the JWKS publishes these members.
    if jwk
        .get("alg")
        .is_some_and(|a| a.as_str() != Some(alg.as_str()))
    {
        return Err(JoseError::Key(format!("a key not for {}", alg.as_str())));
    }
    if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return Err(JoseError::Key("a key not for signatures".to_owned()));
    }
    Ok(())
}

/// The members of a public JWK that name the key itself.
const PUBLIC_MEMBERS: [&str; 6] = ["kty", "crv", "n", "e", "x", "y"];

/// `private` completed with the public members of `public`, which must agree with those
/// it has: the published key and the one that signs are then one key (the signer checks
/// that the private numbers belong to these public ones). Private JWKs stored by earlier
/// versions hold `d` without `x` and `y`.
pub fn with_public(private: &mut Jwk, public: &Jwk) -> Result<(), JoseError> {
    for name in PUBLIC_MEMBERS {
        match (private.get(name), public.get(name)) {
            (Some(mine), Some(published)) if mine != published => {
                return Err(JoseError::Key(format!(
                    "its {name} is not the published key's"
                )));
            }
            (None, Some(published)) => {
                private.insert(name.to_owned(), published.clone());
            }
            _ => {}
        }
    }
    Ok(())
}

/// An uncompressed P-256 point from a JWK's `x` and `y` (32 bytes each).
fn ec_point(jwk: &Jwk) -> Result<Vec<u8>, JoseError> {
    let (x, y) = (member(jwk, "x")?, member(jwk, "y")?);
    if x.len() != 32 || y.len() != 32 {
        return Err(JoseError::Malformed("a P-256 coordinate is 32 bytes"));
    }
    let mut point = Vec::with_capacity(65);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

/// The P-256 private scalar `d` as SEC 1 `ECPrivateKey` DER (RFC 5915) without its
/// optional public key, which the library computes.
fn p256_sec1(d: &[u8]) -> Result<Zeroizing<Vec<u8>>, JoseError> {
    if d.len() != 32 {
        return Err(JoseError::Malformed("a P-256 private key is 32 bytes"));
    }
    // SEQUENCE { INTEGER 1, OCTET STRING d, [0] { OID prime256v1 } }
    let mut der = Zeroizing::new(Vec::with_capacity(51));
    der.extend_from_slice(&[0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20]);
    der.extend_from_slice(d);
    der.extend_from_slice(&[
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ]);
    Ok(der)
}

/// A private key that signs with one algorithm.
pub struct Signer(SigningKey);

enum SigningKey {
    Rs256(rsa::KeyPair),
    Es256(signature::EcdsaKeyPair),
    EdDsa(signature::Ed25519KeyPair),
}

impl Signer {
    /// The signer of a private JWK of `alg`'s key type.
    pub fn from_jwk(alg: Alg, jwk: &Jwk) -> Result<Self, JoseError> {
        expect_type(jwk, alg)?;
        Ok(Self(match alg {
            Alg::RS256 => {
                let (n, e) = (member(jwk, "n")?, member(jwk, "e")?);
                let (d, p, q) = (member(jwk, "d")?, member(jwk, "p")?, member(jwk, "q")?);
                let (dp, dq, qi) = (member(jwk, "dp")?, member(jwk, "dq")?, member(jwk, "qi")?);
                let components = rsa::KeyPairComponents {
                    public_key: rsa::PublicKeyComponents {
                        n: &n[..],
                        e: &e[..],
                    },
                    d: &d[..],
                    p: &p[..],
                    q: &q[..],
                    dP: &dp[..],
                    dQ: &dq[..],
                    qInv: &qi[..],
                };
                SigningKey::Rs256(rsa::KeyPair::from_components(&components).map_err(rejected)?)
            }
            // A private JWK that earlier versions stored holds `d` alone (josekit wrote
            // no public members into it): the public key is then computed from `d`.
            Alg::ES256 => {
                let d = member(jwk, "d")?;
                let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
                let pair = if jwk.contains_key("x") {
                    signature::EcdsaKeyPair::from_private_key_and_public_key(
                        alg,
                        &d,
                        &ec_point(jwk)?,
                    )
                } else {
                    signature::EcdsaKeyPair::from_private_key_der(alg, &p256_sec1(&d)?)
                };
                SigningKey::Es256(pair.map_err(rejected)?)
            }
            Alg::EdDSA => {
                let d = member(jwk, "d")?;
                let pair = if jwk.contains_key("x") {
                    signature::Ed25519KeyPair::from_seed_and_public_key(&d, &member(jwk, "x")?)
                } else {
                    signature::Ed25519KeyPair::from_seed_unchecked(&d)
                };
                SigningKey::EdDsa(pair.map_err(rejected)?)
            }
        }))
    }

    /// An ES256 signer of a P-256 private key in DER: PKCS#8, as Apple hands them out,
    /// or SEC 1 (RFC 5915).
    pub fn es256_from_der(der: &[u8]) -> Result<Self, JoseError> {
        let pair = signature::EcdsaKeyPair::from_private_key_der(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der,
        )
        .map_err(rejected)?;
        Ok(Self(SigningKey::Es256(pair)))
    }

    pub fn alg(&self) -> Alg {
        match self.0 {
            SigningKey::Rs256(_) => Alg::RS256,
            SigningKey::Es256(_) => Alg::ES256,
            SigningKey::EdDsa(_) => Alg::EdDSA,
        }
    }

    /// The JWS signature of `input` (for ES256 the fixed-width `r || s` of RFC 7518 §3.4).
    pub fn sign(&self, input: &[u8]) -> Result<Vec<u8>, JoseError> {
        let rng = lc_rand::SystemRandom::new();
        Ok(match &self.0 {
            SigningKey::Rs256(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, input, &mut sig)?;
                sig
            }
            SigningKey::Es256(pair) => pair.sign(&rng, input)?.as_ref().to_vec(),
            SigningKey::EdDsa(pair) => pair.sign(input).as_ref().to_vec(),
        })
    }
}

/// A public key that checks signatures of one algorithm, parsed once.
pub struct Verifier {
    alg: Alg,
    key: ParsedPublicKey,
}

impl Verifier {
    /// The verifier of a public (or private: only public members are read) JWK.
    pub fn from_jwk(alg: Alg, jwk: &Jwk) -> Result<Self, JoseError> {
        expect_type(jwk, alg)?;
        let key = match alg {
            Alg::RS256 => {
                let (n, e) = (member(jwk, "n")?, member(jwk, "e")?);
                rsa::PublicKeyComponents {
                    n: &n[..],
                    e: &e[..],
                }
                .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
            }
            Alg::ES256 => ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, ec_point(jwk)?),
            Alg::EdDSA => ParsedPublicKey::new(&signature::ED25519, &member(jwk, "x")?[..]),
        }
        .map_err(rejected)?;
        Ok(Self { alg, key })
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn verifies(&self, input: &[u8], sig: &[u8]) -> bool {
        self.key.verify_sig(input, sig).is_ok()
    }
}

/// A new key pair of `alg`: its private JWK and its public JWK (the caller names them
/// and wipes the private one, see `keys::wipe`).
pub fn generate(alg: Alg) -> Result<(Jwk, Jwk), JoseError> {
    let text = |bytes: &[u8]| Value::String(b64url(bytes));
    let mut public = Jwk::new();
    let mut private = Jwk::new();
    match alg {
        Alg::RS256 => {
            let pair = rsa::KeyPair::generate(rsa::KeySize::Rsa2048)?;
            let der = pair.as_der()?;
            let numbers = rsa_private_numbers(der.as_ref())?;
            public.insert("kty".into(), "RSA".into());
            for (name, value) in ["n", "e"].into_iter().zip(&numbers[..2]) {
                public.insert(name.into(), text(value));
            }
            private.clone_from(&public);
            let names = ["d", "p", "q", "dp", "dq", "qi"];
            for (name, value) in names.into_iter().zip(&numbers[2..]) {
                private.insert(name.into(), text(value));
            }
        }
        Alg::ES256 => {
            let pair =
                signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)?;
            let point = pair.public_key().as_ref();
            public.insert("kty".into(), "EC".into());
            public.insert("crv".into(), "P-256".into());
            public.insert("x".into(), text(&point[1..33]));
            public.insert("y".into(), text(&point[33..65]));
            private.clone_from(&public);
            let d = pair.private_key().as_be_bytes()?;
            private.insert("d".into(), text(d.as_ref()));
        }
        Alg::EdDSA => {
            let pair = signature::Ed25519KeyPair::generate()?;
            public.insert("kty".into(), "OKP".into());
            public.insert("crv".into(), "Ed25519".into());
            public.insert("x".into(), text(pair.public_key().as_ref()));
            private.clone_from(&public);
            let seed = pair.seed()?.as_be_bytes()?;
            private.insert("d".into(), text(seed.as_ref()));
        }
    }
    Ok((private, public))
}

/// `n, e, d, p, q, dP, dQ, qInv` of an RSA key in PKCS#8 (RFC 5208 wrapping RFC 8017's
/// `RSAPrivateKey`), each without leading zeros (JWK's unsigned integers), wiped when
/// dropped.
fn rsa_private_numbers(pkcs8: &[u8]) -> Result<Vec<Zeroizing<Vec<u8>>>, JoseError> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const OCTET_STRING: u8 = 0x04;
    let mut outer = Der(Der(pkcs8).take(SEQUENCE)?);
    outer.take(INTEGER)?; // version
    outer.take(SEQUENCE)?; // the algorithm
    let mut key = Der(Der(outer.take(OCTET_STRING)?).take(SEQUENCE)?);
    key.take(INTEGER)?; // version
    (0..8)
        .map(|_| {
            let int = key.take(INTEGER)?;
            let start = int.iter().position(|&b| b != 0).unwrap_or(int.len());
            Ok(Zeroizing::new(int[start..].to_vec()))
        })
        .collect()
}

/// A reader of DER, just enough for the key structures above.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The contents of the next element, which must have `tag`.
    fn take(&mut self, tag: u8) -> Result<&'a [u8], JoseError> {
        let bad = JoseError::Malformed("DER");
        let (&found, rest) = self.0.split_first().ok_or(JoseError::Malformed("DER"))?;
        if found != tag {
            return Err(bad);
        }
        let (len, rest) = match rest {
            [l, rest @ ..] if *l < 0x80 => (usize::from(*l), rest),
            [0x81, l, rest @ ..] => (usize::from(*l), rest),
            [0x82, hi, lo, rest @ ..] => ((usize::from(*hi) << 8) | usize::from(*lo), rest),
            _ => return Err(bad),
        };
        if rest.len() < len {
            return Err(bad);
        }
        let (contents, after) = rest.split_at(len);
        self.0 = after;
        Ok(contents)
    }
}

/// A compact JWS of `payload` signed by `signer`, its header naming `kid` and `typ`.
pub fn sign_compact(
    signer: &Signer,
    kid: &str,
    typ: Option<&str>,
    payload: &[u8],
) -> Result<String, JoseError> {
    let mut header = serde_json::json!({ "alg": signer.alg().as_str(), "kid": kid });
    if let Some(typ) = typ {
        header["typ"] = typ.into();
    }
    let mut out = b64url(header.to_string().as_bytes());
    out.push('.');
    out.push_str(&b64url(payload));
    let sig = signer.sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&b64url(&sig));
    Ok(out)
}

/// The payload and header of a compact JWS that `select`'s verifier (chosen by the
/// header) checks. The header's `alg` must be the verifier's own: a token cannot choose
/// how it is checked (RFC 8725 §2.1, §3.1).
pub fn verify_compact<'v>(
    token: &str,
    select: impl FnOnce(&Jwk) -> Option<&'v Verifier>,
) -> Result<(Vec<u8>, Jwk), JoseError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JoseError::Malformed("not three parts"));
    };
    let header: Jwk = b64url_decode(h)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(JoseError::Malformed("header"))?;
    // No extension is understood here, so none may be critical (RFC 7515 §4.1.11).
    if header.contains_key("crit") {
        return Err(JoseError::Malformed("crit"));
    }
    let verifier = select(&header).ok_or(JoseError::Malformed("no key for this header"))?;
    if header.get("alg").and_then(Value::as_str) != Some(verifier.alg().as_str()) {
        return Err(JoseError::Signature);
    }
    let payload = b64url_decode(p).ok_or(JoseError::Malformed("payload"))?;
    let sig = b64url_decode(s).ok_or(JoseError::Malformed("signature"))?;
    let input = &token[..h.len() + 1 + p.len()];
    if !verifier.verifies(input.as_bytes(), &sig) {
        return Err(JoseError::Signature);
    }
    Ok((payload, header))
}

/// Bytes of an A256GCM initialisation vector and tag.
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

fn aes_key(key: &[u8]) -> Result<aead::LessSafeKey, JoseError> {
    let key = aead::UnboundKey::new(&aead::AES_256_GCM, key)
        .map_err(|_| JoseError::Key("an A256GCM key is 32 bytes".to_owned()))?;
    Ok(aead::LessSafeKey::new(key))
}

/// `plaintext` sealed under `key` (32 bytes) as a compact JWE (`dir`, `A256GCM`) whose
/// header names `kid`.
pub fn seal(key: &[u8], kid: &str, plaintext: &[u8]) -> Result<String, JoseError> {
    let header = serde_json::json!({ "alg": "dir", "enc": "A256GCM", "kid": kid });
    let header = b64url(header.to_string().as_bytes());
    let mut iv = [0u8; IV_LEN];
    lc_rand::fill(&mut iv)?;
    let mut sealed = Zeroizing::new(plaintext.to_vec());
    let tag = aes_key(key)?.seal_in_place_separate_tag(
        aead::Nonce::assume_unique_for_key(iv),
        aead::Aad::from(header.as_bytes()),
        &mut sealed,
    )?;
    Ok(format!(
        "{header}..{}.{}.{}",
        b64url(&iv),
        b64url(&sealed),
        b64url(tag.as_ref())
    ))
}

/// The plaintext of a compact JWE that `seal` made under `key`, wiped when dropped.
pub fn open(key: &[u8], jwe: &str) -> Result<Zeroizing<Vec<u8>>, JoseError> {
    let parts: Vec<&str> = jwe.split('.').collect();
    let [h, encrypted_key, iv, ciphertext, tag] = parts[..] else {
        return Err(JoseError::Malformed("not five parts"));
    };
    let header: Jwk = b64url_decode(h)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(JoseError::Malformed("header"))?;
    let named = |name: &str| header.get(name).and_then(Value::as_str);
    // Only what `seal` makes: no other algorithm, no compression, no extension.
    if named("alg") != Some("dir")
        || named("enc") != Some("A256GCM")
        || header.contains_key("zip")
        || header.contains_key("crit")
        || !encrypted_key.is_empty()
    {
        return Err(JoseError::Malformed("not a dir + A256GCM value"));
    }
    let iv: [u8; IV_LEN] = b64url_decode(iv)
        .and_then(|iv| iv.try_into().ok())
        .ok_or(JoseError::Malformed("iv"))?;
    let tag = b64url_decode(tag)
        .filter(|t| t.len() == TAG_LEN)
        .ok_or(JoseError::Malformed("tag"))?;
    let mut sealed =
        Zeroizing::new(b64url_decode(ciphertext).ok_or(JoseError::Malformed("ciphertext"))?);
    sealed.extend_from_slice(&tag);
    let len = aes_key(key)?
        .open_in_place(
            aead::Nonce::assume_unique_for_key(iv),
            aead::Aad::from(h.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| JoseError::Decrypt)?
        .len();
    sealed.truncate(len);
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys made here sign what they publish, for each algorithm, and the private JWK
    /// reads back into the same key.
    #[test]
    fn generated_keys_sign_and_their_public_halves_verify() {
        for alg in Alg::ALL {
            let (private, public) = generate(alg).unwrap();
            let signer = Signer::from_jwk(alg, &private).unwrap();
            let verifier = Verifier::from_jwk(alg, &public).unwrap();
            let sig = signer.sign(b"input").unwrap();
            assert!(verifier.verifies(b"input", &sig), "{alg:?}");
            assert!(!verifier.verifies(b"other", &sig), "{alg:?}");
            for name in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(!public.contains_key(name), "{alg:?} publishes {name}");
            }
            // A key of another type is refused for this algorithm.
            let other = Alg::ALL.into_iter().find(|a| *a != alg).unwrap();
            assert!(Signer::from_jwk(other, &private).is_err(), "{alg:?}");
            assert!(Verifier::from_jwk(other, &public).is_err(), "{alg:?}");
        }
    }

    /// Keys, tokens and sealed values of the JOSE library Tobira used before (josekit, on
    /// OpenSSL) are read here, and what is made here is read there: keys and secrets
    /// stored by earlier versions keep working, and the formats are the standard ones.
    #[test]
    fn what_another_implementation_made_is_read_and_the_other_way_round() {
        use josekit::jwk::Jwk as OtherJwk;
        use josekit::jws::{ES256, EdDSA, JwsHeader, RS256};
        let theirs_of = |alg: Alg| -> (OtherJwk, OtherJwk) {
            match alg {
                Alg::RS256 => {
                    let p = RS256.generate_key_pair(2048).unwrap();
                    (p.to_jwk_private_key(), p.to_jwk_public_key())
                }
                Alg::ES256 => {
                    let p = ES256.generate_key_pair().unwrap();
                    (p.to_jwk_private_key(), p.to_jwk_public_key())
                }
                Alg::EdDSA => {
                    let p = EdDSA
                        .generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed25519)
                        .unwrap();
                    (p.to_jwk_private_key(), p.to_jwk_public_key())
                }
            }
        };
        let to_ours = |jwk: &OtherJwk| -> Jwk { jwk.as_ref().clone() };
        let to_theirs = |jwk: &Jwk| OtherJwk::from_map(jwk.clone()).unwrap();
        for alg in Alg::ALL {
            let (their_private, their_public) = theirs_of(alg);
            let (our_private, our_public) = generate(alg).unwrap();
            let (signer, verifier): (
                Box<dyn josekit::jws::JwsSigner>,
                Box<dyn josekit::jws::JwsVerifier>,
            ) = match alg {
                Alg::RS256 => (
                    Box::new(RS256.signer_from_jwk(&to_theirs(&our_private)).unwrap()),
                    Box::new(RS256.verifier_from_jwk(&to_theirs(&our_public)).unwrap()),
                ),
                Alg::ES256 => (
                    Box::new(ES256.signer_from_jwk(&to_theirs(&our_private)).unwrap()),
                    Box::new(ES256.verifier_from_jwk(&to_theirs(&our_public)).unwrap()),
                ),
                Alg::EdDSA => (
                    Box::new(EdDSA.signer_from_jwk(&to_theirs(&our_private)).unwrap()),
                    Box::new(EdDSA.verifier_from_jwk(&to_theirs(&our_public)).unwrap()),
                ),
            };
            // Their key, stored by an earlier version, signs here; they check it.
            let ours = Signer::from_jwk(alg, &to_ours(&their_private)).unwrap();
            let token = sign_compact(&ours, "k", Some("JWT"), b"{}").unwrap();
            let their_check: Box<dyn josekit::jws::JwsVerifier> = match alg {
                Alg::RS256 => Box::new(RS256.verifier_from_jwk(&their_public).unwrap()),
                Alg::ES256 => Box::new(ES256.verifier_from_jwk(&their_public).unwrap()),
                Alg::EdDSA => Box::new(EdDSA.verifier_from_jwk(&their_public).unwrap()),
            };
            let (payload, _) = josekit::jws::deserialize_compact(&token, &*their_check).unwrap();
            assert_eq!(payload, b"{}", "{alg:?}");
            // Our key, used by them, signs what we verify; and we verify what they sign.
            let mut header = JwsHeader::new();
            header.set_key_id("k");
            let theirs = josekit::jws::serialize_compact(b"{}", &header, &*signer).unwrap();
            let check = Verifier::from_jwk(alg, &our_public).unwrap();
            assert!(verify_compact(&theirs, |_| Some(&check)).is_ok(), "{alg:?}");
            let signer = Signer::from_jwk(alg, &our_private).unwrap();
            let token = sign_compact(&signer, "k", None, b"{}").unwrap();
            assert!(josekit::jws::deserialize_compact(&token, &*verifier).is_ok());
        }
        // Sealed values, both ways.
        let key = [9u8; 32];
        let mut header = josekit::jwe::JweHeader::new();
        header.set_content_encryption("A256GCM");
        header.set_key_id("mk");
        let dir = josekit::jwe::Dir;
        let theirs = josekit::jwe::serialize_compact(
            b"stored before",
            &header,
            &dir.encrypter_from_bytes(key).unwrap(),
        )
        .unwrap();
        assert_eq!(&open(&key, &theirs).unwrap()[..], b"stored before");
        let ours = seal(&key, "mk", b"stored now").unwrap();
        let (plaintext, _) =
            josekit::jwe::deserialize_compact(&ours, &dir.decrypter_from_bytes(key).unwrap())
                .unwrap();
        assert_eq!(plaintext, b"stored now");
    }

    /// The DER reader takes definite lengths in one, two or three bytes, and nothing
    /// else: no indefinite length (0x80, BER only), no element longer than its input, no
    /// other tag than the one asked for.
    #[test]
    fn the_der_reader_takes_definite_lengths_only() {
        // A tag and length header followed by `len` content bytes.
        let element = |header: &[u8], len: usize| [header, &vec![7u8; len]].concat();
        for (header, len) in [
            (&[0x04, 0x7f][..], 127),
            (&[0x04, 0x81, 0x80][..], 128),
            (&[0x04, 0x82, 0x01, 0x00][..], 256),
        ] {
            assert_eq!(Der(&element(header, len)).take(0x04).unwrap().len(), len);
        }
        let indefinite = element(&[0x04, 0x80], 200);
        for (bad, why) in [
            (&indefinite[..], "indefinite length"),
            (&[0x04, 0x05, 1, 2][..], "shorter than its length"),
            (&[0x02, 0x01, 1][..], "another tag"),
            (&[0x04, 0x83, 0, 0, 1, 0][..], "a four-byte length"),
            (&[][..], "nothing"),
        ] {
            assert!(Der(bad).take(0x04).is_err(), "{why}");
        }
    }

    /// A P-256 coordinate of the wrong length (either one) is named as such.
    #[test]
    fn a_p256_coordinate_of_the_wrong_length_is_refused_as_malformed() {
        let (_, public) = generate(Alg::ES256).unwrap();
        for name in ["x", "y"] {
            let mut short = public.clone();
            let bytes = member(&public, name).unwrap();
            short.insert(name.into(), b64url(&bytes[1..]).into());
            assert!(
                matches!(
                    Verifier::from_jwk(Alg::ES256, &short),
                    Err(JoseError::Malformed("a P-256 coordinate is 32 bytes"))
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn rsa_numbers_have_no_leading_zeros_and_make_a_consistent_key() {
        let (private, _) = generate(Alg::RS256).unwrap();
        for name in ["n", "e", "d", "p", "q", "dp", "dq", "qi"] {
            let bytes = member(&private, name).unwrap();
            assert_ne!(bytes[0], 0, "{name}");
        }
        assert_eq!(member(&private, "n").unwrap().len(), 256);
        assert_eq!(&member(&private, "e").unwrap()[..], &[1, 0, 1]);
        // A changed prime is refused, not used to sign wrongly.
        let mut broken = private.clone();
        broken.insert("q".into(), private["p"].clone());
        assert!(Signer::from_jwk(Alg::RS256, &broken).is_err());
    }

    #[test]
    fn a_token_names_its_key_and_cannot_choose_its_algorithm() {
        let (private, public) = generate(Alg::ES256).unwrap();
        let signer = Signer::from_jwk(Alg::ES256, &private).unwrap();
        let verifier = Verifier::from_jwk(Alg::ES256, &public).unwrap();
        let token = sign_compact(&signer, "k1", Some("JWT"), br#"{"sub":"a"}"#).unwrap();
        let (payload, header) = verify_compact(&token, |h| {
            (h.get("kid").and_then(Value::as_str) == Some("k1")).then_some(&verifier)
        })
        .unwrap();
        assert_eq!(payload, br#"{"sub":"a"}"#);
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["alg"], "ES256");
        let parts: Vec<&str> = token.split('.').collect();
        let with_header = |h: Value| {
            format!(
                "{}.{}.{}",
                b64url(h.to_string().as_bytes()),
                parts[1],
                parts[2]
            )
        };
        for (token, why) in [
            (
                with_header(serde_json::json!({ "alg": "RS256", "kid": "k1" })),
                "alg",
            ),
            (
                with_header(serde_json::json!({ "alg": "ES256", "kid": "k1", "crit": ["b64"] })),
                "crit",
            ),
            (format!("{}.{}", parts[0], parts[1]), "two parts"),
            (format!("{token}.x"), "four parts"),
            (
                format!("{}.{}.{}", parts[0], b64url(b"{}"), parts[2]),
                "payload",
            ),
            (format!("{}.{}.", parts[0], parts[1]), "no signature"),
            (
                format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
                "padding",
            ),
        ] {
            assert!(
                verify_compact(&token, |_| Some(&verifier)).is_err(),
                "{why}"
            );
        }
        assert!(matches!(
            verify_compact(&token, |_| None),
            Err(JoseError::Malformed(_))
        ));
    }

    #[test]
    fn a_sealed_value_opens_only_as_sealed() {
        let key = [3u8; 32];
        let jwe = seal(&key, "mk", b"secret").unwrap();
        assert_eq!(&open(&key, &jwe).unwrap()[..], b"secret");
        assert_ne!(
            seal(&key, "mk", b"secret").unwrap(),
            jwe,
            "a fresh IV each time"
        );
        assert!(matches!(open(&[4u8; 32], &jwe), Err(JoseError::Decrypt)));
        let parts: Vec<&str> = jwe.split('.').collect();
        let header: Value = serde_json::from_slice(&b64url_decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["kid"], "mk");
        let with = |i: usize, part: &str| {
            let mut changed = parts.clone();
            changed[i] = part;
            changed.join(".")
        };
        // Sealed with the right key under a header `seal` never writes: refused for what
        // the header says, before any decryption.
        let sealed_under = |header: &str| {
            let h = b64url(header.as_bytes());
            let mut text = b"secret".to_vec();
            let tag = aes_key(&key)
                .unwrap()
                .seal_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key([1; IV_LEN]),
                    aead::Aad::from(h.as_bytes()),
                    &mut text,
                )
                .unwrap();
            let parts = [
                h,
                String::new(),
                b64url(&[1; IV_LEN]),
                b64url(&text),
                b64url(tag.as_ref()),
            ];
            parts.join(".")
        };
        assert_eq!(
            &open(&key, &sealed_under(r#"{"alg":"dir","enc":"A256GCM"}"#)).unwrap()[..],
            b"secret"
        );
        for header in [
            r#"{"alg":"dir","enc":"A256GCM","zip":"DEF"}"#,
            r#"{"alg":"dir","enc":"A256GCM","crit":["exp"],"exp":1}"#,
            r#"{"alg":"dir","enc":"A128GCM"}"#,
            r#"{"alg":"A256KW","enc":"A256GCM"}"#,
        ] {
            assert!(
                matches!(
                    open(&key, &sealed_under(header)),
                    Err(JoseError::Malformed(_))
                ),
                "{header}"
            );
        }
        let zip = b64url(br#"{"alg":"dir","enc":"A256GCM","zip":"DEF","kid":"mk"}"#);
        let a128 = b64url(br#"{"alg":"dir","enc":"A128GCM","kid":"mk"}"#);
        let other_kid = b64url(br#"{"alg":"dir","enc":"A256GCM","kid":"xx"}"#);
        for (jwe, why) in [
            (with(0, &zip), "compressed"),
            (with(0, &a128), "another enc"),
            (with(0, &other_kid), "the header is authenticated"),
            (with(1, "AAAA"), "an encrypted key"),
            (with(2, &b64url(&[0u8; 16])), "a long IV"),
            (with(3, &b64url(b"other")), "another ciphertext"),
            (with(4, &b64url(&[0u8; 12])), "a short tag"),
            (parts[..4].join("."), "four parts"),
        ] {
            assert!(open(&key, &jwe).is_err(), "{why}");
        }
    }
}
