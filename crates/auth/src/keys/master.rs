//! The master key: 32 random bytes that encrypt private signing keys at rest
//! (JWE `dir` + `A256GCM`). From `keys.master_key` (or its `_FILE`), else read from
//! `keys.master_key_path`, generated there on first start with mode 0600.

use std::io::Write;
use std::path::Path;

use josekit::jwe::{Dir, JweHeader};

use super::KeyError;
use crate::config::Config;
use crate::crypto::{b64url, b64url_decode, sha256};

pub struct MasterKey {
    key: [u8; 32],
    /// A short public fingerprint, stored beside each encrypted key so that starting with
    /// the wrong master key says so instead of failing to decrypt.
    id: String,
}

impl MasterKey {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        let id = b64url(&sha256(&key)[..9]);
        Self { key, id }
    }

    pub fn load_or_create(config: &Config) -> Result<Self, KeyError> {
        let configured = config.keys.master_key.expose();
        if !configured.is_empty() {
            return parse(configured.trim())
                .map_err(|e| KeyError::Master(format!("keys.master_key: {e}")));
        }
        let path = config.master_key_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                parse(text.trim()).map_err(|e| KeyError::Master(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path),
            Err(e) => Err(KeyError::Master(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn encrypt(&self, plaintext: &[u8]) -> Result<String, KeyError> {
        let mut header = JweHeader::new();
        header.set_content_encryption("A256GCM");
        header.set_key_id(self.id.clone());
        let encrypter = Dir.encrypter_from_bytes(self.key)?;
        Ok(josekit::jwe::serialize_compact(
            plaintext, &header, &encrypter,
        )?)
    }

    pub fn decrypt(&self, jwe: &str) -> Result<Vec<u8>, KeyError> {
        let decrypter = Dir.decrypter_from_bytes(self.key)?;
        let (plaintext, _) = josekit::jwe::deserialize_compact(jwe, &decrypter)?;
        Ok(plaintext)
    }
}

fn parse(text: &str) -> Result<MasterKey, String> {
    let bytes = b64url_decode(text).ok_or("not base64url")?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "must be 32 bytes (43 base64url characters)")?;
    Ok(MasterKey::from_bytes(key))
}

/// Writes a new key with `create_new`: if another process on this machine creates it
/// at the same moment, we read theirs instead of overwriting it.
fn create(path: &Path) -> Result<MasterKey, KeyError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| KeyError::Master(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut key = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut key);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            writeln!(file, "{}", b64url(&key))
                .and_then(|()| file.sync_all())
                .map_err(|e| KeyError::Master(format!("cannot write {}: {e}", path.display())))?;
            tracing::info!(path = %path.display(), "generated a master key");
            Ok(MasterKey::from_bytes(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text =
                std::fs::read_to_string(path).map_err(|e| KeyError::Master(e.to_string()))?;
            parse(text.trim()).map_err(|e| KeyError::Master(format!("{}: {e}", path.display())))
        }
        Err(e) => Err(KeyError::Master(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_master_key_is_generated_once_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let first = MasterKey::load_or_create(&config).unwrap();
        let again = MasterKey::load_or_create(&config).unwrap();
        assert_eq!(first.id(), again.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(config.master_key_path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = first.encrypt(b"private jwk").unwrap();
        assert!(!sealed.contains("private"));
        assert_eq!(again.decrypt(&sealed).unwrap(), b"private jwk");
        assert!(MasterKey::from_bytes([1; 32]).decrypt(&sealed).is_err());
    }

    #[test]
    fn a_configured_master_key_must_be_32_bytes() {
        let mut config = Config::default();
        config.keys.master_key = crate::config::Secret::new("c2hvcnQ");
        let err = MasterKey::load_or_create(&config)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("keys.master_key") && err.contains("32 bytes"),
            "{err}"
        );
        config.keys.master_key = crate::config::Secret::new(b64url(&[9u8; 32]));
        assert!(MasterKey::load_or_create(&config).is_ok());
    }
}
