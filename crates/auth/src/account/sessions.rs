//! `/account/sessions`: the browsers signed in to the account now, and signing them out
//! one at a time or all but this one. A session is named by its public `sid` (already in
//! ID tokens), never by its row id or cookie secret, and is only ever ended through
//! `SessionRepo::end`, the one place that also revokes what hangs from a session.

use super::SESSIONS;
use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use time::UtcOffset;

use super::audit_ctx::AuditOrigin;
use super::console::CurrentSession;
use crate::domain::BrowserSession;
use crate::oidc::authorize::see_other;
use crate::state::AppState;
use crate::store::StoreError;
use crate::web::cookies::SESSION;
use crate::web::csrf::{self, CsrfForm};
use crate::web::device::Device;
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render};

/// What the list tells after an action (`?done=…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Done {
    One,
    Others,
}

impl Done {
    fn param(self) -> &'static str {
        match self {
            Self::One => "one",
            Self::Others => "others",
        }
    }

    fn from_query(query: &str) -> Option<Self> {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "done")
            .and_then(|(_, v)| match v.as_ref() {
                "one" => Some(Self::One),
                "others" => Some(Self::Others),
                _ => None,
            })
    }

    fn notice(self) -> Msg {
        match self {
            Self::One => Msg::SessionsEnded,
            Self::Others => Msg::SessionsOthersEnded,
        }
    }

    fn back(self) -> String {
        format!("{SESSIONS}?done={}", self.param())
    }
}

/// Why a sessions request did not go through.
#[derive(Debug)]
enum SessionsError {
    /// The reference names no live session of this account: another member's, a made-up
    /// one or one that has ended. Nothing changed.
    NotYours,
    Store(StoreError),
}

impl From<StoreError> for SessionsError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl SessionsError {
    fn respond(self, lang: Lang, request_id: RequestId) -> Response {
        match self {
            Self::NotYours => error_page(StatusCode::NOT_FOUND, lang, Msg::SessionsNotFound, None),
            Self::Store(e) => {
                tracing::error!(error = %e, "account sessions failed");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    lang,
                    Msg::ServerError,
                    request_id.0,
                )
            }
        }
    }
}

/// One signed-in browser, in words.
struct Line {
    sid: String,
    device: String,
    ip: String,
    signed_in_at: String,
    last_active: String,
    current: bool,
}

impl Line {
    fn of(s: &BrowserSession, current: &BrowserSession, offset: UtcOffset, lang: Lang) -> Self {
        Self {
            sid: s.sid.clone(),
            device: Device::of(&s.user_agent).describe(lang),
            ip: s.ip.clone(),
            signed_in_at: super::console::minute(s.created_at, offset),
            last_active: super::console::minute(s.last_seen_at, offset),
            current: s.id == current.id,
        }
    }
}

#[derive(Template)]
#[template(path = "account_sessions.html")]
struct SessionsPage<'a> {
    lang: Lang,
    csrf: &'a str,
    /// What the last action did, in words.
    notice: Option<&'static str>,
    sessions: Vec<Line>,
    /// How many of them are other browsers than this one.
    others: usize,
}

impl SessionsPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// `GET /account/sessions`: the live sessions, the most recently active first.
pub async fn list(
    State(state): State<AppState>,
    current: CurrentSession,
    headers: HeaderMap,
    request_id: RequestId,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = page_lang(None, Some(&current.user.locale), &headers);
    let done = query.as_deref().and_then(Done::from_query);
    let live = state
        .db
        .sessions()
        .list_live(current.user.id, state.clock.now(), state.sessions.idle)
        .await;
    let live = match live {
        Ok(live) => live,
        Err(e) => return SessionsError::from(e).respond(lang, request_id),
    };
    let offset = state.config.throttle.display_offset();
    let sessions: Vec<Line> = live
        .iter()
        .map(|s| Line::of(s, &current.session, offset, lang))
        .collect();
    let others = sessions.iter().filter(|l| !l.current).count();
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    render(
        StatusCode::OK,
        &SessionsPage {
            lang,
            csrf: &csrf,
            notice: done.map(|d| d.notice().text(lang)),
            sessions,
            others,
        },
        set_cookie.as_slice(),
    )
}

#[derive(Deserialize)]
pub struct EndForm {
    #[serde(default)]
    sid: String,
}

/// `POST /account/sessions/end`: signs one browser out. This one may be named too; its
/// cookie then goes as well.
pub async fn end(
    State(state): State<AppState>,
    current: CurrentSession,
    headers: HeaderMap,
    request_id: RequestId,
    origin: AuditOrigin,
    CsrfForm(form): CsrfForm<EndForm>,
) -> Response {
    let lang = page_lang(None, Some(&current.user.locale), &headers);
    end_one(&state, &current, &origin, &form.sid)
        .await
        .unwrap_or_else(|e| e.respond(lang, request_id))
}

async fn end_one(
    state: &AppState,
    current: &CurrentSession,
    origin: &AuditOrigin,
    sid: &str,
) -> Result<Response, SessionsError> {
    let now = state.clock.now();
    // Looked up among this account's live sessions only, so a sid seen elsewhere (an ID
    // token of another member, a back-channel logout) cannot end someone else's session.
    let target = state
        .db
        .sessions()
        .list_live(current.user.id, now, state.sessions.idle)
        .await?
        .into_iter()
        .find(|s| !sid.is_empty() && s.sid == sid)
        .ok_or(SessionsError::NotYours)?;
    let this_device = target.id == current.session.id;
    let audit = origin.event(
        now,
        current.user.id,
        "user.session_end",
        serde_json::json!({ "count": 1, "this_device": this_device }),
    );
    // When the member acts against another browser, an email change it may have asked
    // for dies with it (the link needs no session of its own).
    let ended = state
        .db
        .sessions()
        .end_own(now, current.user.id, target.id, !this_device, &audit)
        .await?;
    // Not ended here means it ended meanwhile (signed out, or by support): it is gone
    // either way, and that ending was not the member's to record.
    if ended {
        tracing::info!(
            user = %current.user.id.0,
            count = 1,
            this_device,
            "account: a device signed out"
        );
    }
    let clear = if this_device {
        vec![state.cookies.clear(SESSION)]
    } else {
        Vec::new()
    };
    Ok(see_other(&Done::One.back(), &clear))
}

/// The sign-out-everywhere-else form has nothing but its CSRF token.
#[derive(Deserialize)]
pub struct EndOthersForm {}

/// `POST /account/sessions/end-others`: signs out every browser but this one.
pub async fn end_others(
    State(state): State<AppState>,
    current: CurrentSession,
    headers: HeaderMap,
    request_id: RequestId,
    origin: AuditOrigin,
    CsrfForm(_): CsrfForm<EndOthersForm>,
) -> Response {
    let lang = page_lang(None, Some(&current.user.locale), &headers);
    end_all_but_current(&state, &current, &origin)
        .await
        .unwrap_or_else(|e| e.respond(lang, request_id))
}

async fn end_all_but_current(
    state: &AppState,
    current: &CurrentSession,
    origin: &AuditOrigin,
) -> Result<Response, SessionsError> {
    let now = state.clock.now();
    // Every other session with its grants, and what they may have asked for (to move the
    // account to another address) or been granted (skipping the second step), in one
    // transaction with its record: a failure half-way leaves everything as it was, for
    // the member to retry.
    let ended = state
        .db
        .sessions()
        .end_others(
            now,
            current.user.id,
            current.session.id,
            &current.session.device_id,
            state.sessions.idle,
            |count| {
                origin.event(
                    now,
                    current.user.id,
                    "user.session_end",
                    serde_json::json!({ "count": count, "all_others": true }),
                )
            },
        )
        .await?;
    tracing::info!(
        user = %current.user.id.0,
        count = ended,
        "account: every other device signed out"
    );
    Ok(see_other(&Done::Others.back(), &[]))
}

/// A `GET` of a form's address (a stale form posted without a session comes back here
/// after signing in): show the list instead of "method not allowed".
pub async fn to_list() -> Response {
    see_other(SESSIONS, &[])
}
