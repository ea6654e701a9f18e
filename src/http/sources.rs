//! The JSON sources (Segment/RudderStack, pycolytics, generic `/collect`): their configuration
//! sections and everything checked in their bodies before the answer.
//!
//! The stored body is always the request's own bytes (gzip stays gzip); this module only reads
//! it to decide the answer. A `Content-Encoding: gzip` body is decompressed with a cap
//! ([`decoded_body`]; at most `server.max_decompressed_bytes`, 413 above it), then parsed once by
//! `serde_json::from_slice` into small borrowed structs: the whole document is validated, but no
//! `serde_json::Value` tree is built and batch items are only counted.
//!
//! # What is checked, per route family
//!
//! | Route | Status when refused |
//! |---|---|
//! | `/v1/{track,identify,page,screen,group,alias}`, `/v1/{t,i,p,s,g,a}` | 413 `event_too_large` over `segment.max_event_bytes`; 400 `invalid_request` when not a JSON object |
//! | `/v1/{batch,import,b}` | 413 `batch_too_large` over `segment.max_batch_bytes`; 400 `invalid_request` when not an object with a `batch` array; 400 `too_many_events` over `segment.max_batch_items` |
//! | `/v1.0/event`, `/v1.0/events` | 400 when not JSON; 422 for a wrong shape (six required strings, `value` an object) |
//! | `/collect`, `/collect/{stream}` | 400 unless a JSON object or an array of objects |
//!
//! Sizes are of the decompressed body. Per-item problems of a Segment batch (a missing
//! `userId`/`anonymousId`, an item over `segment.max_event_bytes`, an unknown `type`) are not
//! checked here: the publisher dead-letters those items and loads the rest of the batch.
//! An empty batch (Segment `batch: []`, pycolytics `[]`, collect `[]`) is answered as a success
//! and nothing is stored.
//!
//! Bodies must be `application/json`, `text/plain` (analytics.js sends JSON as text to avoid
//! a CORS preflight), any `…+json` type, or carry no `Content-Type`; anything else is 415.
//! `Content-Encoding` must be absent, `identity` or `gzip` (else 415).

use std::borrow::Cow;
use std::fmt;
use std::io::Read;

use http::header::{self, HeaderMap};
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::units::{check_range, ByteSize, Violation};
use crate::wire::pycolytics;

use super::HttpError;

/// The default `auth.header`.
pub const DEFAULT_AUTH_HEADER: &str = "X-API-Key";
/// The longest accepted configured key.
pub const MAX_KEY_BYTES: usize = 512;

// ---------------------------------------------------------------------------------------------
// Configuration sections.
// ---------------------------------------------------------------------------------------------

/// `[segment]`: the Segment / RudderStack routes `/v1/*`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentConfig {
    /// Write keys accepted from HTTP Basic auth (the username; the password is ignored),
    /// `writeKey` in the body, or `?writeKey=` (first present wins, in that order). Empty (the
    /// default) = no key required, with a warning at start-up. Each key 1 to 512 visible ASCII
    /// characters. Environment `SLUICE_SEGMENT__WRITE_KEYS='["k1","k2"]'`.
    pub write_keys: Vec<String>,
    /// Largest message: a single-call body above it gets 413; a batch item above it is
    /// dead-lettered as a `size_violation` (the rest of the batch loads). Default `32KiB`; 1KiB
    /// to 16MiB, at most `max_batch_bytes`.
    pub max_event_bytes: ByteSize,
    /// Largest `/v1/batch`, `/v1/import`, `/v1/b` body (decompressed); above it 413. Default
    /// `500KiB`; 1KiB to 64MiB. Bodies are also bounded by `server.max_body_bytes` (as sent)
    /// and `server.max_decompressed_bytes` (after gzip).
    pub max_batch_bytes: ByteSize,
    /// Most items in one batch; more get 400 `too_many_events` (clients drop a 400 rather than
    /// retry it forever; Segment itself accepts and silently drops them). Default 2500; 1 to
    /// 100 000.
    pub max_batch_items: usize,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            write_keys: Vec::new(),
            max_event_bytes: ByteSize(32 << 10),
            max_batch_bytes: ByteSize(500 << 10),
            max_batch_items: 2500,
        }
    }
}

/// `[pycolytics]`: the pycolytics routes `/v1.0/event(s)`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PycolyticsConfig {
    /// API keys accepted in each event's `api_key`; with keys configured every event of a
    /// batch must carry one of them, and a missing key never passes (401). Empty (the default)
    /// = no key required, with a warning at start-up. Environment
    /// `SLUICE_PYCOLYTICS__API_KEYS='["k"]'`.
    pub api_keys: Vec<String>,
}

/// `[collect]`: the generic routes `/collect`, `/collect/{stream}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CollectConfig {
    /// API keys accepted in the `auth.header` header. Empty (the default) = no key required,
    /// with a warning at start-up.
    pub api_keys: Vec<String>,
}

/// `[auth]`: the key header of the generic and Snowplow routes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The request header carrying the key on `/collect*` (checked against `collect.api_keys`)
    /// and the Snowplow routes (checked against `auth.snowplow_keys`). Default `X-API-Key`; a
    /// header name. Browsers may send it: preflights allow it.
    pub header: String,
    /// Keys accepted on the Snowplow routes. Empty (the default) = open, as Snowplow trackers
    /// usually send no key (a pixel `GET` cannot carry a header).
    pub snowplow_keys: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            header: DEFAULT_AUTH_HEADER.into(),
            snowplow_keys: Vec::new(),
        }
    }
}

/// Violations of one key list: each key 1 to [`MAX_KEY_BYTES`] visible ASCII characters.
fn key_violations(key: &'static str, keys: &[String], out: &mut Vec<Violation>) {
    for (i, k) in keys.iter().enumerate() {
        let ok = (1..=MAX_KEY_BYTES).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            // Never echo the key itself: it is a secret.
            out.push(Violation {
                key,
                message: format!(
                    "entry {} ({} bytes) must be 1 to {MAX_KEY_BYTES} visible ASCII characters \
                     (no spaces or control characters)",
                    i + 1,
                    k.len()
                ),
            });
        }
    }
}

impl SegmentConfig {
    /// Values outside their documented bounds, each naming its key.
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        key_violations("segment.write_keys", &self.write_keys, &mut out);
        let (e, b) = (self.max_event_bytes, self.max_batch_bytes);
        let kib = ByteSize(1 << 10);
        check_range(
            &mut out,
            "segment.max_event_bytes",
            e,
            kib,
            ByteSize(16 << 20),
        );
        check_range(
            &mut out,
            "segment.max_batch_bytes",
            b,
            kib,
            ByteSize(64 << 20),
        );
        if e > b {
            out.push(Violation {
                key: "segment.max_event_bytes",
                message: format!("{e} is larger than segment.max_batch_bytes = {b}"),
            });
        }
        check_range(
            &mut out,
            "segment.max_batch_items",
            self.max_batch_items,
            1,
            100_000,
        );
        out
    }
}

impl PycolyticsConfig {
    /// Values outside their documented bounds, each naming its key.
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        key_violations("pycolytics.api_keys", &self.api_keys, &mut out);
        out
    }
}

impl CollectConfig {
    /// Values outside their documented bounds, each naming its key.
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        key_violations("collect.api_keys", &self.api_keys, &mut out);
        out
    }
}

impl AuthConfig {
    /// Values outside their documented bounds, each naming its key.
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        if http::HeaderName::from_bytes(self.header.as_bytes()).is_err() {
            out.push(Violation {
                key: "auth.header",
                message: format!("`{}` is not a header name", self.header),
            });
        }
        key_violations("auth.snowplow_keys", &self.snowplow_keys, &mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies.
// ---------------------------------------------------------------------------------------------

/// Refuses a `Content-Type` that is not JSON or text (415).
pub fn check_content_type(headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim();
    let ok = essence.is_empty()
        || essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("text/plain")
        || (essence.len() > 5
            && essence.is_char_boundary(essence.len() - 5)
            && essence[essence.len() - 5..].eq_ignore_ascii_case("+json"));
    if ok {
        Ok(())
    } else {
        Err(HttpError::UnsupportedMediaType {
            content_type: text.chars().take(100).collect(),
        })
    }
}

/// The body as JSON bytes of at most `limit`: the request's own bytes, or decompressed
/// (`Content-Encoding: gzip`) with the decompression stopped after `min(limit, cap)` bytes.
/// `too_large(size)` builds the error for a body over `limit` (`size` when known); a gzip body
/// whose decompressed size passes `cap` (`server.max_decompressed_bytes`, when that is the
/// smaller) is [`HttpError::DecompressedTooLarge`].
pub fn decoded_body<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
    limit: u64,
    cap: u64,
    too_large: impl FnOnce(Option<u64>) -> HttpError,
) -> Result<Cow<'a, [u8]>, HttpError> {
    let mut gzip = false;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        for coding in value.to_str().unwrap_or("?").split(',') {
            let coding = coding.trim();
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                if gzip {
                    return Err(HttpError::UnsupportedEncoding {
                        encoding: "gzip, gzip".into(),
                    });
                }
                gzip = true;
            } else if !coding.is_empty() && !coding.eq_ignore_ascii_case("identity") {
                return Err(HttpError::UnsupportedEncoding {
                    encoding: coding.chars().take(50).collect(),
                });
            }
        }
    }
    if !gzip {
        if body.len() as u64 > limit {
            return Err(too_large(Some(body.len() as u64)));
        }
        return Ok(Cow::Borrowed(body));
    }
    let max = limit.min(cap);
    let mut out = Vec::with_capacity((body.len().saturating_mul(4) as u64).min(max) as usize);
    let mut decoder = flate2::read::MultiGzDecoder::new(body).take(max + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| HttpError::InvalidGzip(e.to_string()))?;
    if out.len() as u64 > max {
        return Err(if cap < limit {
            HttpError::DecompressedTooLarge { limit: cap }
        } else {
            too_large(None)
        });
    }
    Ok(Cow::Owned(out))
}

/// What a body offered for authorisation: the key it carries, if any.
#[derive(Debug, Default)]
pub struct Inspected<'a> {
    /// Keys in the body: Segment's `writeKey` (one), or each pycolytics item's `api_key`
    /// (`None` for an item without one). Empty when the body carries none.
    pub keys: Vec<Option<Cow<'a, str>>>,
    /// Nothing to store: an empty batch.
    pub empty: bool,
    /// Batch items (Segment), checked against `segment.max_batch_items` after authorisation.
    pub items: usize,
}

/// A Segment single call (only the fields the HTTP layer needs).
#[derive(Deserialize)]
struct SegmentMessage<'a> {
    #[serde(rename = "writeKey", borrow, default)]
    write_key: Option<Cow<'a, str>>,
}

/// A Segment batch: the key and the number of items (items are skipped, not built).
#[derive(Deserialize)]
struct SegmentBatch<'a> {
    #[serde(rename = "writeKey", borrow, default)]
    write_key: Option<Cow<'a, str>>,
    batch: ItemCount,
}

/// The length of a JSON array, each element validated and skipped.
struct ItemCount(usize);

impl<'de> Deserialize<'de> for ItemCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Counter;
        impl<'de> Visitor<'de> for Counter {
            type Value = ItemCount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ItemCount, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(ItemCount(n))
            }
        }
        d.deserialize_seq(Counter)
    }
}

/// The first byte that is not JSON whitespace.
fn first_byte(json: &[u8]) -> Option<u8> {
    json.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// 400 for a JSON syntax error, else the shape error `shape` builds.
fn json_error(e: serde_json::Error, shape: impl FnOnce(String) -> HttpError) -> HttpError {
    match e.classify() {
        serde_json::error::Category::Data => shape(e.to_string()),
        _ => HttpError::InvalidJson(e.to_string()),
    }
}

/// Checks a Segment body (already decoded) and returns its `writeKey`.
pub fn inspect_segment(batch: bool, json: &[u8]) -> Result<Inspected<'_>, HttpError> {
    if first_byte(json) != Some(b'{') {
        // Tell "not JSON at all" from "JSON but not an object".
        return Err(match serde_json::from_slice::<IgnoredAny>(json) {
            Err(e) => HttpError::InvalidJson(e.to_string()),
            Ok(_) => HttpError::InvalidBody(if batch {
                "the body must be a JSON object with a `batch` array of messages".into()
            } else {
                "the body must be one JSON object (a Segment message)".into()
            }),
        });
    }
    if batch {
        let b: SegmentBatch = serde_json::from_slice(json).map_err(|e| {
            json_error(e, |m| {
                HttpError::InvalidBody(format!(
                    "the body must be a JSON object with a `batch` array of messages ({m})"
                ))
            })
        })?;
        Ok(Inspected {
            keys: b.write_key.map(Some).into_iter().collect(),
            empty: b.batch.0 == 0,
            items: b.batch.0,
        })
    } else {
        let m: SegmentMessage =
            serde_json::from_slice(json).map_err(|e| json_error(e, HttpError::InvalidBody))?;
        Ok(Inspected {
            keys: m.write_key.map(Some).into_iter().collect(),
            empty: false,
            items: 1,
        })
    }
}

/// Checks a pycolytics body: 400 when not JSON, 422 for a wrong shape; returns each item's key.
pub fn inspect_pycolytics(many: bool, json: &[u8]) -> Result<Inspected<'_>, HttpError> {
    let shape = if many {
        pycolytics::Shape::Many
    } else {
        pycolytics::Shape::One
    };
    let items = pycolytics::validate(shape, json).map_err(|e| match e {
        pycolytics::ShapeError::Json(m) => HttpError::InvalidJson(m),
        pycolytics::ShapeError::Shape(m) => HttpError::Unprocessable(m),
    })?;
    Ok(Inspected {
        empty: items.is_empty(),
        items: items.len(),
        keys: items.into_iter().map(|i| i.api_key).collect(),
    })
}

/// Checks a `/collect` body: a JSON object or an array of objects.
pub fn inspect_collect(json: &[u8]) -> Result<Inspected<'_>, HttpError> {
    const SHAPE: &str = "the body must be a JSON object or an array of JSON objects";
    match first_byte(json) {
        Some(b'{') => {
            serde_json::from_slice::<IgnoredAny>(json)
                .map_err(|e| json_error(e, HttpError::InvalidBody))?;
            Ok(Inspected {
                items: 1,
                ..Inspected::default()
            })
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(json)
                .map_err(|e| json_error(e, |m| HttpError::InvalidBody(format!("{SHAPE} ({m})"))))?;
            if let Some(i) = items
                .iter()
                .position(|raw| first_byte(raw.get().as_bytes()) != Some(b'{'))
            {
                return Err(HttpError::InvalidBody(format!(
                    "{SHAPE}; item {i} is not an object"
                )));
            }
            Ok(Inspected {
                empty: items.is_empty(),
                items: items.len(),
                keys: Vec::new(),
            })
        }
        _ => Err(match serde_json::from_slice::<IgnoredAny>(json) {
            Err(e) => HttpError::InvalidJson(e.to_string()),
            Ok(_) => HttpError::InvalidBody(SHAPE.into()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn encoded(coding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, coding.parse().unwrap());
        h
    }

    #[test]
    fn a_segment_batch_yields_its_write_key_and_item_count() {
        let body = br#"{"batch":[{"type":"track"},{"type":"identify","x":[1,{"a":"b"}]}],
                        "writeKey":"k\u0031","sentAt":"2026-01-01T00:00:00Z"}"#;
        let i = inspect_segment(true, body).unwrap();
        assert_eq!(i.items, 2);
        assert_eq!(i.keys, vec![Some(Cow::Borrowed("k1"))]);
        assert!(!i.empty);
        let none = inspect_segment(true, br#"{"batch":[]}"#).unwrap();
        assert!(none.empty && none.keys.is_empty());
    }

    #[test]
    fn malformed_segment_bodies_are_400_with_a_reason() {
        for (batch, body) in [
            (true, &br#"{"batch":[{"type":"track"}"#[..]),
            (true, br#"{"batch":{}}"#),
            (true, br#"{"writeKey":"k"}"#),
            (true, br#"[{"batch":[]}]"#),
            (false, br#"[]"#),
            (false, br#"{"writeKey":5}"#),
            (false, b"not json"),
            (false, br#"{"a":1} trailing"#),
        ] {
            let e = inspect_segment(batch, body).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e}");
        }
        assert!(matches!(
            inspect_segment(false, b"{\"a\":").unwrap_err(),
            HttpError::InvalidJson(_)
        ));
    }

    #[test]
    fn collect_takes_an_object_or_an_array_of_objects_only() {
        assert_eq!(inspect_collect(br#" {"a":[1,2]}"#).unwrap().items, 1);
        assert_eq!(inspect_collect(br#"[{"a":1},{}]"#).unwrap().items, 2);
        assert!(inspect_collect(b"[]").unwrap().empty);
        for bad in [&b"[1]"[..], b"[{},2]", b"\"x\"", b"42", b"{", b""] {
            let e = inspect_collect(bad).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn pycolytics_shapes_are_422_and_bad_json_400() {
        let ok = br#"{"event_type":"e","application":"a","version":"1","platform":"p","user_id":"u","session_id":"s","api_key":"k"}"#;
        assert_eq!(
            inspect_pycolytics(false, ok).unwrap().keys,
            vec![Some(Cow::Borrowed("k"))]
        );
        let bad_value = br#"{"event_type":"e","application":"a","version":"1","platform":"p","user_id":"u","session_id":"s","value":[1]}"#;
        assert_eq!(
            inspect_pycolytics(false, bad_value).unwrap_err().status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            inspect_pycolytics(true, b"[").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        assert!(inspect_pycolytics(true, b"[]").unwrap().empty);
    }

    #[test]
    fn gzip_bodies_are_decompressed_within_the_cap_and_bombs_are_413() {
        let json = br#"{"batch":[]}"#;
        let gz = gzip(json);
        let big = |size| HttpError::BatchTooLarge { size, limit: 1000 };
        let out = decoded_body(&encoded("gzip"), &gz, 1000, 1000, big).unwrap();
        assert_eq!(&*out, json);
        let plain = decoded_body(&HeaderMap::new(), json, 1000, 1000, big).unwrap();
        assert!(matches!(plain, Cow::Borrowed(_)));
        let e = decoded_body(&HeaderMap::new(), json, 5, 1000, big).unwrap_err();
        assert!(
            matches!(e, HttpError::BatchTooLarge { size: Some(12), .. }),
            "{e:?}"
        );

        let bomb = gzip(&vec![b' '; 1 << 20]);
        assert!(bomb.len() < 2048);
        let e = decoded_body(&encoded("gzip"), &bomb, 1 << 30, 64 << 10, big).unwrap_err();
        assert!(matches!(e, HttpError::DecompressedTooLarge { .. }), "{e:?}");
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let e = decoded_body(&encoded("gzip"), &bomb, 1000, 64 << 10, big).unwrap_err();
        assert!(
            matches!(e, HttpError::BatchTooLarge { size: None, .. }),
            "{e:?}"
        );

        let e = decoded_body(&encoded("gzip"), b"not gzip", 1000, 1000, big).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = decoded_body(&encoded("br"), json, 1000, 1000, big).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn json_and_text_content_types_pass_and_forms_do_not() {
        let ct = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, v.parse().unwrap());
            check_content_type(&h)
        };
        assert!(ct("application/json; charset=utf-8").is_ok());
        assert!(ct("text/plain;charset=UTF-8").is_ok());
        assert!(ct("application/vnd.api+json").is_ok());
        assert!(check_content_type(&HeaderMap::new()).is_ok());
        assert_eq!(
            ct("application/x-www-form-urlencoded")
                .unwrap_err()
                .status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn section_bounds_name_their_keys_without_echoing_keys() {
        assert!(SegmentConfig::default().violations().is_empty());
        assert!(AuthConfig::default().violations().is_empty());
        let s = SegmentConfig {
            write_keys: vec!["good".into(), "has space".into()],
            max_event_bytes: ByteSize(1 << 20),
            max_batch_bytes: ByteSize(512),
            max_batch_items: 0,
        };
        let v = s.violations();
        let keys: Vec<_> = v.iter().map(|v| v.key).collect();
        assert_eq!(
            keys,
            [
                "segment.write_keys",
                "segment.max_batch_bytes",
                "segment.max_event_bytes",
                "segment.max_batch_items"
            ]
        );
        assert!(!v[0].message.contains("has space"));
        let a = AuthConfig {
            header: "bad header".into(),
            snowplow_keys: vec![String::new()],
        };
        assert_eq!(a.violations().len(), 2);
    }
}
