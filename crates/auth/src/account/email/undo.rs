//! The old address's link (`/account/email/undo`): the page that says what undoing does
//! (and whether the address was changed again since), and the undo itself.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{Failure, LinkForm, Refusal, failed, token_hash};
use crate::account::PageQuery;
use crate::account::audit_ctx::AuditOrigin;
use crate::account::recovery::{RESET_LIFETIME, reset_mail};
use crate::crypto::sha256_hex;
use crate::domain::{User, UserStatus};
use crate::state::AppState;
use crate::store::{EmailUndo, NewLink, QueuedMail, StoreError, Undone};
use crate::web::cookies::SESSION;
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render};

#[derive(Template)]
#[template(path = "account_email_undo.html")]
struct UndoPage<'a> {
    lang: Lang,
    csrf: &'a str,
    token: &'a str,
    /// The address the undo gives back.
    email: &'a str,
    /// The account was changed again after the change this link undoes.
    changed_again: bool,
    /// After the undo: what the page says instead of the form.
    undone: Option<String>,
}

impl UndoPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// A live undo link: its hash, the undo, the account, and the page language.
struct UndoLink {
    hash: String,
    undo: EmailUndo,
    user: User,
    lang: Lang,
}

/// The undo a link names. No browser check: the link came to the old mailbox, and
/// whoever changed the address may hold every session.
async fn undo_link(
    state: &AppState,
    headers: &HeaderMap,
    explicit: Option<&str>,
    token: &str,
) -> Result<UndoLink, Refusal> {
    let hash = token_hash(token).ok_or(Refusal::LinkDead)?;
    let undo = state
        .db
        .email_changes()
        .lookup_undo(&hash, state.clock.now())
        .await?
        .ok_or(Refusal::LinkDead)?;
    let user = state
        .db
        .users()
        .find_by_id(undo.user)
        .await?
        .ok_or(Refusal::LinkDead)?;
    let lang = page_lang(explicit, Some(&user.locale), headers);
    if user.status != UserStatus::Active {
        return Err(Refusal::AccountUnavailable(lang));
    }
    Ok(UndoLink {
        hash,
        undo,
        user,
        lang,
    })
}

/// `GET /account/email/undo?token=`: what undoing does (and whether the address was
/// changed again since), and a button. No sign-in: the link came to the old mailbox, and
/// whoever changed the address may hold every session.
pub async fn get_undo(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Query(q): Query<PageQuery>,
) -> Response {
    let u = match undo_link(&state, &headers, q.lang.as_deref(), &q.token).await {
        Ok(u) => u,
        Err(refusal) => return refusal.respond(q.lang.as_deref(), &headers, request_id),
    };
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    let page = UndoPage {
        lang: u.lang,
        csrf: &csrf,
        token: &q.token,
        email: u.undo.email.display(),
        changed_again: u.user.email.normalized() != u.undo.changed_to,
        undone: None,
    };
    render(StatusCode::OK, &page, set_cookie.as_slice())
}

/// `POST /account/email/undo`: the address back, everything signed in ended, the reset
/// link to the restored address, in one transaction; this browser's session cookie goes.
pub async fn post_undo(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    origin: AuditOrigin,
    CsrfForm(form): CsrfForm<LinkForm>,
) -> Response {
    let u = match undo_link(&state, &headers, form.lang.as_deref(), &form.token).await {
        Ok(u) => u,
        Err(refusal) => return refusal.respond(form.lang.as_deref(), &headers, request_id),
    };
    let lang = u.lang;
    let undone = undo(&state, &u, lang, &origin).await;
    let user = u.user.id.0;
    match undone {
        Ok(Undone::Restored) => {
            tracing::info!(user = %user, "email change undone: address restored, everything ended, reset required");
        }
        Ok(Undone::LinkDead) => return Refusal::LinkDead.page(lang, request_id),
        Ok(Undone::AccountUnavailable) => {
            return Refusal::AccountUnavailable(lang).page(lang, request_id);
        }
        // The link stays live: the address may be freed (support, the other account's
        // deletion) within its week, and nothing about the link itself went wrong.
        Err(Failure::Store(StoreError::EmailTaken)) => {
            tracing::warn!(user = %user, "email change undo refused: the old address is taken");
            return error_page(StatusCode::CONFLICT, lang, Msg::EmailUndoTaken, None);
        }
        Err(e) => return failed(lang, request_id, &e),
    }
    let text = Msg::EmailUndone
        .text(lang)
        .replace("{minutes}", &RESET_LIFETIME.whole_minutes().to_string());
    let page = UndoPage {
        lang,
        csrf: "",
        token: "",
        email: "",
        changed_again: false,
        undone: Some(text),
    };
    // Every session of the account ended; if this browser had one, its cookie goes too.
    let cookies = [state.cookies.clear(SESSION)];
    render(StatusCode::OK, &page, &cookies)
}

async fn undo(
    state: &AppState,
    u: &UndoLink,
    lang: Lang,
    origin: &AuditOrigin,
) -> Result<Undone, Failure> {
    let (token, mail) = reset_mail(state, &u.user, u.undo.email.display(), "", lang, true);
    let payload = mail.seal(&state.master)?;
    let now = state.clock.now();
    // The old address's owner took the account back: every way in went and a reset is
    // required, which the detail says (the addresses it does not).
    let audit = origin.event(
        now,
        u.user.id,
        "user.email_change_undo",
        serde_json::json!({ "method": "email_link", "reset_required": true }),
    );
    Ok(state
        .db
        .email_changes()
        .audited(audit)
        .undo(
            now,
            &u.hash,
            &u.undo,
            NewLink {
                token_hash: sha256_hex(&token),
                expires_at: now + RESET_LIFETIME,
            },
            QueuedMail { payload },
        )
        .await?)
}
