//! Registering a passkey: `action=start` asks webauthn-rs for the creation options and
//! keeps the ceremony's state (bound to this console session, taken once);
//! `action=finish` takes it back and verifies the browser's answer.

use super::PAGE;
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::prelude::{PasskeyRegistration, RegisterPublicKeyCredential};

use super::{ConsoleError, Ctx, Done, passkey_name};
use crate::account::audit_ctx::AuditOrigin;
use crate::account::reauth::RecentSession;
use crate::authn::passkey::{self, Ceremony};
use crate::domain::UserId;
use crate::state::AppState;
use crate::store::{StoreError, StoredPasskey};
use crate::web::csrf::CsrfForm;
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, render};

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RegisterAction {
    Start,
    Finish,
}

#[derive(Deserialize)]
pub struct RegisterForm {
    action: RegisterAction,
    #[serde(default)]
    name: String,
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    credential: String,
}

/// What a registration keeps between its two requests. The name is kept here rather
/// than carried in the page, so the finish stores what the start checked.
#[derive(Serialize, Deserialize)]
struct Registration {
    /// Names this start: the page's form carries it, so an older tab's answer is refused.
    nonce: String,
    user: Uuid,
    name: String,
    reg: PasskeyRegistration,
}

#[derive(Template)]
#[template(path = "account_passkeys_register.html")]
struct RegisterPage<'a> {
    lang: Lang,
    csrf: &'a str,
    name: &'a str,
    ceremony: &'a str,
    /// webauthn-rs's `CreationChallengeResponse`, JSON (askama escapes it into the
    /// attribute).
    options: String,
}

impl RegisterPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// `POST /account/passkeys`: starts or finishes a registration.
pub async fn post_register(
    RecentSession(current): RecentSession,
    State(state): State<AppState>,
    origin: AuditOrigin,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<RegisterForm>,
) -> Response {
    let ctx = Ctx::new(&state, &current, &headers, origin);
    let answered = match form.action {
        RegisterAction::Start => start(&ctx, &form.name).await,
        RegisterAction::Finish => finish(&ctx, &form).await,
    };
    answered.unwrap_or_else(|e| e.respond(PAGE, ctx.lang, request_id))
}

/// The console session's id binds the ceremony: only the browser holding this session
/// can finish it.
fn bound_to(ctx: &Ctx<'_>) -> String {
    ctx.current.session.id.to_string()
}

async fn start(ctx: &Ctx<'_>, typed: &str) -> Result<Response, ConsoleError> {
    let state = ctx.state;
    let Some(webauthn) = state.webauthn.as_ref() else {
        return ctx
            .refused(StatusCode::NOT_FOUND, Msg::PasskeysUnavailable)
            .await;
    };
    let user = &ctx.current.user;
    let name = match passkey_name(typed) {
        Ok(Some(name)) => name,
        Ok(None) => {
            let n = state.db.passkeys().count(user.id).await? + 1;
            Msg::PasskeysDefaultName
                .text(ctx.lang)
                .replace("{n}", &n.to_string())
        }
        Err(msg) => {
            return ctx
                .page(StatusCode::BAD_REQUEST, None, Some(msg), typed)
                .await;
        }
    };
    let handle = state
        .db
        .passkeys()
        .handle(user.id)
        .await?
        .ok_or_else(|| ConsoleError::internal("the member has no row for a user handle"))?;
    // Existing credentials are excluded so an authenticator that holds one already says
    // so rather than making a second for the same account.
    let exclude = state
        .db
        .passkeys()
        .list(user.id)
        .await?
        .iter()
        .filter_map(|p| URL_SAFE_NO_PAD.decode(&p.cred_id).ok())
        .collect::<Vec<_>>();
    let email = user.email.display();
    let display = if user.display_name.trim().is_empty() {
        email
    } else {
        user.display_name.as_str()
    };
    let (ccr, reg) = webauthn
        .start_passkey_registration(handle, email, display, Some(exclude))
        .map_err(ConsoleError::internal)?;
    // One registration per console session, kept under the session's id: a new start
    // replaces the last, so a member cannot fill the ephemeral store (which parked
    // sign-ins share) by starting registrations in a loop.
    let ceremony = Uuid::new_v4().simple().to_string();
    passkey::keep(
        state,
        Ceremony::Register,
        &bound_to(ctx),
        &bound_to(ctx),
        &Registration {
            nonce: ceremony.clone(),
            user: user.id.0,
            name: name.clone(),
            reg,
        },
    )
    .await?;
    let page = RegisterPage {
        lang: ctx.lang,
        csrf: &ctx.csrf,
        name: &name,
        ceremony: &ceremony,
        options: discoverable(&ccr)?,
    };
    Ok(render(StatusCode::OK, &page, &ctx.set_cookies))
}

/// The creation options as JSON, asking for a discoverable credential (usernameless
/// sign-in finds the member from it). webauthn-rs 0.6 hard-codes `residentKey:
/// discouraged` and offers no switch, so the JSON is edited. User verification stays
/// `required` as webauthn-rs sets it: the state it keeps carries that policy, and with
/// "preferred" in the options but "required" in the state an authenticator that skipped
/// verification would be refused at the finish anyway (`UserNotVerified`).
fn discoverable(ccr: &impl Serialize) -> Result<String, ConsoleError> {
    let mut options = serde_json::to_value(ccr).map_err(ConsoleError::internal)?;
    let selection = options
        .get_mut("publicKey")
        .and_then(|pk| pk.get_mut("authenticatorSelection"))
        .and_then(|s| s.as_object_mut())
        .ok_or_else(|| ConsoleError::internal("creation options without authenticatorSelection"))?;
    selection.insert("residentKey".into(), "required".into());
    selection.insert("requireResidentKey".into(), true.into());
    serde_json::to_string(&options).map_err(ConsoleError::internal)
}

async fn finish(ctx: &Ctx<'_>, form: &RegisterForm) -> Result<Response, ConsoleError> {
    let state = ctx.state;
    let Some(webauthn) = state.webauthn.as_ref() else {
        return ctx
            .refused(StatusCode::NOT_FOUND, Msg::PasskeysUnavailable)
            .await;
    };
    let Some(credential) = passkey::parse_answer::<RegisterPublicKeyCredential>(&form.credential)
    else {
        tracing::info!("passkey registration: malformed credential");
        return ctx
            .refused(StatusCode::BAD_REQUEST, Msg::PasskeysMalformed)
            .await;
    };
    // Taken once: a replayed answer, or one for a ceremony another session started, finds
    // nothing.
    let kept: Option<Registration> =
        passkey::take(state, Ceremony::Register, &bound_to(ctx), &bound_to(ctx)).await?;
    let user = ctx.current.user.id;
    let Some(kept) = kept.filter(|k| UserId(k.user) == user && k.nonce == form.ceremony) else {
        tracing::info!(user = %user.0, "passkey registration: no such ceremony for this session");
        return ctx
            .refused(StatusCode::BAD_REQUEST, Msg::PasskeysExpired)
            .await;
    };
    let passkey = match webauthn.finish_passkey_registration(&credential, &kept.reg) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(user = %user.0, error = ?e, "passkey registration refused");
            return ctx
                .refused(StatusCode::BAD_REQUEST, Msg::PasskeysRefused)
                .await;
        }
    };
    // WebAuthn credential ids are at most 1023 bytes (WebAuthn §5.1); webauthn-rs accepts
    // up to 4096, which the column (1400 base64url characters) cannot hold on PostgreSQL.
    if passkey.cred_id().len() > 1023 {
        tracing::warn!(user = %user.0, "passkey registration: credential id too long");
        return ctx
            .refused(StatusCode::BAD_REQUEST, Msg::PasskeysRefused)
            .await;
    }
    let stored = StoredPasskey {
        cred_id: URL_SAFE_NO_PAD.encode(passkey.cred_id()),
        user,
        name: kept.name.clone(),
        credential: serde_json::to_string(&passkey).map_err(ConsoleError::internal)?,
        created_at: state.clock.now(),
        last_used_at: None,
    };
    let change = ctx.change(true, &kept.name)?;
    let audit = ctx.audit("user.passkey_add", &kept.name);
    match state
        .db
        .passkeys()
        .audited(audit)
        .add(state.clock.now(), stored, change)
        .await
    {
        Ok(()) => {}
        Err(StoreError::PasskeyTaken) => {
            tracing::warn!(user = %user.0, "passkey registration: credential id in use");
            return ctx.refused(StatusCode::CONFLICT, Msg::PasskeysTaken).await;
        }
        Err(StoreError::TooManyPasskeys) => {
            tracing::warn!(user = %user.0, "passkey registration: too many passkeys");
            return ctx
                .refused(StatusCode::CONFLICT, Msg::PasskeysTooMany)
                .await;
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user = %user.0, "passkey registered");
    Ok(Done::Added.back())
}
