//! Pseudonyms for what people type: failed sign-ins are logged with an HMAC of the typed
//! identifier, never the identifier itself (a log is read by more people than the user
//! table, and a mistyped password is sometimes typed into the email field).
//!
//! The HMAC key is made once, stored sealed with the master key, and shared by every
//! replica, so the same address gives the same pseudonym in every log line, on every
//! replica, and across master-key rotations (which re-seal the key, never change it).

use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{KeyError, MasterKey};
use crate::clock::Clock;
use crate::crypto::b64url;
use crate::store::{Db, Lock, SealedSecret};

const SECRET_NAME: &str = "identifier_hmac_key";
const KEY_LEN: usize = 32;

#[derive(Clone)]
pub struct IdentifierHasher {
    key: std::sync::Arc<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for IdentifierHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentifierHasher(..)")
    }
}

impl IdentifierHasher {
    /// Reads the key, or makes it (under a lock: replicas starting together agree).
    pub async fn load_or_init(
        db: &Db,
        master: &MasterKey,
        clock: &Clock,
    ) -> Result<Self, KeyError> {
        if let Some(sealed) = db.server_secrets().lookup(SECRET_NAME).await? {
            return Self::unseal(&sealed, master);
        }
        db.locked(Lock::SigningKeys, async {
            if db.server_secrets().lookup(SECRET_NAME).await?.is_none() {
                let mut key = Zeroizing::new(vec![0u8; KEY_LEN]);
                rand::rng().fill_bytes(&mut key[..]);
                let sealed = SealedSecret {
                    sealed: master.encrypt(&key)?,
                    master_key_id: master.id().to_owned(),
                };
                db.server_secrets()
                    .add(clock.now(), SECRET_NAME, &sealed)
                    .await?;
                tracing::info!("created the key that pseudonymises identifiers in logs");
            }
            Ok::<_, KeyError>(())
        })
        .await??;
        let sealed = db
            .server_secrets()
            .lookup(SECRET_NAME)
            .await?
            .ok_or_else(|| KeyError::Master("the identifier key vanished".to_owned()))?;
        Self::unseal(&sealed, master)
    }

    /// Opens the key under whichever configured master key sealed it: during a
    /// master-key rotation it is under the previous key until `tobira keys
    /// rotate-master` re-seals it, and the pseudonyms must not change meanwhile.
    fn unseal(sealed: &SealedSecret, master: &MasterKey) -> Result<Self, KeyError> {
        master.require("the identifier key (server_secrets)", &sealed.master_key_id)?;
        let key = master.decrypt(&sealed.sealed)?;
        if key.len() != KEY_LEN {
            return Err(KeyError::Master(
                "the identifier key is malformed".to_owned(),
            ));
        }
        Ok(Self {
            key: std::sync::Arc::new(key),
        })
    }

    /// A hasher with a fixed key, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        Self {
            key: std::sync::Arc::new(Zeroizing::new(vec![7; KEY_LEN])),
        }
    }

    /// A short pseudonym of a typed identifier: trimmed and lower-cased first, so
    /// `Hanako@Example.jp ` and `hanako@example.jp` are one pseudonym.
    pub fn pseudonym(&self, typed: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(typed.trim().to_lowercase().as_bytes());
        b64url(&mac.finalize().into_bytes()[..12])
    }

    /// The keyed hash of a normalised address that holds a deleted account's address
    /// back from signing up again: all that is kept of the address after the purge.
    /// Domain-separated from the pseudonyms, full length (a collision would refuse a
    /// stranger's sign-up).
    pub fn email_digest(&self, email: &crate::domain::Email) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(b"reregistration\0");
        mac.update(email.normalized().as_bytes());
        b64url(&mac.finalize().into_bytes())
    }

    /// The stored form of a recovery code (normalised) of account `user`: keyed, so a
    /// copy of the database alone cannot be searched for the ~48-bit codes offline, and
    /// naming the account, so one account's code is nothing to another.
    pub fn recovery_code(&self, user: uuid::Uuid, normalized: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(b"recovery_code\0");
        mac.update(user.as_bytes());
        mac.update(normalized.as_bytes());
        b64url(&mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_debug_output_shows_no_key() {
        assert_eq!(
            format!("{:?}", IdentifierHasher::for_tests()),
            "IdentifierHasher(..)"
        );
    }

    #[test]
    fn the_key_sealed_under_a_previous_master_key_opens_to_the_same_pseudonyms() {
        let old = MasterKey::from_bytes([1; 32]);
        let old_id = old.id().to_owned();
        let sealed = SealedSecret {
            sealed: old.encrypt(&[42; KEY_LEN]).unwrap(),
            master_key_id: old_id.clone(),
        };
        let before = IdentifierHasher::unseal(&sealed, &old).unwrap();
        let rotating = MasterKey::from_bytes([2; 32]).with_previous(old);
        let during = IdentifierHasher::unseal(&sealed, &rotating).unwrap();
        assert_eq!(
            during.pseudonym("hanako@example.jp"),
            before.pseudonym("hanako@example.jp")
        );

        let err = IdentifierHasher::unseal(&sealed, &MasterKey::from_bytes([2; 32]))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&old_id)
                && err.contains("identifier key")
                && err.contains("keys.previous_master_keys"),
            "{err}"
        );
    }
}
