//! Two-step verification, shared by its test modules (`second_step`: the sign-in page;
//! `two_step_console`: `/account/2fa`; `two_step_oidc`: what clients are told, support's
//! reset): enrolling a member without the pages, computing codes at the app's clock, and
//! submitting the second-step form as a browser does.

use tobira_auth::authn::second_step::{self, METHOD_EMAIL_CODE, METHOD_TOTP};
use tobira_auth::authn::totp::{self, Authenticator};
use tobira_auth::domain::User;
use tobira_auth::store::{FactorChange, LoginEvent, LoginResult, StoredTotp};

use crate::helpers::{Browser, Page, TestApp};

/// A member's authenticator app, as a test holds it.
pub struct App {
    pub authenticator: Authenticator,
}

impl App {
    /// The code the app shows at the test app's clock now.
    pub fn code(&self, app: &TestApp) -> String {
        self.authenticator
            .code_at(app.clock().now().unix_timestamp())
    }

    /// The code `steps` time steps (30 s each) from now.
    pub fn code_in(&self, app: &TestApp, steps: i64) -> String {
        self.authenticator
            .code_at(app.clock().now().unix_timestamp() + 30 * steps)
    }
}

fn enrolment_event(user: &User, method: &str, app: &TestApp) -> FactorChange {
    FactorChange {
        event: LoginEvent {
            id: uuid::Uuid::new_v4(),
            user: user.id,
            at: app.clock().now(),
            ip: "127.0.0.1".to_owned(),
            user_agent: "tests".to_owned(),
            device_hash: String::new(),
            method: method.to_owned(),
            result: LoginResult::Enrolled,
            new_device: false,
        },
        mail: None,
    }
}

fn recovery_codes(app: &TestApp, user: &User) -> (Vec<String>, Vec<String>) {
    let codes = second_step::new_recovery_codes(&mut rand::rng());
    let hashes = codes
        .iter()
        .map(|c| second_step::recovery_code_hash(&app.state.identifiers, user.id, c))
        .collect();
    (codes, hashes)
}

/// Turns the authenticator app on for `user` in the store (as `/account/2fa` would after a
/// first code of the previous step); returns the app and the recovery codes made with it.
pub async fn enrol_totp(app: &TestApp, user: &User) -> (App, Vec<String>) {
    let secret = totp::new_secret(&mut rand::rng()).to_vec();
    let authenticator =
        Authenticator::new(&secret, second_step::TOTP_ISSUER, user.email.display()).unwrap();
    let sealed = app.state.master.encrypt(&secret).unwrap();
    let before = app.clock().now().unix_timestamp() / 30 - 1;
    let had_codes = app.state.db.two_step().factors(user.id).await.unwrap();
    let (codes, hashes) = if had_codes.any() {
        (Vec::new(), Vec::new())
    } else {
        recovery_codes(app, user)
    };
    app.state
        .db
        .two_step()
        .enable_totp(
            app.clock().now(),
            user.id,
            StoredTotp {
                secret_enc: sealed,
                last_step: before,
            },
            hashes,
            None,
            enrolment_event(user, METHOD_TOTP, app),
        )
        .await
        .unwrap();
    (App { authenticator }, codes)
}

/// Turns email codes on for `user` in the store; the recovery codes made with it (none
/// when another factor was on already).
pub async fn enrol_email(app: &TestApp, user: &User) -> Vec<String> {
    let had = app.state.db.two_step().factors(user.id).await.unwrap();
    let (codes, hashes) = if had.any() {
        (Vec::new(), Vec::new())
    } else {
        recovery_codes(app, user)
    };
    app.state
        .db
        .two_step()
        .enable_email(
            app.clock().now(),
            user.id,
            hashes,
            None,
            enrolment_event(user, METHOD_EMAIL_CODE, app),
        )
        .await
        .unwrap();
    codes
}

/// Posts the second-step form of `page` (the second-step page) with `method` ("totp",
/// "email", "recovery") and `code`, ticking 「この端末では確認しない」 when `remember`;
/// the OP's answer, not followed.
pub async fn submit(
    browser: &Browser,
    page: &Page,
    method: &str,
    code: &str,
    remember: bool,
) -> Page {
    let csrf = page.field("csrf").expect("a CSRF field");
    let tx = page.field("tx").expect("a tx field");
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("tx", tx.as_str()),
        ("method", method),
        ("code", code),
    ];
    if remember {
        form.push(("remember_device", "on"));
    }
    browser.post_form("/login/second-step", &form).await
}

/// Asks for an email code on the second-step `page` (the "send" button).
pub async fn send_email_code(browser: &Browser, page: &Page) -> Page {
    let csrf = page.field("csrf").expect("a CSRF field");
    let tx = page.field("tx").expect("a tx field");
    browser
        .post_form(
            "/login/second-step",
            &[
                ("csrf", csrf.as_str()),
                ("tx", tx.as_str()),
                ("method", "email"),
                ("action", "send"),
            ],
        )
        .await
}
