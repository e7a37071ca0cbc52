//! `/account/apps`: the apps that can act for the member (a remembered consent, or a grant
//! with a usable token), what each may see, since when and when it was last used; and
//! "remove access", which revokes its grants (their tokens stop working), forgets the
//! consent and sends the app a back-channel logout (`AppRepo::remove_access`, one
//! transaction). An app is named by its client id and looked up among this member's
//! connected apps only.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use time::Duration;

use super::APPS;
use super::audit_ctx::AuditOrigin;
use super::console::CurrentSession;
use crate::oidc::authorize::see_other;
use crate::oidc::consent::scope_words;
use crate::state::AppState;
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render};

/// One connected app, in words.
struct Line {
    client_id: String,
    name: String,
    may_see: Vec<&'static str>,
    since: String,
    last_used: String,
}

#[derive(Template)]
#[template(path = "account_apps.html")]
struct AppsPage<'a> {
    lang: Lang,
    csrf: &'a str,
    notice: Option<&'static str>,
    apps: Vec<Line>,
}

impl AppsPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

fn access_token_life(state: &AppState) -> Duration {
    Duration::seconds(state.config.tokens.access_token_secs.into())
}

fn failed(lang: Lang, request_id: RequestId, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "connected apps failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        lang,
        Msg::ServerError,
        request_id.0,
    )
}

/// `GET /account/apps`.
pub async fn list(
    State(state): State<AppState>,
    current: CurrentSession,
    headers: HeaderMap,
    request_id: RequestId,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = page_lang(None, Some(&current.user.locale), &headers);
    let removed = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "done" && v == "removed");
    let apps = match state
        .db
        .apps()
        .connected(
            current.user.id,
            state.clock.now(),
            access_token_life(&state),
        )
        .await
    {
        Ok(apps) => apps,
        Err(e) => return failed(lang, request_id, &e),
    };
    let offset = state.config.throttle.display_offset();
    let apps = apps
        .into_iter()
        .map(|a| Line {
            may_see: a
                .scopes
                .iter()
                .filter_map(|s| scope_words(s))
                .map(|m| m.text(lang))
                .collect(),
            since: super::console::minute(a.since, offset),
            last_used: super::console::minute(a.last_used, offset),
            client_id: a.client_id,
            name: a.name,
        })
        .collect();
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    render(
        StatusCode::OK,
        &AppsPage {
            lang,
            csrf: &csrf,
            notice: removed.then(|| Msg::AppsRemoved.text(lang)),
            apps,
        },
        set_cookie.as_slice(),
    )
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    client_id: String,
}

/// `POST /account/apps/remove`.
pub async fn remove(
    State(state): State<AppState>,
    current: CurrentSession,
    headers: HeaderMap,
    request_id: RequestId,
    origin: AuditOrigin,
    CsrfForm(form): CsrfForm<RemoveForm>,
) -> Response {
    let lang = page_lang(None, Some(&current.user.locale), &headers);
    if form.client_id.is_empty() || form.client_id.len() > 128 {
        return error_page(StatusCode::NOT_FOUND, lang, Msg::AppsNotFound, None);
    }
    let now = state.clock.now();
    let audit = origin.event(
        now,
        current.user.id,
        "user.app_revoke",
        serde_json::json!({ "client_id": form.client_id }),
    );
    let removed = state
        .db
        .apps()
        .audited(audit)
        .remove_access(current.user.id, &form.client_id, now)
        .await;
    match removed {
        Ok(true) => {
            tracing::info!(user = %current.user.id.0, client_id = %form.client_id, "account: an app's access removed");
            see_other(&format!("{APPS}?done=removed"), &[])
        }
        Ok(false) => error_page(StatusCode::NOT_FOUND, lang, Msg::AppsNotFound, None),
        Err(e) => failed(lang, request_id, &e),
    }
}

/// A `GET` of the form's address: the list instead of "method not allowed".
pub async fn to_list() -> Response {
    see_other(APPS, &[])
}
