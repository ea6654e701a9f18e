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

/// Declares the columns once and generates from that one list [`COLUMNS`], the [`Event`]
/// struct (a field per column, typed by its [`Kind`], documented where it is declared) and
/// [`Event::accessor`]. A column is `name: Kind` with `, required` when a table must have it.
macro_rules! columns {
    ($($(#[doc = $doc:literal])+ $name:ident: $kind:ident $(, $required:ident)?;)+) => {
        /// Every column sluice fills, in table order.
        pub const COLUMNS: &[Column] = &[$(Column {
            name: stringify!($name),
            kind: Kind::$kind,
            required: columns!(@required $($required)?),
        },)+];

        /// An enriched event: one future row of `sluice.events`.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct Event {
            $($(#[doc = $doc])+ pub $name: Option<columns!(@type $kind)>,)+
        }

        impl Event {
            /// The reader of column `name`, or `None` when sluice has no such column. Resolve
            /// it once per column and call it per row (the encoder does), instead of matching
            /// the name per row.
            pub fn accessor(name: &str) -> Option<Accessor> {
                let get: Accessor = match name {
                    $(stringify!($name) => |e| columns!(@value $kind, e.$name),)+
                    _ => return None,
                };
                Some(get)
            }
        }
    };

    (@required) => { false };
    (@required required) => { true };

    (@type Uuid) => { Uuid };
    (@type Text) => { Text };
    (@type LowCardinalityText) => { Text };
    (@type Json) => { Text };
    (@type Timestamp) => { i64 };
    (@type Int) => { i64 };
    (@type UInt) => { u64 };
    (@type Float) => { f64 };
    (@type Bool) => { bool };

    (@value Uuid, $field:expr) => { $field.as_ref().map_or(Value::Null, Value::Uuid) };
    (@value Text, $field:expr) => { $field.as_deref().map_or(Value::Null, Value::Text) };
    (@value LowCardinalityText, $field:expr) => { columns!(@value Text, $field) };
    (@value Json, $field:expr) => { columns!(@value Text, $field) };
    (@value Timestamp, $field:expr) => { $field.map_or(Value::Null, Value::TimestampMs) };
    (@value Int, $field:expr) => { $field.map_or(Value::Null, Value::Int) };
    (@value UInt, $field:expr) => { $field.map_or(Value::Null, Value::UInt) };
    (@value Float, $field:expr) => { $field.map_or(Value::Null, Value::Float) };
    (@value Bool, $field:expr) => { $field.map_or(Value::Null, Value::Bool) };
}

columns! {
    /// Snowplow `eid`; Segment `messageId` when it is a UUID, else a UUID derived from it;
    /// else a v4-shaped UUID derived from the event's place in the log. Lower-case.
    event_id: Uuid, required;
    /// Segment `messageId` (the sender's dedup key), kept as sent.
    message_id: Text;
    /// The application id: Snowplow `aid`, Segment `context.app.name`, pycolytics `application`.
    app_id: LowCardinalityText;
    /// The application's version: Segment `context.app.version`, pycolytics `version`.
    app_version: LowCardinalityText;
    /// Snowplow `p` (web, mob, pc, srv, app, tv, cnsl, iot, headset); Segment `channel`
    /// (browser → web, server → srv, mobile → mob); pycolytics `platform` (free text).
    platform: LowCardinalityText;
    /// Which API the event came in by: `snowplow`, `segment` (also RudderStack),
    /// `pycolytics` or `collect`.
    source: LowCardinalityText;
    /// The `/collect/{stream}` stream name (percent-decoded); no value for `/collect`
    /// without one and for other routes.
    stream: LowCardinalityText;
    /// When sluice received the request (the envelope's receive time).
    collector_tstamp: Timestamp, required;
    /// When the device created the event: Snowplow `dtm`, Segment `originalTimestamp` (else
    /// `timestamp`).
    dvce_created_tstamp: Timestamp;
    /// When the device sent it: Snowplow `stm`, Segment `sentAt`.
    dvce_sent_tstamp: Timestamp;
    /// `ttm`: a user-supplied "true" time.
    true_tstamp: Timestamp;
    /// `true_tstamp`, else collector time corrected for device clock skew (`collector −
    /// (sent − created)`), else collector time.
    derived_tstamp: Timestamp;
    /// Snowplow: page_view, page_ping, struct, unstruct, transaction, transaction_item,
    /// ad_impression; Segment: track, page, screen, identify, group, alias; `pycolytics`;
    /// `collect`.
    event: LowCardinalityText, required;
    /// Vendor of the event's schema (e.g. `com.google.analytics` for `se`).
    event_vendor: LowCardinalityText;
    /// Name of the event's schema (e.g. `page_view`, or the self-describing event's name);
    /// Segment track `event`, page/screen `name`; pycolytics `event_type`.
    event_name: LowCardinalityText;
    /// Format of the event's schema (`jsonschema`).
    event_format: LowCardinalityText;
    /// Version of the event's schema (e.g. `1-0-0`).
    event_version: LowCardinalityText;
    /// Hash of the raw parameters (see enrich config), or of a JSON source's message
    /// without its per-send keys.
    event_fingerprint: Text;
    /// The tracker namespace (`tna`), or Segment `context.library.name`.
    name_tracker: LowCardinalityText;
    /// The tracker version (`tv`), or Segment `context.library.version`.
    v_tracker: LowCardinalityText;
    /// The collector's name and version (`sluice-<version>`), or `cv`.
    v_collector: LowCardinalityText, required;
    /// The enrichment's name and version.
    v_etl: LowCardinalityText;
    /// The business user id: Snowplow `uid`, Segment `userId`, pycolytics `user_id`.
    user_id: Text;
    /// Segment `anonymousId`.
    anonymous_id: Text;
    /// `ip` (Segment `context.ip`), else forwarded headers from trusted proxies, else the
    /// peer address; optionally anonymised.
    user_ipaddress: Text;
    /// `fp`.
    user_fingerprint: Text;
    /// `duid`: the first-party cookie id.
    domain_userid: Text;
    /// `vid`: the session index.
    domain_sessionidx: Int;
    /// The session id: Snowplow `sid`, Segment (RudderStack) `context.sessionId`,
    /// pycolytics `session_id`.
    domain_sessionid: Text;
    /// The collector's `sp` cookie id, overridden by `nuid` then `tnuid` (Snowplow only).
    network_userid: Text;
    /// Snowplow `url`, else the Referer header; Segment `context.page.url` (page calls:
    /// else `properties.url`).
    page_url: Text;
    /// Snowplow `page`, Segment `context.page.title`.
    page_title: Text;
    /// Snowplow `refr`, Segment `context.page.referrer`.
    page_referrer: Text;
    /// Scheme of page_url.
    page_urlscheme: LowCardinalityText;
    /// Host of page_url.
    page_urlhost: Text;
    /// Port of page_url (the scheme's default when absent).
    page_urlport: Int;
    /// Path of page_url.
    page_urlpath: Text;
    /// Query of page_url.
    page_urlquery: Text;
    /// Fragment of page_url.
    page_urlfragment: Text;
    /// Scheme of page_referrer.
    refr_urlscheme: LowCardinalityText;
    /// Host of page_referrer.
    refr_urlhost: Text;
    /// Port of page_referrer.
    refr_urlport: Int;
    /// Path of page_referrer.
    refr_urlpath: Text;
    /// Query of page_referrer.
    refr_urlquery: Text;
    /// Fragment of page_referrer.
    refr_urlfragment: Text;
    /// `utm_medium` of page_url; Segment `context.campaign.medium` wins. Likewise the other
    /// `mkt_*` (Segment `context.campaign.{source,term,content,name}`).
    mkt_medium: Text;
    /// `utm_source`.
    mkt_source: Text;
    /// `utm_term`.
    mkt_term: Text;
    /// `utm_content`.
    mkt_content: Text;
    /// `utm_campaign`.
    mkt_campaign: Text;
    /// A click id (`gclid`, `msclkid`, `dclid`, `fbclid`, …).
    mkt_clickid: Text;
    /// The network that click id belongs to (Google, Microsoft, …).
    mkt_network: LowCardinalityText;
    /// Entities (`co`/`cx`) as JSON text: the `contexts` self-describing JSON.
    contexts: Json;
    /// The self-describing event (`ue_pr`/`ue_px`) as JSON text.
    unstruct_event: Json;
    /// JSON text: Segment `properties`, pycolytics `value`, a `/collect` object.
    properties: Json;
    /// JSON text: Segment `traits` (identify, group).
    traits: Json;
    /// JSON text: Segment `context` (batch-level context merged in).
    context: Json;
    /// `se_ca`.
    se_category: Text;
    /// `se_ac`.
    se_action: Text;
    /// `se_la`.
    se_label: Text;
    /// `se_pr`.
    se_property: Text;
    /// `se_va`.
    se_value: Float;
    /// `tr_id`.
    tr_orderid: Text;
    /// `tr_af`.
    tr_affiliation: Text;
    /// `tr_tt`.
    tr_total: Float;
    /// `tr_tx`.
    tr_tax: Float;
    /// `tr_sh`.
    tr_shipping: Float;
    /// `tr_ci`.
    tr_city: Text;
    /// `tr_st`.
    tr_state: Text;
    /// `tr_co`.
    tr_country: Text;
    /// `tr_cu`.
    tr_currency: LowCardinalityText;
    /// `ti_id`.
    ti_orderid: Text;
    /// `ti_sk`.
    ti_sku: Text;
    /// `ti_nm` (`ti_na`).
    ti_name: Text;
    /// `ti_ca`.
    ti_category: Text;
    /// `ti_pr`.
    ti_price: Float;
    /// `ti_qu`.
    ti_quantity: Int;
    /// `ti_cu`.
    ti_currency: LowCardinalityText;
    /// `pp_mix`.
    pp_xoffset_min: Int;
    /// `pp_max`.
    pp_xoffset_max: Int;
    /// `pp_miy`.
    pp_yoffset_min: Int;
    /// `pp_may`.
    pp_yoffset_max: Int;
    /// Snowplow `ua`, else the User-Agent header; Segment `context.userAgent`; pycolytics
    /// and `/collect`: the User-Agent header.
    useragent: Text;
    /// Browser name and major version, parsed from the user agent.
    br_name: LowCardinalityText;
    /// Browser family.
    br_family: LowCardinalityText;
    /// Browser version.
    br_version: LowCardinalityText;
    /// Snowplow `lang`, Segment `context.locale`.
    br_lang: LowCardinalityText;
    /// `cookie`.
    br_cookies: Bool;
    /// `cd`.
    br_colordepth: LowCardinalityText;
    /// From `vp`.
    br_viewwidth: Int;
    /// From `vp`.
    br_viewheight: Int;
    /// Operating system name and version, parsed from the user agent.
    os_name: LowCardinalityText;
    /// Operating system family.
    os_family: LowCardinalityText;
    /// Snowplow `tz`, Segment `context.timezone`.
    os_timezone: LowCardinalityText;
    /// Device type (Computer, Mobile, Tablet, Spider, …) from the user agent.
    dvce_type: LowCardinalityText;
    /// True for mobile and tablet devices.
    dvce_ismobile: Bool;
    /// From Snowplow `res`, Segment `context.screen.width`.
    dvce_screenwidth: Int;
    /// From Snowplow `res`, Segment `context.screen.height`.
    dvce_screenheight: Int;
    /// `cs`.
    doc_charset: LowCardinalityText;
    /// From `ds`.
    doc_width: Int;
    /// From `ds`.
    doc_height: Int;
    /// The sluice log partition the request was stored in.
    wal_partition: UInt;
    /// The request's LSN in that partition: with `wal_index`, identifies the stored event.
    wal_lsn: UInt;
    /// The event's index within its request (a POST carries many).
    wal_index: UInt;
}

/// Reads one column's value from an [`Event`]: see [`Event::accessor`].
pub type Accessor = for<'a> fn(&'a Event) -> Value<'a>;

impl Event {
    /// The value of column `name`, or `None` when sluice has no such column.
    pub fn value(&self, name: &str) -> Option<Value<'_>> {
        Event::accessor(name).map(|get| get(self))
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
