//! `tobira users`: support's actions on member accounts.

use std::io::{IsTerminal, Write};

use clap::{Args, Subcommand, ValueEnum};
use tobira_auth::account::delete::delete_account;
use tobira_auth::admin::audit::Context;
use tobira_auth::admin::support::{self, Freeze, Outcome, Reason, SupportError, TwoStepReset};
use tobira_auth::admin::unlock;
use tobira_auth::admin::users::{AddUser, UserView, add_user};
use tobira_auth::authn::password::PasswordHasher;
use tobira_auth::domain::{Email, User};
use tobira_auth::keys::{IdentifierHasher, MasterKey};
use tobira_auth::startup;
use tobira_auth::store::Db;
use tobira_auth::web::i18n::{Lang, Msg};
use tobira_auth::{Clock, Config};

use super::{cli_lang, read_secret_stdin};

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create an account. Asks for the password twice on a terminal.
    Add(UsersAdd),
    /// Show an account.
    Show {
        #[arg(long)]
        email: String,
        /// Print one JSON object on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Lift sign-in throttling: of an account (its lock and count, its devices' counts,
    /// its failures in every address's count) or of one client address (IPv6 by /64).
    /// A running `tobira serve` applies it.
    #[command(group = clap::ArgGroup::new("target").required(true).args(["email", "ip"]))]
    Unlock {
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
    },
    /// Freeze an account: sign-in is refused (the member is shown the support contact),
    /// every session, grant and refresh token ends, clients are told by back-channel
    /// logout, and the member is mailed.
    Freeze {
        #[arg(long)]
        email: String,
        /// Why, for support's record (`users show` prints it); at most 500 characters
        /// on one line.
        #[arg(long)]
        reason: String,
        /// Tell the member the reason in the mail too.
        #[arg(long)]
        mail_reason: bool,
    },
    /// Lift a freeze; the member is mailed.
    Unfreeze {
        #[arg(long)]
        email: String,
    },
    /// End every session and token of an account (clients are told) without freezing
    /// it: the member can sign in again at once.
    SignOut {
        #[arg(long)]
        email: String,
    },
    /// Turn two-step verification (二段階認証) off for a member who lost every second
    /// factor and recovery code: the authenticator app, email codes, recovery codes and
    /// remembered devices go, the member is mailed and the history records it. The
    /// password alone signs in afterwards.
    #[command(name = "reset-2fa")]
    Reset2fa {
        #[arg(long)]
        email: String,
    },
    /// Delete an account, as its member can: sign-in is refused at once, sessions and
    /// tokens end, the member is mailed; personal data is purged after
    /// `account.retention_days`, and the address cannot sign up again for
    /// `account.reregister_cooldown_days`.
    Delete {
        #[arg(long)]
        email: String,
    },
}

#[derive(Args)]
pub struct UsersAdd {
    #[arg(long)]
    email: String,
    /// Read the password from standard input (one trailing newline is dropped).
    #[arg(long)]
    password_stdin: bool,
    /// Mark the email address as already verified.
    #[arg(long)]
    verified: bool,
    /// Display name.
    #[arg(long, default_value = "")]
    name: String,
    /// Language of mails and pages for this member.
    #[arg(long, value_enum, default_value_t = LocaleArg::Ja)]
    locale: LocaleArg,
    /// Print one JSON object on standard output.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum LocaleArg {
    Ja,
    En,
}

async fn users_add(args: UsersAdd, config: &Config) -> Result<(), String> {
    let lang = cli_lang();
    // Refuse a bad address before asking for a password.
    Email::parse(&args.email).map_err(|e| Msg::from(e).text(lang).to_owned())?;
    let password = if args.password_stdin {
        read_secret_stdin("password")?
    } else {
        prompt_password_twice(lang)?
    };
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let hasher = PasswordHasher::new(&config.password, config.max_concurrent_hashes(), 0)
        .map_err(|e| e.to_string())?;
    let request = AddUser {
        email: &args.email,
        password: Some(&password),
        email_verified: args.verified,
        display_name: args.name,
        locale: match args.locale {
            LocaleArg::Ja => Lang::Ja,
            LocaleArg::En => Lang::En,
        },
    };
    let user = add_user(&db, &hasher, &Clock::system(), &Context::cli(), request)
        .await
        .map_err(|e| e.message(lang).map_or_else(|| e.to_string(), str::to_owned))?;
    print_user(&UserView::from(&user), args.json)
}

async fn users_unlock(
    email: Option<String>,
    ip: Option<std::net::IpAddr>,
    config: &Config,
) -> Result<(), String> {
    let clock = Clock::system();
    let (db, id) = match (email, ip) {
        (Some(email), _) => {
            let (db, user) = account(&email, config).await?;
            let id = unlock::account(&db, &clock, &Context::cli(), &user).await;
            (db, id)
        }
        (None, Some(ip)) => {
            let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
            let id = unlock::address(&db, &clock, &Context::cli(), ip).await;
            (db, id)
        }
        (None, None) => return Err("give --email or --ip".to_owned()),
    };
    let id = id.map_err(|e| e.to_string())?;
    // A running server takes the job within its poll interval.
    let applied = unlock::applied_within(&db, id, std::time::Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    if applied {
        eprintln!("unlocked");
    } else {
        eprintln!(
            "queued: no running tobira serve applied it within 10 seconds; the next one to run will"
        );
    }
    Ok(())
}

/// A support error in the operator's words.
fn support_error(e: SupportError) -> String {
    e.message(cli_lang())
        .map_or_else(|| e.to_string(), str::to_owned)
}

/// The master key, checked against the database: it must open the secrets sealed there
/// (a mail sealed with another key would never be sent). With the identifier key that
/// deletion needs.
async fn keys(
    db: &Db,
    config: &Config,
    clock: &Clock,
) -> Result<(MasterKey, IdentifierHasher), String> {
    let master = MasterKey::load_or_create(config).map_err(|e| e.to_string())?;
    let identifiers = IdentifierHasher::load_or_init(db, &master, clock)
        .await
        .map_err(|e| e.to_string())?;
    Ok((master, identifiers))
}

async fn users_freeze(
    email: &str,
    reason: &str,
    mail_reason: bool,
    config: &Config,
) -> Result<(), String> {
    // A bad reason is refused before anything is looked up; an unknown address before
    // the keys are read (or made).
    let how = Freeze {
        reason: Reason::parse(reason).map_err(support_error)?,
        tell_reason: mail_reason,
    };
    let (db, user) = account(email, config).await?;
    let clock = Clock::system();
    let (master, _) = keys(&db, config, &clock).await?;
    let ctx = Context::cli();
    match support::freeze(&db, &master, config, &clock, &ctx, &user, &how)
        .await
        .map_err(support_error)?
    {
        Outcome::Changed => eprintln!(
            "frozen: every session and token of the account ended, and the member was mailed{}",
            if mail_reason { " with the reason" } else { "" }
        ),
        Outcome::Unchanged => eprintln!("the account was already frozen: nothing changed"),
    }
    Ok(())
}

async fn users_unfreeze(email: &str, config: &Config) -> Result<(), String> {
    let (db, user) = account(email, config).await?;
    let clock = Clock::system();
    let (master, _) = keys(&db, config, &clock).await?;
    match support::unfreeze(&db, &master, config, &clock, &Context::cli(), &user)
        .await
        .map_err(support_error)?
    {
        Outcome::Changed => eprintln!("unfrozen: the member can sign in again and was mailed"),
        Outcome::Unchanged => eprintln!("the account was not frozen: nothing changed"),
    }
    Ok(())
}

async fn users_sign_out(email: &str, config: &Config) -> Result<(), String> {
    let (db, user) = account(email, config).await?;
    let ended = support::sign_out(&db, &Clock::system(), &Context::cli(), &user)
        .await
        .map_err(support_error)?;
    println!("ended {ended} sessions");
    Ok(())
}

async fn users_reset_two_step(email: &str, config: &Config) -> Result<(), String> {
    let (db, user) = account(email, config).await?;
    let clock = Clock::system();
    let (master, _) = keys(&db, config, &clock).await?;
    match support::reset_two_step(&db, &master, config, &clock, &Context::cli(), &user)
        .await
        .map_err(support_error)?
    {
        TwoStepReset::Reset(factors) => {
            let mut removed = Vec::new();
            if factors.totp {
                removed.push("the authenticator app".to_owned());
            }
            if factors.email {
                removed.push("email codes".to_owned());
            }
            removed.push(format!("{} unused recovery codes", factors.recovery_left));
            eprintln!(
                "two-step verification turned off ({} and every remembered device removed): the member signs in with the password alone, was mailed, and the history records it",
                removed.join(", ")
            );
        }
        TwoStepReset::NotOn => {
            eprintln!("the account has no two-step verification: nothing changed");
        }
    }
    Ok(())
}

async fn users_delete(email: &str, config: &Config) -> Result<(), String> {
    // A deleted account is not found by its address any more: a second deletion is told
    // there is no account.
    let (db, user) = account(email, config).await?;
    let clock = Clock::system();
    let (master, identifiers) = keys(&db, config, &clock).await?;
    let ctx = Context::cli();
    let deleted = delete_account(&db, &master, &identifiers, config, &ctx, clock.now(), &user)
        .await
        .map_err(|e| e.to_string())?;
    if deleted {
        eprintln!(
            "deleted: sign-in is refused, every session and token ended; personal data is purged after {} days",
            config.account.retention_days
        );
    } else {
        eprintln!("the account was already deleted: nothing changed");
    }
    Ok(())
}

/// The account (not deleted) with this address, and the open store.
async fn account(email: &str, config: &Config) -> Result<(Db, User), String> {
    // A bad address is refused before the store is opened.
    Email::parse(email).map_err(|e| support_error(e.into()))?;
    let db = startup::open_db(config).await.map_err(|e| e.to_string())?;
    let user = support::account(&db, email).await.map_err(support_error)?;
    Ok((db, user))
}

async fn users_show(email: &str, json: bool, config: &Config) -> Result<(), String> {
    let (_, user) = account(email, config).await?;
    print_user(&UserView::from(&user), json)
}

fn print_user(view: &UserView, json: bool) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let text = if json {
        serde_json::to_string(view).map_err(|e| e.to_string())?
    } else {
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        let text = format!(
            "id:             {}\nsub:            {}\nemail:          {}\nemail verified: {}\npassword:       {}\ndisplay name:   {}\nlocale:         {}\nstatus:         {}\ncreated:        {}\nupdated:        {}",
            view.id,
            view.sub,
            view.email,
            view.email_verified,
            if view.has_password { "set" } else { "none" },
            view.display_name,
            view.locale,
            view.status.as_str(),
            fmt(view.created_at),
            fmt(view.updated_at),
        );
        // Support's reason is for support: `users show` is where they read it.
        match &view.frozen_reason {
            Some(reason) => format!("{text}\nfrozen reason:  {reason}"),
            None => text,
        }
    };
    writeln!(out, "{text}").map_err(|e| e.to_string())
}

fn prompt_password_twice(lang: Lang) -> Result<String, String> {
    if !std::io::stdin().is_terminal() {
        return Err(
            "no terminal to ask for the password on: pass it on standard input with --password-stdin"
                .to_owned(),
        );
    }
    let (first_prompt, second_prompt) = match lang {
        Lang::Ja => ("パスワード: ", "パスワード（確認）: "),
        Lang::En => ("Password: ", "Repeat password: "),
    };
    let first = rpassword::prompt_password(first_prompt).map_err(|e| e.to_string())?;
    let second = rpassword::prompt_password(second_prompt).map_err(|e| e.to_string())?;
    if first != second {
        return Err(Msg::PasswordsDoNotMatch.text(lang).to_owned());
    }
    Ok(first)
}

pub async fn run(command: UsersCommand, config: &Config) -> Result<(), String> {
    match command {
        UsersCommand::Add(args) => users_add(args, config).await,
        UsersCommand::Show { email, json } => users_show(&email, json, config).await,
        UsersCommand::Unlock { email, ip } => users_unlock(email, ip, config).await,
        UsersCommand::Freeze {
            email,
            reason,
            mail_reason,
        } => users_freeze(&email, &reason, mail_reason, config).await,
        UsersCommand::Unfreeze { email } => users_unfreeze(&email, config).await,
        UsersCommand::SignOut { email } => users_sign_out(&email, config).await,
        UsersCommand::Delete { email } => users_delete(&email, config).await,
        UsersCommand::Reset2fa { email } => users_reset_two_step(&email, config).await,
    }
}
