//! The dispatcher: one stored request becomes [`Event`] rows and [`Failure`]s.
//!
//! [`Processor::process`] picks the field mapping by the envelope's route ([`Route`]):
//!
//! | Routes | Mapping | `source` |
//! |---|---|---|
//! | `/v1/{track,identify,page,screen,group,alias,batch,import}`, `/v1/{t,i,p,s,g,a,b}` | [`map::segment`] | `segment` |
//! | `/v1.0/event`, `/v1.0/events` | [`map::pycolytics`] | `pycolytics` |
//! | `/collect`, `/collect/{stream}` | [`map::collect`] | `collect` |
//! | other `/v1/*`, `/v1.0/*` | none: an adapter failure | |
//! | everything else | [`map::snowplow`] | `snowplow` |
//!
//! The JSON sources share their body handling here (a gzip body is decompressed again, within
//! `server.max_decompressed_bytes`); each mapping then uses the steps of
//! [`crate::publish::enrich`]. Processing is pure and deterministic, so a re-formed batch
//! produces the same rows.

use std::borrow::Cow;
use std::io::Read as _;

use sluice_wal::Lsn;

use crate::envelope::Envelope;
use crate::event::{Event, Failure, FailureCategory};
use crate::instance::InstanceId;
use crate::publish::enrich::{EnrichConfig, EnrichError, Enricher, Position};
use crate::publish::map::{self, collect, pycolytics, segment};
use crate::wire::pycolytics::Shape;
use crate::wire::route::Route;
use crate::wire::snowplow::request_failure;

/// Turns one stored request into rows and failures. Implemented by [`Processor`]; must be
/// deterministic (a re-formed batch must produce the same rows).
pub trait Process: Send + Sync {
    /// Pushes one event per good event and one failure per bad one (or one failure with
    /// `event_index: None` for a bad request).
    fn process(
        &self,
        envelope: &Envelope,
        partition: usize,
        lsn: Lsn,
        events: &mut Vec<Event>,
        failures: &mut Vec<Failure>,
    );
}

/// The size limits processing applies again to what was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `collector.max_payload_bytes`: a larger Snowplow request (body and query) is a size
    /// violation.
    pub max_payload_bytes: u64,
    /// `segment.max_event_bytes`: a larger Segment batch item is a size violation.
    pub max_event_bytes: u64,
    /// `server.max_decompressed_bytes`: the cap on a stored gzip body, decompressed again.
    pub max_decompressed_bytes: u64,
}

/// Decodes and enriches stored requests. Built once, shared by every publisher thread.
#[derive(Debug)]
pub struct Processor {
    enricher: Enricher,
    limits: Limits,
}

impl Processor {
    /// Builds the processor from the `[enrich]` settings and the size limits; generated event
    /// ids name `instance` (the data directory's id), so two instances never generate the same
    /// one.
    pub fn new(
        config: &EnrichConfig,
        limits: Limits,
        instance: InstanceId,
    ) -> Result<Processor, EnrichError> {
        Ok(Processor {
            enricher: Enricher::new(config, instance)?,
            limits,
        })
    }

    /// Decodes and enriches one stored request. Pushes one Event per good event (with
    /// wal_partition, wal_lsn, wal_index set) and one Failure per bad event, or a single
    /// Failure (event_index None) when the whole request is bad. Never panics on any input;
    /// pure (no I/O) and deterministic, generated event ids included.
    pub fn process(
        &self,
        envelope: &Envelope,
        partition: usize,
        lsn: Lsn,
        events: &mut Vec<Event>,
        failures: &mut Vec<Failure>,
    ) {
        let route = envelope.route.as_str();
        let at = Position {
            instance: self.enricher.instance,
            partition,
            lsn,
            index: 0,
        };
        let json_route = match Route::of_template(route) {
            Some(r @ (Route::Segment(_) | Route::PycolyticsEvent | Route::PycolyticsEvents)) => {
                Some(r)
            }
            Some(r @ (Route::Collect | Route::CollectStream)) => Some(r),
            _ => None,
        };
        if let Some(json_route) = json_route {
            // The JSON sources share their body handling (gzip, its limit); each maps the rest.
            let body = match self.json_body(envelope) {
                Ok(b) => b,
                Err(f) => {
                    failures.push(f);
                    return;
                }
            };
            let e = &self.enricher;
            let max_event_bytes = self.limits.max_event_bytes;
            match json_route {
                Route::Segment(route) => segment::process(
                    e,
                    max_event_bytes,
                    envelope,
                    &body,
                    route.body(),
                    at,
                    events,
                    failures,
                ),
                Route::PycolyticsEvent => {
                    pycolytics::process(e, envelope, &body, Shape::One, at, events, failures)
                }
                Route::PycolyticsEvents => {
                    pycolytics::process(e, envelope, &body, Shape::Many, at, events, failures)
                }
                _ => collect::process(e, envelope, &body, at, events, failures),
            }
            return;
        }
        if route.starts_with("/v1/") || route.starts_with("/v1.0/") {
            failures.push(request_failure(
                FailureCategory::AdapterFailure,
                format!("no adapter for {route}"),
            ));
            return;
        }
        map::snowplow::process(
            &self.enricher,
            self.limits.max_payload_bytes,
            envelope,
            partition,
            lsn,
            events,
            failures,
        );
    }

    /// The stored body as JSON bytes: as stored, or decompressed again when the request had
    /// `Content-Encoding: gzip` (stopped past `server.max_decompressed_bytes`, as at ingest).
    fn json_body<'e>(&self, envelope: &'e Envelope) -> Result<Cow<'e, [u8]>, Failure> {
        let mut gzip = false;
        for (name, value) in &envelope.headers {
            if name != "content-encoding" {
                continue;
            }
            for coding in value.split(',').map(str::trim) {
                if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    gzip = true;
                } else if !coding.is_empty() && !coding.eq_ignore_ascii_case("identity") {
                    return Err(request_failure(
                        FailureCategory::CollectorPayloadFormatViolation,
                        format!("Content-Encoding {coding:?} is not supported (gzip or none)"),
                    ));
                }
            }
        }
        if !gzip {
            return Ok(Cow::Borrowed(&envelope.body));
        }
        let max = self.limits.max_decompressed_bytes;
        let mut out =
            Vec::with_capacity((envelope.body.len().saturating_mul(4) as u64).min(max) as usize);
        flate2::read::MultiGzDecoder::new(envelope.body.as_slice())
            .take(max.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| {
                request_failure(
                    FailureCategory::CollectorPayloadFormatViolation,
                    format!("the gzip body does not decompress: {e}"),
                )
            })?;
        if out.len() as u64 > max {
            return Err(request_failure(
                FailureCategory::SizeViolation,
                format!(
                    "the gzip body decompresses to more than server.max_decompressed_bytes ({max} bytes)"
                ),
            ));
        }
        Ok(Cow::Owned(out))
    }
}

impl Process for Processor {
    fn process(
        &self,
        envelope: &Envelope,
        partition: usize,
        lsn: Lsn,
        events: &mut Vec<Event>,
        failures: &mut Vec<Failure>,
    ) {
        Processor::process(self, envelope, partition, lsn, events, failures);
    }
}

/// Decodes one stored record and processes it the way the publisher does; the request's
/// receive time, or `None` when the record is not an envelope (one failure is pushed).
pub fn process_record<P: Process>(
    processor: &P,
    payload: &[u8],
    partition: usize,
    lsn: Lsn,
    events: &mut Vec<Event>,
    failures: &mut Vec<Failure>,
) -> Option<i64> {
    match Envelope::decode(payload) {
        Ok(envelope) => {
            processor.process(&envelope, partition, lsn, events, failures);
            Some(envelope.received_at_ms)
        }
        Err(e) => {
            failures.push(Failure {
                category: FailureCategory::CollectorPayloadFormatViolation,
                messages: vec![format!("the stored request cannot be decoded: {e}")],
                event_index: None,
                event_payload: None,
            });
            None
        }
    }
}
