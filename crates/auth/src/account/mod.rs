//! The member's own pages outside a protocol flow: the ways back in (password reset now;
//! sign-up, verification and the console arrive with later issues).

pub mod recovery;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

pub const FORGOT: &str = "/password/forgot";
pub const RESET: &str = "/password/reset";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            FORGOT,
            get(recovery::get_forgot).post(recovery::post_forgot),
        )
        .route(RESET, get(recovery::get_reset).post(recovery::post_reset))
}
