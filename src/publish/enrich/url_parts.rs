//! Page and referrer URLs split into Snowplow's parts (scheme, host, port, path, query,
//! fragment).
//!
//! The parts are those of the WHATWG parse the `url` crate does. Most tracked URLs are plain
//! `http(s)://host[:port]/path?query#fragment` text that such a parse returns unchanged, piece by
//! piece; for those, [`split`] cuts the text itself ([`plain`]), which costs a tenth of a full
//! parse (the parse was about a tenth of the publisher's instructions per event). Anything the
//! parse could rewrite — upper-case or international hosts, hosts that may be IPv4 numbers, dot
//! segments, characters it percent-encodes, tabs or newlines, user info, backslashes — goes to
//! `url::Url::parse`. A test holds [`plain`] to the full parse on generated URLs.

use std::borrow::Cow;

use super::tsv_safe;
use crate::event::Text;

/// Parts of a URL, Snowplow style (port defaults to 443 for https, else 80).
pub(crate) struct UrlParts {
    pub scheme: Option<Text>,
    pub host: Option<Text>,
    pub port: Option<i64>,
    pub path: Option<Text>,
    pub query: Option<Text>,
    pub fragment: Option<Text>,
}

/// A URL's parts and its query text (for campaign attribution), or why it does not parse.
pub(crate) fn split(u: &str) -> Result<(UrlParts, Option<Cow<'_, str>>), url::ParseError> {
    if let Some(p) = plain(u) {
        let port = p.port.unwrap_or(if p.scheme == "https" { 443 } else { 80 });
        let parts = UrlParts {
            scheme: tsv_safe(p.scheme),
            host: tsv_safe(p.host),
            port: Some(i64::from(port)),
            path: tsv_safe(p.path),
            query: p.query.and_then(tsv_safe),
            fragment: p.fragment.and_then(tsv_safe),
        };
        return Ok((parts, p.query.map(Cow::Borrowed)));
    }
    let u = url::Url::parse(u)?;
    let host = u
        .host_str()
        .and_then(|h| tsv_safe(h.trim_matches(['[', ']'])));
    let port = host.as_ref().map(|_| {
        i64::from(
            u.port()
                .unwrap_or(if u.scheme() == "https" { 443 } else { 80 }),
        )
    });
    let parts = UrlParts {
        scheme: tsv_safe(u.scheme()),
        host,
        port,
        path: tsv_safe(u.path()),
        query: u.query().and_then(tsv_safe),
        fragment: u.fragment().and_then(tsv_safe),
    };
    Ok((parts, u.query().map(|q| Cow::Owned(q.to_owned()))))
}

/// The pieces of a URL that a WHATWG parse returns exactly as written.
#[derive(Debug, PartialEq)]
pub(crate) struct Plain<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    /// As written (the parse drops a scheme's default port; the parts put it back).
    pub port: Option<u16>,
    /// `/` when the URL has none.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub fragment: Option<&'a str>,
}

/// `u` cut into its pieces when it is `http(s)://host[:port][/path][?query][#fragment]` with
/// nothing a WHATWG parse would rewrite; `None` otherwise (the caller then parses it).
pub(crate) fn plain(u: &str) -> Option<Plain<'_>> {
    let (scheme, rest) = if let Some(rest) = u.strip_prefix("https://") {
        ("https", rest)
    } else {
        ("http", u.strip_prefix("http://")?)
    };
    let authority_end = rest
        .bytes()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => {
            if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (host, Some(port.parse::<u16>().ok()?))
        }
        None => (authority, None),
    };
    if !plain_host(host) {
        return None;
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (rest, None),
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let path_ok = path.bytes().all(|b| PATH.contains(b)) && !has_dot_segment(path);
    let query_ok = query.is_none_or(|q| q.bytes().all(|b| QUERY.contains(b)));
    let fragment_ok = fragment.is_none_or(|f| f.bytes().all(|b| FRAGMENT.contains(b)));
    if !(path_ok && query_ok && fragment_ok) {
        return None;
    }
    Some(Plain {
        scheme,
        host,
        port,
        path: if path.is_empty() { "/" } else { path },
        query,
        fragment,
    })
}

/// Lower-case ASCII labels of letters, digits and `-`, none empty, none punycode (`xn--`, which
/// the parse validates), the last starting with a letter (so the host cannot be an IPv4 number,
/// which the parse would rewrite, e.g. `0x7f.1` to `127.0.0.1`).
fn plain_host(host: &str) -> bool {
    let mut last_starts_with = None;
    for label in host.as_bytes().split(|&b| b == b'.') {
        let name = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
        if label.is_empty() || label.starts_with(b"xn--") || !label.iter().all(name) {
            return false;
        }
        last_starts_with = Some(label[0]);
    }
    last_starts_with.is_some_and(|b| b.is_ascii_lowercase())
}

/// Whether a path segment is `.` or `..`, written plainly or percent-encoded (`%2e`), which the
/// parse removes or resolves.
fn has_dot_segment(path: &str) -> bool {
    let dot = |s: Option<&str>| s.is_some_and(|s| s == "." || s.eq_ignore_ascii_case("%2e"));
    path.split('/').any(|segment| {
        let two_dots = |at: usize| dot(segment.get(..at)) && dot(segment.get(at..));
        dot(Some(segment)) || two_dots(1) || two_dots(3)
    })
}

/// A set of bytes, as a 128-bit mask over ASCII (nothing above 0x7f is in any set).
struct ByteSet(u128);

impl ByteSet {
    const fn of(chars: &[u8]) -> ByteSet {
        let mut mask = 0u128;
        let mut i = 0;
        while i < chars.len() {
            mask |= 1 << chars[i];
            i += 1;
        }
        ByteSet(mask)
    }

    const fn with(self, chars: &[u8]) -> ByteSet {
        ByteSet(self.0 | ByteSet::of(chars).0)
    }

    fn contains(&self, b: u8) -> bool {
        b < 128 && self.0 & (1 << b) != 0
    }
}

/// Letters, digits and the punctuation a parse leaves alone in every part of the URL: RFC 3986's
/// unreserved and sub-delimiters less `'` (percent-encoded in the queries of http(s) URLs),
/// plus `:`, `@` and `%` (kept as written, valid escape or not).
const COMMON: ByteSet =
    ByteSet::of(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&()*+,;=:@%");
/// A path's bytes (not `\`, which http(s) URLs treat as `/`).
const PATH: ByteSet = COMMON.with(b"/'");
/// A query's bytes.
const QUERY: ByteSet = COMMON.with(b"/?");
/// A fragment's bytes.
const FRAGMENT: ByteSet = COMMON.with(b"/?'");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a full parse gives for the pieces [`plain`] returns.
    fn parsed(u: &str) -> Option<Plain<'static>> {
        let p = url::Url::parse(u).ok()?;
        let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
        Some(Plain {
            scheme: leak(p.scheme()),
            host: leak(p.host_str()?),
            port: p.port(),
            path: leak(p.path()),
            query: p.query().map(leak),
            fragment: p.fragment().map(leak),
        })
    }

    /// `plain` agrees with the parse on `u` (the port only once defaults are put back).
    fn agrees(u: &str) -> Result<(), TestCaseError> {
        if let Some(p) = plain(u) {
            let full = parsed(u);
            prop_assert!(full.is_some(), "{u:?}: plain took it, the parse refused it");
            let full = full.unwrap();
            let default = if p.scheme == "https" { 443 } else { 80 };
            prop_assert_eq!(
                p.port.unwrap_or(default),
                full.port.unwrap_or(default),
                "{:?}",
                u
            );
            prop_assert_eq!(
                Plain { port: None, ..p },
                Plain { port: None, ..full },
                "{:?}",
                u
            );
        }
        Ok(())
    }

    #[test]
    fn plain_urls_are_cut_as_written() {
        let p = plain("https://shop.example.com:8443/a/b;c?utm_source=x&q=%20#top").unwrap();
        assert_eq!(
            p,
            Plain {
                scheme: "https",
                host: "shop.example.com",
                port: Some(8443),
                path: "/a/b;c",
                query: Some("utm_source=x&q=%20"),
                fragment: Some("top"),
            }
        );
        assert_eq!(plain("http://a.example").unwrap().path, "/");
        assert_eq!(plain("http://a.example?x").unwrap().query, Some("x"));
    }

    #[test]
    fn what_a_parse_would_rewrite_is_left_to_it() {
        for u in [
            "HTTP://a.example/",
            "http://A.example/",
            "http://0x7f.1/",
            "http://127.0.0.1/",
            "http://a.example./",
            "http://a..example/",
            "http://xn--nxasmq6b.example/",
            "http://b\u{fc}cher.example/",
            "http://user@a.example/",
            "http://a.example:/",
            "http://a.example:99999/",
            "http://a.example/./x",
            "http://a.example/a/../b",
            "http://a.example/%2E%2e/b",
            "http://a.example/a\\b",
            "http://a.example/a b",
            "http://a.example/a\tb",
            "http://a.example/?q='",
            "http://a.example/caf\u{e9}",
            "http:/a.example/",
            "ftp://a.example/",
            " http://a.example/",
        ] {
            assert_eq!(plain(u), None, "{u:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// Whatever `plain` takes, a full parse gives the same pieces.
        #[test]
        fn plain_agrees_with_a_full_parse(
            scheme in prop::sample::select(vec!["http://", "https://", "HTTP://", "http:/", "http:\\\\"]),
            host in "([a-z0-9-]{0,4}|xn--[a-z]{1,3}|0x[0-9]{1,2}|[A-Z]{1,2}|\u{e9})(\\.([a-z0-9-]{0,4}|[0-9]{1,3}|xn--a)){0,3}\\.?",
            port in prop::option::of("[0-9]{0,6}"),
            path in "(/([a-zA-Z0-9._~!$&'()*+,;=:@%-]|%2[eE]|\\.\\.|[\\\\ \t`{}<>\"|^\u{e9}]){0,5}){0,3}",
            query in prop::option::of("[a-zA-Z0-9._~!$&'()*+,;=:@%/?#\\\\ `{}<>\"|^\u{e9}-]{0,8}"),
            fragment in prop::option::of("[a-zA-Z0-9._~!$&'()*+,;=:@%/?#\\\\ `{}<>\"|^\u{e9}-]{0,8}"),
        ) {
            let mut u = format!("{scheme}{host}");
            if let Some(port) = port {
                u.push(':');
                u.push_str(&port);
            }
            u.push_str(&path);
            if let Some(q) = query {
                u.push('?');
                u.push_str(&q);
            }
            if let Some(f) = fragment {
                u.push('#');
                u.push_str(&f);
            }
            agrees(&u)?;
        }

        /// The same on URLs whose scheme and host `plain` always takes, so every case tests the
        /// path, query and fragment rules.
        #[test]
        fn plain_agrees_with_a_full_parse_on_paths_queries_and_fragments(
            scheme in prop::sample::select(vec!["http://", "https://"]),
            host in "[a-z][a-z0-9-]{0,4}(\\.[a-z][a-z0-9-]{0,4}){0,2}",
            rest in "[a-zA-Z0-9._~!$&'()*+,;=:@%/?#\\ `{}<>\"|^\t\u{e9}\\[\\]-]{0,16}",
        ) {
            agrees(&format!("{scheme}{host}{rest}"))?;
        }
    }
}
