//! The OpenID Connect protocol endpoints and Tobira's own pages within a flow.

pub mod authorize;
pub mod backchannel;
pub mod consent;
pub mod discovery;
pub mod error;
pub mod federation;
pub mod form_post;
pub mod login;
pub mod logout;
pub mod params;
pub mod passkey;
pub mod paths;
pub mod revocation;
pub mod second_step;
pub mod tokens;
pub mod userinfo;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::DISCOVERY, get(discovery::openid_configuration))
        .route(paths::JWKS, get(discovery::jwks))
        .route(
            paths::AUTHORIZE,
            get(authorize::get_authorize).post(authorize::post_authorize),
        )
        .route(paths::AUTHORIZE_CONTINUE, get(authorize::get_continue))
        .route(paths::LOGIN, get(login::get_login).post(login::post_login))
        .route(
            paths::LOGIN_PASSKEY,
            axum::routing::post(passkey::post_sign_in),
        )
        .route(
            paths::SECOND_STEP_PASSKEY,
            axum::routing::post(passkey::post_second_step),
        )
        .route(
            paths::SECOND_STEP,
            get(second_step::get_second_step).post(second_step::post_second_step),
        )
        .route(
            paths::FEDERATION_START,
            axum::routing::post(federation::post_start),
        )
        // The POST is Apple's cross-site form post: no CSRF form (see `federation`).
        .route(
            paths::FEDERATION_CALLBACK,
            get(federation::get_callback).post(federation::post_callback),
        )
        .route(paths::TOKEN, axum::routing::post(tokens::token))
        .route(
            paths::USERINFO,
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .route(
            paths::CONSENT,
            get(consent::get_consent).post(consent::post_consent),
        )
        .route(
            paths::END_SESSION,
            get(logout::get_end_session).post(logout::post_end_session),
        )
        .route(
            paths::END_SESSION_CONFIRM,
            axum::routing::post(logout::post_confirm),
        )
        .route(paths::REVOKE, axum::routing::post(revocation::revoke))
        .route(
            paths::INTROSPECT,
            axum::routing::post(revocation::introspect),
        )
}
