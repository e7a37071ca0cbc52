//! The top page, the member's own page, and public member profiles.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;

use crate::i18n::{self, CONSOLE_PATHS, Texts};
use crate::session::{self, SignedIn};
use crate::state::AppState;
use crate::web::{PageError, message, page, texts};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(top))
        .route("/mypage", get(mypage))
        .route("/users/{member_id}", get(profile))
}

#[derive(Template)]
#[template(path = "top.html")]
struct TopPage<'a> {
    lang: &'a str,
    t: &'a Texts,
    signed_in: bool,
}

async fn top(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let t = texts(&headers);
    let signed_in = matches!(session::current(&state, &headers).await, Ok(Some(_)));
    page(
        StatusCode::OK,
        &TopPage {
            lang: t.lang,
            t,
            signed_in,
        },
    )
}

#[derive(Template)]
#[template(path = "mypage.html")]
struct MyPage<'a> {
    lang: &'a str,
    t: &'a Texts,
    name: &'a str,
    email: &'a str,
    last_login: String,
    member_id: &'a str,
    console_links: Vec<(String, &'a str)>,
    csrf: &'a str,
}

async fn mypage(
    State(state): State<AppState>,
    headers: HeaderMap,
    SignedIn(session): SignedIn,
) -> Result<Response, PageError> {
    let t = texts(&headers);
    let member = state
        .store
        .members()
        .lookup(&session.member_id)
        .await
        .map_err(PageError::internal(t))?
        .ok_or_else(|| PageError::sign_in_required(t))?;
    // The token must still be good: a revoked grant or ended OP session signs us out.
    let token = session::access_token(&state, &session, &member)
        .await
        .map_err(PageError::internal(t))?
        .ok_or_else(|| PageError::sign_in_required(t))?;
    let (mut name, mut email) = (member.display_name.clone(), member.email.clone());
    if let Ok(provider) = state.provider().await
        && let Ok((n, e)) = provider.userinfo(&token, &member.sub).await
    {
        (name, email) = (n, e);
    }
    let issuer = state.config.oidc.issuer.trim_end_matches('/');
    let console_links = CONSOLE_PATHS
        .iter()
        .zip(t.console.iter())
        .map(|(path, label)| (format!("{issuer}{path}"), *label))
        .collect();
    let last_login = match member.last_login_at {
        Some(at) => {
            let jst = at.to_offset(time::macros::offset!(+9));
            let when = jst
                .format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute] JST"
                ))
                .unwrap_or_default();
            let how = i18n::method(t, &member.last_login_method);
            format!("{when} ({how})")
        }
        None => String::new(),
    };
    Ok(page(
        StatusCode::OK,
        &MyPage {
            lang: t.lang,
            t,
            name: &name,
            email: &email,
            last_login,
            member_id: &member.id,
            console_links,
            csrf: &session.csrf,
        },
    ))
}

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage<'a> {
    lang: &'a str,
    name: &'a str,
    last_login: Option<String>,
}

async fn profile(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(member_id): Path<String>,
) -> Result<Response, PageError> {
    let t = texts(&headers);
    let Some(member) = state
        .store
        .members()
        .lookup(&member_id)
        .await
        .map_err(PageError::internal(t))?
    else {
        return Ok(message(StatusCode::NOT_FOUND, t, t.not_found, None, false));
    };
    // Read on every request: hiding takes effect at once.
    let now = state.clock.now();
    let last_login = member
        .last_login_at
        .filter(|_| member.show_last_login)
        .map(|at| i18n::last_seen(t, now - at));
    Ok(page(
        StatusCode::OK,
        &ProfilePage {
            lang: t.lang,
            name: &member.display_name,
            last_login,
        },
    ))
}
