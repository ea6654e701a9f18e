//! What requests carry, parsed: shared by the acknowledgement path ([`crate::http`]) and the
//! publisher ([`crate::publish`]), and importing neither.
//!
//! - [`route`]: the route table, the only place a path is spelled.
//! - [`text`]: percent-decoding (its variants named), lenient base64, TSV-safe text.
//! - [`time`]: the clock, ISO 8601 date-times, the range of timestamps a row holds.
//! - [`ip`]: client addresses: CIDRs, peers, forwarded hops, the client address enrichment
//!   records.
//! - [`snowplow`]: the Snowplow tracker protocol: query strings, tp2 bodies, redirects, Iglu
//!   URIs, into per-event parameter maps.
//! - [`pycolytics`]: the shape of pycolytics bodies, checked before storing and parsed after.

pub mod ip;
pub mod pycolytics;
pub mod route;
pub mod snowplow;
pub mod text;
pub mod time;
