//! Support's actions on one account (`tobira users freeze | unfreeze | sign-out |
//! reset-2fa`): plain functions over the store, so the CLI runs them without a server.
//! Each change, the sessions and grants it ends, the back-channel logouts, the history
//! entry and the member's mail are one transaction (`store::AccountRepo`,
//! `store::TwoStepRepo`).

use uuid::Uuid;

use crate::account::user_lang;
use crate::authn::second_step::METHOD_TWO_STEP;
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::{Email, EmailError, User, UserStatus};
use crate::keys::{KeyError, MasterKey};
use crate::mail::{Mail, templates};
use crate::store::{Db, FactorChange, Factors, LoginEvent, LoginResult, QueuedMail, StoreError};
use crate::web::i18n::{Lang, Msg};

/// The `ip` of a history entry support made: no member's browser was involved, and the
/// member reading the history must see that it was support, not a stranger.
pub const SUPPORT_IP: &str = "support";

/// The longest reason support may give; the column holds this many characters.
pub const MAX_REASON: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    #[error(transparent)]
    Email(#[from] EmailError),
    #[error("no account with the email address {0}")]
    NoAccount(String),
    #[error("the reason is empty")]
    ReasonEmpty,
    #[error("the reason is longer than {MAX_REASON} characters")]
    ReasonTooLong,
    /// A line break or escape sequence would garble the mail and the CLI's output.
    #[error("the reason contains control characters (line breaks included)")]
    ReasonControl,
    /// Only an active account can be frozen: an unverified sign-up has no way in to stop.
    #[error("the account is {}, not active: nothing changed", .0.as_str())]
    NotActive(UserStatus),
    #[error("cannot seal the mail: {0}")]
    Seal(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SupportError {
    /// The message for a person, when the catalogue has one.
    pub fn message(&self, lang: Lang) -> Option<&'static str> {
        match self {
            Self::Email(e) => Some(Msg::from(*e).text(lang)),
            _ => None,
        }
    }
}

/// What a freeze or unfreeze did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The account changed and its member was mailed.
    Changed,
    /// It was already so (frozen, or not frozen): nothing changed, nothing was mailed.
    Unchanged,
}

/// Support's reason, trimmed; refused when empty, too long, or holding control characters.
fn reason(typed: &str) -> Result<&str, SupportError> {
    let reason = typed.trim();
    if reason.is_empty() {
        return Err(SupportError::ReasonEmpty);
    }
    if reason.chars().count() > MAX_REASON {
        return Err(SupportError::ReasonTooLong);
    }
    if reason.chars().any(char::is_control) {
        return Err(SupportError::ReasonControl);
    }
    Ok(reason)
}

/// The account (not deleted) with this address; an error names a bad address or a
/// missing account.
pub async fn account(db: &Db, email: &str) -> Result<User, SupportError> {
    let parsed = Email::parse(email)?;
    db.users()
        .find_by_email(&parsed)
        .await?
        .ok_or_else(|| SupportError::NoAccount(parsed.display().to_owned()))
}

/// How a frozen account reaches support, if configuration says.
fn contact(config: &Config) -> Option<&str> {
    Some(config.account.support_contact.as_str()).filter(|c| !c.is_empty())
}

fn sealed(mail: &Mail, master: &MasterKey) -> Result<QueuedMail, SupportError> {
    Ok(QueuedMail {
        payload: mail.seal(master)?,
    })
}

/// Freezes the account of `email`: sign-in is refused (after the right password, with
/// the support contact), every session, grant and refresh token ends with back-channel
/// logouts, and the member is mailed, with `reason` only when `tell_reason`. The reason
/// is kept for support either way.
pub async fn freeze(
    db: &Db,
    master: &MasterKey,
    config: &Config,
    clock: &Clock,
    email: &str,
    reason_typed: &str,
    tell_reason: bool,
) -> Result<Outcome, SupportError> {
    // A bad reason is refused before anything is looked up or written.
    let reason = reason(reason_typed)?;
    let user = account(db, email).await?;
    match user.status {
        UserStatus::Active => {}
        UserStatus::Frozen => return Ok(Outcome::Unchanged),
        other => return Err(SupportError::NotActive(other)),
    }
    let mail = templates::account_frozen(
        user_lang(&user, Lang::Ja),
        user.email.display(),
        &user.display_name,
        tell_reason.then_some(reason),
        contact(config),
    );
    let frozen = db
        .accounts()
        .freeze(clock.now(), user.id, reason, sealed(&mail, master)?)
        .await?;
    if frozen {
        tracing::info!(user = %user.id.0, "support froze an account");
        return Ok(Outcome::Changed);
    }
    // Changed meanwhile (another freeze, a deletion): say what it is now.
    changed_meanwhile(db, &user, UserStatus::Frozen).await
}

/// Lifts the freeze of the account of `email`; the member is mailed.
pub async fn unfreeze(
    db: &Db,
    master: &MasterKey,
    config: &Config,
    clock: &Clock,
    email: &str,
) -> Result<Outcome, SupportError> {
    let user = account(db, email).await?;
    if user.status != UserStatus::Frozen {
        return Ok(Outcome::Unchanged);
    }
    let mail = templates::account_unfrozen(
        user_lang(&user, Lang::Ja),
        user.email.display(),
        &user.display_name,
        contact(config),
    );
    let lifted = db
        .accounts()
        .unfreeze(clock.now(), user.id, sealed(&mail, master)?)
        .await?;
    if lifted {
        tracing::info!(user = %user.id.0, "support lifted a freeze");
        return Ok(Outcome::Changed);
    }
    changed_meanwhile(db, &user, UserStatus::Active).await
}

/// The answer when the store found the account no longer in the state it was read in:
/// unchanged if it is already where support wanted it, refused otherwise.
async fn changed_meanwhile(
    db: &Db,
    user: &User,
    wanted: UserStatus,
) -> Result<Outcome, SupportError> {
    let now = db.users().find_by_id(user.id).await?;
    match now.map(|u| u.status) {
        Some(status) if status == wanted => Ok(Outcome::Unchanged),
        Some(status) => Err(SupportError::NotActive(status)),
        None => Err(SupportError::NoAccount(user.email.display().to_owned())),
    }
}

/// Ends every session and grant of the account of `email` (with back-channel logouts)
/// without freezing it: the member can sign in again at once. How many sessions ended.
pub async fn sign_out(db: &Db, clock: &Clock, email: &str) -> Result<u64, SupportError> {
    let user = account(db, email).await?;
    let ended = db
        .accounts()
        .sign_out_everywhere(clock.now(), user.id, None)
        .await?;
    tracing::info!(user = %user.id.0, ended, "support signed an account out everywhere");
    Ok(ended)
}

/// What `reset_two_step` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwoStepReset {
    /// These factors were turned off, the member was mailed and the history records it.
    Reset(Factors),
    /// The account had no second step: nothing changed, nothing was mailed.
    NotOn,
}

/// Turns two-step verification off for the account of `email`, for a member who lost
/// every second factor and every recovery code: the authenticator app, email codes,
/// recovery codes and remembered devices go, the history says support did it (`via`
/// names the channel, "tobira CLI"), and the member is mailed — in one transaction, so
/// there is no reset the member is not told of. The password alone signs in afterwards.
pub async fn reset_two_step(
    db: &Db,
    master: &MasterKey,
    config: &Config,
    clock: &Clock,
    email: &str,
    via: &str,
) -> Result<TwoStepReset, SupportError> {
    let user = account(db, email).await?;
    let factors = db.two_step().factors(user.id).await?;
    if !factors.any() && factors.recovery_left == 0 {
        return Ok(TwoStepReset::NotOn);
    }
    let now = clock.now();
    let mail = templates::two_step_reset(
        user_lang(&user, Lang::Ja),
        user.email.display(),
        &user.display_name,
        &config.issuer.endpoint(crate::account::ACCOUNT),
        contact(config),
    );
    let change = FactorChange {
        event: LoginEvent {
            id: Uuid::new_v4(),
            user: user.id,
            at: now,
            ip: SUPPORT_IP.to_owned(),
            user_agent: format!("support ({via})"),
            device_hash: String::new(),
            method: METHOD_TWO_STEP.to_owned(),
            result: LoginResult::Removed,
            new_device: false,
        },
        mail: Some(sealed(&mail, master)?),
    };
    db.two_step().disable_all(now, user.id, change).await?;
    tracing::info!(user = %user.id.0, via, "support turned two-step verification off");
    Ok(TwoStepReset::Reset(factors))
}

/// What the sign-in page tells a frozen account (after its right password): to contact
/// support, at `contact` when configuration names one.
pub fn frozen_notice(contact: &str, lang: Lang) -> String {
    if contact.is_empty() {
        return Msg::AccountUnavailable.text(lang).to_owned();
    }
    let gap = if lang == Lang::Ja { "" } else { " " };
    format!(
        "{}{gap}{contact}",
        Msg::AccountUnavailableContact.text(lang)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_trimmed_and_refused_when_empty_long_or_with_control_characters() {
        assert_eq!(reason("  規約違反の疑い ").unwrap(), "規約違反の疑い");
        assert!(matches!(reason(" \t "), Err(SupportError::ReasonEmpty)));
        assert!(reason(&"あ".repeat(MAX_REASON)).is_ok());
        assert!(matches!(
            reason(&"あ".repeat(MAX_REASON + 1)),
            Err(SupportError::ReasonTooLong)
        ));
        for bad in ["line\nbreak", "esc\u{1b}[31m", "nul\0"] {
            assert!(
                matches!(reason(bad), Err(SupportError::ReasonControl)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_freeze_mail_tells_the_reason_only_when_asked_and_escapes_it_in_html() {
        let told = templates::account_frozen(
            Lang::Ja,
            "a@example.jp",
            "<b>花子</b>",
            Some("<script>x</script> & 規約"),
            Some("support@example.jp"),
        );
        assert_eq!(told.subject, "【Tobira】アカウントの利用を停止しました");
        assert!(told.text.starts_with("<b>花子</b> 様"));
        assert!(told.text.contains("<script>x</script> & 規約"));
        assert!(told.text.contains("サポート（support@example.jp）"));
        assert!(!told.html.contains("<script>") && !told.html.contains("<b>花子"));
        assert!(told.html.contains("support@example.jp"));

        let untold = templates::account_frozen(Lang::En, "a@example.jp", "", None, None);
        assert_eq!(untold.subject, "[Tobira] Your account has been suspended");
        assert!(untold.text.starts_with("Hello a@example.jp,"));
        assert!(!untold.text.contains("reason") && !untold.html.contains("reason"));
        assert!(untold.text.contains("please contact support."));

        let back = templates::account_unfrozen(
            Lang::En,
            "a@example.jp",
            "",
            Some("https://help.example.jp"),
        );
        assert_eq!(back.subject, "[Tobira] Your account can be used again");
        assert!(
            back.text
                .contains("contact support: https://help.example.jp")
        );
    }

    #[test]
    fn the_two_step_reset_mail_says_how_to_sign_in_and_whom_to_tell_and_escapes_html() {
        let ja = templates::two_step_reset(
            Lang::Ja,
            "a@example.jp",
            "<b>花子</b>",
            "https://id.example.jp/account",
            Some("support@example.jp"),
        );
        assert_eq!(
            ja.subject,
            "【Tobira】サポートにより二段階認証が解除されました"
        );
        assert!(ja.text.starts_with("<b>花子</b> 様"));
        assert!(ja.text.contains("パスワードだけでログインできます"));
        assert!(ja.text.contains("https://id.example.jp/account"));
        assert!(ja.text.contains("サポート（support@example.jp）"));
        assert!(!ja.html.contains("<b>花子"));
        assert!(ja.html.contains(r#"href="https://id.example.jp/account""#));

        let en = templates::two_step_reset(
            Lang::En,
            "a@example.jp",
            "",
            "https://id.example.jp/account",
            None,
        );
        assert_eq!(
            en.subject,
            "[Tobira] Support turned off your two-step verification"
        );
        assert!(en.text.starts_with("Hello a@example.jp,"));
        assert!(en.text.contains("sign in with your password alone"));
        assert!(
            en.text
                .contains("If you did not ask for this, please contact support at once.")
        );
        assert!(en.html.contains("please contact support at once."));
    }

    #[test]
    fn the_frozen_notice_names_the_contact_when_there_is_one() {
        assert_eq!(
            frozen_notice("", Lang::En),
            Msg::AccountUnavailable.text(Lang::En)
        );
        assert_eq!(
            frozen_notice("help@example.jp", Lang::En),
            "This account cannot be used at the moment. Please contact support: help@example.jp"
        );
        assert!(
            frozen_notice("help@example.jp", Lang::Ja).ends_with("お問い合わせ先：help@example.jp")
        );
    }
}
