//! The daemon's configuration: one documented struct per component.
//!
//! Sources, lowest precedence first: built-in defaults < TOML file (`--config FILE`) <
//! environment (`SLUICE_` prefix, `__` between nesting levels, e.g. `SLUICE_WAL__CAPACITY=4GiB`)
//! < command-line flags. Unknown keys are errors that name the key. Sizes are human-readable
//! (`512KiB`, `2MiB`, `4GiB`, or a plain number of bytes); durations too (`500ms`, `30s`, `5m`).
//! [`Config::validate`] runs once at start-up and names the offending key.

pub mod load;
pub mod units;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::admin::AdminConfig;
pub use crate::deadletter::DeadLetterConfig;
pub use crate::http::collector::CollectorConfig;
pub use crate::http::sources::{AuthConfig, CollectConfig, PycolyticsConfig, SegmentConfig};
pub use crate::http::ServerConfig;
pub use crate::ingest::{FullPolicySetting, WalSettings};
pub use crate::logging::{LogConfig, LogFormat};
pub use crate::metrics::listener::MetricsConfig;
pub use crate::publish::enrich::EnrichConfig;
pub use crate::publish::PublishConfig;
pub use crate::ratelimit::LimitsConfig;
pub use crate::sink::clickhouse::ClickHouseConfig;
pub use units::{ByteSize, HumanDuration, Violation};

use units::outside;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory holding the write-ahead logs (one subdirectory per partition).
    /// Default `./data`. Flag `--data-dir`, environment `SLUICE_DATA_DIR`.
    pub data_dir: PathBuf,
    /// The collector's HTTP listener.
    pub server: ServerConfig,
    /// The Prometheus listener.
    pub metrics: MetricsConfig,
    /// The admin API's listener and its limits.
    pub admin: AdminConfig,
    /// The write-ahead log.
    pub wal: WalSettings,
    /// Collector behaviour of the tracking routes (cookies, CORS, redirects, size rules).
    pub collector: CollectorConfig,
    /// The Segment / RudderStack routes: write keys and JSON size limits.
    pub segment: SegmentConfig,
    /// The pycolytics routes: API keys.
    pub pycolytics: PycolyticsConfig,
    /// The generic `/collect` routes: API keys.
    pub collect: CollectConfig,
    /// The key header of the generic and Snowplow routes, and the Snowplow keys.
    pub auth: AuthConfig,
    /// Request rate limits per client IP and per key.
    pub limits: LimitsConfig,
    /// How requests become enriched events.
    pub enrich: EnrichConfig,
    /// Batching from the log to the sink.
    pub publish: PublishConfig,
    /// Where events are published.
    pub clickhouse: ClickHouseConfig,
    /// The store of events that can never load.
    pub dead_letter: DeadLetterConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            metrics: MetricsConfig::default(),
            admin: AdminConfig::default(),
            wal: WalSettings::default(),
            collector: Default::default(),
            segment: SegmentConfig::default(),
            pycolytics: PycolyticsConfig::default(),
            collect: CollectConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            enrich: Default::default(),
            publish: Default::default(),
            clickhouse: ClickHouseConfig::default(),
            dead_letter: Default::default(),
            log: LogConfig::default(),
        }
    }
}

/// The bytes a segment reserves for itself and for one record's frame: the 64-byte segment
/// header plus the 16-byte frame header.
pub const SEGMENT_OVERHEAD_BYTES: u64 =
    sluice_wal::format::SEGMENT_HEADER_LEN + sluice_wal::format::FRAME_HEADER_LEN;

/// Why the configuration could not be loaded or is not acceptable. Every variant names the
/// offending key or file, so the operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file named by `--config` or `SLUICE_CONFIG`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML.
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key that sluice does not know (often a typo, or a key in the wrong section).
    #[error("unknown configuration key `{key}` (from {origin}){}", expected_list(.expected))]
    UnknownKey {
        /// The dotted key, e.g. `wal.capasity`.
        key: String,
        /// Where it came from (`file /etc/sluice.toml`, `env SLUICE_WAL__CAPASITY`).
        origin: String,
        /// The keys accepted at that level.
        expected: Vec<String>,
    },
    /// A value of the wrong type or that does not parse (a size without a valid unit, …).
    #[error("invalid value for `{key}` (from {origin}): {message}")]
    InvalidValue {
        /// The dotted key.
        key: String,
        /// Where the value came from.
        origin: String,
        /// What is wrong with it.
        message: String,
    },
    /// An environment variable with the `SLUICE_` prefix whose name is not a key path.
    #[error("environment variable {name} does not name a configuration key")]
    BadEnvName {
        /// The variable's name.
        name: String,
    },
    /// Values that parse but are outside their documented bounds.
    #[error("invalid configuration:{}", violations_list(.0))]
    OutOfBounds(Vec<Violation>),
    /// Any other loading failure (reported by the configuration library).
    #[error("cannot load configuration: {0}")]
    Other(String),
}

fn expected_list(expected: &[String]) -> String {
    if expected.is_empty() {
        String::new()
    } else {
        format!("; expected one of: {}", expected.join(", "))
    }
}

fn violations_list(v: &[Violation]) -> String {
    v.iter().map(|v| format!("\n  {v}")).collect()
}

impl ConfigError {
    /// A stable label for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "config_read",
            ConfigError::Syntax { .. } => "config_syntax",
            ConfigError::UnknownKey { .. } => "unknown_key",
            ConfigError::InvalidValue { .. } => "invalid_value",
            ConfigError::BadEnvName { .. } => "bad_env_name",
            ConfigError::OutOfBounds(_) => "out_of_bounds",
            ConfigError::Other(_) => "config_other",
        }
    }
}

impl Config {
    /// The sections the collector's access rules are compiled from.
    pub fn access(&self) -> crate::http::auth::AccessConfig<'_> {
        crate::http::auth::AccessConfig {
            auth: &self.auth,
            segment: &self.segment,
            pycolytics: &self.pycolytics,
            collect: &self.collect,
            limits: &self.limits,
            trusted_proxies: &self.enrich.trusted_proxies,
            max_decompressed_bytes: self.server.max_decompressed_bytes.bytes(),
        }
    }

    /// The largest record the log must hold: the largest request the HTTP limits admit
    /// (`server.max_body_bytes` + `server.max_header_bytes`) plus the envelope's framing.
    pub fn max_record_bytes(&self) -> u64 {
        self.server.max_body_bytes.bytes()
            + self.server.max_header_bytes.bytes()
            + crate::ingest::ENVELOPE_OVERHEAD_BYTES
    }

    /// The size limits the publisher applies again to stored requests.
    pub fn process_limits(&self) -> crate::publish::process::Limits {
        crate::publish::process::Limits {
            max_payload_bytes: self.collector.max_payload_bytes.bytes(),
            max_event_bytes: self.segment.max_event_bytes.bytes(),
            max_decompressed_bytes: self.server.max_decompressed_bytes.bytes(),
        }
    }

    /// Checks every documented bound; the error lists each violation with its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let v = self.violations();
        if v.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::OutOfBounds(v))
        }
    }

    /// Every value outside its documented bounds.
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut check = |ok: bool, key: &'static str, message: String| {
            if !ok {
                out.push(Violation { key, message });
            }
        };
        const SEC: Duration = Duration::from_secs(1);
        const MIN: Duration = Duration::from_secs(60);

        check(
            !self.data_dir.as_os_str().is_empty(),
            "data_dir",
            "must not be empty".into(),
        );

        let s = &self.server;
        if let Some(m) = outside(s.max_body_bytes, ByteSize(1 << 10), ByteSize(64 << 20)) {
            check(false, "server.max_body_bytes", m);
        }
        if let Some(m) = outside(
            s.max_decompressed_bytes,
            ByteSize(1 << 10),
            ByteSize(256 << 20),
        ) {
            check(false, "server.max_decompressed_bytes", m);
        }
        if let Some(m) = outside(s.max_header_bytes, ByteSize(8 << 10), ByteSize(1 << 20)) {
            check(false, "server.max_header_bytes", m);
        }
        if let Some(m) = outside(
            s.request_timeout,
            HumanDuration(SEC),
            HumanDuration(10 * MIN),
        ) {
            check(false, "server.request_timeout", m);
        }
        if let Some(m) = outside(s.max_connections, 1, 1_000_000) {
            check(false, "server.max_connections", m);
        }
        if let Some(m) = outside(
            s.shutdown_grace,
            HumanDuration(Duration::ZERO),
            HumanDuration(10 * MIN),
        ) {
            check(false, "server.shutdown_grace", m);
        }
        if let Some(m) = outside(s.retry_after, HumanDuration(SEC), HumanDuration(60 * MIN)) {
            check(false, "server.retry_after", m);
        }

        let w = &self.wal;
        if let Some(m) = outside(w.partitions, 0, crate::ingest::MAX_PARTITIONS) {
            check(false, "wal.partitions", m);
        }
        if let Some(m) = outside(w.segment_size, ByteSize(64 << 10), ByteSize(1 << 30)) {
            check(false, "wal.segment_size", m);
        }
        if let Some(m) = outside(w.queue_capacity, 1, 16_777_216) {
            check(false, "wal.queue_capacity", m);
        }

        let record_max = s
            .max_body_bytes
            .0
            .saturating_add(s.max_header_bytes.0)
            .saturating_add(crate::ingest::ENVELOPE_OVERHEAD_BYTES);
        let room = w.segment_size.0.saturating_sub(SEGMENT_OVERHEAD_BYTES);
        check(
            record_max <= room,
            "server.max_body_bytes",
            format!(
                "a largest request ({} body + {} headers + {} envelope) does not fit in one \
                 `wal.segment_size` segment ({} minus {} bytes of headers); raise \
                 wal.segment_size or lower server.max_body_bytes",
                s.max_body_bytes,
                s.max_header_bytes,
                ByteSize(crate::ingest::ENVELOPE_OVERHEAD_BYTES),
                w.segment_size,
                SEGMENT_OVERHEAD_BYTES
            ),
        );

        let partitions = crate::ingest::partition_count(&self.wal).max(1) as u64;
        let share = w.capacity.0 / partitions;
        check(
            share >= w.segment_size.0.saturating_mul(2),
            "wal.capacity",
            format!(
                "{} split over {partitions} partition(s) gives {} each, less than two \
                 segments of wal.segment_size = {}",
                w.capacity,
                ByteSize(share),
                w.segment_size
            ),
        );

        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            check(
                false,
                "log.level",
                format!("`{}` is not a tracing filter: {e}", self.log.level),
            );
        }
        // Each component validates its own section.
        out.extend(self.collector.violations());
        out.extend(self.segment.violations());
        out.extend(self.pycolytics.violations());
        out.extend(self.collect.violations());
        out.extend(self.auth.violations());
        out.extend(self.limits.violations());
        out.extend(self.enrich.violations());
        out.extend(self.publish.violations());
        out.extend(self.clickhouse.violations());
        out.extend(self.dead_letter.violations());
        out.extend(self.admin.violations());
        out
    }
}
