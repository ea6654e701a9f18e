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
//!
//! What the feed costs is bounded too: each tailer processes at most
//! `admin.live_max_records_per_second` records a second. Past that it stops reading, and at the
//! start of the next second it jumps to the log's end, telling viewers how many records it
//! passed over; so a viewer under heavy traffic sees a sample, and the collector keeps its CPU.
//! Each record is processed and formatted once, whatever the number of viewers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use sluice_wal::{Lsn, Reader, Wal};
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

/// What the tailers broadcast.
#[derive(Debug)]
pub enum LiveItem {
    /// One processed record.
    Record(LiveRecord),
    /// A tailer passed over `records` records of `partition` to stay within
    /// `admin.live_max_records_per_second`.
    Skipped {
        /// The partition.
        partition: usize,
        /// How many records were not shown.
        records: u64,
    },
}

/// One processed record, ready to send, with what viewers filter on.
#[derive(Debug)]
pub struct LiveRecord {
    /// The whole SSE event (`event: record` and its `data:` line), formatted once for every
    /// viewer.
    pub frame: bytes::Bytes,
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
    sender: broadcast::Sender<Arc<LiveItem>>,
    viewers: AtomicUsize,
    max_viewers: usize,
}

/// One viewer's subscription; leaving drops it.
#[derive(Debug)]
pub struct Viewer {
    /// The records, as they are broadcast.
    pub records: broadcast::Receiver<Arc<LiveItem>>,
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

/// Follows `wal`'s durable tail while anyone watches, processing at most `max_per_second`
/// records a second, until `stop` fires. Blocking.
pub fn tail(
    partition: usize,
    wal: Arc<Wal>,
    processor: Arc<Processor>,
    live: Arc<Live>,
    max_per_second: u64,
    stop: Shutdown,
) {
    let mut reader: Option<Reader> = None;
    // The log's tail when the feed last looked with nobody watching. A new audience starts
    // right after it, so a record appended between a viewer subscribing and this thread
    // noticing (up to `IDLE_POLL` later) is still shown.
    let mut idle_tail = wal.status().last_lsn;
    let mut second = Instant::now();
    let mut shown = 0u64;
    while !stop.is_stopped() {
        if live.viewers() == 0 {
            reader = None;
            idle_tail = wal.status().last_lsn;
            std::thread::sleep(IDLE_POLL);
            continue;
        }
        if second.elapsed() >= Duration::from_secs(1) {
            second = Instant::now();
            shown = 0;
        }
        if shown >= max_per_second {
            // Over budget: pass over what arrives until the next second, then resume at the end.
            std::thread::sleep(Duration::from_secs(1).saturating_sub(second.elapsed()));
            let end = wal.status().last_lsn;
            if let Some(r) = reader.take() {
                let passed = end.0.saturating_sub(r.position().0.saturating_sub(1));
                if passed > 0 {
                    let _ = live.sender.send(Arc::new(LiveItem::Skipped {
                        partition,
                        records: passed,
                    }));
                }
            }
            reader = Some(wal.reader(end.next()));
            continue;
        }
        // A new audience starts with what arrived since the feed last saw nobody watching.
        let r = reader.get_or_insert_with(|| wal.reader(idle_tail.next()));
        match r.next_timeout(READ_WAIT) {
            Ok(Some(record)) => {
                shown += 1;
                let made = make(&processor, partition, record.lsn, &record.payload);
                // No receiver left between the check and now: nothing to do.
                let _ = live.sender.send(Arc::new(LiveItem::Record(made)));
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
        frame: bytes::Bytes::from(format!("event: record\ndata: {json}\n\n")),
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
            frame: bytes::Bytes::new(),
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
            live.sender
                .send(Arc::new(LiveItem::Record(record(None, app))))
                .unwrap();
        }
        match slow.records.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 3),
            other => panic!("expected a lag, got {other:?}"),
        }
        match &*slow.records.try_recv().unwrap() {
            LiveItem::Record(r) => assert_eq!(r.app_ids, ["d"]),
            other => panic!("expected a record, got {other:?}"),
        }
    }

    #[test]
    fn a_tailer_over_its_rate_passes_over_records_and_says_how_many() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), sluice_wal::WalConfig::default()).unwrap());
        let config = crate::config::Config::default();
        let processor = Arc::new(
            Processor::new(
                &config.enrich,
                config.process_limits(),
                crate::publish::enrich::TEST_INSTANCE,
            )
            .unwrap(),
        );
        let live = Arc::new(Live::new(1024, 4));
        let mut viewer = live.watch().unwrap();
        let (stop, shutdown) = crate::shutdown::channel();
        let tailer = {
            let (wal, live) = (wal.clone(), live.clone());
            std::thread::spawn(move || tail(0, wal, processor, live, 3, shutdown))
        };
        // The tailer starts at the end: wait until it is reading before appending.
        std::thread::sleep(Duration::from_millis(300));
        for i in 0..40u32 {
            wal.append(i.to_be_bytes().to_vec()).unwrap();
        }
        let (mut shown, mut passed) = (0u64, 0u64);
        let deadline = Instant::now() + Duration::from_secs(20);
        while shown + passed < 40 {
            assert!(Instant::now() < deadline, "shown {shown}, passed {passed}");
            match viewer.records.try_recv() {
                Ok(item) => match &*item {
                    LiveItem::Record(r) => {
                        shown += 1;
                        assert!(r.frame.starts_with(b"event: record\ndata: {"));
                    }
                    LiveItem::Skipped { records, .. } => passed += records,
                },
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        assert_eq!(shown + passed, 40);
        assert!(shown <= 3 * 2, "at most 3 a second: {shown}");
        assert!(passed > 0);
        stop.stop();
        tailer.join().unwrap();
    }

    #[test]
    fn a_record_appended_just_after_a_viewer_arrives_is_shown() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), sluice_wal::WalConfig::default()).unwrap());
        wal.append(b"before anyone watched".to_vec()).unwrap();
        let config = crate::config::Config::default();
        let processor = Arc::new(
            Processor::new(
                &config.enrich,
                config.process_limits(),
                crate::publish::enrich::TEST_INSTANCE,
            )
            .unwrap(),
        );
        let live = Arc::new(Live::new(1024, 4));
        let (stop, shutdown) = crate::shutdown::channel();
        let tailer = {
            let (wal, live) = (wal.clone(), live.clone());
            std::thread::spawn(move || tail(0, wal, processor, live, 1000, shutdown))
        };
        // Idle for a few polls, then subscribe and append at once, half a poll out of step with
        // the tailer's sleeps: it notices the viewer only after the append.
        std::thread::sleep(IDLE_POLL * 3 + IDLE_POLL / 2);
        let mut viewer = live.watch().unwrap();
        let lsn = wal.append(b"right after".to_vec()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let item = loop {
            match viewer.records.try_recv() {
                Ok(item) => break item,
                Err(_) => {
                    assert!(
                        Instant::now() < deadline,
                        "the record never reached the viewer"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        match &*item {
            LiveItem::Record(r) => {
                let want = format!("\"lsn\":{}", lsn.0);
                let frame = std::str::from_utf8(&r.frame).unwrap();
                assert!(frame.contains(&want), "the first record shown is {frame}");
            }
            other => panic!("expected a record, got {other:?}"),
        }
        stop.stop();
        tailer.join().unwrap();
    }
}
