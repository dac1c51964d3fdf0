//! Client IP resolution. `x-forwarded-for` is believed only as far as it was written by proxies
//! we trust: walking it from the right, the first address that is not a trusted proxy is the
//! client. Anything a client writes into the header itself sits further left and is ignored.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use actix_web::http::header::HeaderMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`); a bare address means one host.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

/// Why a text is not an IP network.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an IP address or network in CIDR notation (like 10.0.0.0/8)")]
pub struct InvalidNetwork(String);

impl IpNetwork {
    /// Whether `ip` lies inside this network. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether this network holds every address of its family (`0.0.0.0/0`, `::/0`).
    pub fn is_everything(&self) -> bool {
        self.prefix == 0
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for IpNetwork {
    type Err = InvalidNetwork;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidNetwork(text.to_owned());
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address = canonical(address.parse::<IpAddr>().map_err(|_| invalid())?);
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(invalid)?,
            None => max,
        };
        Ok(Self { address, prefix })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl fmt::Debug for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for IpNetwork {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The proxies whose `x-forwarded-for` entries are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNetwork>,
}

impl TrustedProxies {
    /// Trusts exactly these networks (none: the peer address is always the client).
    pub fn new(networks: Vec<IpNetwork>) -> Self {
        Self { networks }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|network| network.contains(ip))
    }

    /// The client's address: the peer itself unless it is a trusted proxy, else the right-most
    /// `x-forwarded-for` hop that is not a trusted proxy. An unparsable hop ends the walk at the
    /// last good address, since nothing to its left can be trusted either.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok())
            .collect::<Vec<_>>();
        for hop in hops.iter().rev().flat_map(|value| value.rsplit(',')) {
            let Some(ip) = parse_hop(hop) else { break };
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// One `x-forwarded-for` entry: an address, possibly with a port or IPv6 brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(socket) = hop.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                actix_web::http::header::HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn proxies(networks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(networks.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn networks_parse_and_contain() {
        let net: IpNetwork = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.200.1.2")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(
            net.contains(ip("::ffff:10.1.2.3")),
            "IPv4-mapped IPv6 is IPv4"
        );
        let host: IpNetwork = "::1".parse().unwrap();
        assert!(host.contains(ip("::1")));
        assert!(!host.contains(ip("::2")));
        assert!("0.0.0.0/0".parse::<IpNetwork>().unwrap().is_everything());
        assert!("10.0.0.0/33".parse::<IpNetwork>().is_err());
        assert!("example.com".parse::<IpNetwork>().is_err());
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let client = proxies(&[]).client_ip(ip("203.0.113.9"), &forwarded(&["1.2.3.4"]));
        assert_eq!(client, ip("203.0.113.9"));
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_its_address() {
        let client =
            proxies(&["10.0.0.0/8"]).client_ip(ip("203.0.113.9"), &forwarded(&["1.2.3.4"]));
        assert_eq!(client, ip("203.0.113.9"));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        // The client forged "6.6.6.6"; the trusted proxies appended the real hops after it.
        let headers = forwarded(&["6.6.6.6, 198.51.100.7", "10.0.0.2"]);
        let client = proxies(&["10.0.0.0/8"]).client_ip(ip("10.0.0.1"), &headers);
        assert_eq!(client, ip("198.51.100.7"));
    }

    #[test]
    fn a_chain_of_only_trusted_hops_yields_the_left_most() {
        let headers = forwarded(&["10.0.0.3, 10.0.0.2"]);
        let client = proxies(&["10.0.0.0/8"]).client_ip(ip("10.0.0.1"), &headers);
        assert_eq!(client, ip("10.0.0.3"));
    }

    #[test]
    fn garbage_in_the_header_stops_the_walk() {
        let headers = forwarded(&["1.1.1.1, garbage, 10.0.0.2"]);
        let client = proxies(&["10.0.0.0/8"]).client_ip(ip("10.0.0.1"), &headers);
        assert_eq!(client, ip("10.0.0.2"));
    }

    #[test]
    fn hops_with_ports_and_brackets_parse() {
        assert_eq!(parse_hop(" 192.0.2.1:4711 "), Some(ip("192.0.2.1")));
        assert_eq!(parse_hop("[2001:db8::1]:443"), Some(ip("2001:db8::1")));
        assert_eq!(parse_hop("[2001:db8::1]"), Some(ip("2001:db8::1")));
    }
}
