//! The client's IP address: the TCP peer, or — only when the peer is a trusted proxy —
//! the nearest untrusted address in `X-Forwarded-For`. Trusting the header from anyone
//! would let a client choose the IP that throttling and login history see.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut ip = peer.ip();
    if !is_trusted(&ip) {
        return ip;
    }
    // Walk from the right (the hop nearest to us) past our own proxies.
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for hop in hops.into_iter().rev() {
        ip = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    ip
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
}
