//! The marketplace's routes, one module per capability: signing in and out, the
//! member's pages, the privacy setting, and the OP's back-channel logouts.

mod backchannel;
mod pages;
mod privacy;
mod signin;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;
use crate::web::security_headers;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .merge(signin::router())
        .merge(pages::router())
        .merge(privacy::router())
        .merge(backchannel::router())
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}
