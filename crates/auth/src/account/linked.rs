//! `/account/linked` (連携サービス): the upstream accounts linked to the member's account
//! (the service, the address it gave, when linked, last used), linking another (a round
//! trip to the provider bound to this console session) and unlinking, never the last way
//! in. Every change is written with its history line and its mail in one transaction, and
//! [`make_link`] is the one place a link is made: the console's, and the sign-in that
//! proved an account whose address a provider gave.

use std::net::IpAddr;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use super::audit_ctx::AuditOrigin;
use super::console::{CurrentSession, minute};
use super::console_error::ConsoleError;
use super::delete::in_words;
use super::reauth::RecentSession;
use super::{FORGOT, LINKED, link, user_lang};
use crate::authn::session;
use crate::domain::{Email, User};
use crate::federation::{Identity, Providers, UpstreamError};
use crate::keys::KeyError;
use crate::mail::templates::{self, LinkedMail};
use crate::oidc::authorize::see_other;
use crate::oidc::federation::{BeginError, Purpose, begin};
use crate::state::AppState;
use crate::store::{
    FactorChange, Link, Linking, LoginEvent, LoginResult, NewFederatedLink, QueuedMail, StoreError,
    Unlinking,
};
use crate::web::client_ip::ClientAddr;
use crate::web::cookies::SESSION;
use crate::web::csrf::{self, CsrfForm};
use crate::web::device::Device;
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render};

/// This page, as the log names it.
const PAGE: &str = "linked accounts";

/// How the history names a federated method: `fed:{provider id}` (then `+totp` and the
/// like after a second step).
pub const METHOD_PREFIX: &str = "fed:";

/// The history method of provider `id`: `fed:google`.
pub fn method(id: &str) -> String {
    format!("{METHOD_PREFIX}{id}")
}

/// The name of provider `id` as sentences use it (「Google を連携」, 「Yahoo! JAPAN ID」):
/// its button text without the sign-in wording around it, so that a configured label
/// written the providers' way (「… でログイン」, "Sign in with …") names its service too;
/// the id of a provider no longer configured (old links and history lines).
pub fn provider_name(providers: &Providers, id: &str, lang: Lang) -> String {
    match providers.find(id) {
        Some(provider) => name_of_label(provider.label(lang)).to_owned(),
        None => id.to_owned(),
    }
}

fn name_of_label(label: &str) -> &str {
    const SUFFIXES: [&str; 2] = ["でログイン", "でサインイン"];
    const PREFIXES: [&str; 4] = [
        "Sign in with ",
        "Log in with ",
        "Login with ",
        "Continue with ",
    ];
    let label = label.trim();
    SUFFIXES
        .iter()
        .find_map(|s| label.strip_suffix(s))
        .or_else(|| PREFIXES.iter().find_map(|p| label.strip_prefix(p)))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .unwrap_or(label)
}

/// One federated step of a history line in words: a sign-in is the provider's own button
/// text (「Google でログイン」); a link made or removed is 「Google を連携」 / 「Google の連携を
/// 解除」.
pub fn method_step_text(
    providers: &Providers,
    id: &str,
    result: LoginResult,
    lang: Lang,
) -> String {
    let named = |m: Msg| {
        m.text(lang)
            .replace("{name}", &provider_name(providers, id, lang))
    };
    match result {
        LoginResult::Enrolled => named(Msg::MethodFedLinked),
        LoginResult::Removed => named(Msg::MethodFedUnlinked),
        _ => providers.label(id, lang).to_owned(),
    }
}

/// Where a link is made from, for its history line and mail.
pub struct LinkContext<'a> {
    pub ip: IpAddr,
    pub user_agent: &'a str,
    /// The hash of the browser's device cookie, as sessions and the history keep it.
    pub device: &'a str,
    pub lang: Lang,
}

/// The address a provider gave, if it is an address: it is shown on the page and in mail,
/// so whatever else a provider sends (overlong, control characters) is not kept.
fn given_address(identity: &Identity) -> Option<String> {
    let given = identity.email.as_deref()?;
    Email::parse(given).ok().map(|e| e.display().to_owned())
}

/// The history line and the mail of linking (`linked`) or unlinking provider `id`, to be
/// written in the change's own transaction: a change without its trace cannot happen.
pub(crate) fn link_change(
    state: &AppState,
    user: &User,
    id: &str,
    account: Option<&str>,
    linked: bool,
    ctx: &LinkContext<'_>,
) -> Result<FactorChange, KeyError> {
    let now = state.clock.now();
    let lang = user_lang(user, ctx.lang);
    let ip = ctx.ip.to_string();
    let mail = templates::provider_linked(
        lang,
        user.email.display(),
        &user.display_name,
        &LinkedMail {
            linked,
            provider: &provider_name(&state.federation, id, lang),
            account,
            at: &in_words(now, state.config.throttle.display_offset(), lang),
            device: &Device::of(ctx.user_agent).describe(lang),
            ip: &ip,
            console: &link(state, LINKED, &[]),
            reset: &link(state, FORGOT, &[]),
        },
    );
    Ok(FactorChange {
        event: LoginEvent {
            id: Uuid::new_v4(),
            user: user.id,
            at: now,
            ip,
            user_agent: ctx.user_agent.to_owned(),
            device_hash: ctx.device.to_owned(),
            method: method(id),
            result: if linked {
                LoginResult::Enrolled
            } else {
                LoginResult::Removed
            },
            new_device: false,
        },
        mail: Some(QueuedMail {
            payload: mail.seal(&state.master)?,
        }),
    })
}

/// Sealing with the master key fails only on a broken key; the store's error is what the
/// callers of [`make_link`] handle.
fn unsealable(e: KeyError) -> StoreError {
    StoreError::Corrupt(format!("cannot seal with the master key: {e}"))
}

/// Links `identity` to `user` with its history line and mail («Google を連携しました»):
/// the one place a link is made (the console, and the sign-in that proved the account
/// after a provider's address matched it). Apple's refresh token is stored sealed with
/// the master key, so that the account's deletion can revoke it and nothing else can
/// read it. `request_id` is the request's (`audit_ctx::request_id_of`), for the audit log.
pub async fn make_link(
    state: &AppState,
    user: &User,
    identity: &Identity,
    ctx: LinkContext<'_>,
    request_id: &str,
) -> Result<Linking, StoreError> {
    let sealed_refresh_token = identity
        .refresh_token
        .as_deref()
        .map(|token| state.master.encrypt(token.as_bytes()))
        .transpose()
        .map_err(unsealable)?;
    let account = given_address(identity);
    let change = link_change(
        state,
        user,
        &identity.provider,
        account.as_deref(),
        true,
        &ctx,
    )
    .map_err(unsealable)?;
    let now = state.clock.now();
    let origin = AuditOrigin {
        ip: ctx.ip,
        request_id: request_id.to_owned(),
    };
    let audit = origin.event(
        now,
        user.id,
        "user.link",
        serde_json::json!({ "provider": identity.provider }),
    );
    let linking = state
        .db
        .links()
        .audited(audit)
        .link(
            now,
            user.id,
            NewFederatedLink {
                provider: identity.provider.clone(),
                issuer: identity.issuer.clone(),
                subject: identity.subject.clone(),
                email: account,
                sealed_refresh_token,
            },
            change,
        )
        .await?;
    tracing::info!(
        user = %user.id.0,
        provider = %identity.provider,
        outcome = ?linking,
        "federated link"
    );
    Ok(linking)
}

/// The browser's signed-in session and its (usable) account, as the console sees it.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<CurrentSession>, StoreError> {
    let secret = state.cookies.get(headers, SESSION);
    let Some(session) =
        session::current(&state.db, &state.clock, &state.sessions, secret.as_deref()).await?
    else {
        return Ok(None);
    };
    let user = state.db.users().find_by_id(session.user_id).await?;
    Ok(user
        .filter(User::usable)
        .map(|user| CurrentSession { session, user }))
}

fn user_agent(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// The callback of a link the console started (`oidc::federation` calls it once the
/// provider's answer passed every check): the browser's console session must still be
/// the one that started (`session`) and `user`'s — otherwise whoever signed in since (or
/// signed out) would get, or lose, someone else's link; then the link is made and the
/// browser goes back to `/account/linked`. `ip` is the client's address, for the history
/// line and the mail.
pub async fn finish_link(
    state: &AppState,
    headers: &HeaderMap,
    ip: IpAddr,
    request_id: RequestId,
    user: Uuid,
    session: Uuid,
    identity: Identity,
) -> Response {
    let lang = page_lang(None, None, headers);
    let id = request_id.0.clone().unwrap_or_default();
    let failed = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, provider = %identity.provider, "linking failed");
        error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            lang,
            Msg::ServerError,
            request_id.0.clone(),
        )
    };
    let current = match signed_in(state, headers).await {
        Ok(found) => found.filter(|c| c.session.id == session && c.user.id.0 == user),
        Err(e) => return failed(&e),
    };
    let Some(current) = current else {
        tracing::warn!(
            user = %user,
            provider = %identity.provider,
            "link refused: the console session that started it is gone or another"
        );
        return error_page(StatusCode::FORBIDDEN, lang, Msg::LinkedSessionChanged, None);
    };
    let lang = page_lang(None, Some(&current.user.locale), headers);
    let agent = user_agent(headers);
    let ctx = LinkContext {
        ip,
        user_agent: &agent,
        device: &current.session.device_id,
        lang,
    };
    match make_link(state, &current.user, &identity, ctx, &id).await {
        Ok(Linking::Linked) => Outcome::Linked.back(Some(&identity.provider)),
        Ok(Linking::AlreadyThis) => Outcome::Already.back(Some(&identity.provider)),
        Ok(Linking::OtherAccount) => Outcome::OtherAccount.back(Some(&identity.provider)),
        Err(e) => failed(&e),
    }
}

/// A link the console started that the provider did not complete (cancelled, down,
/// refused): back to `/account/linked` with the reason. The page reads the member's
/// session and list itself after the redirect, so neither `state` nor the headers are
/// needed here.
pub fn link_failed(_state: &AppState, _headers: &HeaderMap, error: &UpstreamError) -> Response {
    let outcome = Outcome::of(error);
    match error {
        UpstreamError::Misconfigured(why) => {
            tracing::error!(error = %why, "linking: the provider refused this client");
        }
        other => tracing::info!(error = %other, "linking: the provider gave no identity"),
    }
    outcome.back(None)
}

/// What the page says after a change or a provider's answer (`?done=…`, with the
/// provider's id). Only ever a notice: a crafted link shows it and changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Linked,
    Unlinked,
    Already,
    OtherAccount,
    Cancelled,
    Unavailable,
    Refused,
    Misconfigured,
}

impl Outcome {
    const ALL: [Self; 8] = [
        Self::Linked,
        Self::Unlinked,
        Self::Already,
        Self::OtherAccount,
        Self::Cancelled,
        Self::Unavailable,
        Self::Refused,
        Self::Misconfigured,
    ];

    fn of(error: &UpstreamError) -> Self {
        match error {
            UpstreamError::Cancelled => Self::Cancelled,
            UpstreamError::Unavailable(_) => Self::Unavailable,
            UpstreamError::Refused(_) => Self::Refused,
            UpstreamError::Misconfigured(_) => Self::Misconfigured,
        }
    }

    fn param(self) -> &'static str {
        match self {
            Self::Linked => "linked",
            Self::Unlinked => "unlinked",
            Self::Already => "already",
            Self::OtherAccount => "other-account",
            Self::Cancelled => "cancelled",
            Self::Unavailable => "unavailable",
            Self::Refused => "refused",
            Self::Misconfigured => "misconfigured",
        }
    }

    fn from_param(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.param() == value)
    }

    fn message(self) -> Msg {
        match self {
            Self::Linked => Msg::LinkedDoneLinked,
            Self::Unlinked => Msg::LinkedDoneUnlinked,
            Self::Already => Msg::LinkedAlready,
            Self::OtherAccount => Msg::LinkedOtherAccount,
            Self::Cancelled => Msg::LinkedCancelled,
            Self::Unavailable => Msg::LinkedUnavailable,
            Self::Refused => Msg::LinkedRefused,
            Self::Misconfigured => Msg::LinkedMisconfigured,
        }
    }

    /// Whether the page shows it as an error (nothing was linked) rather than a notice.
    fn is_error(self) -> bool {
        !matches!(self, Self::Linked | Self::Unlinked | Self::Already)
    }

    /// The status of the page when it answers a start directly (the provider could not
    /// be asked).
    fn status(self) -> StatusCode {
        match self {
            Self::Unavailable | Self::Misconfigured => StatusCode::SERVICE_UNAVAILABLE,
            Self::Refused => StatusCode::BAD_GATEWAY,
            _ => StatusCode::OK,
        }
    }

    /// The page again with this outcome (a GET, so a reload repeats nothing).
    fn back(self, provider: Option<&str>) -> Response {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("done", self.param());
        if let Some(id) = provider {
            query.append_pair("provider", id);
        }
        see_other(&format!("{LINKED}?{}", query.finish()), &[])
    }

    /// The message in words, naming the provider where it says `{name}`; `None` when it
    /// needs a name and has none.
    fn text(self, name: Option<&str>, lang: Lang) -> Option<String> {
        let text = self.message().text(lang);
        match name {
            Some(name) => Some(text.replace("{name}", name)),
            None if text.contains("{name}") => None,
            None => Some(text.to_owned()),
        }
    }
}

/// Whether `id` could be a provider's id (`[a-z0-9_-]{1,32}`): a crafted `provider`
/// parameter names nothing else on the page.
fn plausible_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// One link as the list shows it.
struct LinkLine {
    id: String,
    provider: String,
    name: String,
    email: Option<String>,
    created: String,
    last_used: Option<String>,
}

/// One "link this provider" form.
struct ProviderButton {
    id: String,
    text: String,
}

#[derive(Template)]
#[template(path = "account_linked.html")]
struct LinkedPage<'a> {
    lang: Lang,
    csrf: &'a str,
    links: Vec<LinkLine>,
    providers: Vec<ProviderButton>,
    notice: Option<String>,
    error: Option<String>,
}

impl LinkedPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// A page's member, language and request.
struct Ctx<'a> {
    state: &'a AppState,
    current: &'a CurrentSession,
    headers: &'a HeaderMap,
    lang: Lang,
    csrf: String,
    set_cookies: Vec<String>,
}

impl<'a> Ctx<'a> {
    fn new(state: &'a AppState, current: &'a CurrentSession, headers: &'a HeaderMap) -> Self {
        let (csrf, set_cookie) = csrf::token(state.cookies, headers);
        Self {
            state,
            current,
            headers,
            lang: page_lang(None, Some(&current.user.locale), headers),
            csrf,
            set_cookies: set_cookie.into_iter().collect(),
        }
    }

    fn name(&self, id: &str) -> String {
        provider_name(&self.state.federation, id, self.lang)
    }

    fn line(&self, l: Link) -> LinkLine {
        let offset = self.state.config.throttle.display_offset();
        LinkLine {
            id: l.id.to_string(),
            name: self.name(&l.provider),
            provider: l.provider,
            email: l.email,
            created: minute(l.created_at, offset),
            last_used: l.last_used_at.map(|t| minute(t, offset)),
        }
    }

    /// The list page with `status`, a notice or an error.
    async fn page(
        &self,
        status: StatusCode,
        notice: Option<String>,
        error: Option<String>,
    ) -> Result<Response, ConsoleError> {
        let links = self
            .state
            .db
            .links()
            .list(self.current.user.id)
            .await?
            .into_iter()
            .map(|l| self.line(l))
            .collect();
        let add = Msg::LinkedAddButton.text(self.lang);
        let providers = self
            .state
            .federation
            .all()
            .iter()
            .map(|p| ProviderButton {
                id: p.id.clone(),
                text: add.replace("{name}", &self.name(&p.id)),
            })
            .collect();
        let page = LinkedPage {
            lang: self.lang,
            csrf: &self.csrf,
            links,
            providers,
            notice,
            error,
        };
        Ok(render(status, &page, &self.set_cookies))
    }

    /// The list page again with a refusal (`status`, `error`); nothing was changed.
    async fn refused(&self, status: StatusCode, error: Msg) -> Result<Response, ConsoleError> {
        self.page(status, None, Some(error.text(self.lang).to_owned()))
            .await
    }

    /// The member's link `id`, if it is theirs.
    async fn own(&self, id: &str) -> Result<Option<Link>, ConsoleError> {
        let Ok(id) = Uuid::try_parse(id) else {
            return Ok(None);
        };
        Ok(self
            .state
            .db
            .links()
            .list(self.current.user.id)
            .await?
            .into_iter()
            .find(|l| l.id == id))
    }
}

#[derive(Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    done: String,
    #[serde(default)]
    provider: String,
}

/// `GET /account/linked`: the member's links and one "link" form per configured provider.
pub async fn page(
    current: CurrentSession,
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: RequestId,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let ctx = Ctx::new(&state, &current, &headers);
    // A query that does not parse is a notice lost, not an error: the list still shows.
    let (notice, error) = match query {
        Ok(Query(q)) => match Outcome::from_param(&q.done) {
            Some(outcome) => {
                let name = plausible_id(&q.provider).then(|| ctx.name(&q.provider));
                let text = outcome.text(name.as_deref(), ctx.lang);
                if outcome.is_error() {
                    (None, text)
                } else {
                    (text, None)
                }
            }
            None => (None, None),
        },
        Err(_) => (None, None),
    };
    ctx.page(StatusCode::OK, notice, error)
        .await
        .unwrap_or_else(|e| e.respond(PAGE, ctx.lang, request_id))
}

/// The GET of a form's address (a stale form that came back after the sign-in): the page.
pub async fn to_page() -> Response {
    see_other(LINKED, &[])
}

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    provider: String,
}

/// `POST /account/linked/start`: sends the browser to the provider to link an account
/// there (the callback comes back to [`finish_link`] with this session's id).
pub async fn post_start(
    RecentSession(current): RecentSession,
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<StartForm>,
) -> Response {
    let ctx = Ctx::new(&state, &current, &headers);
    start(&ctx, &form.provider, ip)
        .await
        .unwrap_or_else(|e| e.respond(PAGE, ctx.lang, request_id))
}

async fn start(ctx: &Ctx<'_>, id: &str, ip: IpAddr) -> Result<Response, ConsoleError> {
    let Some(provider) = ctx.state.federation.find(id) else {
        return ctx
            .refused(StatusCode::NOT_FOUND, Msg::LinkedUnknownProvider)
            .await;
    };
    let purpose = Purpose::Link {
        user: ctx.current.user.id.0,
        session: ctx.current.session.id,
    };
    match begin(ctx.state, ctx.headers, provider, purpose, true, ip).await {
        Ok((url, set_cookies)) => {
            tracing::info!(user = %ctx.current.user.id.0, provider = %id, "linking started");
            Ok(see_other(&url, &set_cookies))
        }
        Err(BeginError::Upstream(e)) => {
            tracing::warn!(provider = %id, error = %e, "linking could not start");
            let outcome = Outcome::of(&e);
            ctx.page(outcome.status(), None, outcome.text(None, ctx.lang))
                .await
        }
        Err(BeginError::Store(e)) => Err(ConsoleError::Ephemeral(e)),
        Err(BeginError::Internal(e)) => Err(ConsoleError::Internal(e)),
        Err(BeginError::TooMany { retry_after }) => Ok(
            crate::oidc::authorize::Rejection::TooMany { retry_after }.respond(
                ctx.state,
                ctx.headers,
                RequestId(None),
            ),
        ),
    }
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    link: String,
}

/// `POST /account/linked/remove`: removes one of the member's links, never the last way
/// in to the account.
pub async fn post_remove(
    RecentSession(current): RecentSession,
    State(state): State<AppState>,
    origin: AuditOrigin,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<RemoveForm>,
) -> Response {
    let ctx = Ctx::new(&state, &current, &headers);
    remove(&ctx, &origin, &form.link)
        .await
        .unwrap_or_else(|e| e.respond(PAGE, ctx.lang, request_id))
}

async fn remove(ctx: &Ctx<'_>, origin: &AuditOrigin, id: &str) -> Result<Response, ConsoleError> {
    let Some(found) = ctx.own(id).await? else {
        return ctx
            .refused(StatusCode::NOT_FOUND, Msg::LinkedNotFound)
            .await;
    };
    let state = ctx.state;
    let user = &ctx.current.user;
    let agent = user_agent(ctx.headers);
    let change = link_change(
        state,
        user,
        &found.provider,
        found.email.as_deref(),
        false,
        &LinkContext {
            ip: origin.ip,
            user_agent: &agent,
            device: &ctx.current.session.device_id,
            lang: ctx.lang,
        },
    )?;
    let now = state.clock.now();
    let audit = origin.event(
        now,
        user.id,
        "user.unlink",
        serde_json::json!({ "provider": found.provider }),
    );
    let unlinking = state
        .db
        .links()
        .audited(audit)
        .unlink(now, user.id, found.id, change)
        .await?;
    match unlinking {
        Unlinking::Unlinked => {
            tracing::info!(user = %user.id.0, provider = %found.provider, "federated link removed");
            Ok(Outcome::Unlinked.back(Some(&found.provider)))
        }
        Unlinking::NotFound => {
            ctx.refused(StatusCode::NOT_FOUND, Msg::LinkedNotFound)
                .await
        }
        Unlinking::LastWayIn => {
            tracing::info!(user = %user.id.0, "refused to remove the account's last way in");
            ctx.refused(StatusCode::CONFLICT, Msg::LinkedLastWayIn)
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_come_only_from_known_words() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::from_param(outcome.param()), Some(outcome));
        }
        assert_eq!(Outcome::from_param(""), None);
        assert_eq!(Outcome::from_param("LINKED"), None);
        assert_eq!(Outcome::from_param("<script>"), None);
    }

    #[test]
    fn a_notice_that_names_a_provider_needs_one() {
        assert_eq!(
            Outcome::Linked.text(Some("Google"), Lang::Ja).as_deref(),
            Some("Googleを連携しました。")
        );
        assert_eq!(Outcome::Linked.text(None, Lang::Ja), None);
        assert_eq!(
            Outcome::Already.text(None, Lang::Ja).as_deref(),
            Some("すでに連携されています。")
        );
        assert!(Outcome::Cancelled.is_error() && !Outcome::Unlinked.is_error());
    }

    #[test]
    fn only_what_could_be_a_provider_id_is_named() {
        assert!(plausible_id("google"));
        assert!(plausible_id("my-op_2"));
        assert!(!plausible_id(""));
        assert!(!plausible_id("Google"));
        assert!(!plausible_id("お知らせ"));
        assert!(!plausible_id("a b"));
        assert!(!plausible_id(&"a".repeat(33)));
    }

    #[test]
    fn a_service_is_named_by_its_button_text_without_the_sign_in_wording() {
        assert_eq!(name_of_label("Google でログイン"), "Google");
        assert_eq!(
            name_of_label("Yahoo! JAPAN IDでログイン"),
            "Yahoo! JAPAN ID"
        );
        assert_eq!(name_of_label("Appleでサインイン"), "Apple");
        assert_eq!(name_of_label("Facebookでログイン"), "Facebook");
        assert_eq!(name_of_label("Sign in with Google"), "Google");
        assert_eq!(name_of_label("Log in with Facebook"), "Facebook");
        assert_eq!(name_of_label("127.0.0.1 でログイン"), "127.0.0.1");
        // A label written another way is the name as it is.
        assert_eq!(name_of_label("社内アカウント"), "社内アカウント");
        assert_eq!(name_of_label("でログイン"), "でログイン");
    }

    #[test]
    fn a_provider_no_longer_configured_is_named_by_its_id() {
        let none = Providers::none();
        assert_eq!(provider_name(&none, "google", Lang::Ja), "google");
        assert_eq!(
            method_step_text(&none, "google", LoginResult::Enrolled, Lang::Ja),
            "google を連携"
        );
        assert_eq!(
            method_step_text(&none, "google", LoginResult::Removed, Lang::En),
            "google unlinked"
        );
        assert_eq!(
            method_step_text(&none, "google", LoginResult::Success, Lang::Ja),
            "google"
        );
        assert_eq!(method("google"), "fed:google");
    }
}
