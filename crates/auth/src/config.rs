//! Configuration: built-in defaults, then a TOML file named by `--config` or
//! `TOBIRA_CONFIG`, then `TOBIRA_<SECTION>__<KEY>` environment variables. Every secret may
//! instead be read from a file named by the same key with a `_file` suffix
//! (`TOBIRA_KEYS__MASTER_KEY_FILE=/run/secrets/master`), so it never sits in the
//! environment or in the config file.
//!
//! All layers are merged as one TOML tree and deserialised once with
//! `deny_unknown_fields`; the error names the offending key (and the variable it came from).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
pub use tobira_config::{ConfigError, Secret};
use toml::Table;
use url::Url;

/// Prefix of every environment variable read as configuration.
pub const ENV_PREFIX: &str = "TOBIRA_";
/// Names the configuration file when `--config` is not given.
pub const ENV_CONFIG_FILE: &str = "TOBIRA_CONFIG";

/// Keys whose values are secrets: they may come from `<key>_file` and are never logged.
const SECRET_KEYS: &[&str] = &[
    "database.url",
    "ephemeral.url",
    "keys.master_key",
    "keys.previous_master_keys",
    "mail.smtp.url",
    "mail.smtp.password",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The OP's issuer identifier: the exact `iss` of every token (OIDC Discovery §3).
    pub issuer: Issuer,
    /// Holds the SQLite file, the master key and the mail outbox unless their own paths
    /// are set.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub ephemeral: EphemeralConfig,
    pub keys: KeysConfig,
    pub mail: MailConfig,
    pub jobs: JobsConfig,
    pub backchannel: BackchannelConfig,
    pub signup: SignupConfig,
    pub password: PasswordConfig,
    pub session: SessionConfig,
    pub tokens: TokenConfig,
    pub limits: LimitsConfig,
    pub throttle: ThrottleConfig,
    /// `[account]`; `[accounts]` is accepted too (the issues say both).
    #[serde(alias = "accounts")]
    pub account: AccountConfig,
    /// `[federation]`: social sign-in through upstream providers (`federation/`).
    pub federation: FederationConfig,
    /// `[admin]`: the admin API and the audit log (`admin/`).
    pub admin: AdminConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Audit events are kept this many days, then purged.
    pub audit_retention_days: u32,
    /// After a client's secret is rotated, the old one still authenticates for this many
    /// hours (unless the rotation gives another grace), so the client can be redeployed.
    pub client_secret_grace_hours: u32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            audit_retention_days: 365,
            client_secret_grace_hours: 24,
        }
    }
}

/// Bounds on what anonymous clients can make the OP hold or compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Parked sign-ins (authorization requests waiting for the member) the in-process
    /// store holds at most; beyond it new ones are answered 503. Redis bounds itself.
    pub max_parked: usize,
    /// Authorization requests one address (IPv6: one /64) may park per minute; 0: no limit.
    pub park_per_ip_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_parked: 50_000,
            park_per_ip_per_minute: 600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Lifetime of a "keep me signed in" session (and of its persistent cookie).
    pub remember_days: u32,
    /// A session without "keep me signed in" ends after this long without activity…
    pub idle_timeout_mins: u32,
    /// …and at the latest this long after sign-in.
    pub absolute_timeout_hours: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            remember_days: 30,
            idle_timeout_mins: 120,
            absolute_timeout_hours: 24,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Algorithm of access tokens: RS256, ES256 or EdDSA (ID tokens follow each client's
    /// `id_token_signed_response_alg`).
    pub access_token_alg: crate::keys::Alg,
    /// Lifetime of access tokens (JWTs: they cannot be recalled from caches, keep it short).
    pub access_token_secs: u32,
    /// Lifetime of ID tokens.
    pub id_token_secs: u32,
    /// A refresh token unused for this long expires (an idle window); every use issues
    /// a new one.
    pub refresh_token_days: u32,
    /// An offline grant (`offline_access`) ends this long after consent, however often
    /// its refresh tokens rotate.
    pub offline_max_days: u32,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_token_alg: crate::keys::Alg::RS256,
            access_token_secs: 600,
            id_token_secs: 600,
            refresh_token_days: 30,
            offline_max_days: 365,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// Peers whose `X-Forwarded-For` is believed. Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    pub request_timeout_secs: u64,
    pub max_body_bytes: usize,
    /// A second listener for `/healthz`, `/readyz`, `/metrics` and the admin API, kept
    /// off the public one (which then answers 404 there). `None`: off; everything is on
    /// `bind`.
    pub management_bind: Option<SocketAddr>,
    /// On SIGTERM, `/readyz` answers 503 for this long while requests are still served
    /// (the load balancer stops sending traffic), then the server closes.
    pub drain_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://...` or `postgres://...`; empty means the SQLite file
    /// `<data_dir>/tobira.db`.
    pub url: Secret,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
    /// Apply pending migrations at `tobira serve` (under a lock shared by replicas).
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EphemeralConfig {
    /// `redis://...` or `rediss://...`; empty means an in-process store (one replica only).
    pub url: Secret,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// A PEM file of the CA certificate(s) that signed the Redis server's certificate,
    /// for a `rediss://` URL. When set, these are the only roots trusted for Redis
    /// (instead of the system's, not in addition: a private CA should not share trust
    /// with every public one). Empty: the system's root certificates.
    pub tls_ca_file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// Master key encrypting the signing keys at rest (base64url of 32 bytes). Empty:
    /// read from, or generated into, `master_key_path`.
    pub master_key: Secret,
    /// Empty means `<data_dir>/master.key`.
    pub master_key_path: String,
    /// How long relying parties may cache the JWKS and the discovery document
    /// (`Cache-Control: max-age`, seconds): a new signing key must be published at least
    /// this long before it signs.
    pub jwks_max_age_secs: u32,
    /// How long a `next` key is published before it signs (seconds). 0: twice
    /// `jwks_max_age_secs`, so a client that fetched the JWKS just before the key appeared
    /// has fetched it again, with the key, before any token needs it.
    pub publish_ahead_secs: u32,
    /// How often every replica reads the key ring again (milliseconds). A replica signs
    /// with a key only after publishing it for this long.
    pub reload_interval_ms: u32,
    /// A new key of every algorithm is published this many days after the last one
    /// started signing (the schedule runs as a job, once across replicas). 0: only by
    /// `tobira keys rotate`.
    pub rotate_every_days: u32,
    /// Earlier master keys (base64url, separated by commas or white space), or
    /// `previous_master_keys_file`: what they sealed still opens, nothing new is sealed
    /// with them. `tobira keys rotate-master` re-seals it all under `master_key`.
    pub previous_master_keys: Secret,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            master_key: Secret::default(),
            master_key_path: String::new(),
            jwks_max_age_secs: 300,
            publish_ahead_secs: 0,
            reload_interval_ms: 5_000,
            rotate_every_days: 90,
            previous_master_keys: Secret::default(),
        }
    }
}

impl KeysConfig {
    /// `publish_ahead_secs`, with 0 meaning twice the JWKS max-age.
    pub fn publish_ahead(&self) -> time::Duration {
        let secs = if self.publish_ahead_secs == 0 {
            2 * self.jwks_max_age_secs
        } else {
            self.publish_ahead_secs
        };
        time::Duration::seconds(secs.into())
    }

    pub fn reload_interval(&self) -> time::Duration {
        time::Duration::milliseconds(self.reload_interval_ms.into())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// The `From:` of every mail.
    pub from: String,
    /// Where `.eml` files go when no SMTP server is configured. Empty means
    /// `<data_dir>/outbox`.
    pub outbox_dir: String,
    /// Mails one address may be sent per hour by what visitors do (reset requests…);
    /// 0: no cap. Beyond it nothing is sent, and the page says the same.
    pub per_address_per_hour: u32,
    /// The same per client address (IPv6: per /64).
    pub per_ip_per_hour: u32,
    pub smtp: SmtpConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// `smtp://host:587` (STARTTLS, required) or `smtps://host:465` (implicit TLS).
    /// Empty: mails go to the outbox directory.
    pub url: Secret,
    pub user: String,
    pub password: Secret,
    /// Plain-text SMTP without TLS, allowed only to a server on this machine (tests).
    pub allow_insecure: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// How often each replica looks for due jobs.
    pub poll_interval_ms: u64,
    /// How long a failing job is tried again, counted from when it was queued, before it
    /// is given up (with an error log and a metric).
    pub give_up_after_hours: u32,
}

/// Delivery of back-channel logout tokens to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackchannelConfig {
    /// How long one delivery may take, connecting included; a slow client is retried.
    pub timeout_ms: u64,
    /// Lifetime of a logout token (its `exp` after `iat`).
    pub token_secs: u32,
    /// Private, shared and link-local networks a logout URI's host may resolve to (for
    /// clients inside the operator's network). Public addresses are always allowed, and
    /// loopback only when the URI names it (`localhost`, `127.0.0.1`, `[::1]`).
    pub allowed_networks: Vec<IpNet>,
}

impl Default for BackchannelConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 5000,
            token_secs: 120,
            allowed_networks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignupConfig {
    /// Sign-ups whose address was not verified within this many hours are removed (and
    /// the address is free again).
    pub unverified_max_age_hours: u32,
}

impl Default for SignupConfig {
    fn default() -> Self {
        Self {
            unverified_max_age_hours: 72,
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1000,
            give_up_after_hours: 24,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    /// argon2id memory cost in KiB (OWASP: 19456 = 19 MiB).
    pub argon2_memory_kib: u32,
    /// argon2id iterations (OWASP: 2).
    pub argon2_iterations: u32,
    /// argon2id lanes (OWASP: 1).
    pub argon2_parallelism: u32,
    /// Hashes computed at once; 0 means one per CPU core. Bounds the memory an attack
    /// can make the server spend (each hash holds `argon2_memory_kib`).
    pub max_concurrent_hashes: usize,
    /// Hashes that may wait for their turn, per CPU core (default 8 × cores); beyond it
    /// a sign-in is answered 503 with `Retry-After` at once. 0: no bound.
    pub waiting_hashes_per_core: usize,
    /// How many nice levels the hashing threads run below the process (Linux; 0–19, as
    /// `nice -n`): above 0, a request's thread runs before a hash when both want a core,
    /// so a storm of sign-ins slows the token endpoint and the pages less. 0: the
    /// process's own priority.
    pub hashing_nice: i32,
}

/// The member's account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountConfig {
    /// Sign-in attempts are kept in the member's history this many days, then purged.
    pub history_days: u32,
    /// A successful sign-in from a device new to the account mails its member
    /// (`authn/risk`).
    pub new_device_mail: bool,
    /// Changing the email or password, or deleting the account, needs a sign-in at most
    /// this many minutes old; otherwise the member signs in again first.
    pub reauth_minutes: u32,
    /// A deleted account's personal data is kept this many days, then purged.
    pub retention_days: u32,
    /// A deleted account's address cannot sign up again for this many days after the
    /// deletion.
    pub reregister_cooldown_days: u32,
    /// How members reach support (an address or a URL), shown to a frozen account and in
    /// the mails that tell of a freeze. Empty: "contact support" without an address.
    pub support_contact: String,
    /// 「この端末では確認しない」: a known device of a member with two-step verification
    /// skips the second step for this many days (0 turns the choice off).
    pub remember_device_days: u32,
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self {
            history_days: 90,
            new_device_mail: true,
            reauth_minutes: 10,
            retention_days: 90,
            reregister_cooldown_days: 30,
            support_contact: String::new(),
            remember_device_days: 30,
        }
    }
}

/// Social sign-in: the upstream providers, in the order their buttons appear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// `[[federation.providers]]`.
    pub providers: Vec<ProviderConfig>,
    /// Every request to a provider (discovery, token, userinfo, JWKS, Graph) gives up
    /// after this long.
    pub timeout_ms: u64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            timeout_ms: 5_000,
        }
    }
}

/// The kinds of upstream provider; each preset carries its provider's endpoints, scopes,
/// button text and quirks (`federation::presets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Google,
    YahooJapan,
    Apple,
    Facebook,
    /// Any OpenID provider, by discovery from `issuer`.
    Oidc,
}

/// One `[[federation.providers]]` entry. Endpoints left empty come from the preset (or
/// from discovery); any may be overridden (plain http only on a loopback host), so that
/// tests can point a preset at a local stand-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// In URLs (`/federation/{id}/start`, `/federation/{id}/callback`): `[a-z0-9_-]{1,32}`.
    pub id: String,
    pub kind: ProviderKind,
    pub client_id: String,
    /// The client secret (not for `apple`), or `client_secret_file`.
    #[serde(default)]
    pub client_secret: Secret,
    #[serde(default)]
    pub client_secret_file: String,
    /// Apple: the team id, the key id and the `.p8` key that sign the client secret.
    #[serde(default)]
    pub team_id: String,
    #[serde(default)]
    pub key_id: String,
    #[serde(default)]
    pub private_key_file: String,
    /// `oidc`: the issuer to discover from; for the presets, overrides theirs.
    #[serde(default)]
    pub issuer: String,
    /// Scopes asked for instead of the preset's.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The button's text in Japanese and in English, instead of the preset's.
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub label_en: String,
    /// Endpoint overrides (empty: the preset's, or discovery's).
    #[serde(default)]
    pub authorization_endpoint: String,
    #[serde(default)]
    pub token_endpoint: String,
    #[serde(default)]
    pub userinfo_endpoint: String,
    #[serde(default)]
    pub jwks_uri: String,
    /// Apple: where tokens are revoked. Facebook: the Graph API's base URL.
    #[serde(default)]
    pub revocation_endpoint: String,
    #[serde(default)]
    pub graph_endpoint: String,
}

/// Password-guessing defence (`authn/throttle`). Times in minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Consecutive failures that lock an account (and each further this many double
    /// the lock). 0 turns the per-account lock off.
    pub account_failures: u32,
    /// A failure drops out of the count after this long without another one.
    pub failure_memory_minutes: u32,
    /// The first lock; each next one is twice as long.
    pub lock_minutes: u32,
    /// The longest lock (24 hours).
    pub max_lock_minutes: u32,
    /// After this many consecutive failures (NIST SP 800-63B §5.2.2: at most 100),
    /// devices not known to the account wait for the unlock link, a reset or support.
    /// 0: never.
    pub hard_lock_failures: u32,
    /// How long such a lock is remembered without an unlock (days).
    pub hard_lock_days: u32,
    /// Consecutive failures of one known device that lock that device alone.
    pub device_failures: u32,
    /// Different accounts (unknown addresses too) one client address (IPv6 by /64) may
    /// fail against within `ip_window_minutes` before it is refused. 0 turns it off.
    pub ip_accounts: u32,
    pub ip_window_minutes: u32,
    /// How long such an address is refused (HTTP 429 with `Retry-After`).
    pub ip_block_minutes: u32,
    /// The unlock link in the lock mail works this long (hours).
    pub unlock_link_hours: u32,
    /// The offset of the times the pages show ("try again after 15:42"), `+09:00`.
    pub display_utc_offset: String,
}

impl ThrottleConfig {
    /// `display_utc_offset` as an offset (checked when the configuration loads).
    pub fn display_offset(&self) -> time::UtcOffset {
        self.parse_display_offset().unwrap_or(time::UtcOffset::UTC)
    }

    fn parse_display_offset(&self) -> Option<time::UtcOffset> {
        let format =
            time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]");
        time::UtcOffset::parse(&self.display_utc_offset, &format).ok()
    }
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            account_failures: 5,
            failure_memory_minutes: 15,
            lock_minutes: 1,
            max_lock_minutes: 24 * 60,
            hard_lock_failures: 100,
            hard_lock_days: 30,
            device_failures: 5,
            ip_accounts: 30,
            ip_window_minutes: 15,
            ip_block_minutes: 15,
            unlock_link_hours: 24,
            display_utc_offset: "+09:00".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `info,tobira_auth=debug`; `RUST_LOG` wins.
    pub level: String,
    /// One line per request at info (method, route, status, time, request id).
    pub access: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // Browsers allow passkeys over plain http only on `localhost`.
            issuer: Issuer::parse("http://localhost:8080").expect("static URL"),
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            ephemeral: EphemeralConfig::default(),
            keys: KeysConfig::default(),
            mail: MailConfig::default(),
            jobs: JobsConfig::default(),
            backchannel: BackchannelConfig::default(),
            signup: SignupConfig::default(),
            password: PasswordConfig::default(),
            session: SessionConfig::default(),
            tokens: TokenConfig::default(),
            limits: LimitsConfig::default(),
            throttle: ThrottleConfig::default(),
            account: AccountConfig::default(),
            federation: FederationConfig::default(),
            admin: AdminConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            trusted_proxies: Vec::new(),
            request_timeout_secs: 30,
            max_body_bytes: 64 * 1024,
            management_bind: None,
            drain_secs: 5,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            max_connections: 10,
            connect_timeout_secs: 5,
            migrate_on_start: true,
        }
    }
}

impl Default for EphemeralConfig {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            key_prefix: "tobira:".to_owned(),
            tls_ca_file: String::new(),
        }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            from: "Tobira <no-reply@localhost>".to_owned(),
            outbox_dir: String::new(),
            per_address_per_hour: 5,
            per_ip_per_hour: 20,
            smtp: SmtpConfig::default(),
        }
    }
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self {
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_concurrent_hashes: 0,
            waiting_hashes_per_core: 8,
            hashing_nice: 10,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".to_owned(),
            access: true,
        }
    }
}

impl Config {
    /// Loads the configuration of the running process: defaults, the file named by
    /// `path` or `TOBIRA_CONFIG`, then the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let from_env = env
            .iter()
            .find(|(k, _)| k == ENV_CONFIG_FILE)
            .map(|(_, v)| PathBuf::from(v));
        let file = match path.map(Path::to_path_buf).or(from_env) {
            Some(path) => Some(tobira_config::read_file(&path)?),
            None => None,
        };
        Self::from_layers(file, &env)
    }

    /// Merges the layers and validates the result. `file` is the parsed TOML file (if
    /// any) and `env` the environment variables (only `TOBIRA_*` ones are read).
    pub fn from_layers(file: Option<Table>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let layers = tobira_config::Layers {
            env_prefix: ENV_PREFIX,
            env_ignore: &[ENV_CONFIG_FILE],
            secret_keys: SECRET_KEYS,
            optional_keys: &["server.management_bind"],
        };
        let config: Config = layers.load(file, env)?;
        config.validate()?;
        Ok(config)
    }

    /// The complete configuration as a TOML tree (secrets included: do not log it).
    pub fn to_table(&self) -> Table {
        tobira_config::to_table(self)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let db = self.database.url.expose();
        if !(db.is_empty()
            || db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                "must start with sqlite:, postgres:// or postgresql:// (or be empty for the embedded SQLite file)",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        let eph = self.ephemeral.url.expose();
        if !(eph.is_empty() || eph.starts_with("redis://") || eph.starts_with("rediss://")) {
            return Err(invalid(
                "ephemeral.url",
                "must start with redis:// or rediss:// (or be empty for the in-process store)",
            ));
        }
        if !self.ephemeral.tls_ca_file.is_empty() && !eph.starts_with("rediss://") {
            return Err(invalid(
                "ephemeral.tls_ca_file",
                "is set, but ephemeral.url is not a rediss:// (TLS) URL",
            ));
        }
        let smtp = &self.mail.smtp;
        if smtp.allow_insecure && !smtp.url.expose().is_empty() {
            let host = Url::parse(smtp.url.expose())
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default();
            let loopback = host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(invalid(
                    "mail.smtp.allow_insecure",
                    "plain-text SMTP is allowed only to a server on this machine (localhost, 127.0.0.1, ::1)",
                ));
            }
        }
        if !(smtp.url.expose().is_empty()
            || smtp.url.expose().starts_with("smtp://")
            || smtp.url.expose().starts_with("smtps://"))
        {
            return Err(invalid(
                "mail.smtp.url",
                "must start with smtp:// (STARTTLS) or smtps:// (or be empty for the outbox)",
            ));
        }
        let t = &self.throttle;
        if t.parse_display_offset().is_none() {
            return Err(invalid(
                "throttle.display_utc_offset",
                "must be an offset such as +09:00 or -05:00",
            ));
        }
        for (key, value) in [
            ("throttle.failure_memory_minutes", t.failure_memory_minutes),
            ("throttle.lock_minutes", t.lock_minutes),
            ("throttle.max_lock_minutes", t.max_lock_minutes),
            ("throttle.hard_lock_days", t.hard_lock_days),
            ("throttle.ip_window_minutes", t.ip_window_minutes),
            ("throttle.ip_block_minutes", t.ip_block_minutes),
            ("throttle.unlock_link_hours", t.unlock_link_hours),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        // Bounded so that no lock or link outlives what a time can hold (a lock that
        // overflowed would end at once).
        for (key, value, max) in [
            (
                "throttle.max_lock_minutes",
                t.max_lock_minutes,
                366 * 24 * 60,
            ),
            (
                "throttle.failure_memory_minutes",
                t.failure_memory_minutes,
                7 * 24 * 60,
            ),
            (
                "throttle.ip_window_minutes",
                t.ip_window_minutes,
                7 * 24 * 60,
            ),
            ("throttle.ip_block_minutes", t.ip_block_minutes, 7 * 24 * 60),
            ("throttle.hard_lock_days", t.hard_lock_days, 3650),
            ("throttle.unlock_link_hours", t.unlock_link_hours, 30 * 24),
        ] {
            if value > max {
                return Err(invalid(key, &format!("must be at most {max}")));
            }
        }
        if !(60..=86_400).contains(&self.keys.jwks_max_age_secs) {
            return Err(invalid(
                "keys.jwks_max_age_secs",
                "must be between 60 and 86400 (one day)",
            ));
        }
        if self.keys.publish_ahead_secs != 0
            && self.keys.publish_ahead_secs < self.keys.jwks_max_age_secs
        {
            return Err(invalid(
                "keys.publish_ahead_secs",
                "must be 0 (twice keys.jwks_max_age_secs) or at least keys.jwks_max_age_secs: \
                 a client caching the JWKS would meet tokens signed by a key it has not seen",
            ));
        }
        if !(50..=60_000).contains(&self.keys.reload_interval_ms) {
            return Err(invalid(
                "keys.reload_interval_ms",
                "must be between 50 and 60000 (one minute)",
            ));
        }
        if self.keys.rotate_every_days > 3650 {
            return Err(invalid("keys.rotate_every_days", "must be at most 3650"));
        }
        if !(1..=3650).contains(&self.admin.audit_retention_days) {
            return Err(invalid(
                "admin.audit_retention_days",
                "must be between 1 and 3650",
            ));
        }
        if self.admin.client_secret_grace_hours > 24 * 90 {
            return Err(invalid(
                "admin.client_secret_grace_hours",
                "must be at most 2160 (90 days)",
            ));
        }
        if self.server.drain_secs > 300 {
            return Err(invalid("server.drain_secs", "must be at most 300"));
        }
        if !(1..=3650).contains(&self.account.history_days) {
            return Err(invalid(
                "account.history_days",
                "must be between 1 and 3650",
            ));
        }
        for (key, value, range) in [
            (
                "account.reauth_minutes",
                self.account.reauth_minutes,
                1..=24 * 60,
            ),
            (
                "account.retention_days",
                self.account.retention_days,
                0..=3650,
            ),
            (
                "account.reregister_cooldown_days",
                self.account.reregister_cooldown_days,
                0..=3650,
            ),
        ] {
            if !range.contains(&value) {
                let (lo, hi) = (range.start(), range.end());
                return Err(invalid(key, &format!("must be between {lo} and {hi}")));
            }
        }
        if self.account.support_contact.chars().count() > 200
            || self.account.support_contact.chars().any(char::is_control)
        {
            return Err(invalid(
                "account.support_contact",
                "must be at most 200 characters, without control characters",
            ));
        }
        if t.max_lock_minutes < t.lock_minutes {
            return Err(invalid(
                "throttle.max_lock_minutes",
                "must be at least throttle.lock_minutes",
            ));
        }
        if self.jobs.give_up_after_hours == 0 {
            return Err(invalid("jobs.give_up_after_hours", "must be at least 1"));
        }
        if !(100..=60_000).contains(&self.backchannel.timeout_ms) {
            return Err(invalid(
                "backchannel.timeout_ms",
                "must be between 100 and 60000",
            ));
        }
        if !(10..=600).contains(&self.backchannel.token_secs) {
            return Err(invalid(
                "backchannel.token_secs",
                "must be between 10 and 600",
            ));
        }
        let p = &self.password;
        if argon2::Params::new(
            p.argon2_memory_kib,
            p.argon2_iterations,
            p.argon2_parallelism,
            None,
        )
        .is_err()
        {
            return Err(invalid(
                "password",
                "argon2 parameters out of range (memory ≥ 8 × parallelism KiB, iterations ≥ 1, parallelism ≥ 1)",
            ));
        }
        if !(0..=19).contains(&p.hashing_nice) {
            return Err(invalid(
                "password.hashing_nice",
                "must be between 0 and 19 (a hash never runs above the requests)",
            ));
        }
        if p.argon2_memory_kib < 7 * 1024 {
            return Err(invalid(
                "password.argon2_memory_kib",
                "below the OWASP minimum of 7168 KiB for argon2id",
            ));
        }
        for (key, value) in [
            ("session.remember_days", self.session.remember_days),
            ("session.idle_timeout_mins", self.session.idle_timeout_mins),
            (
                "session.absolute_timeout_hours",
                self.session.absolute_timeout_hours,
            ),
            ("tokens.access_token_secs", self.tokens.access_token_secs),
            ("tokens.id_token_secs", self.tokens.id_token_secs),
            ("tokens.refresh_token_days", self.tokens.refresh_token_days),
            ("tokens.offline_max_days", self.tokens.offline_max_days),
            (
                "signup.unverified_max_age_hours",
                self.signup.unverified_max_age_hours,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.server.request_timeout_secs == 0 {
            return Err(invalid("server.request_timeout_secs", "must be at least 1"));
        }
        if self
            .log
            .level
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            return Err(invalid("log.level", "not a valid tracing filter"));
        }
        self.validate_federation()
    }

    /// `[federation]`: the rules that need no file (the secrets and Apple's key are
    /// read when the providers are built). The rules live in `federation::presets`,
    /// which building the providers runs again.
    fn validate_federation(&self) -> Result<(), ConfigError> {
        crate::federation::check_config(&self.federation).map_err(|p| ConfigError::Invalid {
            key: p.key(),
            reason: match p.index {
                Some(_) => format!("provider {}: {}", p.id, p.reason),
                None => p.reason,
            },
        })
    }

    /// The database URL to connect to, defaulting to the embedded SQLite file.
    pub fn database_url(&self) -> String {
        let url = self.database.url.expose();
        if url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("tobira.db").display()
            )
        } else {
            url.to_owned()
        }
    }

    pub fn master_key_path(&self) -> PathBuf {
        or_in_data_dir(&self.keys.master_key_path, &self.data_dir, "master.key")
    }

    pub fn outbox_dir(&self) -> PathBuf {
        or_in_data_dir(&self.mail.outbox_dir, &self.data_dir, "outbox")
    }

    /// Cookies get `Secure` (and the `__Host-` prefix) when the issuer is https.
    pub fn secure_cookies(&self) -> bool {
        self.issuer.as_str().starts_with("https://")
    }

    /// Hashes that may wait: `waiting_hashes_per_core` × cores (0: unbounded).
    pub fn max_waiting_hashes(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.password.waiting_hashes_per_core.saturating_mul(cores)
    }

    /// Hashes at once: the setting, or one per core.
    pub fn max_concurrent_hashes(&self) -> usize {
        match self.password.max_concurrent_hashes {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

fn or_in_data_dir(value: &str, data_dir: &Path, name: &str) -> PathBuf {
    if value.is_empty() {
        data_dir.join(name)
    } else {
        PathBuf::from(value)
    }
}

/// The issuer identifier, kept exactly as configured: `iss` is compared as a string by
/// relying parties, so `https://id.example.jp` and `https://id.example.jp/` differ and
/// the OP must never rewrite one into the other (as `Url` would).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Issuer(String);

impl Issuer {
    pub fn parse(value: &str) -> Result<Self, String> {
        let url = Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("must be an https (or http) URL".to_owned());
        }
        // OIDC Discovery §3: no query or fragment.
        if url.query().is_some() || url.fragment().is_some() || value.contains(['?', '#']) {
            return Err("must not have a query or fragment".to_owned());
        }
        if url.scheme() == "http" && !is_loopback_host(&url) {
            return Err(
                "plain http is allowed only for localhost / loopback addresses; use https"
                    .to_owned(),
            );
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An endpoint under the issuer: `endpoint("/jwks")` → `https://id.example.jp/jwks`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.0.trim_end_matches('/'), path)
    }
}

impl TryFrom<String> for Issuer {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<Issuer> for String {
    fn from(issuer: Issuer) -> Self {
        issuer.0
    }
}

impl fmt::Display for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn file(text: &str) -> Option<Table> {
        Some(text.parse().expect("test TOML parses"))
    }

    fn err(file_text: Option<&str>, vars: &[(&str, &str)]) -> String {
        Config::from_layers(file_text.and_then(file), &env(vars))
            .expect_err("configuration must be refused")
            .to_string()
    }

    #[test]
    fn defaults_need_no_file_and_no_environment() {
        let c = Config::from_layers(None, &[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.server.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.issuer.as_str(), "http://localhost:8080");
        assert_eq!(c.issuer.endpoint("/jwks"), "http://localhost:8080/jwks");
        assert!(c.server.trusted_proxies.is_empty());
        assert_eq!(c.database_url(), "sqlite://./data/tobira.db?mode=rwc");
        assert_eq!(c.master_key_path(), PathBuf::from("./data/master.key"));
        assert_eq!(c.outbox_dir(), PathBuf::from("./data/outbox"));
    }

    #[test]
    fn shipped_config_file_documents_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/tobira.toml");
        let shipped = tobira_config::read_file(&path).unwrap();
        // Exact equality: a key missing from the file, or a default that drifted, fails.
        assert_eq!(shipped, Config::default().to_table());
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let c = Config::from_layers(
            file("[server]\nbind = \"127.0.0.1:7000\"\n[database]\nmax_connections = 3"),
            &env(&[
                ("TOBIRA_SERVER__BIND", "127.0.0.1:9000"),
                ("TOBIRA_ISSUER", "http://127.0.0.1:9000"),
                ("TOBIRA_DATABASE__URL", "postgres://db/tobira"),
                ("TOBIRA_EPHEMERAL__URL", "redis://127.0.0.1:6379"),
                (
                    "TOBIRA_SERVER__TRUSTED_PROXIES",
                    "10.0.0.0/8, 192.168.1.1/32",
                ),
                ("TOBIRA_DATABASE__MIGRATE_ON_START", "false"),
                ("TOBIRA_LOG__FORMAT", "json"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.bind.to_string(), "127.0.0.1:9000");
        assert_eq!(c.issuer.as_str(), "http://127.0.0.1:9000");
        assert_eq!(c.database.max_connections, 3);
        assert_eq!(c.database_url(), "postgres://db/tobira");
        assert_eq!(c.ephemeral.url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(c.server.trusted_proxies.len(), 2);
        assert!(!c.database.migrate_on_start);
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn secrets_are_read_from_files_and_never_debug_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-url");
        std::fs::write(&path, "postgres://u:hunter2@db/tobira\n").unwrap();
        let c = Config::from_layers(
            None,
            &env(&[("TOBIRA_DATABASE__URL_FILE", path.to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(c.database.url.expose(), "postgres://u:hunter2@db/tobira");
        assert!(!format!("{c:?}").contains("hunter2"));

        let c = Config::from_layers(
            file(&format!(
                "[keys]\nmaster_key_file = {:?}",
                path.to_str().unwrap()
            )),
            &[],
        )
        .unwrap();
        assert!(c.keys.master_key.expose().contains("hunter2"));
    }

    /// `mail.smtp.password` sits two tables deep: its file variant once looked for
    /// `smtp.password_file` in `[mail]` and was refused as an unknown key.
    #[test]
    fn nested_secrets_are_read_from_files_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smtp-password");
        std::fs::write(&path, "s3cret-smtp\n").unwrap();
        let c = Config::from_layers(
            None,
            &env(&[("TOBIRA_MAIL__SMTP__PASSWORD_FILE", path.to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(c.mail.smtp.password.expose(), "s3cret-smtp");
    }

    /// Unset by default, so absent from the defaults the variables are checked against:
    /// the variable was once refused as naming no key.
    #[test]
    fn an_optional_setting_comes_from_the_environment() {
        let c = Config::from_layers(
            None,
            &env(&[("TOBIRA_SERVER__MANAGEMENT_BIND", "0.0.0.0:9090")]),
        )
        .unwrap();
        assert_eq!(
            c.server.management_bind,
            Some("0.0.0.0:9090".parse().unwrap())
        );
        let e = err(
            None,
            &[("TOBIRA_SERVER__MANAGEMENT_BIND", "not an address")],
        );
        assert!(e.contains("management_bind"), "{e}");
    }

    #[test]
    fn a_file_variant_exists_only_for_secrets() {
        let e = err(None, &[("TOBIRA_SERVER__BIND_FILE", "/etc/hostname")]);
        assert!(e.contains("TOBIRA_SERVER__BIND_FILE"), "{e}");
        let e = err(None, &[("TOBIRA_DATABASE__URL_FILE", "/does/not/exist")]);
        assert!(
            e.contains("database.url_file") && e.contains("/does/not/exist"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let e = err(Some("[server]\nbnd = \"127.0.0.1:1\""), &[]);
        assert!(e.contains("server") && e.contains("bnd"), "{e}");
        let e = err(Some("[sever]\nbind = \"127.0.0.1:1\""), &[]);
        assert!(e.contains("sever"), "{e}");
        let e = err(None, &[("TOBIRA_SERVER__PORT", "1")]);
        assert!(
            e.contains("TOBIRA_SERVER__PORT") && e.contains("server.port"),
            "{e}"
        );
        let e = err(None, &[("TOBIRA_SERVER", "1")]);
        assert!(e.contains("TOBIRA_SERVER"), "{e}");
        let e = err(None, &[("TOBIRA_SERVER____BIND", "1")]);
        assert!(e.contains("TOBIRA_SERVER____BIND"), "{e}");
    }

    #[test]
    fn invalid_values_are_refused_by_name() {
        for (vars, key) in [
            (&[("TOBIRA_SERVER__BIND", "localhost")][..], "server.bind"),
            (
                &[("TOBIRA_DATABASE__MAX_CONNECTIONS", "ten")],
                "database.max_connections",
            ),
            (
                &[("TOBIRA_DATABASE__MAX_CONNECTIONS", "0")],
                "database.max_connections",
            ),
            (
                &[("TOBIRA_DATABASE__MIGRATE_ON_START", "yes")],
                "database.migrate_on_start",
            ),
            (&[("TOBIRA_DATABASE__URL", "mysql://x")], "database.url"),
            (
                &[("TOBIRA_EPHEMERAL__URL", "memcached://x")],
                "ephemeral.url",
            ),
            (&[("TOBIRA_ISSUER", "not a url")], "issuer"),
            (&[("TOBIRA_ISSUER", "http://example.com")], "issuer"),
            (&[("TOBIRA_ISSUER", "https://example.com/?a=b")], "issuer"),
            (&[("TOBIRA_LOG__FORMAT", "xml")], "log.format"),
            (
                &[("TOBIRA_SERVER__TRUSTED_PROXIES", "10.0.0.0/99")],
                "server.trusted_proxies",
            ),
            (
                &[("TOBIRA_PASSWORD__ARGON2_MEMORY_KIB", "64")],
                "password.argon2_memory_kib",
            ),
            (
                &[("TOBIRA_PASSWORD__HASHING_NICE", "-5")],
                "password.hashing_nice",
            ),
            (
                &[("TOBIRA_PASSWORD__HASHING_NICE", "20")],
                "password.hashing_nice",
            ),
            (
                &[("TOBIRA_THROTTLE__DISPLAY_UTC_OFFSET", "JST")],
                "throttle.display_utc_offset",
            ),
            (
                &[("TOBIRA_THROTTLE__LOCK_MINUTES", "0")],
                "throttle.lock_minutes",
            ),
            (
                &[("TOBIRA_KEYS__JWKS_MAX_AGE_SECS", "0")],
                "keys.jwks_max_age_secs",
            ),
            (
                &[("TOBIRA_KEYS__JWKS_MAX_AGE_SECS", "604800")],
                "keys.jwks_max_age_secs",
            ),
            (
                &[("TOBIRA_THROTTLE__HARD_LOCK_DAYS", "4294967295")],
                "throttle.hard_lock_days",
            ),
            (
                &[("TOBIRA_THROTTLE__UNLOCK_LINK_HOURS", "100000")],
                "throttle.unlock_link_hours",
            ),
            (
                &[
                    ("TOBIRA_THROTTLE__LOCK_MINUTES", "60"),
                    ("TOBIRA_THROTTLE__MAX_LOCK_MINUTES", "30"),
                ],
                "throttle.max_lock_minutes",
            ),
        ] {
            let e = err(None, vars);
            assert!(e.contains(key), "{vars:?}: {e}");
        }
        let e = err(Some("[server]\nbind = 8080"), &[]);
        assert!(e.contains("server.bind"), "{e}");
    }

    #[test]
    fn malformed_toml_names_the_file_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[server\nbind = 1").unwrap();
        let e = tobira_config::read_file(&path).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("line 1"), "{e}");
    }
}
