//! Browser sessions: lifetimes, the idle check, and signing in (creating or
//! re-authenticating a session). Cookies are the caller's business; this works on the
//! cookie's secret.

use time::Duration;

use crate::clock::Clock;
use crate::config::SessionConfig;
use crate::domain::{BrowserSession, UserId};
use crate::store::{Db, NewSession, StoreError};

/// Activity is recorded at most this often, so SSO does not write on every request.
const TOUCH_EVERY: Duration = Duration::minutes(1);

#[derive(Clone, Copy, Debug)]
pub struct SessionPolicy {
    pub remember: Duration,
    pub idle: Duration,
    pub absolute: Duration,
}

impl From<&SessionConfig> for SessionPolicy {
    fn from(c: &SessionConfig) -> Self {
        Self {
            remember: Duration::days(c.remember_days.into()),
            idle: Duration::minutes(c.idle_timeout_mins.into()),
            absolute: Duration::hours(c.absolute_timeout_hours.into()),
        }
    }
}

impl SessionPolicy {
    pub fn lifetime(&self, remember: bool) -> Duration {
        if remember {
            self.remember
        } else {
            self.absolute
        }
    }

    /// The cookie's Max-Age: persistent only with "keep me signed in".
    pub fn cookie_max_age(&self, remember: bool) -> Option<Duration> {
        remember.then_some(self.remember)
    }
}

/// The live session behind a cookie secret. A session idle for too long is ended here.
pub async fn current(
    db: &Db,
    clock: &Clock,
    policy: &SessionPolicy,
    secret: Option<&str>,
) -> Result<Option<BrowserSession>, StoreError> {
    let Some(secret) = secret else {
        return Ok(None);
    };
    let now = clock.now();
    let Some(session) = db.sessions().find_live(secret, now).await? else {
        return Ok(None);
    };
    if !session.remember && now - session.last_seen_at > policy.idle {
        db.sessions().end(session.id, now).await?;
        return Ok(None);
    }
    if now - session.last_seen_at >= TOUCH_EVERY {
        db.sessions().touch(session.id, now).await?;
    }
    Ok(Some(session))
}

pub struct SignIn {
    pub user_id: UserId,
    pub amr: Vec<String>,
    pub acr: String,
    pub device_id: String,
    pub ip: String,
    pub user_agent: String,
    pub remember: bool,
}

/// Records a successful sign-in. The same member signing in again keeps their session
/// (and the grants hanging from it) but gets a new cookie secret, so a secret that was
/// planted or seen before sign-in is worthless after it (session fixation). A different
/// member replaces the previous session.
pub async fn sign_in(
    db: &Db,
    clock: &Clock,
    policy: &SessionPolicy,
    previous: Option<BrowserSession>,
    sign_in: SignIn,
) -> Result<(BrowserSession, String), StoreError> {
    let now = clock.now();
    let lifetime = policy.lifetime(sign_in.remember);
    if let Some(prev) = previous {
        if prev.user_id == sign_in.user_id {
            let reauth = db.sessions().reauthenticate(
                &mut rand::rng(),
                prev.id,
                now,
                (&sign_in.amr, &sign_in.acr),
                sign_in.remember,
                now + lifetime,
            );
            if let Some(renewed) = reauth.await? {
                return Ok(renewed);
            }
        } else {
            db.sessions().end(prev.id, now).await?;
        }
    }
    let create = db.sessions().create(
        clock,
        &mut rand::rng(),
        NewSession {
            user_id: sign_in.user_id,
            amr: sign_in.amr,
            acr: sign_in.acr,
            device_id: sign_in.device_id,
            ip: sign_in.ip,
            user_agent: sign_in.user_agent,
            remember: sign_in.remember,
            lifetime,
        },
    );
    create.await
}
