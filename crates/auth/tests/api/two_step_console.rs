//! `/account/2fa`: turning the authenticator app on by reading the key from the page,
//! recovery codes (shown once, downloadable for ten minutes, regenerated, counted down,
//! warned of), codes by email, turning it all off; each with its mail and history entry.
//! Hostile: stale and password-only sessions, wrong and malformed enrolment codes (counted
//! and locked like sign-in codes), replayed codes, another session's enrolment, cross-site
//! and tokenless forms.

use time::Duration;
use tobira_auth::authn::second_step::{self, TOTP_ISSUER};
use tobira_auth::authn::totp::Authenticator;
use tobira_auth::domain::User;
use tobira_auth::store::{LoginEvent, LoginResult, NewSession};

use crate::console::to_sign_in;
use crate::helpers::{Browser, OutboxMail, Page, TestApp};
use crate::oidc::{EMAIL, PASSWORD};
use crate::sessions::{member, session_of, signed_in};
use crate::two_step;

const ON_SUBJECT: &str = "【Tobira】二段階認証が有効になりました";
const OFF_SUBJECT: &str = "【Tobira】二段階認証が無効になりました";
const CHANGED_SUBJECT: &str = "【Tobira】二段階認証の設定が変更されました";
const RENEWED_SUBJECT: &str = "【Tobira】リカバリーコードが再発行されました";
const WRONG: &str = "コードが正しくありません";
const MALFORMED: &str = "6桁の数字を入力してください";
const LOCKED: &str = "確認コードの誤りが続いたため";
const EXPIRED: &str = "設定の有効期限が切れたか";
const STATUS_ON: &str = "二段階認証: オン";
const STATUS_OFF: &str = "二段階認証: オフ";
const CROSS_SITE: &[(&str, &str)] = &[
    ("origin", "https://evil.example"),
    ("sec-fetch-site", "cross-site"),
];

/// The text inside the element with `id` (up to its first child tag).
fn text_of(page: &Page, id: &str) -> Option<String> {
    let start = page.body.find(&format!(r#"id="{id}""#))?;
    let open = start + page.body[start..].find('>')? + 1;
    let end = open + page.body[open..].find('<')?;
    Some(page.body[open..end].trim().to_owned())
}

fn has(page: &Page, id: &str) -> bool {
    page.body.contains(&format!(r#"id="{id}""#))
}

/// `/account/2fa`, which the browser's session may open.
async fn two_step_page(browser: &Browser) -> Page {
    two_step_page_at(browser, "/account/2fa").await
}

/// `/account/2fa` at `url` (with a notice after a change).
async fn two_step_page_at(browser: &Browser, url: &str) -> Page {
    let page = browser.get(url).await;
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

/// Starts an enrolment from the page's button; the enrolment page.
async fn start_enrolment(browser: &Browser) -> Page {
    let page = two_step_page(browser).await;
    assert!(has(&page, "totp-start"), "{}", page.body);
    let started = post(browser, &page, "/account/2fa/totp", &[("action", "start")]).await;
    assert_eq!(started.status, 303, "{}", started.body);
    assert_eq!(started.location.as_deref(), Some("/account/2fa/totp"));
    let enrol = browser.get("/account/2fa/totp").await;
    assert_eq!(enrol.status, 200, "{:?} {}", enrol.location, enrol.body);
    enrol
}

/// RFC 4648 base32, as the page shows the key (upper case, spaces between groups).
fn base32(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0_u64;
    let mut held = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c)
            .expect("a base32 letter") as u64;
        bits = (bits << 5) | v;
        held += 5;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
            bits &= (1 << held) - 1;
        }
    }
    out
}

/// The member's app, set up from the key the enrolment page shows (as a member types it).
fn app_from(enrol: &Page) -> Authenticator {
    let key = text_of(enrol, "totp-key").expect("the key on the page");
    let secret = base32(&key);
    assert_eq!(secret.len(), 20, "160 bits: {key}");
    Authenticator::new(&secret, TOTP_ISSUER, EMAIL).unwrap()
}

/// The code the app shows `steps` time steps from the app's clock now.
fn code(app: &TestApp, authenticator: &Authenticator, steps: i64) -> String {
    authenticator.code_at(app.clock().now().unix_timestamp() + 30 * steps)
}

/// A six-digit code that is none of the codes valid now (±1 step).
fn wrong_code(app: &TestApp, authenticator: &Authenticator) -> String {
    let valid: Vec<String> = (-1..=1).map(|s| code(app, authenticator, s)).collect();
    ["000000", "111111", "222222", "333333"]
        .into_iter()
        .find(|c| !valid.iter().any(|v| v == c))
        .unwrap()
        .to_owned()
}

async fn confirm(browser: &Browser, enrol: &Page, code: &str) -> Page {
    post(
        browser,
        enrol,
        "/account/2fa/totp",
        &[("action", "confirm"), ("code", code)],
    )
    .await
}

/// The recovery codes of a codes page, in order.
fn codes_of(page: &Page) -> Vec<String> {
    let start = page
        .body
        .find(r#"<ul id="recovery-codes">"#)
        .unwrap_or_else(|| panic!("no recovery codes: {}", page.body));
    let list = &page.body[start..start + page.body[start..].find("</ul>").unwrap()];
    list.split("<li>")
        .skip(1)
        .map(|item| item.split("</li>").next().unwrap().trim().to_owned())
        .collect()
}

/// Turns the authenticator app on through the pages; the app and the recovery codes.
async fn enrol(app: &TestApp, browser: &Browser) -> (Authenticator, Vec<String>) {
    let page = start_enrolment(browser).await;
    let authenticator = app_from(&page);
    let done = confirm(browser, &page, &code(app, &authenticator, 0)).await;
    assert_eq!(done.status, 200, "{:?} {}", done.location, done.body);
    (authenticator, codes_of(&done))
}

/// Follows an answer that sent the browser to sign in again, signs in with the password
/// and, on the second-step page, with `method` and `code` (`None`: the code mailed for
/// it); where it lands.
async fn signs_in_with_second_step(
    app: &TestApp,
    browser: &Browser,
    sent: &Page,
    method: &str,
    code: Option<&str>,
) -> String {
    let login = browser.get(to_sign_in(sent)).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let mails = app.settled().await.len();
    let posted = browser.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let location = posted.location.unwrap();
    assert!(
        location.starts_with("/login/second-step?tx="),
        "the password alone is not enough: {location}"
    );
    let page = browser.get(&location).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mailed;
    let code = match code {
        Some(c) => c,
        None => {
            let mail = app.wait_for_mails(mails + 1).await.pop().unwrap();
            mailed = mail
                .text
                .lines()
                .map(str::trim)
                .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
                .unwrap_or_else(|| panic!("a code in {}", mail.text))
                .to_owned();
            &mailed
        }
    };
    let done = two_step::submit(browser, &page, method, code, false).await;
    assert_eq!(done.status, 303, "{}", done.body);
    done.location.unwrap()
}

/// The account's history entries of `method` with `result` (changes are written with
/// the change; sign-ins after the answer, hence the wait). Read by kind, not by order: on
/// the tests' still clock every entry has the same time.
async fn recorded(
    app: &TestApp,
    user: &User,
    method: &str,
    result: LoginResult,
) -> Vec<LoginEvent> {
    app.settled().await;
    app.state
        .db
        .login_events()
        .page(user.id, None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.method == method && e.result == result)
        .collect()
}

fn with_subject(mails: &[OutboxMail], subject: &str) -> Vec<OutboxMail> {
    mails
        .iter()
        .filter(|m| m.subject == subject)
        .cloned()
        .collect()
}

/// Spends a recovery code of `user` in the store (as a sign-in elsewhere would); whether
/// it was unused.
async fn spend(app: &TestApp, user: &User, code: &str) -> bool {
    let hash = second_step::recovery_code_hash(&app.state.identifiers, user.id, code);
    app.state
        .db
        .two_step()
        .use_recovery_code(app.clock().now(), user.id, &hash)
        .await
        .unwrap()
}

/// Remembers `device` for `user` under the cookie secret whose hash is `secret`.
async fn remember(app: &TestApp, user: &User, device: &str, secret: &str) {
    app.state
        .db
        .two_step()
        .remember_device(
            app.clock().now(),
            user.id,
            device,
            secret.to_owned(),
            app.clock().now() + Duration::days(30),
        )
        .await
        .unwrap();
}

async fn remembered(app: &TestApp, user: &User, device: &str, secret: &str) -> bool {
    app.state
        .db
        .two_step()
        .is_remembered(app.clock().now(), user.id, device, secret)
        .await
        .unwrap()
}

/// A member with the authenticator app (set up in the store) and a console browser that
/// signed in with it; the app and the recovery codes.
async fn member_with_app(app: &TestApp) -> (User, Browser, two_step::App, Vec<String>) {
    let user = app.add_user(EMAIL, PASSWORD).await;
    let (authenticator, codes) = two_step::enrol_totp(app, &user).await;
    let browser = app.browser();
    let sent = browser.get("/account/2fa").await;
    let back =
        signs_in_with_second_step(app, &browser, &sent, "totp", Some(&authenticator.code(app)))
            .await;
    assert_eq!(back, "/account/2fa");
    (user, browser, authenticator, codes)
}

#[tokio::test]
async fn a_member_turns_on_the_authenticator_app_from_the_key_on_the_page() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let page = two_step_page(&browser).await;
    assert_eq!(text_of(&page, "two-step-status").unwrap(), STATUS_OFF);
    assert!(!has(&page, "recovery-left") && !has(&page, "two-step-off"));
    assert!(has(&page, "email-enable") && !has(&page, "totp-disable"));

    let enrol = start_enrolment(&browser).await;
    // The QR code is our own inline SVG: nothing the pages' CSP has to allow.
    let csp = enrol.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let qr = &enrol.body[enrol.body.find(r#"id="totp-qr""#).unwrap()..];
    assert!(
        qr.contains("<svg") && qr.contains("</svg>"),
        "{}",
        enrol.body
    );
    assert!(
        !enrol.body.contains("<?xml"),
        "no XML declaration inside HTML"
    );
    assert!(!qr.contains("style=") && !qr.contains("<script"));
    assert!(has(&enrol, "totp-code") && has(&enrol, "totp-confirm"));
    let key = text_of(&enrol, "totp-key").unwrap();
    assert!(
        key.split(' ').all(|g| g.len() == 4),
        "groups of four: {key}"
    );
    // A reload shows the same key: the enrolment waits for its first code.
    let again = browser.get("/account/2fa/totp").await;
    assert_eq!(text_of(&again, "totp-key").unwrap(), key);
    let authenticator = app_from(&enrol);

    let done = confirm(&browser, &enrol, &code(&app, &authenticator, 0)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let codes = codes_of(&done);
    assert_eq!(codes.len(), 10, "{codes:?}");
    let distinct: std::collections::BTreeSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), 10, "{codes:?}");
    assert!(
        codes
            .iter()
            .all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'),
        "{codes:?}"
    );
    let factors = app.state.db.two_step().factors(user.id).await.unwrap();
    assert!(factors.totp && !factors.email);
    assert_eq!(factors.recovery_left, 10);

    // The mail and the history entry, from this browser.
    let mails = app.settled().await;
    let on = with_subject(&mails, ON_SUBJECT);
    assert_eq!(on.len(), 1, "{mails:?}");
    assert_eq!(on[0].to, EMAIL);
    assert!(
        on[0].text.contains("認証アプリが登録されました"),
        "{}",
        on[0].text
    );
    assert!(on[0].text.contains("/account/2fa"), "{}", on[0].text);
    assert!(on[0].text.contains("/password/forgot"), "{}", on[0].text);
    let events = recorded(&app, &user, "totp", LoginResult::Enrolled).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.ip, "127.0.0.1");
    let session = session_of(&app, &browser).await.unwrap();
    assert_eq!(event.device_hash, session.device_id);
    let history = browser.get("/account/history").await;
    assert!(history.body.contains("認証アプリ"), "{}", history.body);

    // The overview says so, and links to the page.
    let overview = browser.get("/account").await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains(STATUS_ON), "{}", overview.body);
    assert!(overview.body.contains(r#"href="/account/2fa""#));

    // The session signed in with the password alone: changing the second steps now
    // takes one.
    let sent = browser.get("/account/2fa").await;
    app.clock().advance(Duration::seconds(30));
    let code_now = code(&app, &authenticator, 0);
    let back = signs_in_with_second_step(&app, &browser, &sent, "totp", Some(&code_now)).await;
    assert_eq!(back, "/account/2fa");
    let page = two_step_page(&browser).await;
    assert_eq!(text_of(&page, "two-step-status").unwrap(), STATUS_ON);
    assert_eq!(text_of(&page, "recovery-left").unwrap(), "10");
    assert!(!has(&page, "recovery-warning"));
    assert!(has(&page, "totp-disable") && has(&page, "two-step-off"));
    assert!(has(&page, "recovery-regenerate"));
}

#[tokio::test]
async fn the_recovery_codes_download_as_a_text_file_only_in_their_window_and_session() {
    let app = TestApp::spawn().await;
    let (_, browser) = member(&app).await;
    let other = signed_in(&app, EMAIL, "another browser").await;
    let (_, codes) = enrol(&app, &browser).await;
    // Any of our pages' tokens: the session now lacks the new second step, so the 2fa
    // page itself would ask for it.
    let page = browser.get("/account/history").await;

    let file = post(&browser, &page, "/account/2fa/recovery/download", &[]).await;
    assert_eq!(file.status, 200, "{}", file.body);
    assert_eq!(
        file.headers["content-type"].to_str().unwrap(),
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        file.headers["content-disposition"].to_str().unwrap(),
        r#"attachment; filename="tobira-recovery-codes.txt""#
    );
    assert_eq!(file.headers["cache-control"].to_str().unwrap(), "no-store");
    let lines: Vec<&str> = file.body.lines().collect();
    for code in &codes {
        assert!(lines.contains(&code.as_str()), "{code} in {}", file.body);
    }
    assert!(file.body.contains(EMAIL));

    // Another browser of the member has nothing to download.
    let other_page = other.get("/account/history").await;
    let none = post(&other, &other_page, "/account/2fa/recovery/download", &[]).await;
    assert_eq!(none.status, 410, "{}", none.body);
    assert!(!codes.iter().any(|c| none.body.contains(c.as_str())));

    // A minute before the window closes it still works; a second after, it is gone.
    app.clock().advance(Duration::minutes(9));
    let late = post(&browser, &page, "/account/2fa/recovery/download", &[]).await;
    assert_eq!(late.status, 200, "{}", late.body);
    app.clock().advance(Duration::seconds(61));
    let gone = post(&browser, &page, "/account/2fa/recovery/download", &[]).await;
    assert_eq!(gone.status, 410, "{}", gone.body);
    assert!(gone.body.contains("ダウンロードの有効期限が切れました"));
    assert!(!codes.iter().any(|c| gone.body.contains(c.as_str())));
    // Its address asked for directly leads to the page.
    let get = browser.get("/account/2fa/recovery/download").await;
    assert_eq!(get.status, 303);
}

#[tokio::test]
async fn the_confirming_code_cannot_sign_in_afterwards() {
    let app = TestApp::spawn().await;
    let (_, browser) = member(&app).await;
    let enrol_page = start_enrolment(&browser).await;
    let authenticator = app_from(&enrol_page);
    // The code of the next step: accepted at the enrolment (±1 step), and at a sign-in
    // within the same minute if its step were not stored.
    let confirming = code(&app, &authenticator, 1);
    let done = confirm(&browser, &enrol_page, &confirming).await;
    assert_eq!(done.status, 200, "{}", done.body);

    let phone = app.browser();
    let login = crate::console::sent_to_sign_in(&phone, "/account").await;
    let posted = phone.post_login(&login, EMAIL, PASSWORD).await;
    let page = phone.get(posted.location.as_deref().unwrap()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let replayed = two_step::submit(&phone, &page, "totp", &confirming, false).await;
    assert_ne!(replayed.status, 303, "the enrolment's code signed in");
    assert!(phone.cookie("tobira_session").is_none(), "not signed in");
    // The code of a later step does.
    app.clock().advance(Duration::seconds(60));
    let page = phone.get(posted.location.as_deref().unwrap()).await;
    let later =
        two_step::submit(&phone, &page, "totp", &code(&app, &authenticator, 0), false).await;
    assert_eq!(later.status, 303, "{}", later.body);
    assert_eq!(later.location.as_deref(), Some("/account"));
}

#[tokio::test]
async fn wrong_enrolment_codes_are_refused_and_counted_until_the_second_step_locks() {
    let app = TestApp::spawn_with(|c| c.account.reauth_minutes = 60).await;
    let (user, browser) = member(&app).await;
    let enrol_page = start_enrolment(&browser).await;
    let authenticator = app_from(&enrol_page);
    let wrong = wrong_code(&app, &authenticator);
    for n in 1..=9 {
        let refused = confirm(&browser, &enrol_page, &wrong).await;
        assert_eq!(refused.status, 400, "try {n}: {}", refused.body);
        assert!(refused.body.contains(WRONG), "try {n}: {}", refused.body);
        // The same key again: the enrolment goes on.
        assert_eq!(
            text_of(&refused, "totp-key"),
            text_of(&enrol_page, "totp-key")
        );
    }
    assert!(
        second_step::locked_until(&app.state, user.id)
            .await
            .unwrap()
            .is_none()
    );
    let tenth = confirm(&browser, &enrol_page, &wrong).await;
    assert_eq!(tenth.status, 429, "{}", tenth.body);
    assert!(tenth.body.contains(LOCKED), "{}", tenth.body);
    assert!(has(&tenth, "retry-after"), "{}", tenth.body);
    // Locked: the right code is not even checked, here or at a sign-in.
    let right = confirm(&browser, &enrol_page, &code(&app, &authenticator, 0)).await;
    assert_eq!(right.status, 429, "{}", right.body);
    assert!(!app.state.db.two_step().factors(user.id).await.unwrap().totp);
    assert!(
        second_step::locked_until(&app.state, user.id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(with_subject(&app.settled().await, ON_SUBJECT).is_empty());

    // After the window, a new enrolment goes through.
    app.clock().advance(Duration::minutes(16));
    let (_, codes) = enrol(&app, &browser).await;
    assert_eq!(codes.len(), 10);
}

#[tokio::test]
async fn malformed_enrolment_codes_are_refused_without_being_counted() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let enrol_page = start_enrolment(&browser).await;
    let authenticator = app_from(&enrol_page);
    let long = "1".repeat(10_000);
    let right = code(&app, &authenticator, 0);
    let spaced = format!("{}\u{0}{}", &right[..3], &right[3..]);
    let full_width: String = right
        .chars()
        .map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap())
        .collect();
    let malformed = [
        "",
        "12345",
        "1234567",
        "abcdef",
        "+12345",
        long.as_str(),
        spaced.as_str(),
        full_width.as_str(),
    ];
    // More of them than the account's ten tries: none is a guess.
    for bad in malformed.iter().chain(malformed.iter()) {
        let refused = confirm(&browser, &enrol_page, bad).await;
        assert_eq!(refused.status, 400, "{bad:?}: {}", refused.body);
        assert!(
            refused.body.contains(MALFORMED),
            "{bad:?}: {}",
            refused.body
        );
    }
    // A form without the code, with an unknown action, or with a field twice.
    let csrf = enrol_page.field("csrf").unwrap();
    for fields in [
        vec![("csrf", csrf.as_str()), ("action", "confirm")],
        vec![
            ("csrf", csrf.as_str()),
            ("action", "enable"),
            ("code", "123456"),
        ],
        vec![("csrf", csrf.as_str()), ("code", "123456")],
        vec![
            ("csrf", csrf.as_str()),
            ("action", "confirm"),
            ("action", "start"),
            ("code", "123456"),
        ],
    ] {
        let refused = browser.post_form("/account/2fa/totp", &fields).await;
        assert_eq!(refused.status, 400, "{fields:?}: {}", refused.body);
    }
    assert!(
        second_step::locked_until(&app.state, user.id)
            .await
            .unwrap()
            .is_none()
    );
    // The code as the app shows it, with a space, goes through.
    let shown = format!("{} {}", &right[..3], &right[3..]);
    let done = confirm(&browser, &enrol_page, &shown).await;
    assert_eq!(done.status, 200, "{}", done.body);
}

#[tokio::test]
async fn a_confirmation_without_this_sessions_enrolment_changes_nothing() {
    let app = TestApp::spawn_with(|c| c.account.reauth_minutes = 60).await;
    let (user, browser) = member(&app).await;
    let other = signed_in(&app, EMAIL, "another browser").await;

    // Never started.
    let page = two_step_page(&other).await;
    let refused = confirm(&other, &page, "123456").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains(EXPIRED), "{}", refused.body);

    // Started in the other browser: its code is nothing here.
    let enrol_page = start_enrolment(&browser).await;
    let authenticator = app_from(&enrol_page);
    let page = two_step_page(&other).await;
    let refused = confirm(&other, &page, &code(&app, &authenticator, 0)).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains(EXPIRED), "{}", refused.body);
    assert_eq!(
        other.get("/account/2fa/totp").await.location.as_deref(),
        Some("/account/2fa"),
        "the other browser has no enrolment to show"
    );
    assert!(!app.state.db.two_step().factors(user.id).await.unwrap().totp);

    // Nor another member's browser.
    crate::sessions::second_member(&app).await;
    let stranger = signed_in(&app, "taro@example.jp", "tests").await;
    let page = two_step_page(&stranger).await;
    let refused = confirm(&stranger, &page, &code(&app, &authenticator, 0)).await;
    assert_eq!(refused.status, 400, "{}", refused.body);

    // Past its ten minutes, the enrolment is gone.
    app.clock()
        .advance(Duration::minutes(10) + Duration::seconds(1));
    let late = confirm(&browser, &enrol_page, &code(&app, &authenticator, 0)).await;
    assert_eq!(late.status, 400, "{}", late.body);
    assert!(late.body.contains(EXPIRED), "{}", late.body);
    assert!(!app.state.db.two_step().factors(user.id).await.unwrap().totp);
    assert!(with_subject(&app.settled().await, ON_SUBJECT).is_empty());
    assert!(
        second_step::locked_until(&app.state, user.id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn stale_and_password_only_sessions_are_sent_to_sign_in_with_the_second_step() {
    let app = TestApp::spawn().await;
    let (user, before) = member(&app).await;
    let csrf = two_step_page(&before).await.field("csrf").unwrap();

    // Another browser turns the app on: the first one signed in with the password alone.
    let (authenticator, _) = enrol(&app, &signed_in(&app, EMAIL, "phone").await).await;
    let mails = app.settled().await.len();
    for (path, action) in [
        ("/account/2fa/totp", "disable"),
        ("/account/2fa/totp", "start"),
        ("/account/2fa/email", "enable"),
        ("/account/2fa/off", ""),
        ("/account/2fa/recovery", ""),
    ] {
        let sent = before
            .post_form(path, &[("csrf", csrf.as_str()), ("action", action)])
            .await;
        to_sign_in(&sent);
    }
    let sent = before.get("/account/2fa").await;
    let factors = app.state.db.two_step().factors(user.id).await.unwrap();
    assert!(factors.totp && !factors.email && factors.recovery_left == 10);
    assert_eq!(
        app.settled().await.len(),
        mails,
        "nothing changed, nothing mailed"
    );
    // The pages that need no recent sign-in still open.
    assert_eq!(before.get("/account").await.status, 200);

    // A session whose sign-in skipped the second step (a remembered device) is the same.
    let (_, secret) = app
        .state
        .db
        .sessions()
        .create(
            app.clock(),
            &mut rand::rng(),
            NewSession {
                user_id: user.id,
                amr: vec!["pwd".to_owned()],
                acr: "1".to_owned(),
                device_id: String::new(),
                ip: "127.0.0.1".to_owned(),
                user_agent: "tests".to_owned(),
                remember: false,
                lifetime: Duration::hours(1),
            },
        )
        .await
        .unwrap();
    let remembered = app
        .http
        .get(app.url.join("/account/2fa").unwrap())
        .header("cookie", format!("tobira_session={secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(remembered.status(), 303);
    let location = remembered.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("/login?tx="), "{location}");

    // Signing in again asks for the code, and comes back.
    app.clock().advance(Duration::seconds(30));
    let back = signs_in_with_second_step(
        &app,
        &before,
        &sent,
        "totp",
        Some(&code(&app, &authenticator, 0)),
    )
    .await;
    assert_eq!(back, "/account/2fa");
    let session = session_of(&app, &before).await.unwrap();
    let factors = app.state.db.two_step().factors(user.id).await.unwrap();
    assert!(second_step::session_passed_second_step(
        &session.amr,
        &factors
    ));
    two_step_page(&before).await;

    // Stale: past the re-authentication window, the same again.
    app.clock().advance(Duration::minutes(11));
    let stale = before.get("/account/2fa").await;
    to_sign_in(&stale);
    let stale_post = before
        .post_form(
            "/account/2fa/totp",
            &[("csrf", csrf.as_str()), ("action", "disable")],
        )
        .await;
    assert!(app.state.db.two_step().factors(user.id).await.unwrap().totp);
    let back = signs_in_with_second_step(
        &app,
        &before,
        &stale_post,
        "totp",
        Some(&code(&app, &authenticator, 0)),
    )
    .await;
    // A stale form comes back to its page (a GET), and changes nothing by itself.
    assert_eq!(back, "/account/2fa/totp");
    let landed = before.get(&back).await;
    assert_eq!(landed.location.as_deref(), Some("/account/2fa"));
    assert!(app.state.db.two_step().factors(user.id).await.unwrap().totp);
}

#[tokio::test]
async fn a_stale_session_of_an_account_without_two_step_signs_in_with_the_password_again() {
    let app = TestApp::spawn().await;
    let (_, browser) = member(&app).await;
    let csrf = two_step_page(&browser).await.field("csrf").unwrap();
    app.clock().advance(Duration::minutes(11));
    let stale = browser
        .post_form(
            "/account/2fa/totp",
            &[("csrf", csrf.as_str()), ("action", "start")],
        )
        .await;
    let back = crate::console::signs_in_again(&browser, &stale).await;
    assert_eq!(back.as_deref(), Some("/account/2fa/totp"));
    // Nothing was started by the stale form.
    assert_eq!(
        browser.get("/account/2fa/totp").await.location.as_deref(),
        Some("/account/2fa")
    );
    two_step_page(&browser).await;
}

#[tokio::test]
async fn forms_from_other_sites_without_a_token_or_malformed_change_nothing() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;
    let mails = app.settled().await.len();
    let page = two_step_page(&browser).await;
    let csrf = page.field("csrf").unwrap();
    let forged = "f".repeat(43);
    let forms: [(&str, &str); 6] = [
        ("/account/2fa/totp", "start"),
        ("/account/2fa/totp", "confirm"),
        ("/account/2fa/email", "enable"),
        ("/account/2fa/recovery", ""),
        ("/account/2fa/recovery/download", ""),
        ("/account/2fa/off", ""),
    ];
    for (path, action) in forms {
        let cross = browser
            .post_form_with(
                path,
                &[("csrf", csrf.as_str()), ("action", action)],
                CROSS_SITE,
            )
            .await;
        assert_eq!(cross.status, 403, "{path} cross-site: {}", cross.body);
        assert!(cross.body.contains("別のサイトから送信されたため"));
        let tokenless = browser.post_form(path, &[("action", action)]).await;
        assert_eq!(
            tokenless.status, 403,
            "{path} tokenless: {}",
            tokenless.body
        );
        let forged = browser
            .post_form(path, &[("csrf", forged.as_str()), ("action", action)])
            .await;
        assert_eq!(forged.status, 403, "{path} forged: {}", forged.body);
    }
    for (path, fields) in [
        ("/account/2fa/email", vec![("action", "on")]),
        ("/account/2fa/email", vec![]),
        (
            "/account/2fa/email",
            vec![("action", "enable"), ("action", "disable")],
        ),
        ("/account/2fa/totp", vec![("action", "START")]),
    ] {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields);
        let refused = browser.post_form(path, &form).await;
        assert_eq!(refused.status, 400, "{path} {form:?}: {}", refused.body);
    }
    let factors = app.state.db.two_step().factors(user.id).await.unwrap();
    assert!(!factors.any() && factors.recovery_left == 0);
    assert_eq!(
        browser.get("/account/2fa/totp").await.location.as_deref(),
        Some("/account/2fa"),
        "no enrolment was started"
    );
    assert_eq!(app.settled().await.len(), mails, "nothing mailed");
    // The real form still works.
    let started = post(&browser, &page, "/account/2fa/totp", &[("action", "start")]).await;
    assert_eq!(started.status, 303, "{}", started.body);
}

#[tokio::test]
async fn recovery_codes_count_down_after_a_sign_in_with_one_and_few_left_are_warned_of() {
    let app = TestApp::spawn().await;
    let user = app.add_user(EMAIL, PASSWORD).await;
    let (_, codes) = two_step::enrol_totp(&app, &user).await;
    let browser = app.browser();
    let sent = browser.get("/account/2fa").await;
    let back = signs_in_with_second_step(&app, &browser, &sent, "recovery", Some(&codes[0])).await;
    assert_eq!(back, "/account/2fa");
    let page = two_step_page(&browser).await;
    assert_eq!(text_of(&page, "recovery-left").unwrap(), "9");
    assert!(!has(&page, "recovery-warning"));

    // Five more used elsewhere: four left, no warning yet; one more: three, warned.
    for c in &codes[1..6] {
        assert!(spend(&app, &user, c).await);
    }
    let page = two_step_page(&browser).await;
    assert_eq!(text_of(&page, "recovery-left").unwrap(), "4");
    assert!(!has(&page, "recovery-warning"));
    assert!(!has(&browser.get("/account").await, "recovery-warning"));
    assert!(spend(&app, &user, &codes[6]).await);
    let page = two_step_page(&browser).await;
    assert_eq!(text_of(&page, "recovery-left").unwrap(), "3");
    assert!(has(&page, "recovery-warning"), "{}", page.body);
    let overview = browser.get("/account").await;
    assert!(has(&overview, "recovery-warning"), "{}", overview.body);
}

#[tokio::test]
async fn new_recovery_codes_replace_every_old_one_with_a_mail_and_history() {
    let app = TestApp::spawn().await;
    let (user, browser, _, old) = member_with_app(&app).await;
    let page = two_step_page(&browser).await;
    let renewed = post(&browser, &page, "/account/2fa/recovery", &[]).await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    assert!(renewed.body.contains("リカバリーコードを再発行しました"));
    let codes = codes_of(&renewed);
    assert_eq!(codes.len(), 10);
    assert!(!codes.iter().any(|c| old.contains(c)));
    let factors = app.state.db.two_step().factors(user.id).await.unwrap();
    assert_eq!(factors.recovery_left, 10);
    // The old ones are dead; the new ones work.
    assert!(!spend(&app, &user, &old[1]).await);
    assert!(spend(&app, &user, &codes[0]).await);
    assert_eq!(
        recorded(&app, &user, "recovery_code", LoginResult::Enrolled)
            .await
            .len(),
        1
    );
    let mails = app.settled().await;
    let mail = with_subject(&mails, RENEWED_SUBJECT);
    assert_eq!(mail.len(), 1, "{mails:?}");
    assert!(mail[0].text.contains("以前のコードは使えなくなりました"));
    // Their download is this browser's.
    let file = post(&browser, &page, "/account/2fa/recovery/download", &[]).await;
    assert_eq!(file.status, 200);
    assert!(codes.iter().all(|c| file.body.contains(c.as_str())));
    assert!(!old.iter().any(|c| file.body.contains(c.as_str())));
}

#[tokio::test]
async fn replacing_the_app_refuses_the_old_one_and_forgets_other_remembered_devices() {
    let app = TestApp::spawn().await;
    let (user, browser, old_app, _) = member_with_app(&app).await;
    let this_device = session_of(&app, &browser).await.unwrap().device_id;
    remember(&app, &user, &this_device, "secret-here").await;
    remember(&app, &user, "other-device", "secret-elsewhere").await;

    let enrol_page = start_enrolment(&browser).await;
    assert!(
        enrol_page
            .body
            .contains("これまでの認証アプリのコードは使えなくなります"),
        "{}",
        enrol_page.body
    );
    let new_app = app_from(&enrol_page);
    app.clock().advance(Duration::seconds(30));
    let done = confirm(&browser, &enrol_page, &code(&app, &new_app, 0)).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some("/account/2fa?done=totp-replaced")
    );
    let page = two_step_page_at(&browser, "/account/2fa?done=totp-replaced").await;
    assert!(page.body.contains("認証アプリを変更しました"));
    assert_eq!(text_of(&page, "recovery-left").unwrap(), "10", "kept");

    assert!(
        remembered(&app, &user, &this_device, "secret-here").await,
        "this device stays"
    );
    assert!(!remembered(&app, &user, "other-device", "secret-elsewhere").await);
    // The old app's code is refused, the new one's accepted (a later step).
    let reloaded = app.reload(&user).await;
    app.clock().advance(Duration::seconds(30));
    assert!(
        !second_step::check_totp(&app.state, &reloaded, &old_app.code(&app))
            .await
            .unwrap()
    );
    assert!(
        second_step::check_totp(&app.state, &reloaded, &code(&app, &new_app, 0))
            .await
            .unwrap()
    );
    let mails = app.settled().await;
    let changed = with_subject(&mails, CHANGED_SUBJECT);
    assert_eq!(changed.len(), 1, "{mails:?}");
    assert!(changed[0].text.contains("別のものに変更されました"));
    assert!(with_subject(&mails, ON_SUBJECT).is_empty());
}

#[tokio::test]
async fn email_codes_turn_on_and_off_and_two_step_turns_off_altogether() {
    let app = TestApp::spawn().await;
    let (user, browser) = member(&app).await;

    // Codes by email as the first factor: recovery codes come with it.
    let page = two_step_page(&browser).await;
    let on = post(
        &browser,
        &page,
        "/account/2fa/email",
        &[("action", "enable")],
    )
    .await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(codes_of(&on).len(), 10);
    let factors = app.state.db.two_step().factors(user.id).await.unwrap();
    assert!(factors.email && !factors.totp && factors.recovery_left == 10);
    assert_eq!(
        recorded(&app, &user, "email_code", LoginResult::Enrolled)
            .await
            .len(),
        1
    );
    let mails = app.settled().await;
    let mail = with_subject(&mails, ON_SUBJECT);
    assert_eq!(mail.len(), 1, "{mails:?}");
    assert!(
        mail[0]
            .text
            .contains("メールで確認コードを受け取る設定が有効")
    );

    // The page now takes a sign-in with an emailed code.
    let sent = browser.get("/account/2fa").await;
    let back = signs_in_with_second_step(&app, &browser, &sent, "email", None).await;
    assert_eq!(back, "/account/2fa");
    let page = two_step_page(&browser).await;
    assert_eq!(text_of(&page, "email-state").unwrap(), "設定済み");
    assert!(has(&page, "email-disable") && !has(&page, "email-enable"));

    // Adding the app to it: no new recovery codes, a "changed" mail.
    let (authenticator, codes) = {
        let enrol_page = start_enrolment(&browser).await;
        let authenticator = app_from(&enrol_page);
        let done = confirm(&browser, &enrol_page, &code(&app, &authenticator, 0)).await;
        assert_eq!(done.status, 303, "{}", done.body);
        assert_eq!(done.location.as_deref(), Some("/account/2fa?done=totp-on"));
        (authenticator, Vec::<String>::new())
    };
    assert!(codes.is_empty());
    assert_eq!(with_subject(&app.settled().await, CHANGED_SUBJECT).len(), 1);

    // With the app on, an emailed code no longer vouches for the session: whoever holds
    // the mailbox and the password must not remove the app. The app's next code does.
    let sent = browser.get("/account/2fa").await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    app.clock().advance(Duration::seconds(30));
    let back = signs_in_with_second_step(
        &app,
        &browser,
        &sent,
        "totp",
        Some(&code(&app, &authenticator, 0)),
    )
    .await;
    assert_eq!(back, "/account/2fa");

    // Email codes off: the app remains.
    let page = two_step_page(&browser).await;
    let off = post(
        &browser,
        &page,
        "/account/2fa/email",
        &[("action", "disable")],
    )
    .await;
    assert_eq!(off.status, 303, "{}", off.body);
    assert_eq!(off.location.as_deref(), Some("/account/2fa?done=email-off"));
    let factors = app.state.db.two_step().factors(user.id).await.unwrap();
    assert!(!factors.email && factors.totp && factors.recovery_left == 10);
    assert_eq!(
        recorded(&app, &user, "email_code", LoginResult::Removed)
            .await
            .len(),
        1
    );
    assert_eq!(with_subject(&app.settled().await, CHANGED_SUBJECT).len(), 2);

    // Two-step off altogether: every factor, code and remembered device.
    remember(&app, &user, "a-device", "remembered").await;
    let page = two_step_page(&browser).await;
    let all_off = post(&browser, &page, "/account/2fa/off", &[]).await;
    assert_eq!(all_off.status, 303, "{}", all_off.body);
    assert_eq!(all_off.location.as_deref(), Some("/account/2fa?done=off"));
    let factors = app.state.db.two_step().factors(user.id).await.unwrap();
    assert!(!factors.any() && factors.recovery_left == 0);
    assert!(!remembered(&app, &user, "a-device", "remembered").await);
    assert_eq!(
        recorded(&app, &user, "two_step", LoginResult::Removed)
            .await
            .len(),
        1
    );
    let mails = app.settled().await;
    let off_mail = with_subject(&mails, OFF_SUBJECT);
    assert_eq!(off_mail.len(), 1, "{mails:?}");
    assert!(
        off_mail[0].text.contains("パスワードだけ"),
        "{}",
        off_mail[0].text
    );
    let page = two_step_page_at(&browser, "/account/2fa?done=off").await;
    assert!(page.body.contains("二段階認証をオフにしました"));
    assert_eq!(text_of(&page, "two-step-status").unwrap(), STATUS_OFF);
    assert!(browser.get("/account").await.body.contains(STATUS_OFF));
    // The member signs in with the password alone again.
    let fresh = signed_in(&app, EMAIL, "after").await;
    assert_eq!(fresh.get("/account").await.status, 200);
}

#[tokio::test]
async fn removing_the_only_app_turns_two_step_off_and_its_codes_go_with_it() {
    let app = TestApp::spawn().await;
    let (user, browser, _, codes) = member_with_app(&app).await;
    let page = two_step_page(&browser).await;
    let off = post(
        &browser,
        &page,
        "/account/2fa/totp",
        &[("action", "disable")],
    )
    .await;
    assert_eq!(off.status, 303, "{}", off.body);
    assert_eq!(off.location.as_deref(), Some("/account/2fa?done=totp-off"));
    let factors = app.state.db.two_step().factors(user.id).await.unwrap();
    assert!(!factors.any() && factors.recovery_left == 0);
    assert!(!spend(&app, &user, &codes[0]).await);
    assert_eq!(
        recorded(&app, &user, "totp", LoginResult::Removed)
            .await
            .len(),
        1
    );
    let history = browser.get("/account/history").await;
    assert!(history.body.contains("解除"), "{}", history.body);
    let mails = app.settled().await;
    let mail = with_subject(&mails, OFF_SUBJECT);
    assert_eq!(mail.len(), 1, "{mails:?}");
    assert!(mail[0].text.contains("認証アプリの登録が解除されました"));
    // Sent again (a second tab), it does nothing more.
    let again = post(
        &browser,
        &page,
        "/account/2fa/totp",
        &[("action", "disable")],
    )
    .await;
    assert_eq!(again.location.as_deref(), Some("/account/2fa"));
    assert_eq!(with_subject(&app.settled().await, OFF_SUBJECT).len(), 1);
}

#[tokio::test]
async fn a_member_reading_english_gets_the_page_and_the_mail_in_english() {
    let app = TestApp::spawn().await;
    crate::sessions::second_member(&app).await;
    let browser = signed_in(&app, "taro@example.jp", "tests").await;
    let page = two_step_page(&browser).await;
    assert_eq!(
        text_of(&page, "two-step-status").unwrap(),
        "Two-step verification: off"
    );
    let on = post(
        &browser,
        &page,
        "/account/2fa/email",
        &[("action", "enable")],
    )
    .await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert!(
        on.body.contains("Two-step verification is on"),
        "{}",
        on.body
    );
    let mails = app.settled().await;
    let mail = with_subject(&mails, "[Tobira] Two-step verification is on");
    assert_eq!(mail.len(), 1, "{mails:?}");
    assert!(
        mail[0].text.starts_with("Hello 鈴木 太郎,"),
        "{}",
        mail[0].text
    );
}
