//! The admin token: the configured `admin.token`, or one the daemon generates and keeps in
//! `DATA_DIR/admin.token` so that the CLI on the same machine can read it.

use std::fs;
use std::path::{Path, PathBuf};

use super::AdminConfig;
use crate::http::auth::KeySet;

/// The generated token's file name under the data directory.
pub const TOKEN_FILE: &str = "admin.token";

/// Why the token could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read, written or synced.
    #[error("cannot {op} the admin token file {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The token file holds nothing usable.
    #[error("the admin token file {path} is empty; delete it to have a new one generated")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// The token the admin routes require, kept as a digest and compared in constant time.
#[derive(Debug, Clone)]
pub struct AdminToken {
    keys: KeySet,
    /// Where it came from, for the start-up log line.
    pub origin: String,
}

impl AdminToken {
    /// A token from its text.
    pub fn new(token: &str, origin: String) -> AdminToken {
        AdminToken {
            keys: KeySet::new(&[token.to_string()]),
            origin,
        }
    }

    /// The configured token, else the one in `DATA_DIR/admin.token`, created (random, mode
    /// 0600) when missing. Blocking.
    pub fn resolve(config: &AdminConfig, data_dir: &Path) -> Result<AdminToken, TokenError> {
        if !config.token.is_empty() {
            return Ok(AdminToken::new(&config.token, "admin.token".into()));
        }
        let path = data_dir.join(TOKEN_FILE);
        let text = match read(&path)? {
            Some(text) => text,
            None => create(data_dir)?,
        };
        Ok(AdminToken::new(&text, path.display().to_string()))
    }

    /// Whether `presented` is the token.
    pub fn accepts(&self, presented: &str) -> bool {
        self.keys.accepts(presented)
    }
}

/// The token a client on this machine should send: the configured one, else the daemon's
/// generated file; `None` when neither exists (no daemon has started with this data
/// directory).
pub fn for_client(config: &AdminConfig, data_dir: &Path) -> Result<Option<String>, TokenError> {
    if !config.token.is_empty() {
        return Ok(Some(config.token.clone()));
    }
    read(&data_dir.join(TOKEN_FILE))
}

fn read(path: &Path) -> Result<Option<String>, TokenError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                Err(TokenError::Empty {
                    path: path.to_path_buf(),
                })
            } else {
                Ok(Some(token.to_string()))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TokenError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes a new random token (two v4 UUIDs' worth of the OS's randomness, as hex) through a
/// temporary file, so a crash never leaves a half-written token.
fn create(data_dir: &Path) -> Result<String, TokenError> {
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let path =
        crate::durable::write_file(data_dir, TOKEN_FILE, format!("{token}\n").as_bytes(), 0o600)
            .map_err(|e| TokenError::Io {
                op: e.op,
                path: e.path,
                source: e.source,
            })?;
    tracing::info!(path = %path.display(), "generated the admin token");
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config = AdminConfig::default();
        assert_eq!(for_client(&config, dir.path()).unwrap(), None);
        let first = AdminToken::resolve(&config, dir.path()).unwrap();
        let text = for_client(&config, dir.path()).unwrap().unwrap();
        assert_eq!(text.len(), 64);
        assert!(first.accepts(&text));
        assert!(!first.accepts("something else"));
        let again = AdminToken::resolve(&config, dir.path()).unwrap();
        assert!(again.accepts(&text));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_configured_token_wins_and_an_empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = AdminConfig {
            token: "configured-token-123".into(),
            ..AdminConfig::default()
        };
        let t = AdminToken::resolve(&config, dir.path()).unwrap();
        assert!(t.accepts("configured-token-123"));
        assert!(!dir.path().join(TOKEN_FILE).exists());
        fs::write(dir.path().join(TOKEN_FILE), "\n").unwrap();
        let err = AdminToken::resolve(&AdminConfig::default(), dir.path()).unwrap_err();
        assert!(err.to_string().contains("delete it"), "{err}");
    }
}
