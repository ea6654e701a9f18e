//! The user's IP address: the `ip` parameter, forwarded headers from trusted proxies, or the
//! TCP peer; and Snowplow's `x` anonymisation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

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

/// Snowplow's anonymisation: IPv4 keeps `4 − octets` octets and writes `x` for the rest
/// (`1.2.3.x`); IPv6 keeps `8 − segments` groups (full form, no zero compression) and writes
/// `x` for the rest; an IPv4-mapped IPv6 address is treated as IPv4. Text that is not an IP
/// address is returned unchanged.
pub fn anonymise(ip: &str, octets: u8, segments: u8) -> String {
    let Ok(addr) = ip.trim().parse::<IpAddr>() else {
        return ip.to_owned();
    };
    match addr {
        IpAddr::V4(v4) => anonymise_v4(v4, octets),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => anonymise_v4(v4, octets),
            None => anonymise_v6(v6, segments),
        },
    }
}

fn anonymise_v4(ip: Ipv4Addr, octets: u8) -> String {
    let keep = 4usize.saturating_sub(usize::from(octets.min(4)));
    ip.octets()
        .iter()
        .enumerate()
        .map(|(i, o)| if i < keep { o.to_string() } else { "x".into() })
        .collect::<Vec<_>>()
        .join(".")
}

fn anonymise_v6(ip: Ipv6Addr, segments: u8) -> String {
    if segments == 0 {
        return ip.to_string();
    }
    let keep = 8usize.saturating_sub(usize::from(segments.min(8)));
    ip.segments()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i < keep {
                format!("{s:x}")
            } else {
                "x".into()
            }
        })
        .collect::<Vec<_>>()
        .join(":")
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

    #[test]
    fn anonymisation_replaces_trailing_octets_and_segments_with_x() {
        assert_eq!(anonymise("1.2.3.4", 1, 1), "1.2.3.x");
        assert_eq!(anonymise("1.2.3.4", 3, 3), "1.x.x.x");
        assert_eq!(anonymise("1.2.3.4", 4, 4), "x.x.x.x");
        assert_eq!(anonymise("1.2.3.4", 0, 0), "1.2.3.4");
        assert_eq!(
            anonymise("2001:db8::ff00:42:8329", 2, 2),
            "2001:db8:0:0:0:ff00:x:x"
        );
        assert_eq!(anonymise("2001:db8::1", 0, 8), "x:x:x:x:x:x:x:x");
        assert_eq!(anonymise("::ffff:10.1.2.3", 2, 5), "10.1.x.x");
        assert_eq!(anonymise("unknown", 2, 2), "unknown");
    }
}
