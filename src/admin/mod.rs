//! The admin listener: the running daemon's status and its dead letters, as a JSON API on a
//! listener of its own (`admin.listen`, loopback by default), never on the collector port, and
//! the web console that shows them ([`console`]).
//!
//! # Routes
//!
//! | Route | What |
//! |---|---|
//! | `GET /healthz` | liveness: `ok` (the only route without the token) |
//! | `GET /api/v1/status` | partitions, ClickHouse, publishers, dead letters by category, recent rates |
//! | `GET /api/v1/history` | the samples behind the rates, one per second over `admin.history` |
//! | `GET /api/v1/dead-letters` | a page of entries; query: `category`, `partition`, `received_from_ms`, `received_before_ms`, `written_before_ms`, `after` (an id: the page starts after it), `limit` |
//! | `GET /api/v1/dead-letters/{id}` | one entry, its raw request decoded |
//! | `GET /api/v1/live` | Server-Sent Events: each arriving record with what the publisher makes of it (see [`live`]); query: `source`, `route`, `app_id`, `event` |
//! | `GET /api/v1/events` | recent rows of the events table; query: `limit`, `offset`, `order_by`, `desc`, `app_id`, `event`, `source` |
//! | `POST /api/v1/query` | one read-only query (`{"sql": "SELECT …", "max_rows": N}`) under ClickHouse's `readonly = 1`, with a row limit and a timeout the server enforces |
//! | `POST /api/v1/dead-letters/replay` | re-processes and delivers the selected entries (body: a [selection](#selections)) |
//! | `POST /api/v1/dead-letters/purge` | removes the selected entries (body: a [selection](#selections)) |
//! | `GET /` | `303` to `/console/` |
//! | `GET /console/`, `/console/{asset}` | the web console ([`console`]): `index.html`, `app.js`, `style.css`, `favicon.svg`, compiled in |
//! | `GET /console/?token=T` | signs a browser in: `303` to `/console/` setting the `sluice_admin` cookie |
//!
//! Every route but `/healthz` (and the redirect of `/`) needs the token: as
//! `Authorization: Bearer <token>`, or as the console's `sluice_admin` cookie, which a browser
//! gets by signing in. A write (`POST`) authenticated by the cookie must also carry
//! `X-Sluice-Console: 1`, else `403` (why: [`console`]). A missing or wrong token is answered
//! 401 with what to send (the console's paths answer an HTML page with a sign-in form). The
//! token is `admin.token` when set; otherwise the daemon generates one at first start and
//! keeps it in `DATA_DIR/admin.token` (mode 0600), where `sluice dlq …` on the same machine
//! finds it. Without a configured token the listener must
//! be on a loopback address: [`AdminConfig::violations`] refuses anything else at start-up.
//!
//! # Selections
//!
//! Replay and purge take a JSON body naming what they cover: `{"ids": ["ID", …]}`, filter
//! fields (`category`, `partition`, `received_from_ms`, `received_before_ms`,
//! `written_before_ms`, combinable with `ids`), or `{"all": true}`. An empty selection is
//! refused (400) rather than taken to mean everything.
//!
//! # Working beside the publishers
//!
//! The daemon owns the dead-letter store (it admits one process), so the API works on the
//! daemon's own handle. Replay delivers through the daemon's sink with the same per-chunk
//! tokens as `sluice dlq replay` (see [`crate::publish::replay`]): it never touches the log or
//! its checkpoint, so the publishers' order is unaffected. Replays and purges run one at a
//! time; the publishers only ever add entries with new ids meanwhile.

mod routes;

pub mod client;
pub mod console;
pub mod history;
pub mod live;
pub mod token;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Request;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::config::units::{check_range, ByteSize, HumanDuration, Violation};
use crate::deadletter::Store;
use crate::ingest::Ingest;
use crate::instance::InstanceId;
use crate::publish::process::Processor;
use crate::publish::Health;
use crate::shutdown::Shutdown;
use crate::sink::clickhouse::Sink;

pub use history::History;
pub use live::Live;
pub use token::{AdminToken, TokenError, TOKEN_FILE};

/// The `[admin]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin API. Default `127.0.0.1:9091`. Without `admin.token` it must be a
    /// loopback address. Flag `--admin-listen`.
    pub listen: SocketAddr,
    /// The bearer token every admin route but `/healthz` requires. Default empty: the daemon
    /// generates one in `DATA_DIR/admin.token`. At least 16 characters when set. Environment
    /// `SLUICE_ADMIN__TOKEN`.
    pub token: String,
    /// Largest request body the API reads (replay and purge selections). Default `1MiB`,
    /// 1KiB to 64MiB.
    pub max_body_bytes: ByteSize,
    /// Most dead-letter entries one listing page returns (`limit` is capped to it).
    /// Default 1000, 1 to 100000.
    pub max_page_entries: usize,
    /// How much history the daemon keeps in memory for the rates and charts, one sample a
    /// second. Default `10m`, 10s to 24h.
    pub history: HumanDuration,
    /// Records the live feed keeps for viewers that read slower than records arrive; one
    /// further behind skips the oldest and is told how many. Default 1024, 1 to 65536.
    pub live_buffer: usize,
    /// Most live-feed viewers at once; one more gets 503. Default 64, 1 to 10000.
    pub max_live_viewers: usize,
    /// Most records a second each partition's live feed processes; past it the feed passes
    /// over records (and says how many), so watching costs the daemon at most this much work.
    /// Default 100, 1 to 1000000.
    pub live_max_records_per_second: u64,
    /// Most rows a read-only query (`/api/v1/query`, `/api/v1/events`) returns; ClickHouse
    /// stops reading there. Default 10000, 1 to 1000000.
    pub query_max_rows: usize,
    /// Longest a read-only query may run; ClickHouse cancels it after that
    /// (`max_execution_time`). Default `10s`, 1s to 10m.
    pub query_timeout: HumanDuration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
            token: String::new(),
            max_body_bytes: ByteSize(1 << 20),
            max_page_entries: 1000,
            history: HumanDuration(Duration::from_secs(600)),
            live_buffer: 1024,
            max_live_viewers: 64,
            live_max_records_per_second: 100,
            query_max_rows: 10_000,
            query_timeout: HumanDuration(Duration::from_secs(10)),
        }
    }
}

/// The shortest configured token accepted.
pub const MIN_TOKEN_LEN: usize = 16;
/// A listing's page size when `limit` is not given.
pub const DEFAULT_PAGE_ENTRIES: usize = 100;
/// How often the history is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

impl AdminConfig {
    /// Values outside their documented bounds, each naming its key.
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        if self.token.is_empty() && !self.listen.ip().is_loopback() {
            out.push(Violation {
                key: "admin.listen",
                message: format!(
                    "{} is not a loopback address and admin.token is empty: set admin.token \
                     (or SLUICE_ADMIN__TOKEN) to serve the admin API beyond this machine, or \
                     listen on 127.0.0.1",
                    self.listen
                ),
            });
        }
        if !self.token.is_empty() && self.token.chars().count() < MIN_TOKEN_LEN {
            out.push(Violation {
                key: "admin.token",
                message: format!("must be at least {MIN_TOKEN_LEN} characters"),
            });
        }
        check_range(
            &mut out,
            "admin.max_body_bytes",
            self.max_body_bytes,
            ByteSize(1 << 10),
            ByteSize(64 << 20),
        );
        check_range(
            &mut out,
            "admin.max_page_entries",
            self.max_page_entries,
            1,
            100_000,
        );
        check_range(
            &mut out,
            "admin.history",
            self.history,
            HumanDuration(Duration::from_secs(10)),
            HumanDuration(Duration::from_secs(24 * 3600)),
        );
        check_range(&mut out, "admin.live_buffer", self.live_buffer, 1, 65_536);
        check_range(
            &mut out,
            "admin.max_live_viewers",
            self.max_live_viewers,
            1,
            10_000,
        );
        check_range(
            &mut out,
            "admin.live_max_records_per_second",
            self.live_max_records_per_second,
            1,
            1_000_000,
        );
        check_range(
            &mut out,
            "admin.query_max_rows",
            self.query_max_rows,
            1,
            1_000_000,
        );
        check_range(
            &mut out,
            "admin.query_timeout",
            self.query_timeout,
            HumanDuration(Duration::from_secs(1)),
            HumanDuration(Duration::from_secs(600)),
        );
        out
    }
}

/// What the admin API sees of the running daemon.
pub struct Daemon {
    /// The open logs.
    pub ingest: Arc<Ingest>,
    /// The daemon's dead-letter store.
    pub dead_letters: Store,
    /// The daemon's processing (replays use it, so they make the publisher's rows).
    pub processor: Arc<Processor>,
    /// The data directory's instance id (part of replay tokens).
    pub instance: InstanceId,
    /// Rows per replayed chunk (`publish.batch_rows`).
    pub replay_chunk_rows: usize,
    /// What the publishers report.
    pub health: Arc<Health>,
    /// The connected sink, once ClickHouse has answered.
    pub sink: OnceLock<Arc<Sink>>,
    /// Why the last attempt to connect to ClickHouse failed, while not connected.
    pub connect_error: Mutex<Option<String>>,
    /// The recent samples behind the rates.
    pub history: History,
    /// The live feed's broadcast.
    pub live: Arc<Live>,
    /// When the daemon started (ms since the epoch).
    pub started_ms: i64,
    /// The collector listener's bound address: the console's setup snippets and its test
    /// event are pointed at it.
    pub collector_addr: SocketAddr,
    /// Held by a replay or purge: they run one at a time.
    pub(crate) writing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("instance", &self.instance)
            .field("connected", &self.sink.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// The daemon's parts, before ClickHouse is connected.
    pub fn new(
        ingest: Arc<Ingest>,
        dead_letters: Store,
        processor: Arc<Processor>,
        instance: InstanceId,
        replay_chunk_rows: usize,
        config: &AdminConfig,
        collector_addr: SocketAddr,
    ) -> Daemon {
        Daemon {
            ingest,
            dead_letters,
            processor,
            instance,
            replay_chunk_rows,
            health: Arc::new(Health::default()),
            sink: OnceLock::new(),
            connect_error: Mutex::new(None),
            history: History::new(config.history.get(), SAMPLE_EVERY),
            live: Arc::new(Live::new(config.live_buffer, config.max_live_viewers)),
            started_ms: crate::wire::time::now_ms(),
            collector_addr,
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// Records that ClickHouse answered: replays and the status use `sink` from now on.
    pub fn connected(&self, sink: Arc<Sink>) {
        let _ = self.sink.set(sink);
        *self.connect_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Records why connecting to ClickHouse failed.
    pub fn connect_failed(&self, error: String) {
        *self.connect_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    /// Takes one history sample of the logs and the publishers now.
    pub fn sample(&self) {
        let statuses = self.ingest.statuses();
        let appended = statuses.iter().map(|(_, s)| s.last_lsn.0).sum();
        let unpublished = statuses.iter().map(|(_, s)| s.unconfirmed).sum();
        let health = self.health.snapshot();
        let (rows, dead_lettered) = health.values().fold((0, 0), |(r, d), h| {
            (r + h.rows_confirmed, d + h.dead_lettered)
        });
        self.history.push(history::Sample {
            time_ms: crate::wire::time::now_ms(),
            appended,
            unpublished,
            rows_confirmed: rows,
            dead_lettered,
            clickhouse_up: self.clickhouse_up(&health),
        });
    }

    /// ClickHouse is connected and no publisher has failed since its last confirmed batch.
    fn clickhouse_up(&self, health: &BTreeMap<usize, crate::publish::PartitionHealth>) -> bool {
        self.sink.get().is_some() && health.values().all(|h| h.last_error.is_none())
    }
}

/// Samples the history every [`SAMPLE_EVERY`] until `shutdown` fires.
pub async fn sample_loop(daemon: Arc<Daemon>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => daemon.sample(),
            _ = shutdown.stopped() => return,
        }
    }
}

/// Serves the admin API on `listener` until `shutdown` fires (see [`crate::listener`]); open
/// connections, live streams included, are closed then.
pub async fn serve(
    listener: TcpListener,
    daemon: Arc<Daemon>,
    token: AdminToken,
    config: AdminConfig,
    shutdown: Shutdown,
) {
    let api = Arc::new(routes::Api {
        daemon,
        token,
        config,
        shutdown: shutdown.clone(),
    });
    let handle = move |req: Request<Incoming>| {
        let api = api.clone();
        async move { api.handle(req).await }
    };
    crate::listener::serve(listener, "admin", handle, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_token_only_loopback_is_accepted() {
        let mut c = AdminConfig::default();
        assert!(c.violations().is_empty());
        c.listen = "0.0.0.0:9091".parse().unwrap();
        let v = c.violations();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].key, "admin.listen");
        assert!(v[0].message.contains("admin.token"), "{}", v[0].message);
        c.token = "a-long-enough-secret".into();
        assert!(c.violations().is_empty());
        c.token = "short".into();
        assert_eq!(c.violations()[0].key, "admin.token");
    }

    #[test]
    fn limits_are_range_checked() {
        let c = AdminConfig {
            max_page_entries: 0,
            max_body_bytes: ByteSize(10),
            history: HumanDuration(Duration::from_secs(1)),
            ..AdminConfig::default()
        };
        let keys: Vec<_> = c.violations().iter().map(|v| v.key).collect();
        assert_eq!(
            keys,
            [
                "admin.max_body_bytes",
                "admin.max_page_entries",
                "admin.history"
            ]
        );
    }
}
