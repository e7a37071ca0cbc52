//! Facebook Login: OAuth 2.0 (no ID token, no nonce) and the Graph API's `/me`, asked
//! with `appsecret_proof` so that a leaked access token alone cannot call Graph as our
//! app. Users are app-scoped ids, so the identity's issuer names the app.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use url::Url;

use super::UpstreamError;
use super::http::{Answer, Http, is_json};

/// One configured Facebook app.
pub struct Facebook {
    client_id: String,
    secret: String,
    authorization_endpoint: String,
    token_endpoint: String,
    graph_endpoint: String,
    scopes: Vec<String>,
    http: Http,
}

/// What `/me` says.
pub struct Me {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// Graph's error object: `{"error":{"message","type","code","error_subcode",…}}`.
#[derive(Debug, Deserialize)]
struct GraphError {
    #[serde(default)]
    message: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    code: i64,
}

#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphError,
}

impl Facebook {
    pub fn new(
        client_id: String,
        secret: String,
        authorization_endpoint: String,
        token_endpoint: String,
        graph_endpoint: String,
        scopes: Vec<String>,
        http: Http,
    ) -> Self {
        Self {
            client_id,
            secret,
            authorization_endpoint,
            token_endpoint,
            graph_endpoint,
            scopes,
            http,
        }
    }

    /// App-scoped user ids are unique within the app only.
    pub fn issuer(&self) -> String {
        format!("https://www.facebook.com/{}", self.client_id)
    }

    /// The login dialog's URL (Facebook's "Manually Build a Login Flow").
    /// `fresh` asks Facebook for the password again (`auth_type=reauthenticate`).
    pub fn start(
        &self,
        redirect_uri: &str,
        state: &str,
        fresh: bool,
    ) -> Result<String, UpstreamError> {
        let scopes = self.scopes.join(",");
        let mut query = vec![
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("scope", scopes.as_str()),
            ("state", state),
        ];
        if fresh {
            query.push(("auth_type", "reauthenticate"));
        }
        with_query(&self.authorization_endpoint, &query)
    }

    /// Redeems `code`, then reads the member from `/me`.
    pub async fn finish(&self, redirect_uri: &str, code: &str) -> Result<Me, UpstreamError> {
        let token = self.access_token(redirect_uri, code).await?;
        self.me(&token).await
    }

    /// `GET {token}?client_id&redirect_uri&client_secret&code` → `{"access_token",…}`.
    async fn access_token(&self, redirect_uri: &str, code: &str) -> Result<String, UpstreamError> {
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
        }
        let url = with_query(
            &self.token_endpoint,
            &[
                ("client_id", self.client_id.as_str()),
                ("redirect_uri", redirect_uri),
                ("client_secret", self.secret.as_str()),
                ("code", code),
            ],
        )?;
        let answer = self.http.send(self.http.get(&url)).await?;
        let token: Token = read(&answer, "the token endpoint")?;
        if token.access_token.is_empty() {
            return Err(UpstreamError::Refused(
                "the token endpoint gave an empty access token".to_owned(),
            ));
        }
        Ok(token.access_token)
    }

    /// `GET {graph}/me?fields=id,name,email&access_token&appsecret_proof`.
    async fn me(&self, access_token: &str) -> Result<Me, UpstreamError> {
        #[derive(Deserialize)]
        struct MeBody {
            #[serde(default)]
            id: String,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            email: Option<String>,
        }
        let url = format!("{}/me", self.graph_endpoint.trim_end_matches('/'));
        let proof = appsecret_proof(&self.secret, access_token);
        let url = with_query(
            &url,
            &[
                ("fields", "id,name,email"),
                ("access_token", access_token),
                ("appsecret_proof", proof.as_str()),
            ],
        )?;
        let answer = self.http.send(self.http.get(&url)).await?;
        let me: MeBody = read(&answer, "Graph /me")?;
        Ok(Me {
            id: me.id,
            name: me.name,
            email: me.email,
        })
    }
}

/// `base` with `pairs` added to its query.
fn with_query(base: &str, pairs: &[(&str, &str)]) -> Result<String, UpstreamError> {
    let mut url = Url::parse(base)
        .map_err(|e| UpstreamError::Misconfigured(format!("endpoint {base:?}: {e}")))?;
    url.query_pairs_mut().extend_pairs(pairs);
    Ok(url.into())
}

/// `hex(HMAC-SHA256(key = app secret, message = access token))` (Graph API "Securing
/// Requests").
pub fn appsecret_proof(app_secret: &str, access_token: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(app_secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(access_token.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A Graph answer: the expected object on 200, else its error object classified.
fn read<T: serde::de::DeserializeOwned>(answer: &Answer, what: &str) -> Result<T, UpstreamError> {
    if answer.status() == reqwest::StatusCode::OK && is_json(answer) {
        return serde_json::from_slice(answer.body())
            .map_err(|e| UpstreamError::Refused(format!("{what}: unreadable answer: {e}")));
    }
    match serde_json::from_slice::<GraphErrorBody>(answer.body()) {
        Ok(body) => Err(graph_error(&body.error, what)),
        Err(_) => Err(UpstreamError::Refused(format!(
            "{what}: HTTP {} without a Graph error",
            answer.status()
        ))),
    }
}

/// Graph's errors by whose fault they are: our app's (a wrong secret or app id, or an
/// access token Graph will not take from us: code 190) is `Misconfigured`; Graph being
/// down or throttling us is `Unavailable`; the rest (a bad or used code, …) refuses
/// this sign-in.
fn graph_error(e: &GraphError, what: &str) -> UpstreamError {
    let message: String = e.message.chars().take(200).collect();
    let described = format!("{what}: {} (code {}): {message}", e.kind, e.code);
    let lower = message.to_ascii_lowercase();
    let about_our_client = e.kind == "OAuthException"
        && (lower.contains("client secret")
            || lower.contains("client_secret")
            || lower.contains("invalid application")
            || lower.contains("appsecret_proof")
            || lower.contains("invalid client"));
    match e.code {
        // 190: access token refused; 101: unknown application id.
        190 | 101 => UpstreamError::Misconfigured(described),
        // 1, 2: unknown error / service temporarily unavailable; 4, 17, 32, 613: rate
        // limits.
        1 | 2 | 4 | 17 | 32 | 613 if !about_our_client => UpstreamError::Unavailable(described),
        _ if about_our_client => UpstreamError::Misconfigured(described),
        _ => UpstreamError::Refused(described),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appsecret_proof_is_hex_hmac_sha256_of_the_token() {
        // RFC 4231 test case 2 and the well-known "quick brown fox" vector.
        assert_eq!(
            appsecret_proof("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            appsecret_proof("key", "The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    fn classify(code: i64, kind: &str, message: &str) -> UpstreamError {
        graph_error(
            &GraphError {
                message: message.to_owned(),
                kind: kind.to_owned(),
                code,
            },
            "test",
        )
    }

    #[test]
    fn graph_errors_are_classified_by_whose_fault_they_are() {
        assert!(matches!(
            classify(190, "OAuthException", "Invalid OAuth access token."),
            UpstreamError::Misconfigured(_)
        ));
        assert!(matches!(
            classify(1, "OAuthException", "Error validating client secret."),
            UpstreamError::Misconfigured(_)
        ));
        assert!(matches!(
            classify(
                100,
                "OAuthException",
                "Invalid appsecret_proof provided in the API argument"
            ),
            UpstreamError::Misconfigured(_)
        ));
        assert!(matches!(
            classify(
                101,
                "OAuthException",
                "Error validating application. Invalid application ID."
            ),
            UpstreamError::Misconfigured(_)
        ));
        assert!(matches!(
            classify(
                100,
                "OAuthException",
                "This authorization code has been used."
            ),
            UpstreamError::Refused(_)
        ));
        assert!(matches!(
            classify(2, "OAuthException", "Service temporarily unavailable"),
            UpstreamError::Unavailable(_)
        ));
        assert!(matches!(
            classify(4, "OAuthException", "Application request limit reached"),
            UpstreamError::Unavailable(_)
        ));
    }

    #[test]
    fn the_login_url_carries_no_nonce_and_comma_separated_scopes() {
        let fb = Facebook::new(
            "1234".to_owned(),
            "s".to_owned(),
            "https://www.facebook.com/v19.0/dialog/oauth".to_owned(),
            "https://graph.facebook.com/v19.0/oauth/access_token".to_owned(),
            "https://graph.facebook.com/v19.0".to_owned(),
            vec!["email".to_owned(), "public_profile".to_owned()],
            Http::new(std::time::Duration::from_secs(1)).expect("http"),
        );
        let url = Url::parse(
            &fb.start(
                "https://id.example.jp/federation/fb/callback",
                "st&te",
                false,
            )
            .expect("url"),
        )
        .expect("url");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], "1234");
        assert_eq!(
            q["redirect_uri"],
            "https://id.example.jp/federation/fb/callback"
        );
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["scope"], "email,public_profile");
        assert_eq!(q["state"], "st&te");
        assert!(!q.contains_key("nonce"));
        assert!(!q.contains_key("client_secret"));
        assert_eq!(fb.issuer(), "https://www.facebook.com/1234");
    }
}
