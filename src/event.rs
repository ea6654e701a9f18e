//! The canonical enriched event: what the publisher produces from any protocol and the sink
//! writes to ClickHouse, one row per event.
//!
//! Column names follow Snowplow's enriched event wherever the concept exists, so Snowplow users
//! recognise them. [`COLUMNS`] lists every column sluice can fill, with its kind and whether a
//! table must have it; the sink reads the *table's* columns from the server and encodes each
//! one it shares with [`COLUMNS`] by name ([`Event::value`]), so operators may add columns of
//! their own (they get their defaults) and old and new servers both work.
//!
//! An event that cannot become a row is a [`Failure`] instead, kept with its raw request in
//! the dead-letter store.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The text of an event field. Up to 24 bytes (most values: ids, names, versions, URL parts)
/// it is stored inline, so filling an event allocates only for long text such as URLs and JSON;
/// otherwise it behaves as a `String`.
pub type Text = compact_str::CompactString;

/// What kind of value a column holds. The sink picks the ClickHouse type per server version
/// (e.g. `DateTime64(3, 'UTC')` or `DateTime` for [`Kind::Timestamp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A UUID.
    Uuid,
    /// Free text.
    Text,
    /// Text with few distinct values (`LowCardinality` where the server has it).
    LowCardinalityText,
    /// JSON kept as text.
    Json,
    /// Milliseconds since the Unix epoch, UTC.
    Timestamp,
    /// A signed integer.
    Int,
    /// An unsigned integer.
    UInt,
    /// A floating-point number.
    Float,
    /// True or false.
    Bool,
}

/// One column sluice can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The column's name in the table.
    pub name: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// A table without it cannot take sluice's rows: the sink refuses to start.
    pub required: bool,
}

/// Every column sluice fills, in table order.
pub const COLUMNS: &[Column] = &[
    Column {
        name: "event_id",
        kind: Kind::Uuid,
        required: true,
    },
    Column {
        name: "message_id",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "app_id",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "app_version",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "platform",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "source",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "stream",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "collector_tstamp",
        kind: Kind::Timestamp,
        required: true,
    },
    Column {
        name: "dvce_created_tstamp",
        kind: Kind::Timestamp,
        required: false,
    },
    Column {
        name: "dvce_sent_tstamp",
        kind: Kind::Timestamp,
        required: false,
    },
    Column {
        name: "true_tstamp",
        kind: Kind::Timestamp,
        required: false,
    },
    Column {
        name: "derived_tstamp",
        kind: Kind::Timestamp,
        required: false,
    },
    Column {
        name: "event",
        kind: Kind::LowCardinalityText,
        required: true,
    },
    Column {
        name: "event_vendor",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "event_name",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "event_format",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "event_version",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "event_fingerprint",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "name_tracker",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "v_tracker",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "v_collector",
        kind: Kind::LowCardinalityText,
        required: true,
    },
    Column {
        name: "v_etl",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "user_id",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "anonymous_id",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "user_ipaddress",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "user_fingerprint",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "domain_userid",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "domain_sessionidx",
        kind: Kind::Int,
        required: false,
    },
    Column {
        name: "domain_sessionid",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "network_userid",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "page_url",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "page_title",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "page_referrer",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "page_urlscheme",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "page_urlhost",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "page_urlport",
        kind: Kind::Int,
        required: false,
    },
    Column {
        name: "page_urlpath",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "page_urlquery",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "page_urlfragment",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "refr_urlscheme",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "refr_urlhost",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "refr_urlport",
        kind: Kind::Int,
        required: false,
    },
    Column {
        name: "refr_urlpath",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "refr_urlquery",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "refr_urlfragment",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "mkt_medium",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "mkt_source",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "mkt_term",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "mkt_content",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "mkt_campaign",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "mkt_clickid",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "mkt_network",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "contexts",
        kind: Kind::Json,
        required: false,
    },
    Column {
        name: "unstruct_event",
        kind: Kind::Json,
        required: false,
    },
    Column {
        name: "properties",
        kind: Kind::Json,
        required: false,
    },
    Column {
        name: "traits",
        kind: Kind::Json,
        required: false,
    },
    Column {
        name: "context",
        kind: Kind::Json,
        required: false,
    },
    Column {
        name: "se_category",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "se_action",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "se_label",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "se_property",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "se_value",
        kind: Kind::Float,
        required: false,
    },
    Column {
        name: "tr_orderid",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "tr_affiliation",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "tr_total",
        kind: Kind::Float,
        required: false,
    },
    Column {
        name: "tr_tax",
        kind: Kind::Float,
        required: false,
    },
    Column {
        name: "tr_shipping",
        kind: Kind::Float,
        required: false,
    },
    Column {
        name: "tr_city",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "tr_state",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "tr_country",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "tr_currency",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "ti_orderid",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "ti_sku",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "ti_name",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "ti_category",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "ti_price",
        kind: Kind::Float,
        required: false,
    },
    Column {
        name: "ti_quantity",
        kind: Kind::Int,
        required: false,
    },
    Column {
        name: "ti_currency",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "pp_xoffset_min",
        kind: Kind::Int,
        required: false,
    },
    Column {
        name: "pp_xoffset_max",
        kind: Kind::Int,
        required: false,
    },
    Column {
        name: "pp_yoffset_min",
        kind: Kind::Int,
        required: false,
    },
    Column {
        name: "pp_yoffset_max",
        kind: Kind::Int,
        required: false,
    },
    Column {
        name: "useragent",
        kind: Kind::Text,
        required: false,
    },
    Column {
        name: "br_name",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "br_family",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "br_version",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "br_lang",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "br_cookies",
        kind: Kind::Bool,
        required: false,
    },
    Column {
        name: "br_colordepth",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "br_viewwidth",
        kind: Kind::Int,
        required: false,
    },
    Column {
        name: "br_viewheight",
        kind: Kind::Int,
        required: false,
    },
    Column {
        name: "os_name",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "os_family",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "os_timezone",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "dvce_type",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "dvce_ismobile",
        kind: Kind::Bool,
        required: false,
    },
    Column {
        name: "dvce_screenwidth",
        kind: Kind::Int,
        required: false,
    },
    Column {
        name: "dvce_screenheight",
        kind: Kind::Int,
        required: false,
    },
    Column {
        name: "doc_charset",
        kind: Kind::LowCardinalityText,
        required: false,
    },
    Column {
        name: "doc_width",
        kind: Kind::Int,
        required: false,
    },
    Column {
        name: "doc_height",
        kind: Kind::Int,
        required: false,
    },
    Column {
        name: "wal_partition",
        kind: Kind::UInt,
        required: false,
    },
    Column {
        name: "wal_lsn",
        kind: Kind::UInt,
        required: false,
    },
    Column {
        name: "wal_index",
        kind: Kind::UInt,
        required: false,
    },
];

/// One field's value, borrowed from an [`Event`]. `Null` means the event has no value: the
/// sink writes NULL to a `Nullable` column and the type's default otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// No value.
    Null,
    /// Text (also JSON text).
    Text(&'a str),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Milliseconds since the Unix epoch, UTC.
    TimestampMs(i64),
    /// A UUID.
    Uuid(&'a Uuid),
}

/// An enriched event: one future row of `sluice.events`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Snowplow `eid`; Segment `messageId` when it is a UUID, else a UUID derived from it; else a v4-shaped UUID derived from the event's place in the log. Lower-case.
    pub event_id: Option<Uuid>,
    /// Segment `messageId` (the sender's dedup key), kept as sent.
    pub message_id: Option<Text>,
    /// The application id: Snowplow `aid`, Segment `context.app.name`, pycolytics `application`.
    pub app_id: Option<Text>,
    /// The application's version: Segment `context.app.version`, pycolytics `version`.
    pub app_version: Option<Text>,
    /// Snowplow `p` (web, mob, pc, srv, app, tv, cnsl, iot, headset); Segment `channel` (browser → web, server → srv, mobile → mob); pycolytics `platform` (free text).
    pub platform: Option<Text>,
    /// Which API the event came in by: `snowplow`, `segment` (also RudderStack), `pycolytics` or `collect`.
    pub source: Option<Text>,
    /// The `/collect/{stream}` stream name (percent-decoded); no value for `/collect` without one and for other routes.
    pub stream: Option<Text>,
    /// When sluice received the request (the envelope's receive time).
    pub collector_tstamp: Option<i64>,
    /// When the device created the event: Snowplow `dtm`, Segment `originalTimestamp` (else `timestamp`).
    pub dvce_created_tstamp: Option<i64>,
    /// When the device sent it: Snowplow `stm`, Segment `sentAt`.
    pub dvce_sent_tstamp: Option<i64>,
    /// `ttm`: a user-supplied "true" time.
    pub true_tstamp: Option<i64>,
    /// `true_tstamp`, else collector time corrected for device clock skew (`collector − (sent − created)`), else collector time.
    pub derived_tstamp: Option<i64>,
    /// Snowplow: page_view, page_ping, struct, unstruct, transaction, transaction_item, ad_impression; Segment: track, page, screen, identify, group, alias; `pycolytics`; `collect`.
    pub event: Option<Text>,
    /// Vendor of the event's schema (e.g. `com.google.analytics` for `se`).
    pub event_vendor: Option<Text>,
    /// Name of the event's schema (e.g. `page_view`, or the self-describing event's name); Segment track `event`, page/screen `name`; pycolytics `event_type`.
    pub event_name: Option<Text>,
    /// Format of the event's schema (`jsonschema`).
    pub event_format: Option<Text>,
    /// Version of the event's schema (e.g. `1-0-0`).
    pub event_version: Option<Text>,
    /// Hash of the raw parameters (see enrich config), or of a JSON source's message without its per-send keys.
    pub event_fingerprint: Option<Text>,
    /// The tracker namespace (`tna`), or Segment `context.library.name`.
    pub name_tracker: Option<Text>,
    /// The tracker version (`tv`), or Segment `context.library.version`.
    pub v_tracker: Option<Text>,
    /// The collector's name and version (`sluice-<version>`), or `cv`.
    pub v_collector: Option<Text>,
    /// The enrichment's name and version.
    pub v_etl: Option<Text>,
    /// The business user id: Snowplow `uid`, Segment `userId`, pycolytics `user_id`.
    pub user_id: Option<Text>,
    /// Segment `anonymousId`.
    pub anonymous_id: Option<Text>,
    /// `ip` (Segment `context.ip`), else forwarded headers from trusted proxies, else the peer address; optionally anonymised.
    pub user_ipaddress: Option<Text>,
    /// `fp`.
    pub user_fingerprint: Option<Text>,
    /// `duid`: the first-party cookie id.
    pub domain_userid: Option<Text>,
    /// `vid`: the session index.
    pub domain_sessionidx: Option<i64>,
    /// The session id: Snowplow `sid`, Segment (RudderStack) `context.sessionId`, pycolytics `session_id`.
    pub domain_sessionid: Option<Text>,
    /// The collector's `sp` cookie id, overridden by `nuid` then `tnuid` (Snowplow only).
    pub network_userid: Option<Text>,
    /// Snowplow `url`, else the Referer header; Segment `context.page.url` (page calls: else `properties.url`).
    pub page_url: Option<Text>,
    /// Snowplow `page`, Segment `context.page.title`.
    pub page_title: Option<Text>,
    /// Snowplow `refr`, Segment `context.page.referrer`.
    pub page_referrer: Option<Text>,
    /// Scheme of page_url.
    pub page_urlscheme: Option<Text>,
    /// Host of page_url.
    pub page_urlhost: Option<Text>,
    /// Port of page_url (the scheme's default when absent).
    pub page_urlport: Option<i64>,
    /// Path of page_url.
    pub page_urlpath: Option<Text>,
    /// Query of page_url.
    pub page_urlquery: Option<Text>,
    /// Fragment of page_url.
    pub page_urlfragment: Option<Text>,
    /// Scheme of page_referrer.
    pub refr_urlscheme: Option<Text>,
    /// Host of page_referrer.
    pub refr_urlhost: Option<Text>,
    /// Port of page_referrer.
    pub refr_urlport: Option<i64>,
    /// Path of page_referrer.
    pub refr_urlpath: Option<Text>,
    /// Query of page_referrer.
    pub refr_urlquery: Option<Text>,
    /// Fragment of page_referrer.
    pub refr_urlfragment: Option<Text>,
    /// `utm_medium` of page_url; Segment `context.campaign.medium` wins. Likewise the other `mkt_*` (Segment `context.campaign.{source,term,content,name}`).
    pub mkt_medium: Option<Text>,
    /// `utm_source`.
    pub mkt_source: Option<Text>,
    /// `utm_term`.
    pub mkt_term: Option<Text>,
    /// `utm_content`.
    pub mkt_content: Option<Text>,
    /// `utm_campaign`.
    pub mkt_campaign: Option<Text>,
    /// A click id (`gclid`, `msclkid`, `dclid`, `fbclid`, …).
    pub mkt_clickid: Option<Text>,
    /// The network that click id belongs to (Google, Microsoft, …).
    pub mkt_network: Option<Text>,
    /// Entities (`co`/`cx`) as JSON text: the `contexts` self-describing JSON.
    pub contexts: Option<Text>,
    /// The self-describing event (`ue_pr`/`ue_px`) as JSON text.
    pub unstruct_event: Option<Text>,
    /// JSON text: Segment `properties`, pycolytics `value`, a `/collect` object.
    pub properties: Option<Text>,
    /// JSON text: Segment `traits` (identify, group).
    pub traits: Option<Text>,
    /// JSON text: Segment `context` (batch-level context merged in).
    pub context: Option<Text>,
    /// `se_ca`.
    pub se_category: Option<Text>,
    /// `se_ac`.
    pub se_action: Option<Text>,
    /// `se_la`.
    pub se_label: Option<Text>,
    /// `se_pr`.
    pub se_property: Option<Text>,
    /// `se_va`.
    pub se_value: Option<f64>,
    /// `tr_id`.
    pub tr_orderid: Option<Text>,
    /// `tr_af`.
    pub tr_affiliation: Option<Text>,
    /// `tr_tt`.
    pub tr_total: Option<f64>,
    /// `tr_tx`.
    pub tr_tax: Option<f64>,
    /// `tr_sh`.
    pub tr_shipping: Option<f64>,
    /// `tr_ci`.
    pub tr_city: Option<Text>,
    /// `tr_st`.
    pub tr_state: Option<Text>,
    /// `tr_co`.
    pub tr_country: Option<Text>,
    /// `tr_cu`.
    pub tr_currency: Option<Text>,
    /// `ti_id`.
    pub ti_orderid: Option<Text>,
    /// `ti_sk`.
    pub ti_sku: Option<Text>,
    /// `ti_nm` (`ti_na`).
    pub ti_name: Option<Text>,
    /// `ti_ca`.
    pub ti_category: Option<Text>,
    /// `ti_pr`.
    pub ti_price: Option<f64>,
    /// `ti_qu`.
    pub ti_quantity: Option<i64>,
    /// `ti_cu`.
    pub ti_currency: Option<Text>,
    /// `pp_mix`.
    pub pp_xoffset_min: Option<i64>,
    /// `pp_max`.
    pub pp_xoffset_max: Option<i64>,
    /// `pp_miy`.
    pub pp_yoffset_min: Option<i64>,
    /// `pp_may`.
    pub pp_yoffset_max: Option<i64>,
    /// Snowplow `ua`, else the User-Agent header; Segment `context.userAgent`; pycolytics and `/collect`: the User-Agent header.
    pub useragent: Option<Text>,
    /// Browser name and major version, parsed from the user agent.
    pub br_name: Option<Text>,
    /// Browser family.
    pub br_family: Option<Text>,
    /// Browser version.
    pub br_version: Option<Text>,
    /// Snowplow `lang`, Segment `context.locale`.
    pub br_lang: Option<Text>,
    /// `cookie`.
    pub br_cookies: Option<bool>,
    /// `cd`.
    pub br_colordepth: Option<Text>,
    /// From `vp`.
    pub br_viewwidth: Option<i64>,
    /// From `vp`.
    pub br_viewheight: Option<i64>,
    /// Operating system name and version, parsed from the user agent.
    pub os_name: Option<Text>,
    /// Operating system family.
    pub os_family: Option<Text>,
    /// Snowplow `tz`, Segment `context.timezone`.
    pub os_timezone: Option<Text>,
    /// Device type (Computer, Mobile, Tablet, Spider, …) from the user agent.
    pub dvce_type: Option<Text>,
    /// True for mobile and tablet devices.
    pub dvce_ismobile: Option<bool>,
    /// From Snowplow `res`, Segment `context.screen.width`.
    pub dvce_screenwidth: Option<i64>,
    /// From Snowplow `res`, Segment `context.screen.height`.
    pub dvce_screenheight: Option<i64>,
    /// `cs`.
    pub doc_charset: Option<Text>,
    /// From `ds`.
    pub doc_width: Option<i64>,
    /// From `ds`.
    pub doc_height: Option<i64>,
    /// The sluice log partition the request was stored in.
    pub wal_partition: Option<u64>,
    /// The request's LSN in that partition: with `wal_index`, identifies the stored event.
    pub wal_lsn: Option<u64>,
    /// The event's index within its request (a POST carries many).
    pub wal_index: Option<u64>,
}

/// Reads one column's value from an [`Event`]: see [`Event::accessor`].
pub type Accessor = for<'a> fn(&'a Event) -> Value<'a>;

impl Event {
    /// The value of column `name`, or `None` when sluice has no such column.
    pub fn value(&self, name: &str) -> Option<Value<'_>> {
        Event::accessor(name).map(|get| get(self))
    }

    /// The reader of column `name`, or `None` when sluice has no such column. Resolve it once
    /// per column and call it per row (the encoder does), instead of matching the name per row.
    pub fn accessor(name: &str) -> Option<Accessor> {
        let get: Accessor = match name {
            "event_id" => |e| e.event_id.as_ref().map_or(Value::Null, Value::Uuid),
            "message_id" => |e| e.message_id.as_deref().map_or(Value::Null, Value::Text),
            "app_id" => |e| e.app_id.as_deref().map_or(Value::Null, Value::Text),
            "app_version" => |e| e.app_version.as_deref().map_or(Value::Null, Value::Text),
            "platform" => |e| e.platform.as_deref().map_or(Value::Null, Value::Text),
            "source" => |e| e.source.as_deref().map_or(Value::Null, Value::Text),
            "stream" => |e| e.stream.as_deref().map_or(Value::Null, Value::Text),
            "collector_tstamp" => |e| e.collector_tstamp.map_or(Value::Null, Value::TimestampMs),
            "dvce_created_tstamp" => |e| {
                e.dvce_created_tstamp
                    .map_or(Value::Null, Value::TimestampMs)
            },
            "dvce_sent_tstamp" => |e| e.dvce_sent_tstamp.map_or(Value::Null, Value::TimestampMs),
            "true_tstamp" => |e| e.true_tstamp.map_or(Value::Null, Value::TimestampMs),
            "derived_tstamp" => |e| e.derived_tstamp.map_or(Value::Null, Value::TimestampMs),
            "event" => |e| e.event.as_deref().map_or(Value::Null, Value::Text),
            "event_vendor" => |e| e.event_vendor.as_deref().map_or(Value::Null, Value::Text),
            "event_name" => |e| e.event_name.as_deref().map_or(Value::Null, Value::Text),
            "event_format" => |e| e.event_format.as_deref().map_or(Value::Null, Value::Text),
            "event_version" => |e| e.event_version.as_deref().map_or(Value::Null, Value::Text),
            "event_fingerprint" => |e| {
                e.event_fingerprint
                    .as_deref()
                    .map_or(Value::Null, Value::Text)
            },
            "name_tracker" => |e| e.name_tracker.as_deref().map_or(Value::Null, Value::Text),
            "v_tracker" => |e| e.v_tracker.as_deref().map_or(Value::Null, Value::Text),
            "v_collector" => |e| e.v_collector.as_deref().map_or(Value::Null, Value::Text),
            "v_etl" => |e| e.v_etl.as_deref().map_or(Value::Null, Value::Text),
            "user_id" => |e| e.user_id.as_deref().map_or(Value::Null, Value::Text),
            "anonymous_id" => |e| e.anonymous_id.as_deref().map_or(Value::Null, Value::Text),
            "user_ipaddress" => |e| e.user_ipaddress.as_deref().map_or(Value::Null, Value::Text),
            "user_fingerprint" => |e| {
                e.user_fingerprint
                    .as_deref()
                    .map_or(Value::Null, Value::Text)
            },
            "domain_userid" => |e| e.domain_userid.as_deref().map_or(Value::Null, Value::Text),
            "domain_sessionidx" => |e| e.domain_sessionidx.map_or(Value::Null, Value::Int),
            "domain_sessionid" => |e| {
                e.domain_sessionid
                    .as_deref()
                    .map_or(Value::Null, Value::Text)
            },
            "network_userid" => |e| e.network_userid.as_deref().map_or(Value::Null, Value::Text),
            "page_url" => |e| e.page_url.as_deref().map_or(Value::Null, Value::Text),
            "page_title" => |e| e.page_title.as_deref().map_or(Value::Null, Value::Text),
            "page_referrer" => |e| e.page_referrer.as_deref().map_or(Value::Null, Value::Text),
            "page_urlscheme" => |e| e.page_urlscheme.as_deref().map_or(Value::Null, Value::Text),
            "page_urlhost" => |e| e.page_urlhost.as_deref().map_or(Value::Null, Value::Text),
            "page_urlport" => |e| e.page_urlport.map_or(Value::Null, Value::Int),
            "page_urlpath" => |e| e.page_urlpath.as_deref().map_or(Value::Null, Value::Text),
            "page_urlquery" => |e| e.page_urlquery.as_deref().map_or(Value::Null, Value::Text),
            "page_urlfragment" => |e| {
                e.page_urlfragment
                    .as_deref()
                    .map_or(Value::Null, Value::Text)
            },
            "refr_urlscheme" => |e| e.refr_urlscheme.as_deref().map_or(Value::Null, Value::Text),
            "refr_urlhost" => |e| e.refr_urlhost.as_deref().map_or(Value::Null, Value::Text),
            "refr_urlport" => |e| e.refr_urlport.map_or(Value::Null, Value::Int),
            "refr_urlpath" => |e| e.refr_urlpath.as_deref().map_or(Value::Null, Value::Text),
            "refr_urlquery" => |e| e.refr_urlquery.as_deref().map_or(Value::Null, Value::Text),
            "refr_urlfragment" => |e| {
                e.refr_urlfragment
                    .as_deref()
                    .map_or(Value::Null, Value::Text)
            },
            "mkt_medium" => |e| e.mkt_medium.as_deref().map_or(Value::Null, Value::Text),
            "mkt_source" => |e| e.mkt_source.as_deref().map_or(Value::Null, Value::Text),
            "mkt_term" => |e| e.mkt_term.as_deref().map_or(Value::Null, Value::Text),
            "mkt_content" => |e| e.mkt_content.as_deref().map_or(Value::Null, Value::Text),
            "mkt_campaign" => |e| e.mkt_campaign.as_deref().map_or(Value::Null, Value::Text),
            "mkt_clickid" => |e| e.mkt_clickid.as_deref().map_or(Value::Null, Value::Text),
            "mkt_network" => |e| e.mkt_network.as_deref().map_or(Value::Null, Value::Text),
            "contexts" => |e| e.contexts.as_deref().map_or(Value::Null, Value::Text),
            "unstruct_event" => |e| e.unstruct_event.as_deref().map_or(Value::Null, Value::Text),
            "properties" => |e| e.properties.as_deref().map_or(Value::Null, Value::Text),
            "traits" => |e| e.traits.as_deref().map_or(Value::Null, Value::Text),
            "context" => |e| e.context.as_deref().map_or(Value::Null, Value::Text),
            "se_category" => |e| e.se_category.as_deref().map_or(Value::Null, Value::Text),
            "se_action" => |e| e.se_action.as_deref().map_or(Value::Null, Value::Text),
            "se_label" => |e| e.se_label.as_deref().map_or(Value::Null, Value::Text),
            "se_property" => |e| e.se_property.as_deref().map_or(Value::Null, Value::Text),
            "se_value" => |e| e.se_value.map_or(Value::Null, Value::Float),
            "tr_orderid" => |e| e.tr_orderid.as_deref().map_or(Value::Null, Value::Text),
            "tr_affiliation" => |e| e.tr_affiliation.as_deref().map_or(Value::Null, Value::Text),
            "tr_total" => |e| e.tr_total.map_or(Value::Null, Value::Float),
            "tr_tax" => |e| e.tr_tax.map_or(Value::Null, Value::Float),
            "tr_shipping" => |e| e.tr_shipping.map_or(Value::Null, Value::Float),
            "tr_city" => |e| e.tr_city.as_deref().map_or(Value::Null, Value::Text),
            "tr_state" => |e| e.tr_state.as_deref().map_or(Value::Null, Value::Text),
            "tr_country" => |e| e.tr_country.as_deref().map_or(Value::Null, Value::Text),
            "tr_currency" => |e| e.tr_currency.as_deref().map_or(Value::Null, Value::Text),
            "ti_orderid" => |e| e.ti_orderid.as_deref().map_or(Value::Null, Value::Text),
            "ti_sku" => |e| e.ti_sku.as_deref().map_or(Value::Null, Value::Text),
            "ti_name" => |e| e.ti_name.as_deref().map_or(Value::Null, Value::Text),
            "ti_category" => |e| e.ti_category.as_deref().map_or(Value::Null, Value::Text),
            "ti_price" => |e| e.ti_price.map_or(Value::Null, Value::Float),
            "ti_quantity" => |e| e.ti_quantity.map_or(Value::Null, Value::Int),
            "ti_currency" => |e| e.ti_currency.as_deref().map_or(Value::Null, Value::Text),
            "pp_xoffset_min" => |e| e.pp_xoffset_min.map_or(Value::Null, Value::Int),
            "pp_xoffset_max" => |e| e.pp_xoffset_max.map_or(Value::Null, Value::Int),
            "pp_yoffset_min" => |e| e.pp_yoffset_min.map_or(Value::Null, Value::Int),
            "pp_yoffset_max" => |e| e.pp_yoffset_max.map_or(Value::Null, Value::Int),
            "useragent" => |e| e.useragent.as_deref().map_or(Value::Null, Value::Text),
            "br_name" => |e| e.br_name.as_deref().map_or(Value::Null, Value::Text),
            "br_family" => |e| e.br_family.as_deref().map_or(Value::Null, Value::Text),
            "br_version" => |e| e.br_version.as_deref().map_or(Value::Null, Value::Text),
            "br_lang" => |e| e.br_lang.as_deref().map_or(Value::Null, Value::Text),
            "br_cookies" => |e| e.br_cookies.map_or(Value::Null, Value::Bool),
            "br_colordepth" => |e| e.br_colordepth.as_deref().map_or(Value::Null, Value::Text),
            "br_viewwidth" => |e| e.br_viewwidth.map_or(Value::Null, Value::Int),
            "br_viewheight" => |e| e.br_viewheight.map_or(Value::Null, Value::Int),
            "os_name" => |e| e.os_name.as_deref().map_or(Value::Null, Value::Text),
            "os_family" => |e| e.os_family.as_deref().map_or(Value::Null, Value::Text),
            "os_timezone" => |e| e.os_timezone.as_deref().map_or(Value::Null, Value::Text),
            "dvce_type" => |e| e.dvce_type.as_deref().map_or(Value::Null, Value::Text),
            "dvce_ismobile" => |e| e.dvce_ismobile.map_or(Value::Null, Value::Bool),
            "dvce_screenwidth" => |e| e.dvce_screenwidth.map_or(Value::Null, Value::Int),
            "dvce_screenheight" => |e| e.dvce_screenheight.map_or(Value::Null, Value::Int),
            "doc_charset" => |e| e.doc_charset.as_deref().map_or(Value::Null, Value::Text),
            "doc_width" => |e| e.doc_width.map_or(Value::Null, Value::Int),
            "doc_height" => |e| e.doc_height.map_or(Value::Null, Value::Int),
            "wal_partition" => |e| e.wal_partition.map_or(Value::Null, Value::UInt),
            "wal_lsn" => |e| e.wal_lsn.map_or(Value::Null, Value::UInt),
            "wal_index" => |e| e.wal_index.map_or(Value::Null, Value::UInt),
            _ => return None,
        };
        Some(get)
    }
}

/// Kinds of failure, modelled on Snowplow's bad rows. Each has a stable name used in the
/// dead-letter store, the CLI (`--reason`) and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCategory {
    /// The request is larger than `collector.max_payload_bytes`.
    SizeViolation,
    /// The stored request can't be decoded at all (bad envelope, path, query string, nuid).
    CollectorPayloadFormatViolation,
    /// No adapter for the request's route or vendor/version.
    AdapterFailure,
    /// The payload breaks the tracker protocol (content type, not JSON, not `payload_data`,
    /// non-string values, missing `tv`/`p`/`e`, bad base64).
    TrackerProtocolViolation,
    /// A field fails its type or format (bad UUID, timestamp, number, unknown event type…).
    SchemaViolation,
    /// An enrichment failed.
    EnrichmentFailure,
    /// ClickHouse rejected the row as bad data.
    LoaderRejection,
}

impl FailureCategory {
    /// Every category, in declaration order.
    pub const ALL: [FailureCategory; 7] = [
        FailureCategory::SizeViolation,
        FailureCategory::CollectorPayloadFormatViolation,
        FailureCategory::AdapterFailure,
        FailureCategory::TrackerProtocolViolation,
        FailureCategory::SchemaViolation,
        FailureCategory::EnrichmentFailure,
        FailureCategory::LoaderRejection,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCategory::SizeViolation => "size_violation",
            FailureCategory::CollectorPayloadFormatViolation => {
                "collector_payload_format_violation"
            }
            FailureCategory::AdapterFailure => "adapter_failure",
            FailureCategory::TrackerProtocolViolation => "tracker_protocol_violation",
            FailureCategory::SchemaViolation => "schema_violation",
            FailureCategory::EnrichmentFailure => "enrichment_failure",
            FailureCategory::LoaderRejection => "loader_rejection",
        }
    }

    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<FailureCategory> {
        FailureCategory::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for FailureCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why (part of) a request could not become rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The kind of failure.
    pub category: FailureCategory,
    /// What is wrong, one message per problem, written for the operator.
    pub messages: Vec<String>,
    /// Which event of the request failed (its index in a batch), or `None` for the whole
    /// request.
    pub event_index: Option<u32>,
    /// The failing event's own parameters or JSON, when the failure concerns one event.
    pub event_payload: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_has_a_value_accessor() {
        let e = Event::default();
        for c in COLUMNS {
            assert_eq!(e.value(c.name), Some(Value::Null), "{}", c.name);
        }
        assert_eq!(e.value("no_such_column"), None);
    }

    #[test]
    fn column_names_are_unique() {
        let mut names: Vec<_> = COLUMNS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COLUMNS.len());
    }

    #[test]
    fn failure_categories_round_trip_their_names() {
        for c in FailureCategory::ALL {
            assert_eq!(FailureCategory::parse(c.as_str()), Some(c));
        }
    }
}
