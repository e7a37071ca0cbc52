//! Setting up an authenticator app: a new secret waits (encrypted, for this browser
//! session only) until the member types a first code from the app; the QR code and the key
//! show the secret meanwhile. Removing the app is here too.

use super::PAGE;
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::codes::{hashes, show_codes};
use super::{ConsoleError, Ctx, Done, overview};
use crate::account::audit_ctx::AuditOrigin;
use crate::account::reauth::RecentSession;
use crate::account::{TWO_STEP, TWO_STEP_TOTP};
use crate::authn::second_step::{self, METHOD_TOTP, TOTP_ISSUER};
use crate::authn::totp::{self, Authenticator};
use crate::domain::User;
use crate::mail::templates::TwoStepChange;
use crate::oidc::authorize::see_other;
use crate::state::AppState;
use crate::store::{Factor, LoginResult, StoredTotp};
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, render};

/// How long a started enrolment (the new secret, waiting for its first code) lasts: time
/// to find the phone and the app, short enough that an abandoned secret is soon gone.
const ENROL_WINDOW: Duration = Duration::minutes(10);
/// The longest code field read: an app's code with spaces is 7; anything much longer is
/// not a code and is not worth a look.
const MAX_CODE_LEN: usize = 16;

/// Where the secret of an enrolment started by a browser session waits for its first
/// code: keyed by the session, so no other browser (nor another member) can confirm it.
fn enrol_key(session: Uuid) -> String {
    format!("two_step_enrol:{session}")
}

#[derive(Template)]
#[template(path = "account_2fa_totp.html")]
struct EnrolPage<'a> {
    lang: Lang,
    csrf: &'a str,
    /// The QR code as an inline `<svg>` element of our own making (no script, no style
    /// attribute: the pages' CSP has nothing to allow for it).
    qr: String,
    /// The key in groups of four, for typing into an app.
    key: String,
    /// An app is set up already: finishing replaces it.
    replacing: bool,
    error: Option<&'static str>,
    /// "Try again after 15:42" while the account's codes are locked.
    retry: Option<String>,
}

impl EnrolPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// The secret of the enrolment this browser session started, if it is still waiting
/// (stored encrypted with the master key), in the clear.
async fn enrolment(
    state: &AppState,
    session: Uuid,
) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, ConsoleError> {
    let Some(bytes) = state.ephemeral.get(&enrol_key(session)).await? else {
        return Ok(None);
    };
    let sealed = String::from_utf8(bytes).map_err(ConsoleError::internal)?;
    let secret = state
        .master
        .decrypt(&sealed)
        .map_err(ConsoleError::internal)?;
    Ok(Some(secret))
}

fn authenticator(user: &User, secret: &[u8]) -> Result<Authenticator, ConsoleError> {
    Authenticator::new(secret, TOTP_ISSUER, user.email.display()).map_err(ConsoleError::Internal)
}

/// The enrolment page of `secret`: the QR code, the key, the code field.
fn enrol_page<'a>(
    ctx: &Ctx<'_>,
    csrf: &'a str,
    secret: &[u8],
    replacing: bool,
) -> Result<EnrolPage<'a>, ConsoleError> {
    let app = authenticator(ctx.user(), secret)?;
    let qr = app.qr_svg().map_err(ConsoleError::Internal)?;
    Ok(EnrolPage {
        lang: ctx.lang,
        csrf,
        qr,
        key: app.key_text(),
        replacing,
        error: None,
        retry: None,
    })
}

/// `GET /account/2fa/totp`: the enrolment this browser started (a reload, or a stale
/// confirmation back from the sign-in), else the page.
pub async fn get_totp(
    RecentSession(current): RecentSession,
    State(state): State<AppState>,
    origin: AuditOrigin,
    headers: HeaderMap,
    request_id: RequestId,
) -> Response {
    let ctx = Ctx::new(&state, &current, &headers, origin);
    let shown = async {
        let Some(secret) = enrolment(&state, current.session.id).await? else {
            return Ok(see_other(TWO_STEP, &[]));
        };
        let replacing = ctx.factors().await?.totp;
        let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
        let page = enrol_page(&ctx, &csrf, &secret, replacing)?;
        Ok::<_, ConsoleError>(render(StatusCode::OK, &page, set_cookie.as_slice()))
    }
    .await;
    shown.unwrap_or_else(|e| e.respond(PAGE, ctx.lang, request_id))
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TotpAction {
    Start,
    Confirm,
    Disable,
}

#[derive(Deserialize)]
pub struct TotpForm {
    #[serde(default)]
    csrf: String,
    action: TotpAction,
    #[serde(default)]
    code: String,
}

/// `POST /account/2fa/totp`: start an enrolment, confirm it with a first code, or
/// remove the app.
pub async fn post_totp(
    RecentSession(current): RecentSession,
    State(state): State<AppState>,
    origin: AuditOrigin,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<TotpForm>,
) -> Response {
    let ctx = Ctx::new(&state, &current, &headers, origin);
    let answered = match form.action {
        TotpAction::Start => start(&ctx).await,
        TotpAction::Confirm => confirm(&ctx, &form).await,
        TotpAction::Disable => super::remove_factor(&ctx, Factor::Totp).await,
    };
    answered.unwrap_or_else(|e| e.respond(PAGE, ctx.lang, request_id))
}

/// A new secret for this browser session's enrolment (replacing one it started before),
/// kept encrypted until its first code; then the enrolment page (a GET, so a reload
/// shows the same key).
async fn start(ctx: &Ctx<'_>) -> Result<Response, ConsoleError> {
    let state = ctx.state;
    let secret = totp::new_secret(&mut rand::rng());
    let sealed = state
        .master
        .encrypt(&secret)
        .map_err(ConsoleError::internal)?;
    state
        .ephemeral
        .put(
            &enrol_key(ctx.current.session.id),
            sealed.as_bytes(),
            state.clock.now() + ENROL_WINDOW,
        )
        .await?;
    tracing::info!(user = %ctx.user().id.0, "authenticator enrolment started");
    Ok(see_other(TWO_STEP_TOTP, &[]))
}

/// The code as typed, if it can be one: six digits, spaces allowed (apps show "123 456").
fn typed_code(code: &str) -> Option<String> {
    if code.len() > MAX_CODE_LEN {
        return None;
    }
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// Confirms this browser's enrolment with a first code from the app. The code is checked
/// like a sign-in's (±1 step), and a wrong one counts against the account's second step
/// like a wrong sign-in code: someone holding a session must not get unlimited guesses
/// here. The matched step is stored, so the confirming code cannot sign in afterwards
/// (RFC 6238 §5.2).
async fn confirm(ctx: &Ctx<'_>, form: &TotpForm) -> Result<Response, ConsoleError> {
    let state = ctx.state;
    let user = ctx.user();
    let Some(secret) = enrolment(state, ctx.current.session.id).await? else {
        // Never started in this browser session, expired, or confirmed already.
        let factors = ctx.factors().await?;
        return Ok(overview(
            StatusCode::BAD_REQUEST,
            ctx.lang,
            &form.csrf,
            &factors,
            None,
            Some(Msg::TwoStepEnrolExpired),
            &[],
        ));
    };
    let before = ctx.factors().await?;
    let again = |status, error: Msg, retry| {
        let page = EnrolPage {
            error: Some(error.text(ctx.lang)),
            retry,
            ..enrol_page(ctx, &form.csrf, &secret, before.totp)?
        };
        Ok(render(status, &page, &[]))
    };
    let locked = |until: OffsetDateTime| {
        let when = ctx.lang.clock_time(
            until,
            state.clock.now(),
            state.config.throttle.display_offset(),
        );
        again(
            StatusCode::TOO_MANY_REQUESTS,
            Msg::TwoStepLocked,
            Some(ctx.lang.try_again_after(&when)),
        )
    };
    let Some(code) = typed_code(&form.code) else {
        // Not a code at all: nothing was guessed, nothing is counted.
        return again(StatusCode::BAD_REQUEST, Msg::TwoStepCodeMalformed, None);
    };
    if let Some(until) = second_step::locked_until(state, user.id).await? {
        tracing::warn!(user = %user.id.0, "authenticator enrolment: codes locked, not checked");
        return locked(until);
    }
    let app = authenticator(user, &secret)?;
    let Some(step) = app.check(&code, state.clock.now().unix_timestamp()) else {
        let lock = second_step::count_failure(state, user.id).await?;
        tracing::warn!(user = %user.id.0, locked = lock.is_some(), "authenticator enrolment: wrong code");
        return match lock {
            Some(until) => locked(until),
            None => again(StatusCode::BAD_REQUEST, Msg::TwoStepCodeWrong, None),
        };
    };
    // Taken, not just read: of two confirmations sent at once, one turns the app on.
    if state
        .ephemeral
        .take(&enrol_key(ctx.current.session.id))
        .await?
        .is_none()
    {
        return Ok(overview(
            StatusCode::BAD_REQUEST,
            ctx.lang,
            &form.csrf,
            &before,
            None,
            Some(Msg::TwoStepEnrolExpired),
            &[],
        ));
    }
    // Recovery codes come with the first factor; a member adding or replacing one keeps
    // theirs (and can make new ones on the page).
    let codes = if before.any() {
        Vec::new()
    } else {
        second_step::new_recovery_codes(&mut rand::rng())
    };
    let what = if before.totp {
        TwoStepChange::TotpReplaced
    } else {
        TwoStepChange::TotpOn
    };
    let change = ctx.change(METHOD_TOTP, LoginResult::Enrolled, what, before.any(), true)?;
    let audit = ctx.audit("user.2fa_totp_enrol", METHOD_TOTP, before.any(), true);
    state
        .db
        .two_step()
        .audited(audit)
        .enable_totp(
            state.clock.now(),
            user.id,
            StoredTotp {
                // Sealed again under the current master key: the waiting copy may have
                // been sealed by a replica that had not yet changed keys (a master-key
                // rotation in progress), and this one is kept for good.
                secret_enc: state
                    .master
                    .encrypt(&secret)
                    .map_err(ConsoleError::internal)?,
                last_step: step,
            },
            hashes(state, user, &codes),
            Some(ctx.device()),
            change,
        )
        .await?;
    tracing::info!(user = %user.id.0, replaced = before.totp, "authenticator app turned on");
    if codes.is_empty() {
        let done = if before.totp {
            Done::TotpReplaced
        } else {
            Done::TotpOn
        };
        return Ok(done.back());
    }
    show_codes(ctx, &form.csrf, &codes, Msg::TwoStepCodesOn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_six_digits_are_a_code_with_spaces_allowed() {
        assert_eq!(typed_code("123456").as_deref(), Some("123456"));
        assert_eq!(typed_code(" 123 456 ").as_deref(), Some("123456"));
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            "１２３４５６",
            "+12345",
            "123\u{0}456",
            &"1".repeat(10_000),
            &format!("123456{}", " ".repeat(20)),
        ] {
            assert_eq!(typed_code(bad), None, "{bad:?}");
        }
    }
}
