//! The new address's link (`/account/email/confirm`): the page it opens and the change
//! it makes, with the mail that tells the old address and carries its undo link.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{Failure, LinkForm, Refusal, UNDO_LIFETIME, failed, token_hash};
use crate::account::audit_ctx::AuditOrigin;
use crate::account::{EMAIL_UNDO, PageQuery, link, user_lang};
use crate::authn::session;
use crate::crypto::{random_token, sha256_hex};
use crate::domain::{Email, User, UserStatus};
use crate::mail::templates;
use crate::state::AppState;
use crate::store::{Confirmed, NewLink, PendingChange, QueuedMail, StoreError};
use crate::web::cookies::SESSION;
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render};

/// The new address as the old address's mail shows it ("t***@example.com"). The member
/// who made the change recognises it, one who did not undoes it either way, and the old
/// mailbox may no longer be the member's alone (a former employer's, a recycled address):
/// it must not learn in full where the member went.
pub(crate) fn masked(email: &Email) -> String {
    match email.display().rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

#[derive(Template)]
#[template(path = "account_email_confirm.html")]
struct ConfirmPage<'a> {
    lang: Lang,
    csrf: &'a str,
    token: &'a str,
    /// The new address.
    email: &'a str,
    done: bool,
    /// Why the change cannot be made (instead of the form).
    refused: Option<String>,
}

impl ConfirmPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// A live confirmation link: its hash, the change, the account, and the page language.
struct Confirmation {
    hash: String,
    change: PendingChange,
    user: User,
    lang: Lang,
}

/// The change a confirmation link names, for this browser.
async fn confirmation(
    state: &AppState,
    headers: &HeaderMap,
    explicit: Option<&str>,
    token: &str,
) -> Result<Confirmation, Refusal> {
    let hash = token_hash(token).ok_or(Refusal::LinkDead)?;
    let change = state
        .db
        .email_changes()
        .lookup(&hash, state.clock.now())
        .await?
        .ok_or(Refusal::LinkDead)?;
    let user = state
        .db
        .users()
        .find_by_id(change.user)
        .await?
        .ok_or(Refusal::LinkDead)?;
    let lang = page_lang(explicit, Some(&user.locale), headers);
    // The link proves the mailbox; the request came from the account's re-authenticated
    // member. A browser showing another account must not change this one unnoticed.
    let secret = state.cookies.get(headers, SESSION);
    let signed_in =
        session::current(&state.db, &state.clock, &state.sessions, secret.as_deref()).await?;
    if signed_in.is_some_and(|s| s.user_id != user.id) {
        return Err(Refusal::OtherAccount(lang));
    }
    if user.status != UserStatus::Active || user.reset_required {
        return Err(Refusal::AccountUnavailable(lang));
    }
    Ok(Confirmation {
        hash,
        change,
        user,
        lang,
    })
}

/// `GET /account/email/confirm?token=`: what the link changes, and a button. Opening the
/// link changes nothing, so a mail scanner that fetches it does not spend it.
pub async fn get_confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Query(q): Query<PageQuery>,
) -> Response {
    let c = match confirmation(&state, &headers, q.lang.as_deref(), &q.token).await {
        Ok(c) => c,
        Err(refusal) => return refusal.respond(q.lang.as_deref(), &headers, request_id),
    };
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    let page = ConfirmPage {
        lang: c.lang,
        csrf: &csrf,
        token: &q.token,
        email: c.change.email.display(),
        done: false,
        refused: None,
    };
    render(StatusCode::OK, &page, set_cookie.as_slice())
}

/// `POST /account/email/confirm`: the change, the old address's mail with its undo link,
/// in one transaction.
pub async fn post_confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    origin: AuditOrigin,
    CsrfForm(form): CsrfForm<LinkForm>,
) -> Response {
    let c = match confirmation(&state, &headers, form.lang.as_deref(), &form.token).await {
        Ok(c) => c,
        Err(refusal) => return refusal.respond(form.lang.as_deref(), &headers, request_id),
    };
    let lang = c.lang;
    // An address a deleted account left is held back from new sign-ups for the cooldown;
    // moving an account onto it is one too (or the cooldown could be skipped by signing
    // up with any address and changing it).
    let digest = state.identifiers.email_digest(&c.change.email);
    match state
        .db
        .accounts()
        .reregistration_block(&digest, state.clock.now())
        .await
    {
        Ok(None) => {}
        Ok(Some(until)) => {
            tracing::info!(user = %c.user.id.0, "email change refused: the address is in its re-registration cooldown");
            let offset = state.config.throttle.display_offset();
            let page = ConfirmPage {
                lang,
                csrf: "",
                token: "",
                email: "",
                done: false,
                refused: Some(Msg::EmailAddressCoolingDown.text(lang).replace(
                    "{until}",
                    &crate::account::delete::in_words(until, offset, lang),
                )),
            };
            return render(StatusCode::CONFLICT, &page, &[]);
        }
        Err(e) => return failed(lang, request_id, &Failure::Store(e)),
    }
    let confirmed = confirm(&state, &c, lang, &origin).await;
    let user = c.user.id.0;
    match confirmed {
        Ok(Confirmed::Changed) => {
            tracing::info!(user = %user, "email change confirmed; the old address was told");
        }
        Ok(Confirmed::LinkDead) => return Refusal::LinkDead.page(lang, request_id),
        Ok(Confirmed::AccountUnavailable) => {
            return Refusal::AccountUnavailable(lang).page(lang, request_id);
        }
        Err(Failure::Store(StoreError::EmailTaken)) => {
            tracing::info!(user = %user, "email change refused: the address is taken");
            return error_page(StatusCode::CONFLICT, lang, Msg::EmailAddressTaken, None);
        }
        Err(e) => return failed(lang, request_id, &e),
    }
    let page = ConfirmPage {
        lang,
        csrf: "",
        token: "",
        email: "",
        done: true,
        refused: None,
    };
    render(StatusCode::OK, &page, &[])
}

async fn confirm(
    state: &AppState,
    c: &Confirmation,
    lang: Lang,
    origin: &AuditOrigin,
) -> Result<Confirmed, Failure> {
    let token = random_token(&mut rand::rng(), 32);
    let link = link(state, EMAIL_UNDO, &[("token", &token)]);
    let mail = templates::email_changed(
        user_lang(&c.user, lang),
        c.user.email.display(),
        &c.user.display_name,
        &masked(&c.change.email),
        &link,
        UNDO_LIFETIME.whole_days(),
    );
    let payload = mail.seal(&state.master)?;
    let now = state.clock.now();
    let audit = origin.event(
        now,
        c.user.id,
        "user.email_change",
        serde_json::json!({ "method": "email_link" }),
    );
    Ok(state
        .db
        .email_changes()
        .audited(audit)
        .confirm(
            now,
            &c.hash,
            &c.change,
            &c.user.email,
            NewLink {
                token_hash: sha256_hex(&token),
                expires_at: now + UNDO_LIFETIME,
            },
            QueuedMail { payload },
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_address_is_masked_to_its_first_character_and_domain() {
        let email = Email::parse("Taro.Suzuki@Example.com").unwrap();
        assert_eq!(masked(&email), "T***@Example.com");
        let short = Email::parse("t@example.jp").unwrap();
        assert_eq!(masked(&short), "t***@example.jp");
    }
}
