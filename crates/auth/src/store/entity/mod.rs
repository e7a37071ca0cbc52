//! sea-orm entities: the tables as rows. Private to `store`.

pub mod users;
