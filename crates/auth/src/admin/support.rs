//! Support's actions on one account (`tobira users freeze | unfreeze | sign-out |
//! reset-2fa`, and the admin API's `/users/{id}/…`): plain functions over the store, so
//! the CLI runs them without a server. Each takes the account and who acts (an audit
//! [`Context`]); the change, the sessions and grants it ends, the back-channel logouts,
//! the history entry, the member's mail and the audit record are one transaction where
//! the store allows it (`store::AccountRepo`, `store::TwoStepRepo`).

use serde_json::json;
use time::Duration;
use uuid::Uuid;

use super::audit::{self, Actor, Context, Target};
use crate::account::user_lang;
use crate::authn::second_step::METHOD_TWO_STEP;
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::{BrowserSession, Email, EmailError, User, UserStatus};
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
    /// A deleted account is past every action but the purge.
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

/// Support's reason for a freeze: trimmed, not empty, at most [`MAX_REASON`] characters,
/// no control characters. The CLI and the API parse it before anything is looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    pub fn parse(typed: &str) -> Result<Self, SupportError> {
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
        Ok(Self(reason.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A freeze as support asks for it.
#[derive(Clone, Debug)]
pub struct Freeze {
    pub reason: Reason,
    /// Tell the member the reason in the mail too (it is kept for support either way).
    pub tell_reason: bool,
}

/// The account (not deleted) with this address; an error names a bad address or a
/// missing account. How the CLI names accounts; the API names them by id.
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

/// Refuses a deleted account: it has nothing left to end, and its member must not be
/// mailed again after the deletion's confirmation.
fn not_deleted(user: &User) -> Result<(), SupportError> {
    match user.status {
        UserStatus::Deleted => Err(SupportError::NotActive(UserStatus::Deleted)),
        _ => Ok(()),
    }
}

/// Freezes `user`'s account: sign-in is refused (after the right password, with the
/// support contact), every session, grant and refresh token ends with back-channel
/// logouts, and the member is mailed, with the reason only when `tell_reason`. The
/// reason is kept for support either way, and recorded (`user.freeze`).
pub async fn freeze(
    db: &Db,
    master: &MasterKey,
    config: &Config,
    clock: &Clock,
    ctx: &Context,
    user: &User,
    how: &Freeze,
) -> Result<Outcome, SupportError> {
    let reason = how.reason.as_str();
    match user.status {
        UserStatus::Active => {}
        UserStatus::Frozen => return Ok(Outcome::Unchanged),
        other => return Err(SupportError::NotActive(other)),
    }
    let mail = templates::account_frozen(
        user_lang(user, Lang::Ja),
        user.email.display(),
        &user.display_name,
        how.tell_reason.then_some(reason),
        contact(config),
    );
    let now = clock.now();
    let record = audit::event(
        now,
        ctx,
        "user.freeze",
        Target::User(user.id),
        json!({ "reason": reason, "reason_mailed": how.tell_reason }),
    );
    let frozen = db
        .accounts()
        .freeze(now, user.id, reason, sealed(&mail, master)?, &record)
        .await?;
    if frozen {
        tracing::info!(user = %user.id.0, "support froze an account");
        return Ok(Outcome::Changed);
    }
    // Changed meanwhile (another freeze, a deletion): say what it is now.
    changed_meanwhile(db, user, UserStatus::Frozen).await
}

/// Lifts the freeze of `user`'s account; the member is mailed (`user.unfreeze`).
pub async fn unfreeze(
    db: &Db,
    master: &MasterKey,
    config: &Config,
    clock: &Clock,
    ctx: &Context,
    user: &User,
) -> Result<Outcome, SupportError> {
    if user.status != UserStatus::Frozen {
        return Ok(Outcome::Unchanged);
    }
    let mail = templates::account_unfrozen(
        user_lang(user, Lang::Ja),
        user.email.display(),
        &user.display_name,
        contact(config),
    );
    let now = clock.now();
    let record = audit::event(now, ctx, "user.unfreeze", Target::User(user.id), json!({}));
    let lifted = db
        .accounts()
        .unfreeze(now, user.id, sealed(&mail, master)?, &record)
        .await?;
    if lifted {
        tracing::info!(user = %user.id.0, "support lifted a freeze");
        return Ok(Outcome::Changed);
    }
    changed_meanwhile(db, user, UserStatus::Active).await
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

/// Ends every session and grant of `user`'s account (with back-channel logouts) without
/// freezing it: the member can sign in again at once. How many sessions ended; the
/// record (`user.sign_out`) says so too.
pub async fn sign_out(
    db: &Db,
    clock: &Clock,
    ctx: &Context,
    user: &User,
) -> Result<u64, SupportError> {
    not_deleted(user)?;
    let now = clock.now();
    let record = |ended: u64| {
        audit::event(
            now,
            ctx,
            "user.sign_out",
            Target::User(user.id),
            json!({ "sessions_ended": ended }),
        )
    };
    let ended = db
        .accounts()
        .sign_out_everywhere(now, user.id, None, record)
        .await?;
    tracing::info!(user = %user.id.0, ended, "support signed an account out everywhere");
    Ok(ended)
}

/// The live sessions of `user`'s account (the rule of the member's own list), the most
/// recently active first.
pub async fn sessions(
    db: &Db,
    clock: &Clock,
    idle: Duration,
    user: &User,
) -> Result<Vec<BrowserSession>, SupportError> {
    Ok(db.sessions().list_live(user.id, clock.now(), idle).await?)
}

/// Ends one live session of `user`'s account, as the member's "sign out this device"
/// does: its short-lived grants go, the clients it signed in to get a back-channel
/// logout, and an email change waiting for its link dies with it (`user.session_end`).
/// `false` when it is no live session of this account: one of another account's is
/// never ended through this one.
pub async fn end_session(
    db: &Db,
    clock: &Clock,
    idle: Duration,
    ctx: &Context,
    user: &User,
    session: Uuid,
) -> Result<bool, SupportError> {
    let now = clock.now();
    let live = db.sessions().list_live(user.id, now, idle).await?;
    let Some(target) = live.iter().find(|s| s.id == session) else {
        return Ok(false);
    };
    let record = audit::event(
        now,
        ctx,
        "user.session_end",
        Target::User(user.id),
        json!({ "count": 1, "session": target.id, "sid": target.sid }),
    );
    let ended = db
        .sessions()
        .end_of(now, user.id, target.id, &record)
        .await?;
    if ended {
        tracing::info!(user = %user.id.0, session = %target.id, "support ended a session");
    }
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

/// The channel support acted through, as the member's history names it.
fn channel(ctx: &Context) -> String {
    match &ctx.actor {
        Actor::Client(client_id) => format!("admin API, {client_id}"),
        _ => "tobira CLI".to_owned(),
    }
}

/// Turns two-step verification off for `user`'s account, for a member who lost every
/// second factor and every recovery code: the authenticator app, email codes, recovery
/// codes and remembered devices go, the history says support did it (and through which
/// channel), and the member is mailed — in one transaction, so there is no reset the
/// member is not told of, nor one the audit log lacks (`user.reset_2fa`). The password
/// alone signs in afterwards.
pub async fn reset_two_step(
    db: &Db,
    master: &MasterKey,
    config: &Config,
    clock: &Clock,
    ctx: &Context,
    user: &User,
) -> Result<TwoStepReset, SupportError> {
    not_deleted(user)?;
    let factors = db.two_step().factors(user.id).await?;
    if !factors.any() && factors.recovery_left == 0 {
        return Ok(TwoStepReset::NotOn);
    }
    let now = clock.now();
    let via = channel(ctx);
    let mail = templates::two_step_reset(
        user_lang(user, Lang::Ja),
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
    let record = audit::event(
        now,
        ctx,
        "user.reset_2fa",
        Target::User(user.id),
        json!({
            "totp": factors.totp,
            "email_codes": factors.email,
            "recovery_codes": factors.recovery_left,
        }),
    );
    db.two_step()
        .audited(record)
        .disable_all(now, user.id, change)
        .await?;
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
        assert_eq!(
            Reason::parse("  規約違反の疑い ").unwrap().as_str(),
            "規約違反の疑い"
        );
        assert!(matches!(
            Reason::parse(" \t "),
            Err(SupportError::ReasonEmpty)
        ));
        assert!(Reason::parse(&"あ".repeat(MAX_REASON)).is_ok());
        assert!(matches!(
            Reason::parse(&"あ".repeat(MAX_REASON + 1)),
            Err(SupportError::ReasonTooLong)
        ));
        for bad in ["line\nbreak", "esc\u{1b}[31m", "nul\0"] {
            assert!(
                matches!(Reason::parse(bad), Err(SupportError::ReasonControl)),
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
