//! Keys, rate limits and the client IP: who may store what, decided before the answer.
//!
//! [`Access`] holds everything here that a configuration reload may change (the key lists, the
//! rate limits and their settings, the trusted proxies and the JSON size limits). Requests read
//! an `Arc` snapshot of the current [`Policy`], so a [`Access::reload`] (the daemon's SIGHUP)
//! swaps it without stopping traffic; the token buckets themselves survive reloads.
//!
//! # Keys
//!
//! | Routes | Keys | Where the request carries one |
//! |---|---|---|
//! | Segment `/v1/*` | `segment.write_keys` | HTTP Basic username (password ignored), else `writeKey` in the body, else `?writeKey=` |
//! | pycolytics `/v1.0/event(s)` | `pycolytics.api_keys` | `api_key` in every event |
//! | `/collect*` | `collect.api_keys` | the `auth.header` header (default `X-API-Key`) |
//! | Snowplow | `auth.snowplow_keys` | the `auth.header` header |
//!
//! An empty list leaves its routes open. With keys configured, a missing or wrong key is 401
//! and nothing is stored. Keys are compared as SHA-256 digests in constant time against every
//! configured key (no early exit, no length leak); only digests are kept after start-up.
//!
//! # Client IP
//!
//! Per-IP limits count against the nearest hop that is not a trusted proxy, read from
//! `X-Forwarded-For` (else `Forwarded`) only when the TCP peer is in `enrich.trusted_proxies`,
//! so a client cannot choose its bucket by forging a header. The rule, and how it differs from
//! the address enrichment records, is in [`crate::wire::ip`].

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderName};
use ipnet::IpNet;
use sha2::{Digest as _, Sha256};

use crate::http::sources::{AuthConfig, CollectConfig, PycolyticsConfig, SegmentConfig};
use crate::ratelimit::{BucketSpec, Decision, LimitsConfig, RateLimiter};
use crate::wire::ip;

use super::error::HttpError;

/// Keys as SHA-256 digests, compared in constant time.
#[derive(Clone, Default)]
pub struct KeySet {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySet({} keys)", self.digests.len())
    }
}

impl KeySet {
    /// The set of `keys`.
    pub fn new(keys: &[String]) -> KeySet {
        KeySet {
            digests: keys.iter().map(|k| digest(k.as_bytes())).collect(),
        }
    }

    /// No key configured: the routes are open.
    pub fn is_open(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `presented` is one of the keys. Every configured key is compared, whatever
    /// matches, and each comparison takes the same time.
    pub fn accepts(&self, presented: &str) -> bool {
        let d = digest(presented.as_bytes());
        self.digests
            .iter()
            .fold(false, |found, k| found | constant_time_eq(k, &d))
    }

    /// Open, or `presented` is a key.
    pub fn admits(&self, presented: Option<&str>) -> bool {
        self.is_open() || presented.is_some_and(|k| self.accepts(k))
    }

    /// Open, or every one of `presented` is a key (a missing one never is; none at all is
    /// admitted). A batch usually repeats one key, so a key equal to the one before it, already
    /// accepted, is not hashed and compared again.
    pub fn admits_all<'a>(&self, presented: impl IntoIterator<Item = Option<&'a str>>) -> bool {
        if self.is_open() {
            return true;
        }
        let mut accepted: Option<&str> = None;
        for key in presented {
            let Some(key) = key else {
                return false;
            };
            if accepted != Some(key) {
                if !self.accepts(key) {
                    return false;
                }
                accepted = Some(key);
            }
        }
        true
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equality of two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// The sections the access rules are compiled from (see
/// [`crate::config::Config::access`]).
#[derive(Debug, Clone, Copy)]
pub struct AccessConfig<'a> {
    /// `[auth]`.
    pub auth: &'a AuthConfig,
    /// `[segment]`.
    pub segment: &'a SegmentConfig,
    /// `[pycolytics]`.
    pub pycolytics: &'a PycolyticsConfig,
    /// `[collect]`.
    pub collect: &'a CollectConfig,
    /// `[limits]`.
    pub limits: &'a LimitsConfig,
    /// `enrich.trusted_proxies`.
    pub trusted_proxies: &'a [String],
    /// `server.max_decompressed_bytes`.
    pub max_decompressed_bytes: u64,
}

/// Everything the access checks read, compiled from one configuration.
#[derive(Debug)]
pub struct Policy {
    /// `segment.write_keys`.
    pub segment_keys: KeySet,
    /// `pycolytics.api_keys`.
    pub pycolytics_keys: KeySet,
    /// `collect.api_keys`.
    pub collect_keys: KeySet,
    /// `auth.snowplow_keys`.
    pub snowplow_keys: KeySet,
    /// `auth.header`.
    pub key_header: HeaderName,
    /// `enrich.trusted_proxies`.
    pub trusted_proxies: Vec<IpNet>,
    /// `limits.per_ip` with `limits.burst`; `None` = off.
    pub per_ip: Option<BucketSpec>,
    /// `limits.per_key` with `limits.burst`; `None` = off.
    pub per_key: Option<BucketSpec>,
    /// `segment.max_event_bytes`.
    pub max_event_bytes: u64,
    /// `segment.max_batch_bytes`.
    pub max_batch_bytes: u64,
    /// `segment.max_batch_items`.
    pub max_batch_items: usize,
    /// `server.max_decompressed_bytes`.
    pub max_decompressed_bytes: u64,
}

impl Policy {
    /// Compiles the relevant sections. Entries that fail validation (which start-up runs first)
    /// are skipped: an unparseable proxy network is not trusted, an invalid header name falls
    /// back to the default.
    pub fn new(config: &AccessConfig<'_>) -> Policy {
        let limits = &config.limits;
        Policy {
            segment_keys: KeySet::new(&config.segment.write_keys),
            pycolytics_keys: KeySet::new(&config.pycolytics.api_keys),
            collect_keys: KeySet::new(&config.collect.api_keys),
            snowplow_keys: KeySet::new(&config.auth.snowplow_keys),
            key_header: HeaderName::from_bytes(config.auth.header.as_bytes())
                .unwrap_or_else(|_| HeaderName::from_static("x-api-key")),
            trusted_proxies: config
                .trusted_proxies
                .iter()
                .filter_map(|p| ip::parse_cidr(p).ok())
                .collect(),
            per_ip: limits.per_ip.spec(limits.burst),
            per_key: limits.per_key.spec(limits.burst),
            max_event_bytes: config.segment.max_event_bytes.bytes(),
            max_batch_bytes: config.segment.max_batch_bytes.bytes(),
            max_batch_items: config.segment.max_batch_items,
            max_decompressed_bytes: config.max_decompressed_bytes,
        }
    }

    /// The sections whose key list is empty (their routes accept requests without a key).
    pub fn open_sections(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (name, keys) in [
            ("segment.write_keys", &self.segment_keys),
            ("pycolytics.api_keys", &self.pycolytics_keys),
            ("collect.api_keys", &self.collect_keys),
        ] {
            if keys.is_open() {
                out.push(name);
            }
        }
        out
    }
}

/// The access rules and the rate limiters of one application; see the module docs.
#[derive(Debug)]
pub struct Access {
    policy: RwLock<Arc<Policy>>,
    per_ip: RateLimiter,
    per_key: RateLimiter,
}

impl Access {
    /// The rules of `config`, with empty rate limiters sized by `limits.max_buckets` (a reload
    /// does not resize them).
    pub fn new(config: &AccessConfig<'_>) -> Access {
        Access {
            policy: RwLock::new(Arc::new(Policy::new(config))),
            per_ip: RateLimiter::new(config.limits.max_buckets),
            per_key: RateLimiter::new(config.limits.max_buckets),
        }
    }

    /// Swaps in the keys, limits, trusted proxies and size limits of `config` (already
    /// validated). Requests in flight finish under the rules they started with; the token
    /// buckets are kept.
    pub fn reload(&self, config: &AccessConfig<'_>) {
        let policy = Arc::new(Policy::new(config));
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    /// The current rules.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes a token from the client IP's bucket (when `limits.per_ip` is on; the client IP is
    /// only worked out then).
    pub fn limit_client(
        &self,
        policy: &Policy,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Result<(), HttpError> {
        let Some(spec) = policy.per_ip else {
            return Ok(());
        };
        let Some(ip) = client_ip(peer, headers, &policy.trusted_proxies) else {
            return Ok(());
        };
        match self.per_ip.check(spec, &ip, Instant::now()) {
            Decision::Allowed => Ok(()),
            Decision::Limited { retry_after } => Err(HttpError::RateLimited {
                retry_after,
                scope: "client IP",
                setting: "per_ip",
            }),
        }
    }

    /// Takes a token from the key's bucket (when `limits.per_key` is on and a key was given).
    pub fn limit_key(&self, policy: &Policy, key: Option<&str>) -> Result<(), HttpError> {
        let (Some(spec), Some(key)) = (policy.per_key, key) else {
            return Ok(());
        };
        match self.per_key.check(spec, key, Instant::now()) {
            Decision::Allowed => Ok(()),
            Decision::Limited { retry_after } => Err(HttpError::RateLimited {
                retry_after,
                scope: "key",
                setting: "per_key",
            }),
        }
    }
}

/// The client's IP address for rate limiting (see the module docs).
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let values = |name| {
        headers
            .get_all(name)
            .into_iter()
            .filter_map(|v| v.to_str().ok())
    };
    Some(ip::limiting_client_ip(
        peer?.ip(),
        values(header::HeaderName::from_static("x-forwarded-for")),
        values(header::FORWARDED),
        trusted,
    ))
}

/// The write key of an `Authorization: Basic` header (the username), if there is one.
pub fn basic_username(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    (!user.is_empty()).then(|| user.to_owned())
}

/// `?writeKey=` (percent-decoded), if present and non-empty.
pub fn query_write_key(query: Option<&str>) -> Option<String> {
    let raw = super::collector::query_param(query?, "writeKey")?;
    let key = crate::wire::text::form_decode_lossy(raw);
    (!key.is_empty()).then_some(key)
}

/// The key in the `auth.header` header, if present and text.
pub fn header_key<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| ip::parse_cidr(s).unwrap()).collect()
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn a_key_set_accepts_only_its_keys_and_an_empty_one_is_open() {
        let keys = KeySet::new(&["k1".into(), "k2".into()]);
        assert!(keys.accepts("k2") && !keys.accepts("k3") && !keys.accepts(""));
        assert!(!keys.admits(None));
        assert!(keys.admits(Some("k1")));
        let open = KeySet::new(&[]);
        assert!(open.admits(None) && open.admits(Some("anything")));
    }

    #[test]
    fn every_key_of_a_batch_must_be_accepted_and_a_missing_one_never_is() {
        let keys = KeySet::new(&["k1".into(), "k2".into()]);
        assert!(keys.admits_all([Some("k1"), Some("k1"), Some("k2"), Some("k1")]));
        assert!(keys.admits_all(std::iter::empty()));
        assert!(!keys.admits_all([Some("k1"), Some("k1"), Some("nope")]));
        assert!(!keys.admits_all([Some("k1"), None]));
        assert!(KeySet::new(&[]).admits_all([None, Some("anything")]));
    }

    #[test]
    fn basic_auth_yields_the_username_whatever_the_password() {
        // base64("wk:") and base64("wk:pw")
        assert_eq!(
            basic_username(&headers(&[("authorization", "Basic d2s6")])).as_deref(),
            Some("wk")
        );
        assert_eq!(
            basic_username(&headers(&[("authorization", "basic d2s6cHc=")])).as_deref(),
            Some("wk")
        );
        assert_eq!(
            basic_username(&headers(&[("authorization", "Bearer x")])),
            None
        );
        assert_eq!(
            basic_username(&headers(&[("authorization", "Basic !!")])),
            None
        );
        assert_eq!(
            query_write_key(Some("a=1&writeKey=k%2B1")).as_deref(),
            Some("k+1")
        );
        assert_eq!(query_write_key(Some("writeKey=")), None);
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let peer: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9")]);
        // Untrusted peer: the header is ignored.
        assert_eq!(
            client_ip(Some(peer), &h, &nets(&["127.0.0.1/32"])),
            Some("10.1.2.3".parse().unwrap())
        );
        // Trusted peer: the nearest untrusted hop (what the proxy appended), not the forged one.
        assert_eq!(
            client_ip(Some(peer), &h, &nets(&["10.0.0.0/8"])),
            Some("203.0.113.9".parse().unwrap())
        );
        // Every hop trusted: the leftmost.
        let inner = headers(&[("x-forwarded-for", "10.9.9.9, 10.8.8.8")]);
        assert_eq!(
            client_ip(Some(peer), &inner, &nets(&["10.0.0.0/8"])),
            Some("10.9.9.9".parse().unwrap())
        );
        let fwd = headers(&[("forwarded", "for=\"[2001:db8::1]:443\";proto=https")]);
        assert_eq!(
            client_ip(Some(peer), &fwd, &nets(&["10.0.0.0/8"])),
            Some("2001:db8::1".parse().unwrap())
        );
        let junk = headers(&[("x-forwarded-for", "unknown")]);
        assert_eq!(
            client_ip(Some(peer), &junk, &nets(&["10.0.0.0/8"])),
            Some("10.1.2.3".parse().unwrap())
        );
    }
}
