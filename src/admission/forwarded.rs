//! The client's address behind reverse proxies: `X-Forwarded-For` is believed
//! only when the direct peer is a `--trusted-proxy`.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// The address to attribute a request to. Walks `X-Forwarded-For` from the
/// right (the hop nearest us), skipping trusted proxies; the first untrusted
/// hop is the client. An untrusted peer's header is ignored.
pub(crate) fn client_addr(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> SocketAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer.ip()) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    match hops
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(hops.first())
    {
        Some(ip) => SocketAddr::new(*ip, peer.port()),
        None => peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn only_trusted_peers_are_believed() {
        let trusted: Vec<IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        assert_eq!(
            client_addr(proxy, &headers("198.51.100.1, 10.1.1.1"), &trusted)
                .ip()
                .to_string(),
            "198.51.100.1"
        );
        assert_eq!(
            client_addr(proxy, &headers("6.6.6.6, 198.51.100.1"), &trusted)
                .ip()
                .to_string(),
            "198.51.100.1"
        );
        assert_eq!(
            client_addr(stranger, &headers("198.51.100.1"), &trusted),
            stranger
        );
        assert_eq!(client_addr(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(client_addr(proxy, &headers("garbage"), &trusted), proxy);
    }
}
