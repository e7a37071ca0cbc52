//! Signing in and out, and the callbacks and ID tokens the marketplace must refuse.

use crate::world::*;

#[tokio::test]
async fn a_member_signs_in_at_the_marketplace_through_the_op_and_out_again() {
    let w = world().await;
    let b = browser();
    let mypage = sign_in(&w, &b, HANAKO).await;
    assert_eq!(mypage.status, 200);
    assert!(
        mypage.body.contains("マイページ")
            && mypage.body.contains("山田花子")
            && mypage.body.contains("hanako@example.jp")
    );
    assert!(mypage.body.contains("(パスワード)"), "how they signed in");
    // My page links the console pages that exist, and each works: the OP session of
    // this browser opens each at once (the sign-in is recent enough for the pages that
    // need a recent one).
    for page in [
        "/account",
        "/account/email",
        "/account/password",
        "/account/sessions",
        "/account/history",
        "/account/apps",
        "/account/delete",
    ] {
        let href = format!(r#"href="{}{page}""#, w.op);
        assert!(mypage.body.contains(&href), "{href}");
        let console = get(&b, &format!("{}{page}", w.op)).await;
        assert_eq!(console.status, 200, "{page}: {}", console.body);
    }
    let console = get(&b, &format!("{}/account", w.op)).await;
    assert!(
        console.body.contains("hanako@example.jp"),
        "{}",
        console.body
    );

    // Public profile, as seen by another member; hidden at once when turned off.
    let profile = profile_path(&mypage);
    assert!(profile.starts_with("/users/"), "{profile}");
    let other = browser();
    sign_in(&w, &other, TARO).await;
    let seen = get(&other, &format!("{}{profile}", w.mp)).await;
    assert!(
        seen.body.contains("山田花子") && seen.body.contains("最終ログイン: たった今"),
        "{}",
        seen.body
    );
    let settings = get(&b, &format!("{}/settings/privacy", w.mp)).await;
    let csrf = field(&settings.body, "csrf");
    let saved = post(
        &b,
        &format!("{}/settings/privacy", w.mp),
        &[("csrf", &csrf)],
        &[],
    )
    .await;
    assert_eq!(saved.status, 303);
    let seen = get(&other, &format!("{}{profile}", w.mp)).await;
    assert!(!seen.body.contains("最終ログイン"), "{}", seen.body);
    // A settings POST without the session's token is refused.
    let forged = post(
        &b,
        &format!("{}/settings/privacy", w.mp),
        &[("show_last_login", "on")],
        &[],
    )
    .await;
    assert_eq!(forged.status, 403);

    // Sign out: the marketplace session, then the OP's.
    let csrf = field(&get(&b, &format!("{}/mypage", w.mp)).await.body, "csrf");
    let out = post(&b, &format!("{}/logout", w.mp), &[("csrf", &csrf)], &[]).await;
    assert_eq!(out.status, 303);
    let end_session = out.location.unwrap();
    assert!(
        end_session.starts_with(&format!("{}/end-session?", w.op)),
        "{end_session}"
    );
    let back = get(&b, &end_session).await;
    assert!(
        back.location
            .as_deref()
            .unwrap()
            .starts_with(&format!("{}/?state=", w.mp)),
        "{:?}",
        back.location
    );
    assert!(signed_out(&get(&b, &format!("{}/mypage", w.mp)).await));
    // No OP session either: signing in again shows the form.
    let (_, form) = to_op_form(&w, &b).await;
    assert!(form.body.contains(r#"name="password""#));
}

/// The callback URL with `key` set to `value`, or removed.
fn with(callback: &str, key: &str, value: Option<&str>) -> String {
    let mut u = url::Url::parse(callback).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != key)
        .collect();
    {
        let mut q = u.query_pairs_mut();
        q.clear().extend_pairs(pairs);
        if let Some(v) = value {
            q.append_pair(key, v);
        }
    }
    u.to_string()
}

#[tokio::test]
async fn the_callback_refuses_wrong_missing_replayed_and_foreign_states() {
    let w = world().await;
    let b = browser();
    let (_, form) = to_op_form(&w, &b).await;
    let callback = submit(&w, &b, &form, HANAKO).await;
    for bad in [
        with(&callback, "state", Some("forged")),
        with(&callback, "state", None),
        with(&callback, "iss", Some("http://evil.example")),
    ] {
        let res = get(&b, &bad).await;
        assert_eq!(res.status, 400, "{bad}");
        assert!(res.body.contains(r#"data-testid="signin-failed""#));
    }
    // Another browser cannot finish a sign-in it did not start.
    let b = browser();
    let (_, form) = to_op_form(&w, &b).await;
    let callback = submit(&w, &b, &form, HANAKO).await;
    let stranger = browser();
    let res = get(&stranger, &callback).await;
    assert_eq!(res.status, 400);
    // The right browser, once; the replay is refused (the state is single use).
    let b = browser();
    let (_, form) = to_op_form(&w, &b).await;
    let callback = submit(&w, &b, &form, HANAKO).await;
    let ok = get(&b, &callback).await;
    assert_eq!(ok.status, 303);
    let replay = get(&b, &callback).await;
    assert_eq!(replay.status, 400);
}

#[tokio::test]
async fn a_callback_without_iss_is_refused_because_the_op_promises_to_send_it() {
    // The OP's discovery says `authorization_response_iss_parameter_supported: true`
    // (RFC 9207): a response without `iss` may have been relayed from another OP.
    let w = world().await;
    let b = browser();
    let (_, form) = to_op_form(&w, &b).await;
    let callback = submit(&w, &b, &form, HANAKO).await;
    assert!(callback.contains("iss="), "{callback}");
    let res = get(&b, &with(&callback, "iss", None)).await;
    assert_eq!(res.status, 400);
    assert!(res.body.contains(r#"data-testid="signin-failed""#));
    assert!(signed_out(&get(&b, &format!("{}/mypage", w.mp)).await));
}

#[tokio::test]
async fn an_id_token_that_fails_validation_gives_no_session() {
    let w = world().await;
    let b = browser();
    let start = get(&b, &format!("{}/login", w.mp)).await;
    // Someone swapped the nonce on the way to the OP: the ID token will not match.
    let authorize = with(&start.location.unwrap(), "nonce", Some("attacker-nonce"));
    let (_, form) = op_form_at(&w, &b, &authorize).await;
    let callback = submit(&w, &b, &form, HANAKO).await;
    let res = get(&b, &callback).await;
    assert_eq!(res.status, 400);
    assert!(res.body.contains(r#"data-testid="signin-failed""#));
    assert!(signed_out(&get(&b, &format!("{}/mypage", w.mp)).await));
}

#[tokio::test]
async fn with_an_https_public_url_the_cookies_carry_the_host_prefix() {
    let w = World::start(Setup {
        https: true,
        ..Setup::default()
    })
    .await;
    // The marketplace is reached over http here, so a real cookie jar would not send
    // its Secure cookies back: this browser carries the marketplace's cookies by hand.
    let mp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let op = browser();
    let start = get(&mp, &format!("{}/login", w.mp)).await;
    let login_cookie = &start.set_cookies[0];
    for part in ["__Host-mp_login=", "Secure", "Path=/", "HttpOnly"] {
        assert!(login_cookie.contains(part), "{login_cookie}");
    }
    assert!(!login_cookie.contains("Domain"), "{login_cookie}");
    let login_value = login_cookie.split(';').next().unwrap().to_owned();

    let (_, form) = op_form_at(&w, &op, &start.location.unwrap()).await;
    let callback = submit(&w, &op, &form, HANAKO).await;
    let callback = callback.replacen(&w.mp_public, &w.mp, 1);
    let landed = hop(mp
        .get(&callback)
        .header("cookie", &login_value)
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(landed.status, 303, "{}", landed.body);
    let session_cookie = landed
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-mp_session="))
        .unwrap();
    for part in ["Secure", "Path=/", "HttpOnly"] {
        assert!(session_cookie.contains(part), "{session_cookie}");
    }
    assert!(!session_cookie.contains("Domain"), "{session_cookie}");
    let value = session_cookie.split(';').next().unwrap().to_owned();
    let mypage = |cookie: String| {
        let mp = mp.clone();
        let url = format!("{}/mypage", w.mp);
        async move { hop(mp.get(url).header("cookie", cookie).send().await.unwrap()).await }
    };
    assert!(mypage(value.clone()).await.body.contains("山田花子"));
    // The same value without the prefix (as a sibling site could set it) is nobody.
    let unprefixed = value.replacen("__Host-", "", 1);
    assert!(signed_out(&mypage(unprefixed).await));
}

#[tokio::test]
async fn pages_keep_the_referrer_to_the_marketplace_itself() {
    let w = world().await;
    let res = browser().get(format!("{}/", w.mp)).send().await.unwrap();
    // Not `no-referrer`: with it browsers send `Origin: null` on the marketplace's own
    // form posts, which the origin check must refuse.
    assert_eq!(res.headers()["referrer-policy"], "same-origin");
}
