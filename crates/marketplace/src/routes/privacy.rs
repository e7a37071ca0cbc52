//! The privacy setting: whether other members see when this member last signed in.
//! Changing it needs the member's grant confirmed at the OP, not just a live session.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use crate::form::ProtectedForm;
use crate::i18n::Texts;
use crate::session::{self, SignedIn};
use crate::state::AppState;
use crate::web::{PageError, page, redirect, texts};

pub fn router() -> Router<AppState> {
    Router::new().route("/settings/privacy", get(privacy).post(save_privacy))
}

#[derive(Template)]
#[template(path = "privacy.html")]
struct PrivacyPage<'a> {
    lang: &'a str,
    t: &'a Texts,
    show: bool,
    saved: bool,
    csrf: &'a str,
}

#[derive(Deserialize)]
struct PrivacyQuery {
    saved: Option<String>,
}

async fn privacy(
    State(state): State<AppState>,
    headers: HeaderMap,
    SignedIn(session): SignedIn,
    Query(q): Query<PrivacyQuery>,
) -> Result<Response, PageError> {
    let t = texts(&headers);
    let member = state
        .store
        .members()
        .lookup(&session.member_id)
        .await
        .map_err(PageError::internal(t))?
        .ok_or_else(|| PageError::sign_in_required(t))?;
    Ok(page(
        StatusCode::OK,
        &PrivacyPage {
            lang: t.lang,
            t,
            show: member.show_last_login,
            saved: q.saved.is_some(),
            csrf: &session.csrf,
        },
    ))
}

#[derive(Deserialize)]
struct PrivacyForm {
    show_last_login: Option<String>,
}

async fn save_privacy(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: ProtectedForm<PrivacyForm>,
) -> Result<Response, PageError> {
    let t = texts(&headers);
    let ProtectedForm { session, fields } = form;
    let members = state.store.members();
    let member = members
        .lookup(&session.member_id)
        .await
        .map_err(PageError::internal(t))?
        .ok_or_else(|| PageError::sign_in_required(t))?;
    if !session::confirm_grant(&state, &session, &member)
        .await
        .map_err(PageError::internal(t))?
    {
        return Err(PageError::sign_in_required(t));
    }
    let show = fields.show_last_login.as_deref() == Some("on");
    members
        .set_show_last_login(&member.id, show)
        .await
        .map_err(PageError::internal(t))?;
    Ok(redirect("/settings/privacy?saved=1", &[]))
}
