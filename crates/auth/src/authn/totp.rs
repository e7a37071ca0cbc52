//! Authenticator apps (RFC 6238 TOTP, as every app implements it: SHA-1, 6 digits, 30 s).
//! The secret is 160 random bits (RFC 4226 §4 recommends 160); a code is accepted in the
//! current step and one step either side (RFC 6238 §5.2), and the caller stores the step
//! it matched so that no code is accepted twice. The enrolment QR code is drawn as SVG
//! here, so no image library is needed.

use totp_rs::{Algorithm, Builder, Secret, Totp};
use zeroize::Zeroizing;

/// Bytes of a new secret.
pub const SECRET_LEN: usize = 20;

/// A new random secret.
pub fn new_secret(rng: &mut impl rand::CryptoRng) -> Zeroizing<Vec<u8>> {
    let mut secret = Zeroizing::new(vec![0_u8; SECRET_LEN]);
    rng.fill_bytes(&mut secret);
    secret
}

/// The generator of one account's codes.
pub struct Authenticator {
    totp: Totp,
}

impl Authenticator {
    /// `issuer` and `account` label the entry in the member's app ("Tobira",
    /// "hanako@example.com"); a colon is not allowed in either (the otpauth URI's label
    /// separator), so it is replaced.
    pub fn new(secret: &[u8], issuer: &str, account: &str) -> Result<Self, String> {
        let totp = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(30)
            .with_secret(Secret::from(secret.to_vec()))
            .with_issuer(Some(issuer.replace(':', " ")))
            .with_account_name(account.replace(':', " "))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { totp })
    }

    /// The step of `code` if it is valid at `unix_time` (±1 step), else `None`. Spaces
    /// that apps show in the middle of a code are allowed; anything else is refused.
    pub fn check(&self, code: &str, unix_time: i64) -> Option<i64> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let time = u64::try_from(unix_time).ok()?;
        self.totp
            .check(&code, time)
            .and_then(|step| i64::try_from(step).ok())
    }

    /// The code of `unix_time` (tests and the demo's documentation only compute these).
    pub fn code_at(&self, unix_time: i64) -> String {
        self.totp
            .generate(u64::try_from(unix_time).unwrap_or_default())
            .to_string()
    }

    /// The key as the member types it into an app: base32, in groups of four.
    pub fn key_text(&self) -> String {
        let key = self.totp.secret().to_base32();
        key.trim_end_matches('=')
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The `otpauth://totp/...` URI that the QR code carries.
    pub fn uri(&self) -> Result<String, String> {
        self.totp.to_url().map_err(|e| e.to_string())
    }

    /// The QR code of the URI as an inline SVG element (without the renderer's XML
    /// declaration, which inside HTML would only be a stray comment).
    pub fn qr_svg(&self) -> Result<String, String> {
        let uri = self.uri()?;
        let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)
            .map_err(|e| e.to_string())?;
        let svg = code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build();
        Ok(match svg.find("<svg") {
            Some(at) => svg[at..].to_owned(),
            None => svg,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_accepted_one_step_either_side_and_not_beyond() {
        let a = Authenticator::new(b"12345678901234567890", "Tobira", "a@example.com").unwrap();
        let now = 1_800_000_015_i64;
        let step = now / 30;
        assert_eq!(a.check(&a.code_at(now), now), Some(step));
        assert_eq!(a.check(&a.code_at(now - 30), now), Some(step - 1));
        assert_eq!(a.check(&a.code_at(now + 30), now), Some(step + 1));
        assert_eq!(a.check(&a.code_at(now - 60), now), None);
        assert_eq!(a.check(&a.code_at(now + 60), now), None);
    }

    #[test]
    fn rfc_6238_test_vector_matches() {
        // RFC 6238 Appendix B, SHA-1, T = 59 s: 94287082 (8 digits); 6 digits: 287082.
        let a = Authenticator::new(b"12345678901234567890", "Tobira", "a@example.com").unwrap();
        assert_eq!(a.code_at(59), "287082");
    }

    #[test]
    fn malformed_codes_are_refused_without_panicking() {
        let a = Authenticator::new(b"12345678901234567890", "Tobira", "a@example.com").unwrap();
        let now = 1_800_000_015_i64;
        let code = a.code_at(now);
        assert!(
            a.check(&format!("{} {}", &code[..3], &code[3..]), now)
                .is_some()
        );
        for bad in [
            "",
            "12345",
            "1234567",
            "+12345",
            "１２３４５６",
            "abcdef",
            "12345\u{0}",
        ] {
            assert_eq!(a.check(bad, now), None, "{bad:?}");
        }
        assert_eq!(a.check(&code, -5), None);
    }

    #[test]
    fn the_key_and_the_qr_code_carry_the_secret() {
        let a = Authenticator::new(b"12345678901234567890", "Tobira", "a:b@example.com").unwrap();
        assert_eq!(a.key_text(), "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ");
        let uri = a.uri().unwrap();
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(
            uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            "{uri}"
        );
        let svg = a.qr_svg().unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
    }
}
