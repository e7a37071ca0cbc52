//! Deletion (退会, `/account/delete`, and `tobira users delete`): the page says in plain
//! words what happens, the member signs in again and types their address, and then
//! [`delete_account`] ends everything in one transaction: sign-in is refused, sessions,
//! grants and tokens end, clients get a back-channel logout, mailed links die, the
//! address is held back from signing up again for `account.reregister_cooldown_days`,
//! a mail confirms it, and the audit log records who deleted it (the member, support at
//! the CLI, an admin API client). The personal data stays `account.retention_days` for the purge.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use time::{Duration, OffsetDateTime, UtcOffset};

use super::FormError;
use super::console::minute;
use super::reauth::RecentSession;
use super::user_lang;
use crate::Config;
use crate::admin::audit::{self, Context, Target};
use crate::authn::risk::zone;
use crate::domain::{Email, User, UserStatus};
use crate::keys::{IdentifierHasher, KeyError, MasterKey};
use crate::mail::templates::{self, Deletion};
use crate::state::AppState;
use crate::store::{Db, QueuedMail, ReregistrationBlock, StoreError};
use crate::web::client_ip::ClientAddr;
use crate::web::cookies::SESSION;
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render};

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot seal the deletion mail: {0}")]
    Seal(#[from] KeyError),
}

/// Deletes `user`'s account (the page, the CLI and the admin API all come here), as `ctx`
/// asks (`user.delete`, recorded with the deletion). `false` when it was deleted already:
/// nothing is ended, blocked, mailed or recorded a second time.
///
/// An account still awaiting verification gets neither a mail nor a block: its address
/// was never proven to be its member's, and whoever signed up with someone else's address
/// must not be able to send that inbox a mail or keep its owner from signing up.
pub async fn delete_account(
    db: &Db,
    master: &MasterKey,
    identifiers: &IdentifierHasher,
    config: &Config,
    ctx: &Context,
    now: OffsetDateTime,
    user: &User,
) -> Result<bool, DeleteError> {
    if user.status == UserStatus::Deleted {
        return Ok(false);
    }
    let proven = user.status != UserStatus::Unverified;
    let cooldown = Duration::days(config.account.reregister_cooldown_days.into());
    let until = if proven && cooldown > Duration::ZERO {
        // Whole minutes, so that the time the mails state is exactly when the block ends.
        minute_up(now + cooldown)
    } else {
        // Not after now: the store keeps no block.
        now
    };
    let mail = if proven {
        let mail = deletion_mail(config, now, until, user);
        Some(QueuedMail {
            payload: mail.seal(master)?,
        })
    } else {
        None
    };
    let block = ReregistrationBlock {
        email_digest: identifiers.email_digest(&user.email),
        until,
    };
    let record = audit::event(
        now,
        ctx,
        "user.delete",
        Target::User(user.id),
        serde_json::json!({
            "retention_days": config.account.retention_days,
            "reregistration_blocked": until > now,
        }),
    );
    Ok(db
        .accounts()
        .delete(now, user.id, block, mail, &record)
        .await?)
}

fn deletion_mail(
    config: &Config,
    now: OffsetDateTime,
    until: OffsetDateTime,
    user: &User,
) -> crate::mail::Mail {
    let lang = user_lang(user, Lang::default());
    let offset = config.throttle.display_offset();
    let retention = config.account.retention_days;
    let erased_from = in_words(now + Duration::days(retention.into()), offset, lang);
    let again_from = (until > now).then(|| in_words(until, offset, lang));
    let support = Some(config.account.support_contact.trim()).filter(|s| !s.is_empty());
    templates::account_deleted(
        lang,
        user.email.display(),
        &user.display_name,
        &Deletion {
            retention_days: retention,
            erased_from: &erased_from,
            again_from: again_from.as_deref(),
            support,
        },
    )
}

/// A time for a mail: the minute, with the clock it is on ("2027-01-03 15:42（日本時間）").
pub fn in_words(t: OffsetDateTime, offset: UtcOffset, lang: Lang) -> String {
    format!("{}{}", minute(t, offset), zone(offset, lang))
}

/// The first whole minute at or after `t`.
fn minute_up(t: OffsetDateTime) -> OffsetDateTime {
    let into_minute =
        Duration::seconds(t.second().into()) + Duration::nanoseconds(t.nanosecond().into());
    if into_minute.is_zero() {
        t
    } else {
        t - into_minute + Duration::MINUTE
    }
}

#[derive(Template)]
#[template(path = "account_delete.html")]
struct DeletePage<'a> {
    lang: Lang,
    csrf: &'a str,
    email: &'a str,
    /// What is kept, and when the address is free again, with the configured days.
    kept: String,
    again: String,
    error: Option<FormError>,
    /// After the deletion: what the page says instead of the form.
    done: Option<&'static str>,
    /// Why the account cannot be deleted yet (instead of the form).
    held: Option<String>,
}

impl DeletePage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

fn page<'a>(state: &AppState, lang: Lang, csrf: &'a str, email: &'a str) -> DeletePage<'a> {
    let days = |m: Msg, n: u32| m.text(lang).replace("{days}", &n.to_string());
    let account = &state.config.account;
    DeletePage {
        lang,
        csrf,
        email,
        kept: days(Msg::DeleteKept, account.retention_days),
        again: if account.reregister_cooldown_days == 0 {
            Msg::DeleteAgainAtOnce.text(lang).to_owned()
        } else {
            days(Msg::DeleteAgainAfter, account.reregister_cooldown_days)
        },
        error: None,
        done: None,
        held: None,
    }
}

/// Why the account cannot be deleted now, if it cannot: its address was changed less
/// than the undo's lifetime ago. Until the old address's undo link runs out its owner
/// may still take the account back; deleting would destroy that (someone who took the
/// account over knows the password, so re-authentication does not stop them).
async fn held_back(
    state: &AppState,
    user: &User,
    lang: Lang,
) -> Result<Option<String>, StoreError> {
    let now = state.clock.now();
    let until = state
        .db
        .email_changes()
        .undo_open_until(user.id, now)
        .await?;
    let offset = state.config.throttle.display_offset();
    Ok(until.map(|t| {
        Msg::DeleteHeldByUndo
            .text(lang)
            .replace("{until}", &in_words(minute_up(t), offset, lang))
    }))
}

/// `GET /account/delete`: what happens, and the form (after a recent sign-in).
pub async fn get_delete(
    State(state): State<AppState>,
    RecentSession(current): RecentSession,
    headers: HeaderMap,
    request_id: RequestId,
) -> Response {
    let lang = page_lang(None, Some(&current.user.locale), &headers);
    let held = match held_back(&state, &current.user, lang).await {
        Ok(held) => held,
        Err(e) => {
            tracing::error!(error = %e, "account deletion page failed");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                Msg::ServerError,
                request_id.0,
            );
        }
    };
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    let mut page = page(&state, lang, &csrf, current.user.email.display());
    page.held = held;
    render(StatusCode::OK, &page, set_cookie.as_slice())
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
    /// The account's address, typed by the member as the confirmation.
    #[serde(default)]
    confirm: String,
}

/// `POST /account/delete`. A second submission finds no live session (the first ended
/// it) and is sent to sign in, where a deleted account cannot; one that raced the first
/// past the session check finds the account deleted and changes nothing.
pub async fn post_delete(
    State(state): State<AppState>,
    RecentSession(current): RecentSession,
    headers: HeaderMap,
    request_id: RequestId,
    ClientAddr(ip): ClientAddr,
    CsrfForm(form): CsrfForm<DeleteForm>,
) -> Response {
    let user = &current.user;
    let lang = page_lang(None, Some(&user.locale), &headers);
    // Compared as addresses (case, width and spaces do not matter), never as raw text.
    let confirmed = Email::parse(&form.confirm)
        .is_ok_and(|typed| typed.normalized() == user.email.normalized());
    if !confirmed {
        let mut again = page(&state, lang, &form.csrf, user.email.display());
        again.error = Some(FormError::new(Msg::DeleteConfirmMismatch, None, lang));
        return render(StatusCode::BAD_REQUEST, &again, &[]);
    }
    match held_back(&state, user, lang).await {
        Ok(None) => {}
        Ok(Some(held)) => {
            let mut again = page(&state, lang, &form.csrf, user.email.display());
            again.held = Some(held);
            return render(StatusCode::CONFLICT, &again, &[]);
        }
        Err(e) => {
            tracing::error!(error = %e, user = %user.id.0, "account deletion failed");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                Msg::ServerError,
                request_id.0,
            );
        }
    }
    let ctx = audit::member(
        user.id,
        ip.to_string(),
        request_id.0.clone().unwrap_or_default(),
    );
    let deleted = delete_account(
        &state.db,
        &state.master,
        &state.identifiers,
        &state.config,
        &ctx,
        state.clock.now(),
        user,
    )
    .await;
    let notice = match deleted {
        Ok(true) => {
            tracing::info!(user = %user.id.0, "account deleted by its member");
            Msg::DeleteDone
        }
        Ok(false) => {
            tracing::info!(user = %user.id.0, "account deletion submitted again: nothing changed");
            Msg::DeleteAlreadyDone
        }
        Err(e) => {
            tracing::error!(error = %e, user = %user.id.0, "account deletion failed");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                Msg::ServerError,
                request_id.0,
            );
        }
    };
    // The browser's session ended with the account: its cookie goes too.
    let cookies = [state.cookies.clear(SESSION)];
    let mut done = page(&state, lang, "", "");
    done.done = Some(notice.text(lang));
    render(StatusCode::OK, &done, &cookies)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn a_block_ends_on_a_whole_minute_never_before_the_cooldown() {
        let exact = datetime!(2027-01-03 06:42:00 UTC);
        assert_eq!(minute_up(exact), exact);
        let later = datetime!(2027-01-03 06:42:00.000_001 UTC);
        assert_eq!(minute_up(later), datetime!(2027-01-03 06:43:00 UTC));
        assert_eq!(
            minute_up(datetime!(2027-01-03 06:42:59 UTC)),
            datetime!(2027-01-03 06:43:00 UTC)
        );
    }

    #[test]
    fn a_mail_names_the_clock_of_its_times() {
        let jst = UtcOffset::from_hms(9, 0, 0).unwrap();
        let t = datetime!(2027-01-03 06:42:00 UTC);
        assert_eq!(in_words(t, jst, Lang::Ja), "2027-01-03 15:42（日本時間）");
        assert_eq!(in_words(t, jst, Lang::En), "2027-01-03 15:42 (JST)");
        assert_eq!(
            in_words(t, UtcOffset::UTC, Lang::En),
            "2027-01-03 06:42 (UTC)"
        );
    }
}
