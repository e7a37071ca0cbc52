//! The marketplace's clock: the OP's, from `tobira_config::clock`. Session lifetimes,
//! sign-in deadlines and token expiry are checked against it, so tests move time.

pub use tobira_config::Clock;
