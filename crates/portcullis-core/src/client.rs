//! What is known about the connected client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// The peer of one SMTP session, filled in as the session goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Client {
    /// Remote address.
    pub peer: SocketAddr,
    /// The local address the connection arrived on (which listener).
    pub local: Option<SocketAddr>,
    /// Reverse-DNS name of the peer, when the caller looked it up.
    pub reverse_dns: Option<String>,
    /// The HELO/EHLO argument.
    pub helo: Option<String>,
    /// Whether the client greeted with EHLO.
    pub esmtp: bool,
    /// Whether the channel is encrypted (STARTTLS or implicit TLS).
    pub tls: bool,
    /// The authenticated identity (RFC 4954), if any.
    pub authenticated: Option<String>,
    /// Whether the client may relay without AUTH (a configured relay network).
    pub trusted_network: bool,
}

impl Client {
    /// A client connected from `peer`, not yet greeted.
    pub fn new(peer: SocketAddr) -> Self {
        Client {
            peer,
            local: None,
            reverse_dns: None,
            helo: None,
            esmtp: false,
            tls: false,
            authenticated: None,
            trusted_network: false,
        }
    }

    /// The peer IP.
    pub fn ip(&self) -> IpAddr {
        self.peer.ip()
    }

    /// The client's network for per-network keys (e.g. /24 and /64).
    pub fn network(&self, v4_prefix: u8, v6_prefix: u8) -> IpAddr {
        mask_ip(self.ip(), v4_prefix, v6_prefix)
    }
}

/// Zero the host bits of `ip`: `/v4_prefix` for IPv4, `/v6_prefix` for IPv6.
/// An IPv4-mapped IPv6 address is treated as IPv4. Prefixes are clamped.
pub fn mask_ip(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> IpAddr {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let p = u32::from(v4_prefix.min(32));
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let p = u32::from(v6_prefix.min(128));
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        let ip: IpAddr = "192.0.2.77".parse().unwrap();
        assert_eq!(mask_ip(ip, 24, 64), "192.0.2.0".parse::<IpAddr>().unwrap());
        assert_eq!(mask_ip(ip, 32, 64), ip);
        assert_eq!(mask_ip(ip, 0, 64), "0.0.0.0".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(
            mask_ip(v6, 24, 64),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        let mapped: IpAddr = "::ffff:198.51.100.9".parse().unwrap();
        assert_eq!(
            mask_ip(mapped, 24, 64),
            "198.51.100.0".parse::<IpAddr>().unwrap()
        );
    }
}
