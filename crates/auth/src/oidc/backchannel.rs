//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): the logout token, and
//! its delivery to the client's `backchannel_logout_uri` as a job of the durable runner.
//!
//! The jobs are queued by the store in the transaction that ends a session or removes a
//! client's access (`store::logouts`); a job names the client, the subject and the
//! session, and each try signs a fresh token (its own `iat`, `exp` and `jti`), so a retry
//! hours later is not refused as stale. Delivery is a plain POST: no redirect is
//! followed, no proxy is used, it has a short timeout, and the target must be https (or
//! http on a loopback host) and, after DNS resolution, a public address, loopback only
//! when the URI names it, or a network the operator allowed (`backchannel.allowed_networks`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Serialize;
use serde_json::json;
use time::Duration;
use url::{Host, Url};

use crate::config::BackchannelConfig;
use crate::crypto::random_token;
use crate::domain::Client;
use crate::state::AppState;
use crate::store::Logout;

/// The event a logout token carries (Back-Channel Logout 1.0 §2.4).
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The JOSE `typ` of a logout token (explicit typing, RFC 8725 §3.11).
pub const LOGOUT_TYP: &str = "logout+jwt";

/// §2.4: `iss`, `aud`, `iat`, `exp`, `jti`, `events`, `sub` and/or `sid`, never `nonce`.
#[derive(Serialize)]
struct LogoutClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    events: serde_json::Value,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
}

/// Signs the logout token for `client` with its ID-token algorithm.
pub fn logout_token(state: &AppState, client: &Client, logout: &Logout) -> Result<String, String> {
    let now = state.clock.now();
    let claims = LogoutClaims {
        iss: state.config.issuer.as_str(),
        aud: &client.client_id,
        iat: now.unix_timestamp(),
        exp: (now + Duration::seconds(state.config.backchannel.token_secs.into())).unix_timestamp(),
        jti: random_token(&mut rand::rng(), 16),
        events: json!({ LOGOUT_EVENT: {} }),
        sub: &logout.sub,
        sid: logout.sid.as_deref(),
    };
    state
        .keys
        .sign(client.id_token_alg, LOGOUT_TYP, &claims)
        .map_err(|e| format!("cannot sign the logout token: {e}"))
}

/// Runs one job of the back-channel queue: `Ok` when the client took the token, or when
/// there is no longer anyone to tell (the client was removed or dropped its URI).
pub async fn deliver(state: &AppState, payload: &str) -> Result<(), String> {
    let logout = Logout::from_payload(payload)?;
    let client = state
        .db
        .clients()
        .find(&logout.client_id)
        .await
        .map_err(|e| e.to_string())?;
    let Some((client, uri)) = client.and_then(|c| c.backchannel_logout_uri.clone().map(|u| (c, u)))
    else {
        count("dropped");
        return Ok(());
    };
    let token = logout_token(state, &client, &logout)?;
    let outcome = state.backchannel.post(uri.as_str(), &token).await;
    count(match &outcome {
        Ok(()) => "delivered",
        Err(Failure::Refused(_)) => "refused",
        Err(Failure::Forbidden(_)) => "forbidden",
        Err(Failure::Unreachable(_)) => "unreachable",
    });
    outcome.map_err(|f| f.to_string())
}

fn count(result: &'static str) {
    metrics::counter!("tobira_backchannel_logouts_total", "result" => result).increment(1);
}

/// Why a delivery failed (each is retried by the job runner).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The client answered, but not with success (a redirect counts: it is not followed).
    #[error("the client answered {0}")]
    Refused(reqwest::StatusCode),
    /// The URI may not be reached from here.
    #[error("{0}")]
    Forbidden(String),
    #[error("cannot reach the client: {0}")]
    Unreachable(String),
}

/// The HTTP client that posts logout tokens.
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    allowed: Arc<[IpNet]>,
}

impl Sender {
    pub fn new(config: &BackchannelConfig) -> Result<Self, reqwest::Error> {
        let allowed: Arc<[IpNet]> = config.allowed_networks.clone().into();
        let timeout = StdDuration::from_millis(config.timeout_ms);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!(
                "Tobira/",
                env!("CARGO_PKG_VERSION"),
                " back-channel logout"
            ))
            .dns_resolver(Guarded {
                allowed: allowed.clone(),
            })
            .build()?;
        Ok(Self { http, allowed })
    }

    /// POSTs `logout_token` to `uri` (§2.5); success is any 2xx (§2.8 names 200, and some
    /// frameworks answer 204).
    pub async fn post(&self, uri: &str, token: &str) -> Result<(), Failure> {
        let url = self.target(uri)?;
        let response = self
            .http
            .post(url)
            .form(&[("logout_token", token)])
            .send()
            .await
            .map_err(|e| Failure::Unreachable(reason(&e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure::Refused(status))
        }
    }

    /// Checks what can be checked before connecting: the scheme, and a host given as an
    /// address (names are checked by the resolver, after resolution).
    fn target(&self, uri: &str) -> Result<Url, Failure> {
        let url = Url::parse(uri).map_err(|e| Failure::Forbidden(format!("bad URI: {e}")))?;
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(Host::Domain(_)) => None,
            None => return Err(Failure::Forbidden("the URI has no host".to_owned())),
        };
        let loopback_named = match url.host() {
            Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            _ => ip.is_some_and(|ip| canonical(ip).is_loopback()),
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback_named => {}
            _ => {
                return Err(Failure::Forbidden(
                    "a logout URI must be https, or http on a loopback host".to_owned(),
                ));
            }
        }
        if let Some(ip) = ip
            && !permitted(ip, loopback_named, &self.allowed)
        {
            return Err(Failure::Forbidden(format!(
                "{ip} is not a public address (see backchannel.allowed_networks)"
            )));
        }
        Ok(url)
    }
}

/// The error chain in one line (reqwest's own message hides the cause).
fn reason(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Resolves names, then keeps only the addresses a logout may go to, so that a name
/// cannot lead into the operator's network (whatever DNS answers at the time).
struct Guarded {
    allowed: Arc<[IpNet]>,
}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept = reachable(&host, found, &allowed)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// Of the addresses `host` resolved to, those a logout may go to; an error when none.
fn reachable(
    host: &str,
    found: impl IntoIterator<Item = SocketAddr>,
    allowed: &[IpNet],
) -> Result<Vec<SocketAddr>, String> {
    let loopback_named = host.eq_ignore_ascii_case("localhost");
    let kept: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| permitted(a.ip(), loopback_named, allowed))
        .collect();
    if kept.is_empty() {
        return Err(format!(
            "{host} resolves to no public address (see backchannel.allowed_networks)"
        ));
    }
    Ok(kept)
}

/// Whether a logout may go to `ip`: a network the operator allowed, loopback when the URI
/// names loopback, or a public address.
fn permitted(ip: IpAddr, loopback_named: bool, allowed: &[IpNet]) -> bool {
    let ip = canonical(ip);
    if allowed.iter().any(|n| n.contains(&ip)) {
        return true;
    }
    if ip.is_loopback() {
        return loopback_named;
    }
    is_public(ip)
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Globally reachable unicast (the IANA special-purpose registries, in short).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // Shared address space (carrier-grade NAT), RFC 6598.
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments, RFC 6890.
        || (a == 192 && b == 0 && c == 0)
        // Benchmarking, RFC 2544.
        || (a == 198 && (18..20).contains(&b))
        // Reserved, RFC 1112.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        // Site-local (deprecated, still routed inside some networks).
        || (s[0] & 0xffc0) == 0xfec0
        // Documentation, RFC 3849.
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        // NAT64, 6to4, Teredo and IPv4-compatible forms reach IPv4 space that may be
        // private: allowed only through `allowed_networks`.
        || (s[0] == 0x0064 && s[1] == 0xff9b)
        || s[0] == 0x2002
        || (s[0] == 0x2001 && s[1] == 0x0000)
        || (s[0..6] == [0, 0, 0, 0, 0, 0]))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn sender(allowed: &[&str]) -> Sender {
        Sender::new(&BackchannelConfig {
            allowed_networks: allowed.iter().map(|n| n.parse().unwrap()).collect(),
            ..BackchannelConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn targets_must_be_https_or_loopback_http_and_public_addresses() {
        let s = sender(&[]);
        for ok in [
            "https://rp.example.jp/logout",
            "http://127.0.0.1:8080/bc",
            "http://localhost/bc",
            "http://[::1]:3000/bc",
            "https://203.0.113.1.sslip.io/bc",
            "https://8.8.8.8/bc",
            "https://[2001:4860::8888]/bc",
            // The neighbours of refused blocks are public.
            "https://100.128.0.1/bc",
            "https://100.63.255.1/bc",
            "https://192.0.1.1/bc",
            "https://198.20.0.1/bc",
            "https://223.255.255.1/bc",
            "https://[2001:db9::1]/bc",
            "https://[2003::1]/bc",
            "https://[2600:ff9b::1]/bc",
        ] {
            assert!(s.target(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://rp.example.jp/bc",
            "ftp://rp.example.jp/bc",
            "https://10.0.0.5/bc",
            "https://192.168.1.1/bc",
            "https://172.16.0.1/bc",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/bc",
            "https://0.0.0.0/bc",
            "https://[fd00::1]/bc",
            "https://[fe80::1]/bc",
            "https://[::ffff:10.0.0.1]/bc",
            "https://[::ffff:169.254.169.254]/bc",
            "https://[64:ff9b::a00:1]/bc",
            "https://[2002:a00:1::1]/bc",
            "https://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/bc",
            "https://198.18.0.1/bc",
            "https://255.255.255.255/bc",
            // One address of each other special-purpose block, each refused on its own.
            "https://192.0.2.1/bc",
            "https://198.51.100.7/bc",
            "https://203.0.113.9/bc",
            "https://224.0.0.251/bc",
            "https://0.1.2.3/bc",
            "https://100.127.255.254/bc",
            "https://192.0.0.8/bc",
            "https://198.19.255.1/bc",
            "https://240.0.0.1/bc",
            "https://[::]/bc",
            "https://[ff02::1]/bc",
            "https://[fec0::1]/bc",
            "https://[2001:db8::1]/bc",
            "https://[::a00:1]/bc",
        ] {
            assert!(matches!(s.target(bad), Err(Failure::Forbidden(_))), "{bad}");
        }
    }

    #[test]
    fn operators_may_allow_their_own_networks() {
        let s = sender(&["10.0.0.0/8", "fd00::/8"]);
        assert!(s.target("https://10.1.2.3/bc").is_ok());
        assert!(s.target("https://[fd00::1]/bc").is_ok());
        assert!(s.target("https://192.168.1.1/bc").is_err());
    }

    #[test]
    fn loopback_and_unspecified_addresses_are_never_public_on_their_own() {
        // `permitted` settles loopback before it asks, and `a == 0` and the IPv4-compatible
        // block cover the unspecified addresses too: `is_public` still says no by itself.
        for ip in ["127.0.0.1", "127.1.2.3", "0.0.0.0", "::1", "::"] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn loopback_only_when_the_uri_names_it() {
        assert!(permitted("127.0.0.1".parse().unwrap(), true, &[]));
        // A public name that resolves to loopback (DNS rebinding) is refused.
        assert!(!permitted("127.0.0.1".parse().unwrap(), false, &[]));
        assert!(!permitted("::1".parse().unwrap(), false, &[]));
        assert!(permitted("93.184.216.34".parse().unwrap(), false, &[]));
    }

    #[tokio::test]
    async fn a_name_resolving_only_to_forbidden_addresses_is_refused_before_connecting() {
        let addr = |s: &str| -> SocketAddr { s.parse().unwrap() };
        // DNS rebinding: a public name answering with private and loopback addresses.
        let inside = [addr("10.0.0.5:0"), addr("127.0.0.1:0"), addr("[fd00::1]:0")];
        assert!(reachable("rp.example.jp", inside, &[]).is_err());
        // Mixed answers: only the public address is dialled.
        let mixed = [addr("10.0.0.5:0"), addr("93.184.216.34:0")];
        assert_eq!(
            reachable("rp.example.jp", mixed, &[]).unwrap(),
            [addr("93.184.216.34:0")]
        );
        // The operator's own network, when allowed.
        let allowed: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            reachable("rp.internal", inside, &allowed).unwrap(),
            [addr("10.0.0.5:0")]
        );
        // `localhost` itself, through the real resolver: loopback only.
        let guarded = Guarded {
            allowed: Arc::from(Vec::new()),
        };
        let ok = guarded.resolve(Name::from_str("localhost").unwrap()).await;
        assert!(ok.is_ok_and(|mut a| a.all(|a| a.ip().is_loopback())));
    }
}
