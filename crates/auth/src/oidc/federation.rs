//! Social sign-in's web side. The sign-in page's provider buttons post to
//! `/federation/{id}/start`; the provider answers at `/federation/{id}/callback` (a GET,
//! or Apple's cross-site form POST, kept server-side under its `state` and finished by a
//! 303 to the GET). What an upstream identity means for accounts is decided here: its
//! link, a new account, or an address another account uses (never linked silently).
//!
//! The flow's secrets (nonce, PKCE verifier) live server-side under the random `state`,
//! bound to the browser's binding cookie and spent once: a replayed, forged or another
//! browser's callback meets no flow (RFC 6749 §10.12, OIDC Core §15.5.2).

use std::net::{IpAddr, SocketAddr};

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::Duration;
use uuid::Uuid;

use super::authorize::{Rejection, see_other};
use super::login::{self, ui_locales};
use super::paths;
use crate::account::linked;
use crate::crypto::{constant_time_eq, random_token};
use crate::federation::{CallbackAnswer, Provider, UpstreamError, UpstreamFlow, callback_url};
use crate::flow::{self, Binding, FlowError, SignInFor};
use crate::state::AppState;
use crate::store::EphemeralError;
use crate::store::ephemeral::Spent;
use crate::web::client_ip::{ClientAddr, client_ip, ip_bucket};
use crate::web::csrf::CsrfForm;
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render, unavailable_page};

mod arrival;

use arrival::Arrival;
pub(super) use arrival::link_pending;

/// A member has this long at the provider (consent screens, a forgotten password there).
const FLOW_LIFETIME: Duration = Duration::minutes(10);
/// Apple's form post is turned into a GET at once: the kept answer waits only for that.
const ANSWER_LIFETIME: Duration = Duration::minutes(5);
/// 256 bits: the `state` is the only key to the flow's secrets.
const STATE_BYTES: usize = 32;
/// Each start keeps a flow for ten minutes: one parked sign-in may start this many, so a
/// loop of starts cannot fill the ephemeral store.
const MAX_STARTS_PER_SIGN_IN: u64 = 30;
/// At most this many flows started from one client address (IPv6 by /64) within
/// `FLOW_LIFETIME`, sign-ins and console links together: a flow is a record in the
/// ephemeral store that parked sign-ins share, and a fresh parked request costs nothing.
const MAX_STARTS_PER_ADDRESS: u64 = 60;

/// Bounds on what a callback may carry (the whole query or form is refused beyond them):
/// real codes are a few hundred bytes, Apple's `user` a few hundred more.
const MAX_STATE: usize = 64;
const MAX_CODE: usize = 2048;
const MAX_ERROR: usize = 256;
const MAX_ERROR_DESCRIPTION: usize = 1024;
const MAX_USER: usize = 4096;

/// Why an authorization request was sent to a provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// Signing in for the parked request (or console sign-in) `tx`.
    SignIn { tx: String },
    /// Linking the provider to the signed-in account `user` from the console
    /// (`account::linked`); `session` is the console session that asked.
    Link { user: Uuid, session: Uuid },
}

/// Why a request to a provider could not be started.
#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("the flow state cannot be kept: {0}")]
    Store(#[from] EphemeralError),
    /// A bug (the flow state would not encode).
    #[error("{0}")]
    Internal(String),
    /// This client address started too many flows lately (each is kept server-side
    /// until its callback or for `FLOW_LIFETIME`).
    #[error("too many social sign-ins started from this address")]
    TooMany { retry_after: i64 },
}

/// An authorization request on its way: what the callback needs to finish it, kept
/// under `federation:{state}`.
#[derive(Serialize, Deserialize)]
struct FlowRecord {
    provider: String,
    purpose: Purpose,
    /// SHA-256 of the starting browser's binding cookie.
    binding: String,
    flow: UpstreamFlow,
}

fn flow_key(state: &str) -> String {
    format!("federation:{state}")
}

fn spent_key(state: &str) -> String {
    format!("federation-spent:{state}")
}

fn answer_key(state: &str) -> String {
    format!("federation-answer:{state}")
}

/// Whether this browser's binding cookie is the one a record was bound to. A browser
/// without one (a fresh cookie would be made) is never the starting browser.
fn bound_to(state: &AppState, headers: &HeaderMap, hash: &str) -> bool {
    let binding = Binding::of(state.cookies, headers);
    binding.set_cookie.is_none() && constant_time_eq(binding.hash().as_bytes(), hash.as_bytes())
}

/// A `state` as we make them: base64url, bounded. Anything else names no flow (and is
/// safe to put back into a URL).
fn valid_state(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_STATE
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Starts an authorization request at `provider` for `purpose`, bound to this browser
/// (the binding cookie): the flow's state is kept server-side under a fresh `state`.
/// Gives the URL to send the browser to, and the `Set-Cookie` values to send with it
/// (a new binding cookie).
///
/// A link, and a sign-in that must prove the member again (a console re-authentication,
/// a client's `prompt=login`, `max_age` or `acr_values=2`), ask the provider for a fresh
/// sign-in: otherwise a browser left signed in at the provider would pass for the member.
pub async fn begin(
    state: &AppState,
    headers: &HeaderMap,
    provider: &Provider,
    purpose: Purpose,
    fresh: bool,
    ip: IpAddr,
) -> Result<(String, Vec<String>), BeginError> {
    let started_here = state
        .ephemeral
        .incr(
            &format!("federation-starts-ip:{}", ip_bucket(ip)),
            FLOW_LIFETIME,
        )
        .await?;
    if started_here.count > MAX_STARTS_PER_ADDRESS {
        tracing::warn!(ip = %ip, "too many social sign-ins started from one address");
        return Err(BeginError::TooMany {
            retry_after: FLOW_LIFETIME.whole_seconds(),
        });
    }
    let binding = Binding::of(state.cookies, headers);
    let flow_state = random_token(&mut rand::rng(), STATE_BYTES);
    let redirect_uri = callback_url(&state.config, &provider.id);
    let started = provider.start(&redirect_uri, &flow_state, fresh).await?;
    let record = FlowRecord {
        provider: provider.id.clone(),
        purpose,
        binding: binding.hash(),
        flow: started.flow,
    };
    let bytes = serde_json::to_vec(&record).map_err(|e| BeginError::Internal(e.to_string()))?;
    state
        .ephemeral
        .put_bounded(
            &flow_key(&flow_state),
            &bytes,
            state.clock.now() + FLOW_LIFETIME,
        )
        .await?;
    Ok((started.url, binding.set_cookie.into_iter().collect()))
}

/// A message about `provider` in `lang`, its `{label}` the service's name as sentences
/// use it (「Googleに接続できませんでした」, not the button's 「Google でログイン」).
fn about(state: &AppState, msg: Msg, provider: &Provider, lang: Lang) -> String {
    msg.text(lang).replace(
        "{label}",
        &linked::provider_name(&state.federation, &provider.id, lang),
    )
}

/// The page's words for a provider's failure.
fn upstream_message(
    state: &AppState,
    error: &UpstreamError,
    provider: &Provider,
    lang: Lang,
) -> (StatusCode, String) {
    let (status, msg) = match error {
        UpstreamError::Cancelled => (StatusCode::OK, Msg::FedCancelled),
        UpstreamError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, Msg::FedUnavailable),
        UpstreamError::Refused(_) => (StatusCode::UNAUTHORIZED, Msg::FedRefused),
        UpstreamError::Misconfigured(_) => (StatusCode::SERVICE_UNAVAILABLE, Msg::FedMisconfigured),
    };
    (status, about(state, msg, provider, lang))
}

/// Logs a provider's failure at the level it deserves: our own misconfiguration is an
/// operator's alarm, the rest is the provider's or the member's doing.
fn log_upstream(provider: &str, error: &UpstreamError) {
    match error {
        UpstreamError::Misconfigured(_) => {
            tracing::error!(provider, error = %error, "a provider refused this client");
        }
        UpstreamError::Cancelled => {
            tracing::info!(provider, "social sign-in cancelled at the provider");
        }
        _ => tracing::warn!(provider, error = %error, "social sign-in failed"),
    }
}

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    tx: String,
    lang: Option<String>,
}

/// `POST /federation/{id}/start`: a provider button of the sign-in page.
pub async fn post_start(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    request_id: RequestId,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<StartForm>,
) -> Response {
    let target = match flow::resume_sign_in(&state, &headers, &form.tx).await {
        Ok(target) => target,
        Err(e) => return Rejection::from(e).respond(&state, &headers, request_id),
    };
    let lang = page_lang(form.lang.as_deref(), ui_locales(&target), &headers);
    let Some(provider) = state.federation.find(&id).cloned() else {
        return error_page(StatusCode::NOT_FOUND, lang, Msg::BadRequest, None);
    };
    let starts = state
        .ephemeral
        .incr(&format!("federation-starts:{}", form.tx), FLOW_LIFETIME)
        .await;
    match starts {
        Ok(c) if c.count > MAX_STARTS_PER_SIGN_IN => {
            tracing::warn!(provider = %provider.id, "too many social sign-in starts for one sign-in");
            return Rejection::from(FlowError::Expired).respond(&state, &headers, request_id);
        }
        Ok(_) => {}
        Err(e) => return Rejection::from(e).respond(&state, &headers, request_id),
    }
    let purpose = Purpose::SignIn {
        tx: form.tx.clone(),
    };
    let fresh = match &target {
        SignInFor::Authorize(park) => park.request.asks_every_factor(),
        SignInFor::Console(c) => c.reauth.is_some(),
    };
    match begin(&state, &headers, &provider, purpose, fresh, ip).await {
        Ok((url, cookies)) => see_other(&url, &cookies),
        Err(BeginError::TooMany { retry_after }) => {
            Rejection::TooMany { retry_after }.respond(&state, &headers, request_id)
        }
        Err(BeginError::Upstream(e)) => {
            log_upstream(&provider.id, &e);
            let shown = upstream_message(&state, &e, &provider, lang);
            login::page_again(&state, &headers, &request_id, &form.tx, lang, shown, &[]).await
        }
        Err(BeginError::Store(e)) if e.is_transient() => {
            tracing::warn!(error = %e, "cannot keep a social sign-in's flow");
            unavailable_page(lang)
        }
        Err(e @ (BeginError::Store(_) | BeginError::Internal(_))) => {
            tracing::error!(error = %e, "cannot start a social sign-in");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                Msg::ServerError,
                request_id.0.clone(),
            )
        }
    }
}

/// A callback's parameters, if they are one: no repeated parameter (serde refuses a
/// duplicate field), none beyond its bound.
fn parse_answer(bytes: &[u8]) -> Option<CallbackAnswer> {
    let answer: CallbackAnswer = serde_urlencoded::from_bytes(bytes).ok()?;
    let within = |v: &Option<String>, max: usize| v.as_ref().is_none_or(|s| s.len() <= max);
    (within(&answer.state, MAX_STATE)
        && within(&answer.code, MAX_CODE)
        && within(&answer.error, MAX_ERROR)
        && within(&answer.error_description, MAX_ERROR_DESCRIPTION)
        && within(&answer.error_reason, MAX_ERROR)
        && within(&answer.user, MAX_USER))
    .then_some(answer)
}

#[derive(Template)]
#[template(path = "federation_expired.html")]
struct ExpiredPage {
    lang: Lang,
    /// Where to sign in again, and the link's words.
    again: Option<(String, Msg)>,
}

impl ExpiredPage {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// The page for a callback that finds no flow (unknown, expired, replayed, of another
/// provider): a link back to where the member can start again, when the spent flow says
/// where and this browser started it.
async fn expired(
    state: &AppState,
    headers: &HeaderMap,
    lang: Lang,
    spent: Option<FlowRecord>,
) -> Response {
    let mut again = None;
    if let Some(record) = spent.filter(|r| bound_to(state, headers, &r.binding)) {
        again = match record.purpose {
            Purpose::SignIn { tx } => {
                flow::resume_sign_in(state, headers, &tx)
                    .await
                    .ok()
                    .map(|_| {
                        let href = format!("{}?tx={tx}&lang={}", paths::LOGIN, lang.tag());
                        (href, Msg::FedSignInAgain)
                    })
            }
            Purpose::Link { .. } => Some((crate::account::LINKED.to_owned(), Msg::FedAccountLink)),
        };
    }
    render(StatusCode::BAD_REQUEST, &ExpiredPage { lang, again }, &[])
}

/// `POST /federation/{id}/callback`: Apple's `response_mode=form_post`. A cross-site
/// POST by design, so it carries neither our SameSite=Lax cookies nor a CSRF token, and
/// is not a `CsrfForm`: nothing is decided here. The answer is kept under its `state`
/// (only when that names a live flow of this provider) and the browser is sent to the
/// GET, a top-level navigation that brings the binding cookie, where the flow is checked
/// against it. The code never travels in a URL.
pub async fn post_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let lang = page_lang(None, None, &headers);
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let Some(provider) = state.federation.find(&id).cloned() else {
        return error_page(StatusCode::NOT_FOUND, lang, Msg::BadRequest, None);
    };
    // Only a provider that answers by form post may post here.
    let answer = is_form
        .then(|| parse_answer(&body))
        .flatten()
        .filter(|_| provider.form_post());
    let Some(answer) = answer else {
        return error_page(StatusCode::BAD_REQUEST, lang, Msg::BadRequest, None);
    };
    let Some(flow_state) = answer.state.clone().filter(|s| valid_state(s)) else {
        return expired(&state, &headers, lang, None).await;
    };
    let live = match state.ephemeral.get(&flow_key(&flow_state)).await {
        Ok(bytes) => bytes
            .and_then(|b| serde_json::from_slice::<FlowRecord>(&b).ok())
            .is_some_and(|r| r.provider == provider.id),
        Err(e) => return Rejection::from(e).respond(&state, &headers, request_id),
    };
    if !live {
        tracing::warn!(provider = %provider.id, "a form post for no live flow: nothing kept");
        return expired(&state, &headers, lang, None).await;
    }
    let kept = match serde_json::to_vec(&answer) {
        Ok(bytes) => {
            state
                .ephemeral
                .put_bounded(
                    &answer_key(&flow_state),
                    &bytes,
                    state.clock.now() + ANSWER_LIFETIME,
                )
                .await
        }
        Err(_) => Err(EphemeralError::Malformed),
    };
    if let Err(e) = kept {
        return Rejection::from(e).respond(&state, &headers, request_id);
    }
    let to = format!(
        "{}?state={flow_state}",
        paths::FEDERATION_CALLBACK.replace("{id}", &provider.id)
    );
    see_other(&to, &[])
}

/// `GET /federation/{id}/callback`: the provider's answer (or, after Apple's form post,
/// only its `state`, the answer being kept). The flow is spent once, must be this
/// provider's and this browser's; then the provider checks the answer.
pub async fn get_callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request_id: RequestId,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = page_lang(None, None, &headers);
    let Some(provider) = state.federation.find(&id).cloned() else {
        return error_page(StatusCode::NOT_FOUND, lang, Msg::BadRequest, None);
    };
    let Some(mut answer) = parse_answer(query.unwrap_or_default().as_bytes()) else {
        return error_page(StatusCode::BAD_REQUEST, lang, Msg::BadRequest, None);
    };
    let Some(flow_state) = answer.state.clone().filter(|s| valid_state(s)) else {
        return expired(&state, &headers, lang, None).await;
    };
    // Checked before anything is spent: another browser's (or provider's) callback
    // leaves the flow, and a kept answer, to its own.
    if let Err(taken) = check_flow(&state, &headers, &provider, &flow_state).await {
        return taken.respond(&state, &headers, request_id, lang).await;
    }
    // A form-post provider answers only through the kept post: a code in the URL is not
    // its answer, and a GET with only the state and nothing kept is no answer at all.
    // Other providers answer in the query, even with only the state (Yahoo!'s 「同意しない」
    // under `bail=1` brings no code: the provider's `finish` calls that a cancel).
    if provider.form_post() {
        let kept = match state.ephemeral.take(&answer_key(&flow_state)).await {
            Ok(kept) => kept.and_then(|b| serde_json::from_slice::<CallbackAnswer>(&b).ok()),
            Err(e) => return Rejection::from(e).respond(&state, &headers, request_id),
        };
        match kept {
            Some(kept) => answer = kept,
            None => return expired(&state, &headers, lang, None).await,
        }
    }
    let record = match spend_flow(&state, &flow_state).await {
        Ok(record) => record,
        Err(taken) => return taken.respond(&state, &headers, request_id, lang).await,
    };
    let redirect_uri = callback_url(&state.config, &provider.id);
    let result = provider.finish(&redirect_uri, &record.flow, &answer).await;
    if let Err(e) = &result {
        log_upstream(&provider.id, e);
    }
    let ip = client_ip(peer, &headers, &state.config.server.trusted_proxies);
    match record.purpose {
        Purpose::Link { user, session } => match result {
            Ok(identity) => {
                linked::finish_link(&state, &headers, ip, request_id, user, session, identity).await
            }
            Err(e) => linked::link_failed(&state, &headers, &e),
        },
        Purpose::SignIn { tx } => {
            let target = match flow::resume_sign_in(&state, &headers, &tx).await {
                Ok(target) => target,
                Err(e) => return Rejection::from(e).respond(&state, &headers, request_id),
            };
            let lang = page_lang(None, ui_locales(&target), &headers);
            let arrival = Arrival::new(&state, &headers, request_id, lang, &tx, &provider, ip);
            match result {
                Ok(identity) => arrival.identity(target, identity).await,
                Err(e) => {
                    let shown = upstream_message(&state, &e, &provider, lang);
                    arrival.again(shown.0, shown.1).await
                }
            }
        }
    }
}

/// Why a callback's flow could not be taken.
enum Taken {
    /// None live under that state, or another provider's; the spent record when it was a
    /// replay.
    Expired(Option<FlowRecord>),
    OtherBrowser,
    Store(EphemeralError),
}

impl Taken {
    async fn respond(
        self,
        state: &AppState,
        headers: &HeaderMap,
        request_id: RequestId,
        lang: Lang,
    ) -> Response {
        match self {
            Self::Expired(spent) => {
                tracing::warn!("a social sign-in callback for no live flow");
                expired(state, headers, lang, spent).await
            }
            Self::OtherBrowser => {
                tracing::warn!(
                    "a social sign-in callback in another browser than the one that started it"
                );
                Rejection::from(FlowError::OtherBrowser).respond(state, headers, request_id)
            }
            Self::Store(e) => Rejection::from(e).respond(state, headers, request_id),
        }
    }
}

fn decode_flow(bytes: Vec<u8>) -> Option<FlowRecord> {
    serde_json::from_slice(&bytes).ok()
}

/// Whether a live flow of `provider`, started by this browser, is under `flow_state`;
/// else why not (with the spent flow, when it is a replay).
async fn check_flow(
    state: &AppState,
    headers: &HeaderMap,
    provider: &Provider,
    flow_state: &str,
) -> Result<(), Taken> {
    let live = state
        .ephemeral
        .get(&flow_key(flow_state))
        .await
        .map_err(Taken::Store)?
        .and_then(decode_flow);
    let Some(live) = live else {
        // Spending a spent value changes nothing and says what it was: a replay.
        let remember_until = state.clock.now() + FLOW_LIFETIME;
        let spent = state
            .ephemeral
            .spend(
                &flow_key(flow_state),
                &spent_key(flow_state),
                remember_until,
            )
            .await
            .map_err(Taken::Store)?;
        return Err(Taken::Expired(match spent {
            Spent::Fresh(bytes) | Spent::Replayed(bytes) => decode_flow(bytes),
            Spent::Absent => None,
        }));
    };
    if live.provider != provider.id {
        return Err(Taken::Expired(None));
    }
    if !bound_to(state, headers, &live.binding) {
        return Err(Taken::OtherBrowser);
    }
    Ok(())
}

/// Spends the flow under `flow_state` (after `check_flow`): of two callbacks at once,
/// one has it; the spent flow is remembered, so a replay is told apart from a stranger.
async fn spend_flow(state: &AppState, flow_state: &str) -> Result<FlowRecord, Taken> {
    let remember_until = state.clock.now() + FLOW_LIFETIME;
    let spent = state
        .ephemeral
        .spend(
            &flow_key(flow_state),
            &spent_key(flow_state),
            remember_until,
        )
        .await
        .map_err(Taken::Store)?;
    match spent {
        Spent::Fresh(bytes) => decode_flow(bytes).ok_or(Taken::Expired(None)),
        Spent::Replayed(bytes) => Err(Taken::Expired(decode_flow(bytes))),
        Spent::Absent => Err(Taken::Expired(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_states_we_could_have_made_are_looked_up() {
        assert!(valid_state(&random_token(&mut rand::rng(), STATE_BYTES)));
        for bad in ["", "a b", "a/b", "a%2Fb", "ä", &"a".repeat(MAX_STATE + 1)] {
            assert!(!valid_state(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_callback_with_a_repeated_or_oversized_parameter_is_not_one() {
        assert!(parse_answer(b"code=abc&state=xyz").is_some());
        assert!(parse_answer(b"state=a&state=b").is_none());
        let long = format!("code={}&state=x", "c".repeat(MAX_CODE + 1));
        assert!(parse_answer(long.as_bytes()).is_none());
        let user = format!("state=x&user={}", "u".repeat(MAX_USER + 1));
        assert!(parse_answer(user.as_bytes()).is_none());
        // Fields of no interest (Apple's `id_token`) are ignored.
        let answer = parse_answer(b"state=x&id_token=e30&code=c").unwrap();
        assert_eq!(answer.code.as_deref(), Some("c"));
    }
}
