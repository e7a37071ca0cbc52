//! The master key: 32 random bytes that seal secrets at rest (JWE `dir` + `A256GCM`,
//! the key's id as `kid`). From `keys.master_key` (or its `_FILE`), else read from
//! `keys.master_key_path`, generated there on first start with mode 0600. Earlier keys
//! in `keys.previous_master_keys` still open what they sealed (see `keys::reseal`).
//!
//! Every key, its base64url text and every decrypted value are held in `Zeroizing`
//! buffers, wiped when dropped, so freed memory (or a core dump) does not keep them.

use std::io::Write;
use std::path::Path;

use zeroize::{Zeroize, Zeroizing};

use super::{KeyError, jose};
use crate::config::Config;
use crate::crypto::{b64url, b64url_decode, sha256};

/// The current master key, which seals everything new, and the previous ones
/// (`keys.previous_master_keys`), which only open what they sealed until `tobira keys
/// rotate-master` has re-sealed it: replicas restarted one by one with a new key keep
/// reading what the others wrote.
pub struct MasterKey {
    current: OneKey,
    previous: Vec<OneKey>,
}

struct OneKey {
    /// On the heap, so moving a `MasterKey` leaves no copy of the key behind.
    key: Zeroizing<Vec<u8>>,
    /// A short public fingerprint, stored beside each sealed value (and as the JWE's
    /// `kid`) so that a value sealed under a key we lack says which, instead of failing
    /// to decrypt.
    id: String,
}

impl OneKey {
    fn new(key: Zeroizing<Vec<u8>>) -> Self {
        debug_assert_eq!(key.len(), KEY_LEN);
        let id = b64url(&sha256(&key)[..9]);
        Self { key, id }
    }
}

/// Bytes in a master key (AES-256).
const KEY_LEN: usize = 32;

/// The setting that lists earlier master keys, named in errors.
const PREVIOUS_SETTING: &str = "keys.previous_master_keys";

impl MasterKey {
    pub fn from_bytes(mut key: [u8; KEY_LEN]) -> Self {
        let kept = Self::from_vec(Zeroizing::new(key.to_vec()));
        key.zeroize();
        kept
    }

    fn from_vec(key: Zeroizing<Vec<u8>>) -> Self {
        Self {
            current: OneKey::new(key),
            previous: Vec::new(),
        }
    }

    /// This key, also opening what `earlier` (its current and previous keys) sealed.
    pub fn with_previous(self, earlier: MasterKey) -> Self {
        self.with_previous_keys(std::iter::once(earlier.current).chain(earlier.previous))
    }

    pub fn load_or_create(config: &Config) -> Result<Self, KeyError> {
        let current = Self::load_current(config)?;
        let previous = previous_keys(config.keys.previous_master_keys.expose())?;
        Ok(current.with_previous_keys(previous))
    }

    fn with_previous_keys(mut self, keys: impl IntoIterator<Item = OneKey>) -> Self {
        for key in keys {
            // Listing the current key too is harmless (an operator may keep one list on
            // every replica while they restart them), and so is listing one twice.
            if !self.knows(&key.id) {
                self.previous.push(key);
            }
        }
        self
    }

    fn load_current(config: &Config) -> Result<Self, KeyError> {
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

    /// The id of the current key: what new values are sealed under.
    pub fn id(&self) -> &str {
        &self.current.id
    }

    /// The ids of the previous keys, in the order configured.
    pub fn previous_ids(&self) -> Vec<&str> {
        self.previous.iter().map(|k| k.id.as_str()).collect()
    }

    /// Whether text sealed under the master key with this id opens here (the current
    /// key, or one of `keys.previous_master_keys`).
    pub fn knows(&self, id: &str) -> bool {
        self.key(id).is_some()
    }

    /// `Ok` when what master key `id` sealed opens here; else the error that names
    /// `what`, the key and the setting to add it to (for stores that keep the id beside
    /// the value).
    pub fn require(&self, what: &str, id: &str) -> Result<(), KeyError> {
        match self.key(id) {
            Some(_) => Ok(()),
            None => Err(self.unknown(what, id)),
        }
    }

    fn key(&self, id: &str) -> Option<&OneKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }

    fn unknown(&self, what: &str, id: &str) -> KeyError {
        KeyError::Master(format!(
            "{what} is sealed under master key {id}, which is not configured here \
             (keys.master_key is {current}): add the key whose id is {id} to \
             {PREVIOUS_SETTING}",
            current = self.current.id,
        ))
    }

    /// Always under the current key.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<String, KeyError> {
        Ok(jose::seal(&self.current.key, &self.current.id, plaintext)?)
    }

    /// The plaintext, wiped from memory when the caller drops it. The key is the one
    /// the JWE's `kid` names, current or previous.
    pub fn decrypt(&self, jwe: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let id = Self::sealed_by(jwe)?;
        let key = self.key(&id).ok_or_else(|| self.unknown("a value", &id))?;
        // Only what `encrypt` makes (`dir`, A256GCM, uncompressed) opens.
        Ok(jose::open(&key.key, jwe)?)
    }

    /// The id of the master key a compact JWE was sealed under (its protected header's
    /// `kid`), read without opening it.
    pub fn sealed_by(jwe: &str) -> Result<String, KeyError> {
        let not_sealed = |why: &str| KeyError::Master(format!("not a sealed value: {why}"));
        let header = jwe
            .split('.')
            .next()
            .and_then(b64url_decode)
            .ok_or_else(|| not_sealed("no base64url JWE header"))?;
        let header: serde_json::Value = serde_json::from_slice(&header)
            .map_err(|_| not_sealed("the JWE header is not JSON"))?;
        header
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| not_sealed("the JWE header names no master key (kid)"))
    }
}

/// `keys.previous_master_keys`: base64url keys separated by commas or white space. A
/// bad one is named by its position, never by its text (it is a secret, and a typo in
/// it is still most of a key).
fn previous_keys(list: &str) -> Result<Vec<OneKey>, KeyError> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .enumerate()
        .map(|(i, part)| {
            parse(part)
                .map(|k| k.current)
                .map_err(|e| KeyError::Master(format!("{PREVIOUS_SETTING}: key #{}: {e}", i + 1)))
        })
        .collect()
}

fn parse(text: &str) -> Result<MasterKey, String> {
    let bytes = Zeroizing::new(b64url_decode(text).ok_or("not base64url")?);
    if bytes.len() != KEY_LEN {
        return Err("must be 32 bytes (43 base64url characters)".to_owned());
    }
    Ok(MasterKey::from_vec(bytes))
}

/// Makes a new key at `path`: if another process on this machine makes one at the same
/// moment, whichever links its file first wins and the others read that key.
fn create(path: &Path) -> Result<MasterKey, KeyError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| KeyError::Master(format!("cannot create {}: {e}", dir.display())))?;
    let mut key = Zeroizing::new(vec![0u8; KEY_LEN]);
    rand::Rng::fill_bytes(&mut rand::rng(), &mut key[..]);
    // Written whole under a name of its own, then linked to `path` in one step: a process
    // starting at the same moment (a replica, a CLI command) either links its own key
    // first or finds this one complete, never an empty or half-written file.
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let suffix = crate::crypto::random_token(&mut rand::rng(), 9);
    let staged = dir.join(format!(".{name}.{suffix}"));
    let written = write_new(&staged, &key).and_then(|()| std::fs::hard_link(&staged, path));
    let _ = std::fs::remove_file(&staged);
    match written {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a master key");
            Ok(MasterKey::from_vec(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .map(Zeroizing::new)
                .map_err(|e| KeyError::Master(format!("cannot read {}: {e}", path.display())))?;
            parse(text.trim()).map_err(|e| KeyError::Master(format!("{}: {e}", path.display())))
        }
        Err(e) => Err(KeyError::Master(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// Writes `key` to a new file at `path`, readable by its owner alone, and syncs it.
fn write_new(path: &Path, key: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let text = Zeroizing::new(format!("{}\n", b64url(key)));
    file.write_all(text.as_bytes())?;
    file.sync_all()
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

    #[test]
    fn a_missing_data_directory_is_made_for_the_first_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("not/yet"),
            ..Config::default()
        };
        let key = MasterKey::load_or_create(&config).unwrap();
        assert!(config.master_key_path().is_file());
        assert_eq!(MasterKey::load_or_create(&config).unwrap().id(), key.id());
    }

    /// Two replicas starting at once on one machine: the one that finds the file made
    /// between its look and its write reads that key instead of failing or overwriting.
    #[test]
    fn a_key_written_meanwhile_by_another_process_is_read_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, format!("{}\n", key_text(4))).unwrap();
        let key = create(&path).unwrap();
        assert_eq!(key.id(), MasterKey::from_bytes([4; 32]).id());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", key_text(4))
        );
    }

    /// Many processes starting at the same moment on one data directory: every one of
    /// them gets the same key, none finds the file empty or half written, and nothing
    /// but the key file is left.
    #[test]
    fn processes_starting_at_once_all_get_the_one_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("master.key");
            let start = std::sync::Barrier::new(8);
            let ids: Vec<String> = std::thread::scope(|s| {
                let racers: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            create(&path).map(|k| k.id().to_owned())
                        })
                    })
                    .collect();
                racers
                    .into_iter()
                    .map(|r| r.join().unwrap().unwrap())
                    .collect()
            });
            assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
            let left: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(left, ["master.key"]);
        }
    }

    /// A key file that cannot be read or made is an error naming the path and the cause,
    /// and nothing is written in its place.
    #[test]
    fn an_unreadable_or_uncreatable_key_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let path = config.master_key_path();
        std::fs::write(&path, [0xff_u8; 32]).unwrap();
        let err = MasterKey::load_or_create(&config)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("cannot read {}", path.display())),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), [0xff_u8; 32]);

        // A path that reads as missing but cannot be made (a trailing slash: a
        // directory's name for a file).
        let mut config = config;
        config.keys.master_key_path = format!("{}/other.key/", dir.path().display());
        let err = MasterKey::load_or_create(&config)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("cannot create") && err.contains("other.key"),
            "{err}"
        );
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
    fn only_the_form_encrypt_makes_is_opened() {
        use josekit::jwe::{Dir, JweHeader};
        let master = MasterKey::from_bytes([5; 32]);
        let mut header = JweHeader::new();
        header.set_content_encryption("A128CBC-HS256");
        header.set_key_id(master.id());
        let encrypter = Dir.encrypter_from_bytes([5u8; 32]).unwrap();
        let other = josekit::jwe::serialize_compact(b"secret", &header, &encrypter).unwrap();
        // A sound JWE under the right key, in another form: refused.
        assert!(
            josekit::jwe::deserialize_compact(
                &other,
                &Dir.decrypter_from_bytes([5u8; 32]).unwrap()
            )
            .is_ok()
        );
        let err = master.decrypt(&other).err().unwrap().to_string();
        assert!(err.contains("A256GCM"), "{err}");
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

    fn key_text(byte: u8) -> String {
        b64url(&[byte; 32])
    }

    fn config_with(current: &str, previous: &str) -> Config {
        let mut config = Config::default();
        config.keys.master_key = crate::config::Secret::new(current);
        config.keys.previous_master_keys = crate::config::Secret::new(previous);
        config
    }

    #[test]
    fn previous_keys_open_what_they_sealed_and_nothing_new_is_sealed_with_them() {
        let old = MasterKey::from_bytes([1; 32]);
        let older = MasterKey::from_bytes([2; 32]);
        let (by_old, by_older) = (
            old.encrypt(b"old").unwrap(),
            older.encrypt(b"older").unwrap(),
        );
        // Commas, spaces and new lines all separate; the current key listed again and a
        // key listed twice are ignored.
        let config = config_with(
            &key_text(3),
            &format!(
                " {},{}\n{}  {}\n",
                key_text(1),
                key_text(3),
                key_text(2),
                key_text(1)
            ),
        );
        let master = MasterKey::load_or_create(&config).unwrap();
        assert_eq!(master.id(), MasterKey::from_bytes([3; 32]).id());
        assert_eq!(master.previous_ids(), vec![old.id(), older.id()]);
        assert!(master.knows(old.id()) && master.knows(older.id()) && master.knows(master.id()));
        assert!(!master.knows(MasterKey::from_bytes([4; 32]).id()));
        assert_eq!(master.decrypt(&by_old).unwrap().as_slice(), b"old");
        assert_eq!(master.decrypt(&by_older).unwrap().as_slice(), b"older");

        let sealed = master.encrypt(b"new").unwrap();
        assert_eq!(MasterKey::sealed_by(&sealed).unwrap(), master.id());
        assert!(
            old.decrypt(&sealed).is_err(),
            "sealed under the current key only"
        );
        assert_eq!(
            MasterKey::from_bytes([3; 32])
                .decrypt(&sealed)
                .unwrap()
                .as_slice(),
            b"new"
        );
    }

    #[test]
    fn a_value_under_an_unknown_key_names_the_key_and_the_setting() {
        let stranger = MasterKey::from_bytes([9; 32]);
        let sealed = stranger.encrypt(b"x").unwrap();
        let master = MasterKey::from_bytes([3; 32]).with_previous(MasterKey::from_bytes([1; 32]));
        let err = master.decrypt(&sealed).err().unwrap().to_string();
        assert!(
            err.contains(stranger.id()) && err.contains("keys.previous_master_keys"),
            "{err}"
        );
        let err = master
            .require("the thing", stranger.id())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("the thing") && err.contains(stranger.id()),
            "{err}"
        );
        assert!(
            master
                .require("x", MasterKey::from_bytes([1; 32]).id())
                .is_ok()
        );
        assert!(master.require("x", master.id()).is_ok());
    }

    #[test]
    fn a_kid_that_names_a_known_key_does_not_open_text_another_key_sealed() {
        // The kid only picks the key: GCM's tag still decides.
        let master = MasterKey::from_bytes([3; 32]).with_previous(MasterKey::from_bytes([1; 32]));
        let sealed = MasterKey::from_bytes([9; 32]).encrypt(b"x").unwrap();
        let mut parts: Vec<String> = sealed.split('.').map(str::to_owned).collect();
        let mut header: serde_json::Value = serde_json::from_slice(&part(&sealed, 0)).unwrap();
        header["kid"] = serde_json::Value::from(master.previous_ids()[0]);
        parts[0] = b64url(header.to_string().as_bytes());
        assert!(master.decrypt(&parts.join(".")).is_err());
        for garbage in ["", "abc", "e30.x.y.z.w", "not a jwe at all"] {
            assert!(MasterKey::sealed_by(garbage).is_err(), "{garbage:?}");
            assert!(master.decrypt(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn a_malformed_previous_key_is_named_by_its_position_never_by_its_text() {
        let short = b64url(&[7u8; 16]);
        for (list, position) in [
            (format!("{},{short}", key_text(1)), "#2"),
            (format!("not*base64 {}", key_text(1)), "#1"),
        ] {
            let err = MasterKey::load_or_create(&config_with(&key_text(3), &list))
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains("keys.previous_master_keys") && err.contains(position),
                "{err}"
            );
            assert!(
                !err.contains(&short) && !err.contains("not*base64"),
                "{err}"
            );
            assert!(!err.contains(&key_text(1)), "{err}");
        }
        // Empty (and blank) lists are no keys.
        for blank in ["", " ", ",\n,"] {
            let master = MasterKey::load_or_create(&config_with(&key_text(3), blank)).unwrap();
            assert!(master.previous_ids().is_empty(), "{blank:?}");
        }
    }
}
