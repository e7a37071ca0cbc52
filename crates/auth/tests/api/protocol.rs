//! The rest of the protocol surface: form_post, consent, RP-initiated logout, revocation,
//! introspection, client credentials and per-client signing algorithms.

use openidconnect::{AccessToken, OAuth2TokenResponse, TokenResponse as _};
use serde_json::Value;
use time::Duration;
use tobira_auth::keys::Alg;

use crate::helpers::{ClientOpts, TestApp, callback_params};
use crate::oidc::{
    EMAIL, PASSWORD, REDIRECT, Setup, authorize, code_from, exchange, setup, sign_in_for_code,
    signed_in_with, token_error, userinfo_status, verify_id_token, with_param,
};
use crate::rp::{self, Auth};

const LOGGED_OUT: &str = "http://127.0.0.1:9/logged-out";

pub fn third_party() -> ClientOpts {
    ClientOpts {
        first_party: false,
        ..Default::default()
    }
}

/// The form a form_post page submits, as (action, fields).
fn form_post_fields(body: &str) -> (String, std::collections::HashMap<String, String>) {
    let action_at = body.find(r#"action=""#).unwrap() + 8;
    let action = body[action_at..body[action_at..].find('"').unwrap() + action_at].to_owned();
    let mut fields = std::collections::HashMap::new();
    for chunk in body.split(r#"<input type="hidden" name=""#).skip(1) {
        let name = &chunk[..chunk.find('"').unwrap()];
        let v_at = chunk.find(r#"value=""#).unwrap() + 7;
        let value = &chunk[v_at..v_at + chunk[v_at..].find('"').unwrap()];
        fields.insert(
            name.to_owned(),
            value.replace("&amp;", "&").replace("&#x2b;", "+"),
        );
    }
    (action, fields)
}

#[tokio::test]
async fn form_post_answers_with_an_auto_submitting_page_allowed_by_a_csp_nonce() {
    const REDIRECTING: &str = "サービスに戻っています…";
    let s = setup(ClientOpts::default()).await;
    let pending = authorize(&s.rp, &[("response_mode", "form_post")]);
    let page = s
        .browser
        .sign_in(&pending.url, EMAIL, PASSWORD, false)
        .await;
    assert_eq!(page.status, 200, "no redirect: a page");
    assert!(page.location.is_none());
    let csp = page.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    assert!(
        page.body.contains(&format!(r#"<script nonce="{nonce}">"#)),
        "{}",
        page.body
    );
    assert!(
        !csp.contains("form-action") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    // Without scripts, the page says where the member is going and offers the button.
    assert!(
        page.body.contains(&format!("<title>{REDIRECTING}</title>")),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&format!(
            "<noscript><p>{REDIRECTING}</p><button type=\"submit\">続ける</button></noscript>"
        )),
        "{}",
        page.body
    );
    assert_eq!(page.headers["cache-control"], "no-store");
    let (action, fields) = form_post_fields(&page.body);
    assert_eq!(action, REDIRECT);
    assert_eq!(fields["state"], *pending.state.secret());
    assert_eq!(fields["iss"], s.app.issuer());
    let code = openidconnect::AuthorizationCode::new(fields["code"].clone());
    assert!(exchange(&s, code, pending.verifier).await.is_ok());

    // Errors travel the same way.
    let stranger = s.app.browser();
    let pending = authorize(&s.rp, &[("response_mode", "form_post"), ("prompt", "none")]);
    let page = stranger.get(&pending.url).await;
    assert_eq!(page.status, 200);
    let (_, fields) = form_post_fields(&page.body);
    assert_eq!(fields["error"], "login_required");
    assert_eq!(fields["state"], *pending.state.secret());
    // An unknown response mode is an error, sent the default way.
    let page = stranger
        .get(&with_param(&pending.url, "response_mode", "fragment"))
        .await;
    assert_eq!(
        callback_params(page.location.as_deref().unwrap())["error"],
        "invalid_request"
    );
}

pub async fn consent_page(s: &Setup, url: &str) -> crate::helpers::Page {
    let page = s.browser.follow(s.browser.get(url).await).await;
    if page.field("tx").is_some() && page.body.contains(r#"name="password""#) {
        let posted = s.browser.post_login(&page, EMAIL, PASSWORD).await;
        return s.browser.follow(posted).await;
    }
    page
}

pub async fn decide(
    s: &Setup,
    page: &crate::helpers::Page,
    decision: &str,
) -> crate::helpers::Page {
    let form = [
        ("csrf", page.field("csrf").unwrap()),
        ("tx", page.field("tx").unwrap()),
        ("decision", decision.to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let posted = s.browser.post_form("/consent", &form).await;
    s.browser.follow(posted).await
}

#[tokio::test]
async fn third_party_clients_ask_for_consent_which_is_remembered_per_scope_set() {
    let s = setup(third_party()).await;
    let pending = authorize(&s.rp, &[]);
    let page = consent_page(&s, &pending.url).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("Partner Site が次の情報へのアクセスを求めています。"),
        "{}",
        page.body
    );
    assert!(page.body.contains("メールアドレス") && page.body.contains("表示名と言語の設定"));
    assert!(
        page.body
            .contains("<li>あなたを識別するID（サービスごとに異なる場合があります）</li>")
    );
    assert!(
        page.body.contains("<h1>アクセスの許可</h1>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"value="allow">許可する</button>"#),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"value="deny" class="secondary">許可しない</button>"#)
    );
    let back = decide(&s, &page, "allow").await;
    let code = code_from(&s, &back, &pending);
    assert!(exchange(&s, code, pending.verifier).await.is_ok());

    // Same scopes again: remembered, no question.
    let pending = authorize(&s.rp, &[]);
    let back = s.browser.follow(s.browser.get(&pending.url).await).await;
    code_from(&s, &back, &pending);
    // prompt=none works too, since nothing needs asking.
    let pending = authorize(&s.rp, &[("prompt", "none")]);
    code_from(&s, &s.browser.get(&pending.url).await, &pending);

    // prompt=consent always asks.
    let pending = authorize(&s.rp, &[("prompt", "consent")]);
    let page = consent_page(&s, &pending.url).await;
    assert!(page.body.contains(r#"value="allow""#));
    let back = decide(&s, &page, "allow").await;
    code_from(&s, &back, &pending);

    // offline_access asks every time, and then gives an offline refresh token.
    for _ in 0..2 {
        let mut pending = authorize(&s.rp, &[]);
        pending.url = with_param(&pending.url, "scope", "openid offline_access");
        let page = consent_page(&s, &pending.url).await;
        assert!(
            page.body.contains("ログアウト中も"),
            "asked for offline access: {}",
            page.body
        );
        let back = decide(&s, &page, "allow").await;
        let code = code_from(&s, &back, &pending);
        let tokens = exchange(&s, code, pending.verifier).await.unwrap();
        assert!(
            tokens.refresh_token().is_some(),
            "offline access was allowed"
        );
    }
}

#[tokio::test]
async fn denied_or_unasked_consent_goes_back_as_an_error() {
    let s = setup(third_party()).await;
    let pending = authorize(&s.rp, &[("prompt", "none")]);
    let back = s.browser.get(&pending.url).await;
    assert_eq!(
        callback_params(back.location.as_deref().unwrap())["error"],
        "login_required"
    );
    // Signed in, never asked: prompt=none cannot ask.
    let pending = authorize(&s.rp, &[]);
    let page = consent_page(&s, &pending.url).await;
    let pending = authorize(&s.rp, &[("prompt", "none")]);
    let back = s.browser.get(&pending.url).await;
    let params = callback_params(back.location.as_deref().unwrap());
    assert_eq!(params["error"], "consent_required");
    assert_eq!(params["state"], *pending.state.secret());

    // Deny.
    let first = authorize(&s.rp, &[]);
    let page2 = consent_page(&s, &first.url).await;
    let back = decide(&s, &page2, "deny").await;
    let params = callback_params(back.location.as_deref().unwrap());
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], *first.state.secret());
    assert_eq!(params["iss"], s.app.issuer());
    // The denied request cannot be resumed or allowed afterwards.
    let again = decide(&s, &page2, "allow").await;
    assert_eq!(again.status, 400);
    // A consent POST without its CSRF token is refused.
    let tx = page.field("tx").unwrap();
    let forged = s
        .browser
        .post_form("/consent", &[("tx", &tx), ("decision", "allow")])
        .await;
    assert_eq!(forged.status, 403);
}

fn end_session_url(s: &Setup, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&format!("{}/end-session", s.app.issuer())).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

#[tokio::test]
async fn rp_initiated_logout_ends_the_session_and_returns_to_a_registered_uri() {
    let (s, tokens) = signed_in_with(ClientOpts {
        post_logout_redirect_uri: Some(LOGGED_OUT),
        ..Default::default()
    })
    .await;
    let hint = tokens.id_token().unwrap().to_string();
    // Even an expired hint that we issued is a hint.
    s.app.clock().advance(Duration::minutes(11));
    let page = s
        .browser
        .get(&end_session_url(
            &s,
            &[
                ("id_token_hint", &hint),
                ("post_logout_redirect_uri", LOGGED_OUT),
                ("state", "bye 1"),
            ],
        ))
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let location = page.location.unwrap();
    assert!(location.starts_with(LOGGED_OUT), "{location}");
    assert_eq!(callback_params(&location)["state"], "bye 1");
    assert!(
        page.set_cookies
            .iter()
            .any(|c| c.starts_with("tobira_session=;") && c.contains("Max-Age=0"))
    );
    // The session's grants ended with it.
    assert_eq!(userinfo_status(&s, tokens.access_token()).await, 401);
    let pending = authorize(&s.rp, &[("prompt", "none")]);
    let back = s.browser.get(&pending.url).await;
    assert_eq!(
        callback_params(back.location.as_deref().unwrap())["error"],
        "login_required"
    );
}

/// The database fails after the session was found and before its member is read: the
/// logout answers 500 and ends nothing (it does not ask the member whether to sign out
/// as if the hint named someone else), and the same request works once it is back.
#[tokio::test]
async fn a_logout_whose_member_cannot_be_read_is_a_500_and_works_after() {
    let (s, tokens) = signed_in_with(ClientOpts {
        post_logout_redirect_uri: Some(LOGGED_OUT),
        ..Default::default()
    })
    .await;
    let hint = tokens.id_token().unwrap().to_string();
    let url = end_session_url(
        &s,
        &[
            ("id_token_hint", &hint),
            ("post_logout_redirect_uri", LOGGED_OUT),
        ],
    );
    let failed = s.app.without_table("users", s.browser.get(&url)).await;
    assert_eq!(failed.status, 500, "{}", failed.body);
    assert!(failed.field("tx").is_none(), "{}", failed.body);
    assert_eq!(userinfo_status(&s, tokens.access_token()).await, 200);
    let done = s.browser.get(&url).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(done.location.unwrap().starts_with(LOGGED_OUT));
    assert_eq!(userinfo_status(&s, tokens.access_token()).await, 401);
}

#[tokio::test]
async fn logout_without_a_valid_hint_asks_first_and_never_redirects_elsewhere() {
    let s = setup(ClientOpts {
        post_logout_redirect_uri: Some(LOGGED_OUT),
        ..Default::default()
    })
    .await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let hint = tokens.id_token().unwrap().to_string();

    // Forged, unsigned and foreign hints are refused with a page.
    let mut parts: Vec<String> = hint.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    let forged = parts.join(".");
    let none_header = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{none_header}.{}.", hint.split('.').nth(1).unwrap());
    let other = TestApp::spawn().await;
    other.add_user(EMAIL, PASSWORD).await;
    let (oid, osecret) = other.add_client(ClientOpts::default()).await;
    let orp = rp::client(
        &s.http,
        &other.issuer(),
        &oid,
        Auth::Basic(osecret.unwrap()),
        REDIRECT,
    )
    .await;
    let ob = other.browser();
    let op = authorize(&orp, &[]);
    let back = ob.sign_in(&op.url, EMAIL, PASSWORD, false).await;
    let ocode = openidconnect::AuthorizationCode::new(
        callback_params(back.location.as_deref().unwrap())["code"].clone(),
    );
    let otokens = orp
        .exchange_code(ocode)
        .unwrap()
        .set_pkce_verifier(op.verifier)
        .request_async(&s.http)
        .await
        .unwrap();
    let foreign = otokens.id_token().unwrap().to_string();
    let access_token_as_hint = tokens.access_token().secret().clone();
    for bad in [&forged, &unsigned, &foreign, &access_token_as_hint] {
        let page = s
            .browser
            .get(&end_session_url(
                &s,
                &[
                    ("id_token_hint", bad),
                    ("post_logout_redirect_uri", LOGGED_OUT),
                ],
            ))
            .await;
        assert_eq!(page.status, 400, "{bad}");
        assert!(page.location.is_none());
    }
    // An unregistered post-logout URI, or one without a client to check it against.
    for params in [
        vec![
            ("id_token_hint", hint.as_str()),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ],
        vec![
            ("id_token_hint", hint.as_str()),
            ("post_logout_redirect_uri", "http://127.0.0.1:9/logged-out/"),
        ],
        vec![("post_logout_redirect_uri", LOGGED_OUT)],
        vec![
            ("client_id", "someone-else"),
            ("id_token_hint", hint.as_str()),
        ],
    ] {
        let page = s.browser.get(&end_session_url(&s, &params)).await;
        assert_eq!(page.status, 400, "{params:?}");
        assert!(page.location.is_none());
    }
    assert_eq!(
        userinfo_status(&s, tokens.access_token()).await,
        200,
        "nothing ended yet"
    );

    // No hint: a confirmation page; nothing ends until the member confirms.
    let page = s
        .browser
        .get(&end_session_url(
            &s,
            &[
                ("client_id", &s.client_id),
                ("post_logout_redirect_uri", LOGGED_OUT),
                ("state", "s1"),
            ],
        ))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("ログアウトしますか？"));
    assert_eq!(userinfo_status(&s, tokens.access_token()).await, 200);
    // A second question opened meanwhile (another tab) is its own: each keeps its state.
    let other = s
        .browser
        .get(&end_session_url(
            &s,
            &[
                ("client_id", &s.client_id),
                ("post_logout_redirect_uri", LOGGED_OUT),
                ("state", "s2"),
            ],
        ))
        .await;
    assert_eq!(other.status, 200);
    assert_ne!(other.field("tx"), page.field("tx"));
    let tx = page.field("tx").unwrap();
    let csrf = page.field("csrf").unwrap();
    let no_csrf = s
        .browser
        .post_form("/end-session/confirm", &[("tx", &tx)])
        .await;
    assert_eq!(no_csrf.status, 403);
    let done = s
        .browser
        .post_form("/end-session/confirm", &[("tx", &tx), ("csrf", &csrf)])
        .await;
    assert_eq!(done.status, 303);
    assert_eq!(
        callback_params(done.location.as_deref().unwrap())["state"],
        "s1"
    );
    assert_eq!(userinfo_status(&s, tokens.access_token()).await, 401);
    // Replaying the confirmation does nothing more.
    let again = s
        .browser
        .post_form("/end-session/confirm", &[("tx", &tx), ("csrf", &csrf)])
        .await;
    assert_eq!(again.status, 400);
    // POST is answered like GET; with no session and no redirect, a "signed out" page.
    let posted = s
        .browser
        .post_form("/end-session", &[("ui_locales", "en")])
        .await;
    assert_eq!(posted.status, 303);
    let page = s.browser.follow(posted).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("You have been signed out."));
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub async fn post_token_endpoint(s: &Setup, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let res = s
        .http
        .0
        .post(format!("{}{path}", s.app.issuer()))
        .basic_auth(&s.client_id, s.secret.as_deref())
        .form(form)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The hint orders the lookups (RFC 7009 §2.1): with the refresh tokens unreadable, an
/// access token is still found when it is looked up first (no hint, or its own), and a
/// lookup that could not be made is an error, never "inactive" or "revoked".
#[tokio::test]
async fn the_token_type_hint_orders_the_lookups() {
    let (s, tokens) = signed_in_with(ClientOpts {
        refresh: true,
        ..Default::default()
    })
    .await;
    let at = tokens.access_token().secret().clone();
    let answers = s
        .app
        .without_table("refresh_tokens", async {
            let mut answers = Vec::new();
            for hint in ["", "access_token", "refresh_token"] {
                let mut form = vec![("token", at.as_str())];
                if !hint.is_empty() {
                    form.push(("token_type_hint", hint));
                }
                answers.push(post_token_endpoint(&s, "/introspect", &form).await);
            }
            answers
        })
        .await;
    for (status, body) in &answers[..2] {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["active"], true, "{body}");
    }
    let (status, body) = &answers[2];
    assert!(*status >= 500, "{status} {body}");
    let (status, body) = post_token_endpoint(
        &s,
        "/introspect",
        &[("token", &at), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!((status, &body["active"]), (200, &Value::Bool(true)));
}

#[tokio::test]
async fn introspection_and_revocation_follow_rfc_7662_and_7009() {
    let s = setup(ClientOpts {
        refresh: true,
        ..Default::default()
    })
    .await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let at = tokens.access_token().secret().clone();
    let rt = tokens.refresh_token().unwrap().secret().clone();

    let (status, body) = post_token_endpoint(&s, "/introspect", &[("token", &at)]).await;
    assert_eq!(status, 200);
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], s.client_id);
    assert!(body["scope"].as_str().unwrap().contains("openid"));
    assert!(body["exp"].is_i64() && body["sub"].is_string());
    let (_, body) = post_token_endpoint(
        &s,
        "/introspect",
        &[("token", &rt), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(body["active"], true);
    assert_eq!(body["token_type"], "refresh_token");
    for junk in ["nonsense", "a.b.c", ""] {
        let (status, body) = post_token_endpoint(&s, "/introspect", &[("token", junk)]).await;
        if junk.is_empty() {
            assert_eq!(status, 400);
        } else {
            assert_eq!(body, serde_json::json!({ "active": false }));
        }
    }
    // Another client sees nothing, and may not revoke.
    let (other_id, other_secret) = s
        .app
        .add_client(ClientOpts {
            name: "Other",
            ..Default::default()
        })
        .await;
    let other = reqwest::Client::new();
    let res = other
        .post(format!("{}/introspect", s.app.issuer()))
        .basic_auth(&other_id, other_secret.as_deref())
        .form(&[("token", &at)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        serde_json::json!({ "active": false })
    );
    let res = other
        .post(format!("{}/revoke", s.app.issuer()))
        .basic_auth(&other_id, other_secret.as_deref())
        .form(&[("token", &rt)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // Unauthenticated callers get nothing.
    let res = other
        .post(format!("{}/introspect", s.app.issuer()))
        .form(&[("token", &at)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // Revoking the access token: inactive everywhere, the grant lives on.
    let (status, _) = post_token_endpoint(&s, "/revoke", &[("token", &at)]).await;
    assert_eq!(status, 200);
    assert_eq!(
        userinfo_status(&s, &AccessToken::new(at.clone())).await,
        401
    );
    let (_, body) = post_token_endpoint(&s, "/introspect", &[("token", &at)]).await;
    assert_eq!(body["active"], false);
    let (_, body) = post_token_endpoint(&s, "/introspect", &[("token", &rt)]).await;
    assert_eq!(body["active"], true);
    // Unknown tokens: 200 all the same.
    let (status, _) = post_token_endpoint(&s, "/revoke", &[("token", "never-issued")]).await;
    assert_eq!(status, 200);

    // Revoking the refresh token revokes the grant.
    let second =
        s.rp.exchange_refresh_token(&openidconnect::RefreshToken::new(rt.clone()))
            .unwrap()
            .request_async(&s.http)
            .await
            .unwrap();
    let rt2 = second.refresh_token().unwrap().secret().clone();
    // Rotated: the spent token is inactive (its grant lives on), the new one active.
    let (_, body) = post_token_endpoint(&s, "/introspect", &[("token", &rt)]).await;
    assert_eq!(body, serde_json::json!({ "active": false }));
    let (_, body) = post_token_endpoint(&s, "/introspect", &[("token", &rt2)]).await;
    assert_eq!(body["active"], true, "{body}");
    let (status, _) = post_token_endpoint(
        &s,
        "/revoke",
        &[("token", &rt2), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(userinfo_status(&s, second.access_token()).await, 401);
    let err =
        s.rp.exchange_refresh_token(&openidconnect::RefreshToken::new(rt2.clone()))
            .unwrap()
            .request_async(&s.http)
            .await
            .unwrap_err();
    assert_eq!(token_error(err), "invalid_grant");
    let (_, body) = post_token_endpoint(
        &s,
        "/introspect",
        &[("token", second.access_token().secret())],
    )
    .await;
    assert_eq!(body["active"], false);

    // Expired tokens are inactive.
    let pending = authorize(&s.rp, &[]);
    let back = s.browser.follow(s.browser.get(&pending.url).await).await;
    let code = code_from(&s, &back, &pending);
    let fresh = exchange(&s, code, pending.verifier).await.unwrap();
    s.app.clock().advance(Duration::seconds(601));
    let (_, body) = post_token_endpoint(
        &s,
        "/introspect",
        &[("token", fresh.access_token().secret())],
    )
    .await;
    assert_eq!(body["active"], false);
}

#[tokio::test]
async fn client_credentials_gives_a_jwt_access_token_and_nothing_else() {
    let s = setup(ClientOpts {
        client_credentials: true,
        ..Default::default()
    })
    .await;
    let (status, body) =
        post_token_endpoint(&s, "/token", &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    assert_eq!(body["token_type"], "Bearer");
    let at = body["access_token"].as_str().unwrap().to_owned();
    let header: Value =
        serde_json::from_slice(&base64_decode(at.split('.').next().unwrap())).unwrap();
    assert_eq!(header["typ"], "at+jwt");
    let claims: Value =
        serde_json::from_slice(&base64_decode(at.split('.').nth(1).unwrap())).unwrap();
    assert_eq!(claims["sub"], s.client_id);
    assert_eq!(claims["client_id"], s.client_id);
    // Not a member's token: userinfo has nothing to say; introspection knows it.
    assert_eq!(
        userinfo_status(&s, &AccessToken::new(at.clone())).await,
        401
    );
    let (_, intro) = post_token_endpoint(&s, "/introspect", &[("token", &at)]).await;
    assert_eq!(intro["active"], true);
    assert_eq!(intro["sub"], s.client_id);
    let (status, body) = post_token_endpoint(
        &s,
        "/token",
        &[("grant_type", "client_credentials"), ("scope", "openid")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );

    // A client not registered for it.
    let t = setup(ClientOpts::default()).await;
    let (status, body) =
        post_token_endpoint(&t, "/token", &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[tokio::test]
async fn each_client_gets_id_tokens_in_its_own_algorithm() {
    for alg in [Alg::ES256, Alg::EdDSA, Alg::RS256] {
        let s = setup(ClientOpts {
            id_token_alg: alg,
            ..Default::default()
        })
        .await;
        let pending = authorize(&s.rp, &[]);
        let code = sign_in_for_code(&s, &pending).await;
        let tokens = exchange(&s, code, pending.verifier).await.unwrap();
        // openidconnect validates the signature and at_hash (SHA-512 for EdDSA).
        verify_id_token(&s, &tokens, &pending.nonce);
        let id_token = tokens.id_token().unwrap().to_string();
        let header: Value =
            serde_json::from_slice(&base64_decode(id_token.split('.').next().unwrap())).unwrap();
        assert_eq!(header["alg"], alg.as_str());
        let at_header: Value = serde_json::from_slice(&base64_decode(
            tokens.access_token().secret().split('.').next().unwrap(),
        ))
        .unwrap();
        assert_eq!(
            at_header["alg"], "RS256",
            "access tokens follow the server setting"
        );
    }
    // The server setting for access tokens.
    let app = TestApp::spawn_with(|c| c.tokens.access_token_alg = Alg::ES256).await;
    app.add_user(EMAIL, PASSWORD).await;
    let (id, secret) = app.add_client(ClientOpts::default()).await;
    let http = rp::Http::new();
    let client = rp::client(
        &http,
        &app.issuer(),
        &id,
        Auth::Basic(secret.unwrap()),
        REDIRECT,
    )
    .await;
    let browser = app.browser();
    let pending = authorize(&client, &[]);
    let back = browser.sign_in(&pending.url, EMAIL, PASSWORD, false).await;
    let code = openidconnect::AuthorizationCode::new(
        callback_params(back.location.as_deref().unwrap())["code"].clone(),
    );
    let tokens = client
        .exchange_code(code)
        .unwrap()
        .set_pkce_verifier(pending.verifier)
        .request_async(&http)
        .await
        .unwrap();
    let at_header: Value = serde_json::from_slice(&base64_decode(
        tokens.access_token().secret().split('.').next().unwrap(),
    ))
    .unwrap();
    assert_eq!(at_header["alg"], "ES256");
    let res = http
        .0
        .get(format!("{}/userinfo", app.issuer()))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
