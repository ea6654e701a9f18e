//! [`PowerLossFs`]: an in-memory filesystem that models a power cut.
//!
//! The model assumes of a disk what the log's durability order assumes, and nothing more:
//!
//! - A file's content and length are durable as of its last completed [`File::sync_data`].
//!   Everything written since is *dirty*, in pages of [`POWER_LOSS_PAGE`] bytes.
//! - A directory's entries (files created, renamed over, removed; subdirectories created) are
//!   durable as of its last [`FileSystem::sync_dir`]. A file whose entry was never made durable
//!   may vanish at a cut, however often its data was synced; so may a directory, and everything
//!   under it.
//! - At the cut each dirty page independently survives whole, survives in part (each
//!   [`POWER_LOSS_SECTOR`]-byte sector old or new: a disk reorders writes), or is lost. A file
//!   that grew keeps its durable length unless a surviving page reaches past it; one that shrank
//!   may keep the shrink or not; each pending directory change independently survives or not.
//!   One cut in four keeps nothing unsynced at all and one in eight keeps everything (what a
//!   `kill -9` leaves), so both extremes are always exercised. The choices are drawn from the
//!   cut's seed: the same history and seed give the same surviving state.
//! - The process dies with the power: every handle opened before the cut fails with EIO, the
//!   locks it held are released, and every call fails until [`PowerLossFs::power_on`]. The
//!   write the cut interrupts may be partly on disk; any other interrupted call did nothing.
//!
//! The root directory `/` (and the empty path) always exists.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{File, FileSystem, OpenMode};

/// The unit in which unsynced data survives or is lost at a cut.
pub const POWER_LOSS_PAGE: usize = 4096;

/// The unit in which a torn page keeps old or new content.
pub const POWER_LOSS_SECTOR: usize = 512;

/// An in-memory [`FileSystem`] that forgets, at a simulated power cut, what was never synced.
/// See the module docs for the model. Clones share one filesystem.
#[derive(Debug, Clone, Default)]
pub struct PowerLossFs {
    state: Arc<Mutex<State>>,
}

type Ino = u64;

#[derive(Debug, Default)]
struct State {
    /// Bumped by every cut; a handle from an older epoch belongs to a dead process.
    epoch: u64,
    /// The power is off: every call fails until `power_on`.
    down: bool,
    /// A cut armed by `cut_power_after`: modifying calls still allowed, and the cut's seed.
    armed: Option<(u64, u64)>,
    /// Modifying calls made since the filesystem was created.
    ops: u64,
    next_ino: Ino,
    inodes: HashMap<Ino, Inode>,
    /// File entries as the process sees them.
    files: BTreeMap<PathBuf, Ino>,
    /// File entries as of the last sync of their directory.
    durable_files: BTreeMap<PathBuf, Ino>,
    /// Directories as the process sees them.
    dirs: BTreeSet<PathBuf>,
    /// Directories as of the last sync of their parent.
    durable_dirs: BTreeSet<PathBuf>,
    /// Paths locked, with the epoch of the process holding the lock.
    locks: HashMap<PathBuf, u64>,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Pages written or resized since the last sync.
    dirty: BTreeSet<usize>,
}

/// What a cut keeps of the unsynced state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Nothing,
    Some,
    Everything,
}

impl Inode {
    fn mark(&mut self, from: usize, to: usize) {
        if to > from {
            self.dirty
                .extend(from / POWER_LOSS_PAGE..to.div_ceil(POWER_LOSS_PAGE));
        }
    }

    fn write(&mut self, buf: &[u8], offset: usize) {
        let end = offset + buf.len();
        if self.data.len() < end {
            let old = self.data.len();
            self.data.resize(end, 0);
            self.mark(old, end);
        }
        self.data[offset..end].copy_from_slice(buf);
        self.mark(offset, end);
    }

    /// The content that survives a cut.
    fn after_cut(&self, keep: Keep, rng: &mut fastrand::Rng) -> Vec<u8> {
        match keep {
            Keep::Nothing => return self.durable.clone(),
            Keep::Everything => return self.data.clone(),
            Keep::Some => {}
        }
        let mut out = self.durable.clone();
        if self.data.len() < out.len() && rng.bool() {
            out.truncate(self.data.len());
        }
        let copy = |out: &mut Vec<u8>, from: usize, to: usize| {
            if out.len() < to {
                out.resize(to, 0);
            }
            out[from..to].copy_from_slice(&self.data[from..to]);
        };
        for &page in &self.dirty {
            let start = page * POWER_LOSS_PAGE;
            let end = (start + POWER_LOSS_PAGE).min(self.data.len());
            if start >= end {
                continue;
            }
            match rng.u8(..3) {
                0 => {}
                1 => copy(&mut out, start, end),
                _ => {
                    for sector in (start..end).step_by(POWER_LOSS_SECTOR) {
                        if rng.bool() {
                            copy(&mut out, sector, (sector + POWER_LOSS_SECTOR).min(end));
                        }
                    }
                }
            }
        }
        out
    }
}

fn is_root(path: &Path) -> bool {
    path.as_os_str().is_empty() || path == Path::new("/")
}

fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

fn ebadf() -> io::Error {
    io::Error::from_raw_os_error(9)
}

fn enoent() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

impl PowerLossFs {
    /// An empty filesystem: only the root directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cuts the power now (see the module docs), choosing what survives with `seed`.
    pub fn crash(&self, seed: u64) {
        self.lock_state().cut(seed);
    }

    /// Arms a cut: `ops` more modifying calls (writes, syncs, allocations, creations, renames,
    /// removals) go through, and the next one is interrupted by the cut.
    pub fn cut_power_after(&self, ops: u64, seed: u64) {
        self.lock_state().armed = Some((ops, seed));
    }

    /// Whether the power is off.
    pub fn is_down(&self) -> bool {
        self.lock_state().down
    }

    /// Turns the power back on (disarming a cut that has not happened): what survived is what
    /// the next process finds.
    pub fn power_on(&self) {
        let mut st = self.lock_state();
        st.down = false;
        st.armed = None;
    }

    /// How many modifying calls have been made, so a test can place cuts across a history.
    pub fn ops(&self) -> u64 {
        self.lock_state().ops
    }

    /// The content of the file at `path` as the running process sees it.
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.lock_state();
        let ino = st.files.get(path).ok_or_else(enoent)?;
        Ok(st.inodes[ino].data.clone())
    }

    /// Writes a whole file and makes it and its entry durable, as if it had been there before
    /// the history under test began.
    pub fn put_durable(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut st = self.lock_state();
        st.alive()?;
        if !st.dir_exists(parent_of(path)) {
            return Err(enoent());
        }
        let ino = st.new_inode();
        let inode = st.inodes.get_mut(&ino).expect("new inode");
        inode.data = data.to_vec();
        inode.durable = data.to_vec();
        st.files.insert(path.to_path_buf(), ino);
        st.durable_files.insert(path.to_path_buf(), ino);
        Ok(())
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn alive(&self) -> io::Result<()> {
        if self.down {
            Err(eio())
        } else {
            Ok(())
        }
    }

    /// Counts one modifying call. `Ok(true)` means the armed cut falls on this call: the caller
    /// applies what may reach the disk of it (only a write), then calls [`State::cut`].
    fn op(&mut self) -> io::Result<bool> {
        self.alive()?;
        self.ops += 1;
        match self.armed {
            Some((0, _)) => Ok(true),
            Some((n, seed)) => {
                self.armed = Some((n - 1, seed));
                Ok(false)
            }
            None => Ok(false),
        }
    }

    /// A modifying call that does nothing if the cut falls on it.
    fn op_or_cut(&mut self) -> io::Result<()> {
        if self.op()? {
            let seed = self.armed.map_or(0, |(_, s)| s);
            self.cut(seed);
            return Err(eio());
        }
        Ok(())
    }

    fn new_inode(&mut self) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Inode::default());
        ino
    }

    fn dir_exists(&self, dir: &Path) -> bool {
        is_root(dir) || self.dirs.contains(dir)
    }

    /// The power cut: see the module docs.
    fn cut(&mut self, seed: u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let keep = match rng.u8(..8) {
            0 | 1 => Keep::Nothing,
            2 => Keep::Everything,
            _ => Keep::Some,
        };
        self.down = true;
        self.armed = None;
        self.epoch += 1;
        self.locks.clear();

        let mut dirs = BTreeSet::new();
        for d in self.dirs.union(&self.durable_dirs) {
            let (now, durable) = (self.dirs.contains(d), self.durable_dirs.contains(d));
            if pick(keep, &mut rng, now, durable) {
                dirs.insert(d.clone());
            }
        }
        let reachable = |p: &Path| {
            p.ancestors()
                .skip(1)
                .all(|a| is_root(a) || dirs.contains(a))
        };
        let dirs: BTreeSet<PathBuf> = dirs.iter().filter(|d| reachable(d)).cloned().collect();

        let mut files = BTreeMap::new();
        let paths: BTreeSet<&PathBuf> =
            self.files.keys().chain(self.durable_files.keys()).collect();
        for p in paths {
            let (now, durable) = (self.files.get(p), self.durable_files.get(p));
            // An entry that changed since its directory's last sync is the new one or the old.
            let chosen = if now != durable && !pick(keep, &mut rng, true, false) {
                durable
            } else {
                now
            };
            if let Some(ino) = chosen {
                if reachable(p) {
                    files.insert(p.clone(), *ino);
                }
            }
        }

        let mut inodes = HashMap::new();
        for ino in files.values() {
            if !inodes.contains_key(ino) {
                let data = self.inodes[ino].after_cut(keep, &mut rng);
                inodes.insert(
                    *ino,
                    Inode {
                        durable: data.clone(),
                        data,
                        dirty: BTreeSet::new(),
                    },
                );
            }
        }
        self.inodes = inodes;
        self.durable_files = files.clone();
        self.files = files;
        self.durable_dirs = dirs.clone();
        self.dirs = dirs;
    }
}

/// Whether an entry present `now` (as the process sees it) or `durable` (as of the last sync)
/// is present after a cut that keeps `keep`.
fn pick(keep: Keep, rng: &mut fastrand::Rng, now: bool, durable: bool) -> bool {
    if now == durable {
        return now;
    }
    match keep {
        Keep::Nothing => durable,
        Keep::Everything => now,
        Keep::Some => {
            if rng.bool() {
                now
            } else {
                durable
            }
        }
    }
}

#[derive(Debug)]
struct PowerLossFile {
    fs: PowerLossFs,
    ino: Ino,
    epoch: u64,
    readable: bool,
    writable: bool,
}

impl PowerLossFile {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.fs.lock_state();
        if st.epoch != self.epoch {
            return Err(eio());
        }
        st.alive()?;
        f(&mut st)
    }

    fn inode<'a>(&self, st: &'a mut State) -> &'a mut Inode {
        st.inodes.get_mut(&self.ino).expect("an open file's inode")
    }
}

impl File for PowerLossFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if !self.readable {
            return Err(ebadf());
        }
        self.with(|st| {
            let data = &self.inode(st).data;
            let start = (offset as usize).min(data.len());
            let n = buf.len().min(data.len() - start);
            buf[..n].copy_from_slice(&data[start..start + n]);
            Ok(n)
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.writable {
            return Err(ebadf());
        }
        self.with(|st| {
            let cut = st.op()?;
            self.inode(st).write(buf, offset as usize);
            if cut {
                let seed = st.armed.map_or(0, |(_, s)| s);
                st.cut(seed);
                return Err(eio());
            }
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|st| {
            st.op_or_cut()?;
            let inode = self.inode(st);
            inode.durable = inode.data.clone();
            inode.dirty.clear();
            Ok(())
        })
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(ebadf());
        }
        self.with(|st| {
            st.op_or_cut()?;
            let inode = self.inode(st);
            let (old, len) = (inode.data.len(), len as usize);
            if old < len {
                inode.data.resize(len, 0);
                inode.mark(old, len);
            }
            Ok(())
        })
    }

    fn size(&self) -> io::Result<u64> {
        self.with(|st| Ok(self.inode(st).data.len() as u64))
    }
}

struct PowerLossLock {
    fs: PowerLossFs,
    path: PathBuf,
    epoch: u64,
}

impl Debug for PowerLossLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerLossLock")
            .field("path", &self.path)
            .finish()
    }
}

impl Drop for PowerLossLock {
    fn drop(&mut self) {
        let mut st = self.fs.lock_state();
        if st.locks.get(&self.path) == Some(&self.epoch) {
            st.locks.remove(&self.path);
        }
    }
}

impl FileSystem for PowerLossFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>> {
        let mut st = self.lock_state();
        st.alive()?;
        let existing = st.files.get(path).copied();
        let ino = match (mode, existing) {
            (OpenMode::Read | OpenMode::ReadWrite, Some(ino)) => ino,
            (OpenMode::Read | OpenMode::ReadWrite, None) => return Err(enoent()),
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists))
            }
            (OpenMode::CreateTruncate, Some(ino)) => {
                st.op_or_cut()?;
                let inode = st.inodes.get_mut(&ino).expect("a linked inode");
                inode.data.clear();
                ino
            }
            (OpenMode::CreateNew | OpenMode::CreateTruncate, None) => {
                if !st.dir_exists(parent_of(path)) {
                    return Err(enoent());
                }
                st.op_or_cut()?;
                let ino = st.new_inode();
                st.files.insert(path.to_path_buf(), ino);
                ino
            }
        };
        Ok(Arc::new(PowerLossFile {
            fs: self.clone(),
            ino,
            epoch: st.epoch,
            readable: mode != OpenMode::CreateTruncate,
            writable: mode != OpenMode::Read,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        st.alive()?;
        let missing: Vec<PathBuf> = path
            .ancestors()
            .filter(|a| !st.dir_exists(a))
            .map(Path::to_path_buf)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if missing.iter().any(|d| st.files.contains_key(d)) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        st.op_or_cut()?;
        st.dirs.extend(missing);
        Ok(())
    }

    fn is_dir(&self, path: &Path) -> bool {
        let st = self.lock_state();
        !st.down && st.dir_exists(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let st = self.lock_state();
        st.alive()?;
        if !st.dir_exists(path) {
            return Err(enoent());
        }
        let files = st.files.keys().filter(|p| parent_of(p) == path);
        let dirs = st.dirs.iter().filter(|p| parent_of(p) == path);
        Ok(files.chain(dirs).cloned().collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        st.alive()?;
        if !st.files.contains_key(from) || !st.dir_exists(parent_of(to)) {
            return Err(enoent());
        }
        st.op_or_cut()?;
        let ino = st.files.remove(from).expect("checked above");
        st.files.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        st.alive()?;
        if !st.files.contains_key(path) {
            return Err(enoent());
        }
        st.op_or_cut()?;
        st.files.remove(path);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        st.alive()?;
        if !st.dir_exists(path) {
            return Err(enoent());
        }
        st.op_or_cut()?;
        let st = &mut *st;
        st.durable_files.retain(|p, _| parent_of(p) != path);
        for (p, ino) in &st.files {
            if parent_of(p) == path {
                st.durable_files.insert(p.clone(), *ino);
            }
        }
        st.durable_dirs.retain(|d| parent_of(d) != path);
        for d in &st.dirs {
            if parent_of(d) == path {
                st.durable_dirs.insert(d.clone());
            }
        }
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Debug + Send + Sync>> {
        let mut st = self.lock_state();
        st.alive()?;
        if st.locks.contains_key(path) {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        let epoch = st.epoch;
        st.locks.insert(path.to_path_buf(), epoch);
        Ok(Box::new(PowerLossLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            epoch,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(fs: &PowerLossFs, path: &str) -> Arc<dyn File> {
        fs.open(Path::new(path), OpenMode::CreateNew).unwrap()
    }

    #[test]
    fn synced_data_in_a_synced_directory_survives_every_cut() {
        for seed in 0..64 {
            let fs = PowerLossFs::new();
            fs.create_dir_all(Path::new("/d")).unwrap();
            fs.sync_dir(Path::new("/")).unwrap();
            let f = file(&fs, "/d/a");
            f.write_all_at(&[7; 10_000], 0).unwrap();
            f.sync_data().unwrap();
            fs.sync_dir(Path::new("/d")).unwrap();
            f.write_all_at(&[9; 3000], 2000).unwrap();
            fs.crash(seed);
            assert!(f.size().is_err(), "a handle from before the cut is dead");
            fs.power_on();
            let got = fs.read(Path::new("/d/a")).unwrap();
            assert_eq!(got.len(), 10_000);
            assert!(got[..2000].iter().all(|&b| b == 7));
            assert!(got[5000..].iter().all(|&b| b == 7));
            // Each sector of the unsynced overwrite is old or new, never anything else.
            for s in got[2000..5000].chunks(POWER_LOSS_SECTOR) {
                assert!(s.iter().all(|&b| b == 7 || b == 9), "{s:?}");
            }
        }
    }

    #[test]
    fn unsynced_data_and_entries_can_be_lost() {
        let mut lost_data = false;
        let mut lost_entry = false;
        let mut kept_all = false;
        for seed in 0..64 {
            let fs = PowerLossFs::new();
            let f = file(&fs, "/a");
            f.write_all_at(b"hello", 0).unwrap();
            f.sync_data().unwrap();
            fs.sync_dir(Path::new("/")).unwrap();
            f.write_all_at(b" world", 5).unwrap();
            file(&fs, "/b");
            fs.crash(seed);
            fs.power_on();
            match fs.read(Path::new("/a")).unwrap().as_slice() {
                b"hello" => lost_data = true,
                b"hello world" => {}
                other => panic!("{other:?}"),
            }
            match fs.read(Path::new("/b")) {
                Err(_) => lost_entry = true,
                Ok(_) => kept_all = true,
            }
        }
        assert!(lost_data && lost_entry && kept_all);
    }

    #[test]
    fn an_armed_cut_interrupts_the_chosen_call_and_everything_after() {
        let fs = PowerLossFs::new();
        let f = file(&fs, "/a");
        assert_eq!(fs.ops(), 1);
        fs.cut_power_after(1, 3);
        f.write_all_at(b"x", 0).unwrap();
        assert!(f.sync_data().is_err());
        assert!(fs.is_down());
        assert!(fs.open(Path::new("/c"), OpenMode::CreateNew).is_err());
        fs.power_on();
        // The file's entry was never synced, and the sync that would have made its data
        // durable did not happen.
        assert!(fs.read(Path::new("/a")).map_or(true, |d| d.len() <= 1));
    }

    /// `/cp` durably holds `old`; `new` was written to `/cp.tmp`, synced and renamed over it.
    fn synced_file_renamed_over_old() -> PowerLossFs {
        let fs = PowerLossFs::new();
        fs.put_durable(Path::new("/cp"), b"old").unwrap();
        let f = fs
            .open(Path::new("/cp.tmp"), OpenMode::CreateTruncate)
            .unwrap();
        f.write_all_at(b"new", 0).unwrap();
        f.sync_data().unwrap();
        fs.rename(Path::new("/cp.tmp"), Path::new("/cp")).unwrap();
        fs
    }

    #[test]
    fn a_rename_is_durable_only_once_its_directory_is_synced() {
        let mut old = 0;
        for seed in 0..32 {
            let fs = synced_file_renamed_over_old();
            fs.crash(seed);
            fs.power_on();
            match fs.read(Path::new("/cp")).unwrap().as_slice() {
                b"old" => old += 1,
                b"new" => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(old > 0);
        let fs = synced_file_renamed_over_old();
        fs.sync_dir(Path::new("/")).unwrap();
        fs.crash(1);
        fs.power_on();
        assert_eq!(fs.read(Path::new("/cp")).unwrap(), b"new");
    }

    #[test]
    fn locks_die_with_the_process() {
        let fs = PowerLossFs::new();
        let _held = fs.lock(Path::new("/LOCK")).unwrap();
        assert!(fs.lock(Path::new("/LOCK")).is_err());
        fs.crash(0);
        fs.power_on();
        assert!(fs.lock(Path::new("/LOCK")).is_ok());
    }
}
