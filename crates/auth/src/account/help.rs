//! Sign-in help (`/signin-help`, 「ログインできない方」). The page asks for an address
//! and answers the same, in about the same time, whoever asks; what it found goes only to
//! that address's inbox: to an account's owner, a diagnosis of the account (its lock with
//! an unlock link, a pending verification with a fresh link, its ways in (the password,
//! the linked services), a reset link);
//! to an address no account uses, that no account does. The sign-up's mail caps apply.

use std::net::IpAddr;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::address::{self, AddressForm, AddressPage};
use super::linked::provider_name;
use super::recovery::RESET_LIFETIME;
use super::signup::VERIFY_LIFETIME;
use super::unlock::{lock_end, unlock_link};
use super::{PageQuery, RESET, SIGNUP, VERIFY, link, mail_allowed, queue_mail, user_lang};
use crate::authn::throttle::AccountKey;
use crate::crypto::{random_token, sha256_hex};
use crate::domain::{Email, User, UserStatus};
use crate::mail::templates::{self, AccountHelp, HelpLink, HelpLock};
use crate::state::AppState;
use crate::store::{NewVerification, QueuedMail};
use crate::web::client_ip::ClientAddr;
use crate::web::csrf::CsrfForm;
use crate::web::i18n::Lang;
use crate::web::pages::RequestId;

pub async fn get_help(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    address::get(AddressPage::Help, &state, &headers, &q).await
}

pub async fn post_help(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    request_id: RequestId,
    CsrfForm(form): CsrfForm<AddressForm>,
) -> Response {
    let work = |state: AppState, ip, email: Email, tx: String, lang| async move {
        send_help(&state, ip, &email, &tx, lang).await
    };
    address::post(
        AddressPage::Help,
        &state,
        ip,
        &headers,
        request_id,
        form,
        work,
    )
    .await
}

/// Mails the address what it needs to know, when the caps allow. The caller answers the
/// same whatever happens here.
async fn send_help(
    state: &AppState,
    ip: IpAddr,
    email: &Email,
    tx: &str,
    lang: Lang,
) -> Result<(), String> {
    if !mail_allowed(state, email, ip).await? {
        tracing::warn!(identifier = %state.identifiers.pseudonym(email.normalized()), ip = %ip, "sign-in help: mail cap reached");
        return Ok(());
    }
    let user = state
        .db
        .users()
        .find_by_email(email)
        .await
        .map_err(|e| e.to_string())?;
    match user {
        Some(user) if user.status == UserStatus::Active => {
            help_active(state, &user, tx, lang).await
        }
        Some(user) if user.status == UserStatus::Unverified => {
            help_unverified(state, &user, tx, lang).await
        }
        Some(user) if user.status == UserStatus::Frozen => help_frozen(state, &user, lang).await,
        // A deleted account only waits out its retention period: to its owner it is gone.
        _ => no_account(state, ip, email, tx, lang).await,
    }
}

/// The account's lock as the help mail tells it: its end in words (`None` until
/// unlocked) and a fresh unlock link; `None` when nothing holds sign-in back.
async fn lock_of(
    state: &AppState,
    user: &User,
    tx: &str,
    lang: Lang,
) -> Result<Option<(Option<String>, String)>, String> {
    let account = AccountKey::for_user(&state.identifiers, user);
    let Some(lock) = state
        .throttle
        .account_lock(&account)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let unlock = unlock_link(state, user, tx).await?;
    Ok(Some((lock_end(state, &lock, lang), unlock)))
}

/// An active account: its lock, its ways in and a reset link, in one mail. The reset
/// token and the mail that carries it are written together, as a reset request writes
/// them, so the help voids an older reset link just as a newer request would.
async fn help_active(state: &AppState, user: &User, tx: &str, lang: Lang) -> Result<(), String> {
    let lang = user_lang(user, lang);
    let lock = lock_of(state, user, tx, lang).await?;
    let linked = linked_services(state, user, lang).await?;
    let token = random_token(&mut rand::rng(), 32);
    let reset = link(state, RESET, &[("token", &token), ("tx", tx)]);
    let help = AccountHelp::Active {
        lock: lock.as_ref().map(|(until, unlock)| HelpLock {
            until: until.as_deref(),
            unlock,
            hours: state.config.throttle.unlock_link_hours,
        }),
        password: user.password_hash.is_some(),
        linked: &linked,
        reset: &reset,
        reset_minutes: RESET_LIFETIME.whole_minutes(),
    };
    let mail = templates::signin_help(lang, user.email.display(), &user.display_name, &help);
    let payload = mail.seal(&state.master).map_err(|e| e.to_string())?;
    let now = state.clock.now();
    state
        .db
        .password_resets()
        .start(
            now,
            user.id,
            sha256_hex(&token),
            now + RESET_LIFETIME,
            QueuedMail { payload },
        )
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(user = %user.id.0, locked = lock.is_some(), "sign-in help mailed to the account's owner");
    Ok(())
}

/// The services linked to the account, as the help mail lists them among its ways in: a
/// member who forgot that they sign in with Google learns it from their own inbox.
async fn linked_services(
    state: &AppState,
    user: &User,
    lang: Lang,
) -> Result<Vec<HelpLink>, String> {
    let links = state
        .db
        .links()
        .list(user.id)
        .await
        .map_err(|e| e.to_string())?;
    Ok(links
        .into_iter()
        .map(|l| HelpLink {
            provider: provider_name(&state.federation, &l.provider, lang),
            account: l.email,
        })
        .collect())
}

/// A sign-up awaiting verification: a fresh link (older ones void), written with its
/// mail the way a sign-up renews it.
async fn help_unverified(
    state: &AppState,
    user: &User,
    tx: &str,
    lang: Lang,
) -> Result<(), String> {
    let lang = user_lang(user, lang);
    let lock = lock_of(state, user, tx, lang).await?;
    let token = random_token(&mut rand::rng(), 32);
    let verify = link(state, VERIFY, &[("token", &token)]);
    let signup = link(state, SIGNUP, &[("tx", tx), ("lang", lang.tag())]);
    let help = AccountHelp::Unverified {
        lock: lock.as_ref().map(|(until, unlock)| HelpLock {
            until: until.as_deref(),
            unlock,
            hours: state.config.throttle.unlock_link_hours,
        }),
        verify: &verify,
        verify_hours: VERIFY_LIFETIME.whole_hours(),
        signup: &signup,
    };
    // Greeted by address, never by the display name: whoever signed up may have been a
    // stranger using this address, and their words must not reach this inbox.
    let mail = templates::signin_help(lang, user.email.display(), "", &help);
    let payload = mail.seal(&state.master).map_err(|e| e.to_string())?;
    let verification = NewVerification {
        token_hash: sha256_hex(&token),
        // Bound to no browser: whoever asked for help proved nothing but knowing the
        // address, so the link always asks for the password the sign-up chose. Bound to
        // the asking browser, it would let an address's owner verify (and walk into) an
        // account a stranger pre-registered with a password the stranger knows.
        binding_hash: sha256_hex(&random_token(&mut rand::rng(), 32)),
        park: String::new(),
        expires_at: state.clock.now() + VERIFY_LIFETIME,
    };
    let renewed = state
        .db
        .signups()
        .renew(
            state.clock.now(),
            user.id,
            None,
            None,
            verification,
            QueuedMail { payload },
        )
        .await
        .map_err(|e| e.to_string())?;
    if renewed {
        tracing::info!(user = %user.id.0, "sign-in help: a fresh verification link mailed");
    } else {
        // Verified (or removed) meanwhile: the next request tells the new state.
        tracing::info!(user = %user.id.0, "sign-in help: the sign-up changed meanwhile, no mail");
    }
    Ok(())
}

/// A frozen account: only support can help, so the mail carries no link.
async fn help_frozen(state: &AppState, user: &User, lang: Lang) -> Result<(), String> {
    let mail = templates::signin_help(
        user_lang(user, lang),
        user.email.display(),
        &user.display_name,
        &AccountHelp::Frozen,
    );
    queue_mail(state, &mail).await?;
    tracing::info!(user = %user.id.0, "sign-in help mailed to a frozen account's owner");
    Ok(())
}

/// No account uses the address: its reader learns that from their own inbox (a typo, or
/// another address they signed up with), never from our page.
async fn no_account(
    state: &AppState,
    ip: IpAddr,
    email: &Email,
    tx: &str,
    lang: Lang,
) -> Result<(), String> {
    let signup = link(state, SIGNUP, &[("tx", tx), ("lang", lang.tag())]);
    let mail = templates::no_account(lang, email.display(), &signup);
    queue_mail(state, &mail).await?;
    tracing::info!(identifier = %state.identifiers.pseudonym(email.normalized()), ip = %ip, "sign-in help: no account uses the address; told to it");
    Ok(())
}
