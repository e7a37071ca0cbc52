//! The OpenID Connect core flow, driven by the `openidconnect` crate as the relying party
//! and a cookie-keeping HTTP client as the browser, signing in through the real form.

use openidconnect::core::{CoreAuthenticationFlow, CoreErrorResponseType};
use openidconnect::{
    AccessToken, AccessTokenHash, AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RequestTokenError, Scope, TokenResponse as _,
};
use time::Duration;

use crate::helpers::{Browser, ClientOpts, TestApp, callback_params};
use crate::rp::{self, Auth, Http, IdClaims, Rp, TokenResponse};

pub const EMAIL: &str = "hanako@example.jp";
pub const PASSWORD: &str = "violet-tunnel-ramen-42";
pub const REDIRECT: &str = "http://127.0.0.1:9/callback";

pub struct Setup {
    pub app: TestApp,
    pub http: Http,
    pub rp: Rp,
    pub client_id: String,
    pub secret: Option<String>,
    pub browser: Browser,
}

impl Setup {
    /// A second confidential client of the same OP, as its own relying party.
    pub async fn another_client(&self, name: &'static str, auth: fn(String) -> Auth) -> Rp {
        let (id, secret) = self
            .app
            .add_client(ClientOpts {
                name,
                ..Default::default()
            })
            .await;
        rp::client(
            &self.http,
            &self.app.issuer(),
            &id,
            auth(secret.unwrap()),
            REDIRECT,
        )
        .await
    }
}

pub async fn setup(opts: ClientOpts) -> Setup {
    setup_with(opts, |_| {}).await
}

/// Like `setup`, with configuration changes.
pub async fn setup_with(
    opts: ClientOpts,
    configure: impl FnOnce(&mut tobira_auth::Config),
) -> Setup {
    let app = TestApp::spawn_with(configure).await;
    app.add_user(EMAIL, PASSWORD).await;
    let public = opts.public;
    let (client_id, secret) = app.add_client(opts).await;
    let http = Http::new();
    let auth = if public {
        Auth::None
    } else {
        Auth::Basic(secret.clone().unwrap())
    };
    let rp = rp::client(&http, &app.issuer(), &client_id, auth, REDIRECT).await;
    let browser = app.browser();
    Setup {
        app,
        http,
        rp,
        client_id,
        secret,
        browser,
    }
}

pub struct Pending {
    pub url: String,
    pub state: CsrfToken,
    pub nonce: Nonce,
    pub verifier: PkceCodeVerifier,
}

pub fn authorize(rp: &Rp, extra: &[(&str, &str)]) -> Pending {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge);
    for (k, v) in extra {
        req = req.add_extra_param(*k, *v);
    }
    let (url, state, nonce) = req.url();
    Pending {
        url: url.to_string(),
        state,
        nonce,
        verifier,
    }
}

/// The URL with one query parameter replaced.
pub fn with_param(url: &str, key: &str, value: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != key)
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(key, value);
    url.to_string()
}

/// Signs in through the form and returns the code, checking `state` and `iss`.
pub async fn sign_in_for_code(s: &Setup, pending: &Pending) -> AuthorizationCode {
    let back = s
        .browser
        .sign_in(&pending.url, EMAIL, PASSWORD, false)
        .await;
    code_from(s, &back, pending)
}

pub fn code_from(s: &Setup, back: &crate::helpers::Page, pending: &Pending) -> AuthorizationCode {
    assert_eq!(back.status, 303, "{}", back.body);
    let location = back.location.clone().expect("a redirect to the client");
    assert!(location.starts_with(REDIRECT), "{location}");
    let params = callback_params(&location);
    assert_eq!(
        params.get("state"),
        Some(pending.state.secret()),
        "state echoed"
    );
    assert_eq!(params.get("iss"), Some(&s.app.issuer()), "RFC 9207 iss");
    AuthorizationCode::new(params.get("code").expect("a code").clone())
}

pub async fn exchange(
    s: &Setup,
    code: AuthorizationCode,
    verifier: PkceCodeVerifier,
) -> Result<TokenResponse, String> {
    s.rp.exchange_code(code)
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&s.http)
        .await
        .map_err(token_error)
}

pub fn token_error<E: std::error::Error>(
    e: RequestTokenError<E, openidconnect::StandardErrorResponse<CoreErrorResponseType>>,
) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => r.error().as_ref().to_owned(),
        other => format!("unexpected: {other:?}"),
    }
}

pub fn verify_id_token(s: &Setup, tokens: &TokenResponse, nonce: &Nonce) -> IdClaims {
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = s.rp.id_token_verifier();
    let claims = id_token
        .claims(&verifier, nonce)
        .expect("the ID token validates")
        .clone();
    let expected = claims.access_token_hash().expect("at_hash");
    let actual = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(&actual, expected);
    claims
}

/// Checks that the tokens are dead: the refresh token is refused and the access token
/// gets no answer at userinfo.
pub async fn assert_tokens_dead(s: &Setup, tokens: &TokenResponse) {
    let refreshed =
        s.rp.exchange_refresh_token(tokens.refresh_token().expect("a refresh token"))
            .unwrap()
            .request_async(&s.http)
            .await;
    assert!(refreshed.is_err(), "the refresh token is refused");
    assert_eq!(
        userinfo_status(s, tokens.access_token()).await,
        401,
        "the access token is refused"
    );
}

pub async fn userinfo_status(s: &Setup, token: &AccessToken) -> u16 {
    s.http
        .0
        .get(format!("{}/userinfo", s.app.issuer()))
        .bearer_auth(token.secret())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn discovery_is_truthful_and_jwks_is_cacheable() {
    let app = TestApp::spawn().await;
    let http = Http::new();
    let md = rp::discover(&http, &app.issuer()).await;
    assert_eq!(md.issuer().as_str(), app.issuer());
    let extra = md.additional_metadata();
    assert_eq!(
        extra.authorization_response_iss_parameter_supported,
        Some(true)
    );
    let methods: Vec<&str> = extra
        .code_challenge_methods_supported
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.as_str())
        .collect();
    assert_eq!(methods, ["S256"]);
    assert_eq!(md.jwks().keys().len(), 3, "a key for each algorithm");

    let raw: serde_json::Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(raw["request_uri_parameter_supported"], false);
    assert_eq!(
        raw["response_modes_supported"],
        serde_json::json!(["query", "form_post"])
    );
    assert_eq!(
        raw["grant_types_supported"],
        serde_json::json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    for endpoint in [
        "end_session_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
    ] {
        let url = raw[endpoint].as_str().unwrap();
        assert!(url.starts_with(&app.issuer()), "{endpoint}");
        let path = &url[app.issuer().len()..];
        let probe = app.get(path).await.status().as_u16();
        assert_ne!(probe, 404, "{endpoint} is served");
    }
    assert_eq!(raw["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        raw["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256", "ES256", "EdDSA"])
    );
    let jwks = app.get("/jwks").await;
    assert!(
        jwks.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    let body: serde_json::Value = jwks.json().await.unwrap();
    assert!(body["keys"][0].get("d").is_none(), "public keys only");
    assert!(body["keys"][0]["kid"].is_string());
}

#[tokio::test]
async fn the_code_flow_with_pkce_yields_verified_tokens_and_userinfo() {
    let s = setup(ClientOpts::default()).await;
    // state comes back byte for byte, whatever it holds.
    let pending = {
        let mut p = authorize(&s.rp, &[]);
        let odd_state = "a b+c/ü=&%20";
        p.url = p.url.replace(
            &format!("state={}", p.state.secret()),
            &format!(
                "state={}",
                url::form_urlencoded::byte_serialize(odd_state.as_bytes()).collect::<String>()
            ),
        );
        p.state = CsrfToken::new(odd_state.to_owned());
        p
    };
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let claims = verify_id_token(&s, &tokens, &pending.nonce);
    let user = s.app.user(EMAIL).await.unwrap();
    assert_eq!(claims.subject().as_str(), user.sub.as_str());
    assert!(claims.auth_time().is_some());
    assert!(claims.additional_claims().sid.is_some(), "sid");
    assert_eq!(claims.auth_method_refs().unwrap()[0].as_str(), "pwd");
    assert!(
        tokens.refresh_token().is_none(),
        "no refresh token without offline_access or registration"
    );
    assert_eq!(tokens.expires_in().unwrap().as_secs(), 600);

    // The access token is an RFC 9068 JWT.
    let header = tokens.access_token().secret().split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(&base64_decode(header)).unwrap();
    assert_eq!(header["typ"], "at+jwt");

    let info: openidconnect::UserInfoClaims<rp::Claims, openidconnect::core::CoreGenderClaim> =
        s.rp.user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .unwrap()
        .request_async(&s.http)
        .await
        .unwrap();
    assert_eq!(info.email().unwrap().as_str(), EMAIL);
    assert_eq!(info.email_verified(), Some(true));
    assert_eq!(
        info.name().unwrap().get(None).unwrap().as_str(),
        "山田 花子"
    );

    // POST with the token in the header and in the form body.
    let url = format!("{}/userinfo", s.app.issuer());
    let by_header = s
        .http
        .0
        .post(&url)
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), 200);
    let by_body = s
        .http
        .0
        .post(&url)
        .form(&[("access_token", tokens.access_token().secret().as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(by_body.status(), 200);
    let body: serde_json::Value = by_body.json().await.unwrap();
    assert_eq!(body["sub"], claims.subject().as_str());
    assert_eq!(body["email"], EMAIL);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[tokio::test]
async fn userinfo_refuses_missing_forged_and_id_tokens() {
    let s = setup(ClientOpts::default()).await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let url = format!("{}/userinfo", s.app.issuer());
    let res = s.http.0.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        r#"Bearer realm="tobira""#
    );
    for bad in ["garbage", tokens.id_token().unwrap().to_string().as_str()] {
        let res = s.http.0.get(&url).bearer_auth(bad).send().await.unwrap();
        assert_eq!(res.status(), 401);
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains(r#"error="invalid_token""#)
        );
    }
    // Another scheme, or the scheme without a token, is no token: the plain challenge,
    // without an error code (RFC 6750 §3.1), never a token cut out of another scheme.
    for header in [
        "Basic dXNlcjpwYXNzd29yZA==",
        "Bearer",
        "Token abcdefghijklmnop",
    ] {
        let res = s
            .http
            .0
            .get(&url)
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{header}");
        assert_eq!(
            res.headers()["www-authenticate"],
            r#"Bearer realm="tobira""#,
            "{header}"
        );
    }
    // The body counts only in a form POST: a GET's body is not read, so a GET with the
    // token in its header and a form body is answered from the header.
    let res = s
        .http
        .0
        .get(&url)
        .bearer_auth(tokens.access_token().secret())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("access_token=garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A token whose payload was altered.
    let at = tokens.access_token().secret();
    let mut parts: Vec<String> = at.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    let res = s
        .http
        .0
        .get(&url)
        .bearer_auth(parts.join("."))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Expired: move the clock past the access token's lifetime.
    s.app.clock().advance(Duration::seconds(601));
    assert_eq!(userinfo_status(&s, tokens.access_token()).await, 401);
}

/// A first-party client allowed refresh tokens, and the tokens of the member's sign-in.
pub async fn signed_in_with_refresh() -> (Setup, TokenResponse) {
    signed_in_with(ClientOpts {
        first_party: true,
        refresh: true,
        ..Default::default()
    })
    .await
}

/// A client registered with `opts`, and the tokens of the member's sign-in through it.
pub async fn signed_in_with(opts: ClientOpts) -> (Setup, TokenResponse) {
    let s = setup(opts).await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    (s, tokens)
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_grant() {
    let (s, first) = signed_in_with_refresh().await;
    let rt1 = first
        .refresh_token()
        .expect("a refresh token for a client registered with it")
        .clone();

    let second =
        s.rp.exchange_refresh_token(&rt1)
            .unwrap()
            .request_async(&s.http)
            .await
            .unwrap();
    let rt2 = second.refresh_token().expect("rotated").clone();
    assert_ne!(rt1.secret(), rt2.secret());
    let refreshed_id = second.id_token().expect("an ID token on refresh");
    let claims = refreshed_id
        .claims(&s.rp.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
        .unwrap();
    assert!(claims.nonce().is_none());
    assert_eq!(userinfo_status(&s, second.access_token()).await, 200);

    // The spent token comes back: the whole grant is revoked.
    let err =
        s.rp.exchange_refresh_token(&rt1)
            .unwrap()
            .request_async(&s.http)
            .await
            .unwrap_err();
    assert_eq!(token_error(err), "invalid_grant");
    assert_eq!(userinfo_status(&s, second.access_token()).await, 401);
    let err =
        s.rp.exchange_refresh_token(&rt2)
            .unwrap()
            .request_async(&s.http)
            .await
            .unwrap_err();
    assert_eq!(token_error(err), "invalid_grant");
}

#[tokio::test]
async fn one_sign_in_gives_sso_with_prompt_none_and_login_required_without_a_session() {
    let s = setup(ClientOpts::default()).await;
    let pending = authorize(&s.rp, &[]);
    sign_in_for_code(&s, &pending).await;

    // A second client, same browser: no form, a code at once.
    let other = s.another_client("Second Site", Auth::Post).await;
    let pending = authorize(&other, &[("prompt", "none")]);
    let back = s.browser.follow(s.browser.get(&pending.url).await).await;
    let code = code_from(&s, &back, &pending);
    let tokens = other
        .exchange_code(code)
        .unwrap()
        .set_pkce_verifier(pending.verifier)
        .request_async(&s.http)
        .await;
    assert!(tokens.is_ok(), "client_secret_post works");

    // Another browser has no session.
    let stranger = s.app.browser();
    let pending = authorize(&s.rp, &[("prompt", "none")]);
    let back = stranger.get(&pending.url).await;
    let params = callback_params(back.location.as_deref().unwrap());
    assert_eq!(params["error"], "login_required");
    assert_eq!(params["state"], *pending.state.secret());
    assert_eq!(params["iss"], s.app.issuer());
}

#[tokio::test]
async fn prompt_login_and_max_age_force_a_new_sign_in() {
    let s = setup(ClientOpts::default()).await;
    let pending = authorize(&s.rp, &[]);
    sign_in_for_code(&s, &pending).await;

    let pending = authorize(&s.rp, &[("prompt", "login")]);
    let page = s.browser.follow(s.browser.get(&pending.url).await).await;
    assert_eq!(page.status, 200, "the sign-in form, despite the session");
    let back = s.browser.submit_login(&page, EMAIL, PASSWORD, false).await;
    let code = code_from(&s, &back, &pending);
    let claims = verify_id_token(
        &s,
        &exchange(&s, code, pending.verifier).await.unwrap(),
        &pending.nonce,
    );
    assert_eq!(
        claims.auth_time().unwrap().timestamp(),
        s.app.clock().now().unix_timestamp()
    );

    // Within max_age (to the second): no form. Past it: the form again.
    let pending = authorize(&s.rp, &[("max_age", "300")]);
    let back = s.browser.follow(s.browser.get(&pending.url).await).await;
    code_from(&s, &back, &pending);
    s.app.clock().advance(Duration::seconds(300));
    let pending = authorize(&s.rp, &[("max_age", "300")]);
    let back = s.browser.follow(s.browser.get(&pending.url).await).await;
    code_from(&s, &back, &pending);
    s.app.clock().advance(Duration::seconds(1));
    let pending = authorize(&s.rp, &[("max_age", "300")]);
    let page = s.browser.follow(s.browser.get(&pending.url).await).await;
    assert_eq!(page.status, 200);
    assert!(page.field("csrf").is_some());
    // prompt=none with an old sign-in and max_age: login_required.
    let pending = authorize(&s.rp, &[("max_age", "10"), ("prompt", "none")]);
    let back = s.browser.get(&pending.url).await;
    assert_eq!(
        callback_params(back.location.as_deref().unwrap())["error"],
        "login_required"
    );
}

#[tokio::test]
async fn a_replayed_code_fails_and_revokes_what_the_first_use_issued() {
    let s = setup(ClientOpts::default()).await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let verifier = pending.verifier.secret().clone();
    let tokens = exchange(&s, code.clone(), pending.verifier).await.unwrap();
    assert_eq!(userinfo_status(&s, tokens.access_token()).await, 200);
    let err = exchange(&s, code, PkceCodeVerifier::new(verifier))
        .await
        .unwrap_err();
    assert_eq!(err, "invalid_grant");
    assert_eq!(
        userinfo_status(&s, tokens.access_token()).await,
        401,
        "the grant is revoked"
    );
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let s = setup(ClientOpts::default()).await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    s.app.clock().advance(Duration::seconds(61));
    assert_eq!(
        exchange(&s, code, pending.verifier).await.unwrap_err(),
        "invalid_grant"
    );
}

#[tokio::test]
async fn pkce_mismatches_are_refused() {
    let s = setup(ClientOpts::default()).await;
    // Wrong verifier.
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let wrong = PkceCodeVerifier::new("x".repeat(43));
    assert_eq!(
        exchange(&s, code, wrong).await.unwrap_err(),
        "invalid_grant"
    );

    // A verifier for a code issued without a challenge (RFC 9700 §2.1.1).
    let (url, state, _) =
        s.rp.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .url();
    let back = s.browser.follow(s.browser.get(url.as_str()).await).await;
    let params = callback_params(back.location.as_deref().unwrap());
    assert_eq!(params["state"], *state.secret());
    let code = AuthorizationCode::new(params["code"].clone());
    let err = exchange(&s, code, PkceCodeVerifier::new("y".repeat(43)))
        .await
        .unwrap_err();
    assert_eq!(err, "invalid_grant");

    // plain, and a challenge without a method (which means plain), go back as errors.
    for extra in [&[("code_challenge_method", "plain")][..], &[]] {
        let mut url = url::Url::parse(&authorize(&s.rp, &[]).url).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .filter(|(k, _)| k != "code_challenge_method")
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .extend_pairs(extra.iter().copied());
        let back = s.browser.get(url.as_str()).await;
        assert_eq!(
            callback_params(back.location.as_deref().unwrap())["error"],
            "invalid_request",
            "{extra:?}"
        );
    }
}

#[tokio::test]
async fn a_public_client_must_use_pkce() {
    let s = setup(ClientOpts {
        public: true,
        ..Default::default()
    })
    .await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    assert!(
        exchange(&s, code, pending.verifier).await.is_ok(),
        "a public client with PKCE"
    );
    let (url, _, _) =
        s.rp.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .url();
    let back = s.browser.get(url.as_str()).await;
    let params = callback_params(back.location.as_deref().unwrap());
    assert_eq!(params["error"], "invalid_request");
    assert!(params["error_description"].contains("PKCE"));
}

#[tokio::test]
async fn codes_are_bound_to_their_client_and_secrets_are_checked() {
    let s = setup(ClientOpts::default()).await;
    let thief = s.another_client("Thief", Auth::Basic).await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let err = thief
        .exchange_code(code)
        .unwrap()
        .set_pkce_verifier(pending.verifier)
        .request_async(&s.http)
        .await
        .unwrap_err();
    assert_eq!(token_error(err), "invalid_grant");

    // A wrong secret over Basic: 401 with a Basic challenge.
    let res = s
        .http
        .0
        .post(format!("{}/token", s.app.issuer()))
        .basic_auth(&s.client_id, Some("wrong-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    // Wrong secret in the body; no authentication at all; both methods at once.
    for form in [
        vec![
            ("grant_type", "authorization_code"),
            ("client_id", s.client_id.as_str()),
            ("client_secret", "nope"),
        ],
        vec![
            ("grant_type", "authorization_code"),
            ("client_id", s.client_id.as_str()),
        ],
    ] {
        let res = s
            .http
            .0
            .post(format!("{}/token", s.app.issuer()))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    let res = s
        .http
        .0
        .post(format!("{}/token", s.app.issuer()))
        .basic_auth(&s.client_id, s.secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_secret", s.secret.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // Unknown grant types, and a body that is not a form.
    let res = s
        .http
        .0
        .post(format!("{}/token", s.app.issuer()))
        .basic_auth(&s.client_id, s.secret.as_deref())
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
    let res = s
        .http
        .0
        .post(format!("{}/token", s.app.issuer()))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn untrusted_redirect_uris_and_clients_get_an_error_page_never_a_redirect() {
    let s = setup(ClientOpts::default()).await;
    let base = authorize(&s.rp, &[]).url;
    let cases = [
        base.replace(
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback",
            "redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
        ),
        base.replace(
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback",
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback%3Fx%3D1",
        ),
        base.replace(
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback",
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback%2F",
        ),
        base.replace("redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&", ""),
        base.replace(&format!("client_id={}", s.client_id), "client_id=unknown"),
    ];
    for url in cases {
        assert_ne!(url, base);
        let page = s.browser.get(&url).await;
        assert_eq!(page.status, 400, "{url}");
        assert!(page.location.is_none(), "{url} redirected");
        assert!(page.body.contains("<html lang=\"ja\""));
    }
}

#[tokio::test]
async fn other_request_errors_go_back_to_the_client() {
    let s = setup(ClientOpts::default()).await;
    let base = authorize(&s.rp, &[]).url;
    for (url, error) in [
        (
            base.replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            base.replace("scope=openid", "scope=profile"),
            "invalid_scope",
        ),
        (
            format!("{base}&request_uri=https%3A%2F%2Fx"),
            "request_uri_not_supported",
        ),
        (
            format!("{base}&request=eyJhbGciOiJub25lIn0.e30."),
            "request_not_supported",
        ),
        (format!("{base}&prompt=none%20login"), "invalid_request"),
        (
            format!("{base}&prompt=none%20select_account"),
            "invalid_request",
        ),
        // A code challenge is 43 to 128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.2).
        (
            with_param(&base, "code_challenge", &"a".repeat(42)),
            "invalid_request",
        ),
        (
            with_param(&base, "code_challenge", &"a".repeat(129)),
            "invalid_request",
        ),
        (
            with_param(&base, "code_challenge", &format!("{}+", "a".repeat(42))),
            "invalid_request",
        ),
        (format!("{base}&max_age=-1"), "invalid_request"),
        (format!("{base}&state=again"), "invalid_request"),
        (
            format!("{base}&id_token_hint=forged.token.here"),
            "invalid_request",
        ),
    ] {
        let page = s.browser.get(&url).await;
        assert_eq!(page.status, 303, "{url}");
        let params = callback_params(page.location.as_deref().unwrap());
        assert_eq!(params["error"], error, "{url}");
        assert_eq!(params["iss"], s.app.issuer());
    }
    // Unknown parameters and voluntary display/claims_locales/acr_values do not break it.
    let url = format!("{base}&display=touch&claims_locales=ja&acr_values=1&foo=bar");
    let page = s.browser.follow(s.browser.get(&url).await).await;
    assert_eq!(page.status, 200, "the sign-in page");
}

#[tokio::test]
async fn a_posted_authorization_request_is_answered_with_a_303_to_the_same_get() {
    let s = setup(ClientOpts::default()).await;
    let url = url::Url::parse(&authorize(&s.rp, &[]).url).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let form: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let page = s.browser.post_form("/authorize", &form).await;
    assert_eq!(page.status, 303);
    let loc = url::Url::parse(&format!("http://x{}", page.location.unwrap())).unwrap();
    assert_eq!(loc.path(), "/authorize");
    let again: Vec<(String, String)> = loc.query_pairs().into_owned().collect();
    assert_eq!(again, pairs);
}

#[tokio::test]
async fn the_sign_in_form_never_reveals_whether_an_account_exists() {
    let s = setup(ClientOpts::default()).await;
    let pending = authorize(&s.rp, &[]);
    let login = s.browser.follow(s.browser.get(&pending.url).await).await;
    let mut bodies = Vec::new();
    for (email, password) in [
        (EMAIL, "wrong-password-123"),
        ("nobody@example.jp", PASSWORD),
        ("not an email", PASSWORD),
    ] {
        let page = s.browser.post_login(&login, email, password).await;
        assert_eq!(page.status, 401);
        assert!(
            page.body
                .contains("メールアドレスまたはパスワードが正しくありません。")
        );
        assert!(
            !page.body.contains(password),
            "the password is never echoed"
        );
        bodies.push(page.body.replace(email, "EMAIL"));
    }
    assert_eq!(
        bodies[0], bodies[1],
        "same page for a wrong password and an unknown account"
    );
    assert!(s.browser.cookie("tobira_session").is_none());
}

#[tokio::test]
async fn the_sign_in_form_refuses_a_post_without_its_csrf_token() {
    let s = setup(ClientOpts::default()).await;
    let pending = authorize(&s.rp, &[]);
    let login = s.browser.follow(s.browser.get(&pending.url).await).await;
    let tx = login.field("tx").unwrap();
    let csrf = login.field("csrf").unwrap();
    for form in [
        vec![
            ("tx", tx.as_str()),
            ("email", EMAIL),
            ("password", PASSWORD),
        ],
        vec![
            ("csrf", "forged-forged-forged-forged-forged-forged"),
            ("tx", &tx),
            ("email", EMAIL),
            ("password", PASSWORD),
        ],
    ] {
        let page = s.browser.post_form("/login", &form).await;
        assert_eq!(page.status, 403);
        assert!(s.browser.cookie("tobira_session").is_none());
    }
    // The right token from another browser (no CSRF cookie there) is refused too.
    let other = s.app.browser();
    let page = other
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
    assert_eq!(page.status, 403);
    // An unknown or expired sign-in.
    let page = s
        .browser
        .post_form(
            "/login",
            &[
                ("csrf", &csrf),
                ("tx", "nope"),
                ("email", EMAIL),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 400);
    assert_eq!(s.browser.get("/login?tx=nope").await.status, 400);
}

#[tokio::test]
async fn the_sign_in_page_is_accessible_localised_and_locked_down() {
    let s = setup(ClientOpts::default()).await;
    let pending = authorize(&s.rp, &[]);
    let page = s.browser.follow(s.browser.get(&pending.url).await).await;
    assert!(page.body.contains(r#"<html lang="ja">"#));
    // The browser's autofill offers passkeys in the email field (issue 14).
    assert!(page.body.contains(r#"autocomplete="username webauthn""#));
    assert!(page.body.contains(r#"autocomplete="current-password""#));
    assert!(
        page.body
            .contains(r#"<label for="email">メールアドレス</label>"#)
    );
    assert!(page.body.contains("ログインしたままにする"));
    assert!(page.body.contains(r#"name="viewport""#));
    assert!(page.body.contains("Partner Site"));
    assert!(
        page.body.contains(r#"href="/signup?tx="#)
            && page.body.contains(r#"href="/password/forgot?tx="#)
    );
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("form-action"),
        "{csp}"
    );
    assert_eq!(page.headers["cache-control"], "no-store");
    assert_eq!(page.headers["referrer-policy"], "same-origin");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    let csrf_cookie = page
        .set_cookies
        .iter()
        .find(|c| c.starts_with("tobira_csrf="))
        .unwrap();
    assert!(csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Lax"));

    let pending = authorize(&s.rp, &[("ui_locales", "en ja")]);
    let page = s.browser.follow(s.browser.get(&pending.url).await).await;
    assert!(page.body.contains(r#"<html lang="en">"#));
    assert!(page.body.contains("Keep me signed in"));
    // Hostile values are escaped, never markup. A login_hint is echoed only when it
    // parses as an address, and an address may hold `'` and `&` (RFC 5322 atext)…
    let hint = "o'neil&co@x.jp";
    let pending = authorize(&s.rp, &[("login_hint", hint)]);
    let page = s.browser.follow(s.browser.get(&pending.url).await).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains(hint), "the hint echoed unescaped");
    assert_eq!(email_field(&page.body), hint, "the hint is pre-filled");
    // …and the address typed into the form comes back after a failed sign-in, whatever
    // it holds.
    let hostile = "\"><script>alert(1)</script>@x.jp";
    let csrf = page.field("csrf").unwrap();
    let tx = page.field("tx").unwrap();
    let again = s
        .browser
        .post_form(
            "/login",
            &[
                ("csrf", &csrf),
                ("tx", &tx),
                ("email", hostile),
                ("password", "not-the-password"),
            ],
        )
        .await;
    assert_eq!(again.status, 401, "{}", again.body);
    assert!(!again.body.contains("<script>"), "{}", again.body);
    assert_eq!(
        email_field(&again.body),
        hostile,
        "the typed address is re-rendered, as text"
    );

    /// The email field's value as a browser reads it: the attribute up to its closing
    /// quote, character references decoded.
    fn email_field(body: &str) -> String {
        let input = &body[body.find(r#"<input id="email""#).expect("an email field")..];
        let input = &input[..input.find('>').unwrap()];
        let raw = input.split(r#" value=""#).nth(1).unwrap();
        let mut raw = &raw[..raw.find('"').unwrap()];
        let mut text = String::new();
        while let Some(amp) = raw.find('&') {
            text.push_str(&raw[..amp]);
            let end = amp + raw[amp..].find(';').expect("a character reference");
            text.push(match &raw[amp + 1..end] {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                r if r.starts_with("#x") => {
                    char::from_u32(u32::from_str_radix(&r[2..], 16).unwrap()).unwrap()
                }
                r => char::from_u32(r[1..].parse().unwrap()).unwrap(),
            });
            raw = &raw[end + 1..];
        }
        text.push_str(raw);
        text
    }
}

#[tokio::test]
async fn keep_me_signed_in_makes_the_session_cookie_persistent() {
    let s = setup(ClientOpts::default()).await;
    let pending = authorize(&s.rp, &[]);
    let login = s.browser.follow(s.browser.get(&pending.url).await).await;
    let csrf = login.field("csrf").unwrap();
    let tx = login.field("tx").unwrap();
    let posted = s
        .browser
        .post_form(
            "/login",
            &[
                ("csrf", &csrf),
                ("tx", &tx),
                ("email", EMAIL),
                ("password", PASSWORD),
                ("remember", "on"),
            ],
        )
        .await;
    let session = posted
        .set_cookies
        .iter()
        .find(|c| c.starts_with("tobira_session="))
        .unwrap();
    assert!(
        session.contains("Max-Age=2592000")
            && session.contains("HttpOnly")
            && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(
        posted
            .set_cookies
            .iter()
            .any(|c| c.starts_with("tobira_device="))
    );

    let other = setup(ClientOpts::default()).await;
    let pending = authorize(&other.rp, &[]);
    let login = other
        .browser
        .follow(other.browser.get(&pending.url).await)
        .await;
    let posted = other
        .browser
        .post_form(
            "/login",
            &[
                ("csrf", &login.field("csrf").unwrap()),
                ("tx", &login.field("tx").unwrap()),
                ("email", EMAIL),
                ("password", PASSWORD),
            ],
        )
        .await;
    let session = posted
        .set_cookies
        .iter()
        .find(|c| c.starts_with("tobira_session="))
        .unwrap();
    assert!(
        !session.contains("Max-Age"),
        "a browser-session cookie: {session}"
    );
    // Idle for longer than the idle timeout: the session is over.
    other.app.clock().advance(Duration::minutes(121));
    let pending = authorize(&other.rp, &[("prompt", "none")]);
    let back = other.browser.get(&pending.url).await;
    assert_eq!(
        callback_params(back.location.as_deref().unwrap())["error"],
        "login_required"
    );
}

#[tokio::test]
async fn id_token_hint_selects_the_member_and_signing_in_again_rotates_the_cookie() {
    let s = setup(ClientOpts::default()).await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let first_cookie = s.browser.cookie("tobira_session").unwrap();
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let hint = tokens.id_token().unwrap().to_string();

    // An access token is not an ID token, whatever it is signed with.
    let pending = authorize(
        &s.rp,
        &[
            ("prompt", "none"),
            ("id_token_hint", tokens.access_token().secret()),
        ],
    );
    let back = s.browser.get(&pending.url).await;
    assert_eq!(
        callback_params(back.location.as_deref().unwrap())["error"],
        "invalid_request"
    );

    // The hinted member is signed in: prompt=none succeeds, even once the hint expired.
    s.app.clock().advance(Duration::minutes(11));
    let pending = authorize(&s.rp, &[("prompt", "none"), ("id_token_hint", &hint)]);
    let back = s.browser.get(&pending.url).await;
    code_from(&s, &back, &pending);

    // Someone else is signed in: login_required.
    s.app
        .add_user("taro@example.jp", "another-strong-pass-77")
        .await;
    let pending = authorize(&s.rp, &[("prompt", "login")]);
    let page = s.browser.follow(s.browser.get(&pending.url).await).await;
    let back = s
        .browser
        .submit_login(&page, "taro@example.jp", "another-strong-pass-77", false)
        .await;
    code_from(&s, &back, &pending);
    let pending = authorize(&s.rp, &[("prompt", "none"), ("id_token_hint", &hint)]);
    let back = s.browser.get(&pending.url).await;
    assert_eq!(
        callback_params(back.location.as_deref().unwrap())["error"],
        "login_required"
    );
    // Without prompt=none the hinted member is asked to sign in; signing in there as
    // someone else answers the client login_required.
    let pending = authorize(&s.rp, &[("id_token_hint", &hint)]);
    let asked = s.browser.get(&pending.url).await;
    assert!(
        asked
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with("/login?tx=")),
        "{:?}",
        asked.location
    );
    let page = s.browser.follow(asked).await;
    let back = s
        .browser
        .submit_login(&page, "taro@example.jp", "another-strong-pass-77", false)
        .await;
    assert_eq!(
        callback_params(back.location.as_deref().unwrap())["error"],
        "login_required"
    );

    // Signing in again as the same member keeps the session but not its cookie secret.
    let pending = authorize(&s.rp, &[("prompt", "login")]);
    let page = s.browser.follow(s.browser.get(&pending.url).await).await;
    let before = s.browser.cookie("tobira_session").unwrap();
    s.browser
        .submit_login(&page, "taro@example.jp", "another-strong-pass-77", false)
        .await;
    let after = s.browser.cookie("tobira_session").unwrap();
    assert_ne!(before, after);
    assert_ne!(first_cookie, after);
}

#[tokio::test]
async fn a_frozen_account_cannot_sign_in_or_use_its_tokens() {
    let s = setup(ClientOpts::default()).await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let email = tobira_auth::domain::Email::parse(EMAIL).unwrap();
    let user = s
        .app
        .state
        .db
        .users()
        .find_by_email(&email)
        .await
        .unwrap()
        .unwrap();
    s.app
        .state
        .db
        .users()
        .set_status(
            user.id,
            tobira_auth::domain::UserStatus::Frozen,
            s.app.clock(),
        )
        .await
        .unwrap();
    assert_eq!(userinfo_status(&s, tokens.access_token()).await, 401);
    // The session no longer counts, and the right password gets a clear message.
    let pending = authorize(&s.rp, &[]);
    let login = s.browser.follow(s.browser.get(&pending.url).await).await;
    assert_eq!(login.status, 200);
    let page = s.browser.post_login(&login, EMAIL, PASSWORD).await;
    assert_eq!(page.status, 403);
    assert!(
        page.body
            .contains("このアカウントは現在ご利用いただけません")
    );
}

#[tokio::test]
async fn grants_end_with_their_session_unless_offline() {
    let s = setup(ClientOpts {
        refresh: true,
        ..Default::default()
    })
    .await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let rt = tokens
        .refresh_token()
        .expect("registered for refresh tokens")
        .clone();
    // Past the session's absolute lifetime (24 h without "keep me signed in").
    s.app
        .clock()
        .advance(Duration::hours(24) + Duration::seconds(1));
    let err =
        s.rp.exchange_refresh_token(&rt)
            .unwrap()
            .request_async(&s.http)
            .await
            .unwrap_err();
    assert_eq!(token_error(err), "invalid_grant");

    // A first-party client asking for offline_access gets a grant that outlives it.
    let s = setup(ClientOpts {
        first_party: true,
        ..Default::default()
    })
    .await;
    let mut pending = authorize(&s.rp, &[]);
    pending.url = with_param(&pending.url, "scope", "openid offline_access");
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    assert!(
        tokens
            .scopes()
            .unwrap()
            .iter()
            .any(|sc| sc.as_str() == "offline_access")
    );
    let rt = tokens
        .refresh_token()
        .expect("offline_access gives a refresh token")
        .clone();
    s.app.clock().advance(Duration::hours(25));
    let refreshed =
        s.rp.exchange_refresh_token(&rt)
            .unwrap()
            .request_async(&s.http)
            .await
            .unwrap();
    assert_eq!(userinfo_status(&s, refreshed.access_token()).await, 200);
}
