//! `/account/2fa`: the member's second steps (二段階認証). The authenticator app is set
//! up by scanning a QR code and confirming a first code; codes by email are turned on or
//! off; recovery codes are shown once when made (and downloadable for a few minutes); and
//! two-step verification can be turned off altogether. Every change needs a recent
//! sign-in with the account's factors (`reauth::RecentSession`), and is written with its
//! history entry and its mail to the member in one transaction.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use super::audit_ctx::AuditOrigin;
use super::console::CurrentSession;
use super::console_error::ConsoleError;
use super::delete::in_words;
use super::reauth::RecentSession;
use super::{FORGOT, TWO_STEP, link, user_lang};
use crate::authn::second_step::{
    self, METHOD_EMAIL_CODE, METHOD_TOTP, METHOD_TWO_STEP, SecondStepError,
};
use crate::domain::User;
use crate::mail::templates::{self, TwoStepChange, TwoStepMail};
use crate::oidc::authorize::see_other;
use crate::state::AppState;
use crate::store::{
    AuditEvent, Factor, FactorChange, Factors, LoginEvent, LoginResult, QueuedMail, StoreError,
};
use crate::web::csrf::{self, CsrfForm};
use crate::web::device::Device;
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, page_lang, render};

mod codes;
mod enrol;

use codes::{codes_key, hashes, show_codes};

/// This page, as the log names it.
const PAGE: &str = "two-step";

pub use codes::{post_download, post_recovery};
pub use enrol::{TotpAction, TotpForm, get_totp, post_totp};

/// At or below this many unused recovery codes the console warns.
pub const FEW_CODES_LEFT: u64 = 3;

/// Whether the account's recovery codes are running out (only said while they matter:
/// with two-step verification on).
pub fn few_codes_left(factors: &Factors) -> bool {
    factors.any() && factors.recovery_left <= FEW_CODES_LEFT
}

impl From<SecondStepError> for ConsoleError {
    fn from(e: SecondStepError) -> Self {
        match e {
            SecondStepError::Ephemeral(e) => Self::Ephemeral(e),
            SecondStepError::Store(e) => Self::Store(e),
            other => Self::internal(other),
        }
    }
}

/// What the page says after a change (`?done=…`). Only ever a notice: a crafted link
/// shows it and changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Done {
    TotpOn,
    TotpReplaced,
    TotpOff,
    EmailOn,
    EmailOff,
    Off,
}

impl Done {
    const ALL: [Self; 6] = [
        Self::TotpOn,
        Self::TotpReplaced,
        Self::TotpOff,
        Self::EmailOn,
        Self::EmailOff,
        Self::Off,
    ];

    fn param(self) -> &'static str {
        match self {
            Self::TotpOn => "totp-on",
            Self::TotpReplaced => "totp-replaced",
            Self::TotpOff => "totp-off",
            Self::EmailOn => "email-on",
            Self::EmailOff => "email-off",
            Self::Off => "off",
        }
    }

    fn from_param(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.param() == value)
    }

    fn notice(self) -> Msg {
        match self {
            Self::TotpOn => Msg::TwoStepDoneTotpOn,
            Self::TotpReplaced => Msg::TwoStepDoneTotpReplaced,
            Self::TotpOff => Msg::TwoStepDoneTotpOff,
            Self::EmailOn => Msg::TwoStepDoneEmailOn,
            Self::EmailOff => Msg::TwoStepDoneEmailOff,
            Self::Off => Msg::TwoStepDoneOff,
        }
    }

    fn back(self) -> Response {
        see_other(&format!("{TWO_STEP}?done={}", self.param()), &[])
    }
}

#[derive(Template)]
#[template(path = "account_2fa.html")]
struct TwoStepPage<'a> {
    lang: Lang,
    csrf: &'a str,
    on: bool,
    totp: bool,
    email: bool,
    recovery_left: u64,
    few_left: bool,
    notice: Option<&'static str>,
    error: Option<&'static str>,
}

impl TwoStepPage<'_> {
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
    /// Where the change came from, for the audit log.
    origin: AuditOrigin,
}

impl<'a> Ctx<'a> {
    fn new(
        state: &'a AppState,
        current: &'a CurrentSession,
        headers: &HeaderMap,
        origin: AuditOrigin,
    ) -> Self {
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
            origin,
        }
    }

    fn user(&self) -> &User {
        &self.current.user
    }

    /// This browser's device (the hash of its device cookie, as the session holds it):
    /// the one remembered device a change keeps.
    fn device(&self) -> &str {
        &self.current.session.device_id
    }

    /// The history entry (`method`, `result`) and the mail of a change, to be written in
    /// the change's own transaction: a change without its trace cannot happen.
    fn change(
        &self,
        method: &str,
        result: LoginResult,
        what: TwoStepChange,
        was_on: bool,
        now_on: bool,
    ) -> Result<FactorChange, ConsoleError> {
        let state = self.state;
        let user = self.user();
        let now = state.clock.now();
        let lang = user_lang(user, self.lang);
        let at = in_words(now, state.config.throttle.display_offset(), lang);
        let mail = templates::two_step_changed(
            lang,
            user.email.display(),
            &user.display_name,
            &TwoStepMail {
                change: what,
                was_on,
                now_on,
                at: &at,
                device: &Device::of(&self.user_agent).describe(lang),
                ip: &self.ip,
                console: &link(state, TWO_STEP, &[]),
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
                device_hash: self.device().to_owned(),
                method: method.to_owned(),
                result,
                new_device: false,
            },
            mail: Some(QueuedMail { payload }),
        })
    }

    /// The audit row of a change to the second steps: `method` is the factor it
    /// concerns, and whether two-step verification was on before and is after.
    fn audit(&self, action: &str, method: &str, was_on: bool, now_on: bool) -> AuditEvent {
        self.origin.event(
            self.state.clock.now(),
            self.user().id,
            action,
            serde_json::json!({
                "method": method,
                "two_step_was_on": was_on,
                "two_step_on": now_on,
            }),
        )
    }

    async fn factors(&self) -> Result<Factors, StoreError> {
        self.state.db.two_step().factors(self.user().id).await
    }
}

#[derive(Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    done: String,
}

/// `GET /account/2fa`: whether two-step verification is on, with which factors, how many
/// recovery codes are left, and the buttons to change them.
pub async fn page(
    RecentSession(current): RecentSession,
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Query(q): Query<PageQuery>,
) -> Response {
    let lang = page_lang(None, Some(&current.user.locale), &headers);
    let factors = match state.db.two_step().factors(current.user.id).await {
        Ok(f) => f,
        Err(e) => return ConsoleError::from(e).respond(PAGE, lang, request_id),
    };
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    let notice = Done::from_param(&q.done).map(|d| d.notice().text(lang));
    overview(
        StatusCode::OK,
        lang,
        &csrf,
        &factors,
        notice,
        None,
        set_cookie.as_slice(),
    )
}

fn overview(
    status: StatusCode,
    lang: Lang,
    csrf: &str,
    factors: &Factors,
    notice: Option<&'static str>,
    error: Option<Msg>,
    set_cookies: &[String],
) -> Response {
    let page = TwoStepPage {
        lang,
        csrf,
        on: factors.any(),
        totp: factors.totp,
        email: factors.email,
        recovery_left: factors.recovery_left,
        few_left: few_codes_left(factors),
        notice,
        error: error.map(|m| m.text(lang)),
    };
    render(status, &page, set_cookies)
}

/// The GET of a form's address (a stale form that came back after the sign-in): the page.
pub async fn to_page() -> Response {
    see_other(TWO_STEP, &[])
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmailAction {
    Enable,
    Disable,
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf: String,
    action: EmailAction,
}

/// `POST /account/2fa/email`: codes by email on or off.
pub async fn post_email(
    RecentSession(current): RecentSession,
    State(state): State<AppState>,
    origin: AuditOrigin,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<EmailForm>,
) -> Response {
    let ctx = Ctx::new(&state, &current, &headers, origin);
    let answered = match form.action {
        EmailAction::Enable => enable_email(&ctx, &form.csrf).await,
        EmailAction::Disable => remove_factor(&ctx, Factor::Email).await,
    };
    answered.unwrap_or_else(|e| e.respond(PAGE, ctx.lang, request_id))
}

async fn enable_email(ctx: &Ctx<'_>, csrf: &str) -> Result<Response, ConsoleError> {
    let state = ctx.state;
    let user = ctx.user();
    let before = ctx.factors().await?;
    if before.email {
        return Ok(see_other(TWO_STEP, &[]));
    }
    let codes = if before.any() {
        Vec::new()
    } else {
        second_step::new_recovery_codes(&mut rand::rng())
    };
    let change = ctx.change(
        METHOD_EMAIL_CODE,
        LoginResult::Enrolled,
        TwoStepChange::EmailOn,
        before.any(),
        true,
    )?;
    let audit = ctx.audit("user.2fa_email_on", METHOD_EMAIL_CODE, before.any(), true);
    state
        .db
        .two_step()
        .audited(audit)
        .enable_email(
            state.clock.now(),
            user.id,
            hashes(state, user, &codes),
            Some(ctx.device()),
            change,
        )
        .await?;
    tracing::info!(user = %user.id.0, "email codes turned on");
    if codes.is_empty() {
        return Ok(Done::EmailOn.back());
    }
    show_codes(ctx, csrf, &codes, Msg::TwoStepCodesOn).await
}

/// Turns one factor off (the app, or email codes). With no other factor left, two-step
/// verification is off (the store drops the recovery codes with it).
async fn remove_factor(ctx: &Ctx<'_>, factor: Factor) -> Result<Response, ConsoleError> {
    let state = ctx.state;
    let before = ctx.factors().await?;
    let (on, other_on, method, action, change, done) = match factor {
        Factor::Totp => (
            before.totp,
            before.email,
            METHOD_TOTP,
            "user.2fa_totp_remove",
            TwoStepChange::TotpOff,
            Done::TotpOff,
        ),
        Factor::Email => (
            before.email,
            before.totp,
            METHOD_EMAIL_CODE,
            "user.2fa_email_off",
            TwoStepChange::EmailOff,
            Done::EmailOff,
        ),
    };
    if !on {
        return Ok(see_other(TWO_STEP, &[]));
    }
    let change = ctx.change(method, LoginResult::Removed, change, true, other_on)?;
    let audit = ctx.audit(action, method, true, other_on);
    state
        .db
        .two_step()
        .audited(audit)
        .disable(
            state.clock.now(),
            ctx.user().id,
            factor,
            Some(ctx.device()),
            change,
        )
        .await?;
    tracing::info!(user = %ctx.user().id.0, ?factor, still_on = other_on, "second step turned off");
    Ok(done.back())
}

/// A form that carries only its CSRF token (read back to render the next page's forms).
#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /account/2fa/off`: every factor, recovery code and remembered device goes.
pub async fn post_off(
    RecentSession(current): RecentSession,
    State(state): State<AppState>,
    origin: AuditOrigin,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> Response {
    let ctx = Ctx::new(&state, &current, &headers, origin);
    turn_off(&ctx)
        .await
        .unwrap_or_else(|e| e.respond(PAGE, ctx.lang, request_id))
}

async fn turn_off(ctx: &Ctx<'_>) -> Result<Response, ConsoleError> {
    let state = ctx.state;
    let before = ctx.factors().await?;
    if !before.any() && before.recovery_left == 0 {
        return Ok(see_other(TWO_STEP, &[]));
    }
    let change = ctx.change(
        METHOD_TWO_STEP,
        LoginResult::Removed,
        TwoStepChange::AllOff,
        before.any(),
        false,
    )?;
    let audit = ctx.audit("user.2fa_off", METHOD_TWO_STEP, before.any(), false);
    state
        .db
        .two_step()
        .audited(audit)
        .disable_all(state.clock.now(), ctx.user().id, change)
        .await?;
    // Codes waiting for their download are dead now; an enrolment may go on (it would
    // turn two-step verification on again, with its own mail).
    state
        .ephemeral
        .delete(&codes_key(ctx.current.session.id))
        .await?;
    tracing::info!(user = %ctx.user().id.0, "two-step verification turned off");
    Ok(Done::Off.back())
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
        assert_eq!(Done::from_param("OFF"), None);
    }

    #[test]
    fn few_codes_are_warned_of_only_while_two_step_is_on() {
        let on = |left| Factors {
            totp: true,
            email: false,
            recovery_left: left,
        };
        assert!(!few_codes_left(&on(4)));
        assert!(few_codes_left(&on(3)));
        assert!(few_codes_left(&on(0)));
        assert!(!few_codes_left(&Factors::default()));
    }
}
