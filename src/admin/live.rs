//! The live feed: what is arriving, read from each log's durable tail and processed as the
//! publisher would, for `GET /api/v1/live` (Server-Sent Events).
//!
//! One tailer per partition runs on a blocking thread. While nobody watches it only checks,
//! every [`IDLE_POLL`], whether someone does; with viewers it reads records as they become
//! durable (after the fsync, so never on the acknowledgement path and never delaying it),
//! processes each with the daemon's processor, and broadcasts the result. The broadcast is a
//! bounded ring (`admin.live_buffer` records): a viewer that reads slower than records arrive
//! skips the oldest ones and is told how many, so no viewer holds memory or slows the others,
//! and the collector never waits for any of them. Viewers are capped by
//! `admin.max_live_viewers`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use sluice_wal::{Lsn, Wal};
use tokio::sync::broadcast;

use crate::envelope::Envelope;
use crate::event::{Event, Failure};
use crate::publish::process::{process_record, Processor};
use crate::shutdown::Shutdown;
use crate::wire::route::Route;

/// How often an idle tailer checks for viewers (and for the stop signal).
pub const IDLE_POLL: Duration = Duration::from_millis(100);
/// How long a tailer waits for a record before checking for viewers and the stop signal.
const READ_WAIT: Duration = Duration::from_millis(200);

/// One processed record, ready to send, with what viewers filter on.
#[derive(Debug)]
pub struct LiveRecord {
    /// The SSE `data:` line's JSON.
    pub json: String,
    /// The route template the request came in by.
    pub route: String,
    /// `snowplow`, `segment`, `pycolytics` or `collect`.
    pub source: Option<&'static str>,
    /// The events' `app_id`s.
    pub app_ids: Vec<String>,
    /// The events' `event` names.
    pub events: Vec<String>,
}

/// What a viewer asked to see; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveFilter {
    /// Only this source.
    pub source: Option<String>,
    /// Only this route template.
    pub route: Option<String>,
    /// Only records with an event of this `app_id`.
    pub app_id: Option<String>,
    /// Only records with an event of this name (`event` column).
    pub event: Option<String>,
}

impl LiveFilter {
    /// Whether `r` is to be shown.
    pub fn matches(&self, r: &LiveRecord) -> bool {
        self.source.as_deref().is_none_or(|s| r.source == Some(s))
            && self.route.as_deref().is_none_or(|s| r.route == s)
            && self
                .app_id
                .as_deref()
                .is_none_or(|a| r.app_ids.iter().any(|x| x == a))
            && self
                .event
                .as_deref()
                .is_none_or(|e| r.events.iter().any(|x| x == e))
    }
}

/// The broadcast and its viewers.
#[derive(Debug)]
pub struct Live {
    sender: broadcast::Sender<Arc<LiveRecord>>,
    viewers: AtomicUsize,
    max_viewers: usize,
}

/// One viewer's subscription; leaving drops it.
#[derive(Debug)]
pub struct Viewer {
    /// The records, as they are broadcast.
    pub records: broadcast::Receiver<Arc<LiveRecord>>,
    live: Arc<Live>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.live.viewers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Live {
    /// A feed keeping the last `buffer` records for slow viewers, for at most `max_viewers`.
    pub fn new(buffer: usize, max_viewers: usize) -> Live {
        Live {
            sender: broadcast::channel(buffer.max(1)).0,
            viewers: AtomicUsize::new(0),
            max_viewers,
        }
    }

    /// How many viewers are watching.
    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::SeqCst)
    }

    /// A new viewer, or `None` when `admin.max_live_viewers` are already watching.
    pub fn watch(self: &Arc<Live>) -> Option<Viewer> {
        let taken = self
            .viewers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_viewers).then_some(n + 1)
            });
        taken.ok().map(|_| Viewer {
            records: self.sender.subscribe(),
            live: self.clone(),
        })
    }

    /// The most viewers allowed.
    pub fn max_viewers(&self) -> usize {
        self.max_viewers
    }
}

/// Follows `wal`'s durable tail while anyone watches, until `stop` fires. Blocking.
pub fn tail(
    partition: usize,
    wal: Arc<Wal>,
    processor: Arc<Processor>,
    live: Arc<Live>,
    stop: Shutdown,
) {
    let mut reader = None;
    while !stop.is_stopped() {
        if live.viewers() == 0 {
            reader = None;
            std::thread::sleep(IDLE_POLL);
            continue;
        }
        // A new audience starts with what arrives from now on.
        let r = reader.get_or_insert_with(|| wal.reader(wal.status().last_lsn.next()));
        match r.next_timeout(READ_WAIT) {
            Ok(Some(record)) => {
                let made = make(&processor, partition, record.lsn, &record.payload);
                // No receiver left between the check and now: nothing to do.
                let _ = live.sender.send(Arc::new(made));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(partition, error = %e, "the live feed cannot read the log; retrying");
                reader = None;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Processes one stored request as the publisher would and describes it for viewers.
pub fn make(processor: &Processor, partition: usize, lsn: Lsn, payload: &[u8]) -> LiveRecord {
    let (mut events, mut failures) = (Vec::new(), Vec::new());
    process_record(
        processor,
        payload,
        partition,
        lsn,
        &mut events,
        &mut failures,
    );
    let envelope = Envelope::decode(payload).ok();
    let route = envelope
        .as_ref()
        .map_or_else(String::new, |e| e.route.clone());
    let source = Route::of_template(&route)
        .and_then(Route::source)
        .map(|s| s.as_str());
    let json = json!({
        "partition": partition,
        "lsn": lsn.0,
        "received_at_ms": envelope.as_ref().map(|e| e.received_at_ms),
        "route": route,
        "method": envelope.as_ref().map(|e| e.method.clone()),
        "source": source,
        "request": envelope.as_ref().map(|e| e.to_json(lsn, partition)),
        "events": events.iter().map(row).collect::<Vec<_>>(),
        "failures": failures.iter().map(failure).collect::<Vec<_>>(),
    });
    LiveRecord {
        json: json.to_string(),
        route,
        source,
        app_ids: events
            .iter()
            .filter_map(|e| e.app_id.as_ref().map(|a| a.to_string()))
            .collect(),
        events: events
            .iter()
            .filter_map(|e| e.event.as_ref().map(|a| a.to_string()))
            .collect(),
    }
}

/// An enriched row as JSON, without the columns it has no value for.
fn row(event: &Event) -> Value {
    match serde_json::to_value(event) {
        Ok(Value::Object(fields)) => Value::Object(
            fields
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .collect::<Map<_, _>>(),
        ),
        _ => Value::Null,
    }
}

fn failure(f: &Failure) -> Value {
    json!({
        "category": f.category.as_str(),
        "messages": f.messages,
        "event_index": f.event_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(source: Option<&'static str>, app: &str) -> LiveRecord {
        LiveRecord {
            json: String::new(),
            route: "/i".into(),
            source,
            app_ids: vec![app.into()],
            events: vec!["page_view".into()],
        }
    }

    #[test]
    fn filters_match_on_every_field_given() {
        let r = record(Some("snowplow"), "shop");
        assert!(LiveFilter::default().matches(&r));
        let f = LiveFilter {
            source: Some("snowplow".into()),
            app_id: Some("shop".into()),
            event: Some("page_view".into()),
            route: Some("/i".into()),
        };
        assert!(f.matches(&r));
        for f in [
            LiveFilter {
                source: Some("segment".into()),
                ..LiveFilter::default()
            },
            LiveFilter {
                app_id: Some("blog".into()),
                ..LiveFilter::default()
            },
            LiveFilter {
                route: Some("/v1/batch".into()),
                ..LiveFilter::default()
            },
        ] {
            assert!(!f.matches(&r), "{f:?}");
        }
    }

    #[test]
    fn viewers_are_capped_and_counted_until_they_leave() {
        let live = Arc::new(Live::new(4, 2));
        let a = live.watch().unwrap();
        let _b = live.watch().unwrap();
        assert!(live.watch().is_none());
        assert_eq!(live.viewers(), 2);
        drop(a);
        assert_eq!(live.viewers(), 1);
        assert!(live.watch().is_some());
    }

    #[test]
    fn a_slow_viewer_skips_the_oldest_records_and_learns_how_many() {
        let live = Arc::new(Live::new(2, 4));
        let mut slow = live.watch().unwrap();
        for app in ["a", "b", "c", "d", "e"] {
            live.sender.send(Arc::new(record(None, app))).unwrap();
        }
        match slow.records.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 3),
            other => panic!("expected a lag, got {other:?}"),
        }
        assert_eq!(slow.records.try_recv().unwrap().app_ids, ["d"]);
    }
}
