//! The marketplace's configuration: defaults, `--config` / `MARKETPLACE_CONFIG`, then
//! `MARKETPLACE_<SECTION>__<KEY>` variables (see `tobira-config`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
pub use tobira_config::{ConfigError, Secret};

pub const ENV_PREFIX: &str = "MARKETPLACE_";
pub const ENV_CONFIG_FILE: &str = "MARKETPLACE_CONFIG";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where members reach the marketplace; empty means `http://<bound address>`.
    pub public_url: String,
    /// Holds the SQLite database unless `database.url` is set.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub oidc: OidcConfig,
    pub session: SessionConfig,
    pub backchannel_logout: BackchannelLogoutConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub bind: SocketAddr,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://…`; empty means `<data_dir>/marketplace.db`.
    pub url: Secret,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// The OP's issuer identifier, exactly.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
}

/// How long a marketplace session lives. Signing in again is one redirect while the
/// member's session at the OP lives, so these can be short: they bound how long a
/// stolen session cookie (or a forgotten shared computer) stays useful.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// A session ends after this long without a request (default 120 minutes)…
    pub idle_timeout_mins: u32,
    /// …and at the latest this long after sign-in, however active (default 24 hours,
    /// the OP's own absolute session lifetime).
    pub absolute_timeout_hours: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_mins: 120,
            absolute_timeout_hours: 24,
        }
    }
}

impl SessionConfig {
    pub fn idle(&self) -> time::Duration {
        time::Duration::minutes(self.idle_timeout_mins.into())
    }

    pub fn absolute(&self) -> time::Duration {
        time::Duration::hours(self.absolute_timeout_hours.into())
    }
}

/// How fresh a back-channel logout token from the OP must be (OpenID Connect
/// Back-Channel Logout 1.0 §2.6). The OP sends it the moment a session ends, so minutes
/// are plenty; a short window also bounds how long its `jti` must be remembered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackchannelLogoutConfig {
    /// A logout token issued longer ago than this is refused (default 300 s).
    pub max_age_secs: u32,
    /// How far the OP's clock may run ahead of (`iat`) or behind (`exp`) ours
    /// (default 60 s).
    pub clock_skew_secs: u32,
}

impl Default for BackchannelLogoutConfig {
    fn default() -> Self {
        Self {
            max_age_secs: 300,
            clock_skew_secs: 60,
        }
    }
}

impl BackchannelLogoutConfig {
    pub fn max_age(&self) -> time::Duration {
        time::Duration::seconds(self.max_age_secs.into())
    }

    pub fn clock_skew(&self) -> time::Duration {
        time::Duration::seconds(self.clock_skew_secs.into())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            public_url: String::new(),
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            oidc: OidcConfig::default(),
            session: SessionConfig::default(),
            backchannel_logout: BackchannelLogoutConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
        }
    }
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer: "http://localhost:8080".to_owned(),
            client_id: "marketplace".to_owned(),
            client_secret: Secret::default(),
        }
    }
}

impl Config {
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let named = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(ENV_CONFIG_FILE).map(PathBuf::from));
        let file = named.map(|p| tobira_config::read_file(&p)).transpose()?;
        Self::from_layers(file, &env)
    }

    pub fn from_layers(
        file: Option<toml::Table>,
        env: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let layers = tobira_config::Layers {
            env_prefix: ENV_PREFIX,
            env_ignore: &[ENV_CONFIG_FILE],
            secret_keys: &["database.url", "oidc.client_secret"],
            optional_keys: &[],
        };
        let config: Config = layers.load(file, env)?;
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        if url::Url::parse(&config.oidc.issuer).is_err() {
            return Err(invalid("oidc.issuer", "not a URL"));
        }
        if !config.public_url.is_empty() && url::Url::parse(&config.public_url).is_err() {
            return Err(invalid("public_url", "not a URL"));
        }
        if config.oidc.client_id.is_empty() {
            return Err(invalid("oidc.client_id", "must be set"));
        }
        if config.session.idle_timeout_mins == 0 {
            return Err(invalid("session.idle_timeout_mins", "must be at least 1"));
        }
        if config.session.absolute_timeout_hours == 0 {
            return Err(invalid(
                "session.absolute_timeout_hours",
                "must be at least 1",
            ));
        }
        if config.backchannel_logout.max_age_secs == 0 {
            return Err(invalid(
                "backchannel_logout.max_age_secs",
                "must be at least 1",
            ));
        }
        Ok(config)
    }

    pub fn database_url(&self) -> String {
        match self.database.url.expose() {
            "" => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("marketplace.db").display()
            ),
            url => url.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_variables_configure_the_client_and_unknown_keys_are_refused() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let c = Config::from_layers(
            None,
            &env(&[
                ("MARKETPLACE_OIDC__ISSUER", "http://localhost:9000"),
                ("MARKETPLACE_OIDC__CLIENT_SECRET", "s3cret"),
                ("MARKETPLACE_SERVER__BIND", "127.0.0.1:0"),
                ("TOBIRA_ISSUER", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.oidc.issuer, "http://localhost:9000");
        assert_eq!(c.oidc.client_secret.expose(), "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = Config::from_layers(None, &env(&[("MARKETPLACE_OIDC__SECRET", "x")])).unwrap_err();
        assert!(e.to_string().contains("MARKETPLACE_OIDC__SECRET"), "{e}");
    }

    #[test]
    fn session_lifetimes_default_to_two_hours_idle_and_a_day_in_all_and_are_configurable() {
        let c = Config::from_layers(None, &[]).unwrap();
        assert_eq!(c.session.idle(), time::Duration::hours(2));
        assert_eq!(c.session.absolute(), time::Duration::hours(24));
        let env = [(
            "MARKETPLACE_SESSION__IDLE_TIMEOUT_MINS".to_owned(),
            "15".to_owned(),
        )];
        let c = Config::from_layers(None, &env).unwrap();
        assert_eq!(c.session.idle(), time::Duration::minutes(15));
        let zero = [(
            "MARKETPLACE_SESSION__ABSOLUTE_TIMEOUT_HOURS".to_owned(),
            "0".to_owned(),
        )];
        let e = Config::from_layers(None, &zero).unwrap_err();
        assert!(
            e.to_string().contains("session.absolute_timeout_hours"),
            "{e}"
        );
    }

    #[test]
    fn logout_tokens_are_accepted_for_five_minutes_with_a_minute_of_skew_by_default() {
        let c = Config::from_layers(None, &[]).unwrap();
        assert_eq!(c.backchannel_logout.max_age(), time::Duration::minutes(5));
        assert_eq!(
            c.backchannel_logout.clock_skew(),
            time::Duration::minutes(1)
        );
        let env = [(
            "MARKETPLACE_BACKCHANNEL_LOGOUT__MAX_AGE_SECS".to_owned(),
            "0".to_owned(),
        )];
        let e = Config::from_layers(None, &env).unwrap_err();
        assert!(
            e.to_string().contains("backchannel_logout.max_age_secs"),
            "{e}"
        );
    }
}
