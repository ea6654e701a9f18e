//! The filesystem seam. The log touches the disk only through [`FileSystem`] and [`File`], so
//! tests can inject write, sync, create and no-space failures ([`FaultyFs`]) while running
//! against a real directory, and cut the power at any point of a history ([`PowerLossFs`], an
//! in-memory filesystem that forgets what was never synced).

use std::fmt::Debug;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

mod power_loss;
pub use power_loss::{PowerLossFs, POWER_LOSS_PAGE, POWER_LOSS_SECTOR};

/// An open file as the log uses it: positional reads and writes, data syncs, preallocation.
pub trait File: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`: the data written so far (and the metadata needed to read it) is durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Reserves `len` bytes of disk for the file (`fallocate`), growing it to `len`.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// The file's length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }
}

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, read only.
    Read,
    /// Existing file, read and write.
    ReadWrite,
    /// A new file (fails if it exists), read and write.
    CreateNew,
    /// Create or truncate, write only.
    CreateTruncate,
}

/// Directory-level operations the log needs.
pub trait FileSystem: Send + Sync + Debug {
    /// Opens `path` in `mode`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Whether `path` is an existing directory.
    fn is_dir(&self, path: &Path) -> bool;
    /// The paths of the entries of a directory.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Atomically renames `from` to `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// `fsync` on a directory, making created, renamed and removed entries durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes an exclusive advisory lock on `path` (created if missing) for as long as the
    /// returned guard lives. Fails with `WouldBlock` when another process holds it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Debug + Send + Sync>>;
}

/// Creates `dir` and every missing ancestor through `fs`, and fsyncs the parent of each
/// directory it created, so that none of them can vanish at a power cut with what is later
/// made durable inside it. A failed sync names the directory it was syncing.
pub fn create_dir_all_durable(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    let created: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !fs.is_dir(a))
        .collect();
    fs.create_dir_all(dir)?;
    for new_dir in created.iter().rev() {
        if let Some(parent) = new_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("sync directory {}: {e}", parent.display()),
                )
            })?;
        }
    }
    Ok(())
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(std::fs::File);

impl File for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        match rustix::fs::fallocate(&self.0, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            // Filesystems without fallocate: fall back to a plain (possibly sparse) extension.
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
                self.0.set_len(len)
            }
            Err(e) => Err(e.into()),
        }
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

#[derive(Debug)]
struct LockGuard(#[allow(dead_code)] std::fs::File);

impl FileSystem for StdFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>> {
        let mut o = OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true),
            OpenMode::CreateTruncate => o.write(true).create(true).truncate(true),
        };
        Ok(Arc::new(StdFile(o.open(path)?)))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Debug + Send + Sync>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                if e == rustix::io::Errno::WOULDBLOCK {
                    io::Error::from(io::ErrorKind::WouldBlock)
                } else {
                    e.into()
                }
            },
        )?;
        Ok(Box::new(LockGuard(f)))
    }
}

/// Which operation a [`FaultyFs`] fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `write_all_at` fails with EIO.
    Write,
    /// `write_all_at` fails with ENOSPC.
    NoSpace,
    /// `sync_data` and `sync_dir` fail with EIO.
    Sync,
    /// Creating a file (`CreateNew`, `CreateTruncate`) or allocating one fails with EIO.
    Create,
}

/// A [`FileSystem`] over the real one that fails chosen operations on demand.
///
/// Arm a fault with [`FaultyFs::fail_after`]: the operation succeeds `after` more times, then
/// fails once; later calls succeed again (the log must not rely on that).
#[derive(Debug, Clone, Default)]
pub struct FaultyFs {
    faults: Arc<[AtomicU32; 4]>,
}

const DISARMED: u32 = u32::MAX;

impl FaultyFs {
    /// A filesystem with no faults armed.
    pub fn new() -> Self {
        FaultyFs {
            faults: Arc::new([
                AtomicU32::new(DISARMED),
                AtomicU32::new(DISARMED),
                AtomicU32::new(DISARMED),
                AtomicU32::new(DISARMED),
            ]),
        }
    }

    /// Lets `after` operations of `kind` succeed, then fails the next one.
    pub fn fail_after(&self, kind: FaultKind, after: u32) {
        self.faults[kind as usize].store(after, Ordering::SeqCst);
    }

    fn check(&self, kind: FaultKind) -> io::Result<()> {
        let slot = &self.faults[kind as usize];
        let fire = slot
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                DISARMED => None,
                0 => Some(DISARMED),
                n => Some(n - 1),
            })
            .map(|prev| prev == 0)
            .unwrap_or(false);
        if !fire {
            return Ok(());
        }
        Err(match kind {
            FaultKind::NoSpace => io::Error::from_raw_os_error(28), // ENOSPC
            _ => io::Error::from_raw_os_error(5),                   // EIO
        })
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn File>,
    fs: FaultyFs,
}

impl File for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.fs.check(FaultKind::Write)?;
        self.fs.check(FaultKind::NoSpace)?;
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.fs.check(FaultKind::Sync)?;
        self.inner.sync_data()
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.fs.check(FaultKind::Create)?;
        self.inner.allocate(len)
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

impl FileSystem for FaultyFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>> {
        if matches!(mode, OpenMode::CreateNew | OpenMode::CreateTruncate) {
            self.check(FaultKind::Create)?;
        }
        Ok(Arc::new(FaultyFile {
            inner: StdFs.open(path, mode)?,
            fs: self.clone(),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.create_dir_all(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        StdFs.is_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        StdFs.read_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.check(FaultKind::Sync)?;
        StdFs.sync_dir(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Debug + Send + Sync>> {
        StdFs.lock(path)
    }
}
