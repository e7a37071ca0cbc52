//! Every protocol path in one place, so the router and the discovery document can never
//! disagree.

pub const DISCOVERY: &str = "/.well-known/openid-configuration";
pub const JWKS: &str = "/jwks";
pub const AUTHORIZE: &str = "/authorize";
/// Where the sign-in page sends the browser back to finish an authorization request.
pub const AUTHORIZE_CONTINUE: &str = "/authorize/continue";
pub const TOKEN: &str = "/token";
pub const USERINFO: &str = "/userinfo";
pub const LOGIN: &str = "/login";
/// The second step of a sign-in (`oidc::second_step`).
pub const SECOND_STEP: &str = "/login/second-step";
/// Where a passkey answer of the sign-in page goes (`oidc::passkey`).
pub const LOGIN_PASSKEY: &str = "/login/passkey";
/// Where a passkey answer of the second-step page goes.
pub const SECOND_STEP_PASSKEY: &str = "/login/second-step/passkey";
pub const REVOKE: &str = "/revoke";
pub const INTROSPECT: &str = "/introspect";
pub const END_SESSION: &str = "/end-session";
pub const END_SESSION_CONFIRM: &str = "/end-session/confirm";
pub const CONSENT: &str = "/consent";
/// A sign-in page's provider button posts here (`oidc::federation`); `{id}` is the
/// configured provider id.
pub const FEDERATION_START: &str = "/federation/{id}/start";
/// Where a provider sends the browser back (a GET, or Apple's cross-site form POST): the
/// URL registered at each provider (`federation::callback_url`).
pub const FEDERATION_CALLBACK: &str = "/federation/{id}/callback";
