//! Social sign-in end to end, with a real upstream: a second Tobira (kind `oidc`) on
//! `127.0.0.1`, the marketplace's Tobira on `localhost`, and one browser that visits both
//! (cookies per host, as browsers keep them). The member signs in at the upstream with its
//! password during each round trip; the marketplace's client reads the ID token with the
//! `openidconnect` crate. Covers account creation, an address another account uses (never
//! linked silently), the pre-hijacking case, the re-registration cooldown, frozen
//! accounts, the second step, console linking and unlinking, and bad callbacks.

use std::time::Duration as StdDuration;

use openidconnect::{Nonce, TokenResponse as _};
use tobira_auth::config::{Issuer, ProviderConfig, ProviderKind, Secret};
use tobira_auth::domain::{BrowserSession, User, UserStatus};
use tobira_auth::store::{LoginEvent, LoginResult};
use tobira_auth::web::i18n::Lang;

use crate::helpers::{ClientOpts, OutboxMail, Page, SiteBrowser, TestApp};
use crate::oidc::{EMAIL, Pending, REDIRECT, Setup, authorize, code_from, exchange};
use crate::rp::{self, Auth, Http, IdClaims};
use crate::upstreams::asks_to_sign_in_first;

/// The member's password at the upstream.
const UP_PASSWORD: &str = "violet-tunnel-ramen-42";
/// A password of the marketplace's own account with the same address.
const DOWN_PASSWORD: &str = "harbor-maple-quartz-77";
const OTHER_EMAIL: &str = "jiro@example.jp";
const OTHER_PASSWORD: &str = "copper-lantern-fjord-31";
/// The button's text (configured, so pages can be checked for it).
const LABEL: &str = "アップストリームID";
const LABEL_EN: &str = "Upstream ID";
/// The marketplace's client id at the upstream.
const CLIENT_AT_UP: &str = "marketplace-tobira";
/// The session cookie (`web::cookies::SESSION`; plain http: no `__Host-`).
const SESSION: &str = "tobira_session";
const NEW_DEVICE_SUBJECT: &str = "新しい端末からログインがありました";

/// The two OPs, the marketplace's client (as `Setup`, whose `app` is the marketplace's
/// Tobira) and a browser.
pub(crate) struct Fed {
    pub(crate) up: TestApp,
    pub(crate) s: Setup,
    pub(crate) browser: SiteBrowser,
}

/// An upstream Tobira with the member (`EMAIL`, verified), and a marketplace Tobira with
/// provider `up` pointing at it and a client of its own.
pub(crate) async fn fed() -> Fed {
    fed_with(|_| {}).await
}

async fn fed_with(configure: impl FnOnce(&mut tobira_auth::Config)) -> Fed {
    let up = TestApp::spawn_with(|c| {
        let port = c.server.bind.port();
        c.issuer = Issuer::parse(&format!("http://127.0.0.1:{port}")).expect("issuer");
    })
    .await;
    up.add_user(EMAIL, UP_PASSWORD).await;
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let up_issuer = up.issuer();
    let client_secret = secret.clone();
    let down = TestApp::spawn_with(move |c| {
        c.federation.providers.push(ProviderConfig {
            id: "up".to_owned(),
            kind: ProviderKind::Oidc,
            client_id: CLIENT_AT_UP.to_owned(),
            client_secret: Secret::new(client_secret),
            client_secret_file: String::new(),
            team_id: String::new(),
            key_id: String::new(),
            private_key_file: String::new(),
            issuer: up_issuer,
            scopes: Vec::new(),
            label: LABEL.to_owned(),
            label_en: LABEL_EN.to_owned(),
            authorization_endpoint: String::new(),
            token_endpoint: String::new(),
            userinfo_endpoint: String::new(),
            jwks_uri: String::new(),
            revocation_endpoint: String::new(),
            graph_endpoint: String::new(),
        });
        configure(c);
    })
    .await;
    tobira_auth::admin::clients::add_client(
        &up.state.db,
        &up.state.clock,
        tobira_auth::admin::clients::AddClient {
            name: "Marketplace".to_owned(),
            redirect_uris: vec![format!("{}/federation/up/callback", down.issuer())],
            post_logout_redirect_uris: Vec::new(),
            public: false,
            first_party: true,
            extra_grants: Vec::new(),
            client_id: Some(CLIENT_AT_UP.to_owned()),
            secret: Some(secret),
            id_token_alg: tobira_auth::keys::Alg::RS256,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            scopes: Vec::new(),
        },
    )
    .await
    .expect("the marketplace is a client of the upstream");
    let (client_id, secret) = down.add_client(ClientOpts::default()).await;
    let http = Http::new();
    let rp = rp::client(
        &http,
        &down.issuer(),
        &client_id,
        Auth::Basic(secret.clone().unwrap()),
        REDIRECT,
    )
    .await;
    let browser = down.browser();
    Fed {
        up,
        s: Setup {
            app: down,
            http,
            rp,
            client_id,
            secret,
            browser,
        },
        browser: SiteBrowser::new(),
    }
}

impl Fed {
    /// The marketplace's Tobira.
    pub(crate) fn down(&self) -> &TestApp {
        &self.s.app
    }

    fn down_url(&self, path: &str) -> String {
        format!("{}{path}", self.down().issuer())
    }

    fn callback_prefix(&self) -> String {
        self.down_url("/federation/up/callback")
    }

    /// The console's sign-in page (`/account` without a session).
    pub(crate) async fn console_sign_in_page(&self, b: &SiteBrowser) -> Page {
        let first = b.get(&self.down_url("/account")).await;
        assert_eq!(first.status, 303, "{}", first.body);
        let login = b.follow_until(first, REDIRECT).await;
        assert_eq!(
            login.status, 200,
            "the console's sign-in page: {}",
            login.body
        );
        login
    }

    /// The sign-in page of a client's authorization request.
    async fn client_sign_in_page(
        &self,
        b: &SiteBrowser,
        extra: &[(&str, &str)],
    ) -> (Pending, Page) {
        let pending = authorize(&self.s.rp, extra);
        let login = b.follow_until(b.get(&pending.url).await, REDIRECT).await;
        assert_eq!(login.status, 200, "the sign-in page: {}", login.body);
        (pending, login)
    }

    /// Presses the provider's button on the sign-in page `login`: the OP's answer.
    pub(crate) async fn press_button(&self, b: &SiteBrowser, login: &Page) -> Page {
        assert!(
            login.body.contains(r#"id="federation-up""#),
            "the provider's button: {}",
            login.body
        );
        let csrf = login.field("csrf").expect("a CSRF field");
        let tx = login.field("tx").expect("a tx field");
        b.post_form(
            &self.down_url("/federation/up/start"),
            &[("csrf", &csrf), ("tx", &tx), ("lang", "ja")],
        )
        .await
    }

    /// From the redirect to the upstream (`started`) to the upstream's redirect back to
    /// the marketplace's callback (not followed), signing in at the upstream with the
    /// password when it asks.
    pub(crate) async fn at_upstream(&self, b: &SiteBrowser, started: Page) -> Page {
        assert_eq!(
            started.status, 303,
            "a redirect to the upstream: {}",
            started.body
        );
        let to = b.next_url(&started);
        assert!(
            to.as_str()
                .starts_with(&format!("{}/authorize?", self.up.issuer())),
            "to the upstream's authorization endpoint: {to}"
        );
        let page = b.follow_until(started, &self.callback_prefix()).await;
        let page = if page.status == 200 && page.body.contains(r#"action="/login""#) {
            let csrf = page.field("csrf").expect("a CSRF field at the upstream");
            let tx = page.field("tx").expect("a tx field at the upstream");
            let posted = b
                .post_form(
                    &format!("{}/login", self.up.issuer()),
                    &[
                        ("csrf", &csrf),
                        ("tx", &tx),
                        ("email", EMAIL),
                        ("password", UP_PASSWORD),
                    ],
                )
                .await;
            assert_eq!(
                posted.status, 303,
                "signed in at the upstream: {}",
                posted.body
            );
            b.follow_until(posted, &self.callback_prefix()).await
        } else {
            page
        };
        assert_eq!(page.status, 303, "the upstream answers: {}", page.body);
        assert!(
            b.next_url(&page)
                .as_str()
                .starts_with(&self.callback_prefix()),
            "back to the marketplace's callback: {:?}",
            page.location
        );
        page
    }

    /// The provider's round trip from the sign-in page `login`, up to where the
    /// marketplace sends the browser after its callback: the client's redirect (not
    /// followed), or a page.
    async fn round_trip(&self, b: &SiteBrowser, login: &Page) -> Page {
        let started = self.press_button(b, login).await;
        let back = self.at_upstream(b, started).await;
        b.follow_until(back, REDIRECT).await
    }

    /// The browser's live session at the marketplace.
    async fn session(&self, b: &SiteBrowser) -> Option<BrowserSession> {
        let secret = b.cookie_at("localhost", SESSION)?;
        self.down()
            .state
            .db
            .sessions()
            .find_live(&secret, self.down().clock().now())
            .await
            .unwrap()
    }

    /// The member's account at the upstream: its `sub` is the link's subject.
    async fn up_subject(&self) -> String {
        self.up.user(EMAIL).await.unwrap().sub.as_str().to_owned()
    }

    /// The marketplace's link of the upstream identity, if any.
    async fn link(&self) -> Option<tobira_auth::store::Link> {
        self.down()
            .state
            .db
            .links()
            .find(&self.up.issuer(), &self.up_subject().await)
            .await
            .unwrap()
    }

    async fn links_of(&self, user: &User) -> Vec<tobira_auth::store::Link> {
        self.down().state.db.links().list(user.id).await.unwrap()
    }

    /// The marketplace's account of `email` (live or not).
    pub(crate) async fn account(&self, email: &str) -> Option<User> {
        self.down().user(email).await
    }

    /// The history of `user` once the work after the answers is done, newest first.
    async fn history(&self, user: &User) -> Vec<LoginEvent> {
        self.down().settled().await;
        self.down()
            .state
            .db
            .login_events()
            .page(user.id, None, 100)
            .await
            .unwrap()
    }

    /// What the client's verified ID token says of the sign-in that ended in `back`.
    async fn id_token(&self, back: &Page, pending: Pending) -> IdClaims {
        let code = code_from(&self.s, back, &pending);
        let tokens = exchange(&self.s, code, pending.verifier).await.unwrap();
        verified(&self.s, &tokens, &pending.nonce)
    }

    /// Signs in to the marketplace's console with a password; the console page.
    async fn console_password_sign_in(&self, b: &SiteBrowser, email: &str, password: &str) {
        let login = self.console_sign_in_page(b).await;
        let posted = post_login(b, &self.down_url("/login"), &login, email, password).await;
        assert_eq!(
            posted.status, 303,
            "signed in with the password: {}",
            posted.body
        );
        assert_eq!(posted.location.as_deref(), Some("/account"));
    }

    /// Opens `/account/linked`.
    async fn linked_page(&self, b: &SiteBrowser) -> Page {
        let page = b.get(&self.down_url("/account/linked")).await;
        assert_eq!(page.status, 200, "the linked accounts page: {}", page.body);
        page
    }

    /// Links the upstream from `/account/linked` (a recent console session): the page
    /// the browser lands on after the round trip.
    async fn link_from_console(&self, b: &SiteBrowser) -> Page {
        let page = self.linked_page(b).await;
        assert!(
            page.body.contains(r#"action="/account/linked/start""#),
            "a form to link a provider: {}",
            page.body
        );
        let csrf = page.field("csrf").expect("a CSRF field");
        let started = b
            .post_form(
                &self.down_url("/account/linked/start"),
                &[("csrf", &csrf), ("provider", "up")],
            )
            .await;
        let back = self.at_upstream(b, started).await;
        b.follow_until(back, REDIRECT).await
    }

    /// Posts the unlink form of `/account/linked` for link `id`; the page it ends on.
    async fn unlink(&self, b: &SiteBrowser, id: uuid::Uuid) -> Page {
        let page = self.linked_page(b).await;
        let csrf = page.field("csrf").expect("a CSRF field");
        let id = id.to_string();
        let answer = b
            .post_form(
                &self.down_url("/account/linked/remove"),
                &[("csrf", &csrf), ("link", &id)],
            )
            .await;
        b.follow_until(answer, REDIRECT).await
    }
}

fn verified(s: &Setup, tokens: &crate::rp::TokenResponse, nonce: &Nonce) -> IdClaims {
    let id_token = tokens.id_token().expect("an ID token");
    id_token
        .claims(&s.rp.id_token_verifier(), nonce)
        .expect("the ID token validates")
        .clone()
}

/// `amr` and `acr` as an ID token states them.
fn amr_acr(claims: &IdClaims) -> (Vec<String>, String) {
    let amr = claims
        .auth_method_refs()
        .map(|v| v.iter().map(|a| a.as_str().to_owned()).collect())
        .unwrap_or_default();
    let acr = claims
        .auth_context_ref()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    (amr, acr)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Posts the sign-in form of `login` to `url` (the marketplace's `/login`).
async fn post_login(b: &SiteBrowser, url: &str, login: &Page, email: &str, password: &str) -> Page {
    let csrf = login.field("csrf").expect("a CSRF field");
    let tx = login.field("tx").expect("a tx field");
    b.post_form(
        url,
        &[
            ("csrf", &csrf),
            ("tx", &tx),
            ("email", email),
            ("password", password),
        ],
    )
    .await
}

/// The mails whose subject contains `words`.
fn mails_about<'a>(mails: &'a [OutboxMail], words: &str) -> Vec<&'a OutboxMail> {
    mails.iter().filter(|m| m.subject.contains(words)).collect()
}

/// History lines of `method` that ended in `result`.
fn lines(events: &[LoginEvent], method: &str, result: LoginResult) -> usize {
    events
        .iter()
        .filter(|e| e.method == method && e.result == result)
        .count()
}

/// Checks that a page refusing a sign-in offers the other ways in: the password form and
/// the provider's button again, or at least a way back to them.
fn offers_other_ways(page: &Page) {
    assert!(
        page.body.contains(r#"action="/login""#) || page.body.contains("/login?tx="),
        "the other ways in are offered: {}",
        page.body
    );
}

/// Shuts the upstream down and waits until its port refuses connections.
async fn shut_down(up: TestApp) {
    let addr = up.state.config.server.bind;
    drop(up);
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    panic!("the upstream still answers at {addr}");
}

#[tokio::test]
async fn the_sign_in_page_shows_the_providers_button_in_both_languages() {
    let f = fed().await;
    let (_, login) = f.client_sign_in_page(&f.browser, &[]).await;
    assert!(
        login.body.contains(r#"id="federation-up""#),
        "{}",
        login.body
    );
    assert!(
        login.body.contains(r#"action="/federation/up/start""#),
        "{}",
        login.body
    );
    assert!(login.body.contains(LABEL), "{}", login.body);
    // The password form stays.
    assert!(login.body.contains(r#"action="/login""#), "{}", login.body);
    let tx = login.field("tx").unwrap();
    let en = f
        .browser
        .get(&f.down_url(&format!("/login?tx={tx}&lang=en")))
        .await;
    assert_eq!(en.status, 200, "{}", en.body);
    assert!(en.body.contains(LABEL_EN), "{}", en.body);
    assert!(en.body.contains(r#"id="federation-up""#), "{}", en.body);
}

#[tokio::test]
async fn a_first_sign_in_from_the_console_creates_an_account_signed_in_with_fed() {
    let f = fed().await;
    let login = f.console_sign_in_page(&f.browser).await;
    let landed = f.round_trip(&f.browser, &login).await;
    assert_eq!(landed.status, 200, "the console: {}", landed.body);
    assert!(
        landed.body.contains(EMAIL),
        "the console's overview: {}",
        landed.body
    );

    let user = f.account(EMAIL).await.expect("an account was created");
    assert_eq!(user.status, UserStatus::Active);
    assert!(user.email_verified, "the upstream verified the address");
    assert!(user.password_hash.is_none(), "no password");
    assert_eq!(
        user.display_name, "山田 花子",
        "named from the upstream's profile"
    );
    let session = f.session(&f.browser).await.expect("signed in");
    assert_eq!(session.user_id, user.id);
    assert_eq!(session.amr, strings(&["fed"]));
    assert_eq!(session.acr, "1");

    let link = f.link().await.expect("linked by (issuer, subject)");
    assert_eq!(link.user, user.id);
    assert_eq!(link.provider, "up");
    assert_eq!(link.issuer, f.up.issuer());
    assert_eq!(link.email.as_deref(), Some(EMAIL));
    let history = f.history(&user).await;
    assert_eq!(
        lines(&history, "fed:up", LoginResult::Success),
        1,
        "{history:?}"
    );
    let mails = f.down().settled().await;
    assert!(
        mails_about(&mails, NEW_DEVICE_SUBJECT).is_empty(),
        "the new account's first device is no news: {mails:?}"
    );

    // The console lists the link.
    let page = f.linked_page(&f.browser).await;
    assert!(page.body.contains(LABEL), "{}", page.body);
    assert!(page.body.contains(EMAIL), "{}", page.body);

    // Another browser: the same account, and the member is told of the new device.
    let other = SiteBrowser::new();
    let login = f.console_sign_in_page(&other).await;
    let landed = f.round_trip(&other, &login).await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    let session = f.session(&other).await.expect("signed in");
    assert_eq!(session.user_id, user.id, "the same account");
    assert_eq!(f.links_of(&user).await.len(), 1);
    let history = f.history(&user).await;
    assert_eq!(lines(&history, "fed:up", LoginResult::Success), 2);
    let mails = f.down().settled().await;
    let told = mails_about(&mails, NEW_DEVICE_SUBJECT);
    assert_eq!(told.len(), 1, "{mails:?}");
    assert_eq!(told[0].to, EMAIL);
}

#[tokio::test]
async fn a_first_sign_in_from_a_client_creates_the_account_and_the_id_token_says_fed() {
    let f = fed().await;
    let (pending, login) = f.client_sign_in_page(&f.browser, &[]).await;
    let back = f.round_trip(&f.browser, &login).await;
    let claims = f.id_token(&back, pending).await;
    assert_eq!(amr_acr(&claims), (strings(&["fed"]), "1".to_owned()));
    let user = f.account(EMAIL).await.expect("an account");
    assert_eq!(claims.subject().as_str(), user.sub.as_str());
    assert_ne!(
        user.sub.as_str(),
        f.up_subject().await,
        "the marketplace's own subject, not the upstream's"
    );
    let session = f.session(&f.browser).await.expect("signed in");
    assert_eq!(
        (session.amr.clone(), session.acr.clone()),
        (strings(&["fed"]), "1".to_owned())
    );

    // Signing in again (prompt=login) from the same browser: the same account, no mail.
    let (pending, login) = f
        .client_sign_in_page(&f.browser, &[("prompt", "login")])
        .await;
    let back = f.round_trip(&f.browser, &login).await;
    let claims = f.id_token(&back, pending).await;
    assert_eq!(claims.subject().as_str(), user.sub.as_str());
    assert_eq!(amr_acr(&claims), (strings(&["fed"]), "1".to_owned()));
    assert_eq!(f.links_of(&user).await.len(), 1);
    let history = f.history(&user).await;
    assert_eq!(
        lines(&history, "fed:up", LoginResult::Success),
        2,
        "{history:?}"
    );
    let mails = f.down().settled().await;
    assert!(
        mails_about(&mails, NEW_DEVICE_SUBJECT).is_empty(),
        "{mails:?}"
    );
}

#[tokio::test]
async fn an_address_in_use_is_never_linked_silently_and_signing_in_to_that_account_links_it() {
    let f = fed().await;
    let owner = f.down().add_user(EMAIL, DOWN_PASSWORD).await;
    let (pending, login) = f.client_sign_in_page(&f.browser, &[]).await;
    let asked = f.round_trip(&f.browser, &login).await;
    assert_eq!(asked.status, 200, "the sign-in page again: {}", asked.body);
    asks_to_sign_in_first(&asked);
    assert!(
        asked.body.contains(&format!(r#"value="{EMAIL}""#)),
        "the address is filled in: {}",
        asked.body
    );
    assert!(f.link().await.is_none(), "nothing linked yet");
    assert!(f.session(&f.browser).await.is_none(), "nobody signed in");
    assert_eq!(
        f.account(EMAIL).await.unwrap().id,
        owner.id,
        "no second account"
    );
    // Another member signing in meanwhile, in another browser, leaves it waiting.
    f.down().add_user(OTHER_EMAIL, OTHER_PASSWORD).await;
    f.console_password_sign_in(&SiteBrowser::new(), OTHER_EMAIL, OTHER_PASSWORD)
        .await;
    assert!(
        f.link().await.is_none(),
        "nothing linked by another sign-in"
    );

    // The owner signs in with the account's own password: now it is linked.
    let posted = post_login(
        &f.browser,
        &f.down_url("/login"),
        &asked,
        EMAIL,
        DOWN_PASSWORD,
    )
    .await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let back = f.browser.follow_until(posted, REDIRECT).await;
    let claims = f.id_token(&back, pending).await;
    assert_eq!(
        amr_acr(&claims).0,
        strings(&["pwd"]),
        "signed in with the password"
    );
    let link = f.link().await.expect("linked after the owner signed in");
    assert_eq!(link.user, owner.id);
    let history = f.history(&owner).await;
    assert_eq!(
        lines(&history, "fed:up", LoginResult::Enrolled),
        1,
        "{history:?}"
    );
    let mails = f.down().settled().await;
    let linked: Vec<_> = mails
        .iter()
        .filter(|m| m.subject.contains("連携"))
        .collect();
    assert_eq!(linked.len(), 1, "the linked mail: {mails:?}");
    assert_eq!(linked[0].to, EMAIL);
    assert!(linked[0].subject.contains(LABEL), "{}", linked[0].subject);

    let console = f.linked_page(&f.browser).await;
    assert!(console.body.contains(LABEL), "{}", console.body);

    // The next federated sign-in goes straight in.
    let (pending, login) = f
        .client_sign_in_page(&f.browser, &[("prompt", "login")])
        .await;
    let back = f.round_trip(&f.browser, &login).await;
    let claims = f.id_token(&back, pending).await;
    assert_eq!(claims.subject().as_str(), owner.sub.as_str());
    assert_eq!(amr_acr(&claims), (strings(&["fed"]), "1".to_owned()));
    assert_eq!(f.links_of(&owner).await.len(), 1);
    // The password still works: linking took nothing away.
    assert!(f.down().password_works(EMAIL, DOWN_PASSWORD).await);
}

#[tokio::test]
async fn another_account_signing_in_on_the_linking_page_links_nothing() {
    let f = fed().await;
    let owner = f.down().add_user(EMAIL, DOWN_PASSWORD).await;
    let other = f.down().add_user(OTHER_EMAIL, OTHER_PASSWORD).await;
    let (pending, login) = f.client_sign_in_page(&f.browser, &[]).await;
    let asked = f.round_trip(&f.browser, &login).await;
    asks_to_sign_in_first(&asked);
    let posted = post_login(
        &f.browser,
        &f.down_url("/login"),
        &asked,
        OTHER_EMAIL,
        OTHER_PASSWORD,
    )
    .await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let back = f.browser.follow_until(posted, REDIRECT).await;
    let claims = f.id_token(&back, pending).await;
    assert_eq!(claims.subject().as_str(), other.sub.as_str());
    assert!(f.link().await.is_none(), "nothing linked");
    assert!(f.links_of(&owner).await.is_empty());
    assert!(f.links_of(&other).await.is_empty());
    for user in [&owner, &other] {
        let history = f.history(user).await;
        assert_eq!(
            lines(&history, "fed:up", LoginResult::Enrolled),
            0,
            "{history:?}"
        );
    }
    // And the owner signing in later in this browser links nothing either: the pending
    // link was dropped.
    let (_, login) = f
        .client_sign_in_page(&f.browser, &[("prompt", "login")])
        .await;
    let posted = post_login(
        &f.browser,
        &f.down_url("/login"),
        &login,
        EMAIL,
        DOWN_PASSWORD,
    )
    .await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    assert!(f.link().await.is_none(), "the pending link was dropped");
}

#[tokio::test]
async fn an_unverified_sign_up_with_the_address_is_taken_over_when_the_upstream_verified_it() {
    let f = fed().await;
    // Someone signs up at the marketplace with the member's address and never verifies.
    let squatter = f.down().browser();
    let sent = crate::signup::sign_up(&squatter, "/signup", EMAIL, DOWN_PASSWORD).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    // The sign-up is written after the answer (the same answer whether or not the
    // address is taken).
    assert_eq!(f.down().settled().await.len(), 1, "the verification mail");
    let before = f.account(EMAIL).await.expect("the unverified sign-up");
    assert!(!before.email_verified);
    assert!(before.password_hash.is_some());

    let (pending, login) = f.client_sign_in_page(&f.browser, &[]).await;
    let back = f.round_trip(&f.browser, &login).await;
    let claims = f.id_token(&back, pending).await;
    assert_eq!(amr_acr(&claims), (strings(&["fed"]), "1".to_owned()));
    let after = f.account(EMAIL).await.unwrap();
    assert_eq!(claims.subject().as_str(), after.sub.as_str());
    assert!(after.email_verified, "the upstream verified the address");
    assert_eq!(after.status, UserStatus::Active);
    assert!(
        after.password_hash.is_none(),
        "the squatter's password is discarded"
    );
    assert!(!f.down().password_works(EMAIL, DOWN_PASSWORD).await);
    assert_eq!(f.link().await.expect("linked").user, after.id);
    // The squatter's own password sign-in fails on the page too.
    let b = SiteBrowser::new();
    let (_, login) = f.client_sign_in_page(&b, &[]).await;
    let refused = post_login(&b, &f.down_url("/login"), &login, EMAIL, DOWN_PASSWORD).await;
    assert_ne!(
        refused.status, 303,
        "the password no longer signs in: {}",
        refused.body
    );
}

#[tokio::test]
async fn an_active_account_with_an_unverified_address_is_never_taken_over() {
    let f = fed().await;
    // A member's real account, made by support without `--verified`: it has a password
    // and an authenticator app, and its address was never verified by a link.
    let s = &f.down().state;
    let owner = tobira_auth::admin::users::add_user(
        &s.db,
        &s.hasher,
        &s.clock,
        &tobira_auth::admin::audit::Context::cli(),
        tobira_auth::admin::users::AddUser {
            email: EMAIL,
            password: Some(DOWN_PASSWORD),
            email_verified: false,
            display_name: "山田 花子".to_owned(),
            locale: tobira_auth::web::i18n::Lang::Ja,
        },
    )
    .await
    .unwrap();
    crate::two_step::enrol_totp(f.down(), &owner).await;
    // Someone whose upstream account claims the address, verified, signs in with it.
    let login = f.console_sign_in_page(&f.browser).await;
    let asked = f.round_trip(&f.browser, &login).await;
    assert_eq!(asked.status, 200, "the sign-in page again: {}", asked.body);
    asks_to_sign_in_first(&asked);
    assert!(f.session(&f.browser).await.is_none(), "nobody signed in");
    assert!(f.link().await.is_none(), "nothing linked");
    let after = f.down().reload(&owner).await;
    assert!(after.password_hash.is_some(), "the password is kept");
    assert!(f.down().password_works(EMAIL, DOWN_PASSWORD).await);
    assert!(
        s.db.two_step().enrolled(owner.id).await.unwrap(),
        "the second step is kept"
    );
}

#[tokio::test]
async fn a_deleted_accounts_address_is_held_back_from_federated_creation() {
    let f = fed().await;
    let gone = f.down().add_user(EMAIL, DOWN_PASSWORD).await;
    let s = &f.down().state;
    let deleted = tobira_auth::account::delete::delete_account(
        &s.db,
        &s.master,
        &s.identifiers,
        &s.config,
        &tobira_auth::admin::audit::Context::cli(),
        s.clock.now(),
        &gone,
    )
    .await
    .unwrap();
    assert!(deleted);
    f.down().settled().await;
    let mails_before = f.down().outbox().len();

    let login = f.console_sign_in_page(&f.browser).await;
    let refused = f.round_trip(&f.browser, &login).await;
    assert!(
        refused.location.is_none(),
        "a page, not a redirect: {:?}",
        refused.location
    );
    assert!(
        refused.body.contains("作成できません") || refused.body.contains("登録できません"),
        "the page says why: {}",
        refused.body
    );
    assert!(f.session(&f.browser).await.is_none(), "nobody signed in");
    assert!(f.link().await.is_none(), "nothing linked");
    if let Some(user) = f.account(EMAIL).await {
        assert_eq!(user.id, gone.id, "no new account");
    }
    assert_eq!(
        f.down().settled().await.len(),
        mails_before,
        "nothing mailed"
    );
}

#[tokio::test]
async fn a_frozen_linked_account_gets_the_frozen_notice() {
    let f = fed().await;
    let login = f.console_sign_in_page(&f.browser).await;
    let landed = f.round_trip(&f.browser, &login).await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    let user = f.account(EMAIL).await.unwrap();
    let s = &f.down().state;
    tobira_auth::admin::support::freeze(
        &s.db,
        &s.master,
        &s.config,
        &s.clock,
        &tobira_auth::admin::audit::Context::cli(),
        &user,
        &tobira_auth::admin::support::Freeze {
            reason: tobira_auth::admin::support::Reason::parse("規約違反の疑い").unwrap(),
            tell_reason: false,
        },
    )
    .await
    .unwrap();
    assert!(
        f.session(&f.browser).await.is_none(),
        "the freeze ended the session"
    );

    let (_, login) = f.client_sign_in_page(&f.browser, &[]).await;
    let refused = f.round_trip(&f.browser, &login).await;
    assert!(refused.location.is_none(), "{:?}", refused.location);
    let notice = tobira_auth::admin::support::frozen_notice("", Lang::Ja);
    assert!(refused.body.contains(&notice), "{}", refused.body);
    assert!(f.session(&f.browser).await.is_none());
    let history = f.history(&user).await;
    assert_eq!(
        lines(&history, "fed:up", LoginResult::Frozen),
        1,
        "{history:?}"
    );
}

#[tokio::test]
async fn a_linked_account_with_an_authenticator_app_goes_through_the_second_step() {
    let f = fed().await;
    let login = f.console_sign_in_page(&f.browser).await;
    f.round_trip(&f.browser, &login).await;
    let user = f.account(EMAIL).await.unwrap();
    let (app, _) = crate::two_step::enrol_totp(f.down(), &user).await;

    let (pending, login) = f
        .client_sign_in_page(&f.browser, &[("prompt", "login")])
        .await;
    let asked = f.round_trip(&f.browser, &login).await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert!(asked.body.contains(r#"id="second-step""#), "{}", asked.body);
    // No code, no sign-in.
    let csrf = asked.field("csrf").unwrap();
    let tx = asked.field("tx").unwrap();
    let wrong = f
        .browser
        .post_form(
            &f.down_url("/login/second-step"),
            &[
                ("csrf", &csrf),
                ("tx", &tx),
                ("method", "totp"),
                ("code", "000000"),
            ],
        )
        .await;
    assert_ne!(wrong.status, 303, "a wrong code: {}", wrong.body);
    let code = app.code(f.down());
    let passed = f
        .browser
        .post_form(
            &f.down_url("/login/second-step"),
            &[
                ("csrf", &csrf),
                ("tx", &tx),
                ("method", "totp"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(passed.status, 303, "{}", passed.body);
    let back = f.browser.follow_until(passed, REDIRECT).await;
    let claims = f.id_token(&back, pending).await;
    assert_eq!(
        amr_acr(&claims),
        (strings(&["fed", "otp", "mfa"]), "2".to_owned())
    );
    let history = f.history(&user).await;
    assert_eq!(
        lines(&history, "fed:up+totp", LoginResult::Success),
        1,
        "{history:?}"
    );
    assert_eq!(
        lines(&history, "fed:up+totp", LoginResult::WrongCode),
        1,
        "{history:?}"
    );
}

#[tokio::test]
async fn a_password_account_links_the_upstream_from_the_console_and_unlinks_it() {
    let f = fed().await;
    let owner = f.down().add_user(EMAIL, DOWN_PASSWORD).await;
    f.console_password_sign_in(&f.browser, EMAIL, DOWN_PASSWORD)
        .await;
    let page = f.linked_page(&f.browser).await;
    assert!(
        page.body.contains(LABEL),
        "the provider is offered: {}",
        page.body
    );

    let landed = f.link_from_console(&f.browser).await;
    assert_eq!(landed.status, 200, "back at the console: {}", landed.body);
    assert!(
        landed.body.contains(&format!("{LABEL}を連携しました")),
        "{}",
        landed.body
    );
    let link = f.link().await.expect("linked");
    assert_eq!(link.user, owner.id);
    let page = f.linked_page(&f.browser).await;
    assert!(
        page.body.contains(EMAIL),
        "the link is listed: {}",
        page.body
    );
    let history = f.history(&owner).await;
    assert_eq!(
        lines(&history, "fed:up", LoginResult::Enrolled),
        1,
        "{history:?}"
    );
    let mails = f.down().settled().await;
    assert_eq!(mails_about(&mails, "連携しました").len(), 1, "{mails:?}");
    // Still signed in as before (the password's session).
    assert_eq!(f.session(&f.browser).await.unwrap().user_id, owner.id);

    let done = f.unlink(&f.browser, link.id).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(f.link().await.is_none(), "unlinked");
    let history = f.history(&owner).await;
    assert_eq!(
        lines(&history, "fed:up", LoginResult::Removed),
        1,
        "{history:?}"
    );
    let mails = f.down().settled().await;
    assert_eq!(
        mails_about(&mails, "連携を解除しました").len(),
        1,
        "{mails:?}"
    );
    assert!(f.down().password_works(EMAIL, DOWN_PASSWORD).await);
}

#[tokio::test]
async fn linking_an_identity_already_linked_to_another_account_changes_nothing() {
    let f = fed().await;
    // The upstream identity made its own account first.
    let first = SiteBrowser::new();
    let login = f.console_sign_in_page(&first).await;
    f.round_trip(&first, &login).await;
    let holder = f.account(EMAIL).await.unwrap();
    assert_eq!(f.link().await.unwrap().user, holder.id);

    let other = f.down().add_user(OTHER_EMAIL, OTHER_PASSWORD).await;
    f.console_password_sign_in(&f.browser, OTHER_EMAIL, OTHER_PASSWORD)
        .await;
    let landed = f.link_from_console(&f.browser).await;
    assert!(
        landed
            .body
            .contains("別の Tobira アカウントに連携されています"),
        "{}",
        landed.body
    );
    assert!(f.links_of(&other).await.is_empty(), "nothing linked");
    assert_eq!(
        f.link().await.unwrap().user,
        holder.id,
        "the link stays where it was"
    );
    let history = f.history(&other).await;
    assert_eq!(
        lines(&history, "fed:up", LoginResult::Enrolled),
        0,
        "{history:?}"
    );
}

#[tokio::test]
async fn the_last_way_in_is_never_unlinked() {
    let f = fed().await;
    let login = f.console_sign_in_page(&f.browser).await;
    f.round_trip(&f.browser, &login).await;
    let user = f.account(EMAIL).await.unwrap();
    let link = f.link().await.unwrap();
    let refused = f.unlink(&f.browser, link.id).await;
    assert!(
        refused.body.contains("最後のログイン方法は解除できません"),
        "{}",
        refused.body
    );
    assert_eq!(f.links_of(&user).await, vec![link]);
    let history = f.history(&user).await;
    assert_eq!(
        lines(&history, "fed:up", LoginResult::Removed),
        0,
        "{history:?}"
    );
}

#[tokio::test]
async fn a_callback_without_a_state_or_with_an_unknown_one_signs_nobody_in() {
    let f = fed().await;
    let login = f.console_sign_in_page(&f.browser).await;
    let started = f.press_button(&f.browser, &login).await;
    let back = f.at_upstream(&f.browser, started).await;
    let real = f.browser.next_url(&back);
    let code: String = real
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");

    let missing = f
        .browser
        .get(&format!("{}?code={code}", f.callback_prefix()))
        .await;
    assert!(
        (400..500).contains(&missing.status) || missing.status == 200,
        "a clear page: {} {}",
        missing.status,
        missing.body
    );
    assert!(missing.location.is_none(), "{:?}", missing.location);
    let unknown = f
        .browser
        .get(&format!(
            "{}?code={code}&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            f.callback_prefix()
        ))
        .await;
    assert!(unknown.location.is_none(), "{:?}", unknown.location);
    assert!(
        unknown
            .body
            .contains("有効期限が切れたか、すでに使われています"),
        "{}",
        unknown.body
    );
    let hostile = f
        .browser
        .get(&format!(
            "{}?code=%3Cscript%3E&state=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            f.callback_prefix()
        ))
        .await;
    assert!(
        !hostile.body.contains("<script>alert(1)"),
        "{}",
        hostile.body
    );
    assert!(hostile.status < 500, "{} {}", hostile.status, hostile.body);
    assert!(f.session(&f.browser).await.is_none());
    assert!(f.account(EMAIL).await.is_none(), "no account");
}

#[tokio::test]
async fn a_replayed_callback_url_is_refused() {
    let f = fed().await;
    let login = f.console_sign_in_page(&f.browser).await;
    let started = f.press_button(&f.browser, &login).await;
    let back = f.at_upstream(&f.browser, started).await;
    let callback = f.browser.next_url(&back).to_string();
    let landed = f.browser.follow_until(back, REDIRECT).await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    let user = f.account(EMAIL).await.unwrap();
    let sessions = || async {
        f.down()
            .state
            .db
            .sessions()
            .count_live(user.id, f.down().clock().now(), time::Duration::hours(1))
            .await
            .unwrap()
    };
    assert_eq!(sessions().await, 1);

    // The same URL again (the browser's history, a proxy log): refused.
    let replayed = f.browser.get(&callback).await;
    assert!(replayed.location.is_none(), "{:?}", replayed.location);
    assert!(
        replayed
            .body
            .contains("有効期限が切れたか、すでに使われています"),
        "{}",
        replayed.body
    );
    // And in a browser with no session at all.
    let stranger = SiteBrowser::new();
    let replayed = stranger.get(&callback).await;
    assert!(replayed.location.is_none(), "{:?}", replayed.location);
    assert!(f.session(&stranger).await.is_none());
    assert_eq!(sessions().await, 1, "no second session");
    let history = f.history(&user).await;
    assert_eq!(lines(&history, "fed:up", LoginResult::Success), 1);
}

#[tokio::test]
async fn a_callback_finished_in_another_browser_is_refused() {
    let f = fed().await;
    let login = f.console_sign_in_page(&f.browser).await;
    let started = f.press_button(&f.browser, &login).await;
    let back = f.at_upstream(&f.browser, started).await;
    let callback = f.browser.next_url(&back).to_string();

    // An attacker who got the callback URL (with the code and state) opens it.
    let thief = SiteBrowser::new();
    let stolen = thief.get(&callback).await;
    assert!(stolen.location.is_none(), "a page: {:?}", stolen.location);
    assert!(stolen.status < 500, "{} {}", stolen.status, stolen.body);
    assert!(
        stolen.body.contains("別のブラウザで始められた"),
        "the page says why: {}",
        stolen.body
    );
    assert!(
        f.session(&thief).await.is_none(),
        "the thief is not signed in"
    );
    assert!(f.account(EMAIL).await.is_none(), "no account");
    assert!(f.link().await.is_none());
    let mails = f.down().settled().await;
    assert!(mails.is_empty(), "{mails:?}");

    // The thief's attempt spent nothing: the browser that started it still finishes.
    let landed = f.browser.get(&callback).await;
    let landed = f.browser.follow_until(landed, REDIRECT).await;
    assert_eq!(landed.status, 200, "the console: {}", landed.body);
    let user = f.account(EMAIL).await.expect("the member's account");
    assert_eq!(f.session(&f.browser).await.unwrap().user_id, user.id);
    assert!(f.session(&thief).await.is_none());
    // And now that it is spent, the thief's second try finds nothing either.
    let again = thief.get(&callback).await;
    assert!(again.location.is_none(), "{:?}", again.location);
    assert!(f.session(&thief).await.is_none());
}

#[tokio::test]
async fn a_cancel_at_the_upstream_offers_the_other_ways_in() {
    let f = fed().await;
    let (_, login) = f.client_sign_in_page(&f.browser, &[]).await;
    let started = f.press_button(&f.browser, &login).await;
    let to = f.browser.next_url(&started);
    let state: String = to
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("a state in the authorization request");
    // What the upstream sends back when the member refuses consent.
    let cancelled = f
        .browser
        .get(&format!(
            "{}?error=access_denied&state={state}",
            f.callback_prefix()
        ))
        .await;
    let page = f.browser.follow_until(cancelled, REDIRECT).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("キャンセル"), "{}", page.body);
    assert!(page.body.contains(r#"action="/login""#), "{}", page.body);
    assert!(page.body.contains(r#"id="federation-up""#), "{}", page.body);
    assert!(f.session(&f.browser).await.is_none());
    assert!(f.account(EMAIL).await.is_none());
}

#[tokio::test]
async fn the_upstream_down_before_the_start_gives_a_clear_page() {
    let Fed { up, s, browser } = fed().await;
    let f_issuer = s.app.issuer();
    shut_down(up).await;
    let first = browser.get(&format!("{f_issuer}/account")).await;
    let login = browser.follow_until(first, REDIRECT).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let csrf = login.field("csrf").unwrap();
    let tx = login.field("tx").unwrap();
    let answer = browser
        .post_form(
            &format!("{f_issuer}/federation/up/start"),
            &[("csrf", &csrf), ("tx", &tx), ("lang", "ja")],
        )
        .await;
    let page = browser.follow_until(answer, REDIRECT).await;
    assert!(page.location.is_none(), "{:?}", page.location);
    assert!(page.body.contains("接続できませんでした"), "{}", page.body);
    offers_other_ways(&page);
    assert!(browser.cookie_at("localhost", SESSION).is_none());
    assert!(s.app.user(EMAIL).await.is_none());
}

#[tokio::test]
async fn the_upstream_down_before_the_callback_leaves_nothing_half_created() {
    let f = fed().await;
    let (_, login) = f.client_sign_in_page(&f.browser, &[]).await;
    let started = f.press_button(&f.browser, &login).await;
    let back = f.at_upstream(&f.browser, started).await;
    let Fed { up, s, browser } = f;
    let subject = up.user(EMAIL).await.unwrap().sub.as_str().to_owned();
    let up_issuer = up.issuer();
    shut_down(up).await;
    let page = browser.follow_until(back, REDIRECT).await;
    assert!(page.location.is_none(), "{:?}", page.location);
    assert!(page.body.contains("接続できませんでした"), "{}", page.body);
    offers_other_ways(&page);
    assert!(browser.cookie_at("localhost", SESSION).is_none());
    assert!(s.app.user(EMAIL).await.is_none(), "no account");
    assert!(
        s.app
            .state
            .db
            .links()
            .find(&up_issuer, &subject)
            .await
            .unwrap()
            .is_none(),
        "no link"
    );
}

#[tokio::test]
async fn an_account_without_a_password_re_authenticates_through_its_provider() {
    let f = fed().await;
    let login = f.console_sign_in_page(&f.browser).await;
    f.round_trip(&f.browser, &login).await;
    let user = f.account(EMAIL).await.unwrap();
    let link = f.link().await.unwrap();
    let first = f.session(&f.browser).await.unwrap();

    // Past the console's window for sensitive actions: the removal asks for a sign-in.
    let minutes = f.down().state.config.account.reauth_minutes;
    // Time passes for both sites (an ID token is checked against the downstream's clock).
    for app in [f.down(), &f.up] {
        app.clock()
            .advance(time::Duration::minutes(i64::from(minutes) + 1));
    }
    let page = f.linked_page(&f.browser).await;
    let csrf = page.field("csrf").expect("a CSRF field");
    let id = link.id.to_string();
    let stale = f
        .browser
        .post_form(
            &f.down_url("/account/linked/remove"),
            &[("csrf", &csrf), ("link", &id)],
        )
        .await;
    assert_eq!(stale.status, 303, "{}", stale.body);
    let to = stale.location.clone().unwrap();
    assert!(to.starts_with("/login?tx="), "sent to sign in again: {to}");
    let again = f.browser.get(&to).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(
        again.body.contains(r#"id="federation-up""#),
        "the provider is a way to re-authenticate: {}",
        again.body
    );
    let landed = f.round_trip(&f.browser, &again).await;
    assert_eq!(landed.status, 200, "back in the console: {}", landed.body);
    let session = f.session(&f.browser).await.expect("still signed in");
    assert_eq!(session.user_id, user.id);
    assert_eq!(session.amr, strings(&["fed"]));
    assert!(session.auth_time > first.auth_time, "a fresh sign-in");

    // Recent now: the removal is decided (and refused: the last way in).
    let page = f.unlink(&f.browser, link.id).await;
    assert!(
        page.body.contains("最後のログイン方法は解除できません"),
        "{}",
        page.body
    );
    assert_eq!(f.links_of(&user).await.len(), 1);
}

#[tokio::test]
async fn an_address_in_use_is_linked_only_after_the_accounts_second_step_too() {
    let f = fed().await;
    let owner = f.down().add_user(EMAIL, DOWN_PASSWORD).await;
    let (app, _) = crate::two_step::enrol_totp(f.down(), &owner).await;
    let (pending, login) = f.client_sign_in_page(&f.browser, &[]).await;
    let asked = f.round_trip(&f.browser, &login).await;
    asks_to_sign_in_first(&asked);
    let posted = post_login(
        &f.browser,
        &f.down_url("/login"),
        &asked,
        EMAIL,
        DOWN_PASSWORD,
    )
    .await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let to = posted.location.clone().unwrap();
    assert!(to.starts_with("/login/second-step?tx="), "{to}");
    assert!(f.link().await.is_none(), "the password alone links nothing");
    let step = f.browser.get(&to).await;
    assert_eq!(step.status, 200, "{}", step.body);
    let csrf = step.field("csrf").unwrap();
    let tx = step.field("tx").unwrap();
    let code = app.code(f.down());
    let passed = f
        .browser
        .post_form(
            &f.down_url("/login/second-step"),
            &[
                ("csrf", &csrf),
                ("tx", &tx),
                ("method", "totp"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(passed.status, 303, "{}", passed.body);
    let back = f.browser.follow_until(passed, REDIRECT).await;
    let claims = f.id_token(&back, pending).await;
    assert_eq!(
        amr_acr(&claims),
        (strings(&["pwd", "otp", "mfa"]), "2".to_owned())
    );
    assert_eq!(f.link().await.expect("linked").user, owner.id);

    // Through the link now, the account's second step is still asked for.
    let (_, login) = f
        .client_sign_in_page(&f.browser, &[("prompt", "login")])
        .await;
    let next = f.round_trip(&f.browser, &login).await;
    assert!(next.body.contains(r#"id="second-step""#), "{}", next.body);
}
