//! `/account/profile`: the member's display name and language. The name is what the
//! `profile` scope gives clients (`name`); the language is that of Tobira's pages and
//! mails to the member.

use super::PROFILE;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::console::CurrentSession;
use super::{FormError, display_name};
use crate::oidc::authorize::see_other;
use crate::state::AppState;
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render};

#[derive(Template)]
#[template(path = "account_profile.html")]
struct ProfilePage<'a> {
    lang: Lang,
    csrf: &'a str,
    display_name: &'a str,
    /// The account's language (`ja`, `en`).
    locale: &'a str,
    error: Option<FormError>,
    saved: bool,
}

impl ProfilePage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

#[derive(Deserialize)]
pub struct ProfileQuery {
    #[serde(default)]
    saved: Option<String>,
}

pub async fn get_profile(
    current: CurrentSession,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ProfileQuery>,
) -> Response {
    let user = &current.user;
    let lang = page_lang(None, Some(&user.locale), &headers);
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    let page = ProfilePage {
        lang,
        csrf: &csrf,
        display_name: &user.display_name,
        locale: Lang::from_tag(&user.locale).unwrap_or(lang).tag(),
        error: None,
        saved: q.saved.is_some(),
    };
    render(StatusCode::OK, &page, set_cookie.as_slice())
}

#[derive(Deserialize)]
pub struct ProfileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    locale: String,
}

pub async fn post_profile(
    current: CurrentSession,
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<ProfileForm>,
) -> Response {
    let user = &current.user;
    let lang = page_lang(None, Some(&user.locale), &headers);
    let again = |error: Msg| {
        let page = ProfilePage {
            lang,
            csrf: &form.csrf,
            display_name: &form.display_name,
            locale: &form.locale,
            error: Some(FormError::new(error, None, lang)),
            saved: false,
        };
        render(StatusCode::BAD_REQUEST, &page, &[])
    };
    let Some(name) = display_name(&form.display_name) else {
        return again(Msg::DisplayNameInvalid);
    };
    // Only the languages the pages speak, by their exact tag.
    let Some(locale) = Lang::from_tag(&form.locale).filter(|l| l.tag() == form.locale) else {
        return again(Msg::BadRequest);
    };
    if let Err(e) = state
        .db
        .users()
        .set_profile(user.id, name, locale.tag(), &state.clock)
        .await
    {
        tracing::error!(error = %e, "profile: cannot save");
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            lang,
            Msg::ServerError,
            request_id.0,
        );
    }
    tracing::info!(user = %user.id.0, "profile changed");
    see_other(&format!("{PROFILE}?saved=1"), &[])
}
