//! Signing in through the OP (code + PKCE + nonce + state, RFC 9207 `iss`) and out
//! again (the marketplace session, then RP-initiated logout at the OP).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use time::Duration;

use crate::form::{NoFields, ProtectedForm};
use crate::state::{AppState, hash, random};
use crate::store::logins::{LOGIN_LIFETIME, PendingLogin};
use crate::store::members::SignIn;
use crate::store::sessions::NewSession;
use crate::web::{CookieName, PageError, redirect, texts};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", post(logout))
}

/// Starts a sign-in at the OP, the state tied to this browser by a cookie so that a
/// callback started elsewhere is refused.
async fn login(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, PageError> {
    let t = texts(&headers);
    let provider = state.provider().await.map_err(PageError::internal(t))?;
    let start = provider.start();
    let browser = random(32);
    state
        .store
        .logins()
        .add(PendingLogin {
            state: start.state,
            nonce: start.nonce,
            pkce_verifier: start.verifier,
            browser_hash: hash(&browser),
            created_at: state.clock.now(),
        })
        .await
        .map_err(PageError::internal(t))?;
    let cookie = state
        .cookies
        .set(CookieName::Login, &browser, Some(LOGIN_LIFETIME));
    Ok(redirect(start.url.as_str(), &[cookie]))
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
) -> Result<Response, PageError> {
    let t = texts(&headers);
    let failed = |why: &str| PageError::sign_in_failed(t, why);
    let rp_state = q
        .state
        .filter(|s| !s.is_empty())
        .ok_or_else(|| failed("callback without state"))?;
    let pending = state
        .store
        .logins()
        .take(&rp_state)
        .await
        .map_err(PageError::internal(t))?
        .ok_or_else(|| failed("unknown or replayed state"))?;
    let browser_ok = state
        .cookies
        .get(&headers, CookieName::Login)
        .is_some_and(|b| bool::from(hash(&b).as_bytes().ct_eq(pending.browser_hash.as_bytes())));
    if !browser_ok || !pending.is_live(state.clock.now()) {
        return Err(failed("state from another browser or expired"));
    }
    let provider = state.provider().await.map_err(PageError::internal(t))?;
    // RFC 9207 §2.4: the response must come from the issuer the member was sent to;
    // once the OP says it always names itself, a response without a name is refused
    // (a mix-up attack would strip it).
    match q.iss.as_deref() {
        Some(iss) if iss != provider.issuer => return Err(failed("iss does not match")),
        None if provider.iss_in_response => return Err(failed("iss missing")),
        _ => {}
    }
    if let Some(error) = q.error {
        return Err(failed(&format!("the OP answered {error}")));
    }
    let code = q.code.ok_or_else(|| failed("no code"))?;
    let tokens = provider
        .finish(&code, &pending.pkce_verifier, &pending.nonce)
        .await
        .map_err(|e| PageError::sign_in_failed(t, e))?;
    let (name, email) = provider
        .userinfo(&tokens.access_token, &tokens.sub)
        .await
        .map_err(|e| PageError::sign_in_failed(t, e))?;
    let now = state.clock.now();
    let member = state
        .store
        .members()
        .signed_in(
            now,
            random(8),
            SignIn {
                issuer: &provider.issuer,
                sub: &tokens.sub,
                display_name: &name,
                email: &email,
                amr: &tokens.amr,
            },
        )
        .await
        .map_err(PageError::internal(t))?;
    let session_value = random(32);
    // The session this browser had before (perhaps of someone else) ends now.
    let previous = state
        .cookies
        .get(&headers, CookieName::Session)
        .map(|v| hash(&v));
    state
        .store
        .sessions()
        .start(
            now,
            state.lifetimes,
            NewSession {
                id_hash: hash(&session_value),
                member_id: member.id,
                csrf: random(24),
                id_token: tokens.id_token,
                access_token: tokens.access_token,
                refresh_token: tokens.refresh_token,
                access_expires_at: now + Duration::seconds(tokens.expires_in_secs),
                op_sid: tokens.sid,
            },
            previous.as_deref(),
        )
        .await
        .map_err(PageError::internal(t))?;
    let cookies = [
        state.cookies.set(CookieName::Session, &session_value, None),
        state.cookies.clear(CookieName::Login),
    ];
    Ok(redirect("/mypage", &cookies))
}

/// Ends the marketplace session, then RP-initiated logout at the OP.
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<ProtectedForm<NoFields>, PageError>,
) -> Result<Response, PageError> {
    let t = texts(&headers);
    let clear = [state.cookies.clear(CookieName::Session)];
    let session = match form {
        Ok(form) => form.session,
        // Already signed out here: nothing to end, nothing to forge.
        Err(e) if e.is_sign_in_required() => return Ok(redirect("/", &clear)),
        Err(e) => return Err(e),
    };
    state
        .store
        .sessions()
        .end(&session.id_hash)
        .await
        .map_err(PageError::internal(t))?;
    let end_session = state
        .provider()
        .await
        .ok()
        .and_then(|p| p.end_session.clone());
    Ok(match end_session.and_then(|e| url::Url::parse(&e).ok()) {
        Some(mut url) => {
            url.query_pairs_mut()
                .append_pair("id_token_hint", &session.id_token)
                .append_pair(
                    "post_logout_redirect_uri",
                    &format!("{}/", state.public_url),
                )
                .append_pair("client_id", &state.config.oidc.client_id)
                .append_pair("state", &random(16));
            redirect(url.as_str(), &clear)
        }
        None => redirect("/", &clear),
    })
}
