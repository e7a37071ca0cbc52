//! What the admin API's tests share: the callers every endpoint must turn away (a
//! member's access token, a client_credentials token without the admin scope).

use openidconnect::OAuth2TokenResponse;

use crate::helpers::{ClientOpts, TestApp};
use crate::oidc::{Setup, authorize, exchange, setup_with, sign_in_for_code};

/// A member signed in through a client made with `opts` (on an app configured by
/// `configure`), and the member's access token.
pub async fn member_token_with(
    opts: ClientOpts,
    configure: impl FnOnce(&mut tobira_auth::Config),
) -> (Setup, String) {
    let s = setup_with(opts, configure).await;
    let pending = authorize(&s.rp, &[]);
    let code = sign_in_for_code(&s, &pending).await;
    let tokens = exchange(&s, code, pending.verifier).await.unwrap();
    let token = tokens.access_token().secret().clone();
    (s, token)
}

/// A member's access token, from a sign-in through a default client.
pub async fn member_token() -> (Setup, String) {
    member_token_with(ClientOpts::default(), |_| {}).await
}

/// A client_credentials client without the admin scope, and its token.
pub async fn non_admin_token(app: &TestApp) -> String {
    let (id, secret) = app
        .add_client(ClientOpts {
            name: "Reports",
            client_credentials: true,
            ..Default::default()
        })
        .await;
    app.client_credentials_token(&id, &secret.unwrap(), "")
        .await
}
