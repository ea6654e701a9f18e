//! What is logged for each accepted request: the raw request, versioned.
//!
//! The collector does not parse payloads on the hot path: it logs the request as received, so
//! answering costs no decoding, and what the publisher makes of a request (decoding, enrichment)
//! can be fixed and replayed from the log. Each accepted request becomes one [`Envelope`],
//! encoded as one WAL record:
//!
//! ```text
//! [ENVELOPE_VERSION: u8] ++ MessagePack map (rmp-serde, named fields)
//! ```
//!
//! Field names are part of the on-disk format: a later version may add fields (decoders must
//! default them), never rename or repurpose one. A record whose first byte is not a version this
//! build understands is refused with [`EnvelopeError::UnsupportedVersion`] rather than guessed at.

use serde::{Deserialize, Serialize};
use sluice_wal::Lsn;

/// The first byte of every encoded envelope. Bump it when the encoding changes incompatibly.
pub const ENVELOPE_VERSION: u8 = 1;

/// One accepted HTTP request, as written to the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// When the collector received the request, milliseconds since the Unix epoch (UTC).
    /// Becomes Snowplow's `collector_tstamp`.
    pub received_at_ms: i64,
    /// The route template that matched, e.g. `/i`, `/com.snowplowanalytics.snowplow/tp2`,
    /// `/v1/batch`, `/v1.0/events`, `/collect/{stream}`. Tells the publisher which decoder to use.
    pub route: String,
    /// The HTTP method (`GET`, `HEAD`, `POST`).
    pub method: String,
    /// The request path as received (without the query string).
    pub path: String,
    /// The raw, undecoded query string, if the request had one.
    pub query: Option<String>,
    /// The headers later stages need (User-Agent, Referer, Origin, Cookie, X-Forwarded-For,
    /// Forwarded, Content-Type, Content-Encoding, Authorization), in the order received, names
    /// lower-cased. Repeated headers appear once per occurrence.
    pub headers: Vec<(String, String)>,
    /// The request body, byte for byte (empty for GET).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// The TCP peer's address (`ip:port`), when known. `None` for requests carrying the
    /// `SP-Anonymous` header (the collector does not record their address).
    pub peer: Option<String>,
    /// The network user id the collector resolved and put in its cookie (Snowplow's
    /// `network_userid`): `00000000-0000-0000-0000-000000000000` for `SP-Anonymous` requests,
    /// else the `nuid` query parameter, else the request's cookie, else a new v4 UUID. `None`
    /// when the cookie is disabled (`collector.cookie.enabled = false`) and for records written
    /// before this field existed (decoders default it).
    #[serde(default)]
    pub nuid: Option<String>,
}

/// Why a WAL record could not be decoded as an envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The record has no bytes at all.
    #[error("empty record: an envelope starts with a version byte")]
    Empty,
    /// The version byte is not one this build can read.
    #[error("envelope version {0} is not supported (this build reads version {ENVELOPE_VERSION}); upgrade sluice")]
    UnsupportedVersion(u8),
    /// The MessagePack body does not decode as an envelope.
    #[error("envelope does not decode: {0}")]
    Decode(String),
}

impl EnvelopeError {
    /// A stable, short identifier for metric labels and logs.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::Empty => "empty",
            EnvelopeError::UnsupportedVersion(_) => "unsupported_version",
            EnvelopeError::Decode(_) => "decode",
        }
    }
}

impl Envelope {
    /// The record bytes: the version byte followed by the MessagePack map.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        out.push(ENVELOPE_VERSION);
        // Serialising owned strings, byte buffers and integers into a Vec cannot fail.
        rmp_serde::encode::write_named(&mut out, self)
            .expect("an envelope always serialises to MessagePack");
        out
    }

    /// Decodes record bytes written by [`Envelope::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let (&version, rest) = bytes.split_first().ok_or(EnvelopeError::Empty)?;
        if version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        rmp_serde::from_slice(rest).map_err(|e| EnvelopeError::Decode(e.to_string()))
    }

    /// A JSON view for operators (`sluice wal inspect --json`). The body appears as `body` when
    /// it is valid UTF-8, otherwise base64-encoded as `body_base64`. Headers are `[name, value]`
    /// pairs so repeated headers survive.
    pub fn to_json(&self, lsn: Lsn, partition: usize) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert("lsn".into(), lsn.0.into());
        obj.insert("partition".into(), partition.into());
        obj.insert("received_at_ms".into(), self.received_at_ms.into());
        obj.insert("route".into(), self.route.clone().into());
        obj.insert("method".into(), self.method.clone().into());
        obj.insert("path".into(), self.path.clone().into());
        obj.insert("query".into(), self.query.clone().into());
        obj.insert(
            "headers".into(),
            serde_json::Value::Array(
                self.headers
                    .iter()
                    .map(|(k, v)| serde_json::json!([k, v]))
                    .collect(),
            ),
        );
        match std::str::from_utf8(&self.body) {
            Ok(text) => obj.insert("body".into(), text.into()),
            Err(_) => obj.insert("body_base64".into(), base64_encode(&self.body).into()),
        };
        obj.insert("peer".into(), self.peer.clone().into());
        obj.insert("nuid".into(), self.nuid.clone().into());
        serde_json::Value::Object(obj)
    }

    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn encoded_len_hint(&self) -> usize {
        // Field names plus small framing come to well under 128 bytes.
        128 + self.route.len()
            + self.method.len()
            + self.path.len()
            + self.query.as_ref().map_or(0, String::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>()
            + self.body.len()
            + self.peer.as_ref().map_or(0, String::len)
            + self.nuid.as_ref().map_or(0, String::len)
    }
}

/// `body_base64` of the JSON view: standard alphabet with padding (RFC 4648 §4), what
/// `base64 -d` and most JSON consumers expect.
fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            received_at_ms: 1_700_000_000_123,
            route: "/com.snowplowanalytics.snowplow/tp2".into(),
            method: "POST".into(),
            path: "/com.snowplowanalytics.snowplow/tp2".into(),
            query: Some("a=1&b=%20".into()),
            headers: vec![
                ("user-agent".into(), "curl/8".into()),
                ("cookie".into(), "sp=abc".into()),
            ],
            body: br#"{"data":[]}"#.to_vec(),
            peer: Some("127.0.0.1:5555".into()),
            nuid: Some("c6ef3124-b53a-4b13-a233-0088f79dcbcb".into()),
        }
    }

    #[test]
    fn an_envelope_survives_encode_and_decode() {
        let env = sample();
        let bytes = env.encode();
        assert_eq!(bytes[0], ENVELOPE_VERSION);
        assert_eq!(Envelope::decode(&bytes).unwrap(), env);
    }

    #[test]
    fn a_record_written_before_nuid_existed_decodes_with_no_nuid() {
        // The version-1 layout before `nuid` was added: the same named fields, without it.
        #[derive(Serialize)]
        struct EnvelopeWithoutNuid {
            received_at_ms: i64,
            route: String,
            method: String,
            path: String,
            query: Option<String>,
            headers: Vec<(String, String)>,
            #[serde(with = "serde_bytes")]
            body: Vec<u8>,
            peer: Option<String>,
        }
        let env = sample();
        let old = EnvelopeWithoutNuid {
            received_at_ms: env.received_at_ms,
            route: env.route.clone(),
            method: env.method.clone(),
            path: env.path.clone(),
            query: env.query.clone(),
            headers: env.headers.clone(),
            body: env.body.clone(),
            peer: env.peer.clone(),
        };
        let mut bytes = vec![ENVELOPE_VERSION];
        rmp_serde::encode::write_named(&mut bytes, &old).unwrap();
        let decoded = Envelope::decode(&bytes).unwrap();
        assert_eq!(decoded, Envelope { nuid: None, ..env });
    }

    #[test]
    fn decoding_refuses_empty_records_and_unknown_versions() {
        assert!(matches!(Envelope::decode(&[]), Err(EnvelopeError::Empty)));
        let mut bytes = sample().encode();
        bytes[0] = 9;
        assert!(matches!(
            Envelope::decode(&bytes),
            Err(EnvelopeError::UnsupportedVersion(9))
        ));
        assert!(matches!(
            Envelope::decode(&[ENVELOPE_VERSION, 0xc1]),
            Err(EnvelopeError::Decode(_))
        ));
    }

    #[test]
    fn json_view_shows_text_bodies_as_text_and_binary_bodies_as_base64() {
        let env = sample();
        let json = env.to_json(Lsn(7), 2);
        assert_eq!(json["lsn"], 7);
        assert_eq!(json["partition"], 2);
        assert_eq!(json["body"], r#"{"data":[]}"#);
        assert_eq!(json["headers"][1][1], "sp=abc");
        assert!(json.get("body_base64").is_none());

        let binary = Envelope {
            body: vec![0xff, 0x00, 0x10, 0x80],
            ..sample()
        };
        let json = binary.to_json(Lsn(1), 0);
        assert_eq!(json["body_base64"], "/wAQgA==");
        assert!(json.get("body").is_none());
    }

    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), expected);
        }
    }
}
