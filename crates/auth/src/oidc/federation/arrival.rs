//! What an upstream identity signs in to, for `oidc::federation`'s callback: the account
//! its link names; else, by the address the provider gave, a new account, the
//! pre-hijacked sign-up that address's verified owner takes over, or (never silently) a
//! link made only after that account's own sign-in in this browser (`link_pending`).

use std::net::IpAddr;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::Duration;
use uuid::Uuid;

use super::{Provider, about, bound_to};
use crate::account::audit_ctx::AuditOrigin;
use crate::account::linked::{self, LinkContext};
use crate::account::unlock::{refused, throttled_message};
use crate::admin::support::frozen_notice;
use crate::authn::second_step::Pending;
use crate::authn::sign_in::{self, Attempted};
use crate::authn::throttle::{AccountKey, Admission, Attempt};
use crate::domain::{ACR_ONE, AMR_FED, Email, User, UserId, UserStatus};
use crate::federation::Identity;
use crate::flow::{Binding, SignInFor};
use crate::oidc::authorize::{Rejection, see_other};
use crate::oidc::login::{self, Completed, complete_sign_in, skips_second_step};
use crate::oidc::{paths, second_step};
use crate::state::AppState;
use crate::store::{
    AuditEvent, EphemeralError, FactorChange, LoginEvent, LoginResult, NewFederatedLink, NewUser,
    StoreError,
};
use crate::web::i18n::{Lang, Msg};
use crate::web::pages::{RequestId, error_page, unavailable_page};

/// An identity whose address another account uses waits this long for that account's
/// sign-in.
const PENDING_LIFETIME: Duration = Duration::minutes(10);

/// An upstream identity whose address an existing account uses, waiting for that
/// account's own sign-in in this browser (`federation-pending:{tx}`).
#[derive(Serialize, Deserialize)]
struct PendingLink {
    identity: Identity,
    user: Uuid,
    binding: String,
}

fn pending_key(tx: &str) -> String {
    format!("federation-pending:{tx}")
}

/// A member back from a provider for the sign-in `tx`, and what we know of the request.
pub(super) struct Arrival<'a> {
    state: &'a AppState,
    headers: &'a HeaderMap,
    request_id: RequestId,
    lang: Lang,
    tx: &'a str,
    provider: &'a Provider,
    ip: IpAddr,
    device_id: String,
    /// A new device cookie, when the browser had none.
    cookies: Vec<String>,
    user_agent: String,
    /// The history's method: `fed:{provider id}`.
    method: String,
}

impl<'a> Arrival<'a> {
    pub(super) fn new(
        state: &'a AppState,
        headers: &'a HeaderMap,
        request_id: RequestId,
        lang: Lang,
        tx: &'a str,
        provider: &'a Provider,
        ip: IpAddr,
    ) -> Self {
        let (device_id, new_device_cookie) = state.cookies.device(headers);
        let user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        Self {
            state,
            headers,
            request_id,
            lang,
            tx,
            provider,
            ip,
            device_id,
            cookies: new_device_cookie.into_iter().collect(),
            user_agent,
            method: linked::method(&provider.id),
        }
    }

    /// The sign-in page of the parked request again, with `error`: the other ways in are
    /// on it.
    pub(super) async fn again(&self, status: StatusCode, error: String) -> Response {
        login::page_again(
            self.state,
            self.headers,
            &self.request_id,
            self.tx,
            self.lang,
            (status, error),
            &self.cookies,
        )
        .await
    }

    /// `again` with a message naming the provider.
    async fn again_msg(&self, status: StatusCode, msg: Msg) -> Response {
        self.again(status, about(self.state, msg, self.provider, self.lang))
            .await
    }

    /// The ephemeral store failed: down or full, the unavailable page (503, try again
    /// shortly, as a password sign-in answers); anything else, `server_error`.
    fn store_failed(&self, what: &str, e: &EphemeralError) -> Response {
        if e.is_transient() {
            tracing::warn!(error = %e, provider = %self.provider.id, "{what}");
            return unavailable_page(self.lang);
        }
        self.server_error(what, e)
    }

    fn server_error(&self, what: &str, e: &dyn std::fmt::Display) -> Response {
        tracing::error!(error = %e, provider = %self.provider.id, "{what}");
        error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            self.lang,
            Msg::ServerError,
            self.request_id.0.clone(),
        )
    }

    /// A history line of this arrival for `user` (a link made: not a sign-in, so no
    /// new-device flag; the sign-in that follows has its own line).
    fn event(&self, user: UserId, result: LoginResult) -> LoginEvent {
        LoginEvent {
            id: Uuid::new_v4(),
            user,
            at: self.state.clock.now(),
            ip: self.ip.to_string(),
            user_agent: self.user_agent.chars().take(512).collect(),
            device_hash: self.device_id.clone(),
            method: self.method.clone(),
            result,
            new_device: false,
        }
    }

    /// The audit record of `action` on `user`'s account by this arrival: the member, from
    /// this request, through this provider (its id; nothing the provider said).
    fn audit(&self, user: UserId, action: &str, mut detail: serde_json::Value) -> AuditEvent {
        let origin = AuditOrigin {
            ip: self.ip,
            request_id: self.request_id.0.clone().unwrap_or_default(),
        };
        if let Some(detail) = detail.as_object_mut() {
            detail.insert("provider".to_owned(), self.provider.id.clone().into());
        }
        origin.event(self.state.clock.now(), user, action, detail)
    }

    /// What an upstream identity signs in to: its link's account; else, by its address,
    /// a new account, the pre-hijacked sign-up, or (never silently) a link after the
    /// existing account's own sign-in.
    pub(super) async fn identity(self, target: SignInFor, identity: Identity) -> Response {
        let state = self.state;
        let sealed = match identity.refresh_token.as_deref() {
            Some(token) => match state.master.encrypt(token.as_bytes()) {
                Ok(sealed) => Some(sealed),
                Err(e) => return self.server_error("cannot seal a refresh token", &e),
            },
            None => None,
        };
        match state
            .db
            .links()
            .find(&identity.issuer, &identity.subject)
            .await
        {
            Ok(Some(link)) => {
                return match state.db.users().find_by_id(link.user).await {
                    Ok(Some(user)) => {
                        self.sign_in_as(target, &user, Some((link.id, sealed)))
                            .await
                    }
                    Ok(None) => {
                        self.again_msg(StatusCode::FORBIDDEN, Msg::FedLinkGone)
                            .await
                    }
                    Err(e) => self.server_error("cannot read a linked account", &e),
                };
            }
            Ok(None) => {}
            Err(e) => return self.server_error("cannot find a link", &e),
        }
        let Some(email) = identity.email.as_deref().and_then(|e| Email::parse(e).ok()) else {
            tracing::info!(provider = %self.provider.id, "social sign-in without a usable address");
            return self.again_msg(StatusCode::FORBIDDEN, Msg::FedNoEmail).await;
        };
        let new_link = NewFederatedLink {
            provider: self.provider.id.clone(),
            issuer: identity.issuer.clone(),
            subject: identity.subject.clone(),
            email: Some(email.display().to_owned()),
            sealed_refresh_token: sealed,
        };
        match state.db.users().find_by_email(&email).await {
            Ok(Some(existing)) => {
                return self
                    .address_in_use(target, existing, identity, new_link)
                    .await;
            }
            Ok(None) => {}
            Err(e) => return self.server_error("cannot look up an address", &e),
        }
        let digest = state.identifiers.email_digest(&email);
        match state
            .db
            .accounts()
            .reregistration_block(&digest, state.clock.now())
            .await
        {
            Ok(None) => {}
            Ok(Some(_)) => {
                tracing::info!(provider = %self.provider.id, "social sign-up with a recently deleted account's address: refused");
                return self
                    .again_msg(StatusCode::FORBIDDEN, Msg::FedCooldown)
                    .await;
            }
            Err(e) => return self.server_error("cannot read the re-registration cooldown", &e),
        }
        let new = NewUser {
            email: email.clone(),
            email_verified: identity.email_verified,
            password_hash: None,
            display_name: display_name(identity.name.as_deref(), &email),
            locale: self.lang.tag().to_owned(),
        };
        let created = state
            .db
            .links()
            .create_account(
                &state.clock,
                new,
                new_link.clone(),
                |user| FactorChange {
                    event: self.event(user.id, LoginResult::Enrolled),
                    mail: None,
                },
                |user| {
                    let detail = serde_json::json!({
                        "method": "federation",
                        "email_verified": user.email_verified,
                    });
                    self.audit(user.id, "user.create", detail)
                },
            )
            .await;
        match created {
            Ok(user) => {
                tracing::info!(user = %user.id.0, provider = %self.provider.id, "account created through a provider");
                // A new account has no second step: signed in at once.
                self.complete(target, &user, false).await
            }
            // Another request took the address meanwhile: it is an address in use now.
            Err(StoreError::EmailTaken) => match state.db.users().find_by_email(&email).await {
                Ok(Some(existing)) => {
                    self.address_in_use(target, existing, identity, new_link)
                        .await
                }
                Ok(None) => self.server_error("an address taken and gone", &"EmailTaken"),
                Err(e) => self.server_error("cannot look up an address", &e),
            },
            Err(e) => self.server_error("cannot create an account", &e),
        }
    }

    /// An identity without a link whose address `existing` uses. The unverified sign-up
    /// whose address the provider verified is the pre-hijacking case: its owner is here,
    /// so whoever signed up first loses every way in they set. Otherwise nothing is
    /// linked until that account signs in here with its own methods.
    async fn address_in_use(
        self,
        target: SignInFor,
        existing: User,
        identity: Identity,
        new_link: NewFederatedLink,
    ) -> Response {
        let state = self.state;
        let live = matches!(existing.status, UserStatus::Unverified | UserStatus::Active);
        if live && !existing.email_verified && identity.email_verified {
            let change = match self.link_change(&existing) {
                Ok(change) => change,
                Err(e) => return self.server_error("cannot seal a mail", &e),
            };
            // Whoever signed up first loses the account to the member the provider vouched
            // for: recorded as that member's act.
            let audit = self.audit(existing.id, "user.takeover", serde_json::json!({}));
            let taken = state
                .db
                .links()
                .audited(audit)
                .take_over_unverified(state.clock.now(), existing.id, new_link, change)
                .await;
            match taken {
                Ok(true) => {
                    tracing::warn!(user = %existing.id.0, provider = %self.provider.id, "an unverified account taken over by its address's verified owner");
                    return match state.db.users().find_by_id(existing.id).await {
                        Ok(Some(user)) => self.sign_in_as(target, &user, None).await,
                        Ok(None) => {
                            self.again_msg(StatusCode::FORBIDDEN, Msg::FedLinkGone)
                                .await
                        }
                        Err(e) => self.server_error("cannot read an account", &e),
                    };
                }
                // Verified meanwhile: an account like any other.
                Ok(false) => {}
                Err(e) => return self.server_error("cannot take over an account", &e),
            }
        }
        // Apple's refresh token is not kept in the ephemeral store in the clear: a link
        // made from the pending record has none (its tokens are then not revoked on
        // deletion; the next sign-in through the link brings a new one).
        let pending = PendingLink {
            identity: Identity {
                refresh_token: None,
                ..identity
            },
            user: existing.id.0,
            binding: Binding::of(state.cookies, self.headers).hash(),
        };
        let kept = match serde_json::to_vec(&pending) {
            Ok(bytes) => {
                state
                    .ephemeral
                    .put_bounded(
                        &pending_key(self.tx),
                        &bytes,
                        state.clock.now() + PENDING_LIFETIME,
                    )
                    .await
            }
            Err(_) => Err(EphemeralError::Malformed),
        };
        if let Err(e) = kept {
            return Rejection::from(e).respond(state, self.headers, self.request_id);
        }
        tracing::info!(user = %existing.id.0, provider = %self.provider.id, "social sign-in for an address in use: waits for the account's own sign-in");
        let notice = about(self.state, Msg::FedAddressInUse, self.provider, self.lang);
        login::page_to_link(
            state,
            self.headers,
            &self.request_id,
            self.tx,
            self.lang,
            existing.email.display(),
            notice,
            &self.cookies,
        )
        .await
    }

    /// The history line and mail of a link made to `user` by this arrival (the console's
    /// own, `account::linked`).
    fn link_change(&self, user: &User) -> Result<FactorChange, String> {
        let ctx = linked::LinkContext {
            ip: self.ip,
            user_agent: &self.user_agent,
            device: &self.device_id,
            lang: self.lang,
        };
        linked::link_change(
            self.state,
            user,
            &self.provider.id,
            Some(user.email.display()),
            true,
            &ctx,
        )
        .map_err(|e| e.to_string())
    }

    /// Signs in to `user`'s account through a link (`link`: its id, and the newest
    /// sealed refresh token): through the throttle, the frozen-account check and the
    /// second step, as a password or a passkey is.
    async fn sign_in_as(
        self,
        target: SignInFor,
        user: &User,
        link: Option<(Uuid, Option<String>)>,
    ) -> Response {
        let state = self.state;
        let known_device = match state
            .db
            .known_devices()
            .is_known(user.id, &self.device_id)
            .await
        {
            Ok(known) => known,
            Err(e) => return self.server_error("cannot read the known devices", &e),
        };
        let attempted = |result: LoginResult| {
            sign_in::record(
                state,
                Attempted {
                    user: user.id,
                    ip: self.ip,
                    device: &self.device_id,
                    user_agent: &self.user_agent,
                    method: &self.method,
                    known_device,
                },
                result,
            );
        };
        // Throttled like a password: a locked account or address is locked whichever way
        // in is tried.
        let counted = Attempt {
            account: AccountKey::for_user(&state.identifiers, user),
            address: crate::web::client_ip::ip_bucket(self.ip),
            known_device: known_device.then(|| self.device_id.clone()),
        };
        match state.throttle.admit(&counted).await {
            Ok(Admission::Admitted { .. }) => {}
            Ok(Admission::Refused(lock)) => {
                tracing::warn!(account = %user.id.0, ip = %self.ip, "social sign-in throttled");
                attempted(LoginResult::Throttled);
                let message = throttled_message(state, &lock, self.lang);
                let mut res = self.again(StatusCode::TOO_MANY_REQUESTS, message).await;
                refused(state, &lock, &mut res);
                return res;
            }
            Err(e) => return self.store_failed("the throttle cannot count a social sign-in", &e),
        }
        // The provider vouched for the member: the attempt succeeded.
        if let Err(e) = state.throttle.succeeded(&counted).await {
            return self.store_failed("the throttle cannot take back a social sign-in", &e);
        }
        if !user.usable() {
            tracing::warn!(account = %user.id.0, ip = %self.ip, "social sign-in of an account not usable");
            attempted(LoginResult::Frozen);
            let notice = frozen_notice(&state.config.account.support_contact, self.lang);
            return self.again(StatusCode::FORBIDDEN, notice).await;
        }
        if let Some((id, sealed)) = link
            && let Err(e) = state.db.links().used(state.clock.now(), id, sealed).await
        {
            return self.server_error("cannot record a link's use", &e);
        }
        let skip =
            match skips_second_step(state, self.headers, &target, user, &self.device_id).await {
                Ok(skip) => skip,
                Err(e) => return self.server_error("cannot read the account's second step", &e),
            };
        if skip {
            return self.complete(target, user, known_device).await;
        }
        // The provider is the first step; the account's own second step follows, on the
        // same parked request and in the same browser.
        let pending = Pending::new(
            state.clock.now(),
            &Binding::of(state.cookies, self.headers),
            user.id,
            vec![AMR_FED.to_owned()],
            &self.method,
            false,
            &self.device_id,
            known_device,
            &self.ip.to_string(),
            &self.user_agent,
        );
        match second_step::begin(state, self.tx, pending, user, self.lang).await {
            Ok(()) => {
                tracing::info!(user = %user.id.0, ip = %self.ip, provider = %self.provider.id, "provider answered; second step asked");
                let next = format!("{}?tx={}", paths::SECOND_STEP, self.tx);
                see_other(&next, &self.cookies)
            }
            Err(e) => second_step::failure(e, self.lang, &self.request_id),
        }
    }

    /// The sign-in is complete: `fed`, one factor (the upstream's own `amr`/`acr` are
    /// not ours to repeat).
    async fn complete(self, target: SignInFor, user: &User, known_device: bool) -> Response {
        tracing::info!(user = %user.id.0, ip = %self.ip, provider = %self.provider.id, "signed in through a provider");
        complete_sign_in(
            self.state,
            self.headers,
            self.request_id,
            self.lang,
            target,
            self.tx,
            Completed {
                user,
                amr: vec![AMR_FED.to_owned()],
                acr: ACR_ONE,
                method: &self.method,
                device_id: self.device_id,
                known_device,
                ip: self.ip,
                user_agent: self.user_agent,
                remember: false,
                cookies: self.cookies,
            },
        )
        .await
    }
}

/// A new account's display name: the provider's name, else the address's local part;
/// trimmed, without control characters, at most 100 characters (the profile's bound).
fn display_name(name: Option<&str>, email: &Email) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
            .trim()
            .chars()
            .take(100)
            .collect()
    };
    let from_provider = name.map(clean).filter(|n| !n.is_empty());
    from_provider.unwrap_or_else(|| {
        let local = email.display().split('@').next().unwrap_or_default();
        clean(local)
    })
}

/// After any sign-in of `tx` completed (a password with or without its second step, a
/// passkey, a provider): the identity kept for the account that just proved itself is
/// linked to it. Another account signing in drops it, linking nothing.
pub(in crate::oidc) async fn link_pending(
    state: &AppState,
    headers: &HeaderMap,
    tx: &str,
    user: &User,
    ctx: LinkContext<'_>,
) {
    let taken = match state.ephemeral.take(&pending_key(tx)).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a pending link: none made");
            return;
        }
    };
    let Ok(pending) = serde_json::from_slice::<PendingLink>(&taken) else {
        return;
    };
    if !bound_to(state, headers, &pending.binding) {
        tracing::warn!("a pending link of another browser: dropped");
        return;
    }
    if pending.user != user.id.0 {
        tracing::info!(user = %user.id.0, "another account signed in than the address's: no link");
        return;
    }
    let request_id = crate::account::audit_ctx::request_id_of(headers);
    match linked::make_link(state, user, &pending.identity, ctx, &request_id).await {
        Ok(linking) => {
            tracing::info!(user = %user.id.0, provider = %pending.identity.provider, outcome = ?linking, "provider linked after the account's own sign-in");
        }
        Err(e) => tracing::error!(error = %e, "cannot link a provider after sign-in"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_accounts_name_is_the_providers_else_the_local_part() {
        let email = Email::parse("hanako.yamada@example.jp").unwrap();
        assert_eq!(display_name(Some(" 山田 花子 "), &email), "山田 花子");
        assert_eq!(display_name(Some("\u{7}\n"), &email), "hanako.yamada");
        assert_eq!(display_name(None, &email), "hanako.yamada");
        assert_eq!(
            display_name(Some(&"名".repeat(300)), &email)
                .chars()
                .count(),
            100
        );
    }
}
