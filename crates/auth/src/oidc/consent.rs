//! The consent page: a client that is not one of our own apps asks for scopes, and the
//! member allows or denies, in plain words. Allowed scopes are remembered per client
//! (except `offline_access`, asked every time, OIDC Core §11).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::authorize::{Rejection, respond_to_client, see_other};
use super::error::ErrorCode;
use super::paths;
use crate::authn::session;
use crate::domain::BrowserSession;
use crate::flow::{self, Park, Stage};
use crate::state::AppState;
use crate::web::cookies::SESSION;
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render};

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    lang: Lang,
    client_name: &'a str,
    /// In the page's language.
    scopes: Vec<&'static str>,
    tx: &'a str,
    csrf: &'a str,
}

impl ConsentPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// A scope in the member's words (the consent page and the connected apps).
pub fn scope_words(scope: &str) -> Option<Msg> {
    match scope {
        "openid" => Some(Msg::ScopeOpenid),
        "profile" => Some(Msg::ScopeProfile),
        "email" => Some(Msg::ScopeEmail),
        "offline_access" => Some(Msg::ScopeOfflineAccess),
        _ => None,
    }
}

#[derive(Deserialize)]
pub struct ConsentQuery {
    tx: String,
    lang: Option<String>,
}

/// The parked request (of this browser) and the signed-in session it is for; `Err` is
/// the page to show.
async fn context(
    state: &AppState,
    headers: &HeaderMap,
    tx_id: &str,
    request_id: &RequestId,
) -> Result<(Park, BrowserSession), Response> {
    let tx = match flow::resume(state, headers, tx_id).await {
        Ok(tx) => tx,
        Err(e) => return Err(Rejection::from(e).respond(state, headers, request_id.clone())),
    };
    let secret = state.cookies.get(headers, SESSION);
    match session::current(&state.db, &state.clock, &state.sessions, secret.as_deref()).await {
        Ok(Some(s)) => Ok((tx, s)),
        // Signed out meanwhile: sign in again, then come back here.
        Ok(None) => Err(see_other(&format!("{}?tx={tx_id}", paths::LOGIN), &[])),
        Err(e) => {
            Err(Rejection::Internal(e.to_string()).respond(state, headers, request_id.clone()))
        }
    }
}

pub async fn get_consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Query(q): Query<ConsentQuery>,
) -> Response {
    let (tx, _) = match context(&state, &headers, &q.tx, &request_id).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let lang = page_lang(
        q.lang.as_deref(),
        tx.request.ui_locales.as_deref(),
        &headers,
    );
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    let page = ConsentPage {
        lang,
        client_name: &tx.request.client_name,
        scopes: tx
            .request
            .scopes
            .iter()
            .filter_map(|s| scope_words(s))
            .map(|m| m.text(lang))
            .collect(),
        tx: &q.tx,
        csrf: &csrf,
    };
    render(StatusCode::OK, &page, set_cookie.as_slice())
}

#[derive(Deserialize)]
pub struct ConsentForm {
    #[serde(default)]
    tx: String,
    #[serde(default)]
    decision: String,
}

pub async fn post_consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<ConsentForm>,
) -> Response {
    let lang = page_lang(None, None, &headers);
    let (mut tx, session) = match context(&state, &headers, &form.tx, &request_id).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let internal = |e: &dyn std::fmt::Display| {
        Rejection::Internal(e.to_string()).respond(&state, &headers, request_id.clone())
    };
    match form.decision.as_str() {
        "allow" => {
            let remembered: Vec<String> = tx
                .request
                .scopes
                .iter()
                .filter(|s| *s != "offline_access")
                .cloned()
                .collect();
            let mut all = match state
                .db
                .consents()
                .find(session.user_id, &tx.request.client_id)
                .await
            {
                Ok(existing) => existing.unwrap_or_default(),
                Err(e) => return internal(&e),
            };
            for s in remembered {
                if !all.contains(&s) {
                    all.push(s);
                }
            }
            if let Err(e) = state
                .db
                .consents()
                .remember(
                    session.user_id,
                    &tx.request.client_id,
                    &all,
                    state.clock.now(),
                )
                .await
            {
                return internal(&e);
            }
            // Honoured only for this session and account (a `continue` link sent to
            // someone else's browser must not carry this member's consent).
            let stage = Stage::Consented {
                session: session.id,
                user: session.user_id.0,
            };
            if let Err(e) = flow::advance(&state, &form.tx, &mut tx, stage).await {
                return Rejection::from(e).respond(&state, &headers, request_id);
            }
            see_other(
                &format!("{}?tx={}", paths::AUTHORIZE_CONTINUE, form.tx),
                &[],
            )
        }
        "deny" => {
            // The answer goes to the client once: the park is taken.
            let tx = match flow::finish(&state, &headers, &form.tx).await {
                Ok(tx) => tx,
                Err(e) => return Rejection::from(e).respond(&state, &headers, request_id),
            };
            let mut params = vec![
                ("error", ErrorCode::AccessDenied.as_str().to_owned()),
                (
                    "error_description",
                    "the member denied the request".to_owned(),
                ),
            ];
            if let Some(s) = &tx.request.state {
                params.push(("state", s.clone()));
            }
            respond_to_client(
                &state,
                &tx.request.redirect_uri,
                params,
                tx.request.form_post,
            )
        }
        _ => error_page(StatusCode::BAD_REQUEST, lang, Msg::BadRequest, None),
    }
}
