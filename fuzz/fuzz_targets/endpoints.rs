//! The protocol endpoints as a client or an attacker reaches them, in process: any
//! request to `/authorize`, `/token`, `/revoke`, `/introspect`, `/end-session` or
//! `/userinfo` gets an answer (never a panic, never a 5xx), on a real OP over SQLite.
//! Besides raw input, claims of the fuzzer's choosing signed with the OP's own key reach
//! the checks behind the signature (`id_token_hint`, JWT access tokens).
#![no_main]

use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, header};
use libfuzzer_sys::fuzz_target;
use tobira_auth::admin::clients::{AddClient, add_client};
use tobira_auth::config::{Issuer, Secret};
use tobira_auth::domain::GrantType;
use tobira_auth::keys::Alg;
use tobira_auth::state::AppState;
use tobira_auth::{Application, Clock, Config};
use tower::ServiceExt;

const ISSUER: &str = "http://127.0.0.1:9";
const CLIENT_ID: &str = "fuzz-rp";

struct Op {
    router: Router,
    state: AppState,
    /// The client's secret (generated at registration).
    secret: String,
    runtime: tokio::runtime::Runtime,
    _data: tempfile::TempDir,
}

static OP: LazyLock<Op> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let data = tempfile::tempdir().expect("a temporary directory");
    let (router, state, secret) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let mut config = Config::default();
        config.issuer = Issuer::parse(ISSUER).expect("an issuer");
        config.data_dir = data.path().to_path_buf();
        config.server.bind = listener.local_addr().expect("bound");
        config.database.url = Secret::new(format!(
            "sqlite://{}?mode=rwc",
            data.path().join("fuzz.db").display()
        ));
        config.log.access = false;
        let app = Application::build_on(listener, config, Clock::manual_at_now())
            .await
            .expect("the OP starts");
        let state = app.state().clone();
        let added = add_client(
            &state.db,
            &state.clock,
            AddClient {
                name: "Fuzz RP".to_owned(),
                redirect_uris: vec!["https://rp.example.jp/cb".to_owned()],
                post_logout_redirect_uris: vec!["https://rp.example.jp/bye".to_owned()],
                public: false,
                first_party: false,
                extra_grants: vec![GrantType::RefreshToken, GrantType::ClientCredentials],
                id_token_alg: Alg::RS256,
                backchannel_logout_uri: None,
                backchannel_logout_session_required: false,
                client_id: Some(CLIENT_ID.to_owned()),
                secret: None,
                scopes: Vec::new(),
            },
        )
        .await
        .expect("the client is registered");
        let secret = added.secret.expect("a confidential client's secret");
        (app.router(), state, secret)
    });
    Op {
        router,
        state,
        secret,
        runtime,
        _data: data,
    }
});

const ENDPOINTS: &[(Method, &str)] = &[
    (Method::GET, "/authorize"),
    (Method::POST, "/authorize"),
    (Method::POST, "/token"),
    (Method::POST, "/revoke"),
    (Method::POST, "/introspect"),
    (Method::GET, "/end-session"),
    (Method::POST, "/end-session"),
    (Method::GET, "/userinfo"),
    (Method::POST, "/userinfo"),
];

fuzz_target!(|data: &[u8]| {
    let op = &*OP;
    let [selector, auth, rest @ ..] = data else {
        return;
    };
    let (method, path) = &ENDPOINTS[usize::from(*selector) % ENDPOINTS.len()];
    // The Authorization header's value, then the parameters.
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let (credential, params) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
    let mut params = params.to_vec();
    if auth & 0x40 != 0 {
        // The parameters are claims: the OP's key signs them, and the token goes in as
        // an `id_token_hint` or an access token.
        let Ok(claims) = serde_json::from_slice::<serde_json::Value>(&params) else {
            return;
        };
        let typ = if auth & 0x80 != 0 { "at+jwt" } else { "JWT" };
        let Ok(token) = op.state.keys.sign(Alg::RS256, typ, &claims) else {
            return;
        };
        params = format!("client_id={CLIENT_ID}&id_token_hint={token}&token={token}").into_bytes();
        if auth & 0x20 != 0 {
            params.clear();
        }
        if *path == "/userinfo" {
            params.clear();
        }
        let request = request(method, path, Some(format!("Bearer {token}")), params);
        send(op, request);
        return;
    }
    let authorization = match auth % 4 {
        0 => None,
        1 => Some(format!(
            "Basic {}",
            base64_of(&format!("{CLIENT_ID}:{}", op.secret))
        )),
        _ => Some(String::from_utf8_lossy(credential).into_owned()),
    };
    send(op, request(method, path, authorization, params));
});

/// The request as a client would send it; `None` for what no HTTP client can send (a
/// control character in a header value).
fn request(
    method: &Method,
    path: &str,
    authorization: Option<String>,
    params: Vec<u8>,
) -> Option<Request<Body>> {
    let mut builder = Request::builder().method(method.clone());
    let body = if *method == Method::GET {
        let query = String::from_utf8_lossy(&params).replace(['#', ' '], "");
        builder = builder.uri(format!("{path}?{query}"));
        Body::empty()
    } else {
        builder = builder
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        Body::from(params)
    };
    if let Some(value) = authorization {
        builder = builder.header(header::AUTHORIZATION, value);
    }
    let mut request = builder.body(body).ok()?;
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 7], 40000))));
    Some(request)
}

fn send(op: &Op, request: Option<Request<Body>>) {
    let Some(request) = request else {
        return;
    };
    let uri = request.uri().to_string();
    let response = op
        .runtime
        .block_on(op.router.clone().oneshot(request))
        .expect("the router answers");
    assert!(
        !response.status().is_server_error(),
        "{uri}: {}",
        response.status()
    );
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
