//! The admin API's member accounts (`/admin/api/v1/users…`) as an operator's tool meets
//! them: who may call, what each action does to the member and their apps, what the
//! audit log records of it, pages that neither skip nor repeat, and the same rules as
//! `tobira users …` (the CLI's own side is in `cli.rs` and `support.rs`).

use std::process::{Command, Output, Stdio};

use reqwest::Method;
use serde_json::{Value, json};
use tobira_auth::admin::audit::{self, AuditView};
use tobira_auth::domain::{User, UserStatus};
use tobira_auth::keys::Alg;
use tobira_auth::store::AuditFilter;

use crate::admin_support::{member_token_with, non_admin_token};
use crate::backchannel::{Receiver, checked};
use crate::cli::{stderr, stdout};
use crate::helpers::{AdminApi, ApiResponse, Browser, ClientOpts, TestApp};
use crate::oidc::{EMAIL, PASSWORD, Setup};
use crate::sessions::signed_in;

const BIN: &str = env!("CARGO_BIN_EXE_tobira");
const WRONG: &str = "not-the-password-1";
const FROZEN_SUBJECT: &str = "【Tobira】アカウントの利用を停止しました";
const UNFROZEN_SUBJECT: &str = "【Tobira】アカウントの利用停止を解除しました";

/// A member signed in to a client with refresh tokens and a back-channel logout
/// endpoint, the member's access token, and no mails but the ones the tests cause.
async fn member_setup(receiver: &Receiver) -> (Setup, String) {
    member_token_with(
        ClientOpts {
            refresh: true,
            backchannel_logout_uri: Some(receiver.uri()),
            ..Default::default()
        },
        |c| c.account.new_device_mail = false,
    )
    .await
}

/// Every endpoint, for an account `id` and one of its sessions `sid` (a request body
/// where it takes one).
fn endpoints(id: &str, session: &str) -> Vec<(Method, String, Option<Value>)> {
    let freeze = json!({ "reason": "規約違反の疑い" });
    vec![
        (Method::GET, "users".to_owned(), None),
        (Method::GET, format!("users/{id}"), None),
        (Method::POST, format!("users/{id}/freeze"), Some(freeze)),
        (Method::POST, format!("users/{id}/unfreeze"), None),
        (Method::POST, format!("users/{id}/unlock"), None),
        (Method::POST, format!("users/{id}/sign-out"), None),
        (Method::POST, format!("users/{id}/reset-2fa"), None),
        (Method::DELETE, format!("users/{id}"), None),
        (Method::GET, format!("users/{id}/sessions"), None),
        (
            Method::DELETE,
            format!("users/{id}/sessions/{session}"),
            None,
        ),
    ]
}

/// The audit events with this action, newest first.
async fn events(app: &TestApp, action: &str) -> Vec<AuditView> {
    let filter = AuditFilter {
        action: Some(action.to_owned()),
        ..Default::default()
    };
    audit::list(&app.state.db, &filter, 200).await.unwrap().0
}

/// The ids of every event on accounts, newest first: what a refused call must leave as
/// it was (the member's own sign-up is recorded before the test starts).
async fn event_ids(app: &TestApp) -> Vec<uuid::Uuid> {
    events(app, "user.").await.iter().map(|e| e.id).collect()
}

/// The request id the app gave an answer.
fn request_id(r: &ApiResponse) -> String {
    let id = r.headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(!id.is_empty());
    id
}

/// Checks that `event` records `api`'s request `r` on `user`.
fn assert_by_api(event: &AuditView, api: &AdminApi, r: &ApiResponse, user: &User) {
    assert_eq!(event.actor_kind, "client", "{event:?}");
    assert_eq!(event.actor, api.client_id, "{event:?}");
    assert_eq!(event.ip, "127.0.0.1", "{event:?}");
    assert_eq!(event.request_id, request_id(r), "{event:?}");
    assert_eq!(event.target_kind, "user", "{event:?}");
    assert_eq!(event.target, user.id.0.to_string(), "{event:?}");
}

async fn signed_out(browser: &Browser) -> bool {
    browser.get("/account").await.status == 303
}

/// The mails with this subject, once `n` of them arrived.
async fn mails(app: &TestApp, subject: &str, n: usize) -> Vec<crate::helpers::OutboxMail> {
    for _ in 0..100 {
        let found: Vec<_> = app
            .outbox()
            .into_iter()
            .filter(|m| m.subject == subject)
            .collect();
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("expected {n} mails {subject:?}, found {:?}", app.outbox());
}

#[tokio::test]
async fn every_users_endpoint_refuses_callers_without_an_admin_token_and_changes_nothing() {
    let receiver = Receiver::start().await;
    let (s, member) = member_setup(&receiver).await;
    let app = &s.app;
    let user = app.user(EMAIL).await.unwrap();
    let recorded = event_ids(app).await;
    let api = app.admin_api().await;
    let sessions = api.get(&format!("users/{}/sessions", user.id.0)).await;
    assert_eq!(sessions.status, 200, "{}", sessions.body);
    let session = sessions.body["items"][0]["id"].as_str().unwrap().to_owned();
    let non_admin = non_admin_token(app).await;

    for (method, path, body) in endpoints(&user.id.0.to_string(), &session) {
        let no_token = api.call_as(None, method.clone(), &path, body.clone()).await;
        no_token.assert_problem(401);
        assert!(
            no_token.headers.contains_key("www-authenticate"),
            "{method} {path}"
        );
        for token in [&non_admin, &member] {
            api.call_as(Some(token), method.clone(), &path, body.clone())
                .await
                .assert_problem(403);
        }
    }
    // Nothing happened to the member: still active, signed in, and nothing recorded.
    assert_eq!(app.reload(&user).await.status, UserStatus::Active);
    assert!(!signed_out(&s.browser).await);
    assert_eq!(event_ids(app).await, recorded);
}

#[tokio::test]
async fn malformed_requests_are_problems_and_change_nothing() {
    let receiver = Receiver::start().await;
    let (s, _) = member_setup(&receiver).await;
    let app = &s.app;
    let user = app.user(EMAIL).await.unwrap();
    let recorded = event_ids(app).await;
    let id = user.id.0.to_string();
    let api = app.admin_api().await;

    // An id that is no UUID is a 400; one no account has, a 404.
    let unknown = uuid::Uuid::now_v7().to_string();
    for bad in ["not-a-uuid", "1234", "%00"] {
        for (method, path, body) in endpoints(bad, &unknown) {
            if path == "users" {
                continue;
            }
            let r = api.call(method.clone(), &path, body).await;
            r.assert_problem(400);
        }
    }
    for (method, path, body) in endpoints(&unknown, &unknown) {
        if path == "users" {
            continue;
        }
        api.call(method, &path, body).await.assert_problem(404);
    }
    // A session id that is not a UUID, or names no session of this account.
    api.call(Method::DELETE, &format!("users/{id}/sessions/xyz"), None)
        .await
        .assert_problem(400);
    api.call(
        Method::DELETE,
        &format!("users/{id}/sessions/{unknown}"),
        None,
    )
    .await
    .assert_problem(404);

    // Freeze bodies: not JSON, unknown fields, wrong types, and reasons the rule refuses.
    let freeze = format!("users/{id}/freeze");
    let raw = reqwest::Client::new()
        .post(api.url(&freeze))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{\"reason\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let no_type = reqwest::Client::new()
        .post(api.url(&freeze))
        .bearer_auth(&api.token)
        .body(r#"{"reason":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(no_type.status(), 415);
    for body in [
        json!({ "reason": "x", "mail_reason": false, "notify": true }),
        json!({ "reason": 5 }),
        json!({ "mail_reason": true }),
        json!([]),
    ] {
        api.post(&freeze, body).await.assert_problem(422);
    }
    for (reason, said) in [
        (String::new(), "the reason is empty"),
        ("   ".to_owned(), "the reason is empty"),
        ("長".repeat(501), "the reason is longer than 500 characters"),
        (
            "two\nlines".to_owned(),
            "the reason contains control characters",
        ),
        ("\u{1b}[2Jcleared".to_owned(), "control characters"),
    ] {
        let r = api.post(&freeze, json!({ "reason": reason })).await;
        r.assert_problem(422);
        assert!(
            r.body["detail"].as_str().unwrap().contains(said),
            "{reason:?}: {}",
            r.body
        );
    }

    // Listing: bad cursors, limits, statuses and parameters.
    for query in [
        "users?cursor=not*base64",
        "users?cursor=bm90LWEtdXVpZA",
        "users?cursor=",
        "users?limit=0",
        "users?limit=201",
        "users?limit=-1",
        "users?limit=ten",
        "users?status=banned",
        "users?sort=email",
        &format!("users?q={}", "a".repeat(321)),
        // PostgreSQL refuses a NUL in text: a 400, not the database's error as a 500.
        "users?q=%00",
        "users?q=hana%0Ako",
    ] {
        api.get(query).await.assert_problem(400);
    }

    // Nothing of it changed the account or reached the log.
    let now = app.reload(&user).await;
    assert_eq!(now.status, UserStatus::Active);
    assert_eq!(now.frozen_reason, None);
    assert!(!signed_out(&s.browser).await);
    assert_eq!(event_ids(app).await, recorded);
    assert!(app.settled().await.is_empty(), "nobody was mailed");
}

#[tokio::test]
async fn a_frozen_member_cannot_sign_in_is_mailed_and_the_freeze_is_recorded_with_its_request() {
    let receiver = Receiver::start().await;
    let (s, member) = member_setup(&receiver).await;
    let app = &s.app;
    let user = app.user(EMAIL).await.unwrap();
    let api = app.admin_api().await;
    let reason = "規約違反の疑い（チケット #123）";

    let r = api
        .post(
            &format!("users/{}/freeze", user.id.0),
            json!({ "reason": format!("  {reason} "), "mail_reason": true }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["changed"], true);
    assert_eq!(r.body["user"]["status"], "frozen");
    assert_eq!(r.body["user"]["frozen_reason"], reason);

    // Sign-in is refused, the browser and the tokens are signed out, the client is told.
    assert!(!app.password_works(EMAIL, PASSWORD).await);
    assert!(signed_out(&s.browser).await);
    let (_, info) =
        crate::protocol::post_token_endpoint(&s, "/introspect", &[("token", &member)]).await;
    assert_eq!(info["active"], false);
    let got = receiver.wait_for(1).await;
    assert_eq!(
        checked(app, &got[0], &s.client_id, Alg::RS256)["sub"],
        user.sub.as_str()
    );
    // The member is mailed, with the reason (asked for).
    let frozen = mails(app, FROZEN_SUBJECT, 1).await;
    assert_eq!(frozen[0].to, EMAIL);
    assert!(frozen[0].text.contains(reason), "{}", frozen[0].text);

    // Recorded: by this client, from its address, in this request.
    let recorded = events(app, "user.freeze").await;
    assert_eq!(recorded.len(), 1);
    assert_by_api(&recorded[0], &api, &r, &user);
    assert_eq!(recorded[0].detail["reason"], reason);
    assert_eq!(recorded[0].detail["reason_mailed"], true);

    // Shown with the reason; a second freeze changes nothing and mails nobody.
    let shown = api.get(&format!("users/{}", user.id.0)).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.body["frozen_reason"], reason);
    assert_eq!(shown.body["id"], user.id.0.to_string());
    assert!(shown.body.get("password_hash").is_none(), "{}", shown.body);
    let again = api
        .post(
            &format!("users/{}/freeze", user.id.0),
            json!({ "reason": "again" }),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["changed"], false);
    assert_eq!(
        again.body["user"]["frozen_reason"], reason,
        "the first reason stays"
    );
    assert_eq!(events(app, "user.freeze").await.len(), 1);

    // Unfreezing lets the member back in and mails them; the second one changes nothing.
    let lift = api
        .call(Method::POST, &format!("users/{}/unfreeze", user.id.0), None)
        .await;
    assert_eq!(lift.status, 200, "{}", lift.body);
    assert_eq!(lift.body["changed"], true);
    assert_eq!(lift.body["user"]["status"], "active");
    assert!(lift.body["user"].get("frozen_reason").is_none());
    assert!(app.password_works(EMAIL, PASSWORD).await);
    mails(app, UNFROZEN_SUBJECT, 1).await;
    let unfrozen = events(app, "user.unfreeze").await;
    assert_eq!(unfrozen.len(), 1);
    assert_by_api(&unfrozen[0], &api, &lift, &user);
    let again = api
        .call(Method::POST, &format!("users/{}/unfreeze", user.id.0), None)
        .await;
    assert_eq!(again.body["changed"], false, "{}", again.body);
    assert_eq!(events(app, "user.unfreeze").await.len(), 1);
    let frozen_mails = app.settled().await;
    assert_eq!(
        frozen_mails
            .iter()
            .filter(|m| m.subject == FROZEN_SUBJECT || m.subject == UNFROZEN_SUBJECT)
            .count(),
        2,
        "mailed once each"
    );
}

#[tokio::test]
async fn sessions_are_listed_without_secrets_and_ended_one_at_a_time_or_all_at_once() {
    let receiver = Receiver::start().await;
    let (s, _) = member_setup(&receiver).await;
    let app = &s.app;
    let user = app.user(EMAIL).await.unwrap();
    let phone = signed_in(app, EMAIL, "phone").await;
    let api = app.admin_api().await;
    let path = format!("users/{}/sessions", user.id.0);

    let listed = api.get(&path).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let items = listed.body["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{}", listed.body);
    let cookie = s.browser.cookie("tobira_session").unwrap();
    for item in &items {
        for key in ["id", "sid", "created_at", "last_seen_at", "ip", "device"] {
            assert!(item.get(key).is_some(), "{key}: {item}");
        }
        let text = item.to_string();
        assert!(!text.contains(&cookie), "no cookie secret: {text}");
        assert!(item.get("secret_hash").is_none() && item.get("device_id").is_none());
    }
    let phone_item = items.iter().find(|i| i["user_agent"] == "phone").unwrap();
    let client_item = items.iter().find(|i| i["user_agent"] != "phone").unwrap();

    // Ending the browser signed in to the client: it alone is signed out, and the client
    // gets a back-channel logout naming that session.
    let end = api
        .call(
            Method::DELETE,
            &format!("{path}/{}", client_item["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(end.status, 204, "{}", end.body);
    assert!(signed_out(&s.browser).await);
    assert!(!signed_out(&phone).await);
    let got = receiver.wait_for(1).await;
    let logout = checked(app, &got[0], &s.client_id, Alg::RS256);
    assert_eq!(logout["sid"], client_item["sid"]);
    let ended = events(app, "user.session_end").await;
    assert_eq!(ended.len(), 1);
    assert_by_api(&ended[0], &api, &end, &user);
    // Again: no live session by that id; one of another account is never ended here.
    api.call(
        Method::DELETE,
        &format!("{path}/{}", client_item["id"].as_str().unwrap()),
        None,
    )
    .await
    .assert_problem(404);
    let other = app.add_user("taro@example.jp", PASSWORD).await;
    let taro = signed_in(app, "taro@example.jp", "taro's laptop").await;
    let taros = api.get(&format!("users/{}/sessions", other.id.0)).await;
    let taros_session = taros.body["items"][0]["id"].as_str().unwrap().to_owned();
    api.call(Method::DELETE, &format!("{path}/{taros_session}"), None)
        .await
        .assert_problem(404);
    assert!(!signed_out(&taro).await);
    assert_eq!(events(app, "user.session_end").await.len(), 1);

    // Signing out everywhere ends what is left (the phone); the account stays usable.
    let out = api
        .call(Method::POST, &format!("users/{}/sign-out", user.id.0), None)
        .await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(out.body, json!({ "changed": true, "sessions_ended": 1 }));
    assert!(signed_out(&phone).await);
    let recorded = events(app, "user.sign_out").await;
    assert_eq!(recorded.len(), 1);
    assert_by_api(&recorded[0], &api, &out, &user);
    assert_eq!(recorded[0].detail["sessions_ended"], 1);
    assert_eq!(api.get(&path).await.body["items"], json!([]));
    let again = api
        .call(Method::POST, &format!("users/{}/sign-out", user.id.0), None)
        .await;
    assert_eq!(again.body, json!({ "changed": false, "sessions_ended": 0 }));
    assert_eq!(
        phone_item["device"].as_str().map(str::is_empty),
        Some(false)
    );
    // The account itself is untouched: the member signs in again at once.
    assert_eq!(app.reload(&user).await.status, UserStatus::Active);
    assert!(app.password_works(EMAIL, PASSWORD).await);
}

#[tokio::test]
async fn an_unlocked_member_signs_in_again_after_being_throttled() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let api = app.admin_api().await;
    let failures = app.state.config.throttle.account_failures;
    for _ in 0..failures {
        assert!(!app.password_works(EMAIL, WRONG).await);
    }
    assert!(
        !app.password_works(EMAIL, PASSWORD).await,
        "locked: the right password is refused"
    );

    let r = api
        .call(Method::POST, &format!("users/{}/unlock", user.id.0), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({ "applied": true }));
    assert!(app.password_works(EMAIL, PASSWORD).await);
    let recorded = events(&app, "user.unlock").await;
    assert_eq!(recorded.len(), 1);
    assert_by_api(&recorded[0], &api, &r, &user);
}

#[tokio::test]
async fn resetting_two_step_and_deleting_do_what_the_cli_does_and_are_recorded() {
    let app = TestApp::spawn_with(|c| c.account.new_device_mail = false).await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let api = app.admin_api().await;
    let id = user.id.0;

    // No second step: nothing to reset, nothing recorded.
    let none = api
        .call(Method::POST, &format!("users/{id}/reset-2fa"), None)
        .await;
    assert_eq!(none.status, 200, "{}", none.body);
    assert_eq!(none.body["changed"], false);
    assert!(events(&app, "user.reset_2fa").await.is_empty());
    crate::two_step::enrol_email(&app, &user).await;
    assert!(app.state.db.two_step().enrolled(user.id).await.unwrap());
    let reset = api
        .call(Method::POST, &format!("users/{id}/reset-2fa"), None)
        .await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert_eq!(reset.body["changed"], true);
    assert!(!app.state.db.two_step().enrolled(user.id).await.unwrap());
    let recorded = events(&app, "user.reset_2fa").await;
    assert_eq!(recorded.len(), 1);
    assert_by_api(&recorded[0], &api, &reset, &user);
    assert_eq!(recorded[0].detail["email_codes"], true);
    // The member's history names the channel.
    let history = app
        .state
        .db
        .login_events()
        .page(user.id, None, 10)
        .await
        .unwrap();
    let line = format!("support (admin API, {})", api.client_id);
    assert!(history.iter().any(|e| e.user_agent == line), "{history:?}");

    // Deleting: sign-in refused at once, the member mailed, recorded; once only.
    let gone = api.call(Method::DELETE, &format!("users/{id}"), None).await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert_eq!(gone.body["changed"], true);
    assert_eq!(gone.body["user"]["status"], "deleted");
    assert!(!app.password_works(EMAIL, PASSWORD).await);
    let deleted = events(&app, "user.delete").await;
    assert_eq!(deleted.len(), 1);
    assert_by_api(&deleted[0], &api, &gone, &user);
    let mails_after_delete = app.settled().await.len();
    let again = api.call(Method::DELETE, &format!("users/{id}"), None).await;
    assert_eq!(again.body["changed"], false, "{}", again.body);
    assert_eq!(events(&app, "user.delete").await.len(), 1);
    // A deleted account is past support's actions: refused, and nobody is mailed.
    api.post(&format!("users/{id}/freeze"), json!({ "reason": "x" }))
        .await
        .assert_problem(409);
    for action in ["sign-out", "reset-2fa"] {
        api.call(Method::POST, &format!("users/{id}/{action}"), None)
            .await
            .assert_problem(409);
    }
    assert_eq!(app.settled().await.len(), mails_after_delete);
    // Still shown (it is kept for the retention period).
    let shown = api.get(&format!("users/{id}")).await;
    assert_eq!(shown.body["status"], "deleted", "{}", shown.body);
}

/// Every page of `query`, `limit` at a time; the items and how many pages.
async fn all_pages(api: &AdminApi, query: &str, limit: u32) -> (Vec<Value>, usize) {
    let (mut items, mut pages) = (Vec::new(), 0);
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("users?limit={limit}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        pages += 1;
        let got = page.body["items"].as_array().unwrap();
        assert!(got.len() <= limit as usize);
        items.extend(got.iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (items, pages),
        }
        assert!(pages < 50, "the pages end");
    }
}

#[tokio::test]
async fn search_finds_accounts_by_address_sub_and_id_and_pages_without_duplicates() {
    let app = TestApp::spawn().await;
    let api = app.admin_api().await;
    let mut made = Vec::new();
    for n in 0..7 {
        made.push(
            app.add_user(&format!("member{n}@example.jp"), PASSWORD)
                .await,
        );
        app.clock().advance(time::Duration::milliseconds(5));
    }

    // Three pages of three (the last one short), each account once, newest first.
    let (items, pages) = all_pages(&api, "", 3).await;
    assert_eq!(pages, 3);
    let ids: Vec<String> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let mut expected: Vec<String> = made.iter().map(|u| u.id.0.to_string()).collect();
    expected.reverse();
    assert_eq!(ids, expected, "every account once, the newest first");
    // Exactly a page's worth: no next cursor, no empty page after it.
    let (_, pages) = all_pages(&api, "", 7).await;
    assert_eq!(pages, 1);
    // A cursor stays valid while accounts are added: the next page is the same.
    let first = api.get("users?limit=3").await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    app.add_user("latecomer@example.jp", PASSWORD).await;
    let second = api.get(&format!("users?limit=3&cursor={cursor}")).await;
    assert_eq!(second.body["items"][0]["id"], ids[3].as_str());

    // By address (normalised: case and width do not matter), sub and id.
    let target = &made[4];
    for q in [
        "member4@example.jp".to_owned(),
        "MEMBER4@Example.JP".to_owned(),
        "ｍｅｍｂｅｒ４@example.jp".to_owned(),
        target.sub.as_str().to_owned(),
        target.id.0.to_string(),
    ] {
        let escaped: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
        let found = api.get(&format!("users?q={escaped}")).await;
        assert_eq!(found.status, 200, "{}", found.body);
        let items = found.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{q}: {}", found.body);
        assert_eq!(items[0]["id"], target.id.0.to_string(), "{q}");
    }
    for q in [
        "nobody@example.jp",
        "member4",
        "00000000-0000-0000-0000-000000000000",
    ] {
        let found = api.get(&format!("users?q={q}")).await;
        assert_eq!(found.body["items"], json!([]), "{q}");
    }

    // By state.
    api.post(
        &format!("users/{}/freeze", made[2].id.0),
        json!({ "reason": "調査中" }),
    )
    .await;
    let frozen = api.get("users?status=frozen").await;
    let frozen = frozen.body["items"].as_array().unwrap();
    assert_eq!(frozen.len(), 1);
    assert_eq!(frozen[0]["id"], made[2].id.0.to_string());
    assert_eq!(frozen[0]["frozen_reason"], "調査中");
    let (active, _) = all_pages(&api, "&status=active", 200).await;
    assert_eq!(active.len(), 7, "six of the seven, and the latecomer");
    assert_eq!(
        api.get("users?status=unverified").await.body["items"],
        json!([])
    );
    let (frozen_paged, pages) = all_pages(&api, "&status=frozen", 1).await;
    assert_eq!((frozen_paged.len(), pages), (1, 1));
}

/// `tobira` against the app's database and data directory (so its master key), as the
/// operator `operator`.
fn cli(app: &TestApp, args: &[&str]) -> Output {
    cli_with(&app.state.config, args)
}

fn cli_with(config: &tobira_auth::Config, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(&config.data_dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("USER", "operator")
        .env("TOBIRA_DATA_DIR", &config.data_dir)
        .env("TOBIRA_DATABASE__URL", config.database_url())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_cli_and_the_api_apply_the_same_freeze_rule_and_both_record_it() {
    let app = TestApp::spawn_with(|c| c.account.new_device_mail = false).await;
    let hanako = app.add_user(EMAIL, PASSWORD).await;
    let taro = app.add_user("taro@example.jp", PASSWORD).await;
    let api = app.admin_api().await;

    // The same refusal, in the same words, for the same reasons.
    for reason in ["x".repeat(501), "first\nsecond".to_owned(), "  ".to_owned()] {
        let out = cli(
            &app,
            &["users", "freeze", "--email", EMAIL, "--reason", &reason],
        );
        assert!(!out.status.success(), "{reason:?}");
        let r = api
            .post(
                &format!("users/{}/freeze", hanako.id.0),
                json!({ "reason": reason }),
            )
            .await;
        r.assert_problem(422);
        let said = r.body["detail"].as_str().unwrap();
        assert!(!said.is_empty());
        assert!(
            stderr(&out).contains(said),
            "CLI: {} / API: {said}",
            stderr(&out)
        );
    }
    assert_eq!(app.reload(&hanako).await.status, UserStatus::Active);

    // Both freeze, and both are recorded: by the operator at the CLI, by the client.
    let out = cli(
        &app,
        &[
            "users",
            "freeze",
            "--email",
            EMAIL,
            "--reason",
            "規約違反の疑い",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = api
        .post(
            &format!("users/{}/freeze", taro.id.0),
            json!({ "reason": "規約違反の疑い" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let recorded = events(&app, "user.freeze").await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    let by_cli = recorded
        .iter()
        .find(|e| e.target == hanako.id.0.to_string())
        .unwrap();
    assert_eq!(by_cli.actor_kind, "support");
    assert_eq!(by_cli.actor, "operator");
    assert_eq!((by_cli.ip.as_str(), by_cli.request_id.as_str()), ("", ""));
    assert_eq!(by_cli.detail["reason"], "規約違反の疑い");
    let by_api = recorded
        .iter()
        .find(|e| e.target == taro.id.0.to_string())
        .unwrap();
    assert_by_api(by_api, &api, &r, &taro);
    assert_eq!(by_api.detail, by_cli.detail);
    // The CLI's `users show` and the API show the same account alike.
    let shown = cli(&app, &["users", "show", "--email", EMAIL, "--json"]);
    let shown: Value = serde_json::from_str(stdout(&shown).trim()).unwrap();
    let api_shown = api.get(&format!("users/{}", hanako.id.0)).await.body;
    assert_eq!(shown, api_shown);

    // Unlock at the CLI: queued, applied by the running server, recorded as support's.
    // The command waits for the server, which runs on this test's thread: off it. The
    // job is due at the command's time, a real one: the app's clock is moved past it.
    app.ahead_of_the_system_clock();
    let out = {
        let config = app.state.config.clone();
        tokio::task::spawn_blocking(move || {
            cli_with(&config, &["users", "unlock", "--email", "taro@example.jp"])
        })
        .await
        .unwrap()
    };
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("unlocked"), "{}", stderr(&out));
    let unlocked = events(&app, "user.unlock").await;
    assert_eq!(unlocked.len(), 1);
    assert_eq!(unlocked[0].actor_kind, "support");
    assert_eq!(unlocked[0].target, taro.id.0.to_string());
}
