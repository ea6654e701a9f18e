//! A small, deterministic batch of events that exercises every column kind: NULLs, unicode,
//! quotes, extreme numbers, timestamps before and after 2038 (where the column holds them).
//! Used by `sluice db encode-sample` (the chdb test) and the sink's integration tests.

use uuid::Uuid;

use crate::event::{Event, Text};

/// `n` events; event `i` has `wal_index = i`, so `ORDER BY wal_index` restores the order.
pub fn events(n: usize) -> Vec<Event> {
    (0..n).map(event).collect()
}

fn event(i: usize) -> Event {
    let base_ms = 1_700_000_000_000i64 + i as i64 * 1_001;
    let id = Uuid::from_u64_pair(
        0x0123_4567_89ab_4cde ^ (i as u64) << 32,
        0x8000_0000_0000_0000 | i as u64,
    );
    let text = |s: &str| Some(format!("{s}-{i}"));
    let mut e = Event {
        event_id: Some(id),
        app_id: if i % 3 == 0 {
            None
        } else {
            (text("app")).map(Text::from)
        },
        platform: Some("web".into()),
        collector_tstamp: Some(base_ms),
        event: Some(["page_view", "struct", "unstruct", "page_ping"][i % 4].into()),
        v_collector: Some("sluice-test".into()),
        wal_partition: Some(0),
        wal_lsn: Some(1000 + i as u64),
        wal_index: Some(i as u64),
        ..Event::default()
    };
    if i % 2 == 0 {
        e.dvce_created_tstamp = Some(base_ms - 5_000);
        e.dvce_sent_tstamp = Some(base_ms - 1_000);
        e.derived_tstamp = Some(base_ms - 4_000);
        e.page_url = Some(Text::from(format!(
            "https://example.com/ünï/{i}?q='x'&r=\"y\"\\z"
        )));
        e.page_title = Some("Grüße, 世界 🚀 \t\n tab".into());
        e.page_urlport = Some(443);
        e.se_value = Some(-1.5e-3 * i as f64);
        e.tr_total = Some(1e15 + 0.25);
        e.ti_quantity = Some(i64::MIN + i as i64);
        e.domain_sessionidx = Some(i64::MAX - i as i64);
        e.br_cookies = Some(i % 4 == 0);
        e.dvce_ismobile = Some(true);
        e.contexts = Some(r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[]}"#.into());
        e.user_ipaddress = Some("2001:db8::1".into());
        e.mkt_source = Some(Text::from(String::new()));
        e.os_timezone = Some("Europe/Berlin".into());
    } else {
        e.true_tstamp = Some(base_ms + 123);
        e.user_id = (text("user")).map(Text::from);
        e.br_viewwidth = Some(0);
        e.wal_partition = Some(u64::from(u32::MAX) + 7);
    }
    e
}
