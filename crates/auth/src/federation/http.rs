//! The one HTTP client every provider is spoken to through: no redirects followed
//! (openidconnect's advice against SSRF: a provider's 3xx must not send us elsewhere),
//! a connect timeout and an overall timeout (`federation.timeout_ms`), and answers read
//! up to a bound (a hostile issuer must not make us buffer gigabytes). A 5xx is an
//! error here, so that every caller sees "the provider is down" the same way.

use std::pin::Pin;
use std::time::Duration;

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};
use reqwest::StatusCode;

use super::UpstreamError;

/// The largest answer read from a provider (discovery documents and JWKS are a few KB).
pub const MAX_BODY: usize = 512 * 1024;

/// Connecting gives up after this long even when the overall timeout is longer: a
/// provider that does not accept connections is down, not slow.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a request to a provider brought no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting, sending or reading failed or timed out (the URL is left out: it
    /// may carry a secret, as Facebook's token request does).
    #[error("{0}")]
    Transport(reqwest::Error),
    /// The provider answered with a server error.
    #[error("the provider answered HTTP {0}")]
    Server(StatusCode),
    #[error("the provider's answer is larger than {MAX_BODY} bytes")]
    TooLarge,
}

impl From<reqwest::Error> for HttpError {
    fn from(e: reqwest::Error) -> Self {
        Self::Transport(e.without_url())
    }
}

impl From<HttpError> for UpstreamError {
    /// Down or slow is `Unavailable`; an answer too large to read is a refusal (the
    /// provider is up, and what it says cannot be accepted).
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::TooLarge => UpstreamError::Refused(e.to_string()),
            HttpError::Transport(_) | HttpError::Server(_) => {
                UpstreamError::Unavailable(e.to_string())
            }
        }
    }
}

/// An answer as read: status, headers and the (bounded) body.
pub type Answer = HttpResponse;

#[derive(Clone)]
pub struct Http(reqwest::Client);

impl Http {
    pub fn new(timeout: Duration) -> Result<Self, String> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .user_agent(concat!("Tobira/", env!("CARGO_PKG_VERSION")))
            .build()
            .map(Self)
            .map_err(|e| format!("cannot build the federation HTTP client: {e}"))
    }

    /// Sends `request` and reads its answer; a 5xx is an error.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, HttpError> {
        let request = request.build()?;
        self.execute(request).await
    }

    /// A request on this client (so its timeouts and redirect policy apply).
    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.0.get(url)
    }

    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.0.post(url)
    }

    async fn execute(&self, request: reqwest::Request) -> Result<Answer, HttpError> {
        let mut answer = self.0.execute(request).await?;
        let status = answer.status();
        if status.is_server_error() {
            return Err(HttpError::Server(status));
        }
        let headers = answer.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = answer.chunk().await? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let mut response = openidconnect::http::Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// openidconnect's client trait (discovery, JWKS, the token request). The future is
/// boxed and `Send` so that the handlers awaiting it stay `Send`.
impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request: reqwest::Request = request.try_into()?;
            self.execute(request).await
        })
    }
}

/// Whether an answer says its body is JSON (`application/json`, with or without
/// parameters; a missing Content-Type is given the benefit of the doubt, as
/// openidconnect does).
pub fn is_json(answer: &Answer) -> bool {
    answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| {
            let essence = v.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/json")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on a free loopback port answering every request with `status` and a
    /// body of `size` bytes.
    async fn server(status: u16, size: usize) -> String {
        let app = axum::Router::new().fallback(move || async move {
            (
                axum::http::StatusCode::from_u16(status).expect("a status"),
                [("location", "http://127.0.0.1:9/elsewhere")],
                "x".repeat(size),
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn http() -> Http {
        Http::new(Duration::from_secs(5)).expect("client")
    }

    #[tokio::test]
    async fn a_server_error_is_an_unavailable_provider() {
        let url = server(503, 10).await;
        let e = http().send(http().get(&url)).await.unwrap_err();
        assert!(matches!(e, HttpError::Server(s) if s == 503));
        assert!(matches!(
            UpstreamError::from(e),
            UpstreamError::Unavailable(_)
        ));
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let url = server(302, 0).await;
        let answer = http().send(http().get(&url)).await.expect("answer");
        assert_eq!(answer.status(), 302);
    }

    #[tokio::test]
    async fn an_oversized_answer_is_refused() {
        let url = server(200, MAX_BODY + 1).await;
        let e = http().send(http().get(&url)).await.unwrap_err();
        assert!(matches!(e, HttpError::TooLarge));
        let url = server(200, MAX_BODY).await;
        assert_eq!(
            http()
                .send(http().get(&url))
                .await
                .expect("fits")
                .body()
                .len(),
            MAX_BODY
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_unavailable_and_the_error_hides_the_url() {
        // Bind then drop: nothing listens there any more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let url = format!("http://{addr}/token?client_secret=hunter2");
        let e = http().send(http().get(&url)).await.unwrap_err();
        let e = UpstreamError::from(e);
        assert!(matches!(e, UpstreamError::Unavailable(_)));
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
