//! RP-Initiated Logout 1.0 (`/end-session`). With a valid `id_token_hint` for the
//! signed-in member the session ends at once; otherwise the member is asked first, so a
//! third-party page cannot sign people out by linking here. `post_logout_redirect_uri`
//! must be registered for the client, exactly; anything else gets a page, never a
//! redirect.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::Duration;
use url::Url;

use super::authorize::{id_token_hint, repost_as_get, see_other};
use super::params::Params;
use super::paths;
use crate::authn::session;
use crate::crypto::random_token;
use crate::state::AppState;
use crate::web::cookies::SESSION;
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render, unavailable_page};

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    lang: Lang,
    /// A pending confirmation, or `None` once signed out.
    tx: Option<&'a str>,
    csrf: &'a str,
}

impl LogoutPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// Where to go once signed out.
#[derive(Debug, Default, Serialize, Deserialize)]
struct After {
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    ui_locales: Option<String>,
}

const CONFIRM_LIFETIME: Duration = Duration::minutes(10);

fn logout_tx_key(id: &str) -> String {
    format!("logout_tx:{id}")
}

pub async fn get_end_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    RawQuery(query): RawQuery,
) -> Response {
    let (params, problem) = Params::parse_lenient(query.unwrap_or_default().as_bytes());
    let get = |k: &str| params.get(k).map(str::to_owned);
    let ui_locales = get("ui_locales");
    let lang = page_lang(None, ui_locales.as_deref(), &headers);
    let bad = || error_page(StatusCode::BAD_REQUEST, lang, Msg::BadLogoutRequest, None);
    if problem.is_some() {
        return bad();
    }
    let internal = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "end-session failed");
        error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            lang,
            Msg::ServerError,
            request_id.0.clone(),
        )
    };

    // The hint may have expired (it usually has); it must still be ours and signed.
    let hint = match get("id_token_hint") {
        Some(token) => match id_token_hint(&state, &token) {
            Some(claims) => Some(claims),
            None => return bad(),
        },
        None => None,
    };
    let hint_aud: Vec<String> = match hint.as_ref().and_then(|c| c.get("aud")) {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let client_id = match (get("client_id"), hint_aud.first()) {
        (Some(id), _) if !hint_aud.is_empty() && !hint_aud.contains(&id) => return bad(),
        (Some(id), _) => Some(id),
        (None, Some(aud)) => Some(aud.clone()),
        (None, None) => None,
    };
    let post_logout = get("post_logout_redirect_uri");
    if let Some(uri) = &post_logout {
        let Some(client_id) = &client_id else {
            return bad();
        };
        let client = match state.db.clients().find(client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => return bad(),
            Err(e) => return internal(&e),
        };
        if !client
            .post_logout_redirect_uris
            .iter()
            .any(|u| u.as_str() == uri)
        {
            return bad();
        }
    }
    let after = After {
        post_logout_redirect_uri: post_logout,
        state: get("state"),
        ui_locales,
    };

    let secret = state.cookies.get(&headers, SESSION);
    let current =
        match session::current(&state.db, &state.clock, &state.sessions, secret.as_deref()).await {
            Ok(s) => s,
            Err(e) => return internal(&e),
        };
    let Some(current) = current else {
        return finish(&state, lang, &after);
    };
    let hinted_member = match (&hint, state.db.users().find_by_id(current.user_id).await) {
        (Some(claims), Ok(Some(user))) => {
            claims.get("sub").and_then(Value::as_str) == Some(user.sub.as_str())
        }
        (_, Err(e)) => return internal(&e),
        _ => false,
    };
    if hinted_member {
        if let Err(e) = state.db.sessions().end(current.id, state.clock.now()).await {
            return internal(&e);
        }
        return finish(&state, lang, &after);
    }
    // Ask first.
    let id = random_token(&mut rand::rng(), 24);
    let bytes = serde_json::to_vec(&after).unwrap_or_default();
    if let Err(e) = state
        .ephemeral
        .put(
            &logout_tx_key(&id),
            &bytes,
            state.clock.now() + CONFIRM_LIFETIME,
        )
        .await
    {
        tracing::warn!(error = %e, "end-session: store unavailable");
        return unavailable_page(lang);
    }
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    render(
        StatusCode::OK,
        &LogoutPage {
            lang,
            tx: Some(&id),
            csrf: &csrf,
        },
        set_cookie.as_slice(),
    )
}

/// A POSTed logout request is sent back as a GET, like `/authorize`'s.
pub async fn post_end_session(headers: HeaderMap, body: Bytes) -> Response {
    repost_as_get(paths::END_SESSION, &headers, &body)
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    tx: String,
}

pub async fn post_confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<ConfirmForm>,
) -> Response {
    let lang = page_lang(None, None, &headers);
    let internal = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "end-session failed");
        error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            lang,
            Msg::ServerError,
            request_id.0.clone(),
        )
    };
    let after: After = match state.ephemeral.take(&logout_tx_key(&form.tx)).await {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Ok(None) => return error_page(StatusCode::BAD_REQUEST, lang, Msg::FormExpired, None),
        Err(e) => {
            tracing::warn!(error = %e, "end-session: store unavailable");
            return unavailable_page(lang);
        }
    };
    let lang = page_lang(None, after.ui_locales.as_deref(), &headers);
    let secret = state.cookies.get(&headers, SESSION);
    match session::current(&state.db, &state.clock, &state.sessions, secret.as_deref()).await {
        Ok(Some(s)) => {
            if let Err(e) = state.db.sessions().end(s.id, state.clock.now()).await {
                return internal(&e);
            }
        }
        Ok(None) => {}
        Err(e) => return internal(&e),
    }
    finish(&state, lang, &after)
}

/// The session cookie goes; then back to the client, or a "signed out" page.
fn finish(state: &AppState, lang: Lang, after: &After) -> Response {
    let clear = [state.cookies.clear(SESSION)];
    if let Some(uri) = &after.post_logout_redirect_uri
        && let Ok(mut url) = Url::parse(uri)
    {
        if let Some(s) = &after.state {
            url.query_pairs_mut().append_pair("state", s);
        }
        return see_other(url.as_str(), &clear);
    }
    render(
        StatusCode::OK,
        &LogoutPage {
            lang,
            tx: None,
            csrf: "",
        },
        &clear,
    )
}
