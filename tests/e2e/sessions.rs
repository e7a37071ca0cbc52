//! The marketplace session's life: refreshes, idle and absolute lifetimes, one session
//! per browser, pruning, and the identity a refreshed ID token must keep.

use crate::world::time::Duration;
use crate::world::*;
use sea_orm::ConnectionTrait;

#[tokio::test]
async fn tabs_refreshing_at_once_do_not_trip_the_ops_reuse_detection() {
    // Access tokens that are always due for a refresh (the marketplace refreshes 30 s
    // before expiry): every My page load refreshes. Not 1 s: on a loaded machine the
    // sign-in's own use of the token could come after that.
    let w = world_with(|c| c.tokens.access_token_secs = 5).await;
    let b = browser();
    let first = sign_in(&w, &b, HANAKO).await;
    assert!(first.body.contains("山田花子"));
    for _ in 0..3 {
        // Five tabs at once: one refresh, the others wait for it and use its result.
        let tabs: Vec<_> = (0..5)
            .map(|_| {
                let (b, url) = (b.clone(), format!("{}/mypage", w.mp));
                tokio::spawn(async move { get(&b, &url).await })
            })
            .collect();
        for tab in tabs {
            let page = tab.await.unwrap();
            assert!(
                page.body.contains("山田花子"),
                "a tab was signed out: {}",
                page.body
            );
        }
    }
}

#[tokio::test]
async fn an_idle_session_ends_after_two_hours_and_activity_keeps_it_alive() {
    let w = world().await;
    let b = browser();
    let mypage = format!("{}/mypage", w.mp);
    sign_in(&w, &b, HANAKO).await;
    // Ninety minutes apart, three hours in all: each visit restarts the idle period
    // (and refreshes the access token, which has expired by then).
    for _ in 0..2 {
        w.mp_clock.advance(Duration::minutes(90));
        let page = get(&b, &mypage).await;
        assert!(page.body.contains("山田花子"), "{}", page.body);
    }
    w.mp_clock.advance(Duration::minutes(121));
    assert!(signed_out(&get(&b, &mypage).await));
    assert_eq!(
        w.rows("mp_sessions").await,
        0,
        "the expired session is gone"
    );
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_active() {
    let w = World::start(Setup {
        mp: Box::new(|c| {
            c.session.idle_timeout_mins = 30;
            c.session.absolute_timeout_hours = 1;
        }),
        ..Setup::default()
    })
    .await;
    let b = browser();
    let mypage = format!("{}/mypage", w.mp);
    sign_in(&w, &b, HANAKO).await;
    for _ in 0..2 {
        w.mp_clock.advance(Duration::minutes(25));
        assert!(get(&b, &mypage).await.body.contains("山田花子"));
    }
    w.mp_clock.advance(Duration::minutes(25));
    assert!(
        signed_out(&get(&b, &mypage).await),
        "75 minutes after sign-in"
    );
}

#[tokio::test]
async fn signing_in_again_ends_the_browsers_previous_session() {
    let w = world().await;
    let (b, jar) = browser_with_jar();
    sign_in(&w, &b, HANAKO).await;
    let first = cookie_in(&jar, &w.mp, "mp_session").unwrap();
    let again = sign_in_again(&w, &b).await;
    assert!(again.body.contains("山田花子"));
    let second = cookie_in(&jar, &w.mp, "mp_session").unwrap();
    assert_ne!(first, second);
    let with_cookie = |value: String| {
        let url = format!("{}/mypage", w.mp);
        async move {
            hop(reqwest::Client::new()
                .get(url)
                .header("cookie", format!("mp_session={value}"))
                .send()
                .await
                .unwrap())
            .await
        }
    };
    assert!(
        signed_out(&with_cookie(first).await),
        "a copy of the old cookie is nobody"
    );
    assert!(with_cookie(second).await.body.contains("山田花子"));
    assert_eq!(w.rows("mp_sessions").await, 1);
}

#[tokio::test]
async fn expired_sessions_and_abandoned_sign_ins_are_pruned() {
    let w = world().await;
    for email in [HANAKO, TARO] {
        sign_in(&w, &browser(), email).await;
    }
    assert_eq!(w.rows("mp_sessions").await, 2);
    // Anyone may start a sign-in and walk away.
    let visitor = browser();
    for _ in 0..3 {
        assert_eq!(get(&visitor, &format!("{}/login", w.mp)).await.status, 303);
    }
    assert_eq!(w.rows("mp_login_states").await, 3);

    w.mp_clock.advance(Duration::hours(3));
    // The next sign-in's writes take the expired rows with them.
    sign_in(&w, &browser(), HANAKO).await;
    assert_eq!(w.rows("mp_sessions").await, 1);
    assert_eq!(w.rows("mp_login_states").await, 0);
}

#[tokio::test]
async fn a_refreshed_id_token_about_another_subject_ends_the_session() {
    let w = world().await;
    let b = browser();
    sign_in(&w, &b, HANAKO).await;
    // The OP now says the grant belongs to someone else (OIDC Core §12.2: the sub of a
    // refreshed ID token must be the session's).
    let op_db = w.op_db().await;
    op_db
        .execute_unprepared(&format!(
            "UPDATE users SET sub = 'someone-else' WHERE sub = '{}'",
            w.sub_of(HANAKO)
        ))
        .await
        .unwrap();
    // The access token has expired: the next page refreshes it.
    w.mp_clock.advance(Duration::minutes(11));
    let page = get(&b, &format!("{}/mypage", w.mp)).await;
    assert!(signed_out(&page), "{}", page.body);
    assert_eq!(w.rows("mp_sessions").await, 0);
}
