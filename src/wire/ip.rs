//! Client addresses as requests carry them: CIDRs, the TCP peer, `X-Forwarded-For` and
//! `Forwarded` hops, and Snowplow's `ip` parameter.
//!
//! # Which address is the client's
//!
//! Forwarding headers count only when the TCP peer is one of `enrich.trusted_proxies`; from any
//! other peer they are ignored and the peer is the client. From a trusted proxy, the hops are
//! every `X-Forwarded-For` header's comma-separated entries in order (several headers are one
//! list), or, without that header, the `for=` of every `Forwarded` element (RFC 7239). Every
//! hop must be an address (`1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80`; IPv4-mapped IPv6 reads
//! as IPv4): a list holding anything else (`unknown`, an obfuscated `_id`, a name, junk) is not
//! trusted at all, and the peer is the client. Which hop is taken depends on the purpose:
//!
//! - **Recorded** (`user_ipaddress`, [`recorded_client_ip`]): the first hop, the originating
//!   client as the proxy chain reports it, which is what Snowplow's pipeline stores. A client
//!   can put any address first when its proxy appends to a header the client sent, so this is
//!   data, never a basis for a decision.
//! - **Decided on** (per-IP rate limits, [`limiting_client_ip`]): walking from the right, the
//!   first hop that is not a trusted proxy (the leftmost when every hop is trusted). A client
//!   can prepend anything, but it cannot remove what the trusted proxies appended, so it
//!   cannot choose its bucket.

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

/// The `for=` of every element of `Forwarded` header values, in order (RFC 7239), unparsed.
fn forwarded_fors<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    values
        .flat_map(|v| v.split(','))
        .map(|element| {
            element
                .split(';')
                .find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then_some(v)
                })
                .unwrap_or("")
        })
        .collect()
}

/// One forwarding hop as an address, or `None` (see the module docs).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    peer_ip(strip_host(hop)).map(|ip| ip.to_canonical())
}

/// The hops a trusted proxy reported, from `X-Forwarded-For` values, else `Forwarded` values;
/// `None` when there are none or one is not an address.
fn hops<'a>(
    xff: impl Iterator<Item = &'a str>,
    forwarded: impl Iterator<Item = &'a str>,
) -> Option<Vec<IpAddr>> {
    let xff: Vec<&str> = xff
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let raw = if xff.is_empty() {
        forwarded_fors(forwarded)
    } else {
        xff
    };
    if raw.is_empty() {
        return None;
    }
    raw.iter().map(|h| parse_hop(h)).collect()
}

/// Which hop a purpose takes (module docs).
#[derive(Debug, Clone, Copy)]
enum Rule {
    First,
    NearestUntrusted,
}

fn choose<'a>(
    peer: IpAddr,
    xff: impl Iterator<Item = &'a str>,
    forwarded: impl Iterator<Item = &'a str>,
    trusted: &[IpNet],
    rule: Rule,
) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(hops) = hops(xff, forwarded) else {
        return peer;
    };
    let chosen = match rule {
        Rule::First => hops.first(),
        Rule::NearestUntrusted => hops
            .iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .or(hops.first()),
    };
    chosen.copied().unwrap_or(peer)
}

/// The address enrichment records as `user_ipaddress` (the first hop; module docs). With
/// `SP-Anonymous` the address is not recorded.
pub fn recorded_client_ip(envelope: &Envelope, trusted: &[IpNet]) -> Option<String> {
    if envelope.header("sp-anonymous").is_some() {
        return None;
    }
    let peer = envelope.peer.as_deref().and_then(peer_ip)?;
    let values = |name: &'static str| {
        envelope
            .headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let ip = choose(
        peer,
        values("x-forwarded-for"),
        values("forwarded"),
        trusted,
        Rule::First,
    );
    Some(ip.to_string())
}

/// The address per-IP rate limits count against (the nearest untrusted hop; module docs), from
/// the peer and the request's `X-Forwarded-For` and `Forwarded` header values.
pub fn limiting_client_ip<'a>(
    peer: IpAddr,
    xff: impl Iterator<Item = &'a str>,
    forwarded: impl Iterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    choose(peer, xff, forwarded, trusted, Rule::NearestUntrusted)
}

/// The `ip` parameter's address: the first token before `,`, `|` or a space.
pub fn ip_param(value: &str) -> Option<String> {
    let token = value
        .split([',', '|', ' '])
        .map(str::trim)
        .find(|t| !t.is_empty())?;
    Some(token.to_owned())
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

    fn envelope(peer: &str, headers: &[(&str, &str)]) -> Envelope {
        Envelope {
            received_at_ms: 0,
            route: "/i".into(),
            method: "GET".into(),
            path: "/i".into(),
            query: None,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            body: Vec::new(),
            peer: Some(peer.into()),
            nuid: None,
        }
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| parse_cidr(s).unwrap()).collect()
    }

    /// (recorded, limiting) for a request from `peer` with `headers`, behind `trusted`.
    fn both(peer: &str, headers: &[(&str, &str)], trusted: &[&str]) -> (String, String) {
        let env = envelope(peer, headers);
        let trusted = nets(trusted);
        let values = |name: &'static str| {
            headers
                .iter()
                .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        };
        let limiting = limiting_client_ip(
            peer_ip(peer).unwrap(),
            values("x-forwarded-for"),
            values("forwarded"),
            &trusted,
        );
        (
            recorded_client_ip(&env, &trusted).unwrap(),
            limiting.to_string(),
        )
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_owned(), b.to_owned())
    }

    #[test]
    fn forged_headers_from_an_untrusted_peer_are_ignored() {
        for headers in [
            &[("x-forwarded-for", "6.6.6.6")][..],
            &[("forwarded", "for=6.6.6.6")],
            &[("X-Forwarded-For", "6.6.6.6, 10.0.0.1")],
        ] {
            assert_eq!(
                both("198.51.100.7:4000", headers, &["10.0.0.0/8"]),
                pair("198.51.100.7", "198.51.100.7"),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn behind_a_trusted_proxy_the_record_takes_the_first_hop_and_limits_the_nearest_untrusted() {
        let trusted = ["10.0.0.0/8"];
        let lb = "10.1.2.3:5000";
        // The client sent `X-Forwarded-For: 6.6.6.6`; the proxy appended the real address.
        let forged = [("x-forwarded-for", "6.6.6.6, 203.0.113.9")];
        assert_eq!(both(lb, &forged, &trusted), pair("6.6.6.6", "203.0.113.9"));
        // The same chain split over two headers is one list.
        let split = [
            ("x-forwarded-for", "6.6.6.6"),
            ("X-Forwarded-For", "203.0.113.9, 10.8.8.8"),
        ];
        assert_eq!(both(lb, &split, &trusted), pair("6.6.6.6", "203.0.113.9"));
        // Every hop trusted: both take the leftmost.
        let inner = [("x-forwarded-for", "10.9.9.9, 10.8.8.8")];
        assert_eq!(both(lb, &inner, &trusted), pair("10.9.9.9", "10.9.9.9"));
        // Forwarded, read the same way, and only without X-Forwarded-For.
        let fwd = [(
            "forwarded",
            r#"for="[2001:db8::7]:4711";proto=https, For=198.51.100.17"#,
        )];
        assert_eq!(
            both(lb, &fwd, &trusted),
            pair("2001:db8::7", "198.51.100.17")
        );
        let with_both = [
            ("forwarded", "for=192.0.2.1"),
            ("x-forwarded-for", "203.0.113.9"),
        ];
        assert_eq!(
            both(lb, &with_both, &trusted),
            pair("203.0.113.9", "203.0.113.9")
        );
        // Ports, brackets and IPv4-mapped addresses give the bare address.
        let ports = [(
            "x-forwarded-for",
            "[::ffff:203.0.113.9]:1234, 198.51.100.1:80",
        )];
        assert_eq!(
            both(lb, &ports, &trusted),
            pair("203.0.113.9", "198.51.100.1")
        );
    }

    #[test]
    fn a_hop_that_is_not_an_address_leaves_the_peer() {
        let trusted = ["10.0.0.0/8"];
        for chain in [
            "unknown",
            "<script>, 203.0.113.9",
            "203.0.113.9, proxy.internal",
            "203.0.113.9,, 1.2.3.4.5",
        ] {
            assert_eq!(
                both("10.1.2.3:5000", &[("x-forwarded-for", chain)], &trusted),
                pair("10.1.2.3", "10.1.2.3"),
                "{chain}"
            );
        }
        for fwd in ["for=unknown", "for=_hidden, for=203.0.113.9", "proto=https"] {
            assert_eq!(
                both("10.1.2.3:5000", &[("forwarded", fwd)], &trusted),
                pair("10.1.2.3", "10.1.2.3"),
                "{fwd}"
            );
        }
    }

    #[test]
    fn an_anonymous_request_records_no_address() {
        let env = envelope(
            "198.51.100.7:1",
            &[("SP-Anonymous", "*"), ("x-forwarded-for", "1.2.3.4")],
        );
        assert_eq!(recorded_client_ip(&env, &[]), None);
    }

    #[test]
    fn the_ip_parameter_keeps_its_first_token() {
        assert_eq!(ip_param("1.2.3.4, 5.6.7.8").as_deref(), Some("1.2.3.4"));
        assert_eq!(ip_param("1.2.3.4|x").as_deref(), Some("1.2.3.4"));
        assert_eq!(ip_param(" 1.2.3.4 5").as_deref(), Some("1.2.3.4"));
        assert_eq!(ip_param(" "), None);
    }
}
