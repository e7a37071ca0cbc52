//! `/account/sessions`: the browsers signed in to an account, signing one out, signing
//! out every other one; only the account's own live sessions can be named, only from
//! Tobira's own page, and activity is written at most once a minute.

use time::Duration;
use tobira_auth::admin::users::{AddUser, add_user};
use tobira_auth::domain::{BrowserSession, User};
use tobira_auth::store::NewGrant;
use tobira_auth::web::i18n::Lang;

use crate::helpers::{Browser, ClientOpts, Page, TestApp};
use crate::oidc::{EMAIL, PASSWORD};

const OTHER_EMAIL: &str = "taro@example.jp";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";
/// What a browser sends when our own page posts the form.
const SAME_SITE: &[(&str, &str)] = &[("sec-fetch-site", "same-origin")];
const CROSS_SITE: &[(&str, &str)] = &[
    ("origin", "https://evil.example"),
    ("sec-fetch-site", "cross-site"),
];

/// A member (`EMAIL`) with a console browser signed in just now.
pub async fn member(app: &TestApp) -> (User, Browser) {
    let user = app.add_user(EMAIL, PASSWORD).await;
    (user, signed_in(app, EMAIL, "tests").await)
}

/// A new browser that opens the console, is sent to sign in, signs in with `user_agent`
/// and comes back.
pub async fn signed_in(app: &TestApp, email: &str, user_agent: &str) -> Browser {
    let browser = app.browser();
    let first = browser.get("/account").await;
    assert_eq!(first.status, 303, "{}", first.body);
    let login = browser.get(&first.location.unwrap()).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let (csrf, tx) = (login.field("csrf").unwrap(), login.field("tx").unwrap());
    let posted = browser
        .post_form_with(
            "/login",
            &[
                ("csrf", &csrf),
                ("tx", &tx),
                ("email", email),
                ("password", PASSWORD),
            ],
            &[("user-agent", user_agent)],
        )
        .await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    assert_eq!(posted.location.as_deref(), Some("/account"));
    browser
}

/// The session behind a browser's cookie, if it is still live.
pub async fn session_of(app: &TestApp, browser: &Browser) -> Option<BrowserSession> {
    let secret = browser.cookie("tobira_session")?;
    app.state
        .db
        .sessions()
        .find_live(&secret, app.clock().now())
        .await
        .unwrap()
}

async fn live(app: &TestApp, user: &User) -> Vec<BrowserSession> {
    app.state
        .db
        .sessions()
        .list_live(user.id, app.clock().now(), app.state.sessions.idle)
        .await
        .unwrap()
}

async fn list(browser: &Browser) -> Page {
    let page = browser.get("/account/sessions").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page
}

/// The listed sessions, one piece of HTML each.
fn items(page: &Page) -> Vec<&str> {
    page.body
        .split(r#"<li data-testid="session">"#)
        .skip(1)
        .map(|item| item.split("</li>").next().unwrap())
        .collect()
}

fn sid_field(item: &str) -> Option<&str> {
    let marker = r#"name="sid" value=""#;
    let start = item.find(marker)? + marker.len();
    Some(&item[start..start + item[start..].find('"')?])
}

pub fn minute(app: &TestApp, t: time::OffsetDateTime) -> String {
    let t = t.to_offset(app.state.config.throttle.display_offset());
    format!(
        "{}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// Posts a form of the sessions page as that page's own form would.
async fn post(browser: &Browser, page: &Page, path: &str, sid: Option<&str>) -> Page {
    let csrf = page.field("csrf").expect("a CSRF field");
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend(sid.map(|s| ("sid", s)));
    browser.post_form(path, &form).await
}

pub async fn second_member(app: &TestApp) -> User {
    add_user(
        &app.state.db,
        &app.state.hasher,
        &app.state.clock,
        &tobira_auth::admin::audit::Context::cli(),
        AddUser {
            email: OTHER_EMAIL,
            password: Some(PASSWORD),
            email_verified: true,
            display_name: "鈴木 太郎".to_owned(),
            locale: Lang::En,
        },
    )
    .await
    .unwrap()
}

/// A session not kept ("keep me signed in" unticked) lasts its idle timeout to the
/// second: still live after exactly that long, gone a second later.
#[tokio::test]
async fn a_session_lives_its_idle_timeout_and_not_a_second_more() {
    let app = TestApp::spawn().await;
    let (_, browser) = member(&app).await;
    let idle = time::Duration::minutes(120);
    app.clock().advance(idle);
    assert_eq!(
        browser.get("/account").await.status,
        200,
        "idle for exactly the timeout"
    );
    // That visit was activity: idle again from there, one second too long.
    app.clock().advance(idle + time::Duration::seconds(1));
    let ended = browser.get("/account").await;
    assert_eq!(ended.status, 303, "{}", ended.body);
    assert!(session_of(&app, &browser).await.is_none());
}

#[tokio::test]
async fn every_signed_in_browser_is_listed_and_this_one_is_marked() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let phone = signed_in(&app, EMAIL, IPHONE).await;
    app.clock().advance(Duration::minutes(3));
    let pc = signed_in(&app, EMAIL, WINDOWS).await;
    let (phone_session, pc_session) = (
        session_of(&app, &phone).await.unwrap(),
        session_of(&app, &pc).await.unwrap(),
    );

    let overview = phone.get("/account").await;
    assert!(
        overview
            .body
            .contains(r#"<a href="/account/sessions">ログイン中の端末</a>"#),
        "{}",
        overview.body
    );
    let page = list(&phone).await;
    assert!(page.body.contains("ログイン中の端末"));
    let listed = items(&page);
    assert_eq!(listed.len(), 2, "{}", page.body);
    // The most recently active first: the computer signed in later.
    assert!(
        listed[0].contains("Chrome（Windows 10・パソコン）"),
        "{}",
        listed[0]
    );
    assert!(
        listed[1].contains("Safari（iPhone 17.1・スマートフォン）"),
        "{}",
        listed[1]
    );
    // "This device" is the phone, which has no sign-out button of its own; the other
    // is named by its public sid.
    assert!(listed[1].contains(r#"data-testid="this-device">この端末<"#));
    assert!(!listed[0].contains("this-device"));
    assert_eq!(sid_field(listed[1]), None);
    assert_eq!(sid_field(listed[0]), Some(pc_session.sid.as_str()));
    assert!(listed[0].contains(">ログアウト</button>"));
    for item in &listed {
        assert!(item.contains("127.0.0.1"), "{item}");
    }
    assert!(listed[0].contains(&minute(&app, pc_session.created_at)));
    assert!(listed[1].contains(&minute(&app, phone_session.created_at)));
    assert!(page.body.contains("他のすべての端末からログアウト"));
    // No internal id and no cookie secret on the page.
    assert!(!page.body.contains(&pc_session.id.to_string()));
    assert!(!page.body.contains(&pc.cookie("tobira_session").unwrap()));

    // From the computer, the computer is this device.
    let pc_page = list(&pc).await;
    let items_pc = items(&pc_page);
    assert!(items_pc[0].contains("this-device"));
    assert_eq!(sid_field(items_pc[1]), Some(phone_session.sid.as_str()));
    assert_eq!(live(&app, &user).await.len(), 2);
}

#[tokio::test]
async fn the_list_is_in_english_for_an_english_speaking_member() {
    let app = TestApp::spawn().await;
    second_member(&app).await;
    let phone = signed_in(&app, OTHER_EMAIL, IPHONE).await;
    signed_in(&app, OTHER_EMAIL, WINDOWS).await;
    let page = list(&phone).await;
    assert!(page.body.contains(r#"<html lang="en">"#), "{}", page.body);
    assert!(page.body.contains("Safari on iPhone 17.1 (phone)"));
    assert!(page.body.contains("Chrome on Windows 10 (computer)"));
    assert!(page.body.contains(">This device<"));
    assert!(page.body.contains("Sign out all other devices"));
    assert!(page.body.contains(r#"<meta name="viewport""#));
}

#[tokio::test]
async fn signing_out_another_browser_ends_it_and_its_grants_and_keeps_this_one() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let phone = signed_in(&app, EMAIL, IPHONE).await;
    let pc = signed_in(&app, EMAIL, WINDOWS).await;
    let pc_session = session_of(&app, &pc).await.unwrap();
    let (client_id, _) = app.add_client(ClientOpts::default()).await;
    let grant = app
        .state
        .db
        .grants()
        .create(
            app.clock(),
            NewGrant {
                user_id: user.id,
                client_id,
                session_id: Some(pc_session.id),
                scope: "openid".to_owned(),
                offline: false,
                auth_time: pc_session.auth_time,
                amr: vec!["pwd".to_owned()],
                acr: "0".to_owned(),
            },
        )
        .await
        .unwrap();

    let page = list(&phone).await;
    let sid = page.field("sid").unwrap();
    assert_eq!(sid, pc_session.sid);
    let done = post(&phone, &page, "/account/sessions/end", Some(&sid)).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some("/account/sessions?done=one"));
    assert!(
        done.set_cookies
            .iter()
            .all(|c| !c.contains("tobira_session")),
        "this browser keeps its session: {:?}",
        done.set_cookies
    );

    let after = phone.get(done.location.as_deref().unwrap()).await;
    assert_eq!(after.status, 200);
    assert!(
        after.body.contains("端末をログアウトしました。"),
        "{}",
        after.body
    );
    assert_eq!(items(&after).len(), 1);
    assert!(!after.body.contains("他のすべての端末からログアウト"));
    // The other browser is asked to sign in again; this one is not.
    let elsewhere = pc.get("/account").await;
    assert_eq!(elsewhere.status, 303);
    assert!(elsewhere.location.unwrap().starts_with("/login?tx="));
    assert_eq!(phone.get("/account").await.status, 200);
    let ended = app.state.db.sessions().find(pc_session.id).await.unwrap();
    assert!(ended.unwrap().ended_at.is_some());
    let grant = app.state.db.grants().find(grant.id).await.unwrap().unwrap();
    assert!(
        grant.revoked_at.is_some(),
        "the session's grant ends with it"
    );
}

#[tokio::test]
async fn signing_out_every_other_browser_leaves_only_this_one() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let phone = signed_in(&app, EMAIL, IPHONE).await;
    let pc = signed_in(&app, EMAIL, WINDOWS).await;
    let mac = signed_in(&app, EMAIL, MAC).await;
    let page = list(&phone).await;
    assert_eq!(items(&page).len(), 3);

    let done = post(&phone, &page, "/account/sessions/end-others", None).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some("/account/sessions?done=others")
    );
    let left = live(&app, &user).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, session_of(&app, &phone).await.unwrap().id);
    for other in [&pc, &mac] {
        assert_eq!(other.get("/account").await.status, 303);
    }
    let after = phone.get(done.location.as_deref().unwrap()).await;
    assert_eq!(after.status, 200);
    assert!(
        after
            .body
            .contains("他のすべての端末からログアウトしました。")
    );
    let items = items(&after);
    assert_eq!(items.len(), 1);
    assert!(items[0].contains("this-device"));
    // Nothing else to sign out: the button is gone.
    assert!(!after.body.contains("/account/sessions/end-others"));
}

#[tokio::test]
async fn only_a_live_session_of_this_account_can_be_signed_out() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let other = second_member(&app).await;
    let phone = signed_in(&app, EMAIL, IPHONE).await;
    let pc = signed_in(&app, EMAIL, WINDOWS).await;
    let stranger = signed_in(&app, OTHER_EMAIL, MAC).await;
    let stranger_sid = session_of(&app, &stranger).await.unwrap().sid;
    let page = list(&phone).await;
    let pc_sid = page.field("sid").unwrap();
    assert_eq!(pc_sid, session_of(&app, &pc).await.unwrap().sid);

    for (what, sid) in [
        ("another member's session", stranger_sid.as_str()),
        ("a made-up sid", "Zm9yZ2VkLXNlc3Npb24taWQ"),
        ("an empty sid", ""),
    ] {
        let refused = post(&phone, &page, "/account/sessions/end", Some(sid)).await;
        assert_eq!(refused.status, 404, "{what}: {}", refused.body);
        assert!(
            refused.body.contains("すでにログアウトしています"),
            "{what}: {}",
            refused.body
        );
        assert_eq!(live(&app, &user).await.len(), 2, "{what}");
        assert_eq!(live(&app, &other).await.len(), 1, "{what}");
    }
    assert_eq!(stranger.get("/account").await.status, 200);

    // An ended session cannot be named again (a replayed form).
    let ended = post(&phone, &page, "/account/sessions/end", Some(&pc_sid)).await;
    assert_eq!(ended.status, 303);
    let replayed = post(&phone, &page, "/account/sessions/end", Some(&pc_sid)).await;
    assert_eq!(replayed.status, 404, "{}", replayed.body);
    assert_eq!(live(&app, &user).await.len(), 1);
    assert_eq!(phone.get("/account").await.status, 200);
}

#[tokio::test]
async fn a_cross_site_or_tokenless_form_changes_nothing() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let phone = signed_in(&app, EMAIL, IPHONE).await;
    let pc = signed_in(&app, EMAIL, WINDOWS).await;
    let page = list(&phone).await;
    let csrf = page.field("csrf").unwrap();
    let pc_sid = page.field("sid").unwrap();
    assert_eq!(pc_sid, session_of(&app, &pc).await.unwrap().sid);
    let forged = "f".repeat(43);

    let attempts = [
        (
            "/account/sessions/end",
            vec![("csrf", csrf.as_str()), ("sid", pc_sid.as_str())],
            CROSS_SITE,
        ),
        (
            "/account/sessions/end-others",
            vec![("csrf", csrf.as_str())],
            CROSS_SITE,
        ),
        (
            "/account/sessions/end",
            vec![("sid", pc_sid.as_str())],
            SAME_SITE,
        ),
        ("/account/sessions/end-others", vec![], SAME_SITE),
        (
            "/account/sessions/end",
            vec![("csrf", forged.as_str()), ("sid", pc_sid.as_str())],
            SAME_SITE,
        ),
        (
            "/account/sessions/end-others",
            vec![("csrf", forged.as_str())],
            SAME_SITE,
        ),
    ];
    for (path, form, headers) in attempts {
        let refused = phone.post_form_with(path, &form, headers).await;
        assert_eq!(refused.status, 403, "{path} {form:?}: {}", refused.body);
        let why = if headers == CROSS_SITE {
            "別のサイトから送信されたため"
        } else {
            "フォームの有効期限が切れました"
        };
        assert!(
            refused.body.contains(why),
            "{path} {form:?}: {}",
            refused.body
        );
        assert_eq!(live(&app, &user).await.len(), 2, "{path} {form:?}");
    }
    assert_eq!(pc.get("/account").await.status, 200);
    // The same form from our own page, with its token, goes through.
    let form = [("csrf", csrf.as_str()), ("sid", pc_sid.as_str())];
    let done = phone
        .post_form_with("/account/sessions/end", &form, SAME_SITE)
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(live(&app, &user).await.len(), 1);
}

#[tokio::test]
async fn signing_out_this_browser_from_the_list_clears_its_cookie() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let phone = signed_in(&app, EMAIL, IPHONE).await;
    let pc = signed_in(&app, EMAIL, WINDOWS).await;
    let own_sid = session_of(&app, &phone).await.unwrap().sid;
    let page = list(&phone).await;

    let done = post(&phone, &page, "/account/sessions/end", Some(&own_sid)).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(
        done.set_cookies
            .iter()
            .any(|c| c.starts_with("tobira_session=") && c.contains("Max-Age=0")),
        "{:?}",
        done.set_cookies
    );
    assert_eq!(phone.cookie("tobira_session"), None);
    let back = phone.get(done.location.as_deref().unwrap()).await;
    assert_eq!(back.status, 303);
    assert!(back.location.unwrap().starts_with("/login?tx="));
    assert_eq!(live(&app, &user).await.len(), 1);
    assert_eq!(pc.get("/account").await.status, 200);
}

#[tokio::test]
async fn a_form_posted_after_the_session_ended_comes_back_to_the_list_after_signing_in() {
    let app = TestApp::spawn().await;
    app.add_user(EMAIL, PASSWORD).await;
    let browser = app.browser();
    let stale = browser
        .post_form("/account/sessions/end", &[("sid", "whatever")])
        .await;
    assert_eq!(stale.status, 303, "{}", stale.body);
    let login = browser.get(&stale.location.unwrap()).await;
    let signed_in = browser.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(signed_in.location.as_deref(), Some("/account/sessions/end"));
    // The sign-in comes back with a GET, which shows the list (nothing is ended).
    let back = browser.get("/account/sessions/end").await;
    assert_eq!(back.status, 303);
    assert_eq!(back.location.as_deref(), Some("/account/sessions"));
    assert_eq!(items(&list(&browser).await).len(), 1);
}

#[tokio::test]
async fn activity_is_written_at_most_once_a_minute() {
    let app = TestApp::spawn().await;
    app.add_user(EMAIL, PASSWORD).await;
    let phone = signed_in(&app, EMAIL, IPHONE).await;
    let signed_in_at = session_of(&app, &phone).await.unwrap().last_seen_at;

    list(&phone).await;
    app.clock().advance(Duration::seconds(40));
    list(&phone).await;
    assert_eq!(
        session_of(&app, &phone).await.unwrap().last_seen_at,
        signed_in_at,
        "requests within a minute write nothing"
    );

    app.clock().advance(Duration::seconds(80));
    let page = list(&phone).await;
    let seen = session_of(&app, &phone).await.unwrap().last_seen_at;
    assert_eq!(seen, app.clock().now());
    assert_eq!(seen - signed_in_at, Duration::minutes(2));
    assert!(page.body.contains(&minute(&app, seen)), "{}", page.body);
}
