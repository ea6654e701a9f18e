//! Snowplow's IP anonymisation (`[enrich.anonymise_ip]`): trailing octets and groups become `x`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
