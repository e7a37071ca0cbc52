//! Layered configuration for Tobira's apps: built-in defaults, then a TOML file, then
//! `<PREFIX><SECTION>__<KEY>` environment variables, with a `<key>_file` variant for
//! every secret (read from a file, so it never sits in the environment or the config).
//!
//! All layers are merged as one TOML tree and deserialised once with the app's
//! `deny_unknown_fields` structs; errors name the offending key (and the variable).

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
}

impl Layers<'_> {
    /// Merges defaults, `file` and `env` into a `T`.
    pub fn load<T: Serialize + DeserializeOwned + Default>(
        &self,
        file: Option<Table>,
        env: &[(String, String)],
    ) -> Result<T, ConfigError> {
        let mut tree = to_table(&T::default());
        if let Some(file) = file {
            merge(&mut tree, file);
        }
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(self.env_prefix) else {
                continue;
            };
            if self.env_ignore.contains(&name.as_str()) {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            set_from_env(&mut tree, name, &path, raw, self.secret_keys)?;
        }
        resolve_secret_files(&mut tree, self.secret_keys)?;
        serde_path_to_error::deserialize(Value::Table(tree)).map_err(|e| ConfigError::Invalid {
            key: e.path().to_string(),
            reason: e.inner().message().to_owned(),
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
    secret_keys: &[&str],
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
        // `<secret>_file` is the only key that does not exist in the defaults.
        None => match last.strip_suffix("_file") {
            Some(base)
                if table.contains_key(base)
                    && secret_keys.contains(&format!("{}.{base}", parents.join(".")).as_str()) =>
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
    for key in secret_keys {
        let (section, name) = key.split_once('.').expect("secret keys are section.key");
        let Some(Value::Table(table)) = tree.get_mut(section) else {
            continue;
        };
        let file_key = format!("{name}_file");
        let Some(value) = table.remove(&file_key) else {
            continue;
        };
        let dotted = format!("{section}.{file_key}");
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

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("[redacted]")
        }
    }
}
