//! Admin API: member accounts. Search and show, freeze and unfreeze, unlock, sign out
//! everywhere, reset the second step, delete, list and end sessions: thin handlers over
//! `admin::support`, `admin::unlock` and `account::delete`, which `tobira users` calls
//! too. Accounts are named by their id (`UserView.id`), never by address in a path.
//!
//! An action that finds nothing to change (freezing a frozen account, deleting a deleted
//! one) answers 200 with `"changed": false`, never an error: retrying a request whose
//! answer was lost is safe. An action the account's state refuses (freezing an account
//! awaiting verification or deleted; signing out or resetting the second step of a
//! deleted one) is a 409. A session id that names no live session of the account is a
//! 404, whether it ended already or never was this account's.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Admin, ApiJson, ApiPath, ApiQuery, Page, PageParams, Problem, cursor};
use crate::account::delete::{DeleteError, delete_account};
use crate::admin::support::{self, Freeze, Outcome, Reason, SupportError, TwoStepReset};
use crate::admin::unlock;
use crate::admin::users::UserView;
use crate::domain::{BrowserSession, User, UserId, UserStatus};
use crate::state::AppState;
use crate::web::device::Device;
use crate::web::i18n::Lang;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, delete))
        .routes(routes!(freeze))
        .routes(routes!(unfreeze))
        .routes(routes!(unlock))
        .routes(routes!(sign_out))
        .routes(routes!(reset_two_step))
        .routes(routes!(sessions))
        .routes(routes!(end_session))
}

/// The longest `q`: an address is at most 254 characters, an id or a `sub` far less.
const MAX_QUERY: usize = 320;

/// How long an unlock may wait for the job runner before the answer says "queued".
const UNLOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A support refusal as the problem it is; the text is the rule's own, as the CLI prints it.
fn problem(admin: &Admin, e: SupportError) -> Problem {
    match e {
        SupportError::NoAccount(_) => Problem::not_found("no account with this id"),
        SupportError::NotActive(_) => Problem::conflict(e.to_string()),
        SupportError::Email(_)
        | SupportError::ReasonEmpty
        | SupportError::ReasonTooLong
        | SupportError::ReasonControl => Problem::invalid(e.to_string()),
        SupportError::Seal(cause) => Problem::internal(admin, &cause),
        SupportError::Store(cause) => Problem::internal(admin, &cause),
    }
}

/// The account with this id, deleted ones included (support answers for them too).
async fn account(state: &AppState, admin: &Admin, id: Uuid) -> Result<User, Problem> {
    state
        .db
        .users()
        .find_by_id(UserId(id))
        .await
        .map_err(|e| Problem::internal(admin, &e))?
        .ok_or_else(|| Problem::not_found("no account with this id"))
}

/// The account as it is now, after a change.
async fn view(state: &AppState, admin: &Admin, user: &User) -> Result<UserView, Problem> {
    Ok(UserView::from(&account(state, admin, user.id.0).await?))
}

/// An account's state, as a search filter.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    Unverified,
    Active,
    Frozen,
    Deleted,
}

impl From<StatusFilter> for UserStatus {
    fn from(s: StatusFilter) -> Self {
        match s {
            StatusFilter::Unverified => Self::Unverified,
            StatusFilter::Active => Self::Active,
            StatusFilter::Frozen => Self::Frozen,
            StatusFilter::Deleted => Self::Deleted,
        }
    }
}

/// Which accounts to list, and the page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UserSearch {
    /// An account's id, its `sub`, or an email address (matched as the normalised
    /// address, so case and full-width characters do not matter); at most 320 characters.
    pub q: Option<String>,
    pub status: Option<StatusFilter>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 200; 50 by default.
    pub limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    params(UserSearch),
    responses(
        (status = 200, description = "Accounts by id, the newest first (deleted ones included unless `status` says)", body = Page<UserView>),
        (status = 400, description = "A bad query, status, cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn list(
    admin: Admin,
    State(state): State<AppState>,
    ApiQuery(search): ApiQuery<UserSearch>,
) -> Result<Json<Page<UserView>>, Problem> {
    let page = PageParams {
        cursor: search.cursor,
        limit: search.limit,
    };
    let limit = page.limit()?;
    let before = page
        .position()?
        .map(|p| {
            Uuid::parse_str(&p)
                .map(UserId)
                .map_err(|_| Problem::bad_request("cursor is not a cursor this API gave"))
        })
        .transpose()?;
    let q = search.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > MAX_QUERY) {
        return Err(Problem::bad_request(format!(
            "q is longer than {MAX_QUERY} characters"
        )));
    }
    // No address, id or `sub` holds one, and PostgreSQL fails on a NUL in text.
    if q.is_some_and(|q| q.chars().any(char::is_control)) {
        return Err(Problem::bad_request(
            "q must not contain control characters",
        ));
    }
    // One more than the page: a next cursor only when there is a next page.
    let mut found = state
        .db
        .users()
        .list(q, search.status.map(Into::into), before, limit + 1)
        .await
        .map_err(|e| Problem::internal(&admin, &e))?;
    let more = found.len() as u64 > limit;
    found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = found
        .last()
        .filter(|_| more)
        .map(|u| cursor(&u.id.0.to_string()));
    Ok(Json(Page {
        items: found.iter().map(UserView::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The account; `frozen_reason` while it is frozen", body = UserView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn show(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<UserView>, Problem> {
    Ok(Json(UserView::from(&account(&state, &admin, id).await?)))
}

/// What an action did, and the account after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Changed {
    /// `false` when the account already was as asked: nothing changed, nobody was mailed.
    pub changed: bool,
    pub user: UserView,
}

/// A freeze, as `tobira users freeze` takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeRequest {
    /// Why, for support's record: 1 to 500 characters on one line.
    pub reason: String,
    /// Tell the member the reason in the mail too.
    #[serde(default)]
    pub mail_reason: bool,
}

#[utoipa::path(
    post,
    path = "/users/{id}/freeze",
    tag = "users",
    params(("id" = Uuid, Path, description = "The account's id")),
    request_body = FreezeRequest,
    responses(
        (status = 200, description = "Frozen: sign-in is refused, every session and token ended, clients told, the member mailed (`changed: false` when it was frozen already)", body = Changed),
        (status = 400, description = "The id is not a UUID, or the body not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account is not active (awaiting verification, or deleted)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The reason is empty, too long or holds control characters, or a field is unknown", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn freeze(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<FreezeRequest>,
) -> Result<Json<Changed>, Problem> {
    // A bad reason is refused before anything is looked up, as at the CLI.
    let how = Freeze {
        reason: Reason::parse(&req.reason).map_err(|e| problem(&admin, e))?,
        tell_reason: req.mail_reason,
    };
    let user = account(&state, &admin, id).await?;
    let outcome = support::freeze(
        &state.db,
        &state.master,
        &state.config,
        &state.clock,
        &admin.ctx,
        &user,
        &how,
    )
    .await
    .map_err(|e| problem(&admin, e))?;
    Ok(Json(Changed {
        changed: outcome == Outcome::Changed,
        user: view(&state, &admin, &user).await?,
    }))
}

#[utoipa::path(
    post,
    path = "/users/{id}/unfreeze",
    tag = "users",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The freeze is lifted and the member mailed (`changed: false` when it was not frozen)", body = Changed),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account changed meanwhile (deleted)", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn unfreeze(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Changed>, Problem> {
    let user = account(&state, &admin, id).await?;
    let outcome = support::unfreeze(
        &state.db,
        &state.master,
        &state.config,
        &state.clock,
        &admin.ctx,
        &user,
    )
    .await
    .map_err(|e| problem(&admin, e))?;
    Ok(Json(Changed {
        changed: outcome == Outcome::Changed,
        user: view(&state, &admin, &user).await?,
    }))
}

/// Whether the unlock is in force yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct Unlocked {
    /// `true`: the server applied it. `false`: it is queued, and the next server to run
    /// its jobs applies it.
    pub applied: bool,
}

#[utoipa::path(
    post,
    path = "/users/{id}/unlock",
    tag = "users",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, description = "Sign-in throttling of the account is lifted: its lock and count, its devices' counts, its failures in every address's count", body = Unlocked),
        (status = 202, description = "Queued: no job runner applied it within 5 seconds", body = Unlocked),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn unlock(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, Problem> {
    let user = account(&state, &admin, id).await?;
    // Queued as at the CLI: on Redis any replica's runner applies it for all, and the
    // record is written with the job.
    let job = unlock::account(&state.db, &state.clock, &admin.ctx, &user)
        .await
        .map_err(|e| Problem::internal(&admin, &e))?;
    let applied = unlock::applied_within(&state.db, job, UNLOCK_WAIT)
        .await
        .map_err(|e| Problem::internal(&admin, &e))?;
    let status = if applied {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(Unlocked { applied })).into_response())
}

/// How many sessions a sign-out ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedOut {
    /// `false` when no session was live (grants and tokens are ended all the same).
    pub changed: bool,
    pub sessions_ended: u64,
}

#[utoipa::path(
    post,
    path = "/users/{id}/sign-out",
    tag = "users",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, description = "Every session, grant and token ended, clients told by back-channel logout; the account stays usable", body = SignedOut),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account is deleted", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn sign_out(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<SignedOut>, Problem> {
    let user = account(&state, &admin, id).await?;
    let ended = support::sign_out(&state.db, &state.clock, &admin.ctx, &user)
        .await
        .map_err(|e| problem(&admin, e))?;
    Ok(Json(SignedOut {
        changed: ended > 0,
        sessions_ended: ended,
    }))
}

#[utoipa::path(
    post,
    path = "/users/{id}/reset-2fa",
    tag = "users",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, description = "Two-step verification is off (authenticator app, email codes, recovery codes, remembered devices), the member mailed, the history says support did it (`changed: false` when it was not on)", body = Changed),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account is deleted", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn reset_two_step(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Changed>, Problem> {
    let user = account(&state, &admin, id).await?;
    let reset = support::reset_two_step(
        &state.db,
        &state.master,
        &state.config,
        &state.clock,
        &admin.ctx,
        &user,
    )
    .await
    .map_err(|e| problem(&admin, e))?;
    Ok(Json(Changed {
        changed: matches!(reset, TwoStepReset::Reset(_)),
        user: view(&state, &admin, &user).await?,
    }))
}

#[utoipa::path(
    delete,
    path = "/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, description = "Deleted as its member can: sign-in refused at once, every session and token ended, the member mailed; personal data purged after `account.retention_days`, the address blocked from signing up for `account.reregister_cooldown_days` (`changed: false` when it was deleted already)", body = Changed),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn delete(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Changed>, Problem> {
    let user = account(&state, &admin, id).await?;
    let deleted = delete_account(
        &state.db,
        &state.master,
        &state.identifiers,
        &state.config,
        &admin.ctx,
        state.clock.now(),
        &user,
    )
    .await
    .map_err(|e| match e {
        DeleteError::Store(cause) => Problem::internal(&admin, &cause),
        DeleteError::Seal(cause) => Problem::internal(&admin, &cause),
    })?;
    Ok(Json(Changed {
        changed: deleted,
        user: view(&state, &admin, &user).await?,
    }))
}

/// A signed-in browser of the account: where and when, never its cookie.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// What `DELETE /users/{id}/sessions/{session_id}` takes.
    pub id: Uuid,
    /// The public session id of ID tokens and back-channel logout tokens.
    pub sid: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: OffsetDateTime,
    /// When the member last proved who they are in it.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub auth_time: OffsetDateTime,
    /// Its absolute end.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    pub ip: String,
    /// The browser and system, in words ("Chrome on Windows").
    pub device: String,
    pub user_agent: String,
    /// How the member signed in (`pwd`, `otp`, `hwk` …).
    pub amr: Vec<String>,
    /// "Keep me signed in".
    pub remember: bool,
}

impl From<&BrowserSession> for SessionView {
    fn from(s: &BrowserSession) -> Self {
        Self {
            id: s.id,
            sid: s.sid.clone(),
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            auth_time: s.auth_time,
            expires_at: s.expires_at,
            ip: s.ip.clone(),
            device: Device::of(&s.user_agent).describe(Lang::En),
            user_agent: s.user_agent.clone(),
            amr: s.amr.clone(),
            remember: s.remember,
        }
    }
}

#[utoipa::path(
    get,
    path = "/users/{id}/sessions",
    tag = "users",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The account's live sessions, the most recently active first, all on one page (no cursor)", body = Page<SessionView>),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn sessions(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Page<SessionView>>, Problem> {
    let user = account(&state, &admin, id).await?;
    let live = support::sessions(&state.db, &state.clock, state.sessions.idle, &user)
        .await
        .map_err(|e| problem(&admin, e))?;
    Ok(Json(Page {
        items: live.iter().map(SessionView::from).collect(),
        next_cursor: None,
    }))
}

#[utoipa::path(
    delete,
    path = "/users/{id}/sessions/{session_id}",
    tag = "users",
    params(
        ("id" = Uuid, Path, description = "The account's id"),
        ("session_id" = Uuid, Path, description = "The session's `id` in the list"),
    ),
    responses(
        (status = 204, description = "The session ended: its grants revoked, its clients told by back-channel logout"),
        (status = 400, description = "An id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an admin client's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account, or no live session of it with this id (ended already, or another account's)", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn end_session(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath((id, session_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<StatusCode, Problem> {
    let user = account(&state, &admin, id).await?;
    let ended = support::end_session(
        &state.db,
        &state.clock,
        state.sessions.idle,
        &admin.ctx,
        &user,
        session_id,
    )
    .await
    .map_err(|e| problem(&admin, e))?;
    if ended {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(
            "no live session of this account with this id",
        ))
    }
}
