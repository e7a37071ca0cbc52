//! sea-orm entities: the tables as rows. Private to `store`.

pub mod audit_events;
pub mod clients;
pub mod consents;
pub mod email_changes;
pub mod email_factors;
pub mod email_undos;
pub mod email_verifications;
pub mod federated_links;
pub mod grants;
pub mod jobs;
pub mod known_devices;
pub mod login_events;
pub mod passkeys;
pub mod password_resets;
pub mod recovery_codes;
pub mod refresh_tokens;
pub mod remembered_devices;
pub mod reregistration_blocks;
pub mod server_secrets;
pub mod sessions;
pub mod signing_keys;
pub mod totp_factors;
pub mod users;
