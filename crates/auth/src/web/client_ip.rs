//! The client's IP address: the TCP peer, or — only when the peer is a trusted proxy —
//! the nearest untrusted address in `X-Forwarded-For`. Trusting the header from anyone
//! would let a client choose the IP that throttling and login history see.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::state::AppState;

pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut ip = peer.ip();
    if !is_trusted(&ip) {
        return ip;
    }
    // Walk from the right (the hop nearest to us) past our own proxies. A hop that does
    // not parse ends the walk: skipping it would walk on into values the client wrote.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for raw in hops.into_iter().rev() {
        let Some(hop) = parse_hop(raw.trim()) else {
            break;
        };
        ip = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    ip
}

/// One `X-Forwarded-For` entry: an address, or what some proxies write, `ip:port` and
/// `[v6]:port`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(sock) = s.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    // `[v6]` without a port.
    s.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// The client's address as an extractor (the peer, or behind trusted proxies the
/// forwarded address).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
        Ok(Self(client_ip(
            peer,
            &parts.headers,
            &state.config.server.trusted_proxies,
        )))
    }
}

/// The unit that per-address limits count: an IPv4 address, or an IPv6 /64 (one
/// customer's network: a host can pick any address inside it).
pub fn ip_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.0.0.2"),
        );
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_ip(stranger, &headers, &trusted).to_string(),
            "198.51.100.7"
        );
        // The spoofed left-most entry is never reached.
        assert_eq!(
            client_ip(proxy, &headers, &trusted).to_string(),
            "203.0.113.9"
        );
        assert_eq!(client_ip(proxy, &headers, &[]).to_string(), "10.0.0.1");
        assert_eq!(
            client_ip(proxy, &HeaderMap::new(), &trusted).to_string(),
            "10.0.0.1"
        );
    }

    fn via(xff: &'static str) -> String {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static(xff));
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        client_ip(proxy, &headers, &trusted).to_string()
    }

    #[test]
    fn hops_with_ports_are_read_and_an_unreadable_hop_ends_the_walk() {
        assert_eq!(
            via("6.6.6.6, 203.0.113.9:51234, 10.0.0.2:80"),
            "203.0.113.9"
        );
        assert_eq!(via("6.6.6.6, [2001:db8::7]:443, 10.0.0.2"), "2001:db8::7");
        assert_eq!(via("6.6.6.6, [2001:db8::8]"), "2001:db8::8");
        // A proxy wrote something unreadable: the client-written 6.6.6.6 is never
        // reached; the last address we could read (our own proxy) is used.
        assert_eq!(via("6.6.6.6, unknown, 10.0.0.2"), "10.0.0.2");
        assert_eq!(via("6.6.6.6, garbage"), "10.0.0.1");
    }

    #[test]
    fn addresses_are_bucketed_v4_whole_and_v6_by_64() {
        assert_eq!(ip_bucket("203.0.113.9".parse().unwrap()), "203.0.113.9");
        assert_eq!(
            ip_bucket("2001:db8:1:2:aaaa::1".parse().unwrap()),
            ip_bucket("2001:db8:1:2:ffff::9".parse().unwrap())
        );
        assert_ne!(
            ip_bucket("2001:db8:1:2::1".parse().unwrap()),
            ip_bucket("2001:db8:1:3::1".parse().unwrap())
        );
        assert_eq!(ip_bucket("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
    }
}
