//! The demo's mail viewer: the OP's file outbox served as pages on 127.0.0.1, so a
//! newcomer can follow sign-up and password-reset links without a mail server. Only the
//! demo binary has it; the OP never serves its outbox.

mod linkify;
mod outbox;

pub use outbox::Outbox;

use std::future::Future;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use linkify::{Fragment, linkify};
use outbox::{Mail, MailId};

/// The list shows this many mails; a demo outbox rarely holds more.
const LIST_LIMIT: usize = 200;

/// The pages are text, links and one inline style: no script, frame, form or fetch.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
                        form-action 'none'; frame-ancestors 'none'";

/// A mail's own HTML is markup we did not write: served as a sandboxed document (no
/// script, an opaque origin that cannot read the viewer) that loads nothing from anywhere.
const MAIL_HTML_CSP: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'; \
                             img-src data:; base-uri 'none'; form-action 'none'; \
                             frame-ancestors 'none'";

#[derive(Clone)]
struct Viewer {
    outbox: Outbox,
    /// `Host` values we answer to.
    hosts: Arc<[String]>,
}

/// Serves the viewer on `listener` (bound to 127.0.0.1 by the caller) until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    outbox: Outbox,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    axum::serve(listener, router(outbox, port))
        .with_graceful_shutdown(shutdown)
        .await
}

/// `port` is the one the viewer is reached on, for the `Host` check.
pub fn router(outbox: Outbox, port: u16) -> Router {
    let viewer = Viewer {
        outbox,
        hosts: [format!("127.0.0.1:{port}"), format!("localhost:{port}")].into(),
    };
    Router::new()
        .route("/", get(list))
        .route("/mail/{name}", get(show))
        .layer(middleware::from_fn_with_state(
            viewer.clone(),
            loopback_host_only,
        ))
        // Outermost, so refusals and 404s carry the headers too.
        .layer(middleware::map_response(security_headers))
        .with_state(viewer)
}

/// The viewer shows reset links, i.e. account takeovers. Listening on 127.0.0.1 keeps
/// other machines out; checking `Host` keeps out a web page that points its own name at
/// 127.0.0.1 (DNS rebinding) and would then read the viewer as its own origin.
async fn loopback_host_only(State(viewer): State<Viewer>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        // HTTP/2 carries the host in the URI instead.
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if host.is_some_and(|h| viewer.hosts.iter().any(|ok| ok.eq_ignore_ascii_case(h))) {
        return next.run(req).await;
    }
    (
        StatusCode::FORBIDDEN,
        format!(
            "このアドレスでは開けません。http://{}/ を開いてください。\n\
             Open http://{}/ instead.\n",
            viewer.hosts[0], viewer.hosts[0]
        ),
    )
        .into_response()
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A reset link followed from here must not tell the OP (or anyone) where it came from.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Mails hold live secrets: keep them out of the browser's cache.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[derive(Debug, thiserror::Error)]
enum ViewerError {
    #[error("no such mail")]
    NotFound,
    #[error("cannot read the outbox: {0}")]
    Outbox(#[from] std::io::Error),
    #[error("a page failed to render: {0}")]
    Render(#[from] askama::Error),
}

impl IntoResponse for ViewerError {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "メールが見つかりません。\nNo such mail.\n",
            )
                .into_response(),
            other => {
                tracing::error!(error = %other, "mail viewer");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "内部エラー (ログを見てください)\nInternal error (see the log).\n",
                )
                    .into_response()
            }
        }
    }
}

fn html_page(page: &impl Template) -> Result<Response, ViewerError> {
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.render()?,
    )
        .into_response())
}

#[derive(Template)]
#[template(path = "mail_list.html")]
struct MailList {
    dir: String,
    mails: Vec<Mail>,
}

#[derive(Template)]
#[template(path = "mail.html")]
struct MailPage {
    mail: Mail,
    body: Vec<Fragment>,
}

async fn list(State(viewer): State<Viewer>) -> Result<Response, ViewerError> {
    let mails = viewer.outbox.list(LIST_LIMIT).await?;
    html_page(&MailList {
        dir: viewer.outbox.dir().display().to_string(),
        mails,
    })
}

/// What `/mail/{name}` asks for.
enum Requested {
    Page(MailId),
    /// `<id>.eml`: the file as the OP wrote it.
    Raw(MailId),
    /// `<id>.html`: the mail's HTML part.
    Html(MailId),
}

impl Requested {
    fn parse(name: &str) -> Option<Self> {
        if let Some(id) = name.strip_suffix(".eml") {
            MailId::parse(id).map(Self::Raw)
        } else if let Some(id) = name.strip_suffix(".html") {
            MailId::parse(id).map(Self::Html)
        } else {
            MailId::parse(name).map(Self::Page)
        }
    }
}

async fn show(
    State(viewer): State<Viewer>,
    Path(name): Path<String>,
) -> Result<Response, ViewerError> {
    // Parsed before the filesystem is touched: only a UUID reaches `Outbox`.
    let requested = Requested::parse(&name).ok_or(ViewerError::NotFound)?;
    match requested {
        Requested::Raw(id) => {
            let raw = viewer.outbox.raw(id).await?.ok_or(ViewerError::NotFound)?;
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], raw).into_response())
        }
        Requested::Html(id) => {
            let mail = viewer.outbox.lookup(id).await?;
            let html = mail.and_then(|m| m.html).ok_or(ViewerError::NotFound)?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CONTENT_SECURITY_POLICY, MAIL_HTML_CSP),
                ],
                html,
            )
                .into_response())
        }
        Requested::Page(id) => {
            let mail = viewer
                .outbox
                .lookup(id)
                .await?
                .ok_or(ViewerError::NotFound)?;
            let body = linkify(&mail.text);
            html_page(&MailPage { mail, body })
        }
    }
}

#[cfg(test)]
mod tests;
