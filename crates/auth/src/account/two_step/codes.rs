//! Recovery codes: ten made with the first factor or on request, shown once, and
//! downloadable as a text file by the same browser session for a few minutes after.

use super::PAGE;
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{ConsoleError, CsrfOnly, Ctx};
use crate::account::TWO_STEP;
use crate::account::audit_ctx::AuditOrigin;
use crate::account::console::CurrentSession;
use crate::account::delete::in_words;
use crate::account::reauth::RecentSession;
use crate::authn::second_step::{self, METHOD_RECOVERY_CODE};
use crate::domain::User;
use crate::mail::templates::TwoStepChange;
use crate::oidc::authorize::see_other;
use crate::state::AppState;
use crate::store::LoginResult;
use crate::web::csrf::CsrfForm;
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render};

/// How long new recovery codes can be downloaded after they are shown: they are kept
/// (encrypted) only for this, and the stored hashes can never be shown again.
const DOWNLOAD_WINDOW: Duration = Duration::minutes(10);
/// The download's file name (the page promises a text file of the codes).
const DOWNLOAD_NAME: &str = "tobira-recovery-codes.txt";

/// Where the recovery codes just shown to a browser session wait for its download.
pub(super) fn codes_key(session: Uuid) -> String {
    format!("two_step_codes:{session}")
}

#[derive(Template)]
#[template(path = "account_2fa_codes.html")]
struct CodesPage<'a> {
    lang: Lang,
    csrf: &'a str,
    notice: &'static str,
    codes: &'a [String],
}

impl CodesPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

pub(super) fn hashes(state: &AppState, user: &User, codes: &[String]) -> Vec<String> {
    codes
        .iter()
        .map(|c| second_step::recovery_code_hash(&state.identifiers, user.id, c))
        .collect()
}

/// What the download keeps of new recovery codes (encrypted with the master key).
#[derive(Serialize, Deserialize)]
struct Download {
    codes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    made_at: OffsetDateTime,
}

/// Shows new recovery codes, the only time they are shown, and keeps them (encrypted,
/// for this browser session only) for the download of the next minutes.
pub(super) async fn show_codes(
    ctx: &Ctx<'_>,
    csrf: &str,
    codes: &[String],
    notice: Msg,
) -> Result<Response, ConsoleError> {
    let state = ctx.state;
    let kept = serde_json::to_vec(&Download {
        codes: codes.to_vec(),
        made_at: state.clock.now(),
    })
    .map_err(ConsoleError::internal)?;
    let sealed = state
        .master
        .encrypt(&zeroize::Zeroizing::new(kept))
        .map_err(ConsoleError::internal)?;
    // The codes are in the database already: a download that cannot be kept is no
    // reason to hide them; the page still shows them.
    if let Err(e) = state
        .ephemeral
        .put(
            &codes_key(ctx.current.session.id),
            sealed.as_bytes(),
            state.clock.now() + DOWNLOAD_WINDOW,
        )
        .await
    {
        tracing::warn!(error = %e, "recovery codes: the download cannot be kept");
    }
    let page = CodesPage {
        lang: ctx.lang,
        csrf,
        notice: notice.text(ctx.lang),
        codes,
    };
    Ok(render(StatusCode::OK, &page, &[]))
}

/// `POST /account/2fa/recovery`: ten new recovery codes replace every old one.
pub async fn post_recovery(
    RecentSession(current): RecentSession,
    State(state): State<AppState>,
    origin: AuditOrigin,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<CsrfOnly>,
) -> Response {
    let ctx = Ctx::new(&state, &current, &headers, origin);
    regenerate(&ctx, &form.csrf)
        .await
        .unwrap_or_else(|e| e.respond(PAGE, ctx.lang, request_id))
}

async fn regenerate(ctx: &Ctx<'_>, csrf: &str) -> Result<Response, ConsoleError> {
    let state = ctx.state;
    let user = ctx.user();
    let before = ctx.factors().await?;
    // Recovery codes are the way back into a second step; without one they mean nothing.
    if !before.any() {
        return Ok(see_other(TWO_STEP, &[]));
    }
    let codes = second_step::new_recovery_codes(&mut rand::rng());
    let change = ctx.change(
        METHOD_RECOVERY_CODE,
        LoginResult::Enrolled,
        TwoStepChange::RecoveryRenewed,
        true,
        true,
    )?;
    let audit = ctx.audit(
        "user.2fa_recovery_regenerate",
        METHOD_RECOVERY_CODE,
        true,
        true,
    );
    state
        .db
        .two_step()
        .audited(audit)
        .replace_recovery_codes(
            state.clock.now(),
            user.id,
            hashes(state, user, &codes),
            change,
        )
        .await?;
    tracing::info!(user = %user.id.0, "recovery codes renewed");
    show_codes(ctx, csrf, &codes, Msg::TwoStepCodesRenewed).await
}

/// `POST /account/2fa/recovery/download`: the recovery codes this browser session was
/// just shown, as a text file, within `DOWNLOAD_WINDOW` of their making; after it, 410.
///
/// It asks for a signed-in session, not a recent one with every factor: the codes were
/// made by this very session moments ago (after its own re-authentication) and are
/// kept for it alone, so the download shows nothing the page did not. Asking more would
/// send a member who just turned two-step verification on (whose session signed in
/// with the password alone) to sign in again before they could save their codes.
pub async fn post_download(
    current: CurrentSession,
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> Response {
    let user = &current.user;
    let lang = page_lang(None, Some(&user.locale), &headers);
    let kept = async {
        let Some(bytes) = state.ephemeral.get(&codes_key(current.session.id)).await? else {
            return Ok(None);
        };
        let sealed = String::from_utf8(bytes).map_err(ConsoleError::internal)?;
        let plain = state
            .master
            .decrypt(&sealed)
            .map_err(ConsoleError::internal)?;
        let kept: Download = serde_json::from_slice(&plain).map_err(ConsoleError::internal)?;
        Ok::<_, ConsoleError>(Some(kept))
    }
    .await;
    let kept = match kept {
        Ok(Some(kept)) => kept,
        Ok(None) => {
            return error_page(StatusCode::GONE, lang, Msg::TwoStepDownloadGone, None);
        }
        Err(e) => return e.respond(PAGE, lang, request_id),
    };
    let offset = state.config.throttle.display_offset();
    let mut text = format!(
        "{}\r\n{}\r\n{}\r\n\r\n",
        Msg::TwoStepCodesFileHeading.text(lang),
        user.email.display(),
        in_words(kept.made_at, offset, lang),
    );
    for code in &kept.codes {
        text.push_str(code);
        text.push_str("\r\n");
    }
    let mut res = (StatusCode::OK, text).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{DOWNLOAD_NAME}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // Secrets: no cache (shared or the browser's) may keep a copy.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
