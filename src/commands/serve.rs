//! `sluice serve`: runs the collector on a multi-thread runtime until SIGTERM or SIGINT, then
//! lets [`crate::server::RunningServer::shutdown`] drain (bounded by `server.shutdown_grace`
//! for the connections and `publish.stop_timeout` for the publishers) and returns.
//!
//! # SIGHUP
//!
//! On SIGHUP the configuration is read again from the same file, the current environment and
//! the same flags, and validated. An invalid one is logged and ignored: the daemon keeps
//! serving with what it had. A valid one is applied to what can change safely while serving
//! ([`RELOADABLE`]): the key lists, the rate limits, the JSON size limits, the trusted proxies
//! the rate limiter uses to find the client IP, and the log level. Any other changed key is
//! named in a warning and takes effect at the next restart.

use std::collections::BTreeMap;

use tokio::signal::unix::{signal, SignalKind};

use super::RunError;
use crate::config::load::{flatten, Origin};
use crate::config::Config;

/// The keys (or key prefixes, ending in `.`) a SIGHUP applies while serving.
pub const RELOADABLE: &[&str] = &[
    "segment.",
    "pycolytics.",
    "collect.",
    "auth.",
    "limits.",
    "server.max_decompressed_bytes",
    "enrich.trusted_proxies",
    "log.level",
];

/// Serves until SIGTERM or SIGINT (reloading on SIGHUP), then drains and returns.
pub fn run(config: Config, origin: Origin) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice-rt")
        .build()
        .map_err(|source| RunError::Io {
            context: "cannot start the async runtime",
            source,
        })?;
    runtime.block_on(async {
        let mut term = watch(SignalKind::terminate(), "cannot watch for SIGTERM")?;
        let mut int = watch(SignalKind::interrupt(), "cannot watch for SIGINT")?;
        let mut hup = watch(SignalKind::hangup(), "cannot watch for SIGHUP")?;
        let grace = config.server.shutdown_grace;
        let server = crate::server::start(config.clone()).await?;
        let mut current = config;
        let name = loop {
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = hup.recv() => {
                    if let Some(next) = reload(&origin, &current, |c| server.reload(c)) {
                        current = next;
                    }
                }
            }
        };
        tracing::info!(signal = name, grace = %grace, "shutting down: draining requests in flight");
        Ok(server.shutdown().await?)
    })
}

/// A stream of `kind` signals; `context` names the signal in the error.
fn watch(kind: SignalKind, context: &'static str) -> Result<tokio::signal::unix::Signal, RunError> {
    signal(kind).map_err(|source| RunError::Io { context, source })
}

/// Reads the configuration again and applies it with `apply` (plus the log level); returns the
/// new configuration, or `None` when it could not be read or is invalid (the old one stays).
pub fn reload(origin: &Origin, current: &Config, apply: impl FnOnce(&Config)) -> Option<Config> {
    let next = match origin.load() {
        Ok(loaded) => loaded.config,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: cannot read the configuration; keeping the current one");
            return None;
        }
    };
    if let Err(e) = next.validate() {
        tracing::error!(error = %e, "SIGHUP: the new configuration is invalid; keeping the current one");
        return None;
    }
    if let Err(e) = crate::logging::set_level(&next.log.level) {
        tracing::error!(error = %e, "SIGHUP: cannot change the log level");
    }
    apply(&next);
    let pending = restart_only_changes(current, &next);
    if !pending.is_empty() {
        tracing::warn!(
            keys = %pending.join(", "),
            "SIGHUP: these changed keys take effect only after a restart"
        );
    }
    Some(next)
}

/// The dotted keys whose values differ between `old` and `new` and that a reload cannot apply.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let (old, new): (BTreeMap<_, _>, BTreeMap<_, _>) = (flatten(old), flatten(new));
    let keys: std::collections::BTreeSet<&String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k) && !is_reloadable(k))
        .collect();
    keys.into_iter().cloned().collect()
}

/// Whether a SIGHUP applies `key` while serving.
pub fn is_reloadable(key: &str) -> bool {
    RELOADABLE.iter().any(|r| match r.strip_suffix('.') {
        Some(section) => key
            .strip_prefix(section)
            .is_some_and(|rest| rest.starts_with('.')),
        None => key == *r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_limits_reload_but_listeners_and_the_log_need_a_restart() {
        assert!(is_reloadable("segment.write_keys"));
        assert!(is_reloadable("limits.per_ip"));
        assert!(is_reloadable("log.level"));
        assert!(!is_reloadable("log.format"));
        assert!(!is_reloadable("server.listen"));
        assert!(!is_reloadable("wal.capacity"));
        assert!(!is_reloadable("segmentation.x"));
    }

    #[test]
    fn a_changed_listener_is_named_and_a_changed_key_list_is_not() {
        let old = Config::default();
        let mut new = old.clone();
        new.segment.write_keys = vec!["k1".into()];
        new.server.listen = "127.0.0.1:1".parse().unwrap();
        assert_eq!(restart_only_changes(&old, &new), vec!["server.listen"]);
        assert!(restart_only_changes(&old, &old).is_empty());
    }
}
