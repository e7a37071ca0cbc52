//! `/account/passkeys`: the member's passkeys (パスキー): the list with when each was
//! registered and last used, registering one (a WebAuthn ceremony over two requests, its
//! state kept in the ephemeral store and bound to this console session), renaming and
//! removing. Every change needs a recent sign-in (`reauth::RecentSession`) and is written
//! with its history entry and its mail in one transaction.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use super::audit_ctx::AuditOrigin;
use super::console::{CurrentSession, minute};
use super::console_error::ConsoleError;
use super::delete::in_words;
use super::reauth::RecentSession;
use super::{FORGOT, PASSKEYS, link, user_lang};
use crate::authn::second_step::METHOD_PASSKEY;
use crate::mail::templates::{self, PasskeyMail};
use crate::oidc::authorize::see_other;
use crate::state::AppState;
use crate::store::{
    FactorChange, LoginEvent, LoginResult, PASSKEY_NAME_MAX, QueuedMail, StoredPasskey,
};
use crate::web::csrf::{self, CsrfForm};
use crate::web::device::Device;
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, page_lang, render};

/// This page, as the log names it.
const PAGE: &str = "passkeys";

mod register;

pub use register::post_register;

/// What the page says after a change (`?done=…`). Only ever a notice: a crafted link
/// shows it and changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Done {
    Added,
    Renamed,
    Removed,
}

impl Done {
    const ALL: [Self; 3] = [Self::Added, Self::Renamed, Self::Removed];

    fn param(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Renamed => "renamed",
            Self::Removed => "removed",
        }
    }

    fn from_param(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.param() == value)
    }

    fn notice(self) -> Msg {
        match self {
            Self::Added => Msg::PasskeysDoneAdded,
            Self::Renamed => Msg::PasskeysDoneRenamed,
            Self::Removed => Msg::PasskeysDoneRemoved,
        }
    }

    fn back(self) -> Response {
        see_other(&format!("{PASSKEYS}?done={}", self.param()), &[])
    }
}

/// A name as typed: trimmed, 1..=`PASSKEY_NAME_MAX` characters, no control characters
/// (a line break in a name would break the mail's lines). `Ok(None)` when left empty.
fn passkey_name(typed: &str) -> Result<Option<String>, Msg> {
    let name = typed.trim();
    if name.is_empty() {
        return Ok(None);
    }
    if name.chars().count() > PASSKEY_NAME_MAX || name.chars().any(char::is_control) {
        return Err(Msg::PasskeysNameInvalid);
    }
    Ok(Some(name.to_owned()))
}

/// One passkey as the list shows it.
struct PasskeyLine {
    cred_id: String,
    name: String,
    created: String,
    last_used: Option<String>,
}

#[derive(Template)]
#[template(path = "account_passkeys.html")]
struct PasskeysPage<'a> {
    lang: Lang,
    csrf: &'a str,
    /// False when the server cannot have passkeys (an IP-address issuer): no buttons.
    available: bool,
    passkeys: Vec<PasskeyLine>,
    notice: Option<&'static str>,
    error: Option<&'static str>,
    /// The name typed into the registration form, kept when it was refused.
    typed: &'a str,
}

impl PasskeysPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// A page's member, language and request, and what a change records about where it came
/// from.
struct Ctx<'a> {
    state: &'a AppState,
    current: &'a CurrentSession,
    lang: Lang,
    ip: String,
    user_agent: String,
    csrf: String,
    set_cookies: Vec<String>,
    /// Where a change came from, for the audit log.
    origin: AuditOrigin,
}

impl<'a> Ctx<'a> {
    fn new(
        state: &'a AppState,
        current: &'a CurrentSession,
        headers: &HeaderMap,
        origin: AuditOrigin,
    ) -> Self {
        let (csrf, set_cookie) = csrf::token(state.cookies, headers);
        Self {
            state,
            current,
            lang: page_lang(None, Some(&current.user.locale), headers),
            ip: origin.ip.to_string(),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            csrf,
            set_cookies: set_cookie.into_iter().collect(),
            origin,
        }
    }

    /// The list page with `status`, a notice or an error, and the name typed.
    async fn page(
        &self,
        status: StatusCode,
        notice: Option<Msg>,
        error: Option<Msg>,
        typed: &str,
    ) -> Result<Response, ConsoleError> {
        let state = self.state;
        let offset = state.config.throttle.display_offset();
        let passkeys = state
            .db
            .passkeys()
            .list(self.current.user.id)
            .await?
            .into_iter()
            .map(|p| PasskeyLine {
                cred_id: p.cred_id,
                name: p.name,
                created: minute(p.created_at, offset),
                last_used: p.last_used_at.map(|t| minute(t, offset)),
            })
            .collect();
        let page = PasskeysPage {
            lang: self.lang,
            csrf: &self.csrf,
            available: state.webauthn.is_some(),
            passkeys,
            notice: notice.map(|m| m.text(self.lang)),
            error: error.map(|m| m.text(self.lang)),
            typed,
        };
        Ok(render(status, &page, &self.set_cookies))
    }

    /// The list page again with a refusal (`status`, `error`); nothing was changed.
    async fn refused(&self, status: StatusCode, error: Msg) -> Result<Response, ConsoleError> {
        self.page(status, None, Some(error), "").await
    }

    /// The history entry and the mail of adding or removing the passkey `name`, to be
    /// written in the change's own transaction: a change without its trace cannot happen.
    fn change(&self, added: bool, name: &str) -> Result<FactorChange, ConsoleError> {
        let state = self.state;
        let user = &self.current.user;
        let now = state.clock.now();
        let lang = user_lang(user, self.lang);
        let at = in_words(now, state.config.throttle.display_offset(), lang);
        let mail = templates::passkey_changed(
            lang,
            user.email.display(),
            &user.display_name,
            &PasskeyMail {
                added,
                passkey: name,
                at: &at,
                device: &Device::of(&self.user_agent).describe(lang),
                ip: &self.ip,
                console: &link(state, PASSKEYS, &[]),
                reset: &link(state, FORGOT, &[]),
            },
        );
        let payload = mail.seal(&state.master).map_err(ConsoleError::internal)?;
        Ok(FactorChange {
            event: LoginEvent {
                id: Uuid::new_v4(),
                user: user.id,
                at: now,
                ip: self.ip.clone(),
                user_agent: self.user_agent.clone(),
                device_hash: self.current.session.device_id.clone(),
                method: METHOD_PASSKEY.to_owned(),
                result: if added {
                    LoginResult::Enrolled
                } else {
                    LoginResult::Removed
                },
                new_device: false,
            },
            mail: Some(QueuedMail { payload }),
        })
    }

    /// The audit row of a change to the passkey `name` (the member's own label for it).
    fn audit(&self, action: &str, name: &str) -> crate::store::AuditEvent {
        self.origin.event(
            self.state.clock.now(),
            self.current.user.id,
            action,
            serde_json::json!({ "name": name }),
        )
    }

    /// The member's passkey `cred_id`, if it is theirs.
    async fn own(&self, cred_id: &str) -> Result<Option<StoredPasskey>, ConsoleError> {
        Ok(self
            .state
            .db
            .passkeys()
            .find(cred_id)
            .await?
            .filter(|p| p.user == self.current.user.id))
    }
}

#[derive(Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    done: String,
}

/// `GET /account/passkeys`: the member's passkeys and the registration form.
pub async fn page(
    RecentSession(current): RecentSession,
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    origin: AuditOrigin,
    Query(q): Query<PageQuery>,
) -> Response {
    let ctx = Ctx::new(&state, &current, &headers, origin);
    let notice = Done::from_param(&q.done).map(Done::notice);
    ctx.page(StatusCode::OK, notice, None, "")
        .await
        .unwrap_or_else(|e| e.respond(PAGE, ctx.lang, request_id))
}

/// The GET of a form's address (a stale form that came back after the sign-in): the page.
pub async fn to_page() -> Response {
    see_other(PASSKEYS, &[])
}

#[derive(Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    cred: String,
    #[serde(default)]
    name: String,
}

/// `POST /account/passkeys/rename`: a new name for one of the member's passkeys.
pub async fn post_rename(
    RecentSession(current): RecentSession,
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    origin: AuditOrigin,
    CsrfForm(form): CsrfForm<RenameForm>,
) -> Response {
    let ctx = Ctx::new(&state, &current, &headers, origin);
    rename(&ctx, &form)
        .await
        .unwrap_or_else(|e| e.respond(PAGE, ctx.lang, request_id))
}

async fn rename(ctx: &Ctx<'_>, form: &RenameForm) -> Result<Response, ConsoleError> {
    let name = match passkey_name(&form.name) {
        Ok(Some(name)) => name,
        Ok(None) => {
            return ctx
                .refused(StatusCode::BAD_REQUEST, Msg::PasskeysNameInvalid)
                .await;
        }
        Err(msg) => return ctx.refused(StatusCode::BAD_REQUEST, msg).await,
    };
    let user = ctx.current.user.id;
    let audit = ctx.audit("user.passkey_rename", &name);
    if !ctx
        .state
        .db
        .passkeys()
        .audited(audit)
        .rename(user, &form.cred, &name)
        .await?
    {
        return ctx
            .refused(StatusCode::NOT_FOUND, Msg::PasskeysNotFound)
            .await;
    }
    tracing::info!(user = %user.0, "passkey renamed");
    Ok(Done::Renamed.back())
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    cred: String,
}

/// `POST /account/passkeys/remove`: removes one of the member's passkeys, never the last
/// way in to the account.
pub async fn post_remove(
    RecentSession(current): RecentSession,
    State(state): State<AppState>,
    origin: AuditOrigin,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<RemoveForm>,
) -> Response {
    let ctx = Ctx::new(&state, &current, &headers, origin);
    remove(&ctx, &form.cred)
        .await
        .unwrap_or_else(|e| e.respond(PAGE, ctx.lang, request_id))
}

async fn remove(ctx: &Ctx<'_>, cred_id: &str) -> Result<Response, ConsoleError> {
    use crate::store::PasskeyRemoval;
    let Some(passkey) = ctx.own(cred_id).await? else {
        return ctx
            .refused(StatusCode::NOT_FOUND, Msg::PasskeysNotFound)
            .await;
    };
    let change = ctx.change(false, &passkey.name)?;
    let audit = ctx.audit("user.passkey_remove", &passkey.name);
    let state = ctx.state;
    let user = ctx.current.user.id;
    let removal = state
        .db
        .passkeys()
        .audited(audit)
        .remove(state.clock.now(), user, cred_id, change)
        .await?;
    match removal {
        PasskeyRemoval::Removed => {
            tracing::info!(user = %user.0, "passkey removed");
            Ok(Done::Removed.back())
        }
        PasskeyRemoval::NotFound => {
            ctx.refused(StatusCode::NOT_FOUND, Msg::PasskeysNotFound)
                .await
        }
        PasskeyRemoval::LastWayIn => {
            tracing::info!(user = %user.0, "refused to remove the account's last way in");
            ctx.refused(StatusCode::CONFLICT, Msg::PasskeysLastWayIn)
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_come_only_from_known_words() {
        for done in Done::ALL {
            assert_eq!(Done::from_param(done.param()), Some(done));
        }
        assert_eq!(Done::from_param(""), None);
        assert_eq!(Done::from_param("<script>"), None);
    }

    #[test]
    fn names_are_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(passkey_name("  ノートPC "), Ok(Some("ノートPC".to_owned())));
        assert_eq!(passkey_name("   "), Ok(None));
        assert_eq!(passkey_name(&"鍵".repeat(64)), Ok(Some("鍵".repeat(64))));
        assert_eq!(
            passkey_name(&"鍵".repeat(65)),
            Err(Msg::PasskeysNameInvalid)
        );
        assert_eq!(passkey_name("a\nb"), Err(Msg::PasskeysNameInvalid));
        assert_eq!(passkey_name("a\u{7}b"), Err(Msg::PasskeysNameInvalid));
    }
}
