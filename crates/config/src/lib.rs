//! Layered configuration for Tobira's apps: built-in defaults, then a TOML file, then
//! `<PREFIX><SECTION>__<KEY>` environment variables, with a `<key>_file` variant for
//! every secret (read from a file, so it never sits in the environment or the config).
//!
//! All layers are merged as one TOML tree and deserialised once with the app's
//! `deny_unknown_fields` structs; errors name the offending key (and the variable).
//!
//! The prefix is not ours alone: Kubernetes gives every pod `<SERVICE>_PORT`,
//! `<SERVICE>_SERVICE_HOST`, `<SERVICE>_PORT_8080_TCP_ADDR`… for each Service, so a
//! Service named `tobira` puts `TOBIRA_PORT` into the environment. A variable in section
//! form (`<PREFIX><SECTION>__<KEY>`) is always meant for us and stays strict; one without
//! `__` that names no top-level key is left alone, with one warning naming them all.

pub mod clock;

pub use clock::Clock;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// How an app reads its environment.
pub struct Layers<'a> {
    /// `TOBIRA_`, `MARKETPLACE_`.
    pub env_prefix: &'a str,
    /// Variables with the prefix that are not keys (`TOBIRA_CONFIG`).
    pub env_ignore: &'a [&'a str],
    /// Dotted keys whose values are secrets: they may come from `<key>_file`.
    pub secret_keys: &'a [&'a str],
    /// Dotted keys unset by default (an `Option` that is `None`): absent from the
    /// defaults, so a variable cannot be checked against them; named here, they are
    /// taken from the environment as strings (their type still checks the value).
    pub optional_keys: &'a [&'a str],
}

/// A loaded configuration and what the environment held that was not for it.
#[derive(Debug)]
pub struct Loaded<T> {
    pub config: T,
    /// Prefixed variables without `__` that name no top-level key (Kubernetes service
    /// links, most likely), sorted. Names only: their values may be secrets.
    pub ignored_env: Vec<String>,
}

impl<T> Loaded<T> {
    /// The one warning to log about `ignored_env`, if any.
    pub fn warning(&self) -> Option<String> {
        (!self.ignored_env.is_empty()).then(|| {
            format!(
                "ignoring environment variables that name no configuration key: {} \
                 (Kubernetes sets such variables for a Service of the same name; a key in a \
                 section is named <PREFIX><SECTION>__<KEY>)",
                self.ignored_env.join(", ")
            )
        })
    }
}

impl Layers<'_> {
    /// Merges defaults, `file` and `env` into a `T`. Ignored variables are reported
    /// with one warning: through `tracing` when a subscriber is installed, else on
    /// stderr, because apps read their configuration before they set up logging (the
    /// log settings are part of it). Use [`Layers::load_reporting`] to log it yourself.
    pub fn load<T: Serialize + DeserializeOwned + Default>(
        &self,
        file: Option<Table>,
        env: &[(String, String)],
    ) -> Result<T, ConfigError> {
        let loaded = self.load_reporting(file, env)?;
        if let Some(warning) = loaded.warning() {
            if tracing::dispatcher::has_been_set() {
                tracing::warn!("{warning}");
            } else {
                eprintln!("warning: {warning}");
            }
        }
        Ok(loaded.config)
    }

    /// Like [`Layers::load`], returning the ignored variables instead of warning.
    pub fn load_reporting<T: Serialize + DeserializeOwned + Default>(
        &self,
        file: Option<Table>,
        env: &[(String, String)],
    ) -> Result<Loaded<T>, ConfigError> {
        let mut tree = to_table(&T::default());
        if let Some(file) = file {
            merge(&mut tree, file);
        }
        let mut ignored_env = Vec::new();
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(self.env_prefix) else {
                continue;
            };
            if self.env_ignore.contains(&name.as_str()) {
                continue;
            }
            // `TOBIRA_PORT` from a Service named `tobira` is not a typo of ours; but
            // `TOBIRA_SERVER__PORT` can only be one, and `TOBIRA_SERVER` names a section.
            if !rest.contains("__") && !tree.contains_key(&rest.to_lowercase()) {
                ignored_env.push(name.clone());
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            set_from_env(&mut tree, name, &path, raw, self)?;
        }
        ignored_env.sort_unstable();
        ignored_env.dedup();
        resolve_secret_files(&mut tree, self.secret_keys)?;
        let config = serde_path_to_error::deserialize(Value::Table(tree)).map_err(|e| {
            ConfigError::Invalid {
                key: e.path().to_string(),
                reason: e.inner().message().to_owned(),
            }
        })?;
        Ok(Loaded {
            config,
            ignored_env,
        })
    }
}

/// A value as a TOML tree (secrets included: do not log it).
pub fn to_table<T: Serialize>(value: &T) -> Table {
    match Value::try_from(value) {
        Ok(Value::Table(t)) => t,
        _ => panic!("configuration types serialise to a table"),
    }
}

/// Reads a TOML file; the error names the file and the line.
pub fn read_file(path: &Path) -> Result<Table, ConfigError> {
    read_file_layer(path)
}

fn read_file_layer(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.parse::<Table>().map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Sets one key from an environment variable, typed like the key's current value.
fn set_from_env(
    tree: &mut Table,
    var: &str,
    path: &[String],
    raw: &str,
    layers: &Layers<'_>,
) -> Result<(), ConfigError> {
    let unknown = || ConfigError::UnknownEnv {
        var: var.to_owned(),
        key: path.join("."),
    };
    let (last, parents) = path.split_last().ok_or_else(unknown)?;
    if last.is_empty() || parents.iter().any(String::is_empty) {
        return Err(unknown());
    }
    let mut table = &mut *tree;
    for part in parents {
        table = match table.get_mut(part) {
            Some(Value::Table(t)) => t,
            _ => return Err(unknown()),
        };
    }
    let dotted = path.join(".");
    let value = match table.get(last) {
        Some(current) => typed_like(current, raw).map_err(|reason| ConfigError::InvalidEnv {
            var: var.to_owned(),
            key: dotted.clone(),
            reason,
        })?,
        // Absent from the defaults: an optional key, or `<secret>_file`.
        None if layers.optional_keys.contains(&dotted.as_str()) => Value::String(raw.to_owned()),
        None => match last.strip_suffix("_file") {
            Some(base)
                if table.contains_key(base)
                    && layers
                        .secret_keys
                        .contains(&format!("{}.{base}", parents.join(".")).as_str()) =>
            {
                Value::String(raw.to_owned())
            }
            _ => return Err(unknown()),
        },
    };
    table.insert(last.clone(), value);
    Ok(())
}

fn typed_like(current: &Value, raw: &str) -> Result<Value, String> {
    Ok(match current {
        Value::String(_) => Value::String(raw.to_owned()),
        Value::Integer(_) => Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("expected an integer, got {raw:?}"))?,
        ),
        Value::Boolean(_) => Value::Boolean(match raw.trim() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(format!("expected true or false, got {raw:?}")),
        }),
        Value::Float(_) => Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| format!("expected a number, got {raw:?}"))?,
        ),
        // Lists are written as TOML arrays (`["10.0.0.0/8"]`) or comma-separated.
        Value::Array(_) => {
            let trimmed = raw.trim();
            if trimmed.starts_with('[') {
                let doc: Table = format!("v = {trimmed}")
                    .parse()
                    .map_err(|e| format!("not a TOML array: {e}"))?;
                doc.get("v").cloned().unwrap_or(Value::Array(Vec::new()))
            } else {
                Value::Array(
                    trimmed
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_owned()))
                        .collect(),
                )
            }
        }
        Value::Table(_) => return Err("names a section, not a key".to_owned()),
        Value::Datetime(_) => Value::String(raw.to_owned()),
    })
}

/// Replaces `<secret>_file` keys by the contents of the file they name.
fn resolve_secret_files(tree: &mut Table, secret_keys: &[&str]) -> Result<(), ConfigError> {
    'keys: for key in secret_keys {
        // The whole dotted path: `mail.smtp.password` lives in `[mail.smtp]`.
        let (name, sections) = key
            .rsplit_once('.')
            .map(|(sections, name)| (name, sections.split('.')))
            .expect("secret keys are section.key");
        let mut table = &mut *tree;
        for section in sections {
            table = match table.get_mut(section) {
                Some(Value::Table(t)) => t,
                _ => continue 'keys,
            };
        }
        let file_key = format!("{name}_file");
        let Some(value) = table.remove(&file_key) else {
            continue;
        };
        let dotted = format!("{key}_file");
        let Value::String(path) = value else {
            return Err(ConfigError::Invalid {
                key: dotted,
                reason: "expected a file path".to_owned(),
            });
        };
        let secret = std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
            key: dotted.clone(),
            reason: format!("cannot read {path}: {e}"),
        })?;
        // Secret files conventionally end with a newline that is not part of the secret.
        let secret = secret.trim_end_matches(['\n', '\r']).to_owned();
        table.insert(name.to_owned(), Value::String(secret));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("environment variable {var}: no configuration key `{key}`")]
    UnknownEnv { var: String, key: String },
    #[error("environment variable {var} (configuration key `{key}`): {reason}")]
    InvalidEnv {
        var: String,
        key: String,
        reason: String,
    },
}

/// A secret string: printed as `[redacted]` by `Debug`, so a config dump or an error
/// never leaks it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A secret's bytes are wiped when it is dropped, so the copy a configuration keeps
/// for the life of the process does not linger in freed memory after it. (The process
/// environment and a caller's own copies are beyond its reach.)
impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("[redacted]")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct App {
        issuer: String,
        data_dir: String,
        server: Server,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Server {
        bind: String,
        workers: u32,
        password: Secret,
    }

    impl Default for App {
        fn default() -> Self {
            Self {
                issuer: "http://localhost:8080".to_owned(),
                data_dir: "./data".to_owned(),
                server: Server::default(),
            }
        }
    }

    impl Default for Server {
        fn default() -> Self {
            Self {
                bind: "127.0.0.1:8080".to_owned(),
                workers: 4,
                password: Secret::default(),
            }
        }
    }

    fn layers(prefix: &str) -> Layers<'_> {
        Layers {
            env_prefix: prefix,
            env_ignore: &[],
            secret_keys: &["server.password"],
            optional_keys: &[],
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// What Kubernetes injects into every pod for a Service named `<name>` with a port
    /// named `http` (service links are on by default).
    fn service_links(name: &str) -> Vec<(String, String)> {
        [
            ("SERVICE_HOST", "10.96.0.12"),
            ("SERVICE_PORT", "8080"),
            ("SERVICE_PORT_HTTP", "8080"),
            ("PORT", "tcp://10.96.0.12:8080"),
            ("PORT_8080_TCP", "tcp://10.96.0.12:8080"),
            ("PORT_8080_TCP_PROTO", "tcp"),
            ("PORT_8080_TCP_PORT", "8080"),
            ("PORT_8080_TCP_ADDR", "10.96.0.12"),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{name}_{k}"), v.to_owned()))
        .collect()
    }

    #[test]
    fn kubernetes_service_links_are_ignored_with_one_warning_naming_them() {
        for (prefix, service) in [("TOBIRA_", "TOBIRA"), ("MARKETPLACE_", "MARKETPLACE")] {
            let mut vars = service_links(service);
            vars.push((format!("{prefix}SERVER__WORKERS"), "8".to_owned()));
            vars.push((
                format!("{prefix}ISSUER"),
                "https://id.example.jp".to_owned(),
            ));
            let loaded: Loaded<App> = layers(prefix).load_reporting(None, &vars).unwrap();
            // The real keys still apply.
            assert_eq!(loaded.config.server.workers, 8, "{prefix}");
            assert_eq!(loaded.config.issuer, "https://id.example.jp", "{prefix}");
            let mut expected: Vec<String> =
                service_links(service).into_iter().map(|(k, _)| k).collect();
            expected.sort();
            assert_eq!(loaded.ignored_env, expected, "{prefix}");
            let warning = loaded.warning().expect("one warning");
            for name in &expected {
                assert!(warning.contains(name.as_str()), "{warning}");
            }
            // Names only: a value could be a secret.
            assert!(!warning.contains("10.96.0.12"), "{warning}");
            // `load` succeeds too (it logs the warning itself).
            let config: App = layers(prefix).load(None, &vars).unwrap();
            assert_eq!(config, loaded.config);
        }
    }

    #[test]
    fn nothing_ignored_means_no_warning() {
        let loaded: Loaded<App> = layers("TOBIRA_")
            .load_reporting(
                None,
                &env(&[("TOBIRA_DATA_DIR", "/srv"), ("HOME", "/root")]),
            )
            .unwrap();
        assert_eq!(loaded.config.data_dir, "/srv");
        assert!(loaded.ignored_env.is_empty());
        assert_eq!(loaded.warning(), None);
    }

    #[test]
    fn section_form_variables_stay_strict() {
        for prefix in ["TOBIRA_", "MARKETPLACE_"] {
            for (var, key) in [
                ("SERVER__PORT", "server.port"),
                ("SERVR__BIND", "servr.bind"),
                ("SERVER__BIND__X", "server.bind.x"),
                ("SERVER__", "server."),
                ("__BIND", ".bind"),
                ("ISSUER__X", "issuer.x"),
                // Kubernetes never puts `__` in a variable it makes.
                ("PORT__8080", "port.8080"),
            ] {
                let var = format!("{prefix}{var}");
                let err = layers(prefix)
                    .load_reporting::<App>(None, &env(&[(&var, "1")]))
                    .expect_err(&var)
                    .to_string();
                assert!(err.contains(&var) && err.contains(key), "{var}: {err}");
            }
            // Without `__` but naming a top-level key: it is ours, and a section is
            // not a value.
            let var = format!("{prefix}SERVER");
            let err = layers(prefix)
                .load_reporting::<App>(None, &env(&[(&var, "1")]))
                .expect_err(&var)
                .to_string();
            assert!(err.contains(&var) && err.contains("section"), "{err}");
            // A known key with a bad value is still refused by name.
            let var = format!("{prefix}SERVER__WORKERS");
            let err = layers(prefix)
                .load_reporting::<App>(None, &env(&[(&var, "many")]))
                .expect_err(&var)
                .to_string();
            assert!(
                err.contains(&var) && err.contains("server.workers"),
                "{err}"
            );
        }
    }

    #[test]
    fn other_prefixes_are_not_read() {
        let loaded: Loaded<App> = layers("MARKETPLACE_")
            .load_reporting(None, &service_links("TOBIRA"))
            .unwrap();
        assert!(loaded.ignored_env.is_empty(), "{:?}", loaded.ignored_env);
        assert_eq!(loaded.config, App::default());
    }

    #[test]
    fn secrets_come_from_files_and_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\n").unwrap();
        let config: App = layers("TOBIRA_")
            .load(
                None,
                &env(&[("TOBIRA_SERVER__PASSWORD_FILE", path.to_str().unwrap())]),
            )
            .unwrap();
        assert_eq!(config.server.password.expose(), "hunter2");
        assert!(!format!("{config:?}").contains("hunter2"));
        // `_file` exists only for secrets.
        let err = layers("TOBIRA_")
            .load_reporting::<App>(None, &env(&[("TOBIRA_SERVER__BIND_FILE", "/x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("TOBIRA_SERVER__BIND_FILE"), "{err}");
    }
}
