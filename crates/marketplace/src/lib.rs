//! The skill marketplace, a relying party that hands every sign-in to Tobira. For now
//! the server and its health check; the OIDC sign-in, My page and public profiles
//! arrive with the marketplace issue.

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

/// Environment variable naming the listen address (`127.0.0.1:3000` by default).
pub const ENV_BIND: &str = "MARKETPLACE_SERVER__BIND";
pub const DEFAULT_BIND: &str = "127.0.0.1:3000";

pub fn router() -> Router {
    Router::new().route("/healthz", get(healthz))
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// Serves the marketplace on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}
