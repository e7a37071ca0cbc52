//! FOUNDATION PLACEHOLDER (helper H4 implements): linked accounts in the console
//! (`/account/linked`): the providers linked, when, last used; link another; unlink,
//! never the last way in.

use std::net::IpAddr;

use axum::http::HeaderMap;
use axum::response::Response;

use crate::domain::User;
use crate::federation::{Identity, UpstreamError};
use crate::state::AppState;
use crate::store::{Linking, StoreError};
use crate::web::i18n::Lang;
use crate::web::pages::RequestId;

/// Where a link is made from, for its history line and mail.
pub struct LinkContext<'a> {
    pub ip: IpAddr,
    pub user_agent: &'a str,
    pub device: &'a str,
    pub lang: Lang,
}

/// Links `identity` to `user` with its history line and mail («Google を連携しました»):
/// the one place a link is made (the console, and the sign-in that proved the account
/// after a provider's address matched it).
pub async fn make_link(
    state: &AppState,
    user: &User,
    identity: &Identity,
    ctx: LinkContext<'_>,
) -> Result<Linking, StoreError> {
    let _ = (state, user, identity, ctx);
    todo!("H4")
}

/// The callback of a link the console started (`oidc::federation` calls it once the
/// provider's answer passed every check): the browser's console session must still be
/// `user`'s; then the link is made and the browser goes back to `/account/linked`.
pub async fn finish_link(
    state: &AppState,
    headers: &HeaderMap,
    request_id: RequestId,
    user: uuid::Uuid,
    session: uuid::Uuid,
    identity: Identity,
) -> Response {
    let _ = (state, headers, request_id, user, session, identity);
    todo!("H4")
}

/// A link the console started that the provider did not complete (cancelled, down,
/// refused): back to `/account/linked` with the reason.
pub fn link_failed(state: &AppState, headers: &HeaderMap, error: &UpstreamError) -> Response {
    let _ = (state, headers, error);
    todo!("H4")
}
