//! Members: created at their first sign-in, keyed by (issuer, `sub`), known to other
//! members only by their own public id.

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use time::OffsetDateTime;

use super::entity::members;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Public, ours: never the OP's `sub`.
    pub id: String,
    pub issuer: String,
    pub sub: String,
    pub display_name: String,
    pub email: String,
    pub show_last_login: bool,
    pub last_login_at: Option<OffsetDateTime>,
    /// The last sign-in's `amr` values.
    pub last_login_method: Vec<String>,
}

/// A completed sign-in, as the OP told it.
pub struct SignIn<'a> {
    pub issuer: &'a str,
    pub sub: &'a str,
    pub display_name: &'a str,
    pub email: &'a str,
    pub amr: &'a [String],
}

pub struct MemberRepo<'c> {
    conn: &'c DatabaseConnection,
}

fn to_member(m: members::Model) -> Member {
    Member {
        id: m.id,
        issuer: m.issuer,
        sub: m.sub,
        display_name: m.display_name,
        email: m.email,
        show_last_login: m.show_last_login,
        last_login_at: m.last_login_at,
        last_login_method: m
            .last_login_method
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

impl<'c> MemberRepo<'c> {
    pub(super) fn new(conn: &'c DatabaseConnection) -> Self {
        Self { conn }
    }

    pub async fn lookup(&self, id: &str) -> Result<Option<Member>, DbErr> {
        Ok(members::Entity::find_by_id(id.to_owned())
            .one(self.conn)
            .await?
            .map(to_member))
    }

    /// The member for (issuer, sub), created on first sign-in with `new_id`; records
    /// this sign-in.
    pub async fn signed_in(
        &self,
        now: OffsetDateTime,
        new_id: String,
        who: SignIn<'_>,
    ) -> Result<Member, DbErr> {
        let SignIn {
            issuer,
            sub,
            display_name,
            email,
            amr,
        } = who;
        let method = amr.join(" ");
        let existing = members::Entity::find()
            .filter(members::Column::Issuer.eq(issuer))
            .filter(members::Column::Sub.eq(sub))
            .one(self.conn)
            .await?;
        let id = match existing {
            Some(m) => {
                members::Entity::update_many()
                    .col_expr(members::Column::DisplayName, Expr::value(display_name))
                    .col_expr(members::Column::Email, Expr::value(email))
                    .col_expr(members::Column::LastLoginAt, Expr::value(Some(now)))
                    .col_expr(members::Column::LastLoginMethod, Expr::value(method))
                    .filter(members::Column::Id.eq(m.id.clone()))
                    .exec(self.conn)
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
                    last_login_method: Set(method),
                    created_at: Set(now),
                })
                .exec_without_returning(self.conn)
                .await?;
                new_id
            }
        };
        self.lookup(&id)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(id))
    }

    pub async fn set_show_last_login(&self, member_id: &str, show: bool) -> Result<(), DbErr> {
        members::Entity::update_many()
            .col_expr(members::Column::ShowLastLogin, Expr::value(show))
            .filter(members::Column::Id.eq(member_id))
            .exec(self.conn)
            .await?;
        Ok(())
    }
}
