//! What a sign-in from a device new to the account sets off: for now the new-device mail
//! to the member (time, device, IP, the way to sign that device out and to change the
//! password). "Known device" means the long-lived device cookie (`store/devices.rs`).

use std::net::IpAddr;

use time::{OffsetDateTime, UtcOffset};

use crate::account::console::minute;
use crate::account::{FORGOT, SESSIONS, link, queue_mail, user_lang};
use crate::domain::User;
use crate::mail::templates::{self, NewDeviceSignIn};
use crate::state::AppState;
use crate::store::StoreError;
use crate::web::device::Device;
use crate::web::i18n::Lang;

#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot queue the mail: {0}")]
    Queue(String),
}

/// A successful sign-in, as the risk check sees it.
pub struct SignedIn {
    pub user: User,
    /// The hash of the device cookie; empty for a client without one.
    pub device: String,
    /// Whether the device had signed in to the account before this sign-in.
    pub known_before: bool,
    pub ip: IpAddr,
    pub user_agent: String,
    pub at: OffsetDateTime,
}

/// Whether a successful sign-in is mailed to the member as one from a new device: the
/// rule, in one place. All of these hold:
/// - `account.new_device_mail` is on;
/// - the device is new to the account: its cookie had never signed in to it (the same
///   mark as the history's `new_device`; a client without a device cookie is no device);
/// - the account already knew another device. Its first device ever (the browser that
///   verified the sign-up and was signed in by it, or else the first to sign in with
///   the password) is the member setting up, not news to them.
///
/// Run after the device is recorded (`known_devices().signed_in`), so "another" is any
/// known device but this one. Two first sign-ins at the same moment from two browsers
/// both see the other and both mail: the safe side.
pub async fn new_device_mail_due(state: &AppState, s: &SignedIn) -> Result<bool, StoreError> {
    if !state.config.account.new_device_mail || s.known_before || s.device.is_empty() {
        return Ok(false);
    }
    state
        .db
        .known_devices()
        .knows_another(s.user.id, &s.device)
        .await
}

/// After the answer to a successful sign-in: the new-device mail, when due. It never
/// delays or fails the sign-in; a failure is logged. The job row is written right after
/// the sign-in rather than with the device row: that one is written before the answer,
/// and a mail (a lookup, sealing, an insert) must not make the member wait. Shutdown
/// waits for `background`, so only a crash in between loses the mail.
pub fn after_sign_in(state: &AppState, signed_in: SignedIn) {
    let state = state.clone();
    state.background.clone().spawn(async move {
        match mail_if_new(&state, &signed_in).await {
            Ok(true) => {
                tracing::info!(user = %signed_in.user.id.0, "sign-in from a new device; the member is mailed");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, user = %signed_in.user.id.0, "cannot queue the new-device mail");
            }
        }
    });
}

/// Queues the new-device mail if due; whether it did.
async fn mail_if_new(state: &AppState, s: &SignedIn) -> Result<bool, RiskError> {
    if !new_device_mail_due(state, s).await? {
        return Ok(false);
    }
    let user = &s.user;
    let lang = user_lang(user, Lang::default());
    let offset = state.config.throttle.display_offset();
    let at = format!("{}{}", minute(s.at, offset), zone(offset, lang));
    let sessions = link(state, SESSIONS, &[]);
    let reset = link(state, FORGOT, &[]);
    let mail = templates::new_device(
        lang,
        user.email.display(),
        &user.display_name,
        &NewDeviceSignIn {
            at: &at,
            device: &Device::of(&s.user_agent).describe(lang),
            ip: &s.ip.to_string(),
            sessions: &sessions,
            reset: &reset,
        },
    );
    queue_mail(state, &mail).await.map_err(RiskError::Queue)?;
    Ok(true)
}

/// The zone after a time in a mail: a mail is read anywhere, so it says which clock.
pub(crate) fn zone(offset: UtcOffset, lang: Lang) -> String {
    let (h, m, _) = offset.as_hms();
    match (h, m, lang) {
        (9, 0, Lang::Ja) => "（日本時間）".to_owned(),
        (9, 0, Lang::En) => " (JST)".to_owned(),
        (0, 0, _) => " (UTC)".to_owned(),
        _ => {
            let sign = if offset.is_negative() { '-' } else { '+' };
            format!(" (UTC{sign}{:02}:{:02})", h.abs(), m.abs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mails_time_names_its_zone() {
        let jst = UtcOffset::from_hms(9, 0, 0).unwrap();
        assert_eq!(zone(jst, Lang::Ja), "（日本時間）");
        assert_eq!(zone(jst, Lang::En), " (JST)");
        assert_eq!(zone(UtcOffset::UTC, Lang::Ja), " (UTC)");
        let nyc = UtcOffset::from_hms(-5, -30, 0).unwrap();
        assert_eq!(zone(nyc, Lang::En), " (UTC-05:30)");
    }

    #[test]
    fn the_new_device_mail_escapes_what_the_browser_said_in_its_html() {
        let device = "<script>x</script>";
        let s = NewDeviceSignIn {
            at: "2026-12-04 15:42（日本時間）",
            device,
            ip: "203.0.113.7",
            sessions: "https://id.example.jp/account/sessions",
            reset: "https://id.example.jp/password/forgot",
        };
        let m = templates::new_device(Lang::Ja, "a@example.jp", "花子", &s);
        assert_eq!(m.subject, "【Tobira】新しい端末からログインがありました");
        assert!(m.text.starts_with("花子 様"));
        for part in [s.at, device, s.ip, s.sessions, s.reset] {
            assert!(m.text.contains(part), "{part} in {}", m.text);
        }
        assert!(!m.html.contains("<script>"), "{}", m.html);
        assert!(
            m.html
                .contains(r#"href="https://id.example.jp/account/sessions""#)
        );
        let en = templates::new_device(Lang::En, "a@example.jp", "", &s);
        assert_eq!(en.subject, "[Tobira] New sign-in to your account");
        assert!(en.text.starts_with("Hello a@example.jp,"));
    }
}
