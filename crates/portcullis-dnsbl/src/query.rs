//! RFC 5782 query names: which DNS name to ask about an address.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address a DNSBL is asked about: an IPv4-mapped IPv6 address
/// (`::ffff:192.0.2.1`) is an IPv4 client and is looked up as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The absolute query name (ending in `.`) for `ip` in `zone`.
///
/// * IPv4, RFC 5782 §2.1: the four octets reversed, e.g. `192.0.2.99` in
///   `bl.example` → `99.2.0.192.bl.example.`.
/// * IPv6, RFC 5782 §2.4: the 32 nibbles reversed, lower-case hex, e.g.
///   `2001:db8::1` → `1.0.0.0.…8.b.d.0.1.0.0.2.bl.example.`.
///
/// Leading and trailing dots of `zone` are ignored.
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_matches('.');
    let mut name = String::with_capacity(64 + zone.len() + 1);
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            let _ = write!(name, "{d}.{c}.{b}.{a}.");
        }
        IpAddr::V6(v6) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for byte in v6.octets().iter().rev() {
                name.push(char::from(HEX[usize::from(byte & 0x0f)]));
                name.push('.');
                name.push(char::from(HEX[usize::from(byte >> 4)]));
                name.push('.');
            }
        }
    }
    name.push_str(zone);
    name.push('.');
    name
}

/// The inverse of [`query_name`]: the address a query name under `zone`
/// asks about, or `None` if it is not one (a zone operator's side, and a
/// check on [`query_name`]). Case-insensitive; the trailing dot is optional.
pub fn parse_query_name(name: &str, zone: &str) -> Option<IpAddr> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let zone = zone.trim_matches('.');
    let prefix = if zone.is_empty() {
        name
    } else {
        let cut = name.len().checked_sub(zone.len() + 1)?;
        let (prefix, suffix) = (name.get(..cut)?, name.get(cut..)?);
        let suffix = suffix.strip_prefix('.')?;
        if !suffix.eq_ignore_ascii_case(zone) {
            return None;
        }
        prefix
    };
    let labels: Vec<&str> = prefix.split('.').collect();
    match labels.len() {
        4 => {
            let mut octets = [0u8; 4];
            for (i, label) in labels.iter().enumerate() {
                // Canonical decimal only: no signs, no leading zeros.
                if label.is_empty()
                    || label.len() > 3
                    || !label.bytes().all(|b| b.is_ascii_digit())
                    || (label.len() > 1 && label.starts_with('0'))
                {
                    return None;
                }
                octets[3 - i] = label.parse().ok()?;
            }
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        32 => {
            let mut value: u128 = 0;
            for label in labels.iter().rev() {
                let [digit] = label.as_bytes() else {
                    return None;
                };
                let nibble = char::from(*digit).to_digit(16)?;
                value = (value << 4) | u128::from(nibble);
            }
            Some(IpAddr::V6(Ipv6Addr::from(value)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5782_examples() {
        // RFC 5782 §2.1: 192.168.42.23 → 23.42.168.192.<zone>
        assert_eq!(
            query_name("192.168.42.23".parse().unwrap(), "bl.example"),
            "23.42.168.192.bl.example."
        );
        // RFC 5782 §2.4: 2001:db8:1:2:3:4:567:89ab
        assert_eq!(
            query_name(
                "2001:db8:1:2:3:4:567:89ab".parse().unwrap(),
                "ugly.example."
            ),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example."
        );
        assert_eq!(
            query_name("::ffff:198.51.100.7".parse().unwrap(), "zen.spamhaus.org"),
            "7.100.51.198.zen.spamhaus.org."
        );
    }

    #[test]
    fn parse_rejects_foreign_names() {
        assert_eq!(
            parse_query_name("2.0.0.127.BL.example.", "bl.example"),
            Some("127.0.0.2".parse().unwrap())
        );
        assert_eq!(
            parse_query_name("2.0.0.127.xbl.example", "bl.example"),
            None
        );
        assert_eq!(
            parse_query_name("02.0.0.127.bl.example", "bl.example"),
            None
        );
        assert_eq!(parse_query_name("2.0.0.bl.example", "bl.example"), None);
        assert_eq!(parse_query_name("bl.example", "bl.example"), None);
        assert_eq!(parse_query_name("", "bl.example"), None);
    }
}
