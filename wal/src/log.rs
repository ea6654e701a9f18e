//! The open log: the writer thread (group commit, roll-over, recycling), appenders, the
//! checkpoint, and the state they share with readers.
//!
//! # Invariants
//!
//! - `State::durable_lsn` only grows, and only after the bytes up to it were synced.
//! - A segment in `State::segments` is never reinitialised while it holds a record above the
//!   durable checkpoint (`State::checkpoint`), except by the drop-oldest policy, which first makes
//!   a checkpoint past it durable.
//! - Only the writer thread writes segment files; checkpoint writes are serialised by
//!   `Shared::checkpoint_lock`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use crate::format::{self, CheckpointData, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::fs::{File, FileSystem, OpenMode, StdFs};
use crate::reader::Reader;
use crate::recovery::{self, Recovered};
use crate::{
    segment_file_name, Error, FullPolicy, Lsn, Result, SegmentId, WalConfig, CHECKPOINT_FILE,
    CHECKPOINT_TMP_FILE, LOCK_FILE,
};

/// What one group commit did, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct CommitStats {
    /// Records made durable by this commit.
    pub records: usize,
    /// Bytes written (frames included).
    pub bytes: u64,
    /// Time spent in `write` calls.
    pub write_time: Duration,
    /// Time spent in `fdatasync` calls.
    pub sync_time: Duration,
    /// How long the oldest record of the batch waited in the queue before the writer took it.
    pub queue_wait: Duration,
}

/// Callbacks from the writer, so the embedding program can keep metrics without this crate
/// knowing about any metrics library. Called on the writer thread: keep them cheap.
pub trait Observer: Send + Sync + Debug {
    /// A group commit finished successfully.
    fn committed(&self, _stats: &CommitStats) {}
    /// The drop-oldest policy discarded `records` unconfirmed records.
    fn dropped(&self, _records: u64) {}
    /// A write or sync failed and the log is now poisoned.
    fn poisoned(&self, _cause: &str) {}
}

/// An [`Observer`] that ignores everything.
#[derive(Debug, Default)]
pub struct NoopObserver;
impl Observer for NoopObserver {}

/// A point-in-time summary of the log, from its in-memory state (which mirrors durable state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The oldest record still held on disk (confirmed or not); `last_lsn + 1` when none is.
    pub first_lsn: Lsn,
    /// The last durable record. Equals the number of records ever appended.
    pub last_lsn: Lsn,
    /// The durable checkpoint: every record at or below it is confirmed.
    pub checkpoint: Lsn,
    /// Records appended but not confirmed.
    pub unconfirmed: u64,
    /// Bytes of segments that cannot be recycled yet (they hold unconfirmed records, or are
    /// being written).
    pub used_bytes: u64,
    /// The configured byte budget.
    pub capacity_bytes: u64,
    /// Segments on disk holding records (confirmed or not).
    pub segments: usize,
    /// Records dropped by the drop-oldest policy, ever.
    pub dropped_total: u64,
    /// The last append found every segment holding unconfirmed records.
    pub full: bool,
    /// Why the log is poisoned, if it is.
    pub poisoned: Option<String>,
}

/// One segment that holds (or is about to hold) records.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    pub slot: u32,
    pub header: SegmentHeader,
    pub file: Arc<dyn File>,
    /// Offset just past the last durable record.
    pub durable_end: u64,
    /// LSN of the last durable record in it; `first_lsn - 1` when it has none.
    pub last_lsn: Lsn,
}

/// Mutable state shared by the writer, appenders, readers and checkpointers.
#[derive(Debug)]
pub(crate) struct State {
    /// Segments holding records, by age. The last one is the one being written.
    pub segments: BTreeMap<SegmentId, SegmentInfo>,
    /// Slots whose files exist but hold no segment.
    pub free_slots: Vec<u32>,
    /// Number of the next slot file to create.
    pub next_slot: u32,
    /// The last durable LSN.
    pub durable_lsn: Lsn,
    /// The durable checkpoint.
    pub checkpoint: CheckpointData,
}

impl State {
    fn oldest_recyclable(&self) -> Option<SegmentId> {
        let (&oldest, info) = self.segments.iter().next()?;
        let is_active = self.segments.len() == 1;
        (!is_active && info.last_lsn <= self.checkpoint.confirmed).then_some(oldest)
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub fs: Arc<dyn FileSystem>,
    pub config: WalConfig,
    pub state: Mutex<State>,
    /// Signalled whenever `durable_lsn` grows or segments are recycled.
    pub changed: Condvar,
    poison: Mutex<Option<String>>,
    poisoned: AtomicBool,
    full: AtomicBool,
    closed: AtomicBool,
    /// Held while a checkpoint file is being written; guards the durable checkpoint value.
    checkpoint_lock: Mutex<()>,
    observer: Arc<dyn Observer>,
}

impl Shared {
    pub(crate) fn new(
        dir: PathBuf,
        fs: Arc<dyn FileSystem>,
        config: WalConfig,
        state: State,
        observer: Arc<dyn Observer>,
    ) -> Shared {
        Shared {
            dir,
            fs,
            config,
            state: Mutex::new(state),
            changed: Condvar::new(),
            poison: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            full: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            checkpoint_lock: Mutex::new(()),
            observer,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state as consistent as it was before the
        // panicking statement; the writer never panics mid-update by design.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn poison_error(&self) -> Option<Error> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        let cause = self
            .poison
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Some(Error::Poisoned {
            cause: cause.unwrap_or_default(),
        })
    }

    fn poison(&self, err: &Error) {
        let mut p = self.poison.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none() {
            let cause = err.to_string();
            tracing::error!(dir = %self.dir.display(), %cause, "write-ahead log poisoned; no further appends will be accepted");
            self.observer.poisoned(&cause);
            *p = Some(cause);
        }
        self.poisoned.store(true, Ordering::Release);
    }

    pub(crate) fn status(&self) -> Status {
        let st = self.lock();
        let confirmed = st.checkpoint.confirmed;
        let last = st.segments.len().saturating_sub(1);
        let used_bytes = st
            .segments
            .values()
            .enumerate()
            .filter(|(i, s)| *i == last || s.last_lsn > confirmed)
            .map(|(_, s)| s.durable_end)
            .sum();
        let first_lsn = st
            .segments
            .values()
            .find(|s| s.last_lsn >= s.header.first_lsn)
            .map(|s| s.header.first_lsn)
            .unwrap_or(st.durable_lsn.next());
        Status {
            first_lsn,
            last_lsn: st.durable_lsn,
            checkpoint: confirmed,
            unconfirmed: st.durable_lsn.0.saturating_sub(confirmed.0),
            used_bytes,
            capacity_bytes: self.config.capacity_bytes,
            segments: st
                .segments
                .values()
                .filter(|s| s.last_lsn >= s.header.first_lsn)
                .count(),
            dropped_total: st.checkpoint.dropped_total,
            full: self.full.load(Ordering::Relaxed),
            poisoned: self
                .poison
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Makes `new` the durable checkpoint (temp file, sync, rename, sync directory), then
    /// publishes it. Caller holds `checkpoint_lock`.
    fn write_checkpoint(&self, new: CheckpointData) -> Result<()> {
        let tmp = self.dir.join(CHECKPOINT_TMP_FILE);
        let dst = self.dir.join(CHECKPOINT_FILE);
        let f = self
            .fs
            .open(&tmp, OpenMode::CreateTruncate)
            .map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all_at(&new.encode(), 0)
            .map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_data().map_err(|e| Error::io("sync", &tmp, e))?;
        drop(f);
        self.fs
            .rename(&tmp, &dst)
            .map_err(|e| Error::io("rename", &tmp, e))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| Error::io("sync directory", &self.dir, e))?;
        self.lock().checkpoint = new;
        Ok(())
    }
}

/// An append waiting for the writer.
struct Pending {
    payload: Vec<u8>,
    done: oneshot::Sender<Result<Lsn>>,
    enqueued: Instant,
}

enum Request {
    Append(Pending),
    Close,
}

/// A cheap, cloneable handle that submits records to the log's writer.
#[derive(Clone, Debug)]
pub struct Appender {
    tx: Sender<Request>,
    shared: Arc<Shared>,
}

impl Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Append(p) => write!(f, "Append({} bytes)", p.payload.len()),
            Request::Close => f.write_str("Close"),
        }
    }
}

impl Appender {
    fn submit(&self, payload: Vec<u8>) -> Result<oneshot::Receiver<Result<Lsn>>> {
        if let Some(e) = self.shared.poison_error() {
            return Err(e);
        }
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let max = self.shared.config.max_record_bytes;
        if payload.len() as u64 > max {
            return Err(Error::RecordTooLarge {
                size: payload.len() as u64,
                max,
            });
        }
        let (done, rx) = oneshot::channel();
        let req = Request::Append(Pending {
            payload,
            done,
            enqueued: Instant::now(),
        });
        match self.tx.try_send(req) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(Error::Busy {
                capacity: self.shared.config.queue_capacity,
            }),
            Err(TrySendError::Disconnected(_)) => Err(Error::Closed),
        }
    }

    /// Appends one record and blocks until it is durable. Must not be called from inside an
    /// async runtime's worker thread; use [`Appender::append_async`] there.
    pub fn append(&self, payload: Vec<u8>) -> Result<Lsn> {
        let rx = self.submit(payload)?;
        rx.blocking_recv().unwrap_or(Err(Error::Closed))
    }

    /// Appends one record; the future resolves once it is durable. The record is submitted
    /// before this returns, so dropping the future does not withdraw it.
    pub fn append_async(
        &self,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<Lsn>> + Send + 'static {
        let submitted = self.submit(payload);
        async move {
            match submitted {
                Ok(rx) => rx.await.unwrap_or(Err(Error::Closed)),
                Err(e) => Err(e),
            }
        }
    }

    /// True while appends would be refused for lack of space or a poisoned log.
    pub fn is_unavailable(&self) -> bool {
        self.shared.poisoned.load(Ordering::Relaxed) || self.shared.full.load(Ordering::Relaxed)
    }
}

/// An open, writable log. See the crate docs for the format and its guarantees.
#[derive(Debug)]
pub struct Wal {
    appender: Appender,
    writer: Option<JoinHandle<()>>,
    _lock: Box<dyn Debug + Send + Sync>,
}

impl Wal {
    /// Opens (creating if needed) the log in `dir` on the real filesystem, recovering it.
    pub fn open(dir: impl AsRef<Path>, config: WalConfig) -> Result<Wal> {
        Wal::open_with(dir, config, Arc::new(StdFs), Arc::new(NoopObserver))
    }

    /// Opens the log through a chosen filesystem and with an observer for metrics.
    pub fn open_with(
        dir: impl AsRef<Path>,
        config: WalConfig,
        fs: Arc<dyn FileSystem>,
        observer: Arc<dyn Observer>,
    ) -> Result<Wal> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        // A log whose directory could vanish at a power cut would lose everything in it.
        crate::fs::create_dir_all_durable(&*fs, &dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = fs.lock(&lock_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::Locked {
                    path: lock_path.clone(),
                }
            } else {
                Error::io("lock", &lock_path, e)
            }
        })?;
        let Recovered { state, torn } = recovery::recover(&*fs, &dir, true)?;
        if let Some(t) = torn {
            tracing::warn!(dir = %dir.display(), segment = %t.segment, offset = t.offset, reason = %t.reason,
                "truncated the unacknowledged torn tail of the newest segment");
        }
        let shared = Arc::new(Shared::new(dir, fs, config, state, observer));
        let (tx, rx) = crossbeam_channel::bounded(shared.config.queue_capacity);
        let mut writer = Writer::new(shared.clone(), rx);
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::io("spawn writer thread", &shared.dir, e))?;
        Ok(Wal {
            appender: Appender { tx, shared },
            writer: Some(handle),
            _lock: lock,
        })
    }

    /// A handle for submitting records from other threads or tasks.
    pub fn appender(&self) -> Appender {
        self.appender.clone()
    }

    /// Appends one record and blocks until it is durable. See [`Appender::append`].
    pub fn append(&self, payload: Vec<u8>) -> Result<Lsn> {
        self.appender.append(payload)
    }

    /// A reader positioned at `from` (or at the oldest record held, if `from` is older).
    pub fn reader(&self, from: Lsn) -> Reader {
        Reader::new(self.appender.shared.clone(), from)
    }

    /// Records that every record at or below `confirmed` has been consumed. Returns once the
    /// checkpoint is durable; segments wholly at or below it become reusable only then.
    pub fn checkpoint(&self, confirmed: Lsn) -> Result<()> {
        let shared = &self.appender.shared;
        let durable = shared.lock().durable_lsn;
        if confirmed > durable {
            return Err(Error::CheckpointAhead {
                requested: confirmed,
                durable,
            });
        }
        let _guard = shared
            .checkpoint_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let current = shared.lock().checkpoint;
        if confirmed <= current.confirmed {
            return Ok(());
        }
        shared.write_checkpoint(CheckpointData {
            confirmed,
            ..current
        })?;
        if shared.lock().oldest_recyclable().is_some() {
            shared.full.store(false, Ordering::Relaxed);
        }
        shared.changed.notify_all();
        Ok(())
    }

    /// The log's current state.
    pub fn status(&self) -> Status {
        self.appender.shared.status()
    }

    /// The directory holding the log.
    pub fn dir(&self) -> &Path {
        &self.appender.shared.dir
    }

    /// Stops accepting appends, lets the writer finish everything already queued, and waits
    /// for it to exit.
    pub fn close(mut self) -> Result<()> {
        self.shutdown();
        match self.appender.shared.poison_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) {
        let Some(handle) = self.writer.take() else {
            return;
        };
        // Queued behind every pending append, so those are written first. A full queue still
        // drains: this blocks until there is room.
        let _ = self.appender.tx.send(Request::Close);
        self.appender.shared.closed.store(true, Ordering::Release);
        self.appender.shared.changed.notify_all();
        let _ = handle.join();
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The writer thread's state: the segment being written and where.
struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Request>,
    /// The segment being written, if any (none before the first record of a new log).
    active: Option<Active>,
    next_lsn: Lsn,
    buf: Vec<u8>,
}

struct Active {
    id: SegmentId,
    salt: u64,
    size: u64,
    file: Arc<dyn File>,
    /// Where the next frame goes.
    offset: u64,
    /// Offset of the first byte not yet handed to `write`.
    flushed: u64,
    /// Offset up to which bytes are durable.
    synced: u64,
}

/// Records of the batch that have been encoded but not yet acknowledged.
struct Waiting {
    done: oneshot::Sender<Result<Lsn>>,
    lsn: Lsn,
}

impl Writer {
    fn new(shared: Arc<Shared>, rx: Receiver<Request>) -> Writer {
        let st = shared.lock();
        let next_lsn = st.durable_lsn.next();
        let active = st.segments.values().next_back().map(|s| Active {
            id: s.header.id,
            salt: s.header.salt,
            size: s.header.size,
            file: s.file.clone(),
            offset: s.durable_end,
            flushed: s.durable_end,
            synced: s.durable_end,
        });
        drop(st);
        Writer {
            shared,
            rx,
            active,
            next_lsn,
            buf: Vec::with_capacity(1 << 20),
        }
    }

    fn run(&mut self) {
        let max_batch = self.shared.config.max_batch_bytes;
        let mut batch: Vec<Pending> = Vec::new();
        loop {
            let first = match self.rx.recv() {
                Ok(Request::Append(p)) => p,
                Ok(Request::Close) => {
                    self.mark_clean_end();
                    return;
                }
                Err(_) => {
                    self.mark_clean_end();
                    return;
                }
            };
            let mut bytes = first.payload.len() as u64;
            batch.push(first);
            let mut close = false;
            while bytes < max_batch {
                match self.rx.try_recv() {
                    Ok(Request::Append(p)) => {
                        bytes += p.payload.len() as u64;
                        batch.push(p);
                    }
                    Ok(Request::Close) => {
                        close = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
            if close {
                self.mark_clean_end();
                return;
            }
        }
    }

    /// Writes and syncs a batch, then answers every waiter.
    fn commit(&mut self, batch: &mut Vec<Pending>) {
        if let Some(e) = self.shared.poison_error() {
            for p in batch.drain(..) {
                let _ = p.done.send(Err(clone_poison(&e)));
            }
            return;
        }
        // The first request queued is the oldest.
        let queue_wait = batch
            .first()
            .map(|p| p.enqueued.elapsed())
            .unwrap_or_default();
        let mut waiting: Vec<Waiting> = Vec::with_capacity(batch.len());
        let mut timing = (Duration::ZERO, Duration::ZERO, 0u64);
        let mut drained = batch.drain(..);
        // On failure: the error, and the request that was being handled when it happened.
        let mut failure: Option<(Error, Option<Pending>)> = None;
        for p in drained.by_ref() {
            let framed = format::framed_len(p.payload.len() as u64);
            let fits = self
                .active
                .as_ref()
                .is_some_and(|a| a.offset + framed <= a.size);
            if !fits {
                // Seal what we have: everything before the new segment is durable first.
                if let Err(e) = self.flush_and_sync(&mut timing) {
                    failure = Some((e, Some(p)));
                    break;
                }
                self.acknowledge(&mut waiting);
                match self.roll_over() {
                    Ok(()) => {}
                    Err(e) if e.is_transient() => {
                        let _ = p.done.send(Err(e));
                        continue;
                    }
                    Err(e) => {
                        failure = Some((e, Some(p)));
                        break;
                    }
                }
            }
            let a = self.active.as_mut().expect("rolled over");
            // An empty buffer means everything before this record is synced.
            let opens_group = self.buf.is_empty();
            if opens_group {
                a.flushed = a.offset;
            }
            format::encode_record(
                &mut self.buf,
                a.salt,
                self.next_lsn,
                &p.payload,
                opens_group,
            );
            a.offset += framed;
            waiting.push(Waiting {
                done: p.done,
                lsn: self.next_lsn,
            });
            self.next_lsn = self.next_lsn.next();
        }
        if failure.is_none() {
            if let Err(e) = self.flush_and_sync(&mut timing) {
                failure = Some((e, None));
            }
        }
        if let Some((e, current)) = failure {
            self.shared.poison(&e);
            let poisoned = self.shared.poison_error().expect("just poisoned");
            let rest = current.into_iter().chain(drained);
            for done in waiting
                .into_iter()
                .map(|w| w.done)
                .chain(rest.map(|p| p.done))
            {
                let _ = done.send(Err(clone_poison(&poisoned)));
            }
            return;
        }
        let records = waiting.len();
        self.acknowledge(&mut waiting);
        if records > 0 {
            self.shared.observer.committed(&CommitStats {
                records,
                bytes: timing.2,
                write_time: timing.0,
                sync_time: timing.1,
                queue_wait,
            });
        }
    }

    /// On a clean shutdown, writes an all-zero frame header after the last record, so the next
    /// open sees a clean end rather than stale bytes it must treat as a torn tail and zero.
    fn mark_clean_end(&mut self) {
        if self.shared.poison_error().is_some() {
            return;
        }
        let Some(a) = self.active.as_ref() else {
            return;
        };
        let end = a.offset;
        if end + format::FRAME_HEADER_LEN > a.size {
            return;
        }
        let zero = [0u8; format::FRAME_HEADER_LEN as usize];
        let written = a
            .file
            .write_all_at(&zero, end)
            .and_then(|()| a.file.sync_data());
        if let Err(e) = written {
            // Harmless for the records (they are durable); the next open zeroes the tail.
            tracing::warn!(dir = %self.shared.dir.display(), error = %e, "could not mark the log's clean end");
        }
    }

    /// Writes the buffered frames to the active segment and syncs it.
    fn flush_and_sync(&mut self, timing: &mut (Duration, Duration, u64)) -> Result<()> {
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        if !self.buf.is_empty() {
            let t = Instant::now();
            a.file
                .write_all_at(&self.buf, a.flushed)
                .map_err(|e| Writer::shared_io(&self.shared, "write", a.id, e))?;
            timing.0 += t.elapsed();
            timing.2 += self.buf.len() as u64;
            a.flushed += self.buf.len() as u64;
            self.buf.clear();
        }
        if a.synced < a.flushed {
            let t = Instant::now();
            a.file
                .sync_data()
                .map_err(|e| Writer::shared_io(&self.shared, "sync", a.id, e))?;
            timing.1 += t.elapsed();
            a.synced = a.flushed;
        }
        Ok(())
    }

    fn shared_io(
        shared: &Shared,
        op: &'static str,
        segment: SegmentId,
        e: std::io::Error,
    ) -> Error {
        let path = shared
            .lock()
            .segments
            .get(&segment)
            .map(|s| shared.dir.join(segment_file_name(s.slot)))
            .unwrap_or_else(|| shared.dir.clone());
        Error::io(op, path, e)
    }

    /// Publishes the durable position and answers the waiters whose records it covers.
    fn acknowledge(&mut self, waiting: &mut Vec<Waiting>) {
        let Some(a) = self.active.as_ref() else {
            return;
        };
        let Some(last) = waiting.last().map(|w| w.lsn) else {
            return;
        };
        {
            let mut st = self.shared.lock();
            if let Some(seg) = st.segments.get_mut(&a.id) {
                seg.durable_end = a.synced;
                seg.last_lsn = last;
            }
            st.durable_lsn = last;
        }
        self.shared.changed.notify_all();
        for w in waiting.drain(..) {
            let _ = w.done.send(Ok(w.lsn));
        }
    }

    /// Starts a new segment in a free, recyclable or new slot.
    fn roll_over(&mut self) -> Result<()> {
        let shared = self.shared.clone();
        let (slot, file, created) = self.take_slot()?;
        let id = SegmentId(self.active.as_ref().map_or_else(
            || {
                shared
                    .lock()
                    .segments
                    .keys()
                    .next_back()
                    .map_or(1, |s| s.0 + 1)
            },
            |a| a.id.0 + 1,
        ));
        let path = shared.dir.join(segment_file_name(slot));
        let size = shared
            .config
            .segment_bytes
            .max(file.size().map_err(|e| Error::io("stat", &path, e))?);
        if file.size().map_err(|e| Error::io("stat", &path, e))? < size || created {
            file.allocate(size)
                .map_err(|e| Error::io("allocate", &path, e))?;
        }
        let header = SegmentHeader {
            id,
            first_lsn: self.next_lsn,
            salt: fastrand::u64(..),
            size,
            version: format::SEGMENT_VERSION,
        };
        file.write_all_at(&header.encode(), 0)
            .map_err(|e| Error::io("write header", &path, e))?;
        file.sync_data()
            .map_err(|e| Error::io("sync header", &path, e))?;
        if created {
            shared
                .fs
                .sync_dir(&shared.dir)
                .map_err(|e| Error::io("sync directory", &shared.dir, e))?;
        }
        shared.lock().segments.insert(
            id,
            SegmentInfo {
                slot,
                header,
                file: file.clone(),
                durable_end: SEGMENT_HEADER_LEN,
                last_lsn: Lsn(self.next_lsn.0 - 1),
            },
        );
        shared.full.store(false, Ordering::Relaxed);
        self.active = Some(Active {
            id,
            salt: header.salt,
            size,
            file,
            offset: SEGMENT_HEADER_LEN,
            flushed: SEGMENT_HEADER_LEN,
            synced: SEGMENT_HEADER_LEN,
        });
        Ok(())
    }

    /// Finds a slot for a new segment: a free one, else the oldest confirmed segment's, else a
    /// new file, else (drop-oldest policy) the oldest segment's after checkpointing past it.
    fn take_slot(&mut self) -> Result<(u32, Arc<dyn File>, bool)> {
        let shared = self.shared.clone();
        let max_slots = shared.config.slots() as u32;
        let mut st = shared.lock();
        if let Some(slot) = st.free_slots.pop() {
            drop(st);
            return self.open_slot(slot).map(|f| (slot, f, false));
        }
        if let Some(id) = st.oldest_recyclable() {
            let seg = st.segments.remove(&id).expect("present");
            return Ok((seg.slot, seg.file, false));
        }
        if st.next_slot < max_slots {
            let slot = st.next_slot;
            st.next_slot += 1;
            drop(st);
            let path = shared.dir.join(segment_file_name(slot));
            let file = shared
                .fs
                .open(&path, OpenMode::CreateNew)
                .map_err(|e| Error::io("create", &path, e))?;
            return Ok((slot, file, true));
        }
        if shared.config.full_policy == FullPolicy::DropOldest && st.segments.len() > 1 {
            let (&oldest, info) = st.segments.iter().next().expect("two segments");
            let through = info.last_lsn;
            let current = st.checkpoint;
            drop(st);
            let dropped = through.0.saturating_sub(current.confirmed.0);
            {
                let _guard = shared
                    .checkpoint_lock
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let current = shared.lock().checkpoint;
                if through > current.confirmed {
                    shared.write_checkpoint(CheckpointData {
                        confirmed: through,
                        dropped_total: current.dropped_total + dropped,
                    })?;
                }
            }
            tracing::warn!(dir = %shared.dir.display(), records = dropped, through = %through,
                "log full: dropped the oldest unconfirmed records (drop_oldest policy)");
            shared.observer.dropped(dropped);
            let seg = shared.lock().segments.remove(&oldest).expect("present");
            shared.changed.notify_all();
            return Ok((seg.slot, seg.file, false));
        }
        drop(st);
        shared.full.store(true, Ordering::Relaxed);
        Err(Error::Full {
            capacity_bytes: shared.config.capacity_bytes,
        })
    }

    fn open_slot(&self, slot: u32) -> Result<Arc<dyn File>> {
        let path = self.shared.dir.join(segment_file_name(slot));
        self.shared
            .fs
            .open(&path, OpenMode::ReadWrite)
            .map_err(|e| Error::io("open", &path, e))
    }
}

/// Errors are not `Clone` (they carry `io::Error`); every waiter of a failed batch gets the
/// poisoned state instead, which is what they need to act on.
fn clone_poison(e: &Error) -> Error {
    match e {
        Error::Poisoned { cause } => Error::Poisoned {
            cause: cause.clone(),
        },
        other => Error::Poisoned {
            cause: other.to_string(),
        },
    }
}
