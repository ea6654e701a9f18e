//! The dead-letter store: every event that can never load, with its raw request and the reason.
//!
//! The publisher writes here what processing refused (a [`crate::event::Failure`]) and what
//! ClickHouse rejected as bad data, **flushes**, and only then advances the log's checkpoint:
//! an entry is durable before the log range holding its request can be recycled. Operators
//! list, show, replay and purge entries with `sluice dlq …` ([`crate::commands::dlq`]) or the
//! admin API.
//!
//! # Storage
//!
//! A [sled](https://docs.rs/sled/0.34) tree in `dead_letter.dir` (default `DATA_DIR/deadletter`).
//! Keys are [`EntryId`]s, 24 bytes, big-endian so that sled's byte order is time order:
//!
//! ```text
//! 0   8  received_at_ms (u64; the request's receive time from its envelope, 0 when unknown)
//! 8   4  partition (u32)
//! 12  8  LSN of the stored request (u64)
//! 20  4  index of the event within the request (u32; u32::MAX = the whole request)
//! ```
//!
//! Values are `[ENTRY_VERSION] ++ rmp_serde::to_vec_named(&Entry)`. Because the key is derived
//! from the request's place in the log and not from the clock, writing the same failure twice
//! (the publisher crashed after flushing its dead letters but before its checkpoint, and
//! re-published the batch) overwrites the entry instead of duplicating it.
//!
//! sled is held to the kill -9 harness in `tests/deadletter_crash.rs` (a child writes and
//! flushes, prints each acknowledged id, is killed at random moments; every acknowledged entry
//! must be present and intact on reopen). It passes there; if it ever stops passing, the
//! replacement is a second `sluice-wal` log plus an index.
//!
//! # Durability
//!
//! A kill -9 leaves the page cache in place; a power cut does not, so [`Store::flush`] does
//! more than sled's own `flush`. sled 0.34 writes its log (the file `db`) with `pwrite` and
//! `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`: the data reaches the device, but neither
//! the file's metadata (its size, when it grew) nor the device's volatile cache is flushed.
//! Values too large for a log buffer (over about 64 KiB with sled's default 512 KiB segments:
//! big raw requests) go to a file of their own in `blobs/`, written with no sync at all. So
//! after sled's flush, [`Store::flush`]:
//!
//! 1. `fsync`s every file in `blobs/` it has not synced before, then `blobs/` itself (the new
//!    names), when there was one;
//! 2. `fsync`s `db` (metadata, and a device cache flush).
//!
//! When it returns, every entry written before it survives a power cut. [`Store::open`] also
//! syncs the store's directory and its parent, so the files sled created are durable names,
//! and treats every blob already there as not yet synced (the process that wrote it may have
//! died before its flush). The publisher flushes once per batch, so this costs a few `fsync`s
//! per batch, not per entry. `tests/deadletter_durability.rs` traces the system calls of a
//! flush (strace) and checks each of these syncs happens after the data's last write.
//!
//! # Retention
//!
//! Entries do not stay forever: `dead_letter.max_age` (default 30 days) evicts those written
//! longer ago, and `dead_letter.max_bytes` (default 1 GiB) the oldest in key order while the
//! entries together exceed it. The daemon enforces both every `dead_letter.retention_interval`;
//! every eviction is counted in a metric and logged. [`retention`] has the exact rules and their
//! cost, and [`Store::stored_bytes`] how the size is kept.
//!
//! # Concurrency
//!
//! sled takes an exclusive lock on its directory, so **one process at a time** opens the store:
//! the daemon while it runs, `sluice dlq …` when it does not. A second opener gets
//! [`DeadLetterError::Locked`]; the CLI then asks the daemon through its admin API
//! ([`crate::admin`]), which works on the daemon's own handle. Within the daemon the publishers
//! only add entries, under ids derived from their requests' places in the log, while the admin
//! API's replays and purges (one at a time) remove or rewrite existing ones, so the two never
//! contend for an entry.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};

pub mod retention;

pub use retention::{retention_loop, Evicted, EvictionReason, Evictions, Retention};

use crate::config::units::{check_range, outside, ByteSize, HumanDuration, Violation};
use crate::event::FailureCategory;

/// First byte of every stored entry.
pub const ENTRY_VERSION: u8 = 1;
/// Name of the store's directory under `data_dir` when `dead_letter.dir` is not set.
pub const DEFAULT_DIR: &str = "deadletter";
/// Length of an [`EntryId`] key in bytes.
pub const KEY_LEN: usize = 24;
/// How long [`Store::open`] waits for a lock held by a store that is just closing.
pub const OPEN_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// The event index that stands for "the whole request".
pub const WHOLE_REQUEST: u32 = u32::MAX;

/// Default of `dead_letter.max_age`: a month gives an operator time to notice a failure, fix
/// its cause and replay what it left behind.
pub const MAX_AGE_DEFAULT: Duration = Duration::from_secs(30 * DAY_SECS);
/// Default of `dead_letter.max_bytes`.
pub const MAX_BYTES_DEFAULT: u64 = 1 << 30;
/// Default of `dead_letter.retention_interval`.
pub const RETENTION_INTERVAL_DEFAULT: Duration = Duration::from_secs(60);
const DAY_SECS: u64 = 24 * 60 * 60;

/// The `[dead_letter]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Directory of the dead-letter store. Default empty, meaning `DATA_DIR/deadletter`.
    pub dir: PathBuf,
    /// Entries last written to the store ([`Entry::time_ms`]) longer ago than this are evicted.
    /// Default `30days`; `0` keeps entries of any age, otherwise between `1m` and `3650days`.
    pub max_age: HumanDuration,
    /// When the store's entries together (their encoded values, see [`Store::stored_bytes`])
    /// exceed this, the oldest by key order (the request's receive time) are evicted until
    /// they fit. Default `1GiB`; `0` sets no limit, otherwise between `1MiB` and `16TiB`. The
    /// directory takes more than this on disk (sled's log and page overhead), and a limit
    /// close to the size of one large request evicts its dead letter almost at once.
    pub max_bytes: ByteSize,
    /// How often the daemon enforces `max_age` and `max_bytes` (and once when it starts).
    /// Default `1m`; between `1s` and `1day`. Between passes the store may exceed its limits
    /// by what was dead-lettered meanwhile.
    pub retention_interval: HumanDuration,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            dir: PathBuf::new(),
            max_age: HumanDuration(MAX_AGE_DEFAULT),
            max_bytes: ByteSize(MAX_BYTES_DEFAULT),
            retention_interval: HumanDuration(RETENTION_INTERVAL_DEFAULT),
        }
    }
}

impl DeadLetterConfig {
    /// Values outside their documented bounds, each naming its key (any directory will do,
    /// and an empty one means the default).
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        let off = "(or 0, which turns the limit off)";
        let (lo, hi) = (
            Duration::from_secs(60),
            Duration::from_secs(3650 * DAY_SECS),
        );
        if !self.max_age.get().is_zero() {
            if let Some(m) = outside(self.max_age, HumanDuration(lo), HumanDuration(hi)) {
                out.push(Violation {
                    key: "dead_letter.max_age",
                    message: format!("{m} {off}"),
                });
            }
        }
        if self.max_bytes.bytes() != 0 {
            if let Some(m) = outside(self.max_bytes, ByteSize(1 << 20), ByteSize(16 << 40)) {
                out.push(Violation {
                    key: "dead_letter.max_bytes",
                    message: format!("{m} {off}"),
                });
            }
        }
        let (lo, hi) = (Duration::from_secs(1), Duration::from_secs(DAY_SECS));
        let (lo, hi) = (HumanDuration(lo), HumanDuration(hi));
        check_range(
            &mut out,
            "dead_letter.retention_interval",
            self.retention_interval,
            lo,
            hi,
        );
        out
    }

    /// The limits [`Store::enforce_retention`] applies, `0` read as "off".
    pub fn retention(&self) -> Retention {
        Retention {
            max_age: Some(self.max_age.get()).filter(|d| !d.is_zero()),
            max_bytes: Some(self.max_bytes.bytes()).filter(|&b| b != 0),
        }
    }

    /// Where the store lives for this data directory.
    pub fn path(&self, data_dir: &Path) -> PathBuf {
        if self.dir.as_os_str().is_empty() {
            data_dir.join(DEFAULT_DIR)
        } else {
            self.dir.clone()
        }
    }
}

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// Another process (normally the running daemon) has the store open.
    #[error(
        "the dead-letter store at {path} is in use by another process (is `sluice serve` running? \
         stop it first: the store admits one process at a time)"
    )]
    Locked {
        /// The store's directory.
        path: PathBuf,
    },
    /// sled reported an error (I/O, corruption).
    #[error("dead-letter store at {path}: {source}")]
    Storage {
        /// The store's directory.
        path: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// An entry's bytes could not be decoded.
    #[error("dead-letter entry {id}: {reason}")]
    Decode {
        /// The entry's id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// No entry has this id.
    #[error("no dead-letter entry {0}")]
    NotFound(EntryId),
    /// Making the store's files durable failed: what was flushed may not survive a power cut.
    #[error("dead-letter store: cannot fsync {path}: {source}")]
    Sync {
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl DeadLetterError {
    /// A stable label for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            DeadLetterError::Locked { .. } => "locked",
            DeadLetterError::Storage { .. } => "storage",
            DeadLetterError::Decode { .. } => "decode",
            DeadLetterError::NotFound(_) => "not_found",
            DeadLetterError::Sync { .. } => "sync",
        }
    }
}

/// A dead-letter entry's key: where its request is in the log, led by the request's receive
/// time so that listing is in time order. Displayed as `TIME-PARTITION-LSN-INDEX`, with `req`
/// for a whole-request failure, e.g. `1718000000000-0-42-3` or `1718000000000-0-42-req`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    /// The request's receive time, ms since the epoch (0 when its envelope was unreadable).
    pub received_at_ms: u64,
    /// The log partition holding the request.
    pub partition: u32,
    /// The request's LSN in that partition.
    pub lsn: u64,
    /// The event's index in the request, or [`WHOLE_REQUEST`].
    pub index: u32,
}

impl EntryId {
    /// The 24-byte big-endian key.
    pub fn to_key(self) -> [u8; KEY_LEN] {
        let mut k = [0u8; KEY_LEN];
        k[0..8].copy_from_slice(&self.received_at_ms.to_be_bytes());
        k[8..12].copy_from_slice(&self.partition.to_be_bytes());
        k[12..20].copy_from_slice(&self.lsn.to_be_bytes());
        k[20..24].copy_from_slice(&self.index.to_be_bytes());
        k
    }

    /// Parses a key written by [`EntryId::to_key`].
    pub fn from_key(k: &[u8]) -> Option<EntryId> {
        if k.len() != KEY_LEN {
            return None;
        }
        Some(EntryId {
            received_at_ms: u64::from_be_bytes(k[0..8].try_into().ok()?),
            partition: u32::from_be_bytes(k[8..12].try_into().ok()?),
            lsn: u64::from_be_bytes(k[12..20].try_into().ok()?),
            index: u32::from_be_bytes(k[20..24].try_into().ok()?),
        })
    }

    /// The event index, `None` for a whole-request entry.
    pub fn event_index(self) -> Option<u32> {
        (self.index != WHOLE_REQUEST).then_some(self.index)
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{}-",
            self.received_at_ms, self.partition, self.lsn
        )?;
        match self.event_index() {
            Some(i) => write!(f, "{i}"),
            None => f.write_str("req"),
        }
    }
}

impl FromStr for EntryId {
    type Err = String;

    fn from_str(s: &str) -> Result<EntryId, String> {
        let bad = || format!("`{s}` is not a dead-letter id (TIME-PARTITION-LSN-INDEX)");
        let parts: Vec<&str> = s.split('-').collect();
        let [time, partition, lsn, index] = parts[..] else {
            return Err(bad());
        };
        Ok(EntryId {
            received_at_ms: time.parse().map_err(|_| bad())?,
            partition: partition.parse().map_err(|_| bad())?,
            lsn: lsn.parse().map_err(|_| bad())?,
            index: match index {
                "req" => WHOLE_REQUEST,
                i => match i.parse::<u32>() {
                    Ok(i) if i != WHOLE_REQUEST => i,
                    _ => return Err(bad()),
                },
            },
        })
    }
}

/// One dead-lettered event (or whole request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The entry's key.
    pub id: EntryId,
    /// When it was (last) written to the store, ms since the epoch.
    pub time_ms: i64,
    /// The failure's kind.
    pub category: FailureCategory,
    /// What is wrong, one message per problem.
    pub messages: Vec<String>,
    /// How many times it has been tried: 1 when first dead-lettered, +1 per failed replay.
    pub attempts: u32,
    /// The failing event's own parameters, JSON or (for a rejected row) the row as JSON.
    pub event_payload: Option<String>,
    /// The raw stored request: the WAL record's bytes (an encoded envelope, or whatever bytes
    /// were there when they could not be decoded).
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
}

impl Serialize for EntryId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EntryId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<EntryId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Entry {
    /// The log partition of the request.
    pub fn partition(&self) -> usize {
        self.id.partition as usize
    }

    /// The event's index in its request, `None` for the whole request.
    pub fn event_index(&self) -> Option<u32> {
        self.id.event_index()
    }

    /// `[ENTRY_VERSION] ++ MessagePack`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENTRY_VERSION];
        // Serializing plain data with named fields into a Vec cannot fail.
        out.extend(rmp_serde::to_vec_named(self).expect("entries serialize"));
        out
    }

    /// The inverse of [`Entry::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Entry, String> {
        match bytes.split_first() {
            None => Err("empty value".into()),
            Some((&ENTRY_VERSION, rest)) => rmp_serde::from_slice(rest).map_err(|e| e.to_string()),
            Some((v, _)) => Err(format!("unsupported entry version {v}")),
        }
    }

    /// A JSON view for `dlq show --json` / `dlq list --json`: the envelope decoded when it
    /// can be, else base64 under `envelope_base64`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": self.id.to_string(),
            "time_ms": self.time_ms,
            "received_at_ms": self.id.received_at_ms,
            "partition": self.id.partition,
            "lsn": self.id.lsn,
            "event_index": self.event_index(),
            "category": self.category.as_str(),
            "messages": self.messages,
            "attempts": self.attempts,
            "event_payload": self.event_payload,
        });
        match crate::envelope::Envelope::decode(&self.envelope) {
            Ok(env) => {
                v["envelope"] = env.to_json(sluice_wal::Lsn(self.id.lsn), self.partition());
            }
            Err(_) => {
                use base64::Engine as _;
                v["envelope_base64"] = base64::engine::general_purpose::STANDARD
                    .encode(&self.envelope)
                    .into();
            }
        }
        v
    }
}

/// Which entries a listing, replay or purge covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this category.
    pub category: Option<FailureCategory>,
    /// Only entries written to the store before this time (ms since the epoch).
    pub written_before_ms: Option<i64>,
    /// Only these ids (empty = any).
    pub ids: Vec<EntryId>,
    /// Only entries of requests stored in this log partition.
    pub partition: Option<u32>,
    /// Only entries of requests received at or after this time (ms since the epoch).
    pub received_from_ms: Option<u64>,
    /// Only entries of requests received before this time (ms since the epoch).
    pub received_before_ms: Option<u64>,
}

impl Filter {
    /// Whether `entry` is covered.
    pub fn matches(&self, entry: &Entry) -> bool {
        self.category.is_none_or(|c| c == entry.category)
            && self.written_before_ms.is_none_or(|t| entry.time_ms < t)
            && (self.ids.is_empty() || self.ids.contains(&entry.id))
            && self.partition.is_none_or(|p| p == entry.id.partition)
            && self
                .received_from_ms
                .is_none_or(|t| entry.id.received_at_ms >= t)
            && self
                .received_before_ms
                .is_none_or(|t| entry.id.received_at_ms < t)
    }
}

/// One page of a listing: up to the asked number of entries, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The entries, in id (receive time) order.
    pub entries: Vec<Entry>,
    /// The id to pass as `after` for the next page; `None` when this page is the last.
    pub next_after: Option<EntryId>,
}

/// The open store. `Send + Sync`; every method takes `&self`; clones share one store.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    /// The sum of the stored values' lengths (see [`Store::stored_bytes`]). Signed because
    /// two threads' updates may land in either order, so it can dip below zero for a moment.
    bytes: Arc<AtomicI64>,
    /// Entries per failure category, in [`FailureCategory::ALL`] order (see [`Store::counts`]);
    /// kept like `bytes`.
    categories: Arc<[AtomicI64; FailureCategory::ALL.len()]>,
    /// The names in `blobs/` already fsynced (see the module docs, "Durability"); the lock also
    /// keeps two flushes from syncing the same files at once.
    synced_blobs: Arc<Mutex<HashSet<OsString>>>,
}

impl Store {
    /// Opens (creating if needed) the store in `path`. Blocking.
    ///
    /// A store closed a moment ago (in this process or another) may still hold its lock while
    /// sled's background threads finish, so a locked store is retried for up to
    /// [`OPEN_LOCK_WAIT`] before [`DeadLetterError::Locked`] is returned.
    pub fn open(path: &Path) -> Result<Store, DeadLetterError> {
        let deadline = std::time::Instant::now() + OPEN_LOCK_WAIT;
        loop {
            match Store::open_once(path) {
                Err(DeadLetterError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Store, DeadLetterError> {
        let db = sled::Config::new()
            .path(path)
            // Writes are made durable by `flush`, which the publisher calls before each
            // checkpoint; sled's own periodic flush would only add syncs.
            .flush_every_ms(None)
            .open()
            .map_err(|source| match &source {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    DeadLetterError::Locked {
                        path: path.to_path_buf(),
                    }
                }
                _ => DeadLetterError::Storage {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        let store = Store {
            db,
            path: path.to_path_buf(),
            bytes: Arc::new(AtomicI64::new(0)),
            categories: Arc::new(std::array::from_fn(|_| AtomicI64::new(0))),
            synced_blobs: Arc::new(Mutex::new(HashSet::new())),
        };
        store.sync_dir(path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            store.sync_dir(parent)?;
        }
        for value in store.db.iter().values() {
            let value = value.map_err(|source| DeadLetterError::Storage {
                path: path.to_path_buf(),
                source,
            })?;
            store.tally(&value, 1);
        }
        Ok(store)
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds (`sign` 1) or takes away (`sign` -1) a stored value from the running byte and
    /// category counts. A value that does not decode counts its bytes and no category.
    fn tally(&self, value: &[u8], sign: i64) {
        self.bytes
            .fetch_add(sign * value.len() as i64, Ordering::Relaxed);
        if let Ok(entry) = Entry::decode(value) {
            let index = FailureCategory::ALL
                .iter()
                .position(|c| *c == entry.category)
                .expect("every category is in ALL");
            self.categories[index].fetch_add(sign, Ordering::Relaxed);
        }
    }

    fn storage(&self, source: sled::Error) -> DeadLetterError {
        DeadLetterError::Storage {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes `entries` atomically (replacing any with the same id). Not durable until
    /// [`Store::flush`].
    pub fn put_all(&self, entries: &[Entry]) -> Result<(), DeadLetterError> {
        let encoded: Vec<([u8; KEY_LEN], Vec<u8>)> = entries
            .iter()
            .map(|e| (e.id.to_key(), e.encode()))
            .collect();
        // A transaction rather than a batch because it returns the values it replaces, which
        // the byte count needs; sled runs it exclusively of every other write, so the change
        // it reports is the change it made.
        let replaced = self
            .db
            .transaction(|tx| {
                let mut replaced = Vec::new();
                for (key, value) in &encoded {
                    replaced.extend(tx.insert(&key[..], value.as_slice())?);
                }
                Ok::<_, ConflictableTransactionError<std::convert::Infallible>>(replaced)
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => self.storage(e),
                TransactionError::Abort(never) => match never {},
            })?;
        for (_, value) in &encoded {
            self.tally(value, 1);
        }
        for old in &replaced {
            self.tally(old, -1);
        }
        Ok(())
    }

    /// Makes every write so far durable, across a power cut too: sled's flush, then the syncs
    /// sled leaves out (the module docs, "Durability").
    pub fn flush(&self) -> Result<(), DeadLetterError> {
        self.db.flush().map(drop).map_err(|e| self.storage(e))?;
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|e| e.into_inner());
        let blobs = self.path.join("blobs");
        let mut present = HashSet::new();
        let mut synced_new = false;
        match std::fs::read_dir(&blobs) {
            Ok(dir) => {
                for item in dir {
                    let item = item.map_err(|source| DeadLetterError::Sync {
                        path: blobs.clone(),
                        source,
                    })?;
                    let name = item.file_name();
                    if !synced.contains(&name) {
                        match std::fs::File::open(item.path()).and_then(|f| f.sync_all()) {
                            Ok(()) => synced_new = true,
                            // sled removed it meanwhile (its value was replaced or deleted).
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                            Err(source) => {
                                return Err(DeadLetterError::Sync {
                                    path: item.path(),
                                    source,
                                })
                            }
                        }
                    }
                    present.insert(name);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DeadLetterError::Sync {
                    path: blobs,
                    source,
                })
            }
        }
        if synced_new {
            self.sync_dir(&blobs)?;
        }
        *synced = present;
        let log = self.path.join("db");
        std::fs::File::open(&log)
            .and_then(|f| f.sync_all())
            .map_err(|source| DeadLetterError::Sync { path: log, source })
    }

    /// `fsync` on a directory: the names created, renamed or removed in it are durable.
    fn sync_dir(&self, dir: &Path) -> Result<(), DeadLetterError> {
        std::fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|source| DeadLetterError::Sync {
                path: dir.to_path_buf(),
                source,
            })
    }

    /// One entry.
    pub fn get(&self, id: EntryId) -> Result<Entry, DeadLetterError> {
        let bytes = self
            .db
            .get(id.to_key())
            .map_err(|e| self.storage(e))?
            .ok_or(DeadLetterError::NotFound(id))?;
        Entry::decode(&bytes).map_err(|reason| DeadLetterError::Decode {
            id: id.to_string(),
            reason,
        })
    }

    /// Every entry `filter` covers, in id (receive time) order.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Entry>, DeadLetterError> {
        let mut out = Vec::new();
        for item in self.db.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let entry = self.decode(&k, &v)?;
            if filter.matches(&entry) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// Up to `limit` entries `filter` covers whose id comes after `after` (from the start
    /// when `None`), in id order. The listing resumes by key, so entries written or removed
    /// between pages neither shift nor repeat the ones already seen.
    pub fn page(
        &self,
        filter: &Filter,
        after: Option<EntryId>,
        limit: usize,
    ) -> Result<Page, DeadLetterError> {
        use std::ops::Bound;
        let start = match after {
            Some(id) => Bound::Excluded(id.to_key().to_vec()),
            None => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        let mut more = false;
        for item in self.db.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let entry = self.decode(&k, &v)?;
            if !filter.matches(&entry) {
                continue;
            }
            if entries.len() == limit {
                more = true;
                break;
            }
            entries.push(entry);
        }
        let next_after = if more {
            entries.last().map(|e| e.id)
        } else {
            None
        };
        Ok(Page {
            entries,
            next_after,
        })
    }

    /// How many entries each failure category holds (categories without entries are absent).
    ///
    /// Kept as running counts like [`Store::stored_bytes`] (the admin status asks every few
    /// seconds; a scan would decode the whole store each time). Entries that do not decode
    /// belong to no category.
    pub fn counts(
        &self,
    ) -> Result<std::collections::BTreeMap<FailureCategory, u64>, DeadLetterError> {
        Ok(FailureCategory::ALL
            .iter()
            .zip(self.categories.iter())
            .map(|(c, n)| (*c, n.load(Ordering::Relaxed).max(0) as u64))
            .filter(|(_, n)| *n > 0)
            .collect())
    }

    fn decode(&self, k: &[u8], v: &[u8]) -> Result<Entry, DeadLetterError> {
        Entry::decode(v).map_err(|reason| DeadLetterError::Decode {
            id: EntryId::from_key(k).map_or_else(|| format!("{k:?}"), |i| i.to_string()),
            reason,
        })
    }

    /// Removes `ids` and flushes; returns how many existed.
    pub fn remove(&self, ids: &[EntryId]) -> Result<usize, DeadLetterError> {
        let mut removed = 0;
        for id in ids {
            if let Some(old) = self.db.remove(id.to_key()).map_err(|e| self.storage(e))? {
                self.tally(&old, -1);
                removed += 1;
            }
        }
        self.flush()?;
        Ok(removed)
    }

    /// The entries' size as `dead_letter.max_bytes` counts it: the sum of their encoded
    /// values' lengths ([`Entry::encode`]), keys and sled's own overhead not included.
    ///
    /// Kept as a running total rather than summed per question: it is computed once by
    /// [`Store::open`] (one pass over the stored values, so it always starts from what is
    /// durable) and then adjusted by every write and removal through this store, each by the
    /// exact size of the value it replaced or removed. sled's `size_on_disk` would not do: it
    /// counts its log and garbage not yet compacted, and does not shrink when entries go.
    pub fn stored_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed).max(0) as u64
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.db.len()
    }

    /// True when the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.db.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(time: u64, partition: u32, lsn: u64, index: u32) -> Entry {
        Entry {
            id: EntryId {
                received_at_ms: time,
                partition,
                lsn,
                index,
            },
            time_ms: 5,
            category: FailureCategory::SchemaViolation,
            messages: vec!["bad".into()],
            attempts: 1,
            event_payload: Some("{}".into()),
            envelope: vec![0, 1, 2],
        }
    }

    #[test]
    fn ids_round_trip_through_text_and_keys() {
        for id in [
            entry(1_718_000_000_000, 3, 42, 7).id,
            entry(0, 0, 1, WHOLE_REQUEST).id,
        ] {
            assert_eq!(id.to_string().parse::<EntryId>().unwrap(), id);
            assert_eq!(EntryId::from_key(&id.to_key()).unwrap(), id);
        }
        assert_eq!(entry(1, 2, 3, WHOLE_REQUEST).id.to_string(), "1-2-3-req");
        assert!("1-2-3".parse::<EntryId>().is_err());
        assert!("1-2-3-4294967295".parse::<EntryId>().is_err());
    }

    #[test]
    fn keys_sort_by_receive_time_first() {
        let a = entry(1, 9, 9, 9).id.to_key();
        let b = entry(2, 0, 0, 0).id.to_key();
        assert!(a < b);
    }

    #[test]
    fn entries_round_trip_and_reject_unknown_versions() {
        let e = entry(1, 2, 3, 4);
        let bytes = e.encode();
        assert_eq!(bytes[0], ENTRY_VERSION);
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(Entry::decode(&bad).unwrap_err().contains("version 9"));
        assert!(Entry::decode(&[]).is_err());
    }

    #[test]
    fn writing_the_same_failure_twice_keeps_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_all(&[entry(1, 0, 1, 0)]).unwrap();
        store
            .put_all(&[entry(1, 0, 1, 0), entry(1, 0, 1, 1)])
            .unwrap();
        store.flush().unwrap();
        assert_eq!(store.len(), 2);
    }

    /// What the store holds, summed from its values.
    fn counted(store: &Store) -> u64 {
        store
            .db
            .iter()
            .values()
            .map(|v| v.unwrap().len() as u64)
            .sum()
    }

    #[test]
    fn the_byte_count_follows_writes_replacements_and_removals_and_is_recounted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.stored_bytes(), 0);
        let (a, b) = (entry(1, 0, 1, 0), entry(2, 0, 2, 0));
        store.put_all(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(
            store.stored_bytes(),
            (a.encode().len() + b.encode().len()) as u64
        );
        let mut bigger = a.clone();
        bigger.envelope = vec![1; 1000];
        store.put_all(&[bigger.clone()]).unwrap();
        assert_eq!(
            store.stored_bytes(),
            (bigger.encode().len() + b.encode().len()) as u64
        );
        store.remove(&[b.id, b.id]).unwrap();
        assert_eq!(store.stored_bytes(), bigger.encode().len() as u64);
        assert_eq!(store.stored_bytes(), counted(&store));
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.stored_bytes(), bigger.encode().len() as u64);
    }

    #[test]
    fn the_byte_count_stays_exact_under_concurrent_writers_and_removers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let store = &store;
                s.spawn(move || {
                    for i in 0..200u64 {
                        // Every thread writes, rewrites and removes the same 10 keys.
                        let mut e = entry(i % 10, 0, 1, 0);
                        e.envelope = vec![0; (t as usize * 37 + i as usize * 13) % 300];
                        if i % 3 == 2 {
                            store.remove(&[e.id]).unwrap();
                        } else {
                            store.put_all(&[e]).unwrap();
                        }
                    }
                });
            }
        });
        assert_eq!(store.stored_bytes(), counted(&store));
    }

    #[test]
    fn filters_select_by_category_age_and_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut a = entry(1, 0, 1, 0);
        a.time_ms = 100;
        let mut b = entry(2, 0, 2, WHOLE_REQUEST);
        b.category = FailureCategory::AdapterFailure;
        b.time_ms = 200;
        store.put_all(&[a.clone(), b.clone()]).unwrap();
        let all = store.list(&Filter::default()).unwrap();
        assert_eq!(all, vec![a.clone(), b.clone()]);
        let f = Filter {
            category: Some(FailureCategory::AdapterFailure),
            ..Filter::default()
        };
        assert_eq!(store.list(&f).unwrap(), vec![b.clone()]);
        let f = Filter {
            written_before_ms: Some(150),
            ..Filter::default()
        };
        assert_eq!(store.list(&f).unwrap(), vec![a.clone()]);
        assert_eq!(store.remove(&[a.id, a.id]).unwrap(), 1);
        assert_eq!(store.list(&Filter::default()).unwrap(), vec![b]);
    }

    #[test]
    fn filters_select_by_partition_and_receive_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b, c) = (entry(10, 0, 1, 0), entry(20, 1, 1, 0), entry(30, 1, 2, 0));
        store.put_all(&[a.clone(), b.clone(), c.clone()]).unwrap();
        let f = Filter {
            partition: Some(1),
            ..Filter::default()
        };
        assert_eq!(store.list(&f).unwrap(), vec![b.clone(), c.clone()]);
        let f = Filter {
            received_from_ms: Some(20),
            received_before_ms: Some(30),
            ..Filter::default()
        };
        assert_eq!(store.list(&f).unwrap(), vec![b]);
    }

    #[test]
    fn pages_resume_after_the_last_id_and_say_when_they_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entries: Vec<Entry> = (1..=5).map(|t| entry(t, 0, t, 0)).collect();
        store.put_all(&entries).unwrap();
        let first = store.page(&Filter::default(), None, 2).unwrap();
        assert_eq!(first.entries, entries[..2].to_vec());
        assert_eq!(first.next_after, Some(entries[1].id));
        // An entry removed between pages does not shift the next one.
        store.remove(&[entries[2].id]).unwrap();
        let second = store.page(&Filter::default(), first.next_after, 2).unwrap();
        assert_eq!(second.entries, entries[3..].to_vec());
        assert_eq!(second.next_after, None);
        let none = store
            .page(&Filter::default(), Some(entries[4].id), 2)
            .unwrap();
        assert!(none.entries.is_empty() && none.next_after.is_none());
    }

    #[test]
    fn counts_follow_replacements_and_removals_and_are_recounted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, mut b) = (entry(1, 0, 1, 0), entry(2, 0, 2, 0));
        store.put_all(&[a.clone(), b.clone()]).unwrap();
        // The same id again, now of another category: moved, not added.
        b.category = FailureCategory::LoaderRejection;
        store.put_all(&[b.clone()]).unwrap();
        let counts = store.counts().unwrap();
        assert_eq!(counts[&FailureCategory::SchemaViolation], 1);
        assert_eq!(counts[&FailureCategory::LoaderRejection], 1);
        store.remove(&[a.id]).unwrap();
        store.flush().unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let counts = store.counts().unwrap();
        assert_eq!(counts.len(), 1, "{counts:?}");
        assert_eq!(counts[&FailureCategory::LoaderRejection], 1);
    }

    #[test]
    fn counts_are_by_category() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = entry(2, 0, 2, 0);
        b.category = FailureCategory::AdapterFailure;
        store
            .put_all(&[entry(1, 0, 1, 0), b, entry(3, 0, 3, 0)])
            .unwrap();
        let counts = store.counts().unwrap();
        assert_eq!(counts[&FailureCategory::SchemaViolation], 2);
        assert_eq!(counts[&FailureCategory::AdapterFailure], 1);
        assert_eq!(counts.len(), 2);
    }
}
