//! Admin API: the audit log, listed newest first through `admin::audit::list`, the
//! function `tobira audit list` calls.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{Admin, ApiQuery, Page, PageParams, Problem, cursor};
use crate::admin::audit::{self, AuditView, FilterText};
use crate::state::AppState;
use crate::store::{AuditFilter, StoreError};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(utoipa_axum::routes!(list_events))
}

/// Which events, and which page of them. Absent filters match every event.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Who acted: a member's id, an operator's login name, an admin client's id.
    actor: Option<String>,
    /// An action (`user.freeze`), or a prefix ending in `.` (`user.`: every action on
    /// accounts).
    action: Option<String>,
    /// What was changed: a member's id, a client's id, a key's kid.
    target: Option<String>,
    /// Events at or after this time (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Events before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

impl AuditQuery {
    /// The store's filter, refused with a problem naming the parameter at fault (in the
    /// words `tobira audit list` uses for its option).
    fn filter(&self, page: &PageParams) -> Result<AuditFilter, Problem> {
        let text = FilterText {
            actor: self.actor.as_deref(),
            action: self.action.as_deref(),
            target: self.target.as_deref(),
            since: self.since.as_deref(),
            until: self.until.as_deref(),
        };
        let mut filter = text
            .parse()
            .map_err(|e| Problem::bad_request(e.to_string()))?;
        filter.before = page
            .position()?
            .map(|p| {
                Uuid::parse_str(&p)
                    .map_err(|_| Problem::bad_request("cursor is not a cursor this API gave"))
            })
            .transpose()?;
        Ok(filter)
    }
}

/// Audit events, newest first: who changed what, when, from where, with the request id.
#[utoipa::path(
    get,
    path = "/audit-events",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of events, newest first", body = Page<AuditView>),
        (status = 400, description = "A bad time, cursor, limit or filter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin client", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn list_events(
    admin: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<axum::Json<Page<AuditView>>, Problem> {
    let page = PageParams {
        cursor: query.cursor.clone(),
        limit: query.limit,
    };
    let limit = page.limit()?;
    let filter = query.filter(&page)?;
    let (items, next) = audit::list(&state.db, &filter, limit)
        .await
        .map_err(|e| match e {
            StoreError::Refused(why) => Problem::bad_request(why),
            other => Problem::internal(&admin, &other),
        })?;
    Ok(axum::Json(Page {
        items,
        next_cursor: next.map(|id| cursor(&id.to_string())),
    }))
}
