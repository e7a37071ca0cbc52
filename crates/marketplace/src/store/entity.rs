//! The sea-orm entities of the marketplace's tables, as the latest migration leaves
//! them. They stay inside `store/`: the rest of the app sees the domain types of
//! `store::{members, sessions, logins, logouts}`.

pub mod members {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mp_members")]
    pub struct Model {
        /// Public, ours: never the OP's `sub`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub issuer: String,
        pub sub: String,
        pub display_name: String,
        pub email: String,
        pub show_last_login: bool,
        pub last_login_at: Option<TimeDateTimeWithTimeZone>,
        pub last_login_method: String,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod sessions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mp_sessions")]
    pub struct Model {
        /// SHA-256 of the cookie value.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id_hash: String,
        pub member_id: String,
        /// Synchronizer token for this session's forms.
        pub csrf: String,
        pub id_token: String,
        pub access_token: String,
        pub refresh_token: Option<String>,
        pub access_expires_at: TimeDateTimeWithTimeZone,
        pub created_at: TimeDateTimeWithTimeZone,
        pub last_seen_at: TimeDateTimeWithTimeZone,
        /// The OP's session id (`sid` of the ID token the session began with).
        pub op_sid: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod login_states {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mp_login_states")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub state: String,
        pub nonce: String,
        pub pkce_verifier: String,
        /// SHA-256 of the cookie that ties the callback to the browser that started it.
        pub browser_hash: String,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod logout_tokens {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mp_logout_tokens")]
    pub struct Model {
        /// SHA-256 of the logout token's `jti`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub jti_hash: String,
        /// Until then a replay could still pass every other check.
        pub expires_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
