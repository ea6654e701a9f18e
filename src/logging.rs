//! Log output: the process-wide `tracing` subscriber, and changing its level while running.
//!
//! Logs go to stderr (so a command's report on stdout stays machine-readable), as text lines or
//! one JSON object per line (`[log] format`). The filter is `[log] level` (a `tracing` filter such
//! as `info` or `sluice=debug,info`), or `RUST_LOG` when that is set and valid.
//!
//! The filter sits behind a reload handle: [`set_level`] swaps it without restarting, which is
//! what a SIGHUP handler calls after re-reading `[log] level`.
//!
//! # What is logged at which level
//!
//! At `info` and above nothing identifies a person or could be replayed against the collector:
//! no request bodies, no query strings, no API/write keys, no full client IPs. Client addresses
//! appear only at `debug` and below, and only anonymised (see [`anonymise_ip`]).

use std::net::IpAddr;
use std::sync::OnceLock;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry};

use serde::{Deserialize, Serialize};

/// Why logging could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The filter does not parse.
    #[error("invalid log filter `{filter}`: {message} (e.g. `info` or `sluice=debug,info`)")]
    BadFilter {
        /// The filter given.
        filter: String,
        /// What is wrong with it.
        message: String,
    },
    /// [`set_level`] was called before [`init`].
    #[error("logging is not initialised")]
    NotInitialised,
    /// A global subscriber is already installed (e.g. [`init`] was called twice).
    #[error("a global log subscriber is already installed: {0}")]
    AlreadyInitialised(String),
    /// The subscriber holding the filter is gone.
    #[error("cannot change the log filter: {0}")]
    Reload(String),
}

impl LogError {
    /// A stable label for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            LogError::BadFilter { .. } => "bad_filter",
            LogError::NotInitialised => "not_initialised",
            LogError::AlreadyInitialised(_) => "already_initialised",
            LogError::Reload(_) => "reload",
        }
    }
}

/// Changes the filter of a subscriber built by this module.
#[derive(Debug, Clone)]
pub struct LevelHandle(reload::Handle<EnvFilter, Registry>);

impl LevelHandle {
    /// Replaces the filter with `filter` (same syntax as `[log] level`). On error the old
    /// filter stays.
    pub fn set(&self, filter: &str) -> Result<(), LogError> {
        let parsed = parse_filter(filter)?;
        self.0
            .reload(parsed)
            .map_err(|e| LogError::Reload(e.to_string()))
    }

    /// The filter in effect, as text.
    pub fn current(&self) -> Result<String, LogError> {
        self.0
            .with_current(|f| f.to_string())
            .map_err(|e| LogError::Reload(e.to_string()))
    }
}

/// The handle of the global subscriber installed by [`init`].
static GLOBAL: OnceLock<LevelHandle> = OnceLock::new();

fn parse_filter(filter: &str) -> Result<EnvFilter, LogError> {
    EnvFilter::try_new(filter).map_err(|e| LogError::BadFilter {
        filter: filter.to_string(),
        message: e.to_string(),
    })
}

/// The filter to start with: `RUST_LOG` when set and valid, else `config.level`.
fn initial_filter(config: &LogConfig) -> Result<EnvFilter, LogError> {
    match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => match parse_filter(&text) {
            Ok(f) => Ok(f),
            Err(_) => parse_filter(&config.level),
        },
        _ => parse_filter(&config.level),
    }
}

/// Builds a subscriber writing to `writer` in `config.format`, filtered by `filter`, and the
/// handle that changes its filter. `ansi` colours text output.
pub fn subscriber<W>(
    config: &LogConfig,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> (impl tracing::Subscriber + Send + Sync, LevelHandle)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (filter, handle) = reload::Layer::new(filter);
    let output = match config.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .boxed(),
    };
    let subscriber = Registry::default().with(filter).with(output);
    (subscriber, LevelHandle(handle))
}

/// Installs the process-wide subscriber: stderr, `config.format`, `RUST_LOG` or `config.level`.
pub fn init(config: &LogConfig) -> Result<(), LogError> {
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    init_with_writer(config, std::io::stderr, ansi)
}

/// [`init`] with another destination (tests capture the output).
pub fn init_with_writer<W>(config: &LogConfig, writer: W, ansi: bool) -> Result<(), LogError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    if GLOBAL.get().is_some() {
        return Err(LogError::AlreadyInitialised("sluice's own".into()));
    }
    let (subscriber, handle) = subscriber(config, initial_filter(config)?, writer, ansi);
    subscriber
        .try_init()
        .map_err(|e| LogError::AlreadyInitialised(e.to_string()))?;
    // Only the first successful `try_init` gets here, so the cell is empty.
    let _ = GLOBAL.set(handle);
    Ok(())
}

/// Changes the global log filter (e.g. from a SIGHUP handler after re-reading `[log] level`).
/// A filter that does not parse is refused and the old one stays.
pub fn set_level(filter: &str) -> Result<(), LogError> {
    GLOBAL.get().ok_or(LogError::NotInitialised)?.set(filter)
}

/// The global log filter in effect, as text.
pub fn current_level() -> Result<String, LogError> {
    GLOBAL.get().ok_or(LogError::NotInitialised)?.current()
}

/// A client address fit for a log line: the last octet of an IPv4 address and the last 80
/// bits of an IPv6 address zeroed (`203.0.113.0`, `2001:db8:abcd::`). Enough to tell networks
/// apart, not enough to name a person.
pub fn anonymise_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => anonymise_ip(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
            }
        },
    }
}

/// What replaces a password in [`redact_url`].
pub const REDACTED_PASSWORD: &str = "<redacted>";

/// A URL fit for a log line or `config show`: `scheme://user:password@host…` becomes
/// `scheme://user:<redacted>@host…`; anything else is returned unchanged.
pub fn redact_url(text: &str) -> String {
    let has_password = url::Url::parse(text).is_ok_and(|u| u.password().is_some());
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if has_password => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:{REDACTED_PASSWORD}{}", &rest[at..])
        }
        _ => text.to_string(),
    }
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `sluice=debug,info`. Default `info`.
    /// `RUST_LOG` overrides it.
    pub level: String,
    /// `text` (default) or `json`.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer that keeps what it is given.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn a_level_change_takes_effect_for_the_next_event() {
        let out = Captured::default();
        let config = LogConfig::default();
        let (subscriber, handle) =
            subscriber(&config, parse_filter("info").unwrap(), out.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("hidden at info");
            tracing::info!("shown at info");
            handle.set("debug").unwrap();
            tracing::debug!("shown at debug");
            handle.set("warn").unwrap();
            tracing::info!("hidden at warn");
        });
        let text = out.text();
        assert!(text.contains("shown at info"), "{text}");
        assert!(text.contains("shown at debug"), "{text}");
        assert!(!text.contains("hidden at info"), "{text}");
        assert!(!text.contains("hidden at warn"), "{text}");
    }

    #[test]
    fn a_bad_filter_is_refused_and_the_old_one_stays() {
        let out = Captured::default();
        let (subscriber, handle) = subscriber(
            &LogConfig::default(),
            parse_filter("warn").unwrap(),
            out.clone(),
            false,
        );
        let err = handle.set("sluice=[").unwrap_err();
        assert_eq!(err.code(), "bad_filter");
        assert!(err.to_string().contains("sluice=["), "{err}");
        assert_eq!(handle.current().unwrap(), "warn");
        tracing::subscriber::with_default(subscriber, || tracing::warn!("still warn"));
        assert!(out.text().contains("still warn"));
    }

    #[test]
    fn json_format_writes_one_object_per_line() {
        let out = Captured::default();
        let config = LogConfig {
            level: "info".into(),
            format: LogFormat::Json,
        };
        let (subscriber, _handle) =
            subscriber(&config, parse_filter("info").unwrap(), out.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(partition = 3, "first");
            tracing::info!("second");
        });
        let lines: Vec<serde_json::Value> = out
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["fields"]["message"], "first");
        assert_eq!(lines[0]["fields"]["partition"], 3);
        assert_eq!(lines[0]["level"], "INFO");
    }

    #[test]
    fn set_level_before_init_says_so() {
        // No unit test installs the global subscriber; the binary's tests cover `init`.
        if GLOBAL.get().is_none() {
            assert!(matches!(set_level("debug"), Err(LogError::NotInitialised)));
        }
    }

    #[test]
    fn a_password_in_a_url_is_redacted() {
        assert_eq!(
            redact_url("http://sluice:s3cret@ch:8123/?database=x"),
            "http://sluice:<redacted>@ch:8123/?database=x"
        );
        assert_eq!(redact_url("http://ch:8123"), "http://ch:8123");
    }

    #[test]
    fn anonymised_addresses_keep_only_the_network() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(anonymise_ip(ip("203.0.113.77")), ip("203.0.113.0"));
        assert_eq!(
            anonymise_ip(ip("2001:db8:abcd:12:1:2:3:4")),
            ip("2001:db8:abcd::")
        );
        assert_eq!(anonymise_ip(ip("::ffff:198.51.100.9")), ip("198.51.100.0"));
    }
}
