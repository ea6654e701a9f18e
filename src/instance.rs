//! The instance id: a random name a data directory is given once, so that what one sluice
//! instance sends to ClickHouse can never be mistaken for what another sent.
//!
//! Batch deduplication tokens and generated event ids are built from log positions (partition,
//! LSN, index). Every instance numbers its partitions from 0 and its records from 1, so two
//! instances writing to one table — or one instance restarted on an empty data directory —
//! would otherwise give the same token to different rows, and a deduplicating ClickHouse would
//! silently drop one of the batches. The id is therefore part of both.
//!
//! # Format
//!
//! `{data_dir}/instance-id` holds 16 lower-case hex digits (64 random bits) and a newline. It
//! is written once, durably (a temporary file, fsync, rename, fsync of the directory), and
//! never changed; deleting it makes the directory a new instance (its pending batches are then
//! re-sent under new tokens, so they may be stored twice).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// The file holding the id, inside the data directory.
pub const FILE_NAME: &str = "instance-id";

/// Why the instance id could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Reading, writing or syncing the file failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but does not hold an id.
    #[error("{path} does not hold an instance id (16 hex digits): {content:?}; restore it from a backup, or delete it to make this directory a new instance")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What it holds (at most 64 characters).
        content: String,
    },
}

impl InstanceError {
    /// A stable, short identifier for logs.
    pub fn code(&self) -> &'static str {
        match self {
            InstanceError::Io { .. } => "instance_io",
            InstanceError::Malformed { .. } => "instance_malformed",
        }
    }
}

/// A data directory's instance id: 64 bits, written as 16 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstanceId(u64);

impl InstanceId {
    /// The id with this value (tests use fixed ones; the daemon's is [`load_or_create`]d).
    pub const fn from_u64(value: u64) -> InstanceId {
        InstanceId(value)
    }

    /// The id's value, hashed into generated event ids.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Parses 16 hex digits (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Option<InstanceId> {
        let t = text.trim();
        if t.len() != 16 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(t, 16).ok().map(InstanceId)
    }

    /// A new random id.
    pub fn random() -> InstanceId {
        InstanceId(fastrand::u64(..))
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Reads the data directory's id, creating the directory and the id (durably) when missing.
pub fn load_or_create(data_dir: &Path) -> Result<InstanceId, InstanceError> {
    let path = data_dir.join(FILE_NAME);
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| InstanceError::Io { op, path, source }
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            return InstanceId::parse(&text).ok_or_else(|| InstanceError::Malformed {
                path: path.clone(),
                content: text.chars().take(64).collect(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("read", &path)(e)),
    }
    let id = InstanceId::random();
    crate::durable::write_file(data_dir, FILE_NAME, format!("{id}\n").as_bytes(), 0o644).map_err(
        |e| InstanceError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        },
    )?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_created_once_and_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = load_or_create(&data).unwrap();
        assert_eq!(first.to_string().len(), 16);
        assert_eq!(InstanceId::parse(&first.to_string()), Some(first));
        assert_eq!(load_or_create(&data).unwrap(), first);
        assert!(!data.join("instance-id.tmp").exists());
    }

    #[test]
    fn two_directories_get_different_ids() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        assert_ne!(
            load_or_create(a.path()).unwrap(),
            load_or_create(b.path()).unwrap()
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), "not an id\n").unwrap();
        let e = load_or_create(dir.path()).unwrap_err();
        assert_eq!(e.code(), "instance_malformed");
        assert!(e.to_string().contains("instance-id"), "{e}");
    }
}
