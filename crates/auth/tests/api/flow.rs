//! The parked authorization request: bound to the browser that started it, consent
//! honoured only for the session that gave it, answered once. Each test plays the
//! attacker the way he would, with his own browser (cookie jar) and client.

use crate::helpers::{Browser, Page, callback_params};
use crate::oidc::{EMAIL, PASSWORD, REDIRECT, authorize, setup, with_param};
use crate::protocol::third_party;

const ATTACKER: &str = "attacker@example.jp";
const ATTACKER_PASSWORD: &str = "quartz-harbour-mango-91";

/// Signs in on a sign-in page reached by following `url`; returns the OP's answer to
/// the form post (not followed).
async fn sign_in_from(browser: &Browser, url: &str, email: &str, password: &str) -> Page {
    let login = browser.follow(browser.get(url).await).await;
    assert_eq!(login.status, 200, "sign-in page: {}", login.body);
    let posted = browser.post_login(&login, email, password).await;
    assert_eq!(posted.status, 303, "signed in: {}", posted.body);
    posted
}

/// Posts "allow" on a consent page and returns the answer, not followed.
async fn allow(browser: &Browser, consent: &Page) -> Page {
    let (csrf, tx) = (consent.field("csrf").unwrap(), consent.field("tx").unwrap());
    browser
        .post_form(
            "/consent",
            &[("csrf", &csrf), ("tx", &tx), ("decision", "allow")],
        )
        .await
}

fn is_code_redirect(page: &Page) -> bool {
    page.location
        .as_deref()
        .is_some_and(|l| l.starts_with(REDIRECT) && callback_params(l).contains_key("code"))
}

#[tokio::test]
async fn a_continue_link_allowed_by_the_attacker_gives_no_code_in_the_victims_browser() {
    // The attacker registered a third-party client and asks for offline access.
    let s = setup(third_party()).await;
    s.app.add_user(ATTACKER, ATTACKER_PASSWORD).await;
    let attacker = s.app.browser();
    let mut pending = authorize(&s.rp, &[]);
    pending.url = with_param(&pending.url, "scope", "openid email offline_access");
    let posted = sign_in_from(&attacker, &pending.url, ATTACKER, ATTACKER_PASSWORD).await;
    let consent = attacker.follow(posted).await;
    assert!(
        consent.body.contains(r#"value="allow""#),
        "{}",
        consent.body
    );
    // "Allow", without following the redirect: the link to hand out.
    let allowed = allow(&attacker, &consent).await;
    let link = allowed.location.clone().expect("a redirect to continue");
    assert!(link.contains("/authorize/continue?tx="), "{link}");

    // The victim is signed in to Tobira in her own browser (SSO from another app).
    let victim = s.app.browser();
    let own = authorize(&s.rp, &[]);
    let _ = sign_in_from(&victim, &own.url, EMAIL, PASSWORD).await;
    assert!(victim.cookie("tobira_session").is_some());

    // She opens the attacker's link: no code, a page telling her what happened.
    let opened = victim.get(&link).await;
    assert!(!is_code_redirect(&opened), "{:?}", opened.location);
    assert_eq!(opened.status, 403, "{}", opened.body);
    assert!(opened.body.contains("別のブラウザ"), "{}", opened.body);
    // Following every hop from there leads nowhere near the client either.
    let followed = victim.follow(opened).await;
    assert!(!is_code_redirect(&followed));
}

#[tokio::test]
async fn a_parked_request_cannot_be_picked_up_in_a_second_browser() {
    let s = setup(third_party()).await;
    let first = s.app.browser();
    let pending = authorize(&s.rp, &[]);
    let login = first.follow(first.get(&pending.url).await).await;
    let tx = login.field("tx").expect("a parked request");
    // The id is all a second browser has: the page, the form and continue all refuse.
    let second = s.app.browser();
    let page = second.get(&format!("/login?tx={tx}")).await;
    assert_eq!(page.status, 403, "{}", page.body);
    // It fetches a CSRF token of its own from a page of its own, then posts with tx.
    let own = second
        .follow(second.get(&authorize(&s.rp, &[]).url).await)
        .await;
    let csrf = own.field("csrf").unwrap();
    let posted = second
        .post_form(
            "/login",
            &[
                ("csrf", &csrf),
                ("tx", &tx),
                ("email", EMAIL),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(posted.status, 403, "{}", posted.body);
    assert!(second.cookie("tobira_session").is_none(), "no session made");
    for path in ["/authorize/continue", "/consent"] {
        let page = second.get(&format!("{path}?tx={tx}")).await;
        assert_eq!(page.status, 403, "{path}: {}", page.body);
    }
    // The browser that parked it still can.
    let back = first
        .follow(first.post_login(&login, EMAIL, PASSWORD).await)
        .await;
    assert_eq!(back.status, 200, "the consent page: {}", back.body);
    assert!(back.body.contains(r#"value="allow""#));
}

#[tokio::test]
async fn consent_given_by_one_session_is_asked_again_under_another() {
    let s = setup(third_party()).await;
    s.app.add_user(ATTACKER, ATTACKER_PASSWORD).await;
    let browser = s.app.browser();
    let pending = authorize(&s.rp, &[]);
    let posted = sign_in_from(&browser, &pending.url, ATTACKER, ATTACKER_PASSWORD).await;
    let consent = browser.follow(posted).await;
    let allowed = allow(&browser, &consent).await;
    let link = allowed.location.clone().unwrap();

    // Someone else signs in on the same browser (another tab) before the link is used.
    let other = authorize(&s.rp, &[("prompt", "login")]);
    let _ = sign_in_from(&browser, &other.url, EMAIL, PASSWORD).await;

    let resumed = browser.get(&link).await;
    assert!(!is_code_redirect(&resumed), "{:?}", resumed.location);
    let page = browser.follow(resumed).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(r#"value="allow""#),
        "asked again: {}",
        page.body
    );
}

#[tokio::test]
async fn two_concurrent_continues_of_one_request_give_one_code() {
    let s = setup(Default::default()).await;
    let browser = s.app.browser();
    for _ in 0..5 {
        let pending = authorize(&s.rp, &[("prompt", "login")]);
        let posted = sign_in_from(&browser, &pending.url, EMAIL, PASSWORD).await;
        let link = posted.location.clone().unwrap();
        let (a, b) = tokio::join!(browser.get(&link), browser.get(&link));
        let codes = [&a, &b].iter().filter(|p| is_code_redirect(p)).count();
        assert_eq!(codes, 1, "{:?} / {:?}", a.location, b.location);
        let other = if is_code_redirect(&a) { &b } else { &a };
        assert_eq!(other.status, 400, "{}", other.body);
    }
}

/// `prompt=login` and an exceeded `max_age` are met only by a sign-in made for the parked
/// request: a member already signed in who skips the sign-in page and opens the continue
/// link himself (as anyone can, the id is in the address bar) is sent back to sign in, not
/// given a code on the strength of his older session.
#[tokio::test]
async fn skipping_the_sign_in_a_request_asked_for_gives_no_code() {
    let s = setup(Default::default()).await;
    let browser = s.app.browser();
    let _ = sign_in_from(&browser, &authorize(&s.rp, &[]).url, EMAIL, PASSWORD).await;
    assert!(browser.cookie("tobira_session").is_some());
    for extra in [("prompt", "login"), ("max_age", "60")] {
        s.app.clock().advance(time::Duration::seconds(120));
        let pending = authorize(&s.rp, &[extra]);
        let asked = browser.get(&pending.url).await;
        let login = asked.location.clone().expect("sent to sign in");
        let tx = login
            .strip_prefix("/login?tx=")
            .unwrap_or_else(|| panic!("{extra:?}: {login}"));
        let skipped = browser.get(&format!("/authorize/continue?tx={tx}")).await;
        assert!(
            !is_code_redirect(&skipped),
            "{extra:?}: {:?}",
            skipped.location
        );
        assert_eq!(skipped.status, 303, "{extra:?}: {}", skipped.body);
        assert_eq!(
            skipped.location.as_deref(),
            Some(login.as_str()),
            "{extra:?}"
        );
        // Signing in on that page answers the request.
        let posted = sign_in_from(&browser, &login, EMAIL, PASSWORD).await;
        assert!(is_code_redirect(&browser.follow(posted).await), "{extra:?}");
    }
}

/// A validated request of `client` carrying `state`, as `/authorize` parks it.
fn request(state: &str) -> tobira_auth::oidc::authorize::AuthRequest {
    tobira_auth::oidc::authorize::AuthRequest {
        client_id: "client".to_owned(),
        client_name: "Client".to_owned(),
        redirect_uri: REDIRECT.to_owned(),
        scopes: vec!["openid".to_owned()],
        state: Some(state.to_owned()),
        nonce: None,
        code_challenge: None,
        prompt_none: false,
        prompt_login: false,
        prompt_consent: false,
        max_age: None,
        login_hint: None,
        ui_locales: None,
        hint_sub: None,
        form_post: false,
        acr_values: Vec::new(),
    }
}

#[tokio::test]
async fn a_park_holds_at_most_32_kib_and_its_id_at_most_64_characters() {
    // The parameter parser caps every value, so /authorize reaches neither limit: these
    // are the backstops, held to the byte and to the character.
    use tobira_auth::flow::{self, FlowError};
    let app = crate::helpers::TestApp::spawn().await;
    let (headers, binding) = crate::second_step::bound_headers(&app);
    let stored = |id: &str| {
        let (store, key) = (app.state.ephemeral.clone(), format!("login_tx:{id}"));
        async move { store.get(&key).await }
    };
    let id = flow::park(&app.state, &binding, request("")).await.unwrap();
    let room = 32 * 1024 - stored(&id).await.unwrap().unwrap().len();
    let full = flow::park(&app.state, &binding, request(&"x".repeat(room)))
        .await
        .unwrap();
    let bytes = stored(&full).await.unwrap().unwrap();
    assert_eq!(bytes.len(), 32 * 1024);
    let over = flow::park(&app.state, &binding, request(&"x".repeat(room + 1))).await;
    assert!(matches!(over, Err(FlowError::TooLarge)), "{over:?}");

    // Ids of 1 to 64 characters are looked up; an empty one or one of 65 is refused
    // without a lookup, even with a park of this browser stored under it.
    let until = app.clock().now() + time::Duration::minutes(30);
    for (id, looked_up) in [
        ("p".repeat(64), true),
        ("p".repeat(65), false),
        (String::new(), false),
    ] {
        let under = format!("login_tx:{id}");
        app.state
            .ephemeral
            .put(&under, &bytes, until)
            .await
            .unwrap();
        let resumed = flow::resume(&app.state, &headers, &id).await;
        match looked_up {
            true => assert!(resumed.is_ok(), "{}: {resumed:?}", id.len()),
            false => assert!(
                matches!(resumed, Err(FlowError::Expired)),
                "{}: {resumed:?}",
                id.len()
            ),
        }
    }
}
