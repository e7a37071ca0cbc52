use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub sub: String,
    pub email: String,
    pub email_display: String,
    pub email_verified: bool,
    pub password_hash: Option<String>,
    pub display_name: String,
    pub locale: String,
    pub status: String,
    pub created_at: TimeDateTimeWithTimeZone,
    pub updated_at: TimeDateTimeWithTimeZone,
    pub deleted_at: Option<TimeDateTimeWithTimeZone>,
    /// Signed up, address not verified yet (the domain's `UserStatus::Unverified`).
    pub awaiting_verification: bool,
    /// An email change was undone from the old address: sign-in is refused until the
    /// password is reset.
    pub reset_required: bool,
    /// Support's reason for a freeze (kept while frozen).
    pub frozen_reason: Option<String>,
    /// A deleted account whose personal data is gone.
    pub purged_at: Option<TimeDateTimeWithTimeZone>,
    /// The WebAuthn user handle (random; made at the first passkey).
    pub webauthn_handle: Option<Uuid>,
    /// Created by a provider that did not verify the address: the first verification of
    /// the address through a link Tobira mailed removes every earlier way in.
    pub federated_unverified: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
