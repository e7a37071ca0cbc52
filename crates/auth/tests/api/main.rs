//! The OP's integration tests: one binary, one module per capability.
//! Storage suites run on SQLite + memory always, and on PostgreSQL + Redis when
//! `TEST_DATABASE_URL` / `TEST_REDIS_URL` are set (`TEST_REQUIRE_SERVICES=1` turns an
//! unreachable service into a failure instead of a skip).

mod apps;
mod backchannel;
mod cli;
mod console;
mod deletion;
mod email;
mod ephemeral;
mod federation;
mod federation_web;
mod flow;
mod forms;
mod grants;
mod health;
mod help;
mod helpers;
mod history;
mod hostile;
mod key_rotation;
mod keys;
mod keys_cli;
mod linked_console;
mod links_store;
mod logs;
mod mail;
mod master_rotation;
mod migrations;
mod newdevice;
mod oidc;
mod outage;
mod passkey;
mod passkeys_console;
mod passkeys_signin;
mod password;
mod protocol;
mod recovery;
mod redis_server;
mod replicas;
mod rp;
mod second_step;
mod sessions;
mod signup;
mod smtp_sink;
mod support;
mod throttle;
mod tokens;
mod two_step;
mod two_step_console;
mod two_step_oidc;
mod upstreams;
mod users;
