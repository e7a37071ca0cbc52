//! The signed-in session's life: found from its cookie and judged against its idle
//! and absolute lifetimes; its access token refreshed one request at a time; its grant
//! confirmed at the OP before the member changes anything. When the OP refuses the
//! grant, the session ends here too.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use sea_orm::DbErr;
use time::Duration;

use crate::oidc::OidcError;
use crate::state::{AppState, hash};
use crate::store::members::Member;
use crate::store::sessions::{Refreshed, Session};
use crate::web::{CookieName, PageError, texts};

/// Refresh this long before the access token expires, so that a token handed to a
/// request does not die on its way to the OP.
const REFRESH_MARGIN: Duration = Duration::seconds(30);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Db(#[from] DbErr),
    /// The OP could not be asked; the session stays, the request fails.
    #[error(transparent)]
    Oidc(#[from] OidcError),
}

/// The live session behind the browser's cookie, if any. An expired one is deleted on
/// sight; a live one has its idle period restarted.
pub async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, DbErr> {
    let Some(value) = state.cookies.get(headers, CookieName::Session) else {
        return Ok(None);
    };
    let sessions = state.store.sessions();
    let Some(mut session) = sessions.lookup(&hash(&value)).await? else {
        return Ok(None);
    };
    let now = state.clock.now();
    if !session.is_live(now, state.lifetimes) {
        sessions.end(&session.id_hash).await?;
        return Ok(None);
    }
    // Not a write per request: busy tabs would queue on one row. The idle limit loses
    // at most a sixtieth of itself (a minute, for limits of an hour or more).
    let touch_after = (state.lifetimes.idle / 60_i32).min(Duration::minutes(1));
    if now - session.last_seen_at >= touch_after {
        sessions.touch(&session.id_hash, now).await?;
        session.last_seen_at = now;
    }
    Ok(Some(session))
}

/// The signed-in member's session; anyone else gets the sign-in page.
pub struct SignedIn(pub Session);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let t = texts(&parts.headers);
        current(state, &parts.headers)
            .await
            .map_err(PageError::internal(t))?
            .map(Self)
            .ok_or_else(|| PageError::sign_in_required(t))
    }
}

/// A live access token for the session, refreshed if it is about to expire. `None`
/// when the grant is gone: the session has ended and the member must sign in again.
pub async fn access_token(
    state: &AppState,
    session: &Session,
    member: &Member,
) -> Result<Option<String>, SessionError> {
    if session.access_expires_at - REFRESH_MARGIN > state.clock.now() {
        return Ok(Some(session.access_token.clone()));
    }
    let turn = state.refreshing.turn(&session.id_hash);
    let _one_at_a_time = turn.wait().await;
    // Someone may have refreshed while we waited.
    let Some(latest) = state.store.sessions().lookup(&session.id_hash).await? else {
        return Ok(None);
    };
    if latest.access_expires_at - REFRESH_MARGIN > state.clock.now() {
        return Ok(Some(latest.access_token));
    }
    refresh(state, &latest, member).await
}

/// Asks the OP whether the member's grant still stands, before the member changes
/// anything: a grant ended at the OP (signed out there, account frozen, access taken
/// back) must not keep changing settings here while its access token has minutes to
/// live. `false` when it is gone: the session has ended.
pub async fn confirm_grant(
    state: &AppState,
    session: &Session,
    member: &Member,
) -> Result<bool, SessionError> {
    // Under the refresh lock: a refresh rotating the token at this moment would make
    // the copy we hold look spent.
    let turn = state.refreshing.turn(&session.id_hash);
    let _one_at_a_time = turn.wait().await;
    let Some(latest) = state.store.sessions().lookup(&session.id_hash).await? else {
        return Ok(false);
    };
    let provider = state.provider().await?;
    let (token, is_refresh) = match &latest.refresh_token {
        // A refresh token lives exactly as long as its grant.
        Some(t) => (t, true),
        None => (&latest.access_token, false),
    };
    match provider
        .grant_is_active(token, is_refresh, &member.sub)
        .await?
    {
        Some(true) => Ok(true),
        Some(false) => {
            tracing::info!("the OP no longer honours the grant: the session ends");
            state.store.sessions().end(&latest.id_hash).await?;
            Ok(false)
        }
        // No introspection at this OP: a refresh asks the same question.
        None => Ok(refresh(state, &latest, member).await?.is_some()),
    }
}

/// Spends the session's refresh token (the caller holds the session's refresh lock).
async fn refresh(
    state: &AppState,
    latest: &Session,
    member: &Member,
) -> Result<Option<String>, SessionError> {
    let Some(refresh_token) = latest.refresh_token.clone() else {
        state.store.sessions().end(&latest.id_hash).await?;
        return Ok(None);
    };
    let provider = state.provider().await?;
    match provider.refresh(&refresh_token, &member.sub).await {
        Ok(tokens) => {
            let access_token = tokens.access_token.clone();
            state
                .store
                .sessions()
                .update_tokens(
                    &latest.id_hash,
                    Refreshed {
                        id_token: tokens.id_token,
                        access_token: tokens.access_token,
                        // Without a new one the old one stays valid (no rotation).
                        refresh_token: tokens.refresh_token.or(Some(refresh_token)),
                        access_expires_at: state.clock.now()
                            + Duration::seconds(tokens.expires_in_secs),
                    },
                )
                .await?;
            Ok(Some(access_token))
        }
        Err(OidcError::Refused(why)) => {
            tracing::info!(reason = %why, "refresh refused: the session ends");
            state.store.sessions().end(&latest.id_hash).await?;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// One refresh at a time per session: two tabs must not both spend the same refresh
/// token (the OP would see a reuse and revoke the grant). An entry lives only while
/// some request holds or waits for it, so the map holds no more than the refreshes in
/// flight.
#[derive(Default)]
pub struct RefreshLocks(std::sync::Mutex<HashMap<String, Entry>>);

struct Entry {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Requests holding a `Turn` for this session.
    holders: usize,
}

/// A request's place in the queue for one session's refresh lock.
pub struct Turn<'a> {
    locks: &'a RefreshLocks,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl RefreshLocks {
    pub fn turn(&self, session: &str) -> Turn<'_> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(session.to_owned()).or_insert_with(|| Entry {
            lock: Arc::default(),
            holders: 0,
        });
        entry.holders += 1;
        Turn {
            locks: self,
            key: session.to_owned(),
            lock: entry.lock.clone(),
        }
    }

    /// Sessions with a refresh in flight.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Turn<'_> {
    pub async fn wait(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }
}

impl Drop for Turn<'_> {
    /// Also runs when a request is cancelled while waiting, so no entry is left behind.
    fn drop(&mut self) {
        let mut map = self.locks.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get_mut(&self.key) {
            entry.holders -= 1;
            if entry.holders == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refresh_locks_are_shared_while_held_and_forgotten_when_released() {
        let locks = RefreshLocks::default();
        let first = locks.turn("a");
        let second = locks.turn("a");
        let other = locks.turn("b");
        assert_eq!(locks.len(), 2);
        let held = first.wait().await;
        assert!(
            second.lock.try_lock().is_err(),
            "the same session waits for the refresh in flight"
        );
        assert!(other.lock.try_lock().is_ok(), "other sessions do not wait");
        drop(held);
        drop(first);
        assert_eq!(locks.len(), 2, "still held by the second tab");
        drop(second);
        drop(other);
        assert!(locks.is_empty());
    }

    #[tokio::test]
    async fn a_request_cancelled_while_waiting_leaves_no_lock_behind() {
        let locks = RefreshLocks::default();
        let first = locks.turn("a");
        let held = first.wait().await;
        let waiting = async {
            let turn = locks.turn("a");
            let _g = turn.wait().await;
        };
        // Polled once (it queues behind `held`), then dropped: what the request of a
        // client that went away does.
        tokio::select! {
            biased;
            () = waiting => panic!("the lock is held"),
            () = std::future::ready(()) => {}
        }
        drop(held);
        drop(first);
        assert!(locks.is_empty());
    }
}
