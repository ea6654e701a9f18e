//! Collector behaviour of the tracking routes: CORS, the network-user-id cookie, the
//! do-not-track cookie, `/r/tp2` redirects, custom path aliases, `/robots.txt`,
//! `/crossdomain.xml` and the payload size rule, as Snowplow's stream collector 3.x has them
//! (`Routes.scala`, `Service.scala` and `reference.conf` in snowplow/stream-collector).
//!
//! [`CollectorConfig`] is the documented `[collector]` section; [`Collector`] is its compiled
//! form, built once at start-up so that a request only does lookups: header values are
//! precomputed, the do-not-track pattern is compiled once (and only consulted when enabled), and
//! aliases are only looked up for paths no built-in route matches.
//!
//! # The network user id (`sp` cookie)
//!
//! Resolution, first match wins (the reference collector's order):
//!
//! 1. the request has an `SP-Anonymous` header (any value) → `00000000-0000-0000-0000-000000000000`.
//!    No new cookie is set; if the request carried the cookie, the answer clears it (empty value,
//!    `Expires` a year ago). The stored request loses its `Cookie`, `X-Forwarded-For`,
//!    `X-Real-Ip` and `Forwarded` headers and its peer address (stored as unknown, `None`).
//! 2. the `nuid` query parameter;
//! 3. the request's cookie named `collector.cookie.name`;
//! 4. a new random v4 UUID.
//!
//! Values from 2 and 3 are only used when they are valid cookie values (RFC 6265 `cookie-octet`s,
//! at most [`MAX_NUID_BYTES`] bytes), so nothing a client sends can inject cookie attributes.
//! The resolved id is stored in [`crate::envelope::Envelope::nuid`] and sent back in
//! `Set-Cookie` on every successful tracking answer (sliding expiry). With
//! `collector.cookie.enabled = false` no cookie is read or set and the stored `nuid` is `None`
//! (except for `SP-Anonymous` requests, which always store the zero id).
//!
//! # Do not track
//!
//! With `collector.do_not_track_cookie.enabled`, a request whose cookie `name` fully matches the
//! regular expression `value` is answered normally (pixel, `ok`, redirect) but **not stored**,
//! and gets no `Set-Cookie`.
//!
//! # CORS
//!
//! Every tracking answer (successful or not) and every preflight echoes the request's `Origin`
//! in `Access-Control-Allow-Origin` (`*` when there is none or it is `null`), with
//! `Access-Control-Allow-Credentials: true` and `Vary: Origin`. With a non-empty
//! `collector.cors.allowed_origins`, an `Origin` outside the list gets neither header: the browser
//! hides the answer from the page, but the request **is still stored** (the tracker cannot read
//! the answer and may retry, which is the price of the allow-list; trackers on listed origins are
//! unaffected).
//!
//! # Redirects
//!
//! `/r/{anything}` is off by default (404 `redirects disabled`, nothing stored). With
//! `collector.redirects.enabled`, `GET`/`HEAD`/`POST /r/tp2?u=<url>&…` stores the request and
//! answers 302 `Location: <url>` when `collector.redirects.allowed_domains` is empty or lists the
//! target's host or a parent domain of it. A missing or unusable `u` (not an absolute `http`/`https`
//! URL with a host) or a target outside the list gets 400 and nothing is stored: trackers never
//! retry a 400.
//!
//! The target's host is the one a browser would go to: `u` is read by the `url` crate, which
//! implements the WHATWG URL standard browsers follow, so userinfo (`https://shop.example@evil`
//! goes to `evil`), `\` (a path separator in `http`/`https`), ports, case and IDNA
//! (`ｓｈｏｐ.example` is `shop.example`) are all resolved as the browser resolves them before the
//! host is compared with the list. Spaces and control characters, which a parser would silently
//! strip, and `http:/x` or `https:///x`, which it would repair into `https://x/`, are refused
//! instead. `Location` is `u` as sent when it is printable ASCII without `\`, else the parser's
//! serialisation of it, so the browser never has to reinterpret a form we did not check.
//!
//! A custom path alias to `/r/tp2` redirects even when the default route is disabled (as in the
//! reference collector): configuring the alias is the opt-in.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use crate::config::units::{outside, ByteSize, HumanDuration, Violation};

use crate::wire::route::Route;
use crate::wire::text::form_decode_lossy;

/// The network user id stored for `SP-Anonymous` requests.
pub const ANONYMOUS_NUID: &str = "00000000-0000-0000-0000-000000000000";
/// The request header that asks for server-side anonymisation.
pub const SP_ANONYMOUS: &str = "sp-anonymous";
/// [`SP_ANONYMOUS`] as a header name, so the lookup does not parse it per request.
const SP_ANONYMOUS_HEADER: http::HeaderName = http::HeaderName::from_static(SP_ANONYMOUS);
/// The longest `nuid` parameter or cookie value that is used as the network user id.
pub const MAX_NUID_BYTES: usize = 128;
/// Headers a preflight always allows (the reference collector's fixed list).
pub const BASE_ALLOW_HEADERS: &str = "Content-Type, SP-Anonymous";
/// Request headers removed from what is stored for `SP-Anonymous` requests (lower-case).
pub const ANONYMOUS_STRIPPED_HEADERS: [&str; 4] =
    ["cookie", "x-forwarded-for", "x-real-ip", "forwarded"];
/// The body of `/robots.txt`: no crawler should index or follow the collector.
pub const ROBOTS_TXT: &str = "User-agent: *\nDisallow: /\n\nUser-agent: Googlebot\nDisallow: /\n\n\
                              User-agent: AdsBot-Google\nDisallow: /\n";

const DAY: Duration = Duration::from_secs(86_400);

// ---------------------------------------------------------------------------------------------
// The `[collector]` section.
// ---------------------------------------------------------------------------------------------

/// The `[collector]` section: how tracking routes behave beyond storing the request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Largest stored request the publisher processes; a larger one (still at most
    /// `server.max_body_bytes`, which answers 413 above it) is accepted with the normal answer
    /// and dead-lettered as a `size_violation` when published. Default `1MiB`; 1KiB to 64MiB. A
    /// value above `server.max_body_bytes` has no effect: such bodies never get in.
    pub max_payload_bytes: ByteSize,
    /// CORS answers.
    pub cors: CorsConfig,
    /// The network-user-id cookie.
    pub cookie: CookieConfig,
    /// The opt-out cookie: matching requests are answered but not stored.
    pub do_not_track_cookie: DoNotTrackConfig,
    /// `/r/tp2` redirects.
    pub redirects: RedirectConfig,
    /// Custom path aliases: `"/com.acme/track" = "/com.snowplowanalytics.snowplow/tp2"`. Keys are
    /// two-segment paths (`/vendor/version`) that no built-in route uses; values are one of
    /// `/com.snowplowanalytics.snowplow/tp2`, `/com.snowplowanalytics.snowplow/tp1`, `/i`,
    /// `/ice.png`, `/r/tp2`. The stored route and path are the value's. Default empty.
    pub paths: BTreeMap<String, String>,
    /// `GET /crossdomain.xml` (a Flash cross-domain policy).
    pub cross_domain: CrossDomainConfig,
    /// A directory whose files are served at `/static/{name}` (GET, HEAD), e.g. a self-hosted
    /// copy of the Snowplow JavaScript tracker (`sp.js`), so sites load it from their own
    /// collector's domain. Only files directly in it whose names are letters, digits, `.`, `-`
    /// and `_` (not starting with `.`). Default empty: `/static/` is not served.
    pub static_dir: PathBuf,
    /// Largest file `/static/` serves (a larger one answers 404 and is logged). Default `4MiB`;
    /// 1KiB to 64MiB.
    pub static_max_file_bytes: ByteSize,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            max_payload_bytes: ByteSize(1 << 20),
            cors: CorsConfig::default(),
            cookie: CookieConfig::default(),
            do_not_track_cookie: DoNotTrackConfig::default(),
            redirects: RedirectConfig::default(),
            paths: BTreeMap::new(),
            cross_domain: CrossDomainConfig::default(),
            static_dir: PathBuf::new(),
            static_max_file_bytes: ByteSize(4 << 20),
        }
    }
}

/// `[collector.cors]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins whose requests get `Access-Control-Allow-Origin`. Empty (the default) echoes any
    /// origin. An entry with a scheme (`https://shop.example`, `http://localhost:8080`) matches
    /// that exact origin; a bare domain (`example.com`) matches any origin whose host is that
    /// domain or a subdomain of it. Requests from other origins are still stored.
    pub allowed_origins: Vec<String>,
    /// Request headers a preflight allows besides `Content-Type` and `SP-Anonymous`, e.g. a
    /// tracker's `customHeaders` or `traceparent`. Default empty; each must be a header name.
    pub extra_allowed_headers: Vec<String>,
    /// `Access-Control-Max-Age` of preflight answers (how long browsers cache them). Default
    /// `1h`; 0s to 24h, sent in whole seconds.
    pub max_age: HumanDuration,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            extra_allowed_headers: Vec::new(),
            max_age: HumanDuration(Duration::from_secs(3600)),
        }
    }
}

/// The cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SameSite {
    /// Sent on cross-site requests too (what a collector on its own domain needs; browsers
    /// require `Secure` with it).
    None,
    /// Sent on top-level navigations to the collector's site.
    Lax,
    /// Only sent on same-site requests.
    Strict,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            SameSite::None => "None",
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        }
    }
}

/// `[collector.cookie]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CookieConfig {
    /// Read and set the network-user-id cookie. Default `true`.
    pub enabled: bool,
    /// The cookie's name. Default `sp`; a cookie-name token (letters, digits, `!#$%&'*+-.^_`|~`).
    pub name: String,
    /// How long the cookie lives after the last tracking request (sliding). Default 365 days;
    /// 1s to 3650 days.
    pub expiration: HumanDuration,
    /// Candidate `Domain` attributes: the first that equals, or is a parent domain of, the host
    /// of the request's `Origin` is used. Default empty.
    pub domains: Vec<String>,
    /// The `Domain` attribute when no entry of `domains` matches; unset (the default) sends no
    /// `Domain` (a host-only cookie).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_domain: Option<String>,
    /// Send the `Secure` attribute. Default `true` (browsers drop `SameSite=None` cookies without
    /// it, so `false` only suits plain-HTTP development).
    pub secure: bool,
    /// Send the `HttpOnly` attribute. Default `true`.
    pub http_only: bool,
    /// `SameSite`: `"None"` (default), `"Lax"` or `"Strict"`.
    pub same_site: SameSite,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            enabled: true,
            name: "sp".into(),
            expiration: HumanDuration(365 * DAY),
            domains: Vec::new(),
            fallback_domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::None,
        }
    }
}

/// `[collector.do_not_track_cookie]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DoNotTrackConfig {
    /// Honour the cookie. Default `false`.
    pub enabled: bool,
    /// The cookie's name; required (non-empty) when enabled.
    pub name: String,
    /// A regular expression the whole cookie value must match (e.g. `"1|true"`); required
    /// (non-empty) when enabled. An invalid expression is a load error naming this key.
    pub value: Pattern,
}

/// `[collector.redirects]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedirectConfig {
    /// Serve `/r/tp2` (and `/r/{anything}`). Default `false` (404 `redirects disabled`).
    pub enabled: bool,
    /// Target hosts a redirect may go to: each entry allows that domain and its subdomains.
    /// Empty (the default) allows any target — an open redirect; list your domains.
    pub allowed_domains: Vec<String>,
}

/// `[collector.cross_domain]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CrossDomainConfig {
    /// Serve `/crossdomain.xml`. Default `false` (404).
    pub enabled: bool,
    /// One `allow-access-from` entry per domain. Default `["*"]`; domains with optional `*.`
    /// wildcards.
    pub domains: Vec<String>,
    /// The entries' `secure` attribute (HTTPS only). Default `true`.
    pub secure: bool,
}

impl Default for CrossDomainConfig {
    fn default() -> Self {
        CrossDomainConfig {
            enabled: false,
            domains: vec!["*".into()],
            secure: true,
        }
    }
}

/// A regular expression matched against a whole value; written as its source text.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Compiles `source`, anchored so it must match the whole value.
    pub fn new(source: &str) -> Result<Pattern, regex::Error> {
        Ok(Pattern {
            source: source.to_owned(),
            regex: regex::Regex::new(&format!("^(?:{source})$"))?,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the whole of `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

impl Default for Pattern {
    fn default() -> Self {
        Pattern::new("").expect("the empty pattern compiles")
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.source).finish()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        Pattern::new(&source).map_err(|e| {
            serde::de::Error::custom(format!("`{source}` is not a regular expression: {e}"))
        })
    }
}

impl CollectorConfig {
    /// Values outside their documented bounds, each naming its key.
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut check = |ok: bool, key: &'static str, message: String| {
            if !ok {
                out.push(Violation { key, message });
            }
        };

        let p = self.max_payload_bytes;
        if let Some(m) = outside(p, ByteSize(1 << 10), ByteSize(64 << 20)) {
            check(false, "collector.max_payload_bytes", m);
        }
        if let Some(m) = outside(
            self.static_max_file_bytes,
            ByteSize(1 << 10),
            ByteSize(64 << 20),
        ) {
            check(false, "collector.static_max_file_bytes", m);
        }
        check(
            self.static_dir.as_os_str().is_empty() || self.static_dir.is_dir(),
            "collector.static_dir",
            format!("{} is not a directory", self.static_dir.display()),
        );

        let c = &self.cors;
        for o in &c.allowed_origins {
            check(
                OriginRule::parse(o).is_some(),
                "collector.cors.allowed_origins",
                format!(
                    "`{o}` is neither an origin (`https://shop.example`, `http://localhost:8080`) \
                     nor a domain (`example.com`)"
                ),
            );
        }
        for h in &c.extra_allowed_headers {
            check(
                http::HeaderName::from_bytes(h.as_bytes()).is_ok(),
                "collector.cors.extra_allowed_headers",
                format!("`{h}` is not a header name"),
            );
        }
        if let Some(m) = outside(c.max_age, HumanDuration(Duration::ZERO), HumanDuration(DAY)) {
            check(false, "collector.cors.max_age", m);
        }

        let k = &self.cookie;
        check(
            !k.name.is_empty() && k.name.bytes().all(is_token_byte),
            "collector.cookie.name",
            format!(
                "`{}` is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)",
                k.name
            ),
        );
        let (day, ten_years) = (
            HumanDuration(Duration::from_secs(1)),
            HumanDuration(3650 * DAY),
        );
        if let Some(m) = outside(k.expiration, day, ten_years) {
            check(false, "collector.cookie.expiration", m);
        }
        for d in &k.domains {
            check(
                is_domain(d),
                "collector.cookie.domains",
                format!("`{d}` is not a domain name (e.g. `example.com`)"),
            );
        }
        if let Some(d) = &k.fallback_domain {
            check(
                is_domain(d),
                "collector.cookie.fallback_domain",
                format!("`{d}` is not a domain name (e.g. `example.com`)"),
            );
        }

        let t = &self.do_not_track_cookie;
        if t.enabled {
            check(
                !t.name.is_empty() && t.name.bytes().all(is_token_byte),
                "collector.do_not_track_cookie.name",
                format!(
                    "`{}` is not a cookie name; set the opt-out cookie's name when enabled",
                    t.name
                ),
            );
            check(
                !t.value.as_str().is_empty(),
                "collector.do_not_track_cookie.value",
                "is empty; set a regular expression the opt-out cookie's value must match".into(),
            );
        }

        for d in &self.redirects.allowed_domains {
            check(
                is_domain(d),
                "collector.redirects.allowed_domains",
                format!("`{d}` is not a domain name (e.g. `example.com`)"),
            );
        }

        for (from, to) in &self.paths {
            check(
                is_two_segment_path(from),
                "collector.paths",
                format!("alias `{from}` is not a two-segment path like `/com.acme/track`"),
            );
            check(
                !is_builtin_path(from),
                "collector.paths",
                format!("alias `{from}` would hide a built-in route; pick another path"),
            );
            check(
                Route::ALIAS_TARGETS.iter().any(|t| t.template() == to),
                "collector.paths",
                format!(
                    "alias `{from}` maps to `{to}`, which is not one of {}",
                    Route::ALIAS_TARGETS.map(Route::template).join(", ")
                ),
            );
        }

        let x = &self.cross_domain;
        check(
            !x.enabled || !x.domains.is_empty(),
            "collector.cross_domain.domains",
            "is empty; list at least one domain (`*` allows any)".into(),
        );
        for d in &x.domains {
            check(
                d == "*" || is_domain(d.strip_prefix("*.").unwrap_or(d)),
                "collector.cross_domain.domains",
                format!("`{d}` is not a domain (`*`, `*.example.com` or `example.com`)"),
            );
        }
        out
    }
}

/// RFC 7230 `tchar`, which is also what RFC 6265 allows in a cookie name.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 6265 `cookie-octet`: what a cookie value may contain unquoted.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

/// A DNS name (or IP literal) of dot-separated labels of letters, digits, `-` and `_`.
fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `/vendor/version`: two non-empty segments.
fn is_two_segment_path(p: &str) -> bool {
    let Some(rest) = p.strip_prefix('/') else {
        return false;
    };
    match rest.split_once('/') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && !b.contains('/')
                && p.bytes()
                    .all(|c| c.is_ascii_graphic() && c != b'?' && c != b'#')
        }
        None => false,
    }
}

/// A path a built-in route or the redirect route already answers.
fn is_builtin_path(p: &str) -> bool {
    super::resolve(&http::Method::GET, p).is_ok()
        || super::resolve(&http::Method::POST, p).is_ok()
        || p.starts_with("/r/")
        || p.starts_with("/collect/")
        || p == Route::Robots.template()
        || p == Route::CrossDomain.template()
}

// ---------------------------------------------------------------------------------------------
// The compiled form.
// ---------------------------------------------------------------------------------------------

/// How an `Origin` is matched by `collector.cors.allowed_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginRule {
    /// `scheme://host[:port]`, compared case-insensitively with the whole origin.
    Exact(String),
    /// A domain: the origin's host equals it or ends with `.domain`.
    Domain(String),
}

impl OriginRule {
    fn parse(s: &str) -> Option<OriginRule> {
        let s = s.trim().trim_end_matches('/');
        if let Some((scheme, rest)) = s.split_once("://") {
            let ok = !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                && !rest.is_empty()
                && !rest.contains('/')
                && !rest.contains('@');
            ok.then(|| OriginRule::Exact(s.to_ascii_lowercase()))
        } else {
            is_domain(s).then(|| OriginRule::Domain(s.to_ascii_lowercase()))
        }
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            OriginRule::Exact(o) => origin.eq_ignore_ascii_case(o),
            OriginRule::Domain(d) => origin_host(origin).is_some_and(|h| host_within(&h, d)),
        }
    }
}

/// The host of an `Origin` (`https://shop.example:8443` → `shop.example`; `[::1]` kept
/// bracketed), lower-cased and IDNA-mapped by the WHATWG parser. `None` unless it is
/// `scheme://host[:port]`: userinfo, a path (a `\\` starts one), a query or a fragment make it
/// no origin, so `https://evil.example\\.shop.example` has no host to match.
fn origin_host(origin: &str) -> Option<String> {
    let url = Url::parse(origin).ok()?;
    let bare = url.username().is_empty()
        && url.password().is_none()
        && matches!(url.path(), "" | "/")
        && url.query().is_none()
        && url.fragment().is_none();
    url.host_str()
        .filter(|h| bare && !h.is_empty())
        .map(str::to_owned)
}

/// `host` is `domain` or a subdomain of it (ASCII case-insensitive).
fn host_within(host: &str, domain: &str) -> bool {
    let (h, d) = (host.as_bytes(), domain.as_bytes());
    if h.len() == d.len() {
        return h.eq_ignore_ascii_case(d);
    }
    h.len() > d.len()
        && h[h.len() - d.len()..].eq_ignore_ascii_case(d)
        && h[h.len() - d.len() - 1] == b'.'
}

/// The first origin of an `Origin` header (browsers send one; the grammar allows a list).
fn first_origin(header: &HeaderValue) -> Option<&str> {
    let s = header.to_str().ok()?;
    let first = s.split_ascii_whitespace().next()?;
    (first != "null").then_some(first)
}

/// Precomputed CORS headers.
#[derive(Debug)]
struct Cors {
    rules: Vec<OriginRule>,
    allow_headers: HeaderValue,
    max_age: HeaderValue,
}

/// Precomputed cookie attributes.
#[derive(Debug)]
struct CookieRules {
    name: String,
    expiration: Duration,
    /// `(domain, "; Path=/; Domain=…; SameSite=…; Secure; HttpOnly")` for each of `domains`.
    domains: Vec<(String, String)>,
    /// The attributes when no domain matches (`fallback_domain` or none).
    fallback: String,
}

impl CookieRules {
    fn new(c: &CookieConfig) -> CookieRules {
        let attributes = |domain: Option<&str>| {
            let mut s = String::from("; Path=/");
            if let Some(d) = domain {
                s.push_str("; Domain=");
                s.push_str(d);
            }
            s.push_str("; SameSite=");
            s.push_str(c.same_site.as_str());
            if c.secure {
                s.push_str("; Secure");
            }
            if c.http_only {
                s.push_str("; HttpOnly");
            }
            s
        };
        CookieRules {
            name: c.name.clone(),
            expiration: c.expiration.0,
            domains: c
                .domains
                .iter()
                .map(|d| (d.to_ascii_lowercase(), attributes(Some(d))))
                .collect(),
            fallback: attributes(c.fallback_domain.as_deref()),
        }
    }

    /// The attributes for a request from `origin`: the first configured domain that equals or
    /// is a parent of one of its hosts, else the fallback.
    fn attributes(&self, origin: Option<&HeaderValue>) -> &str {
        if !self.domains.is_empty() {
            if let Some(origins) = origin.and_then(|o| o.to_str().ok()) {
                for (domain, attrs) in &self.domains {
                    if origins
                        .split_ascii_whitespace()
                        .filter_map(origin_host)
                        .any(|h| host_within(&h, domain))
                    {
                        return attrs;
                    }
                }
            }
        }
        &self.fallback
    }

    /// `name=value; Expires=…; Path=/; …`. `value` is a validated cookie value.
    fn header(&self, value: &str, expires: SystemTime, attributes: &str) -> HeaderValue {
        let mut s = String::with_capacity(self.name.len() + value.len() + 48 + attributes.len());
        s.push_str(&self.name);
        s.push('=');
        s.push_str(value);
        s.push_str("; Expires=");
        push_http_date(&mut s, expires);
        s.push_str(attributes);
        // The name is a token, the value cookie-octets and the attributes validated domains.
        HeaderValue::try_from(s).expect("a cookie built from validated parts is a header value")
    }
}

/// Appends `t` as an HTTP date. Answers within the same second share the formatting: every
/// tracking answer carries a cookie expiry, and formatting a date per request is measurable
/// on the hot path.
fn push_http_date(out: &mut String, t: SystemTime) {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const {
            std::cell::RefCell::new((u64::MAX, String::new()))
        };
    }
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            *last = (secs, httpdate::fmt_http_date(t));
        }
        out.push_str(&last.1);
    });
}

/// What the collector decided about one tracking request's visitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visitor {
    /// The network user id to store (see the module docs).
    pub nuid: Option<String>,
    /// `nuid` came from the request (a `nuid` parameter or the cookie), so it names the same
    /// user on every request; a freshly generated or anonymous one does not. Routing uses it
    /// only then.
    pub from_request: bool,
    /// The `Set-Cookie` of a successful answer.
    pub set_cookie: Option<HeaderValue>,
    /// The request carried `SP-Anonymous`.
    pub anonymous: bool,
    /// The do-not-track cookie matched: answer normally, store nothing.
    pub do_not_track: bool,
}

/// Why a redirect request cannot be redirected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectRefusal {
    /// No `u` parameter.
    Missing,
    /// `u` is not an absolute `http`/`https` URL with a host.
    Invalid(String),
    /// The target host is not in `collector.redirects.allowed_domains`.
    Disallowed(String),
}

/// A request path the collector itself answers (besides the built-in tracking routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    /// `/robots.txt`.
    Robots,
    /// `/crossdomain.xml` (enabled).
    CrossDomain,
    /// `/r/{path}` while redirects are disabled.
    RedirectsDisabled,
    /// A redirect route (`/r/tp2`, `/r/{path}`, or an alias of `/r/tp2`): the template and the
    /// path to store.
    Redirect {
        /// [`Route::Redirect`] or [`Route::RedirectOther`].
        route: Route,
        /// The stored path: the request's path, or `/r/tp2` for an alias (`None` = as received).
        mapped: Option<&'static str>,
    },
    /// An alias of a built-in tracking route.
    Alias(Route),
}

/// Where `collector.static_dir`'s files are served.
pub const STATIC_PREFIX: &str = "/static/";

/// The compiled `[collector]` section. Built once; shared by every request.
#[derive(Debug)]
pub struct Collector {
    cors: Cors,
    cookie: Option<CookieRules>,
    dnt: Option<(String, Pattern)>,
    redirects_enabled: bool,
    redirect_domains: Vec<String>,
    aliases: HashMap<String, Route>,
    cross_domain: Option<Bytes>,
    static_files: Option<StaticFiles>,
}

/// The compiled `collector.static_dir`.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    /// The directory.
    pub dir: PathBuf,
    /// `collector.static_max_file_bytes`.
    pub max_file_bytes: u64,
}

impl StaticFiles {
    /// The file `name` stands for, when it is a name `/static/` may serve.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        plain.then(|| self.dir.join(name))
    }
}

impl Default for Collector {
    fn default() -> Self {
        Collector::new(&CollectorConfig::default())
    }
}

impl Collector {
    /// Compiles a section. Entries that fail validation (which start-up runs first) are skipped
    /// rather than trusted: an unusable origin rule or alias is ignored, an invalid extra header
    /// name is left out of the preflight answer.
    pub fn new(c: &CollectorConfig) -> Collector {
        Collector::with_allowed_headers(c, &[])
    }

    /// [`Collector::new`], with preflights also allowing `headers` (before the configured
    /// extra ones): the headers that carry keys (`Authorization` for Segment's Basic auth and
    /// `auth.header`), so browsers may send them cross-origin.
    pub fn with_allowed_headers(c: &CollectorConfig, headers: &[&str]) -> Collector {
        let mut allow_headers = String::from(BASE_ALLOW_HEADERS);
        let mut listed: Vec<String> = BASE_ALLOW_HEADERS
            .split(", ")
            .map(str::to_ascii_lowercase)
            .collect();
        for h in headers
            .iter()
            .copied()
            .chain(c.cors.extra_allowed_headers.iter().map(String::as_str))
        {
            let lower = h.to_ascii_lowercase();
            if http::HeaderName::from_bytes(h.as_bytes()).is_ok() && !listed.contains(&lower) {
                allow_headers.push_str(", ");
                allow_headers.push_str(h);
                listed.push(lower);
            }
        }
        let cors = Cors {
            rules: c
                .cors
                .allowed_origins
                .iter()
                .filter_map(|o| OriginRule::parse(o))
                .collect(),
            allow_headers: HeaderValue::try_from(allow_headers)
                .expect("header names joined by commas are a header value"),
            max_age: HeaderValue::from(c.cors.max_age.0.as_secs()),
        };
        let cookie_ok = c.cookie.enabled
            && !c.cookie.name.is_empty()
            && c.cookie.name.bytes().all(is_token_byte)
            && c.cookie.domains.iter().all(|d| is_domain(d))
            && c.cookie.fallback_domain.as_deref().is_none_or(is_domain);
        if c.cookie.enabled && !cookie_ok {
            tracing::error!("collector.cookie is invalid; no cookie will be set (run `sluice config show` to validate)");
        }
        let dnt = c
            .do_not_track_cookie
            .enabled
            .then(|| {
                (
                    c.do_not_track_cookie.name.clone(),
                    c.do_not_track_cookie.value.clone(),
                )
            })
            .filter(|(name, _)| !name.is_empty());
        let aliases = c
            .paths
            .iter()
            .filter(|(from, _)| is_two_segment_path(from) && !is_builtin_path(from))
            .filter_map(|(from, to)| {
                let target = Route::ALIAS_TARGETS.iter().find(|t| t.template() == to)?;
                Some((from.clone(), *target))
            })
            .collect();
        let cross_domain = c.cross_domain.enabled.then(|| {
            let mut xml = String::from("<?xml version=\"1.0\"?>\n<cross-domain-policy>\n");
            for d in &c.cross_domain.domains {
                // Validated domains contain no markup; escape anyway so the policy stays XML.
                let d = d
                    .replace('&', "&amp;")
                    .replace('"', "&quot;")
                    .replace('<', "&lt;");
                xml.push_str(&format!(
                    "  <allow-access-from domain=\"{d}\" secure=\"{}\" />\n",
                    c.cross_domain.secure
                ));
            }
            xml.push_str("</cross-domain-policy>\n");
            Bytes::from(xml)
        });
        Collector {
            cors,
            cookie: cookie_ok.then(|| CookieRules::new(&c.cookie)),
            dnt,
            redirects_enabled: c.redirects.enabled,
            redirect_domains: c
                .redirects
                .allowed_domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            aliases,
            cross_domain,
            static_files: (!c.static_dir.as_os_str().is_empty()).then(|| StaticFiles {
                dir: c.static_dir.clone(),
                max_file_bytes: c.static_max_file_bytes.bytes(),
            }),
        }
    }

    /// The `/static/` files and the name `path` asks for, when `collector.static_dir` is set
    /// and `path` is under `/static/`.
    pub fn static_file<'p>(&self, path: &'p str) -> Option<(&StaticFiles, &'p str)> {
        let files = self.static_files.as_ref()?;
        Some((files, path.strip_prefix(STATIC_PREFIX)?))
    }

    /// What a path no built-in route matched means here, if anything.
    pub fn extra(&self, path: &str) -> Option<Extra> {
        if path == Route::Robots.template() {
            return Some(Extra::Robots);
        }
        if path == Route::CrossDomain.template() {
            return self.cross_domain.is_some().then_some(Extra::CrossDomain);
        }

        if let Some(rest) = path.strip_prefix("/r/") {
            if rest.is_empty() || rest.contains('/') {
                return None;
            }
            if !self.redirects_enabled {
                return Some(Extra::RedirectsDisabled);
            }
            let route = if path == Route::Redirect.template() {
                Route::Redirect
            } else {
                Route::RedirectOther
            };
            return Some(Extra::Redirect {
                route,
                mapped: None,
            });
        }
        if self.aliases.is_empty() {
            return None;
        }
        match *self.aliases.get(path)? {
            Route::Redirect => Some(Extra::Redirect {
                route: Route::Redirect,
                mapped: Some(Route::Redirect.template()),
            }),
            target => Some(Extra::Alias(target)),
        }
    }

    /// The `/crossdomain.xml` body, when enabled.
    pub fn cross_domain_policy(&self) -> Option<Bytes> {
        self.cross_domain.clone()
    }

    /// Adds the CORS headers of a tracking answer or preflight for a request from `origin`.
    pub fn add_cors(&self, headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        let allow = match origin.filter(|o| !o.is_empty()) {
            None => HeaderValue::from_static("*"),
            Some(o) => match first_origin(o) {
                None => HeaderValue::from_static("*"),
                Some(first) => {
                    if !self.cors.rules.is_empty()
                        && !self.cors.rules.iter().any(|r| r.matches(first))
                    {
                        return;
                    }
                    if first.len() == o.len() {
                        o.clone()
                    } else {
                        HeaderValue::from_str(first).unwrap_or_else(|_| o.clone())
                    }
                }
            },
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }

    /// Adds the headers only a preflight carries.
    pub fn add_preflight(&self, headers: &mut HeaderMap) {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            self.cors.allow_headers.clone(),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.cors.max_age.clone());
    }

    /// Resolves the network user id, the cookie to set and the do-not-track decision for a
    /// request with these headers and query string.
    pub fn visitor(&self, headers: &HeaderMap, query: Option<&str>) -> Visitor {
        let cookie_headers = || {
            headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
        };
        if let Some((name, pattern)) = &self.dnt {
            let opted_out = cookie_headers()
                .filter_map(|h| cookie_value(h, name))
                .any(|v| pattern.matches(v));
            if opted_out {
                return Visitor {
                    nuid: None,
                    from_request: false,
                    set_cookie: None,
                    anonymous: false,
                    do_not_track: true,
                };
            }
        }
        let anonymous = headers.contains_key(SP_ANONYMOUS_HEADER);
        let Some(rules) = &self.cookie else {
            return Visitor {
                nuid: anonymous.then(|| ANONYMOUS_NUID.to_owned()),
                from_request: false,
                set_cookie: None,
                anonymous,
                do_not_track: false,
            };
        };
        let from_cookie = cookie_headers().find_map(|h| cookie_value(h, &rules.name));
        let origin = headers.get(header::ORIGIN);
        let now = SystemTime::now();
        if anonymous {
            let set_cookie = from_cookie.map(|_| {
                let past = now.checked_sub(365 * DAY).unwrap_or(SystemTime::UNIX_EPOCH);
                rules.header("", past, rules.attributes(origin))
            });
            return Visitor {
                nuid: Some(ANONYMOUS_NUID.to_owned()),
                from_request: false,
                set_cookie,
                anonymous,
                do_not_track: false,
            };
        }
        let known = query
            .and_then(|q| query_param(q, "nuid"))
            .and_then(|v| usable_nuid(&form_decode_lossy(v)))
            .or_else(|| from_cookie.and_then(usable_nuid));
        let from_request = known.is_some();
        let nuid = known.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let set_cookie = rules.header(&nuid, now + rules.expiration, rules.attributes(origin));
        Visitor {
            nuid: Some(nuid),
            from_request,
            set_cookie: Some(set_cookie),
            anonymous,
            do_not_track: false,
        }
    }

    /// The validated `Location` of a redirect request with this query string.
    pub fn redirect_target(&self, query: Option<&str>) -> Result<HeaderValue, RedirectRefusal> {
        let raw = query
            .and_then(|q| query_param(q, "u"))
            .ok_or(RedirectRefusal::Missing)?;
        let target = form_decode_lossy(raw);
        if target.is_empty() {
            return Err(RedirectRefusal::Missing);
        }
        let url = redirect_url(&target).ok_or_else(|| RedirectRefusal::Invalid(target.clone()))?;
        let host = url.host_str().unwrap_or_default();
        if !self.redirect_domains.is_empty()
            && !self.redirect_domains.iter().any(|d| host_within(host, d))
        {
            return Err(RedirectRefusal::Disallowed(host.to_owned()));
        }
        let as_sent = target.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
        let location = if as_sent { &target } else { url.as_str() };
        HeaderValue::from_str(location).map_err(|_| RedirectRefusal::Invalid(target.clone()))
    }
}

/// The value of cookie `name` in one `Cookie` header (`a=1; sp=xyz`), if present.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The raw (still percent-encoded) value of parameter `name` in a query string.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// `Some(value)` when it can be the network user id (and so be echoed in `Set-Cookie`).
fn usable_nuid(value: &str) -> Option<String> {
    (!value.is_empty() && value.len() <= MAX_NUID_BYTES && value.bytes().all(is_cookie_octet))
        .then(|| value.to_owned())
}

/// `target` as an absolute `http`/`https` URL with a host, parsed as a browser parses it (see
/// the module docs), or `None`.
fn redirect_url(target: &str) -> Option<Url> {
    // The parser strips these silently; a target carrying them is not what was meant.
    if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return None;
    }
    // `http:x`, `https:/x`, `https:///x` and `https:\\x` all parse as `https://x/`: only a
    // target that spells `scheme://host` itself is taken.
    let (scheme, rest) = target.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
        || rest.starts_with(['/', '\\'])
    {
        return None;
    }
    let url = Url::parse(target).ok()?;
    url.host_str().is_some_and(|h| !h.is_empty()).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collector(edit: impl FnOnce(&mut CollectorConfig)) -> Collector {
        let mut c = CollectorConfig::default();
        edit(&mut c);
        assert_eq!(c.violations(), Vec::new());
        Collector::new(&c)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hosts_match_their_domain_and_its_subdomains_only() {
        assert!(host_within("shop.example", "shop.example"));
        assert!(host_within("WWW.Shop.Example", "shop.example"));
        assert!(!host_within("notshop.example", "shop.example"));
        assert!(!host_within("example", "shop.example"));
    }

    #[test]
    fn an_origin_host_is_what_a_browser_would_call_the_host() {
        let host = |o| origin_host(o);
        assert_eq!(host("https://a.b:8443").as_deref(), Some("a.b"));
        assert_eq!(host("http://[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(
            host("HTTPS://Shop.EXAMPLE").as_deref(),
            Some("shop.example")
        );
        assert_eq!(
            host("https://xn--shp-tna.example").as_deref(),
            Some("xn--shp-tna.example")
        );
        assert_eq!(
            host("https://ＳＨＯＰ.example").as_deref(),
            Some("shop.example")
        );
        assert_eq!(host("app://bundle.id").as_deref(), Some("bundle.id"));
        for forged in [
            "https://",
            "null",
            "shop.example",
            "//shop.example",
            // Userinfo: the host is `shop.example`, but an Origin never carries it.
            "https://evil.example@shop.example",
            // `\` ends the host: `evil.example` with a path, never `….shop.example`.
            "https://evil.example\\.shop.example",
            "https://shop.example/path",
            "https://shop.example?q",
            "https://shop.example#f",
        ] {
            assert_eq!(host(forged), None, "{forged}");
        }
        // The old hand-written split took everything up to `:` or `/` as the host.
        assert!(!OriginRule::Domain("shop.example".into())
            .matches("https://evil.example\\.shop.example"));
    }

    /// The host the redirect allow-list compares, for a target `u`.
    fn redirect_host(target: &str) -> Option<String> {
        redirect_url(target).and_then(|u| u.host_str().map(str::to_owned))
    }

    #[test]
    fn redirect_targets_must_be_absolute_http_urls_with_a_host() {
        let host = |t| redirect_host(t);
        assert_eq!(
            host("https://a.example/x?y#z").as_deref(),
            Some("a.example")
        );
        assert_eq!(
            host("HTTP://user:pw@a.example:81/").as_deref(),
            Some("a.example")
        );
        // Browsers end the authority at `\` in http(s) URLs: the host is `a.example`.
        assert_eq!(
            host("https://a.example\\@b.example/").as_deref(),
            Some("a.example")
        );
        assert_eq!(
            host("https://[2001:db8::1]/").as_deref(),
            Some("[2001:db8::1]")
        );
        for bad in [
            "ftp://a.example/",
            "//a.example/",
            "/x",
            "a.example/x",
            "https:///x",
            "https:/a.example/",
            "https:a.example",
            "https:\\\\a.example/",
            "https://\\a.example/",
            "https://a b/",
            "https://a.example/\tx",
            " https://a.example/",
            "javascript:alert('https://a.example')",
            "https://",
            "https://:80/",
            "https://a.example:99999/",
        ] {
            assert_eq!(host(bad), None, "{bad}");
        }
    }

    #[test]
    fn forged_redirect_targets_are_judged_by_the_host_a_browser_would_visit() {
        let c = collector(|c| {
            c.redirects.enabled = true;
            c.redirects.allowed_domains = vec!["shop.example".into()];
        });
        let redirect = |u: &str| {
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("u", u)
                .finish();
            c.redirect_target(Some(&q))
                .map(|v| v.to_str().unwrap().to_owned())
        };
        for (target, location) in [
            ("https://shop.example", "https://shop.example"),
            (
                "https://WWW.Shop.Example:8443/x",
                "https://WWW.Shop.Example:8443/x",
            ),
            // Userinfo naming another site still goes to the host after `@`.
            (
                "https://evil.example@shop.example/",
                "https://evil.example@shop.example/",
            ),
            // Full-width letters are IDNA-mapped to the listed host; Location is that form.
            ("https://ｓｈｏｐ.example/", "https://shop.example/"),
            // A `\` is sent as the `/` a browser reads it as.
            (
                "https://shop.example\\@evil.example/",
                "https://shop.example/@evil.example/",
            ),
        ] {
            assert_eq!(redirect(target).as_deref(), Ok(location), "{target}");
        }
        for (target, host) in [
            ("https://shop.example@evil.example/", "evil.example"),
            ("https://shop.example:pw@evil.example/", "evil.example"),
            ("https://evil.example\\.shop.example/", "evil.example"),
            ("https://evil.example#.shop.example", "evil.example"),
            ("https://evil.example?.shop.example", "evil.example"),
            (
                "https://shop.example.evil.example/",
                "shop.example.evil.example",
            ),
            ("https://notshop.example/", "notshop.example"),
            ("https://shop.example./", "shop.example."),
            ("https://shöp.example/", "xn--shp-tna.example"),
            ("https://evil%2Eexample/", "evil.example"),
            ("http://0x7f.1/", "127.0.0.1"),
        ] {
            assert_eq!(
                redirect(target),
                Err(RedirectRefusal::Disallowed(host.into())),
                "{target}"
            );
        }
        for bad in [
            "//shop.example/",
            "shop.example",
            "https:/shop.example",
            "https://shop.example/\r\nX: 1",
        ] {
            assert!(
                matches!(redirect(bad), Err(RedirectRefusal::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_first_origin_is_echoed_and_null_becomes_a_wildcard() {
        let c = Collector::default();
        let mut h = HeaderMap::new();
        c.add_cors(
            &mut h,
            Some(&HeaderValue::from_static("https://a.example https://b")),
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.example");
        let mut h = HeaderMap::new();
        c.add_cors(&mut h, Some(&HeaderValue::from_static("null")));
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }

    #[test]
    fn sp_anonymous_without_a_carried_cookie_sets_no_cookie_even_when_cookies_are_off() {
        let on = collector(|_| {});
        let v = on.visitor(&headers(&[("sp-anonymous", "*")]), Some("nuid=x"));
        assert_eq!(v.nuid.as_deref(), Some(ANONYMOUS_NUID));
        assert!(v.set_cookie.is_none() && v.anonymous && !v.do_not_track);
        let off = collector(|c| c.cookie.enabled = false);
        let v = off.visitor(&headers(&[("sp-anonymous", "*"), ("cookie", "sp=a")]), None);
        assert_eq!(v.nuid.as_deref(), Some(ANONYMOUS_NUID));
        assert!(v.set_cookie.is_none());
        let v = off.visitor(&headers(&[("cookie", "sp=a")]), Some("nuid=b"));
        assert_eq!(v.nuid, None);
    }

    #[test]
    fn a_nuid_too_long_or_with_separators_is_replaced_by_a_new_uuid() {
        let c = collector(|_| {});
        let long = "a".repeat(MAX_NUID_BYTES + 1);
        let q = format!("nuid={long}");
        let v = c.visitor(&HeaderMap::new(), Some(&q));
        assert_ne!(v.nuid.as_deref(), Some(long.as_str()));
        let v = c.visitor(&headers(&[("cookie", "sp=\"a,b\"")]), None);
        assert_eq!(v.nuid.as_ref().map(String::len), Some(36));
    }

    #[test]
    fn the_default_section_is_valid_and_documented_bounds_are_enforced() {
        assert_eq!(CollectorConfig::default().violations(), Vec::new());
        let keys = |edit: &dyn Fn(&mut CollectorConfig)| {
            let mut c = CollectorConfig::default();
            edit(&mut c);
            c.violations()
                .into_iter()
                .map(|v| v.key)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(&|c| c.max_payload_bytes = ByteSize(1023)),
            ["collector.max_payload_bytes"]
        );
        assert_eq!(
            keys(&|c| c.cors.max_age = HumanDuration(DAY + Duration::from_secs(1))),
            ["collector.cors.max_age"]
        );
        assert_eq!(
            keys(&|c| c.cookie.expiration = HumanDuration(Duration::ZERO)),
            ["collector.cookie.expiration"]
        );
        assert_eq!(
            keys(&|c| c.cookie.fallback_domain = Some("a..b".into())),
            ["collector.cookie.fallback_domain"]
        );
        assert_eq!(
            keys(&|c| c.cookie.domains = vec![String::new()]),
            ["collector.cookie.domains"]
        );
        assert_eq!(
            keys(&|c| c.do_not_track_cookie.enabled = true),
            [
                "collector.do_not_track_cookie.name",
                "collector.do_not_track_cookie.value"
            ]
        );
        assert_eq!(
            keys(&|c| {
                c.cross_domain.enabled = true;
                c.cross_domain.domains = vec![];
            }),
            ["collector.cross_domain.domains"]
        );
        assert_eq!(
            keys(&|c| c.cross_domain.domains = vec!["<x>".into()]),
            ["collector.cross_domain.domains"]
        );
        assert_eq!(
            keys(&|c| {
                c.paths.insert("/r/x".into(), Route::Tp2.template().into());
            }),
            ["collector.paths"]
        );
        assert!(CollectorConfig::default().violations().is_empty());
    }
}

#[cfg(test)]
mod http_date_tests {
    use super::*;

    #[test]
    fn a_cached_http_date_changes_with_the_second() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for at in [
            t,
            t + Duration::from_millis(400),
            t + Duration::from_secs(1),
            t,
        ] {
            let mut s = String::new();
            push_http_date(&mut s, at);
            assert_eq!(s, httpdate::fmt_http_date(at));
        }
    }
}
