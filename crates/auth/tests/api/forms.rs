//! Tobira's own forms refuse posts from other sites even when they carry a valid CSRF
//! token and the browser's cookies (a leaked token, a planted cookie): the request's
//! origin must be ours. Protocol endpoints stay open to cross-site posts by design.

use crate::helpers::Page;
use crate::oidc::{EMAIL, PASSWORD, authorize, setup};

const CROSS_SITE: [&[(&str, &str)]; 3] = [
    &[
        ("origin", "https://attacker.example"),
        ("sec-fetch-site", "cross-site"),
    ],
    &[("origin", "null")],
    &[("sec-fetch-site", "cross-site")],
];

fn form<'a>(page: &'a Page, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, String)> {
    let mut f = vec![
        ("csrf", page.field("csrf").unwrap()),
        ("tx", page.field("tx").unwrap()),
    ];
    f.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    f
}

fn refs<'a>(f: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    f.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn a_complete_sign_in_post_from_another_site_is_refused() {
    let s = setup(Default::default()).await;
    let pending = authorize(&s.rp, &[]);
    let login = s.browser.follow(s.browser.get(&pending.url).await).await;
    let fields = form(&login, &[("email", EMAIL), ("password", PASSWORD)]);
    for headers in CROSS_SITE {
        let page = s
            .browser
            .post_form_with("/login", &refs(&fields), headers)
            .await;
        assert_eq!(page.status, 403, "{headers:?}: {}", page.body);
        assert!(page.body.contains("別のサイト"), "{}", page.body);
        assert!(s.browser.cookie("tobira_session").is_none(), "{headers:?}");
    }
    // The same post from our own page works: same-origin fetch metadata, or our Origin.
    let ours = s.app.issuer();
    let page = s
        .browser
        .post_form_with(
            "/login",
            &refs(&fields),
            &[("origin", &ours), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(s.browser.cookie("tobira_session").is_some());
}

#[tokio::test]
async fn consent_and_logout_confirmations_from_another_site_are_refused() {
    let s = setup(crate::protocol::third_party()).await;
    let pending = authorize(&s.rp, &[]);
    let back = s
        .browser
        .sign_in(&pending.url, EMAIL, PASSWORD, false)
        .await;
    assert!(back.body.contains(r#"value="allow""#), "{}", back.body);
    let fields = form(&back, &[("decision", "allow")]);
    for headers in CROSS_SITE {
        let page = s
            .browser
            .post_form_with("/consent", &refs(&fields), headers)
            .await;
        assert_eq!(page.status, 403, "{headers:?}");
    }
    // Still undecided: the member's own click works.
    let page = s.browser.post_form("/consent", &refs(&fields)).await;
    assert_eq!(page.status, 303);

    // Logout without a hint asks first; the confirmation is a form of ours.
    let confirm = s.browser.get("/end-session").await;
    assert_eq!(confirm.status, 200);
    let fields = form(&confirm, &[]);
    for headers in CROSS_SITE {
        let page = s
            .browser
            .post_form_with("/end-session/confirm", &refs(&fields), headers)
            .await;
        assert_eq!(page.status, 403, "{headers:?}");
    }
    assert!(
        s.browser.cookie("tobira_session").is_some(),
        "still signed in"
    );
    let page = s
        .browser
        .post_form("/end-session/confirm", &refs(&fields))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
}

#[tokio::test]
async fn protocol_endpoints_stay_open_to_cross_site_posts() {
    let s = setup(Default::default()).await;
    let pending = authorize(&s.rp, &[]);
    let query = url::Url::parse(&pending.url)
        .unwrap()
        .query()
        .unwrap()
        .to_owned();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let page = s
        .browser
        .post_form_with(
            "/authorize",
            &pairs,
            &[
                ("origin", "https://rp.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let page = s
        .browser
        .post_form_with(
            "/token",
            &[("grant_type", "authorization_code"), ("code", "nope")],
            &[
                ("origin", "https://rp.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    // Refused for its credentials, not for its origin.
    assert_eq!(page.status, 401, "{}", page.body);
}
