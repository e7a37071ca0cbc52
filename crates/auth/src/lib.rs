//! Tobira, an OpenID Connect identity provider: the library behind the `tobira` binary.
//! `startup::Application` builds and serves the OP from a `Config`.

pub mod account;
pub mod admin;
pub mod authn;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod federation;
pub mod flow;
pub mod jobs;
pub mod keys;
pub mod mail;
pub mod oidc;
pub mod ops;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod web;

pub use clock::Clock;
pub use config::Config;
pub use startup::Application;
