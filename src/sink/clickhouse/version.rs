//! What a ClickHouse server can do, decided from `SELECT version()`.
//!
//! | Feature | From | Without it |
//! |---|---|---|
//! | `LowCardinality` without the experimental flag | 19.3 (conservative; 18.x needs `allow_experimental_low_cardinality_type`) | plain `String` |
//! | `DateTime64` | 20.1 | `DateTime` (seconds) |
//! | MergeTree `non_replicated_deduplication_window` | 21.5 (PR #22514, spring 2021; conservative) | no block dedup on plain MergeTree |
//! | `insert_deduplication_token` | 22.2 (PR #32304) | the server rejects the setting (code 115): not sent |
//!
//! Without the last two, delivery is at-least-once: a retry after an ambiguous failure (timeout,
//! lost connection after the server committed) may store a batch twice.

use std::fmt;
use std::str::FromStr;

/// A server version such as `18.16.1` or `26.1.2.11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    /// Year-based major (18, 19, …, 26).
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch (0 when absent).
    pub patch: u32,
}

impl ServerVersion {
    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> ServerVersion {
        ServerVersion {
            major,
            minor,
            patch: 0,
        }
    }

    /// The features of this version.
    pub fn features(self) -> Features {
        Features {
            low_cardinality: self >= ServerVersion::new(19, 3),
            datetime64: self >= ServerVersion::new(20, 1),
            non_replicated_dedup_window: self >= ServerVersion::new(21, 5),
            insert_deduplication_token: self >= ServerVersion::new(22, 2),
        }
    }
}

impl FromStr for ServerVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split('.').map(|p| p.parse::<u32>());
        let bad = || format!("`{s}` is not a ClickHouse version (e.g. 18.16.1 or 26.1)");
        let major = parts.next().and_then(Result::ok).ok_or_else(bad)?;
        let minor = parts.next().and_then(Result::ok).ok_or_else(bad)?;
        let patch = parts.next().and_then(Result::ok).unwrap_or(0);
        Ok(ServerVersion {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Server capabilities that change the schema or the INSERT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// `LowCardinality(T)` may be used in CREATE TABLE.
    pub low_cardinality: bool,
    /// `DateTime64(3, 'UTC')` exists.
    pub datetime64: bool,
    /// MergeTree accepts `SETTINGS non_replicated_deduplication_window = N`.
    pub non_replicated_dedup_window: bool,
    /// INSERT accepts `insert_deduplication_token`.
    pub insert_deduplication_token: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        let old: ServerVersion = "18.16.1".parse().unwrap();
        let new: ServerVersion = "26.1.2.11".parse().unwrap();
        assert!(old < new);
        assert_eq!(old.to_string(), "18.16.1");
        assert!("x.1".parse::<ServerVersion>().is_err());
    }

    #[test]
    fn old_servers_get_none_of_the_new_features() {
        let f = ServerVersion::new(18, 16).features();
        assert!(!f.low_cardinality && !f.datetime64 && !f.insert_deduplication_token);
        let f = ServerVersion::new(26, 1).features();
        assert!(f.low_cardinality && f.datetime64 && f.insert_deduplication_token);
        assert!(f.non_replicated_dedup_window);
        assert!(
            !ServerVersion::new(22, 1)
                .features()
                .insert_deduplication_token
        );
    }
}
