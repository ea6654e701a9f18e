//! The small files sluice keeps beside its logs (the instance id, the admin token), written so
//! that a crash or a power cut leaves either no file or the whole new one, and never loses a
//! directory entry that was reported written.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// A step of [`write_file`] that failed.
#[derive(Debug)]
pub struct WriteError {
    /// What was being done: `create`, `write`, `sync`, `rename into place`, `sync directory`.
    pub op: &'static str,
    /// The path it was done to.
    pub path: PathBuf,
    /// The error.
    pub source: io::Error,
}

/// Writes `contents` to `dir/name` durably: creates `dir` and its missing ancestors (each new
/// entry fsynced into its parent), writes `name.tmp` with permission bits `mode`, fsyncs it,
/// renames it over `name` and fsyncs `dir`. Returns the file's path.
pub fn write_file(
    dir: &Path,
    name: &str,
    contents: &[u8],
    mode: u32,
) -> Result<PathBuf, WriteError> {
    let err = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError { op, path, source }
    };
    sluice_wal::fs::create_dir_all_durable(&sluice_wal::fs::StdFs, dir)
        .map_err(err("create", dir))?;
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(err("create", &tmp))?;
        file.write_all(contents).map_err(err("write", &tmp))?;
        file.sync_all().map_err(err("sync", &tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(err("rename into place", &path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("sync directory", dir))?;
    Ok(path)
}
