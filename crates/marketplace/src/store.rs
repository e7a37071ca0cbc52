//! The marketplace's own data: members (keyed by issuer + `sub`, with their own public
//! member id), server-side sessions holding the tokens, and pending sign-ins.

use sea_orm::sea_query::{Expr, Index};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DbErr, EntityTrait, QueryFilter, Schema,
};
use time::OffsetDateTime;

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

/// A completed sign-in, as the OP told it.
pub struct SignIn<'a> {
    pub issuer: &'a str,
    pub sub: &'a str,
    pub display_name: &'a str,
    pub email: &'a str,
    /// The ID token's `amr`, space-separated.
    pub method: &'a str,
}

#[derive(Clone, Debug)]
pub struct Store {
    pub conn: DatabaseConnection,
}

impl Store {
    /// Connects and creates the tables if they do not exist yet.
    pub async fn open(url: &str) -> Result<Self, DbErr> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .and_then(|r| r.split('?').next())
            && let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| DbErr::Custom(format!("{}: {e}", dir.display())))?;
        }
        let mut options = ConnectOptions::new(url.to_owned());
        options.max_connections(8).sqlx_logging(false);
        let conn = Database::connect(options).await?;
        let backend = conn.get_database_backend();
        let schema = Schema::new(backend);
        for mut table in [
            schema.create_table_from_entity(members::Entity),
            schema.create_table_from_entity(sessions::Entity),
            schema.create_table_from_entity(login_states::Entity),
        ] {
            conn.execute(&table.if_not_exists().to_owned()).await?;
        }
        conn.execute(
            &Index::create()
                .if_not_exists()
                .unique()
                .name("mp_members_issuer_sub")
                .table(members::Entity)
                .col(members::Column::Issuer)
                .col(members::Column::Sub)
                .to_owned(),
        )
        .await?;
        Ok(Self { conn })
    }

    pub async fn member(&self, id: &str) -> Result<Option<members::Model>, DbErr> {
        members::Entity::find_by_id(id.to_owned())
            .one(&self.conn)
            .await
    }

    /// The member for (issuer, sub), created on first sign-in; records this sign-in.
    pub async fn signed_in(
        &self,
        who: SignIn<'_>,
        now: OffsetDateTime,
        new_id: String,
    ) -> Result<members::Model, DbErr> {
        let SignIn {
            issuer,
            sub,
            display_name,
            email,
            method,
        } = who;
        let existing = members::Entity::find()
            .filter(members::Column::Issuer.eq(issuer))
            .filter(members::Column::Sub.eq(sub))
            .one(&self.conn)
            .await?;
        let id = match existing {
            Some(m) => {
                members::Entity::update_many()
                    .col_expr(members::Column::DisplayName, Expr::value(display_name))
                    .col_expr(members::Column::Email, Expr::value(email))
                    .col_expr(members::Column::LastLoginAt, Expr::value(Some(now)))
                    .col_expr(members::Column::LastLoginMethod, Expr::value(method))
                    .filter(members::Column::Id.eq(m.id.clone()))
                    .exec(&self.conn)
                    .await?;
                m.id
            }
            None => {
                members::Entity::insert(members::ActiveModel {
                    id: Set(new_id.clone()),
                    issuer: Set(issuer.to_owned()),
                    sub: Set(sub.to_owned()),
                    display_name: Set(display_name.to_owned()),
                    email: Set(email.to_owned()),
                    show_last_login: Set(true),
                    last_login_at: Set(Some(now)),
                    last_login_method: Set(method.to_owned()),
                    created_at: Set(now),
                })
                .exec_without_returning(&self.conn)
                .await?;
                new_id
            }
        };
        self.member(&id)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(id))
    }

    pub async fn set_show_last_login(&self, member_id: &str, show: bool) -> Result<(), DbErr> {
        members::Entity::update_many()
            .col_expr(members::Column::ShowLastLogin, Expr::value(show))
            .filter(members::Column::Id.eq(member_id))
            .exec(&self.conn)
            .await?;
        Ok(())
    }
}
