//! The partitioned logs: where each request's envelope is appended.
//!
//! # Partitions
//!
//! The collector writes to `N` independent logs ([`partition_count`]; `wal.partitions`, default
//! one per core), each in its own directory ([`partition_dir`]: `DATA_DIR/wal/partition-000`, …)
//! with its own writer thread, so group commits on different partitions proceed in parallel.
//! The byte budget `wal.capacity` is split evenly between them ([`wal_config`]).
//!
//! # Routing
//!
//! A request goes to partition `fnv1a64(identity) % N`, where the identity is the best one the
//! request offers *without parsing its body* (the hot path only looks at the head):
//!
//! 1. the network user id the collector resolved from the request — its `nuid` parameter or its
//!    network-user-id cookie (`collector.cookie.name`, default `sp`); see [`crate::http::collector`],
//! 2. else the client IP: the first `X-Forwarded-For` hop, else the TCP peer's address. (A
//!    freshly generated id would scatter a cookieless client's requests, so it is not used.)
//!
//! The same user therefore always lands in the same partition, and the log keeps that user's
//! events in arrival order. The hash is FNV-1a 64 with its fixed offset basis — unsalted on
//! purpose: a restart with the same `N` routes every user exactly as before. (A hostile client
//! choosing identities to crowd one partition only slows its own partition's group commits;
//! every partition keeps its byte budget.)
//!
//! # Changing the number of partitions
//!
//! Directories of partitions at or above `N` that already exist (left by an earlier run with
//! more partitions) are opened too, so their records stay owned by this process and can be
//! drained by the publisher, but nothing new is routed to them and they do not count toward
//! readiness. Lowering `N` never loses data; raising it moves some users to new partitions
//! (their order across the change is then only kept per partition).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sluice_wal::fs::{FileSystem, StdFs};
use sluice_wal::{Appender, FullPolicy, Lsn, Status, Wal, WalConfig};

use crate::metrics::{PartitionMetrics, WalObserver};
use serde::{Deserialize, Serialize};

use crate::config::units::ByteSize;

/// Name of the directory under `data_dir` that holds the partitions.
pub const WAL_DIR: &str = "wal";
/// Prefix of each partition's directory name; followed by the zero-padded index.
pub const PARTITION_PREFIX: &str = "partition-";
/// Most partitions the collector opens.
pub const MAX_PARTITIONS: usize = 256;
/// Room for the envelope's field names, method, route, peer and framing in one record, on top
/// of the body and the request head it copies.
pub const ENVELOPE_OVERHEAD_BYTES: u64 = 4096;
/// Group-commit batch size cap (payload bytes), unless one record needs more.
const MAX_BATCH_BYTES: u64 = 16 << 20;

/// `data_dir/wal/partition-{index:03}`.
pub fn partition_dir(data_dir: &Path, index: usize) -> PathBuf {
    data_dir
        .join(WAL_DIR)
        .join(format!("{PARTITION_PREFIX}{index:03}"))
}

/// The sorted indices of the partition directories that exist under `data_dir` (none when the
/// `wal` directory does not exist yet). Entries that are not `partition-NNN` directories are
/// ignored.
pub fn existing_partitions(data_dir: &Path) -> std::io::Result<Vec<usize>> {
    let root = data_dir.join(WAL_DIR);
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        let Some(digits) = name.to_str().and_then(|n| n.strip_prefix(PARTITION_PREFIX)) else {
            continue;
        };
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(index) = digits.parse() {
                found.push(index);
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// Number of partitions new requests are routed to: `wal.partitions`, or when it is 0 one per
/// available core, but no more than `wal.capacity` can give two segments each (so the default
/// configuration is valid on any machine); at least 1, at most [`MAX_PARTITIONS`].
pub fn partition_count(wal: &WalSettings) -> usize {
    let n = match wal.partitions {
        0 => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let per_partition = 2 * wal.segment_size.bytes().max(1);
            let fit = (wal.capacity.bytes() / per_partition).max(1);
            cores.min(usize::try_from(fit).unwrap_or(usize::MAX))
        }
        n => n,
    };
    n.clamp(1, MAX_PARTITIONS)
}

/// The settings of each partition's log when `partitions` share the configured budget.
///
/// `max_record_bytes` is the largest envelope the HTTP limits admit (see
/// [`crate::config::Config::max_record_bytes`]).
pub fn wal_config(wal: &WalSettings, max_record_bytes: u64, partitions: usize) -> WalConfig {
    let partitions = partitions.max(1) as u64;
    WalConfig {
        segment_bytes: wal.segment_size.bytes(),
        capacity_bytes: wal.capacity.bytes() / partitions,
        max_record_bytes,
        full_policy: match wal.full_policy {
            FullPolicySetting::Reject => FullPolicy::Reject,
            FullPolicySetting::DropOldest => FullPolicy::DropOldest,
        },
        queue_capacity: wal.queue_capacity,
        max_batch_bytes: MAX_BATCH_BYTES.max(max_record_bytes),
    }
}

/// FNV-1a, 64-bit: a stable, unsalted hash (offset basis and prime from the FNV reference).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

/// What a request offers to route it by, best first (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity<'a> {
    /// The network user id the request carried (parameter or cookie).
    NetworkUserId(&'a str),
    /// The client's IP address.
    Ip(IpAddr),
    /// An `X-Forwarded-For` first hop that is not an IP address, taken verbatim.
    ForwardedFor(&'a str),
    /// Nothing at all (no cookie, parameter, forwarding header or peer).
    Unknown,
}

impl<'a> Identity<'a> {
    /// Picks the identity: the network user id the request carried (as the collector resolved
    /// it), else the client IP.
    pub fn of(
        network_user_id: Option<&'a str>,
        forwarded_for: Option<&'a str>,
        peer: Option<SocketAddr>,
    ) -> Identity<'a> {
        if let Some(v) = network_user_id.filter(|v| !v.is_empty()) {
            return Identity::NetworkUserId(v);
        }
        if let Some(hop) = forwarded_for
            .and_then(|h| h.split(',').next())
            .map(str::trim)
            .filter(|h| !h.is_empty())
        {
            return match hop.parse::<IpAddr>() {
                Ok(ip) => Identity::Ip(ip),
                Err(_) => Identity::ForwardedFor(hop),
            };
        }
        match peer {
            Some(addr) => Identity::Ip(addr.ip()),
            None => Identity::Unknown,
        }
    }

    /// The stable hash routing uses.
    pub fn hash(&self) -> u64 {
        match self {
            Identity::NetworkUserId(v) | Identity::ForwardedFor(v) => fnv1a64(v.as_bytes()),
            // The canonical (IPv4-mapped addresses unwrapped) octets, so the same client hashes
            // alike whether it came through a proxy header or directly.
            Identity::Ip(ip) => match ip.to_canonical() {
                IpAddr::V4(v4) => fnv1a64(&v4.octets()),
                IpAddr::V6(v6) => fnv1a64(&v6.octets()),
            },
            Identity::Unknown => fnv1a64(&[]),
        }
    }
}

/// Why the logs could not be opened or closed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The partition directories could not be listed.
    #[error(
        "cannot list partitions under {dir}: {source}; check that data_dir exists and is readable"
    )]
    List {
        /// The directory being listed.
        dir: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A partition's log did not open.
    #[error("cannot open the log of partition {partition} in {dir}: {source}")]
    Open {
        /// The partition's index.
        partition: usize,
        /// Its directory.
        dir: PathBuf,
        /// What the log reported.
        #[source]
        source: sluice_wal::Error,
    },
    /// A partition's log could not be closed because its publisher still holds it.
    #[error("the log of partition {partition} is still in use by its publisher")]
    InUse {
        /// The partition's index.
        partition: usize,
    },
    /// A partition's log reported an error while closing (its writer was poisoned earlier).
    #[error("closing the log of partition {partition}: {source}")]
    Close {
        /// The partition's index.
        partition: usize,
        /// What the log reported.
        #[source]
        source: sluice_wal::Error,
    },
}

impl IngestError {
    /// A stable, short identifier for metric labels and logs.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::List { .. } => "list",
            IngestError::Open { .. } => "open",
            IngestError::Close { .. } => "close",
            IngestError::InUse { .. } => "in_use",
        }
    }
}

/// One open partition.
#[derive(Debug)]
struct Partition {
    index: usize,
    /// Shared with the partition's publisher, which reads and checkpoints it; closing needs
    /// the only reference back (the publishers are stopped first).
    wal: Arc<Wal>,
    metrics: PartitionMetrics,
}

/// The open logs: appenders for the hot path, the logs themselves for status and closing.
///
/// # Invariants
///
/// - `appenders[i]` belongs to partition `i` for `i < appenders.len()`; those are the routable
///   partitions. Extra partitions (see the module docs) are only in `partitions`.
/// - After [`Ingest::close`], `partitions` is empty and every append answers `Closed`.
#[derive(Debug)]
pub struct Ingest {
    appenders: Vec<Appender>,
    /// Behind a mutex only so that [`Ingest::close`] can take the logs out through a shared
    /// reference; the hot path never touches it.
    partitions: Mutex<Vec<Partition>>,
    data_dir: PathBuf,
}

impl Ingest {
    /// Opens every partition's log (blocking: recovery reads the disk). Run it off the async
    /// runtime's worker threads.
    /// `max_record_bytes` bounds one record (the largest envelope the HTTP limits admit).
    pub fn open(
        wal: &WalSettings,
        max_record_bytes: u64,
        data_dir: &Path,
    ) -> Result<Ingest, IngestError> {
        Ingest::open_on(wal, max_record_bytes, data_dir, Arc::new(StdFs))
    }

    /// [`Ingest::open`] on the filesystem `fs` (tests inject failures through it; see
    /// [`sluice_wal::fs`]).
    pub fn open_on(
        wal: &WalSettings,
        max_record_bytes: u64,
        data_dir: &Path,
        fs: Arc<dyn FileSystem>,
    ) -> Result<Ingest, IngestError> {
        let routable = partition_count(wal);
        let wal_config = wal_config(wal, max_record_bytes, routable);
        let existing = existing_partitions(data_dir).map_err(|source| IngestError::List {
            dir: data_dir.join(WAL_DIR),
            source,
        })?;
        let mut indices: Vec<usize> = (0..routable).collect();
        indices.extend(existing.into_iter().filter(|&i| i >= routable));

        let mut partitions = Vec::with_capacity(indices.len());
        for index in indices {
            let dir = partition_dir(data_dir, index);
            let observer = Arc::new(WalObserver::new(index));
            let wal = Wal::open_with(&dir, wal_config.clone(), fs.clone(), observer).map_err(
                |source| IngestError::Open {
                    partition: index,
                    dir: dir.clone(),
                    source,
                },
            )?;
            if index >= routable {
                tracing::info!(partition = index, dir = %dir.display(),
                    "opened an extra partition left by an earlier run; it receives no new requests");
            }
            partitions.push(Partition {
                index,
                wal: Arc::new(wal),
                metrics: PartitionMetrics::new(index),
            });
        }
        let appenders = partitions[..routable]
            .iter()
            .map(|p| p.wal.appender())
            .collect();
        let ingest = Ingest {
            appenders,
            partitions: Mutex::new(partitions),
            data_dir: data_dir.to_path_buf(),
        };
        ingest.refresh_metrics();
        Ok(ingest)
    }

    /// Number of partitions new requests are routed to.
    pub fn routable(&self) -> usize {
        self.appenders.len()
    }

    /// The partition a request with this identity goes to.
    pub fn route(&self, identity: &Identity<'_>) -> usize {
        (identity.hash() % self.appenders.len() as u64) as usize
    }

    /// Appends one encoded envelope to `partition`; resolves once it is durable.
    pub fn append(
        &self,
        partition: usize,
        record: Vec<u8>,
    ) -> impl std::future::Future<Output = sluice_wal::Result<Lsn>> + Send + 'static {
        self.appenders[partition].append_async(record)
    }

    /// The routable partitions that refuse appends right now (log full or poisoned).
    pub fn unavailable(&self) -> Vec<usize> {
        self.appenders
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_unavailable())
            .map(|(i, _)| i)
            .collect()
    }

    /// True when every routable partition accepts appends.
    pub fn is_ready(&self) -> bool {
        !self.appenders.iter().any(Appender::is_unavailable)
    }

    /// Each open partition's index and status.
    pub fn statuses(&self) -> Vec<(usize, Status)> {
        self.lock()
            .iter()
            .map(|p| (p.index, p.wal.status()))
            .collect()
    }

    /// Every open partition's index and log, for the publishers (which read from and
    /// checkpoint them). Stop the publishers before [`Ingest::close`]: a log still referenced
    /// elsewhere cannot be closed cleanly.
    pub fn wals(&self) -> Vec<(usize, Arc<Wal>)> {
        self.lock()
            .iter()
            .map(|p| (p.index, p.wal.clone()))
            .collect()
    }

    /// Sets the per-partition gauges from each log's status.
    pub fn refresh_metrics(&self) {
        for p in self.lock().iter() {
            p.metrics.record(&p.wal.status());
        }
    }

    /// The data directory the partitions live under.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Closes every log: each writer finishes what is queued, then exits. Blocking; appends
    /// submitted afterwards answer `Closed`. Closing twice is harmless.
    pub fn close(&self) -> Result<(), IngestError> {
        let partitions = std::mem::take(&mut *self.lock());
        let mut first_error = None;
        for p in partitions {
            p.metrics.record(&p.wal.status());
            let wal = match Arc::try_unwrap(p.wal) {
                Ok(wal) => wal,
                Err(_) => {
                    // A publisher that did not stop in time still holds it; the log closes
                    // (its writer drains and exits) when that last reference is dropped.
                    tracing::error!(partition = p.index,
                        "the log is still in use by its publisher; it closes when the publisher exits");
                    first_error.get_or_insert(IngestError::InUse { partition: p.index });
                    continue;
                }
            };
            if let Err(source) = wal.close() {
                tracing::error!(partition = p.index, error = %source, "closing the log failed");
                first_error.get_or_insert(IngestError::Close {
                    partition: p.index,
                    source,
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Partition>> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl crate::metrics::Gauges for Ingest {
    fn refresh_gauges(&self) {
        self.refresh_metrics();
    }
}

impl Drop for Ingest {
    /// The normal path is [`Ingest::close`]; this covers an `Ingest` dropped without it (an
    /// error path, or a server dropped without `shutdown`), so a failed close is still logged.
    /// Closing a log joins its writer thread, which is fine on an async runtime's thread too.
    fn drop(&mut self) {
        let partitions =
            std::mem::take(self.partitions.get_mut().unwrap_or_else(|e| e.into_inner()));
        for p in partitions {
            let Ok(wal) = Arc::try_unwrap(p.wal) else {
                continue;
            };
            if let Err(e) = wal.close() {
                tracing::error!(partition = p.index, error = %e, "closing the log failed");
            }
        }
    }
}

/// What to do when the log is full (see `sluice_wal::FullPolicy`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicySetting {
    /// Answer 503 with `Retry-After`; never overwrite unpublished data. The default.
    #[default]
    Reject,
    /// Overwrite the oldest unpublished records and count them.
    DropOldest,
}

/// The write-ahead log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WalSettings {
    /// Number of independent logs, each with its own writer thread. `0` (the default) means
    /// one per CPU core, capped so each gets at least two segments of `capacity`. At most 256. A restart with fewer partitions keeps draining the
    /// extra ones' records but routes nothing new to them.
    pub partitions: usize,
    /// Disk budget of all partitions together, split evenly between them. Default `4GiB`;
    /// each partition's share must hold at least two segments.
    pub capacity: ByteSize,
    /// Size of each preallocated segment file. Default `32MiB`; `64KiB` to `1GiB`.
    pub segment_size: ByteSize,
    /// `reject` (default) or `drop_oldest`.
    pub full_policy: FullPolicySetting,
    /// Appends that may wait for one partition's writer before answering 503. Default 65 536;
    /// 1 to 16 777 216.
    pub queue_capacity: usize,
}

impl Default for WalSettings {
    fn default() -> Self {
        WalSettings {
            partitions: 0,
            capacity: ByteSize(4 << 30),
            segment_size: ByteSize(32 << 20),
            full_policy: FullPolicySetting::Reject,
            queue_capacity: 65_536,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ByteSize, Config};

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn partition_dirs_are_zero_padded_under_wal() {
        assert_eq!(
            partition_dir(Path::new("/d"), 7),
            PathBuf::from("/d/wal/partition-007")
        );
    }

    #[test]
    fn existing_partitions_lists_only_partition_directories_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(existing_partitions(tmp.path()).unwrap().is_empty());
        for i in [3, 0, 12] {
            std::fs::create_dir_all(partition_dir(tmp.path(), i)).unwrap();
        }
        std::fs::create_dir_all(tmp.path().join("wal/partition-x")).unwrap();
        std::fs::write(tmp.path().join("wal/partition-004"), b"a file").unwrap();
        assert_eq!(existing_partitions(tmp.path()).unwrap(), vec![0, 3, 12]);
    }

    #[test]
    fn wal_config_splits_the_capacity_and_leaves_room_for_the_head() {
        let mut config = Config::default();
        config.wal.capacity = ByteSize(4 << 30);
        config.wal.partitions = 4;
        let w = wal_config(
            &config.wal,
            config.max_record_bytes(),
            partition_count(&config.wal),
        );
        assert_eq!(w.capacity_bytes, 1 << 30);
        assert_eq!(w.segment_bytes, 32 << 20);
        assert_eq!(w.max_record_bytes, (2 << 20) + (40 << 10) + 4096);
        assert!(w.validate().is_ok());
    }

    #[test]
    fn zero_partitions_means_one_per_core() {
        let config = Config::default();
        assert!(partition_count(&config.wal) >= 1);
        assert_eq!(
            partition_count(&config.wal),
            std::thread::available_parallelism().unwrap().get()
        );
    }

    #[test]
    fn the_network_user_id_wins_over_the_forwarded_ip_and_the_peer() {
        let peer: SocketAddr = "10.0.0.1:1234".parse().unwrap();
        let id = Identity::of(Some("user-1"), Some("1.2.3.4"), Some(peer));
        assert_eq!(id, Identity::NetworkUserId("user-1"));
        let id = Identity::of(Some(""), Some(" 1.2.3.4 , 5.6.7.8"), Some(peer));
        assert_eq!(id, Identity::Ip("1.2.3.4".parse().unwrap()));
        let id = Identity::of(None, None, Some(peer));
        assert_eq!(id, Identity::Ip("10.0.0.1".parse().unwrap()));
        assert_eq!(Identity::of(None, None, None), Identity::Unknown);
    }

    #[test]
    fn a_client_hashes_alike_through_a_proxy_header_and_directly() {
        let direct = Identity::of(None, None, Some("1.2.3.4:80".parse().unwrap()));
        let proxied = Identity::of(None, Some("1.2.3.4"), None);
        let mapped = Identity::of(None, None, Some("[::ffff:1.2.3.4]:80".parse().unwrap()));
        assert_eq!(direct.hash(), proxied.hash());
        assert_eq!(direct.hash(), mapped.hash());
    }
}
