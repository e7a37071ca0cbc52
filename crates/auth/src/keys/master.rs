//! The master key: 32 random bytes that encrypt private signing keys at rest
//! (JWE `dir` + `A256GCM`). From `keys.master_key` (or its `_FILE`), else read from
//! `keys.master_key_path`, generated there on first start with mode 0600.
//!
//! The key, its base64url text and every decrypted private key are held in `Zeroizing`
//! buffers, wiped when dropped, so freed memory (or a core dump) does not keep them.

use std::io::Write;
use std::path::Path;

use josekit::jwe::{Dir, JweHeader};
use zeroize::{Zeroize, Zeroizing};

use super::KeyError;
use crate::config::Config;
use crate::crypto::{b64url, b64url_decode, sha256};

pub struct MasterKey {
    /// On the heap, so moving a `MasterKey` leaves no copy of the key behind.
    key: Zeroizing<Vec<u8>>,
    /// A short public fingerprint, stored beside each encrypted key so that starting with
    /// the wrong master key says so instead of failing to decrypt.
    id: String,
}

/// Bytes in a master key (AES-256).
const KEY_LEN: usize = 32;

impl MasterKey {
    pub fn from_bytes(mut key: [u8; KEY_LEN]) -> Self {
        let kept = Self::from_vec(Zeroizing::new(key.to_vec()));
        key.zeroize();
        kept
    }

    fn from_vec(key: Zeroizing<Vec<u8>>) -> Self {
        debug_assert_eq!(key.len(), KEY_LEN);
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
        match std::fs::read_to_string(&path).map(Zeroizing::new) {
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

    /// Whether text sealed under the master key with this id opens here (the current
    /// key, or one of `keys.previous_master_keys`).
    pub fn knows(&self, id: &str) -> bool {
        id == self.id
    }

    pub fn encrypt(&self, plaintext: &[u8]) -> Result<String, KeyError> {
        let mut header = JweHeader::new();
        header.set_content_encryption("A256GCM");
        header.set_key_id(self.id.clone());
        let encrypter = Dir.encrypter_from_bytes(&self.key[..])?;
        Ok(josekit::jwe::serialize_compact(
            plaintext, &header, &encrypter,
        )?)
    }

    /// The plaintext, wiped from memory when the caller drops it.
    pub fn decrypt(&self, jwe: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let decrypter = Dir.decrypter_from_bytes(&self.key[..])?;
        let (plaintext, _) = josekit::jwe::deserialize_compact(jwe, &decrypter)?;
        Ok(Zeroizing::new(plaintext))
    }
}

fn parse(text: &str) -> Result<MasterKey, String> {
    let bytes = Zeroizing::new(b64url_decode(text).ok_or("not base64url")?);
    if bytes.len() != KEY_LEN {
        return Err("must be 32 bytes (43 base64url characters)".to_owned());
    }
    Ok(MasterKey::from_vec(bytes))
}

/// Writes a new key with `create_new`: if another process on this machine creates it
/// at the same moment, we read theirs instead of overwriting it.
fn create(path: &Path) -> Result<MasterKey, KeyError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| KeyError::Master(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut key = Zeroizing::new(vec![0u8; KEY_LEN]);
    rand::Rng::fill_bytes(&mut rand::rng(), &mut key[..]);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            let text = Zeroizing::new(format!("{}\n", b64url(&key)));
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| KeyError::Master(format!("cannot write {}: {e}", path.display())))?;
            tracing::info!(path = %path.display(), "generated a master key");
            Ok(MasterKey::from_vec(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .map(Zeroizing::new)
                .map_err(|e| KeyError::Master(e.to_string()))?;
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
    use base64::Engine as _;

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
        assert_eq!(again.decrypt(&sealed).unwrap().as_slice(), b"private jwk");
        assert!(MasterKey::from_bytes([1; 32]).decrypt(&sealed).is_err());
    }

    /// Base64url-decodes one part of a compact JWE.
    fn part(sealed: &str, i: usize) -> Vec<u8> {
        b64url_decode(sealed.split('.').nth(i).unwrap()).unwrap()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn sealed_text_is_a_dir_a256gcm_jwe_that_shows_nothing_of_the_plaintext() {
        let master = MasterKey::from_bytes([5; 32]);
        let plaintext = br#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        let sealed = master.encrypt(plaintext).unwrap();

        // Compact serialisation (RFC 7516 §7.1): header.key.iv.ciphertext.tag, and with
        // `dir` the encrypted key is empty (§A.3 uses the shared key directly).
        assert_eq!(sealed.split('.').count(), 5, "{sealed}");
        let header: serde_json::Value = serde_json::from_slice(&part(&sealed, 0)).unwrap();
        assert_eq!(header["alg"], "dir", "{header}");
        assert_eq!(header["enc"], "A256GCM", "{header}");
        assert_eq!(header["kid"], master.id(), "{header}");
        assert!(part(&sealed, 1).is_empty(), "no encrypted key with dir");
        assert_eq!(part(&sealed, 2).len(), 12, "a 96-bit GCM nonce");
        assert_eq!(part(&sealed, 4).len(), 16, "a 128-bit GCM tag");
        // GCM is a stream mode: the ciphertext is exactly as long as the plaintext…
        let ciphertext = part(&sealed, 3);
        assert_eq!(ciphertext.len(), plaintext.len());
        // …and shares nothing with it, in any form a reader of the database could try.
        let secret = b"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
        let secret_bytes = b64url_decode(std::str::from_utf8(secret).unwrap()).unwrap();
        for decoded in (0..5).map(|i| part(&sealed, i)) {
            assert!(!contains(&decoded, secret), "the d member in clear");
            assert!(!contains(&decoded, &secret_bytes), "the raw private key");
            assert!(!contains(&decoded, b"Ed25519"));
        }
        for encoded in [
            b64url(plaintext),
            b64url(secret),
            b64url(&secret_bytes),
            base64::engine::general_purpose::STANDARD.encode(plaintext),
            String::from_utf8(secret.to_vec()).unwrap(),
        ] {
            assert!(!sealed.contains(&encoded[..20]), "{encoded}");
        }
        // A fresh nonce every time: the same key sealed twice looks unrelated.
        let again = master.encrypt(plaintext).unwrap();
        assert_ne!(part(&again, 2), part(&sealed, 2));
        assert_ne!(part(&again, 3), ciphertext);
        // And it does open again, to the same bytes.
        assert_eq!(master.decrypt(&sealed).unwrap().as_slice(), plaintext);
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
