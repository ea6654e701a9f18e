//! The enrichment steps every source shares, and the `[enrich]` settings they read.
//!
//! Each field mapping in [`crate::publish::map`] starts its rows from `Enricher::base_event`
//! and calls the steps it needs: the client IP (trusted proxies, optional anonymisation), URL
//! parts and campaign fields, user-agent families, the fingerprint, and the ids derived from an
//! event's place in the log. Every step is pure and deterministic: an event without `eid` (or
//! Segment `messageId`) gets a v4-shaped UUID derived from (instance, partition, lsn, index), so
//! a replay produces identical rows and the sink's dedup works.
//!
//! # `[enrich]` configuration
//!
//! ```toml
//! [enrich]
//! trusted_proxies = ["127.0.0.1/32", "::1/128"]  # peers whose X-Forwarded-For / Forwarded is believed
//! strict_body_keys = true                         # refuse POST keys outside payload_data 1-0-4
//! [enrich.anonymise_ip]
//! octets = 0        # 0–4 trailing IPv4 octets replaced by `x` (0 = off)
//! # segments = 0    # 0–8 trailing IPv6 groups replaced by `x` (default: = octets)
//! [enrich.fingerprint]
//! enabled = true
//! algorithm = "md5" # md5 | sha1 | sha256 | sha384 | sha512
//! exclude = ["eid", "nuid", "stm", "cv"]
//! [enrich.campaign]
//! medium = ["utm_medium"]  # first parameter present wins; likewise source/term/content/campaign
//! click_ids = { gclid = "Google", msclkid = "Microsoft", dclid = "DoubleClick", fbclid = "Facebook" }
//! [enrich.user_agent]
//! parse = true
//! cache_entries = 10000    # 0–1 000 000 distinct user agents remembered (0 = no cache)
//! ```

pub(crate) mod ip;
mod ua;
pub(crate) mod url_parts;

use std::borrow::Cow;
use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sluice_wal::Lsn;
use uuid::Uuid;

use crate::config::units::{check_range, Violation};
use crate::envelope::Envelope;
use crate::event::{Event, Text};
use crate::instance::InstanceId;
use crate::wire;
use crate::wire::snowplow::RawEvent;
use crate::wire::text::tsv_safe;

pub use ua::{UaParser, UserAgentInfo};

/// `v_collector` when the event has no `cv`.
pub const COLLECTOR_VERSION: &str = concat!("sluice-", env!("CARGO_PKG_VERSION"));
/// `v_etl`: this enrichment's name and version.
pub const ETL_VERSION: &str = concat!("sluice-enrich-", env!("CARGO_PKG_VERSION"));

/// The `[enrich]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichConfig {
    /// Peers (CIDRs or addresses) whose `X-Forwarded-For` / `Forwarded` headers are believed
    /// for `user_ipaddress`; other peers' are ignored (they are trivially forged).
    /// Default: loopback only (`127.0.0.1/32`, `::1/128`): add your load balancers' ranges.
    pub trusted_proxies: Vec<String>,
    /// Refuse POST body keys that `payload_data` 1-0-4 does not allow (Snowplow's behaviour).
    /// Default true.
    pub strict_body_keys: bool,
    /// IP anonymisation (off by default).
    pub anonymise_ip: AnonymiseIpConfig,
    /// The event fingerprint.
    pub fingerprint: FingerprintConfig,
    /// Campaign attribution from the page URL's query string.
    pub campaign: CampaignConfig,
    /// User-agent parsing.
    pub user_agent: UserAgentConfig,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            trusted_proxies: vec!["127.0.0.1/32".into(), "::1/128".into()],
            strict_body_keys: true,
            anonymise_ip: AnonymiseIpConfig::default(),
            fingerprint: FingerprintConfig::default(),
            campaign: CampaignConfig::default(),
            user_agent: UserAgentConfig::default(),
        }
    }
}

/// `[enrich.anonymise_ip]`: Snowplow's `anon_ip` enrichment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AnonymiseIpConfig {
    /// Trailing IPv4 octets replaced by `x`: 0 (off, default) to 4.
    pub octets: u8,
    /// Trailing IPv6 groups replaced by `x`: 0 to 8. Default: the same as `octets`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<u8>,
}

/// `[enrich.fingerprint]`: Snowplow's event fingerprint enrichment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FingerprintConfig {
    /// Compute `event_fingerprint`. Default true.
    pub enabled: bool,
    /// The hash: `md5` (default), `sha1`, `sha256`, `sha384` or `sha512`.
    pub algorithm: HashAlgorithm,
    /// Parameters left out of the hash. Default `eid`, `nuid`, `stm`, `cv`.
    pub exclude: Vec<String>,
}

impl Default for FingerprintConfig {
    fn default() -> Self {
        FingerprintConfig {
            enabled: true,
            algorithm: HashAlgorithm::Md5,
            exclude: ["eid", "nuid", "stm", "cv"].map(String::from).to_vec(),
        }
    }
}

/// A fingerprint hash.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgorithm {
    /// MD5 (Snowplow's default).
    #[default]
    Md5,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

/// `[enrich.campaign]`: Snowplow's campaign attribution enrichment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CampaignConfig {
    /// Page-URL parameters for `mkt_medium`, first present wins. Default `["utm_medium"]`.
    pub medium: Vec<String>,
    /// For `mkt_source`. Default `["utm_source"]`.
    pub source: Vec<String>,
    /// For `mkt_term`. Default `["utm_term"]`.
    pub term: Vec<String>,
    /// For `mkt_content`. Default `["utm_content"]`.
    pub content: Vec<String>,
    /// For `mkt_campaign`. Default `["utm_campaign"]`.
    pub campaign: Vec<String>,
    /// Click-id parameter → network (`mkt_clickid`, `mkt_network`). Default gclid → Google,
    /// msclkid → Microsoft, dclid → DoubleClick, fbclid → Facebook, ttclid → TikTok,
    /// twclid → Twitter, li_fat_id → LinkedIn.
    pub click_ids: BTreeMap<String, String>,
}

impl Default for CampaignConfig {
    fn default() -> Self {
        let one = |s: &str| vec![s.to_owned()];
        CampaignConfig {
            medium: one("utm_medium"),
            source: one("utm_source"),
            term: one("utm_term"),
            content: one("utm_content"),
            campaign: one("utm_campaign"),
            click_ids: [
                ("gclid", "Google"),
                ("msclkid", "Microsoft"),
                ("dclid", "DoubleClick"),
                ("fbclid", "Facebook"),
                ("ttclid", "TikTok"),
                ("twclid", "Twitter"),
                ("li_fat_id", "LinkedIn"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        }
    }
}

/// `[enrich.user_agent]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UserAgentConfig {
    /// Fill `br_*`, `os_*`, `dvce_type`, `dvce_ismobile` from the user agent. Default true.
    pub parse: bool,
    /// Distinct user agents remembered: 0 (no cache) to 1 000 000. Default 10 000.
    pub cache_entries: usize,
}

impl Default for UserAgentConfig {
    fn default() -> Self {
        UserAgentConfig {
            parse: true,
            cache_entries: 10_000,
        }
    }
}

impl EnrichConfig {
    /// Values outside their documented bounds, each naming its key.
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        for p in &self.trusted_proxies {
            if let Err(message) = crate::wire::ip::parse_cidr(p) {
                out.push(Violation {
                    key: "enrich.trusted_proxies",
                    message,
                });
            }
        }
        let ip = &self.anonymise_ip;
        check_range(&mut out, "enrich.anonymise_ip.octets", ip.octets, 0, 4);
        if let Some(segments) = ip.segments {
            check_range(&mut out, "enrich.anonymise_ip.segments", segments, 0, 8);
        }
        let entries = self.user_agent.cache_entries;
        check_range(
            &mut out,
            "enrich.user_agent.cache_entries",
            entries,
            0,
            1_000_000,
        );
        for (key, list) in [
            ("enrich.campaign.medium", &self.campaign.medium),
            ("enrich.campaign.source", &self.campaign.source),
            ("enrich.campaign.term", &self.campaign.term),
            ("enrich.campaign.content", &self.campaign.content),
            ("enrich.campaign.campaign", &self.campaign.campaign),
        ] {
            if list.iter().any(|s| s.is_empty()) {
                out.push(Violation {
                    key,
                    message: "parameter names must not be empty".into(),
                });
            }
        }
        out
    }
}

/// Why an [`Enricher`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// An `enrich.trusted_proxies` entry does not parse.
    #[error("enrich.trusted_proxies: {0}")]
    TrustedProxy(String),
    /// A value is outside its bounds.
    #[error("{0}")]
    OutOfBounds(String),
}

impl EnrichError {
    /// A stable, short identifier for metric labels and logs.
    pub fn code(&self) -> &'static str {
        match self {
            EnrichError::TrustedProxy(_) => "trusted_proxy",
            EnrichError::OutOfBounds(_) => "out_of_bounds",
        }
    }
}

/// The shared steps with their settings. Built once, shared by every publisher thread.
#[derive(Debug)]
pub struct Enricher {
    pub(crate) config: EnrichConfig,
    trusted: Vec<IpNet>,
    /// The data directory's instance id, part of every generated event id.
    pub(crate) instance: InstanceId,
    pub(crate) ua: UaParser,
}

impl Enricher {
    /// Builds the steps from the `[enrich]` settings; generated event ids name `instance` (the
    /// data directory's id), so two instances never generate the same one.
    pub fn new(config: &EnrichConfig, instance: InstanceId) -> Result<Enricher, EnrichError> {
        if let Some(v) = config
            .violations()
            .into_iter()
            .find(|v| v.key != "enrich.trusted_proxies")
        {
            return Err(EnrichError::OutOfBounds(v.to_string()));
        }
        let trusted = config
            .trusted_proxies
            .iter()
            .map(|p| wire::ip::parse_cidr(p).map_err(EnrichError::TrustedProxy))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Enricher {
            ua: UaParser::new(config.user_agent.cache_entries),
            trusted,
            instance,
            config: config.clone(),
        })
    }

    /// What the events of `envelope` share (its client address, headers).
    pub(crate) fn request<'e>(&self, envelope: &'e Envelope) -> RequestContext<'e> {
        RequestContext::new(envelope, &self.trusted)
    }

    /// A new event for the JSON sources: its place in the log, `source`, the collector time
    /// (also the derived time until the source knows better) and the versions.
    pub(crate) fn base_event(&self, envelope: &Envelope, source: &str, at: Position) -> Event {
        Event {
            source: Some(Text::from(source)),
            wal_partition: Some(at.partition as u64),
            wal_lsn: Some(at.lsn.0),
            wal_index: Some(at.index as u64),
            collector_tstamp: Some(envelope.received_at_ms),
            derived_tstamp: Some(envelope.received_at_ms),
            v_collector: Some(Text::from(COLLECTOR_VERSION)),
            v_etl: Some(Text::from(ETL_VERSION)),
            ..Event::default()
        }
    }

    /// Splits `ev.page_url` into its parts and fills the campaign fields from its query.
    /// `Err` names the URL when it does not parse (the parts stay empty).
    pub(crate) fn page_url_parts(&self, ev: &mut Event) -> Result<(), String> {
        // Out of the event while its query (which may borrow from it) fills the campaign.
        let Some(page_url) = ev.page_url.take() else {
            return Ok(());
        };
        let result = match url_parts::split(&page_url) {
            Ok((parts, query)) => {
                ev.page_urlscheme = parts.scheme;
                ev.page_urlhost = parts.host;
                ev.page_urlport = parts.port;
                ev.page_urlpath = parts.path;
                ev.page_urlquery = parts.query;
                ev.page_urlfragment = parts.fragment;
                if let Some(query) = query {
                    self.campaign(&query, ev);
                }
                Ok(())
            }
            Err(err) => Err(format!("page URL {page_url:?} does not parse: {err}")),
        };
        ev.page_url = Some(page_url);
        result
    }

    /// The user's client fields every mapping fills: the IP address (the first one in
    /// `explicit_ip`, else the request's client address), the user agent the mapping found,
    /// and the browser, OS and device parsed from it.
    pub(crate) fn user(
        &self,
        ev: &mut Event,
        explicit_ip: Option<&str>,
        useragent: Option<Text>,
        request: &RequestContext<'_>,
    ) {
        self.user_ip(ev, explicit_ip, request);
        ev.useragent = useragent;
        self.user_agent_families(ev);
    }

    /// `user_ipaddress`: the first address in `explicit` (Snowplow `ip`, Segment
    /// `context.ip`), else the request's client address; anonymised as configured.
    fn user_ip(&self, ev: &mut Event, explicit: Option<&str>, request: &RequestContext<'_>) {
        ev.user_ipaddress = explicit
            .and_then(wire::ip::ip_param)
            .or_else(|| request.client_ip.clone())
            .and_then(|s| tsv_safe(&s));
        if self.config.anonymise_ip.octets > 0 || self.config.anonymise_ip.segments.unwrap_or(0) > 0
        {
            let octets = self.config.anonymise_ip.octets;
            let segments = self.config.anonymise_ip.segments.unwrap_or(octets);
            ev.user_ipaddress = (ev
                .user_ipaddress
                .take()
                .map(|ip| ip::anonymise(&ip, octets, segments)))
            .map(Text::from);
        }
    }

    /// The browser, OS and device fields parsed from `ev.useragent` (when parsing is on).
    fn user_agent_families(&self, ev: &mut Event) {
        if !self.config.user_agent.parse {
            return;
        }
        if let Some(agent) = ev.useragent.as_deref() {
            let info = self.ua.parse(agent);
            ev.br_family = info.br_family.clone();
            ev.br_name = info.br_name.clone();
            ev.br_version = info.br_version.clone();
            ev.os_family = info.os_family.clone();
            ev.os_name = info.os_name.clone();
            ev.dvce_type = info.dvce_type.clone();
            ev.dvce_ismobile = info.dvce_ismobile;
        }
    }

    /// The event fingerprint of a JSON source's message (its canonical JSON text with the
    /// sender-varying keys left out by the caller), or `None` when fingerprints are off.
    pub(crate) fn fingerprint_json(&self, json: &str) -> Option<String> {
        self.config
            .fingerprint
            .enabled
            .then(|| hash_hex(json.as_bytes(), self.config.fingerprint.algorithm))
    }

    /// Campaign attribution from the page URL's query parameters (form-decoded).
    fn campaign(&self, query: &str, ev: &mut Event) {
        // Borrowed from the URL unless a pair had to be decoded.
        let pairs: Vec<(Cow<str>, Cow<str>)> = form_urlencoded::parse(query.as_bytes()).collect();
        let first = |names: &[String]| {
            names.iter().find_map(|n| {
                pairs
                    .iter()
                    .find(|(k, _)| k == n)
                    .and_then(|(_, v)| tsv_safe(v))
            })
        };
        let c = &self.config.campaign;
        ev.mkt_medium = first(&c.medium);
        ev.mkt_source = first(&c.source);
        ev.mkt_term = first(&c.term);
        ev.mkt_content = first(&c.content);
        ev.mkt_campaign = first(&c.campaign);
        // The first click id in the URL that is configured.
        if let Some((id, network)) = pairs.iter().find_map(|(k, v)| {
            c.click_ids
                .get(k.as_ref())
                .and_then(|network| tsv_safe(v).map(|id| (id, network.clone())))
        }) {
            ev.mkt_clickid = Some(id);
            ev.mkt_network = Some(Text::from(network));
        }
    }
}

/// Splits `ev.page_referrer` into its parts; `Err` names the URL when it does not parse.
pub(crate) fn referrer_parts(ev: &mut Event) -> Result<(), String> {
    let Some(u) = ev.page_referrer.as_deref() else {
        return Ok(());
    };
    let (parts, _) =
        url_parts::split(u).map_err(|err| format!("referrer URL {u:?} does not parse: {err}"))?;
    ev.refr_urlscheme = parts.scheme;
    ev.refr_urlhost = parts.host;
    ev.refr_urlport = parts.port;
    ev.refr_urlpath = parts.path;
    ev.refr_urlquery = parts.query;
    ev.refr_urlfragment = parts.fragment;
    Ok(())
}

/// Where an event is stored: its request's place in the log and its index in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    /// The data directory's instance id.
    pub instance: InstanceId,
    /// The log partition.
    pub partition: usize,
    /// The request's LSN in it.
    pub lsn: Lsn,
    /// The event's index within the request.
    pub index: usize,
}

impl Position {
    /// The same request, event `index`.
    pub fn at(self, index: usize) -> Position {
        Position { index, ..self }
    }

    /// [`derived_event_id`] of this position.
    pub fn derived_event_id(self) -> Uuid {
        derived_event_id(self.instance, self.partition, self.lsn, self.index)
    }
}

/// What every event of one request shares.
pub(crate) struct RequestContext<'a> {
    /// The stored request.
    pub envelope: &'a Envelope,
    /// Its `Referer` header.
    pub referer: Option<&'a str>,
    /// Its `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// The client's address (see [`wire::ip::recorded_client_ip`]).
    pub client_ip: Option<String>,
}

impl<'a> RequestContext<'a> {
    /// What a request's events share, with `trusted` proxies' forwarded headers believed.
    pub fn new(envelope: &'a Envelope, trusted: &[IpNet]) -> RequestContext<'a> {
        RequestContext {
            envelope,
            referer: envelope.header("referer"),
            user_agent: envelope.header("user-agent"),
            client_ip: wire::ip::recorded_client_ip(envelope, trusted),
        }
    }
}

/// The instance id unit tests process with.
#[cfg(test)]
pub(crate) const TEST_INSTANCE: InstanceId = InstanceId::from_u64(0x5eed);

/// A v4-shaped UUID derived from where the event is stored (the instance, partition, LSN and
/// index): replays give the same id, and other instances other ids.
pub fn derived_event_id(instance: InstanceId, partition: usize, lsn: Lsn, index: usize) -> Uuid {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"sluice-event-id\x00");
    h.update(instance.as_u64().to_le_bytes());
    h.update((partition as u64).to_le_bytes());
    h.update(lsn.0.to_le_bytes());
    h.update((index as u64).to_le_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Snowplow's derived timestamp: `true_tstamp`; else the collector time corrected by the
/// device's send delay when created < sent; else the collector time.
pub fn derived_tstamp(
    collector: Option<i64>,
    created: Option<i64>,
    sent: Option<i64>,
    true_tstamp: Option<i64>,
) -> Option<i64> {
    if true_tstamp.is_some() {
        return true_tstamp;
    }
    match (collector, created, sent) {
        (Some(c), Some(cr), Some(s)) if cr < s => Some(c.saturating_sub(s - cr)),
        _ => collector,
    }
}

/// Snowplow's event fingerprint: parameters sorted by key, excluded keys dropped, each as
/// `key␟value␟` (U+001F), hashed, lower-case hex.
pub fn fingerprint(params: &RawEvent<'_>, exclude: &[String], algorithm: HashAlgorithm) -> String {
    match algorithm {
        HashAlgorithm::Md5 => fingerprint_with::<md5::Md5>(params, exclude),
        HashAlgorithm::Sha1 => fingerprint_with::<sha1::Sha1>(params, exclude),
        HashAlgorithm::Sha256 => fingerprint_with::<sha2::Sha256>(params, exclude),
        HashAlgorithm::Sha384 => fingerprint_with::<sha2::Sha384>(params, exclude),
        HashAlgorithm::Sha512 => fingerprint_with::<sha2::Sha512>(params, exclude),
    }
}

/// [`fingerprint`] with hash `D`: the joined text is built in one buffer and hashed in one
/// call (feeding the hash four small pieces per parameter cost more than the copy).
fn fingerprint_with<D: sha2::Digest>(params: &RawEvent<'_>, exclude: &[String]) -> String {
    // Room for every parameter: counting only the kept ones would test the exclusions twice.
    let mut text = Vec::with_capacity(params.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (k, v) in params
        .iter()
        .filter(|(k, _)| !exclude.iter().any(|e| e == *k))
    {
        text.extend_from_slice(k.as_bytes());
        text.push(0x1f);
        text.extend_from_slice(v.as_bytes());
        text.push(0x1f);
    }
    hex(&D::digest(&text))
}

/// `bytes` hashed with `algorithm`, lower-case hex.
pub(crate) fn hash_hex(bytes: &[u8], algorithm: HashAlgorithm) -> String {
    use sha2::Digest as _;
    match algorithm {
        HashAlgorithm::Md5 => hex(&md5::Md5::digest(bytes)),
        HashAlgorithm::Sha1 => hex(&sha1::Sha1::digest(bytes)),
        HashAlgorithm::Sha256 => hex(&sha2::Sha256::digest(bytes)),
        HashAlgorithm::Sha384 => hex(&sha2::Sha384::digest(bytes)),
        HashAlgorithm::Sha512 => hex(&sha2::Sha512::digest(bytes)),
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}
