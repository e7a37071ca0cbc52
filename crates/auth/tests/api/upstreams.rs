//! The presets' quirks against local stand-ins of the providers (Apple, Yahoo! JAPAN,
//! Facebook, and a generic OpenID provider that misbehaves on request), since the real
//! providers cannot be reached from CI. Each stand-in reproduces its provider's documented
//! wire behaviour; the downstream is a `TestApp` whose provider endpoints point at it.
//!
//! The browser starts where a member does: `/account`, then the sign-in page, whose
//! provider button posts to `/federation/{id}/start`; it follows the 303 to the
//! stand-in, comes back to the callback and ends signed in or on a page that says what
//! went wrong and offers the other ways in (with no session, no account, no link).

mod apple;
mod facebook;
mod oidc;
mod stand_in;
mod yahoo;

use std::time::Duration;

use tobira_auth::config::{ProviderConfig, ProviderKind, Secret};

use crate::console::sent_to_sign_in;
use crate::helpers::{Browser, Page, TestApp};

/// What the downstream says for each `UpstreamError` (the sign-in page again).
pub const CANCELLED: &str = "キャンセルしました";
pub const UNAVAILABLE: &str = "接続できませんでした";
pub const REFUSED: &str = "確認できませんでした";
pub const MISCONFIGURED: &str = "現在ご利用いただけません";

/// A provider entry with nothing but its id, kind and client id set.
pub fn provider(id: &str, kind: ProviderKind, client_id: &str) -> ProviderConfig {
    ProviderConfig {
        id: id.to_owned(),
        kind,
        client_id: client_id.to_owned(),
        client_secret: Secret::new(""),
        client_secret_file: String::new(),
        team_id: String::new(),
        key_id: String::new(),
        private_key_file: String::new(),
        issuer: String::new(),
        scopes: Vec::new(),
        label: String::new(),
        label_en: String::new(),
        authorization_endpoint: String::new(),
        token_endpoint: String::new(),
        userinfo_endpoint: String::new(),
        jwks_uri: String::new(),
        revocation_endpoint: String::new(),
        graph_endpoint: String::new(),
    }
}

/// The callback URL the downstream registers at provider `id`.
pub fn callback(app: &TestApp, id: &str) -> String {
    format!("{}/federation/{id}/callback", app.issuer())
}

/// The fields of provider `id`'s button form on the sign-in page.
pub fn button(page: &Page, id: &str) -> Vec<(String, String)> {
    let action = format!(r#"action="/federation/{id}/start""#);
    let start = page
        .body
        .find(&action)
        .unwrap_or_else(|| panic!("no button for {id} on the page: {}", page.body));
    let form = &page.body[start..];
    let form = &form[..form.find("</form>").expect("the form ends")];
    assert!(
        form.contains(&format!(r#"id="federation-{id}""#)),
        "the button has its id: {form}"
    );
    hidden_fields(form)
}

/// `name`/`value` pairs of the `<input>`s in `html` (values unescaped).
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            Some((attr(tag, "name")?, attr(tag, "value").unwrap_or_default()))
        })
        .collect()
}

/// An attribute's value in a tag (double-quoted, unescaped).
pub fn attr(tag: &str, name: &str) -> Option<String> {
    let marker = format!(r#" {name}=""#);
    let start = tag.find(&marker)? + marker.len();
    let end = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + end]))
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The console's sign-in page (the browser opened `/account` without a session).
pub async fn sign_in_page(browser: &Browser) -> Page {
    sent_to_sign_in(browser, "/account").await
}

/// The answer to pressing the button of provider `id` on `page`, not followed.
pub async fn pressed(browser: &Browser, page: &Page, id: &str) -> Page {
    let fields = button(page, id);
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    browser
        .post_form(&format!("/federation/{id}/start"), &form)
        .await
}

/// Presses provider `id`'s button on `page`: the downstream answers 303 to the
/// provider. Returns where to.
pub async fn press(browser: &Browser, page: &Page, id: &str) -> String {
    let sent = pressed(browser, page, id).await;
    assert_eq!(
        sent.status, 303,
        "the button sends to the provider: {}",
        sent.body
    );
    sent.location.expect("a Location")
}

/// The browser at the provider (a plain request: the downstream's cookies are not the
/// provider's). Redirects are not followed.
pub async fn at_provider(url: &str) -> reqwest::Response {
    plain().get(url).send().await.expect("the provider answers")
}

/// A client with no cookies that follows no redirects.
pub fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
}

/// The provider's 303 back to the downstream: where to.
pub fn redirect_back(answer: &reqwest::Response) -> String {
    assert_eq!(answer.status(), 303, "the provider sends the browser back");
    answer
        .headers()
        .get("location")
        .expect("a Location")
        .to_str()
        .expect("ASCII")
        .to_owned()
}

/// The browser comes back to the callback and follows the downstream's redirects.
/// Bounded: a downstream still waiting for a provider after this long has no timeout.
pub async fn back(browser: &Browser, callback: &str) -> Page {
    let came_back = async { browser.follow(browser.get(callback).await).await };
    tokio::time::timeout(Duration::from_secs(20), came_back)
        .await
        .expect("the downstream answers the callback (does it time out its provider?)")
}

/// From the sign-in page to the provider and back, for providers that redirect back
/// with a query (everyone but Apple).
pub async fn round_trip(browser: &Browser, id: &str) -> Page {
    let page = sign_in_page(browser).await;
    let to = press(browser, &page, id).await;
    let answer = at_provider(&to).await;
    back(browser, &redirect_back(&answer)).await
}

/// The browser holds a session: the console opens.
pub async fn signed_in(browser: &Browser) -> Page {
    let overview = browser.get("/account").await;
    assert_eq!(
        overview.status, 200,
        "signed in to the console: {:?} {}",
        overview.location, overview.body
    );
    overview
}

/// The browser holds no session: the console sends it to the sign-in page.
pub async fn not_signed_in(browser: &Browser) {
    assert!(
        browser.cookie(tobira_auth::web::cookies::SESSION).is_none(),
        "no session cookie"
    );
    let overview = browser.get("/account").await;
    assert_eq!(overview.status, 303, "{}", overview.body);
    assert!(
        overview
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with("/login?tx=")),
        "{:?}",
        overview.location
    );
}

/// The page says what went wrong (`says`) and offers the other ways in: the password
/// form and the provider's button again.
pub fn offers_other_ways(page: &Page, id: &str, says: &str) {
    assert_ne!(page.status, 303, "{:?}", page.location);
    assert!(
        page.status < 500 || page.status == 502 || page.status == 503,
        "a page, not a crash: {} {}",
        page.status,
        page.body
    );
    assert!(
        page.body.contains(says),
        "the page says {says:?}: {}",
        page.body
    );
    assert!(
        page.body.contains(r#"action="/login""#),
        "the password form is offered: {}",
        page.body
    );
    assert!(
        page.body.contains(&format!(r#"id="federation-{id}""#)),
        "the provider's button is offered again: {}",
        page.body
    );
}

/// The page asks the member to sign in to the account that already uses the address
/// first: nothing is linked silently.
pub fn asks_to_sign_in_first(page: &Page) {
    assert!(
        page.body
            .contains("このメールアドレスで登録済みのアカウントがあります"),
        "{}",
        page.body
    );
}

/// The link to (`issuer`, `subject`), if one was made.
pub async fn link_to(
    app: &TestApp,
    issuer: &str,
    subject: &str,
) -> Option<tobira_auth::store::Link> {
    app.state.db.links().find(issuer, subject).await.unwrap()
}

/// The account with `email` has no link to (`issuer`, `subject`) and does not exist.
pub async fn nothing_made(app: &TestApp, email: &str, issuer: &str, subject: &str) {
    assert!(app.user(email).await.is_none(), "no account was made");
    let link = link_to(app, issuer, subject).await;
    assert!(link.is_none(), "no link was made: {link:?}");
}
