//! The app's clock: see `tobira_config::clock` (the marketplace uses the same one).

pub use tobira_config::Clock;
