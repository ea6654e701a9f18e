//! `sluice serve`: wires the listeners, the application and the logs together, and stops them
//! cleanly.
//!
//! # Tasks and their owners
//!
//! [`start`] opens the logs, binds the three listeners and spawns these tasks, all owned by the
//! returned [`RunningServer`] and stopped through one [`Shutdown`] signal:
//!
//! - the collector's accept loop, which owns one task per connection (a `JoinSet`), bounded by
//!   a semaphore of `server.max_connections` permits (further connections wait in the kernel's
//!   accept queue);
//! - the metrics listener's accept loop (its own connection tasks);
//! - the admin listener's accept loop (its own connection tasks, see [`crate::admin`]), its
//!   history sampler (once a second) and the live feed's tailers (a blocking task per
//!   partition, idle while nobody watches);
//! - the gauge refresher (once a second);
//! - the dead-letter retention loop (a pass at start, then every
//!   `dead_letter.retention_interval`; see [`crate::deadletter::retention`]);
//! - the publishing task: connects to ClickHouse in the background, retrying with a capped
//!   backoff for as long as it takes (the collector serves and buffers meanwhile; `/ready`
//!   reflects only the logs), then starts the [`Publishers`] (one OS thread per partition,
//!   see [`crate::publish`]) and hands them to the `RunningServer`.
//!
//! # Shutdown order
//!
//! 1. Stop accepting (the listeners are dropped).
//! 2. Ask every collector connection to finish: idle keep-alive connections close at once,
//!    in-flight requests complete (their appends are acknowledged) and then close. This is
//!    bounded by `server.shutdown_grace`; connections still open after it are aborted (their
//!    submitted appends still become durable in step 4, but the client gets no answer).
//! 3. Stop the metrics and admin listeners (open live-feed streams end), the sampler, the
//!    live-feed tailers, the refresher, the dead-letter retention loop (a pass in progress is
//!    finished) and the publishing task (a connection attempt in progress is abandoned).
//! 4. Stop the publishers: each finishes or abandons the batch in hand (an abandoned batch is
//!    not checkpointed, so it is re-sent with the same token after the restart). Bounded by
//!    `publish.stop_timeout`; a publisher still running after it keeps its log open until it
//!    exits.
//! 5. Flush the dead-letter store.
//! 6. Close every log: each writer commits what is queued and exits.
//!
//! # Reloading
//!
//! [`RunningServer::reload`] applies a new configuration's keys, rate limits, trusted proxies
//! and JSON size limits to the running collector (see [`crate::http::auth`]); nothing else is
//! reloaded. The daemon calls it on SIGHUP.
//!
//! Nothing outlives [`RunningServer::shutdown`]. Dropping a `RunningServer` without calling it
//! drops its [`Stop`], which stops the tasks too, but nothing waits for them and the
//! logs are only closed when the last task holding them ends.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use sluice_wal::fs::{FileSystem, StdFs};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::admin::{self, AdminToken, Daemon, TokenError};
use crate::config::Config;
use crate::deadletter::{DeadLetterError, Store};
use crate::http::auth::Access;
use crate::http::{App, Limits};
use crate::ingest::{Ingest, IngestError};
use crate::instance::InstanceError;
use crate::metrics;
use crate::publish::enrich::EnrichError;
use crate::publish::process::Processor;
use crate::publish::{PublishError, Publishers, Shared};
use crate::shutdown::{self, Shutdown, Stop};
use crate::sink::clickhouse::Sink;

/// How often the partition gauges are refreshed between scrapes.
const GAUGE_REFRESH: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// hyper refuses a smaller read buffer for HTTP/1 heads.
const MIN_HEAD_BUFFER: usize = 8192;
/// First pause between attempts to connect to ClickHouse; doubles up to [`MAX_CONNECT_BACKOFF`].
const MIN_CONNECT_BACKOFF: Duration = Duration::from_millis(500);
/// Longest pause between attempts to connect to ClickHouse.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(30);

/// Why the server could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A partition's log could not be opened.
    #[error("cannot open the logs: {0}")]
    OpenLogs(#[source] IngestError),
    /// The data directory's instance id could not be read or created.
    #[error(transparent)]
    Instance(InstanceError),
    /// The enrichment settings could not be applied.
    #[error("cannot set up enrichment (check [enrich]): {0}")]
    Enrich(#[source] EnrichError),
    /// The dead-letter store could not be opened.
    #[error("cannot open the dead-letter store: {0}")]
    OpenDeadLetters(#[source] DeadLetterError),
    /// The admin token could not be read or generated.
    #[error(transparent)]
    AdminToken(TokenError),
    /// A listener could not bind its address.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The setting that names it.
        key: &'static str,
        /// The bind error.
        source: std::io::Error,
    },
    /// A task or a blocking step panicked or was cancelled.
    #[error("{task} failed: {source}")]
    Task {
        /// What the task was doing.
        task: &'static str,
        /// The join error (a panic or a cancellation).
        source: tokio::task::JoinError,
    },
    /// Publishers still running after `publish.stop_timeout`.
    #[error("the publishers of partitions {0:?} did not stop within publish.stop_timeout")]
    LatePublishers(Vec<usize>),
    /// A publisher stopped with an error.
    #[error("a publisher failed: {0}")]
    Publisher(#[source] PublishError),
    /// The dead-letter store could not be flushed on the way down.
    #[error("cannot flush the dead-letter store: {0}")]
    FlushDeadLetters(#[source] DeadLetterError),
    /// A log could not be closed cleanly.
    #[error("closing the logs: {0}")]
    CloseLogs(#[source] IngestError),
}

/// A started server: its bound addresses and the handles needed to stop it.
#[derive(Debug)]
pub struct RunningServer {
    /// The collector listener's bound address (useful with port 0).
    pub collector_addr: SocketAddr,
    /// The metrics listener's bound address.
    pub metrics_addr: SocketAddr,
    /// The admin listener's bound address.
    pub admin_addr: SocketAddr,
    stop: Stop,
    collector: JoinHandle<()>,
    metrics: JoinHandle<()>,
    admin: JoinHandle<()>,
    sampler: JoinHandle<()>,
    /// The live feed's tailers, one per partition; each holds its log until it ends.
    tailers: Vec<JoinHandle<()>>,
    refresher: JoinHandle<()>,
    retention: JoinHandle<()>,
    publishing: JoinHandle<()>,
    /// Filled by the publishing task once the sink has connected.
    publishers: Arc<Mutex<Option<Publishers>>>,
    dead_letters: Store,
    ingest: Arc<Ingest>,
    access: Arc<Access>,
}

impl RunningServer {
    /// Applies the reloadable parts of `config` (already validated) while serving: the key
    /// lists, the rate limits, the trusted proxies and the JSON size limits (see
    /// [`crate::http::auth`]). Everything else needs a restart.
    pub fn reload(&self, config: &Config) {
        self.access.reload(&config.access());
        warn_open_routes(&self.access);
        tracing::info!("reloaded keys, rate limits, trusted proxies and JSON size limits");
    }

    /// The open logs (e.g. to inspect their status while the server runs).
    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.ingest
    }

    /// Stops the server in the order described in the module docs and returns once every log is
    /// closed.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let RunningServer {
            stop,
            collector,
            metrics,
            admin,
            sampler,
            tailers,
            refresher,
            retention,
            publishing,
            publishers,
            dead_letters,
            ingest,
            ..
        } = self;
        stop.stop();
        // Every task is awaited and the logs are closed even if a task panicked.
        let tasks = [
            ("the collector's accept loop", collector),
            ("the metrics listener", metrics),
            ("the admin listener", admin),
            ("the history sampler", sampler),
            ("the gauge refresher", refresher),
            ("the dead-letter retention loop", retention),
            ("the publishing task", publishing),
        ]
        .into_iter()
        .chain(tailers.into_iter().map(|t| ("a live-feed tailer", t)));
        let mut first_error = None;
        for (name, task) in tasks {
            if let Err(e) = task.await {
                tracing::error!(task = name, error = %e, "task failed");
                first_error.get_or_insert(ServerError::Task {
                    task: name,
                    source: e,
                });
            }
        }
        let started = publishers.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(publishers) = started {
            let (late, error) = tokio::task::spawn_blocking(move || publishers.stop())
                .await
                .map_err(panicked("stopping the publishers"))?;
            if !late.is_empty() {
                first_error.get_or_insert(ServerError::LatePublishers(late));
            }
            if let Some(e) = error {
                first_error.get_or_insert(ServerError::Publisher(e));
            }
        }
        let flushing = dead_letters.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || flushing.flush())
            .await
            .map_err(panicked("flushing the dead-letter store"))?
        {
            first_error.get_or_insert(ServerError::FlushDeadLetters(e));
        }
        drop(dead_letters);
        let closing = ingest.clone();
        let closed = tokio::task::spawn_blocking(move || closing.close())
            .await
            .map_err(panicked("closing the logs"))?;
        ingest.refresh_metrics();
        closed.map_err(ServerError::CloseLogs)?;
        if let Some(e) = first_error {
            return Err(e);
        }
        tracing::info!("stopped; every log is closed");
        Ok(())
    }
}

/// Opens the logs, binds the collector and metrics listeners and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    start_on(config, Arc::new(StdFs)).await
}

/// [`start`] with the logs on the filesystem `fs`: tests run the whole server on a
/// [`sluice_wal::fs::FaultyFs`] to see what a client gets when the disk fails.
pub async fn start_on(
    config: Config,
    fs: Arc<dyn FileSystem>,
) -> Result<RunningServer, ServerError> {
    metrics::handle();
    let (wal, max_record_bytes, data_dir) = (
        config.wal.clone(),
        config.max_record_bytes(),
        config.data_dir.clone(),
    );
    let ingest =
        tokio::task::spawn_blocking(move || Ingest::open_on(&wal, max_record_bytes, &data_dir, fs))
            .await
            .map_err(panicked("opening the logs"))?
            .map_err(ServerError::OpenLogs)?;
    let ingest = Arc::new(ingest);
    let instance_dir = config.data_dir.clone();
    let instance =
        tokio::task::spawn_blocking(move || crate::instance::load_or_create(&instance_dir))
            .await
            .map_err(panicked("reading the instance id"))?
            .map_err(ServerError::Instance)?;
    let processor = Arc::new(
        Processor::new(&config.enrich, config.process_limits(), instance)
            .map_err(ServerError::Enrich)?,
    );
    let store_path = config.dead_letter.path(&config.data_dir);
    let dead_letters = tokio::task::spawn_blocking(move || Store::open(&store_path))
        .await
        .map_err(panicked("opening the dead-letter store"))?
        .map_err(ServerError::OpenDeadLetters)?;
    let (admin_config, token_dir) = (config.admin.clone(), config.data_dir.clone());
    let token = tokio::task::spawn_blocking(move || AdminToken::resolve(&admin_config, &token_dir))
        .await
        .map_err(panicked("reading the admin token"))?
        .map_err(ServerError::AdminToken)?;

    let (collector, collector_addr) = bind(config.server.listen, "server.listen").await?;
    let (metrics_listener, metrics_addr) = bind(config.metrics.listen, "metrics.listen").await?;
    let (admin_listener, admin_addr) = bind(config.admin.listen, "admin.listen").await?;
    let daemon = Arc::new(Daemon::new(
        ingest.clone(),
        dead_letters.clone(),
        processor.clone(),
        instance,
        config.publish.batch_rows,
        &config.admin,
        collector_addr,
    ));

    let (stop, shutdown) = shutdown::channel();
    let app = Arc::new(App::new(
        ingest.clone(),
        Limits::new(&config.server, &config.collector, &config.access()),
    ));
    let access = app.access().clone();
    warn_open_routes(&access);
    let settings = ConnectionSettings::from_config(&config);
    let collector_task = tokio::spawn(serve_collector(collector, app, settings, shutdown.clone()));
    let metrics_task = tokio::spawn(metrics::listener::serve(
        metrics_listener,
        ingest.clone() as Arc<dyn metrics::Gauges>,
        shutdown.clone(),
    ));
    let refresher = tokio::spawn(metrics::listener::refresh_loop(
        ingest.clone() as Arc<dyn metrics::Gauges>,
        GAUGE_REFRESH,
        shutdown.clone(),
    ));
    let admin_token = token.origin.clone();
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        daemon.clone(),
        token,
        config.admin.clone(),
        shutdown.clone(),
    ));
    let sampler = tokio::spawn(admin::sample_loop(daemon.clone(), shutdown.clone()));
    let tailers = ingest
        .wals()
        .into_iter()
        .map(|(partition, wal)| {
            let (processor, live, stop) = (
                daemon.processor.clone(),
                daemon.live.clone(),
                shutdown.clone(),
            );
            let rate = config.admin.live_max_records_per_second;
            tokio::task::spawn_blocking(move || {
                admin::live::tail(partition, wal, processor, live, rate, stop)
            })
        })
        .collect();
    let retention = tokio::spawn(crate::deadletter::retention_loop(
        dead_letters.clone(),
        config.dead_letter.retention(),
        config.dead_letter.retention_interval.get(),
        shutdown.clone(),
    ));
    let publishers = Arc::new(Mutex::new(None));
    let publishing = tokio::spawn(connect_and_publish(
        config.clone(),
        ingest.clone(),
        daemon,
        publishers.clone(),
        shutdown,
    ));
    tracing::info!(%collector_addr, %metrics_addr, %admin_addr, %admin_token,
        partitions = ingest.routable(), data_dir = %config.data_dir.display(), "listening");
    Ok(RunningServer {
        collector_addr,
        metrics_addr,
        admin_addr,
        stop,
        collector: collector_task,
        metrics: metrics_task,
        admin: admin_task,
        sampler,
        tailers,
        refresher,
        retention,
        publishing,
        publishers,
        dead_letters,
        ingest,
        access,
    })
}

/// Binds a listener; `key` names the setting in the error.
async fn bind(
    addr: SocketAddr,
    key: &'static str,
) -> Result<(TcpListener, SocketAddr), ServerError> {
    let bound = TcpListener::bind(addr)
        .await
        .and_then(|l| Ok((l.local_addr()?, l)));
    match bound {
        Ok((local, listener)) => Ok((listener, local)),
        Err(source) => Err(ServerError::Bind { addr, key, source }),
    }
}

/// Maps a task that panicked to [`ServerError::Task`].
fn panicked(task: &'static str) -> impl FnOnce(tokio::task::JoinError) -> ServerError {
    move |source| ServerError::Task { task, source }
}

/// Warns once per route family that accepts requests without a key.
fn warn_open_routes(access: &Access) {
    for key in access.policy().open_sections() {
        tracing::warn!(
            key,
            "no keys configured: these routes accept requests without a key; set {key} to require one"
        );
    }
}

/// Connects to ClickHouse, retrying with a capped backoff until it answers or the server
/// stops, then starts the publishers and leaves them in `slot` for `shutdown` to stop.
async fn connect_and_publish(
    config: Config,
    ingest: Arc<Ingest>,
    daemon: Arc<Daemon>,
    slot: Arc<Mutex<Option<Publishers>>>,
    mut stop: Shutdown,
) {
    let mut backoff = MIN_CONNECT_BACKOFF;
    let sink = loop {
        let attempt = tokio::select! {
            attempt = Sink::connect(&config.clickhouse) => attempt,
            _ = stop.stopped() => return,
        };
        match attempt {
            Ok(sink) => break sink,
            Err(e) => {
                tracing::warn!(url = %crate::logging::redact_url(&config.clickhouse.url), error = %e, retry_in = ?backoff,
                    "cannot connect to ClickHouse; collecting into the log meanwhile");
                daemon.connect_failed(e.to_string());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.stopped() => return,
        }
        backoff = (backoff * 2).min(MAX_CONNECT_BACKOFF);
    };
    tracing::info!(url = %crate::logging::redact_url(&config.clickhouse.url), "connected to ClickHouse; publishing");
    let sink = Arc::new(sink);
    daemon.connected(sink.clone());
    let shared = Shared {
        processor: daemon.processor.clone(),
        sink,
        dead_letters: daemon.dead_letters.clone(),
        config: config.publish.clone(),
        runtime: tokio::runtime::Handle::current(),
        data_dir: config.data_dir.clone(),
        instance: daemon.instance,
        health: daemon.health.clone(),
    };
    let wals = ingest.wals();
    match tokio::task::spawn_blocking(move || Publishers::start(wals, shared)).await {
        Ok(Ok(publishers)) => {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(publishers);
        }
        Ok(Err(e)) => tracing::error!(error = %e, "cannot start the publishers"),
        Err(e) => tracing::error!(error = %e, "starting the publishers panicked"),
    }
}

/// Runs the collector and metrics listeners until `shutdown` resolves, then drains in-flight
/// requests, closes every log and returns.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let server = start(config).await?;
    shutdown.await;
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    server.shutdown().await
}

/// The per-connection HTTP settings.
#[derive(Debug, Clone, Copy)]
struct ConnectionSettings {
    max_connections: usize,
    max_head_bytes: usize,
    header_timeout: Duration,
    shutdown_grace: Duration,
}

impl ConnectionSettings {
    fn from_config(config: &Config) -> ConnectionSettings {
        ConnectionSettings {
            max_connections: config.server.max_connections.max(1),
            max_head_bytes: (config.server.max_header_bytes.bytes() as usize).max(MIN_HEAD_BUFFER),
            header_timeout: config.server.request_timeout.get(),
            shutdown_grace: config.server.shutdown_grace.get(),
        }
    }
}

/// The collector's accept loop; returns after the graceful drain (see the module docs).
async fn serve_collector(
    listener: TcpListener,
    app: Arc<App>,
    settings: ConnectionSettings,
    mut stop: Shutdown,
) {
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.max_head_bytes)
        .keep_alive(true);

    loop {
        // Reap finished connection tasks so the set stays as small as the live connections.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = stop.stopped() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = stop.stopped() => break,
        };
        // Small answers must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.handle(req, Some(peer)).await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %crate::logging::anonymise_ip(peer.ip()), error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);

    let open = connections.len();
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            grace = ?settings.shutdown_grace,
            "connections still open after server.shutdown_grace; closing them"
        );
    } else if open > 0 {
        tracing::debug!(open, "every connection finished");
    }
    connections.shutdown().await;
}
