//! The member's sign-in history (`/account/history`): every attempt on the account,
//! newest first, a page at a time behind an opaque cursor; and 「心当たりがない」, which
//! signs out every device of the account and mails a password-reset link.

use super::HISTORY;
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::console::{CurrentSession, SignInLine};
use super::{linked, recovery};
use crate::authn::second_step::{
    METHOD_EMAIL_CODE, METHOD_PASSKEY, METHOD_RECOVERY_CODE, METHOD_TOTP, METHOD_TWO_STEP,
};
use crate::authn::sign_in::METHOD_PASSWORD;
use crate::domain::UserId;
use crate::federation::Providers;
use crate::oidc::authorize::see_other;
use crate::state::AppState;
use crate::store::{LoginEvent, LoginResult, StoreError};
use crate::web::client_ip::ClientAddr;
use crate::web::cookies::SESSION;
use crate::web::csrf::{self, CsrfForm};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, page_lang, render};

/// Attempts per page.
const PAGE: usize = 20;

/// Where a page starts: just older than the last attempt of the page before, written
/// `<unix_ms>.<uuid>`. The browser only hands it back; it is parsed strictly (canonical
/// digits, a canonical UUID, a time the store can hold), and it only ever narrows a query
/// of the signed-in account's own attempts, so a forged one shows nothing new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    /// The attempt's time, down to the millisecond.
    at: OffsetDateTime,
    id: Uuid,
}

impl Cursor {
    /// The longest cursor we write is 13 digits, a dot and 36 characters; anything much
    /// longer is not worth parsing.
    const MAX_LEN: usize = 64;

    fn after(e: &LoginEvent) -> Self {
        let ms = e.at.millisecond();
        Self {
            at: e.at.replace_millisecond(ms).unwrap_or(e.at),
            id: e.id,
        }
    }

    fn encode(&self) -> String {
        let ms = self.at.unix_timestamp_nanos() / 1_000_000;
        format!("{ms}.{}", self.id.hyphenated())
    }

    fn parse(s: &str) -> Option<Self> {
        if s.len() > Self::MAX_LEN {
            return None;
        }
        let (ms, id) = s.split_once('.')?;
        // Digits only (no sign, no spaces), without leading zeros: one spelling per cursor.
        if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) || ms.len() > 15 {
            return None;
        }
        let millis: i64 = ms.parse().ok()?;
        if millis.to_string() != ms {
            return None;
        }
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()?;
        let id = Uuid::try_parse(id)
            .ok()
            .filter(|u| u.hyphenated().to_string() == id)?;
        Some(Self { at, id })
    }
}

/// One page of the account's attempts (newest first) and the cursor of the next, if any.
async fn load(
    state: &AppState,
    user: UserId,
    before: Option<Cursor>,
) -> Result<(Vec<LoginEvent>, Option<Cursor>), StoreError> {
    let repo = state.db.login_events();
    // One more than a page tells whether there is another.
    let mut events = match before {
        None => repo.page(user, None, PAGE as u64 + 1).await?,
        Some(c) => {
            // The cursor keeps whole milliseconds while stored times can be finer, so
            // read from the end of its millisecond (no id sorts below the nil UUID: the
            // bound is "strictly before") and drop what the page before already showed:
            // the cursor's own attempt and anything above it in that millisecond. Exact
            // unless more than a page of attempts share one millisecond.
            let end = c.at.checked_add(Duration::milliseconds(1)).unwrap_or(c.at);
            let mut found = repo
                .page(user, Some((end, Uuid::nil())), 2 * PAGE as u64 + 1)
                .await?;
            let shown = found
                .iter()
                .take_while(|e| e.at >= c.at)
                .position(|e| e.id == c.id);
            if let Some(last) = shown {
                found.drain(..=last);
            }
            found
        }
    };
    let more = events.len() > PAGE;
    events.truncate(PAGE);
    let next = if more {
        events.last().map(Cursor::after)
    } else {
        None
    };
    Ok((events, next))
}

/// A line of the history page: the overview's line and how the member signed in.
struct HistoryLine {
    line: SignInLine,
    method: String,
}

/// How the member signed in (or what they changed), in words: each step of a method
/// written "password+totp" by name ("パスワード + 認証アプリ"); a provider's step
/// `fed:{id}` by the provider's words (「Google でログイン」, 「Google を連携」:
/// `linked::method_step_text`).
fn method_text(method: &str, result: LoginResult, providers: &Providers, lang: Lang) -> String {
    method
        .split('+')
        .map(|step| match step {
            METHOD_PASSWORD => Msg::MethodPassword.text(lang).to_owned(),
            METHOD_TOTP => Msg::MethodTotp.text(lang).to_owned(),
            METHOD_EMAIL_CODE => Msg::MethodEmailCode.text(lang).to_owned(),
            METHOD_RECOVERY_CODE => Msg::MethodRecoveryCode.text(lang).to_owned(),
            METHOD_TWO_STEP => Msg::MethodTwoStep.text(lang).to_owned(),
            METHOD_PASSKEY => Msg::MethodPasskey.text(lang).to_owned(),
            other => match other
                .strip_prefix(linked::METHOD_PREFIX)
                .filter(|id| !id.is_empty())
            {
                Some(id) => linked::method_step_text(providers, id, result, lang),
                // A method a later version records: its stored name rather than nothing.
                None => other.to_owned(),
            },
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

#[derive(Template)]
#[template(path = "account_history.html")]
struct HistoryPage<'a> {
    lang: Lang,
    csrf: &'a str,
    kept: String,
    lines: Vec<HistoryLine>,
    /// Whether this is the first (newest) page.
    newest: bool,
    /// The cursor of the next (older) page.
    older: Option<String>,
}

impl HistoryPage<'_> {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    before: Option<String>,
}

/// `/account/history`: a page of sign-in attempts.
pub async fn list(
    State(state): State<AppState>,
    current: CurrentSession,
    headers: HeaderMap,
    request_id: RequestId,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    let user = &current.user;
    let lang = page_lang(None, Some(&user.locale), &headers);
    let bad_request = || error_page(StatusCode::BAD_REQUEST, lang, Msg::BadRequest, None);
    let Ok(Query(query)) = query else {
        return bad_request();
    };
    let before = match query.before.as_deref().map(Cursor::parse) {
        None => None,
        Some(Some(cursor)) => Some(cursor),
        Some(None) => return bad_request(),
    };
    let (events, next) = match load(&state, user.id, before).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "console: history failed");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                Msg::ServerError,
                request_id.0,
            );
        }
    };
    let (csrf, set_cookie) = csrf::token(state.cookies, &headers);
    let page = HistoryPage {
        lang,
        csrf: &csrf,
        kept: Msg::HistoryKept
            .text(lang)
            .replace("{days}", &state.config.account.history_days.to_string()),
        lines: events
            .iter()
            .map(|e| HistoryLine {
                line: SignInLine::of(&state, e, lang),
                method: method_text(&e.method, e.result, &state.federation, lang),
            })
            .collect(),
        newest: before.is_none(),
        older: next.map(|c| c.encode()),
    };
    render(StatusCode::OK, &page, set_cookie.as_slice())
}

#[derive(Template)]
#[template(path = "account_not_me.html")]
struct NotMePage {
    lang: Lang,
    /// Whether the reset mail was queued (or held back by the mail caps).
    mailed: bool,
}

impl NotMePage {
    fn t(&self, m: Msg) -> &'static str {
        m.text(self.lang)
    }
}

/// The 「心当たりがない」 form carries only its CSRF token.
#[derive(Deserialize)]
pub struct NotMeForm {}

/// 「心当たりがない」: every session of the account ends (with the grants hanging from
/// them), a reset link goes to the account's address, and this browser forgets its
/// session. Whoever else is signed in is out at once; the reset then locks them out.
pub async fn post_not_me(
    State(state): State<AppState>,
    current: CurrentSession,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(NotMeForm {}): CsrfForm<NotMeForm>,
) -> Response {
    let user = &current.user;
    let lang = page_lang(None, Some(&user.locale), &headers);
    let ended = match state
        .db
        .sessions()
        .end_all(user.id, state.clock.now())
        .await
    {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, user = %user.id.0, "not me: cannot end the sessions");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                Msg::ServerError,
                request_id.0,
            );
        }
    };
    // The sessions are gone either way; a mail that cannot be queued is said on the page,
    // which links to the forgot form to try again.
    let mailed = match recovery::request_reset(&state, ip, &user.email, "", lang).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, user = %user.id.0, "not me: cannot queue the reset mail");
            false
        }
    };
    tracing::info!(
        user = %user.id.0,
        ip = %ip,
        sessions = ended,
        mailed,
        "not me: every session ended, password reset requested"
    );
    let cookies = [state.cookies.clear(SESSION)];
    render(StatusCode::OK, &NotMePage { lang, mailed }, &cookies)
}

/// A GET of the form's address (a sign-in that came back to it): the history page, where
/// the button is.
pub async fn to_history() -> Response {
    see_other(HISTORY, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_what_it_wrote_and_nothing_else() {
        let id = Uuid::new_v4();
        let at = time::macros::datetime!(2026-12-04 06:30:00.123456 UTC);
        let cursor = Cursor::after(&LoginEvent {
            id,
            user: UserId(Uuid::new_v4()),
            at,
            ip: String::new(),
            user_agent: String::new(),
            device_hash: String::new(),
            method: METHOD_PASSWORD.to_owned(),
            result: crate::store::LoginResult::Success,
            new_device: false,
        });
        let written = cursor.encode();
        assert_eq!(
            written,
            format!("{}.{id}", at.unix_timestamp() * 1000 + 123)
        );
        assert_eq!(Cursor::parse(&written), Some(cursor));
        assert_eq!(
            cursor.at,
            time::macros::datetime!(2026-12-04 06:30:00.123 UTC)
        );

        let hyphenated = id.hyphenated().to_string();
        for bad in [
            String::new(),
            "abc".to_owned(),
            format!("abc.{hyphenated}"),
            format!("-1.{hyphenated}"),
            format!("+1.{hyphenated}"),
            format!(" 1.{hyphenated}"),
            format!("01.{hyphenated}"),
            format!("1.5.{hyphenated}"),
            format!("99999999999999999999999.{hyphenated}"),
            // Past what a date can hold.
            format!("999999999999999.{hyphenated}"),
            format!("1.{}", id.simple()),
            format!("1.{}", hyphenated.to_uppercase()),
            format!("1.{{{hyphenated}}}"),
            "1.".to_owned(),
            format!("1.{hyphenated}x"),
            format!("1{}", "0".repeat(70)),
        ] {
            assert_eq!(Cursor::parse(&bad), None, "{bad:?}");
        }
        assert!(Cursor::parse(&format!("0.{hyphenated}")).is_some());
    }

    #[test]
    fn methods_are_named_step_by_step_and_unknown_ones_by_their_stored_name() {
        let none = Providers::none();
        let text = |m: &str, lang| method_text(m, LoginResult::Success, &none, lang);
        assert_eq!(text("password", Lang::Ja), "パスワード");
        assert_eq!(text("password+totp", Lang::Ja), "パスワード + 認証アプリ");
        assert_eq!(
            text("password+recovery_code", Lang::En),
            "Password + Recovery code"
        );
        assert_eq!(
            text("password+email_code", Lang::Ja),
            "パスワード + メールの確認コード"
        );
        assert_eq!(text("two_step", Lang::Ja), "二段階認証");
        assert_eq!(text("passkey", Lang::Ja), "パスキー");
        assert_eq!(text("password+passkey", Lang::En), "Password + Passkey");
        assert_eq!(text("webauthn", Lang::Ja), "webauthn");
    }

    #[test]
    fn a_providers_steps_are_named_by_the_provider_and_what_was_done() {
        // No provider configured: its id stands for its name (an old history line).
        let none = Providers::none();
        assert_eq!(
            method_text("fed:google+totp", LoginResult::Success, &none, Lang::Ja),
            "google + 認証アプリ"
        );
        assert_eq!(
            method_text("fed:google", LoginResult::Enrolled, &none, Lang::Ja),
            "google を連携"
        );
        assert_eq!(
            method_text("fed:google", LoginResult::Removed, &none, Lang::Ja),
            "google の連携を解除"
        );
        assert_eq!(
            method_text("fed:", LoginResult::Success, &none, Lang::Ja),
            "fed:"
        );
    }
}
