//! What went wrong behind a console page (passkeys, two-step verification, linked
//! accounts): a store the page needs, or a bug. One answer for all of them: a 503 while
//! the ephemeral store is away or full (try again shortly), otherwise a 500 with the
//! request id.
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
    #[error("{0}")]
    Internal(String),
}

impl ConsoleError {
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }

    /// The page for this error; `page` names the console page in the log.
    pub(crate) fn respond(self, page: &str, lang: Lang, request_id: RequestId) -> Response {
        let transient = match &self {
            Self::Ephemeral(e) => e.is_transient(),
            Self::Store(_) | Self::Seal(_) | Self::Internal(_) => false,
        };
        if transient {
            tracing::warn!(error = %self, page, "account console: the ephemeral store is unavailable");
            return unavailable_page(lang);
        }
        tracing::error!(error = %self, page, "account console failed");
        error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            lang,
            Msg::ServerError,
            request_id.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Down or full is worth trying again shortly; data the store cannot give back as it
    /// was kept (`Malformed`) is not, and gets the request id.
    #[test]
    fn only_an_ephemeral_store_down_or_full_is_unavailable() {
        let status = |e: ConsoleError| {
            e.respond("test", Lang::Ja, RequestId(Some("req-1".to_owned())))
                .status()
        };
        for transient in [
            ConsoleError::Ephemeral(EphemeralError::Unavailable("down".to_owned())),
            ConsoleError::Ephemeral(EphemeralError::Full),
        ] {
            assert_eq!(status(transient), StatusCode::SERVICE_UNAVAILABLE);
        }
        for bug in [
            ConsoleError::Ephemeral(EphemeralError::Malformed),
            ConsoleError::Internal("bug".to_owned()),
            ConsoleError::Store(StoreError::EmailTaken),
        ] {
            assert_eq!(status(bug), StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
}
