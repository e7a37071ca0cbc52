//! The account console: signing in to it with no client involved (a console sign-in,
//! bound to the browser, that returns to the page asked for), and the overview.

use crate::helpers::{Browser, Page, TestApp};
use crate::oidc::{EMAIL, PASSWORD};

const WRONG: &str = "not-the-password-1";

/// Opens `path` without a session: the console parks a sign-in and sends the browser to
/// the sign-in page; returns that page.
pub async fn sent_to_sign_in(browser: &Browser, path: &str) -> Page {
    let first = browser.get(path).await;
    let login = browser.get(to_sign_in(&first)).await;
    assert_eq!(login.status, 200, "{}", login.body);
    login
}

/// Checks that the answer sends the browser to a parked sign-in; where to.
pub fn to_sign_in(answer: &Page) -> &str {
    assert_eq!(answer.status, 303, "{}", answer.body);
    let location = answer.location.as_deref().unwrap();
    assert!(location.starts_with("/login?tx="), "{location}");
    location
}

/// Follows a stale answer (a page or form that wants a recent sign-in) to the sign-in,
/// which says why and has the member's address filled in, and signs in again; where
/// the sign-in sends the browser next.
pub async fn signs_in_again(browser: &Browser, stale: &Page) -> Option<String> {
    let login = browser.get(to_sign_in(stale)).await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(
        login.body.contains(r#"id="reauth-notice""#),
        "{}",
        login.body
    );
    assert!(
        login.body.contains(&format!(r#"value="{EMAIL}""#)),
        "the address is filled in: {}",
        login.body
    );
    let back = browser.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(back.status, 303, "{}", back.body);
    back.location
}

#[tokio::test]
async fn a_member_signs_in_to_the_console_and_comes_back_to_the_overview() {
    let app = TestApp::spawn().await;
    app.add_user(EMAIL, PASSWORD).await;
    let browser = app.browser();
    let login = sent_to_sign_in(&browser, "/account").await;
    assert!(login.body.contains("Tobira アカウント"), "{}", login.body);
    // A first sign-in is no re-authentication: no notice says so.
    assert!(
        !login.body.contains(r#"id="reauth-notice""#),
        "{}",
        login.body
    );
    let wrong = browser.post_login(&login, EMAIL, WRONG).await;
    assert_eq!(wrong.status, 401);
    assert!(
        !wrong.body.contains(r#"id="reauth-notice""#),
        "{}",
        wrong.body
    );
    // A field left empty is named, and the cursor waits in it.
    let no_email = browser.post_login(&login, " ", PASSWORD).await;
    assert_eq!(no_email.status, 400, "{}", no_email.body);
    assert!(
        no_email.body.contains("メールアドレスを入力してください"),
        "{}",
        no_email.body
    );
    assert!(
        no_email
            .body
            .contains(r#"spellcheck="false" required autofocus"#)
    );
    assert!(
        !no_email
            .body
            .contains(r#"autocomplete="current-password" required autofocus"#)
    );
    let no_password = browser.post_login(&login, EMAIL, "").await;
    assert_eq!(no_password.status, 400, "{}", no_password.body);
    assert!(
        no_password
            .body
            .contains(r#"autocomplete="current-password" required autofocus"#)
    );
    assert!(
        !no_password
            .body
            .contains(r#"spellcheck="false" required autofocus"#)
    );
    let signed_in = browser.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.location.as_deref(), Some("/account"));

    let overview = browser.get("/account").await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert!(overview.body.contains("山田 花子"));
    assert!(overview.body.contains(EMAIL));
    assert!(
        overview
            .body
            .contains(r#"<span data-testid="devices">1</span>"#),
        "{}",
        overview.body
    );
    // The history is written after each answer; the overview shows it once it is there.
    let mut body = overview.body;
    for _ in 0..50 {
        if body.contains("パスワード誤り") && body.contains("成功") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        body = browser.get("/account").await.body;
    }
    assert!(
        body.contains("パスワード誤り"),
        "the failed attempt is listed: {body}"
    );
    assert!(body.contains("成功"), "{body}");
    assert!(body.contains("127.0.0.1"));
    // The tx is spent: posting to it again finds nothing.
    assert_eq!(
        browser.post_login(&login, EMAIL, PASSWORD).await.status,
        400
    );
}

#[tokio::test]
async fn a_console_sign_in_belongs_to_its_browser_and_to_the_console_alone() {
    let app = TestApp::spawn().await;
    app.add_user(EMAIL, PASSWORD).await;
    let victim = app.browser();
    let first = victim.get("/account?x=1").await;
    let location = first.location.unwrap();
    let tx = location.trim_start_matches("/login?tx=").to_owned();
    // Another browser cannot use the id.
    let attacker = app.browser();
    assert_eq!(attacker.get(&location).await.status, 403);
    // It is no authorization request: the protocol endpoints do not know it.
    let cont = victim.get(&format!("/authorize/continue?tx={tx}")).await;
    assert_eq!(cont.status, 400, "{}", cont.body);
    let consent = victim.get(&format!("/consent?tx={tx}")).await;
    assert_eq!(consent.status, 400, "{}", consent.body);
    // The return path is the one asked for, on this origin.
    let login = victim.get(&location).await;
    let back = victim.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(back.location.as_deref(), Some("/account?x=1"));
}

#[tokio::test]
async fn the_console_never_returns_anywhere_but_itself() {
    let app = TestApp::spawn().await;
    app.add_user(EMAIL, PASSWORD).await;
    for path in [
        "/account//evil.example",
        "/account/%2F%2Fevil.example",
        "/account\\evil",
    ] {
        let browser = app.browser();
        let first = browser.get(path).await;
        if first.status != 303 {
            // Not routed to the console at all (a 404 is as good as a refusal).
            continue;
        }
        let login = browser.get(&first.location.unwrap()).await;
        let back = browser.post_login(&login, EMAIL, PASSWORD).await;
        let to = back.location.unwrap();
        assert!(
            to == "/account" || (to.starts_with("/account/") && !to.contains("//")),
            "{path} → {to}"
        );
    }
}

#[tokio::test]
async fn an_ended_session_or_a_frozen_account_is_asked_to_sign_in_again() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let browser = app.browser();
    let login = sent_to_sign_in(&browser, "/account").await;
    browser.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(browser.get("/account").await.status, 200);
    app.state
        .db
        .users()
        .set_status(
            user.id,
            tobira_auth::domain::UserStatus::Frozen,
            app.clock(),
        )
        .await
        .unwrap();
    let page = browser.get("/account").await;
    assert_eq!(page.status, 303);
    assert!(page.location.unwrap().starts_with("/login?tx="));
    // Without a cookie at all, too.
    assert_eq!(app.browser().get("/account").await.status, 303);
}

/// A browser signed in to the console of the member `EMAIL`.
async fn signed_in_console(app: &TestApp) -> Browser {
    let browser = app.browser();
    let login = sent_to_sign_in(&browser, "/account").await;
    assert_eq!(
        browser.post_login(&login, EMAIL, PASSWORD).await.status,
        303
    );
    browser
}

#[tokio::test]
async fn a_member_changes_the_display_name_and_the_language_of_the_pages() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let browser = signed_in_console(&app).await;
    let form = browser.get("/account/profile").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains(r#"value="山田 花子""#), "{}", form.body);
    let csrf = form.field("csrf").unwrap();
    let saved = browser
        .post_form(
            "/account/profile",
            &[
                ("csrf", &csrf),
                ("display_name", "  Hanako Y.  "),
                ("locale", "en"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let page = browser.get(saved.location.as_deref().unwrap()).await;
    assert!(
        page.body.contains("Saved."),
        "now in English: {}",
        page.body
    );
    let stored = app.reload(&user).await;
    assert_eq!(stored.display_name, "Hanako Y.", "trimmed");
    assert_eq!(stored.locale, "en");
    assert!(browser.get("/account").await.body.contains("Hanako Y."));
}

#[tokio::test]
async fn bad_profile_input_and_foreign_posts_change_nothing() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let browser = signed_in_console(&app).await;
    let csrf = browser.get("/account/profile").await.field("csrf").unwrap();
    let long = "あ".repeat(51);
    for (name, locale) in [
        ("", "ja"),
        ("   ", "ja"),
        (long.as_str(), "ja"),
        ("a\u{0}b", "ja"),
        ("ok", "fr"),
        ("ok", "EN"),
        ("ok", ""),
    ] {
        let page = browser
            .post_form(
                "/account/profile",
                &[("csrf", &csrf), ("display_name", name), ("locale", locale)],
            )
            .await;
        assert_eq!(page.status, 400, "{name:?} {locale:?}");
        assert!(!page.body.contains("<script>"));
    }
    // Script in the name is shown as text.
    let page = browser
        .post_form(
            "/account/profile",
            &[
                ("csrf", &csrf),
                ("display_name", "<script>x</script>"),
                ("locale", "xx"),
            ],
        )
        .await;
    assert!(page.body.contains("&#60;script&#62;"), "{}", page.body);
    // Another site, or no token: refused.
    let cross = browser
        .post_form_with(
            "/account/profile",
            &[("csrf", &csrf), ("display_name", "evil"), ("locale", "en")],
            &[
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(cross.status, 403);
    let tokenless = browser
        .post_form(
            "/account/profile",
            &[("display_name", "evil"), ("locale", "en")],
        )
        .await;
    assert_eq!(tokenless.status, 403);
    // Without a session: sent to sign in, nothing saved.
    let stranger = app.browser();
    let form = stranger.get("/account/profile").await;
    assert_eq!(form.status, 303);
    let stored = app.reload(&user).await;
    assert_eq!(
        (stored.display_name.as_str(), stored.locale.as_str()),
        ("山田 花子", "ja")
    );
}
