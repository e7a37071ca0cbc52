//! What the pages share: the message catalogue (Japanese first, English second).

pub mod i18n;
