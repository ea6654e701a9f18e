//! Client addresses as requests carry them: CIDRs, the TCP peer, `X-Forwarded-For` and
//! `Forwarded` hops, and Snowplow's `ip` parameter.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::envelope::Envelope;

/// Parses a CIDR (`10.0.0.0/8`, `::1/128`) or a bare address (a single-host network).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is neither a CIDR (e.g. 10.0.0.0/8) nor an IP address"))
}

/// The IP address in a peer string (`ip:port`, `[v6]:port`, or a bare address).
pub fn peer_ip(peer: &str) -> Option<IpAddr> {
    let peer = peer.trim();
    if let Ok(sa) = peer.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    strip_host(peer).parse::<IpAddr>().ok()
}

/// `1.2.3.4:80` → `1.2.3.4`, `[::1]:80` → `::1`, `"[::1]"` → `::1`; anything else unchanged.
fn strip_host(s: &str) -> &str {
    let s = s.trim().trim_matches('"');
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match s.split_once(':') {
        // Exactly one colon: an IPv4 address (or name) with a port.
        Some((host, port)) if !port.contains(':') => host,
        _ => s,
    }
}

/// The first hop of the first `X-Forwarded-For` header.
pub fn forwarded_for(xff: &str) -> Option<String> {
    let first = xff.split(',').next()?.trim();
    let host = strip_host(first);
    (!host.is_empty()).then(|| host.to_owned())
}

/// The `for=` of the first element of a `Forwarded` header (RFC 7239).
pub fn forwarded(header: &str) -> Option<String> {
    let first = header.split(',').next()?;
    first.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let host = strip_host(v);
        (!host.is_empty() && !host.eq_ignore_ascii_case("unknown") && !host.starts_with('_'))
            .then(|| host.to_owned())
    })
}

/// The `ip` parameter's address: the first token before `,`, `|` or a space.
pub fn ip_param(value: &str) -> Option<String> {
    let token = value
        .split([',', '|', ' '])
        .map(str::trim)
        .find(|t| !t.is_empty())?;
    Some(token.to_owned())
}

/// The client's address as enrichment records it (`user_ipaddress`): when the TCP peer is one of
/// the `trusted` proxies, the first hop of `X-Forwarded-For` (else the `for=` of `Forwarded`);
/// otherwise the peer.
/// With `SP-Anonymous` the address is not recorded.
pub fn client_ip(envelope: &Envelope, trusted: &[IpNet]) -> Option<String> {
    if envelope.header("sp-anonymous").is_some() {
        return None;
    }
    let peer: Option<IpAddr> = envelope.peer.as_deref().and_then(peer_ip);
    let peer = peer.map(|p| match p {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(p, IpAddr::V4),
        v4 => v4,
    });
    if peer.is_some_and(|p| trusted.iter().any(|n| n.contains(&p))) {
        if let Some(hop) = envelope.header("x-forwarded-for").and_then(forwarded_for) {
            return Some(hop);
        }
        if let Some(hop) = envelope.header("forwarded").and_then(forwarded) {
            return Some(hop);
        }
    }
    peer.map(|p| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cidr_or_a_bare_address_is_a_network() {
        assert!(parse_cidr("10.0.0.0/8")
            .unwrap()
            .contains(&"10.9.8.7".parse::<IpAddr>().unwrap()));
        assert!(parse_cidr("::1")
            .unwrap()
            .contains(&"::1".parse::<IpAddr>().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("proxy.local").is_err());
    }

    #[test]
    fn peers_with_and_without_ports_give_their_address() {
        assert_eq!(
            peer_ip("127.0.0.1:5555"),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            peer_ip("[2001:db8::1]:443"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(peer_ip("2001:db8::1"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(peer_ip("nonsense"), None);
    }

    #[test]
    fn forwarded_headers_give_their_first_client() {
        assert_eq!(
            forwarded_for("203.0.113.9, 10.0.0.1").as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            forwarded_for("[2001:db8::5]:1234").as_deref(),
            Some("2001:db8::5")
        );
        assert_eq!(
            forwarded(r#"for="[2001:db8::7]:4711";proto=https, for=10.0.0.1"#).as_deref(),
            Some("2001:db8::7")
        );
        assert_eq!(
            forwarded("proto=https;For=198.51.100.17").as_deref(),
            Some("198.51.100.17")
        );
        assert_eq!(forwarded("for=unknown"), None);
    }

    #[test]
    fn the_ip_parameter_keeps_its_first_token() {
        assert_eq!(ip_param("1.2.3.4, 5.6.7.8").as_deref(), Some("1.2.3.4"));
        assert_eq!(ip_param("1.2.3.4|x").as_deref(), Some("1.2.3.4"));
        assert_eq!(ip_param(" 1.2.3.4 5").as_deref(), Some("1.2.3.4"));
        assert_eq!(ip_param(" "), None);
    }
}
