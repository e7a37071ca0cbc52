//! The skill marketplace: a relying party that hands every sign-in to Tobira. It keeps
//! its own members (keyed by issuer + `sub`), server-side sessions holding the tokens,
//! public profiles, and the privacy setting that hides a member's last sign-in time.

pub mod config;
pub mod i18n;
pub mod oidc;
pub mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, RwLock};

use crate::config::Config;
use crate::i18n::{CONSOLE_PATHS, Texts};
use crate::oidc::{OidcError, Provider};
use crate::store::{Store, login_states, sessions};

const SESSION_COOKIE: &str = "mp_session";
const LOGIN_COOKIE: &str = "mp_login";
/// A sign-in must come back within this long.
const LOGIN_LIFETIME: Duration = Duration::minutes(10);
/// Refresh this long before the access token expires.
const REFRESH_MARGIN: Duration = Duration::seconds(30);

#[allow(clippy::disallowed_methods)] // the marketplace has no movable clock yet
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn random(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

fn hash(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

#[derive(Clone)]
struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    public_url: String,
    store: Store,
    provider: RwLock<Option<Arc<Provider>>>,
    /// One refresh at a time per member: two tabs must not both spend the same
    /// refresh token (the OP would see a reuse and revoke the grant).
    refreshing: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl AppState {
    /// The OP's metadata, discovered on first use and kept.
    async fn provider(&self) -> Result<Arc<Provider>, OidcError> {
        if let Some(p) = self.0.provider.read().await.as_ref() {
            return Ok(p.clone());
        }
        let mut slot = self.0.provider.write().await;
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let c = &self.0.config.oidc;
        let redirect = format!("{}/callback", self.0.public_url);
        let p = Arc::new(
            Provider::discover(&c.issuer, &c.client_id, c.client_secret.expose(), &redirect)
                .await?,
        );
        *slot = Some(p.clone());
        Ok(p)
    }
}

pub struct App {
    listener: TcpListener,
    router: Router,
}

impl App {
    /// Builds the marketplace on a bound listener; `public_url` defaults to it.
    pub async fn build_on(listener: TcpListener, config: Config) -> Result<Self, String> {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let public_url = if config.public_url.is_empty() {
            format!("http://{addr}")
        } else {
            config.public_url.trim_end_matches('/').to_owned()
        };
        let store = Store::open(&config.database_url())
            .await
            .map_err(|e| format!("cannot open the database: {e}"))?;
        let state = AppState(Arc::new(Inner {
            config,
            public_url,
            store,
            provider: RwLock::new(None),
            refreshing: Mutex::new(HashMap::new()),
        }));
        Ok(Self {
            listener,
            router: router(state),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!("listening on http://{}", self.local_addr());
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(top))
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", axum::routing::post(logout))
        .route("/mypage", get(mypage))
        .route("/users/{member_id}", get(profile))
        .route("/settings/privacy", get(privacy).post(save_privacy))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Security headers on every response; pages are personal, so not cached by default.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "referrer-policy",
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| cookie::Cookie::parse(p.trim().to_owned()).ok())
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Option<Duration>) -> String {
    let mut c = cookie::Cookie::new(name.to_owned(), value.to_owned());
    c.set_http_only(true);
    c.set_same_site(cookie::SameSite::Lax);
    c.set_path("/");
    c.set_secure(state.0.public_url.starts_with("https://"));
    if let Some(age) = max_age {
        c.set_max_age(age);
    }
    c.to_string()
}

fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn texts(headers: &HeaderMap) -> &'static Texts {
    i18n::texts(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    lang: &'a str,
    t: &'a Texts,
    title: &'a str,
    message: &'a str,
    testid: Option<&'a str>,
    offer_sign_in: bool,
}

fn message(
    status: StatusCode,
    t: &Texts,
    message: &str,
    testid: Option<&str>,
    offer_sign_in: bool,
) -> Response {
    let title = if status.is_success() {
        t.mypage
    } else {
        t.error_title
    };
    page(
        status,
        &MessagePage {
            lang: t.lang,
            t,
            title,
            message,
            testid,
            offer_sign_in,
        },
    )
}

fn failure(t: &Texts, what: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %what, "sign-in failed");
    message(
        StatusCode::BAD_REQUEST,
        t,
        t.signin_failed,
        Some("signin-failed"),
        true,
    )
}

fn internal(t: &Texts, what: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %what, "request failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        t,
        t.signin_unavailable,
        None,
        false,
    )
}

/// The page for visitors who are not (or no longer) signed in.
fn signin_required(t: &Texts) -> Response {
    message(
        StatusCode::OK,
        t,
        t.signin_required,
        Some("signin-required"),
        true,
    )
}

/// The signed-in session, or the page to show instead.
async fn require_session(
    state: &AppState,
    headers: &HeaderMap,
    t: &Texts,
) -> Result<sessions::Model, Response> {
    match current(state, headers).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(signin_required(t)),
        Err(e) => Err(internal(t, &e)),
    }
}

/// The signed-in session behind the cookie, if any.
async fn current(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<sessions::Model>, sea_orm::DbErr> {
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    sessions::Entity::find_by_id(hash(&value))
        .one(&state.0.store.conn)
        .await
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
    let signed_in = matches!(current(&state, &headers).await, Ok(Some(_)));
    page(
        StatusCode::OK,
        &TopPage {
            lang: t.lang,
            t,
            signed_in,
        },
    )
}

/// Starts a sign-in at the OP: code + PKCE + nonce + state, the state tied to this
/// browser by a cookie so that a callback started elsewhere is refused.
async fn login(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let t = texts(&headers);
    let provider = match state.provider().await {
        Ok(p) => p,
        Err(e) => return internal(t, &e),
    };
    let start = provider.start();
    let browser = random(32);
    let row = login_states::ActiveModel {
        state: sea_orm::ActiveValue::Set(start.state),
        nonce: sea_orm::ActiveValue::Set(start.nonce),
        pkce_verifier: sea_orm::ActiveValue::Set(start.verifier),
        browser_hash: sea_orm::ActiveValue::Set(hash(&browser)),
        created_at: sea_orm::ActiveValue::Set(now()),
    };
    if let Err(e) = login_states::Entity::insert(row)
        .exec_without_returning(&state.0.store.conn)
        .await
    {
        return internal(t, &e);
    }
    let cookie = set_cookie(&state, LOGIN_COOKIE, &browser, Some(LOGIN_LIFETIME));
    redirect(start.url.as_str(), &[cookie])
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let t = texts(&headers);
    let Some(rp_state) = q.state.filter(|s| !s.is_empty()) else {
        return failure(t, &"callback without state");
    };
    // Single use: the row is deleted by whoever reads it first.
    let taken = login_states::Entity::delete_many()
        .filter(login_states::Column::State.eq(rp_state.clone()))
        .exec_with_returning(&state.0.store.conn)
        .await;
    let pending = match taken {
        Ok(mut rows) if rows.len() == 1 => rows.remove(0),
        Ok(_) => return failure(t, &"unknown or replayed state"),
        Err(e) => return internal(t, &e),
    };
    let browser_ok =
        cookie(&headers, LOGIN_COOKIE).is_some_and(|b| hash(&b) == pending.browser_hash);
    if !browser_ok || now() - pending.created_at > LOGIN_LIFETIME {
        return failure(t, &"state from another browser or expired");
    }
    if let Some(error) = q.error {
        return failure(t, &format!("the OP answered {error}"));
    }
    // RFC 9207: the response must come from the issuer we sent the member to.
    if q.iss
        .as_deref()
        .is_some_and(|iss| iss != state.0.config.oidc.issuer)
    {
        return failure(t, &"iss does not match");
    }
    let Some(code) = q.code else {
        return failure(t, &"no code");
    };
    let provider = match state.provider().await {
        Ok(p) => p,
        Err(e) => return internal(t, &e),
    };
    let tokens = match provider
        .finish(&code, &pending.pkce_verifier, &pending.nonce)
        .await
    {
        Ok(tokens) => tokens,
        Err(e) => return failure(t, &e),
    };
    let (name, email) = match provider.userinfo(&tokens.access_token, &tokens.sub).await {
        Ok(v) => v,
        Err(e) => return failure(t, &e),
    };
    let method = tokens.amr.join(" ");
    let member = match state
        .0
        .store
        .signed_in(
            store::SignIn {
                issuer: &provider.issuer,
                sub: &tokens.sub,
                display_name: &name,
                email: &email,
                method: &method,
            },
            now(),
            random(8),
        )
        .await
    {
        Ok(m) => m,
        Err(e) => return internal(t, &e),
    };
    let session_value = random(32);
    let row = sessions::ActiveModel {
        id_hash: sea_orm::ActiveValue::Set(hash(&session_value)),
        member_id: sea_orm::ActiveValue::Set(member.id),
        csrf: sea_orm::ActiveValue::Set(random(24)),
        id_token: sea_orm::ActiveValue::Set(tokens.id_token),
        access_token: sea_orm::ActiveValue::Set(tokens.access_token),
        refresh_token: sea_orm::ActiveValue::Set(tokens.refresh_token),
        access_expires_at: sea_orm::ActiveValue::Set(
            now() + Duration::seconds(tokens.expires_in_secs),
        ),
        created_at: sea_orm::ActiveValue::Set(now()),
    };
    if let Err(e) = sessions::Entity::insert(row)
        .exec_without_returning(&state.0.store.conn)
        .await
    {
        return internal(t, &e);
    }
    let cookies = [
        set_cookie(&state, SESSION_COOKIE, &session_value, None),
        set_cookie(&state, LOGIN_COOKIE, "", Some(Duration::ZERO)),
    ];
    redirect("/mypage", &cookies)
}

/// A live access token for the session, refreshed if it is about to expire. `None`
/// when the grant is gone (the member must sign in again).
async fn fresh_access_token(
    state: &AppState,
    session: &sessions::Model,
) -> Result<Option<String>, String> {
    if session.access_expires_at - REFRESH_MARGIN > now() {
        return Ok(Some(session.access_token.clone()));
    }
    let lock = {
        let mut map = state.0.refreshing.lock().await;
        map.entry(session.member_id.clone()).or_default().clone()
    };
    let _one_at_a_time = lock.lock().await;
    // Someone may have refreshed while we waited.
    let latest = sessions::Entity::find_by_id(session.id_hash.clone())
        .one(&state.0.store.conn)
        .await
        .map_err(|e| e.to_string())?;
    let Some(latest) = latest else {
        return Ok(None);
    };
    if latest.access_expires_at - REFRESH_MARGIN > now() {
        return Ok(Some(latest.access_token));
    }
    let Some(refresh_token) = latest.refresh_token.clone() else {
        return Ok(None);
    };
    let provider = state.provider().await.map_err(|e| e.to_string())?;
    match provider.refresh(&refresh_token).await {
        Ok(tokens) => {
            let mut update = sessions::Entity::update_many()
                .col_expr(
                    sessions::Column::AccessToken,
                    Expr::value(tokens.access_token.clone()),
                )
                .col_expr(
                    sessions::Column::RefreshToken,
                    Expr::value(tokens.refresh_token.or(Some(refresh_token))),
                )
                .col_expr(
                    sessions::Column::AccessExpiresAt,
                    Expr::value(now() + Duration::seconds(tokens.expires_in_secs)),
                );
            if !tokens.id_token.is_empty() {
                update = update.col_expr(sessions::Column::IdToken, Expr::value(tokens.id_token));
            }
            update
                .filter(sessions::Column::IdHash.eq(latest.id_hash))
                .exec(&state.0.store.conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Some(tokens.access_token))
        }
        Err(e) => {
            tracing::info!(error = %e, "refresh refused: the member must sign in again");
            let _ = sessions::Entity::delete_by_id(latest.id_hash)
                .exec(&state.0.store.conn)
                .await;
            Ok(None)
        }
    }
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

async fn mypage(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let t = texts(&headers);
    let session = match require_session(&state, &headers, t).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let member = match state.0.store.member(&session.member_id).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            return signin_required(t);
        }
        Err(e) => return internal(t, &e),
    };
    // The token must still be good: a revoked grant or ended OP session signs us out.
    let (mut name, mut email) = (member.display_name.clone(), member.email.clone());
    match fresh_access_token(&state, &session).await {
        Ok(Some(token)) => {
            if let Ok(provider) = state.provider().await
                && let Ok((n, e)) = provider.userinfo(&token, &member.sub).await
            {
                (name, email) = (n, e);
            }
        }
        Ok(None) => {
            return signin_required(t);
        }
        Err(e) => return internal(t, &e),
    }
    let issuer = state.0.config.oidc.issuer.trim_end_matches('/');
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
            let how = i18n::method(
                t,
                &member
                    .last_login_method
                    .split(' ')
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            );
            format!("{when} ({how})")
        }
        None => String::new(),
    };
    page(
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
    )
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
) -> Response {
    let t = texts(&headers);
    let member = match state.0.store.member(&member_id).await {
        Ok(Some(m)) => m,
        Ok(None) => return message(StatusCode::NOT_FOUND, t, t.not_found, None, false),
        Err(e) => return internal(t, &e),
    };
    // Read on every request: hiding takes effect at once.
    let last_login = member
        .last_login_at
        .filter(|_| member.show_last_login)
        .map(|at| i18n::last_seen(t, now() - at));
    page(
        StatusCode::OK,
        &ProfilePage {
            lang: t.lang,
            name: &member.display_name,
            last_login,
        },
    )
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
    Query(q): Query<PrivacyQuery>,
) -> Response {
    let t = texts(&headers);
    let session = match require_session(&state, &headers, t).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    match state.0.store.member(&session.member_id).await {
        Ok(Some(m)) => page(
            StatusCode::OK,
            &PrivacyPage {
                lang: t.lang,
                t,
                show: m.show_last_login,
                saved: q.saved.is_some(),
                csrf: &session.csrf,
            },
        ),
        Ok(None) => signin_required(t),
        Err(e) => internal(t, &e),
    }
}

#[derive(Deserialize)]
struct PrivacyForm {
    csrf: Option<String>,
    show_last_login: Option<String>,
}

async fn save_privacy(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<PrivacyForm>,
) -> Response {
    let t = texts(&headers);
    let session = match require_session(&state, &headers, t).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    if form.csrf.as_deref() != Some(session.csrf.as_str()) {
        return message(StatusCode::FORBIDDEN, t, t.form_expired, None, false);
    }
    let show = form.show_last_login.as_deref() == Some("on");
    if let Err(e) = state
        .0
        .store
        .set_show_last_login(&session.member_id, show)
        .await
    {
        return internal(t, &e);
    }
    redirect("/settings/privacy?saved=1", &[])
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: Option<String>,
}

/// Ends the marketplace session, then RP-initiated logout at the OP.
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let t = texts(&headers);
    let session = match current(&state, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return redirect("/", &[]),
        Err(e) => return internal(t, &e),
    };
    if form.csrf.as_deref() != Some(session.csrf.as_str()) {
        return message(StatusCode::FORBIDDEN, t, t.form_expired, None, false);
    }
    if let Err(e) = sessions::Entity::delete_by_id(session.id_hash.clone())
        .exec(&state.0.store.conn)
        .await
    {
        return internal(t, &e);
    }
    let clear = [set_cookie(&state, SESSION_COOKIE, "", Some(Duration::ZERO))];
    let end_session = state
        .provider()
        .await
        .ok()
        .and_then(|p| p.end_session.clone());
    match end_session.and_then(|e| url::Url::parse(&e).ok()) {
        Some(mut url) => {
            url.query_pairs_mut()
                .append_pair("id_token_hint", &session.id_token)
                .append_pair(
                    "post_logout_redirect_uri",
                    &format!("{}/", state.0.public_url),
                )
                .append_pair("client_id", &state.0.config.oidc.client_id)
                .append_pair("state", &random(16));
            redirect(url.as_str(), &clear)
        }
        None => redirect("/", &clear),
    }
}
