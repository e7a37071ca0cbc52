//! `/account/linked`: the services linked to an account (listed with the address each gave,
//! when linked, last used), linking one (re-authentication first, then a 303 to the
//! provider; a link is made only for the console session that asked), unlinking with its
//! history line and mail, the last way in kept. Hostile: another member's link id, a form
//! without its token, a stale session, a crafted notice, a callback in another session.
//! Also the history's words for a provider's steps, and the sign-in help's list of them.

use axum::http::{HeaderMap, HeaderValue, header};
use sea_orm::ConnectionTrait;
use time::Duration;
use tobira_auth::account::linked::{self, LinkContext};
use tobira_auth::config::ProviderConfig;
use tobira_auth::domain::User;
use tobira_auth::federation::{Identity, UpstreamError};
use tobira_auth::store::{FactorChange, Link, Linking, LoginEvent, LoginResult, NewFederatedLink};
use tobira_auth::web::i18n::Lang;
use tobira_auth::web::pages::RequestId;

use crate::console::to_sign_in;
use crate::helpers::{Browser, OutboxMail, Page, TestApp};
use crate::oidc::{EMAIL, PASSWORD};
use crate::sessions::{member, minute, second_member, session_of, signed_in};

const GOOGLE_ISSUER: &str = "https://accounts.google.com";
const LINKED_SUBJECT: &str = "【Tobira】Googleを連携しました";
const UNLINKED_SUBJECT: &str = "【Tobira】Googleの連携を解除しました";
const OTHER_EMAIL: &str = "taro@example.jp";

/// A provider as the configuration gives it.
fn provider(id: &str, kind: &str, issuer: &str) -> ProviderConfig {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "kind": kind,
        "client_id": "tobira-test-client",
        "client_secret": "tobira-test-secret",
        "issuer": issuer,
    }))
    .expect("a provider's configuration")
}

/// An OP with Google and Yahoo! JAPAN configured (nothing is asked of them: their
/// discovery and keys are fetched on first use).
async fn app_with_providers() -> TestApp {
    TestApp::spawn_with(|c| {
        c.federation.providers = vec![
            provider("google", "google", ""),
            provider("yahoo", "yahoo_japan", ""),
        ];
    })
    .await
}

fn identity(subject: &str, email: Option<&str>) -> Identity {
    Identity {
        provider: "google".to_owned(),
        issuer: GOOGLE_ISSUER.to_owned(),
        subject: subject.to_owned(),
        email: email.map(str::to_owned),
        email_verified: true,
        name: Some("山田 花子".to_owned()),
        refresh_token: None,
    }
}

/// Links `identity` to `user` the way the console and the sign-in do.
async fn make_link(app: &TestApp, user: &User, identity: &Identity) -> Linking {
    linked::make_link(
        &app.state,
        user,
        identity,
        LinkContext {
            ip: "203.0.113.7".parse().unwrap(),
            user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            device: "device-hash",
            lang: Lang::Ja,
        },
        "",
    )
    .await
    .expect("the link is written")
}

async fn links(app: &TestApp, user: &User) -> Vec<Link> {
    app.state.db.links().list(user.id).await.unwrap()
}

async fn linked_page(browser: &Browser) -> Page {
    let page = browser.get("/account/linked").await;
    assert_eq!(page.status, 200, "{:?} {}", page.location, page.body);
    page
}

/// Posts a form of `page` (its CSRF token) with `fields`.
async fn post(browser: &Browser, page: &Page, path: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = page.field("csrf").expect("a CSRF field");
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    browser.post_form(path, &form).await
}

async fn mails_with(app: &TestApp, subject: &str) -> Vec<OutboxMail> {
    app.settled()
        .await
        .into_iter()
        .filter(|m| m.subject == subject)
        .collect()
}

async fn recorded(app: &TestApp, user: &User, result: LoginResult) -> Vec<LoginEvent> {
    app.settled().await;
    app.state
        .db
        .login_events()
        .page(user.id, None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.method == "fed:google" && e.result == result)
        .collect()
}

/// Takes the account's password away, as an account a provider created has none.
async fn without_password(app: &TestApp, email: &str) {
    let conn = sea_orm::Database::connect(app.state.config.database_url())
        .await
        .unwrap();
    conn.execute_unprepared(&format!(
        "UPDATE users SET password_hash = NULL WHERE email = '{email}'"
    ))
    .await
    .unwrap();
    conn.close().await.unwrap();
}

/// The headers a browser sends with its cookies (for the callback, which
/// `oidc::federation` hands to `finish_link`).
fn cookies_of(browser: &Browser) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(secret) = browser.cookie("tobira_session") {
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("tobira_session={secret}")).unwrap(),
        );
    }
    headers
}

#[tokio::test]
async fn the_page_lists_the_links_and_offers_every_configured_provider() {
    let app = app_with_providers().await;
    let (user, browser) = member(&app).await;
    let empty = linked_page(&browser).await;
    assert!(empty.body.contains(r#"id="linked-none""#), "{}", empty.body);
    for (id, text) in [
        ("google", "Googleを連携する"),
        ("yahoo", "Yahoo! JAPAN IDを連携する"),
    ] {
        assert!(
            empty.body.contains(&format!(
                r#"<input type="hidden" name="provider" value="{id}">"#
            )),
            "{}",
            empty.body
        );
        assert!(empty.body.contains(text), "{text}: {}", empty.body);
    }

    // One link straight through the store, one the way the console makes it.
    let made_at = app.clock().now();
    let change = FactorChange {
        event: LoginEvent {
            id: uuid::Uuid::new_v4(),
            user: user.id,
            at: made_at,
            ip: "127.0.0.1".to_owned(),
            user_agent: "tests".to_owned(),
            device_hash: String::new(),
            method: "fed:yahoo".to_owned(),
            result: LoginResult::Enrolled,
            new_device: false,
        },
        mail: None,
    };
    let stored = app
        .state
        .db
        .links()
        .link(
            made_at,
            user.id,
            NewFederatedLink {
                provider: "yahoo".to_owned(),
                issuer: "https://auth.login.yahoo.co.jp/yconnect/v2".to_owned(),
                subject: "YJ-1".to_owned(),
                email: None,
                sealed_refresh_token: None,
            },
            change,
        )
        .await
        .unwrap();
    assert_eq!(stored, Linking::Linked);
    app.clock().advance(Duration::minutes(3));
    assert_eq!(
        make_link(&app, &user, &identity("g-1", Some("hanako@gmail.com"))).await,
        Linking::Linked
    );
    // A second account at the same provider is allowed.
    app.clock().advance(Duration::minutes(1));
    assert_eq!(
        make_link(&app, &user, &identity("g-2", Some("hanako.work@gmail.com"))).await,
        Linking::Linked
    );
    let kept = links(&app, &user).await;
    assert_eq!(kept.len(), 3);
    let used_at = app.clock().now() + Duration::minutes(5);
    app.state
        .db
        .links()
        .used(used_at, kept[1].id, None)
        .await
        .unwrap();

    let page = linked_page(&browser).await;
    let items: Vec<&str> = page
        .body
        .split(r#"<li data-testid="link""#)
        .skip(1)
        .map(|item| item.split("</li>").next().unwrap())
        .collect();
    assert_eq!(items.len(), 3, "{}", page.body);
    assert!(items[0].contains(r#"data-provider="yahoo""#));
    assert!(
        items[0].contains(">Yahoo! JAPAN ID</strong>"),
        "{}",
        items[0]
    );
    assert!(items[0].contains("（受け取っていません）"));
    assert!(items[0].contains(&minute(&app, made_at)));
    assert!(items[0].contains("まだ使われていません"));
    assert!(items[1].contains(">Google</strong>"), "{}", items[1]);
    assert!(items[1].contains("hanako@gmail.com"));
    assert!(items[1].contains(&minute(&app, used_at)), "{}", items[1]);
    assert!(items[2].contains("hanako.work@gmail.com"));
    for (item, link) in items.iter().zip(&kept) {
        assert!(item.contains(&format!(r#"name="link" value="{}""#, link.id)));
        assert!(item.contains("連携を解除"));
    }
    // Still one form per provider, a linked one too.
    assert!(page.body.contains("Googleを連携する"));

    // The console's overview links the page.
    let overview = browser.get("/account").await;
    assert!(
        overview.body.contains(r#"href="/account/linked""#),
        "{}",
        overview.body
    );
    assert!(overview.body.contains("連携サービス"));
}

#[tokio::test]
async fn a_link_is_recorded_mailed_and_keeps_the_refresh_token_sealed() {
    let app = app_with_providers().await;
    let (user, browser) = member(&app).await;
    let mut apple_like = identity("g-1", Some("hanako@gmail.com"));
    apple_like.refresh_token = Some("upstream-refresh-token-1".to_owned());
    assert_eq!(make_link(&app, &user, &apple_like).await, Linking::Linked);

    let mails = mails_with(&app, LINKED_SUBJECT).await;
    assert_eq!(mails.len(), 1, "one mail");
    assert_eq!(mails[0].to, EMAIL);
    for says in [
        "Google",
        "hanako@gmail.com",
        "203.0.113.7",
        "Chrome",
        "/account/linked",
        "/password/forgot",
        "お心当たりがない場合",
    ] {
        assert!(mails[0].text.contains(says), "{says}: {}", mails[0].text);
    }
    let events = recorded(&app, &user, LoginResult::Enrolled).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].ip, "203.0.113.7");
    assert_eq!(events[0].device_hash, "device-hash");

    // Stored sealed: never the token itself, and the master key opens it.
    let conn = sea_orm::Database::connect(app.state.config.database_url())
        .await
        .unwrap();
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT refresh_token_sealed FROM federated_links WHERE subject = 'g-1'",
        ))
        .await
        .unwrap()
        .expect("the link's row");
    let sealed: Option<String> = row.try_get("", "refresh_token_sealed").unwrap();
    conn.close().await.unwrap();
    let sealed = sealed.expect("the refresh token is kept");
    assert!(!sealed.contains("upstream-refresh-token-1"));
    assert_eq!(
        &app.state.master.decrypt(&sealed).unwrap()[..],
        b"upstream-refresh-token-1"
    );

    // The same identity again changes nothing; another account cannot take it.
    assert_eq!(
        make_link(&app, &user, &apple_like).await,
        Linking::AlreadyThis
    );
    let other = second_member(&app).await;
    assert_eq!(
        make_link(&app, &other, &apple_like).await,
        Linking::OtherAccount
    );
    assert!(links(&app, &other).await.is_empty());
    assert_eq!(
        mails_with(&app, LINKED_SUBJECT).await.len(),
        1,
        "no more mail"
    );
    assert_eq!(recorded(&app, &user, LoginResult::Enrolled).await.len(), 1);

    // An address that is not one is not kept.
    assert_eq!(
        make_link(&app, &user, &identity("g-3", Some("not an address\n<b>"))).await,
        Linking::Linked
    );
    let page = linked_page(&browser).await;
    assert!(!page.body.contains("not an address"), "{}", page.body);
}

#[tokio::test]
async fn a_link_is_removed_with_its_history_line_and_mail() {
    let app = app_with_providers().await;
    let (user, browser) = member(&app).await;
    make_link(&app, &user, &identity("g-1", Some("hanako@gmail.com"))).await;
    let link = links(&app, &user).await.remove(0);

    let page = linked_page(&browser).await;
    let removed = post(
        &browser,
        &page,
        "/account/linked/remove",
        &[("link", &link.id.to_string())],
    )
    .await;
    assert_eq!(removed.status, 303, "{}", removed.body);
    let back = removed.location.unwrap();
    assert_eq!(back, "/account/linked?done=unlinked&provider=google");
    let shown = browser.get(&back).await;
    assert!(
        shown.body.contains("Googleの連携を解除しました。"),
        "{}",
        shown.body
    );
    assert!(links(&app, &user).await.is_empty());

    let mails = mails_with(&app, UNLINKED_SUBJECT).await;
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].text.contains("hanako@gmail.com"),
        "{}",
        mails[0].text
    );
    assert!(mails[0].text.contains("127.0.0.1"), "{}", mails[0].text);
    assert_eq!(recorded(&app, &user, LoginResult::Removed).await.len(), 1);

    // The history names both lines by the provider.
    let history = browser.get("/account/history").await;
    assert!(
        history.body.contains(": Google を連携</small>"),
        "{}",
        history.body
    );
    assert!(history.body.contains(": Google の連携を解除</small>"));

    // Removing it again finds nothing, and mails nothing.
    let again = post(
        &browser,
        &page,
        "/account/linked/remove",
        &[("link", &link.id.to_string())],
    )
    .await;
    assert_eq!(again.status, 404, "{}", again.body);
    assert!(again.body.contains("この連携は見つかりませんでした"));
    assert_eq!(mails_with(&app, UNLINKED_SUBJECT).await.len(), 1);
}

#[tokio::test]
async fn the_last_way_in_is_kept() {
    let app = app_with_providers().await;
    let (user, browser) = member(&app).await;
    make_link(&app, &user, &identity("g-1", None)).await;
    make_link(&app, &user, &identity("g-2", None)).await;
    without_password(&app, EMAIL).await;
    let [one, two] = <[Link; 2]>::try_from(links(&app, &user).await).unwrap();

    let page = linked_page(&browser).await;
    let first = post(
        &browser,
        &page,
        "/account/linked/remove",
        &[("link", &one.id.to_string())],
    )
    .await;
    assert_eq!(first.status, 303, "one of two goes: {}", first.body);
    let last = post(
        &browser,
        &page,
        "/account/linked/remove",
        &[("link", &two.id.to_string())],
    )
    .await;
    assert_eq!(last.status, 409, "{}", last.body);
    assert!(
        last.body.contains(
            "最後のログイン方法は解除できません。先にパスワードかパスキーを設定してください。"
        ),
        "{}",
        last.body
    );
    assert!(last.body.contains(&two.id.to_string()), "the list shows");
    assert_eq!(links(&app, &user).await, vec![two]);
    assert_eq!(mails_with(&app, UNLINKED_SUBJECT).await.len(), 1);
    assert_eq!(recorded(&app, &user, LoginResult::Removed).await.len(), 1);
}

#[tokio::test]
async fn an_account_a_provider_created_keeps_its_only_link() {
    let app = app_with_providers().await;
    let now = app.clock().now();
    let created = app
        .state
        .db
        .links()
        .create_account(
            &app.state.clock,
            tobira_auth::store::NewUser {
                email: tobira_auth::domain::Email::parse(OTHER_EMAIL).unwrap(),
                email_verified: true,
                password_hash: None,
                display_name: "鈴木 太郎".to_owned(),
                locale: "ja".to_owned(),
            },
            NewFederatedLink {
                provider: "google".to_owned(),
                issuer: GOOGLE_ISSUER.to_owned(),
                subject: "g-only".to_owned(),
                email: Some(OTHER_EMAIL.to_owned()),
                sealed_refresh_token: None,
            },
            |user: &User| FactorChange {
                event: LoginEvent {
                    id: uuid::Uuid::new_v4(),
                    user: user.id,
                    at: now,
                    ip: "127.0.0.1".to_owned(),
                    user_agent: "tests".to_owned(),
                    device_hash: String::new(),
                    method: "fed:google".to_owned(),
                    result: LoginResult::Enrolled,
                    new_device: false,
                },
                mail: None,
            },
            |user: &User| {
                let ctx = tobira_auth::admin::audit::Context::system();
                let target = tobira_auth::admin::audit::Target::User(user.id);
                tobira_auth::admin::audit::event(
                    now,
                    &ctx,
                    "user.create",
                    target,
                    serde_json::json!({}),
                )
            },
        )
        .await
        .unwrap();
    let only = links(&app, &created).await.remove(0);
    // What the page's remove does, for an account that has nothing else.
    let change = FactorChange {
        event: LoginEvent {
            id: uuid::Uuid::new_v4(),
            user: created.id,
            at: now,
            ip: "127.0.0.1".to_owned(),
            user_agent: "tests".to_owned(),
            device_hash: String::new(),
            method: "fed:google".to_owned(),
            result: LoginResult::Removed,
            new_device: false,
        },
        mail: None,
    };
    assert_eq!(
        app.state
            .db
            .links()
            .unlink(now, created.id, only.id, change)
            .await
            .unwrap(),
        tobira_auth::store::Unlinking::LastWayIn
    );
    assert_eq!(links(&app, &created).await.len(), 1);
}

#[tokio::test]
async fn another_members_link_cannot_be_removed() {
    let app = app_with_providers().await;
    let (_user, browser) = member(&app).await;
    let other = second_member(&app).await;
    make_link(&app, &other, &identity("taro-1", Some("taro@gmail.com"))).await;
    let theirs = links(&app, &other).await.remove(0);

    let page = linked_page(&browser).await;
    assert!(!page.body.contains(&theirs.id.to_string()));
    assert!(!page.body.contains("taro@gmail.com"));
    for bad in [
        theirs.id.to_string(),
        theirs.id.simple().to_string().to_uppercase() + "x",
        String::new(),
        "' OR 1=1 --".to_owned(),
        "x".repeat(5000),
    ] {
        let answer = post(&browser, &page, "/account/linked/remove", &[("link", &bad)]).await;
        assert_eq!(answer.status, 404, "{bad:?}: {}", answer.body);
    }
    assert_eq!(links(&app, &other).await, vec![theirs]);
    assert!(mails_with(&app, UNLINKED_SUBJECT).await.is_empty());
}

#[tokio::test]
async fn forms_without_the_csrf_token_change_nothing() {
    let app = app_with_providers().await;
    let (user, browser) = member(&app).await;
    make_link(&app, &user, &identity("g-1", None)).await;
    let link = links(&app, &user).await.remove(0);
    let id = link.id.to_string();
    let attempts: [(&str, Vec<(&str, &str)>); 4] = [
        ("/account/linked/remove", vec![("link", &id)]),
        (
            "/account/linked/remove",
            vec![("csrf", "forged"), ("link", &id)],
        ),
        ("/account/linked/start", vec![("provider", "google")]),
        (
            "/account/linked/start",
            vec![("csrf", ""), ("provider", "google")],
        ),
    ];
    for (path, form) in attempts {
        let answer = browser.post_form(path, &form).await;
        assert_eq!(answer.status, 403, "{path}: {}", answer.body);
    }
    // A real token, posted from another site.
    let page = linked_page(&browser).await;
    let csrf = page.field("csrf").unwrap();
    let cross = browser
        .post_form_with(
            "/account/linked/remove",
            &[("csrf", &csrf), ("link", &id)],
            &[
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    assert_eq!(links(&app, &user).await, vec![link]);
}

#[tokio::test]
async fn a_stale_session_signs_in_again_before_starting_or_removing() {
    let app = app_with_providers().await;
    let (user, browser) = member(&app).await;
    make_link(&app, &user, &identity("g-1", None)).await;
    let link = links(&app, &user).await.remove(0);
    let page = linked_page(&browser).await;
    app.clock().advance(Duration::minutes(
        i64::from(app.state.config.account.reauth_minutes) + 1,
    ));
    // The list itself needs no recent sign-in.
    linked_page(&browser).await;
    to_sign_in(
        &post(
            &browser,
            &page,
            "/account/linked/remove",
            &[("link", &link.id.to_string())],
        )
        .await,
    );
    to_sign_in(
        &post(
            &browser,
            &page,
            "/account/linked/start",
            &[("provider", "google")],
        )
        .await,
    );
    assert_eq!(links(&app, &user).await, vec![link]);
    // A stale form that comes back after the sign-in is a GET of its address: the page.
    let back = browser.get("/account/linked/remove").await;
    assert_eq!(back.location.as_deref(), Some("/account/linked"));
    let back = browser.get("/account/linked/start").await;
    assert_eq!(back.location.as_deref(), Some("/account/linked"));
    // Signed out: the page asks for a sign-in.
    to_sign_in(&app.browser().get("/account/linked").await);
}

#[tokio::test]
async fn starting_sends_the_browser_to_the_provider_for_this_session() {
    // The upstream is another Tobira on 127.0.0.1 (its own cookies).
    let upstream = TestApp::spawn_with(|c| {
        let issuer = format!("http://127.0.0.1:{}", c.server.bind.port());
        c.issuer = tobira_auth::config::Issuer::parse(&issuer).unwrap();
    })
    .await;
    let upstream_issuer = upstream.issuer();
    let app = TestApp::spawn_with(|c| {
        c.federation.providers = vec![
            provider("up", "oidc", &upstream_issuer),
            // Nothing listens there: discovery fails.
            provider("down", "oidc", "http://127.0.0.1:9"),
        ];
    })
    .await;
    let (_user, browser) = member(&app).await;
    let page = linked_page(&browser).await;
    assert!(page.body.contains(r#"value="up""#), "{}", page.body);

    let started = post(
        &browser,
        &page,
        "/account/linked/start",
        &[("provider", "up")],
    )
    .await;
    assert_eq!(started.status, 303, "{}", started.body);
    let to = url::Url::parse(started.location.as_deref().unwrap()).unwrap();
    assert!(
        to.as_str().starts_with(&upstream_issuer),
        "to the upstream: {to}"
    );
    let params: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
    assert_eq!(params["client_id"], "tobira-test-client");
    assert_eq!(
        params["redirect_uri"],
        format!("{}/federation/up/callback", app.issuer())
    );
    assert!(params["state"].len() >= 32, "{params:?}");

    let down = post(
        &browser,
        &page,
        "/account/linked/start",
        &[("provider", "down")],
    )
    .await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(
        down.body.contains("サービスに接続できなかったため"),
        "{}",
        down.body
    );
    assert!(
        down.body.contains(r#"value="up""#),
        "the page with its forms"
    );

    for unknown in ["nope", "", "UP", "<script>"] {
        let answer = post(
            &browser,
            &page,
            "/account/linked/start",
            &[("provider", unknown)],
        )
        .await;
        assert_eq!(answer.status, 404, "{unknown:?}: {}", answer.body);
        assert!(answer.body.contains("このサービスは連携できません"));
    }
}

#[tokio::test]
async fn a_callback_links_only_for_the_console_session_that_started() {
    let app = app_with_providers().await;
    let (user, browser) = member(&app).await;
    let session = session_of(&app, &browser).await.unwrap();
    let ip = "198.51.100.4".parse().unwrap();
    let finish = |headers: HeaderMap, user: uuid::Uuid, session: uuid::Uuid, subject: &str| {
        let state = app.state.clone();
        let identity = identity(subject, Some("hanako@gmail.com"));
        async move {
            linked::finish_link(
                &state,
                &headers,
                ip,
                RequestId(None),
                user,
                session,
                identity,
            )
            .await
        }
    };

    // Another session id, another member, no session at all, a signed-out browser.
    let other_browser = signed_in(&app, EMAIL, "another browser").await;
    let other = second_member(&app).await;
    let refusals = [
        (cookies_of(&browser), user.id.0, uuid::Uuid::new_v4()),
        (cookies_of(&other_browser), user.id.0, session.id),
        (cookies_of(&browser), other.id.0, session.id),
        (HeaderMap::new(), user.id.0, session.id),
    ];
    for (headers, who, sid) in refusals {
        let answer = finish(headers, who, sid, "g-1").await;
        assert_eq!(answer.status(), 403);
        let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("連携を始めたときのログインが終了したか"),);
    }
    assert!(links(&app, &user).await.is_empty());
    assert!(links(&app, &other).await.is_empty());
    assert!(mails_with(&app, LINKED_SUBJECT).await.is_empty());

    let done = finish(cookies_of(&browser), user.id.0, session.id, "g-1").await;
    assert_eq!(done.status(), 303);
    let location = done.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/account/linked?done=linked&provider=google");
    let page = browser.get(&location).await;
    assert!(
        page.body.contains("Googleを連携しました。"),
        "{}",
        page.body
    );
    assert_eq!(links(&app, &user).await.len(), 1);
    let events = recorded(&app, &user, LoginResult::Enrolled).await;
    assert_eq!(events[0].ip, "198.51.100.4");
    assert_eq!(events[0].device_hash, session.device_id);

    let again = finish(cookies_of(&browser), user.id.0, session.id, "g-1").await;
    let location = again.headers()["location"].to_str().unwrap().to_owned();
    let page = browser.get(&location).await;
    assert!(
        page.body.contains("すでに連携されています。"),
        "{}",
        page.body
    );

    // The same identity, linked by the other member in their own console.
    let taro = signed_in(&app, OTHER_EMAIL, "taro's browser").await;
    let taro_session = session_of(&app, &taro).await.unwrap();
    let elsewhere = finish(cookies_of(&taro), other.id.0, taro_session.id, "g-1").await;
    let location = elsewhere.headers()["location"].to_str().unwrap().to_owned();
    let page = taro.get(&location).await;
    assert!(
        page.body
            .contains("That Google account is linked to another Tobira account"),
        "{}",
        page.body
    );
    assert!(links(&app, &other).await.is_empty());
    assert_eq!(mails_with(&app, LINKED_SUBJECT).await.len(), 1);
}

#[tokio::test]
async fn a_provider_that_gave_no_identity_is_said_on_the_page() {
    let app = app_with_providers().await;
    let (_user, browser) = member(&app).await;
    let cases = [
        (UpstreamError::Cancelled, "キャンセルされたため"),
        (
            UpstreamError::Unavailable("timeout".into()),
            "サービスに接続できなかったため",
        ),
        (
            UpstreamError::Refused("bad signature".into()),
            "確認できなかったため",
        ),
        (
            UpstreamError::Misconfigured("invalid_client".into()),
            "現在ご利用いただけません",
        ),
    ];
    for (error, says) in cases {
        let answer = linked::link_failed(&app.state, &HeaderMap::new(), &error);
        assert_eq!(answer.status(), 303);
        let location = answer.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with("/account/linked?done="), "{location}");
        let page = linked_page(&browser).await;
        assert!(!page.body.contains(says));
        let page = browser.get(&location).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains(r#"id="linked-error""#), "{}", page.body);
        assert!(page.body.contains(says), "{says}: {}", page.body);
        // Never the cause.
        assert!(!page.body.contains("invalid_client") && !page.body.contains("bad signature"));
    }
}

#[tokio::test]
async fn a_crafted_notice_names_nothing_it_was_not_given() {
    let app = app_with_providers().await;
    let (_user, browser) = member(&app).await;
    let named = browser
        .get("/account/linked?done=linked&provider=google")
        .await;
    assert!(named.body.contains("Googleを連携しました。"));
    for crafted in [
        "/account/linked?done=linked&provider=%E3%81%8A%E7%9F%A5%E3%82%89%E3%81%9B",
        "/account/linked?done=linked",
        "/account/linked?done=linked&provider=%3Cscript%3E",
        "/account/linked?done=%3Cscript%3E",
        "/account/linked?done=linked&done=unlinked",
        "/account/linked?done=linked&provider=a&provider=b",
    ] {
        let page = browser.get(crafted).await;
        assert_eq!(page.status, 200, "{crafted}: {}", page.body);
        assert!(!page.body.contains(r#"id="linked-notice""#), "{crafted}");
        assert!(!page.body.contains("お知らせ"), "{crafted}");
        assert!(!page.body.contains("<script>"), "{crafted}");
    }
    // A provider id no longer configured is named by its id.
    let old = browser
        .get("/account/linked?done=unlinked&provider=old-op")
        .await;
    assert!(
        old.body.contains("old-opの連携を解除しました。"),
        "{}",
        old.body
    );
}

#[tokio::test]
async fn the_history_names_a_providers_sign_ins_by_its_words() {
    let app = app_with_providers().await;
    let (user, browser) = member(&app).await;
    for method in ["fed:google+totp", "fed:yahoo", "fed:gone"] {
        app.state
            .db
            .login_events()
            .record(&LoginEvent {
                id: uuid::Uuid::new_v4(),
                user: user.id,
                at: app.clock().now(),
                ip: "127.0.0.1".to_owned(),
                user_agent: "tests".to_owned(),
                device_hash: String::new(),
                method: method.to_owned(),
                result: LoginResult::Success,
                new_device: false,
            })
            .await
            .unwrap();
    }
    let history = browser.get("/account/history").await;
    for says in [
        ": Google でログイン + 認証アプリ</small>",
        ": Yahoo! JAPAN IDでログイン</small>",
        ": gone</small>",
    ] {
        assert!(history.body.contains(says), "{says}: {}", history.body);
    }
}

#[tokio::test]
async fn the_sign_in_help_mail_lists_the_linked_services() {
    let app = app_with_providers().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    make_link(&app, &user, &identity("g-1", Some("hanako@gmail.com"))).await;
    make_link(
        &app,
        &user,
        &Identity {
            provider: "yahoo".to_owned(),
            issuer: "https://auth.login.yahoo.co.jp/yconnect/v2".to_owned(),
            subject: "YJ-1".to_owned(),
            email: None,
            email_verified: false,
            name: None,
            refresh_token: None,
        },
    )
    .await;
    app.settled().await;
    let browser = app.browser();
    let form = browser.get("/signin-help").await;
    let csrf = form.field("csrf").unwrap();
    let asked = browser
        .post_form("/signin-help", &[("csrf", &csrf), ("email", EMAIL)])
        .await;
    assert!(asked.status < 400, "{}", asked.body);
    let help: Vec<_> = app
        .settled()
        .await
        .into_iter()
        .filter(|m| m.subject == "【Tobira】ログインについてのご案内")
        .collect();
    assert_eq!(help.len(), 1);
    let text = &help[0].text;
    assert!(text.contains("パスワード（設定済み）"), "{text}");
    assert!(
        text.contains("Google でログイン（hanako@gmail.com）"),
        "{text}"
    );
    // A service that gave no address: its name alone on the line.
    assert!(
        text.lines()
            .any(|l| l.trim_end() == "Yahoo! JAPAN ID でログイン"),
        "{text}"
    );
    assert!(
        help[0]
            .html
            .contains("<li>Google でログイン（hanako@gmail.com）</li>")
    );

    // An account with no link says only what it has.
    second_member(&app).await;
    let form = browser.get("/signin-help").await;
    let csrf = form.field("csrf").unwrap();
    browser
        .post_form("/signin-help", &[("csrf", &csrf), ("email", OTHER_EMAIL)])
        .await;
    let mails = app.settled().await;
    let theirs = mails.iter().find(|m| m.to == OTHER_EMAIL).unwrap();
    assert!(!theirs.text.contains("でログイン"), "{}", theirs.text);
    assert!(!theirs.text.contains("Sign in with"), "{}", theirs.text);
}
