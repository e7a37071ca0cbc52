//! The operator commands of `tobira`, one module per subcommand; each calls the
//! library's `admin`, `keys` and `store` functions, the same ones the admin API calls.

use std::io::Read;

use clap::ValueEnum;
// The subcommands write times as the library does (audit details, key schedules).
pub use tobira_auth::clock::rfc3339;
use tobira_auth::keys::Alg;
use tobira_auth::web::i18n::Lang;

pub mod audit;
pub mod clients;
pub mod keys;
pub mod migrate;
pub mod users;

#[derive(Clone, Copy, ValueEnum)]
#[allow(clippy::upper_case_acronyms)]
pub enum AlgArg {
    #[value(name = "RS256")]
    RS256,
    #[value(name = "ES256")]
    ES256,
    #[value(name = "EdDSA")]
    EdDSA,
}

impl From<AlgArg> for Alg {
    fn from(alg: AlgArg) -> Self {
        match alg {
            AlgArg::RS256 => Alg::RS256,
            AlgArg::ES256 => Alg::ES256,
            AlgArg::EdDSA => Alg::EdDSA,
        }
    }
}

/// The operator's language, from the usual POSIX variables; English by default.
pub fn cli_lang() -> Lang {
    ["LC_ALL", "LC_MESSAGES", "LANG"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.is_empty())
        .and_then(|v| Lang::negotiate(&v))
        .unwrap_or(Lang::En)
}

pub fn read_secret_stdin(what: &str) -> Result<String, String> {
    let mut buf = String::new();
    std::io::stdin()
        .read_to_string(&mut buf)
        .map_err(|e| format!("cannot read the {what} from standard input: {e}"))?;
    // Drop the newline `echo` adds; anything else (spaces included) is the secret.
    let secret = buf
        .strip_suffix("\r\n")
        .or_else(|| buf.strip_suffix('\n'))
        .unwrap_or(&buf);
    if secret.is_empty() {
        return Err(format!("no {what} on standard input"));
    }
    Ok(secret.to_owned())
}
