//! The marketplace's own forms: only from its own pages, only with the session's
//! token, and only while the OP still honours the member's grant.

use crate::world::*;

/// A member signed in, another member's view of their profile, and the token of the
/// member's forms.
struct Scene {
    w: World,
    member: reqwest::Client,
    csrf: String,
    profile: String,
}

async fn scene() -> Scene {
    let w = world().await;
    let member = browser();
    let mypage = sign_in(&w, &member, HANAKO).await;
    let profile = format!("{}{}", w.mp, profile_path(&mypage));
    let csrf = field(&mypage.body, "csrf");
    Scene {
        w,
        member,
        csrf,
        profile,
    }
}

impl Scene {
    async fn last_login_shown(&self) -> bool {
        // Profiles are public: anyone can look.
        get(&browser(), &self.profile)
            .await
            .body
            .contains("最終ログイン")
    }

    /// A complete, valid "hide my last sign-in" post, with the given headers.
    async fn hide_last_login(&self, headers: &[(&str, &str)]) -> Hop {
        let url = format!("{}/settings/privacy", self.w.mp);
        post(&self.member, &url, &[("csrf", &self.csrf)], headers).await
    }
}

#[tokio::test]
async fn a_valid_post_from_another_site_is_refused_and_changes_nothing() {
    let s = scene().await;
    let attacker = [
        ("origin", "https://attacker.example"),
        ("sec-fetch-site", "cross-site"),
    ];
    // Sandboxed frames and some redirects send `Origin: null`: it could be anyone.
    let null = [("origin", "null")];
    for headers in [&attacker[..], &null[..]] {
        let res = s.hide_last_login(headers).await;
        assert_eq!(res.status, 403, "{headers:?}");
        assert!(
            s.last_login_shown().await,
            "{headers:?} changed the setting"
        );
        let url = format!("{}/logout", s.w.mp);
        let res = post(&s.member, &url, &[("csrf", &s.csrf)], headers).await;
        assert_eq!(res.status, 403, "{headers:?}");
    }
    let mypage = get(&s.member, &format!("{}/mypage", s.w.mp)).await;
    assert!(mypage.body.contains("山田花子"), "still signed in");
}

#[tokio::test]
async fn a_post_from_the_marketplaces_own_page_is_accepted() {
    let s = scene().await;
    let own = [
        ("origin", s.w.mp.as_str()),
        ("sec-fetch-site", "same-origin"),
    ];
    let res = s.hide_last_login(&own).await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert!(!s.last_login_shown().await);
    // `Origin` alone (a browser without Fetch Metadata) will do as well.
    let url = format!("{}/settings/privacy", s.w.mp);
    let form = [("csrf", s.csrf.as_str()), ("show_last_login", "on")];
    let res = post(&s.member, &url, &form, &own[..1]).await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert!(s.last_login_shown().await);
}

#[tokio::test]
async fn a_grant_ended_at_the_op_cannot_change_settings_and_ends_the_session() {
    let s = scene().await;
    // The member signs out at the OP in another tab; the marketplace session and its
    // access token are still there.
    sign_out_at_op(&s.w, &s.member).await;
    let res = s.hide_last_login(&[]).await;
    assert!(signed_out(&res), "{} {}", res.status, res.body);
    assert!(s.last_login_shown().await, "the setting did not change");
    let mypage = get(&s.member, &format!("{}/mypage", s.w.mp)).await;
    assert!(signed_out(&mypage));
    assert_eq!(s.w.rows("mp_sessions").await, 0);
}
