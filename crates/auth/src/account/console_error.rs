//! What went wrong behind a console page (passkeys, two-step verification, linked
//! accounts): a store the page needs, or a bug. One answer for all of them: a 503 while
//! the ephemeral store is away (try again shortly), otherwise a 500 with the request id.
//! The cause is logged, never shown.

use axum::http::StatusCode;
use axum::response::Response;

use crate::keys::KeyError;
use crate::store::{EphemeralError, StoreError};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, unavailable_page};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsoleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ephemeral(#[from] EphemeralError),
    /// Sealing with the master key failed (a broken key).
    #[error(transparent)]
    Seal(#[from] KeyError),
    /// A record the page keeps in the ephemeral store could not be kept (said as text
    /// by the layer that tried).
    #[error("the ephemeral store is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ConsoleError {
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }

    /// The page for this error; `page` names the console page in the log.
    pub(crate) fn respond(self, page: &str, lang: Lang, request_id: RequestId) -> Response {
        match self {
            Self::Ephemeral(_) | Self::Unavailable(_) => {
                tracing::warn!(error = %self, page, "account console: the ephemeral store is unavailable");
                unavailable_page(lang)
            }
            other => {
                tracing::error!(error = %other, page, "account console failed");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    lang,
                    Msg::ServerError,
                    request_id.0,
                )
            }
        }
    }
}
