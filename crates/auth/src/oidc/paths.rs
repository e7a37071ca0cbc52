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
pub const REVOKE: &str = "/revoke";
pub const INTROSPECT: &str = "/introspect";
pub const END_SESSION: &str = "/end-session";
pub const END_SESSION_CONFIRM: &str = "/end-session/confirm";
pub const CONSENT: &str = "/consent";
