//! One-time codes as members type them: only six digits (spaces allowed) at the right
//! time are ever accepted, and the enrolment URI and QR code take any account name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tobira_auth::authn::totp::Authenticator;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let time = i64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let Ok(text) = std::str::from_utf8(&data[8..]) else {
        return;
    };
    let (code, account) = text.split_once('\n').unwrap_or((text, "hanako@example.jp"));
    let secret = [0x5a_u8; 20];
    let totp = Authenticator::new(&secret, "Tobira", account).expect("a 160-bit secret");
    if let Some(step) = totp.check(code, time) {
        let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        assert_eq!(digits.len(), 6, "{code:?}");
        assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{code:?}");
        assert!(
            (step - time.div_euclid(30)).abs() <= 1,
            "step {step} at {time}"
        );
    }
    if time >= 0 {
        let now = totp.code_at(time);
        assert!(totp.check(&now, time).is_some(), "the code of the moment");
    }
    if let Ok(uri) = totp.uri() {
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        // Drawing the QR code takes milliseconds: one input in sixteen.
        if data[0] % 16 == 0 {
            let _ = totp.qr_svg();
        }
    }
});
