//! Token-bucket rate limits, shared by every connection of the process.
//!
//! The `[limits]` section sets two independent limits: one per client IP (`per_ip`) and one
//! per write/API key (`per_key`), each written `N/s`, `N/min`, `N/h` or `off`. Each request takes
//! one token from its client's bucket (a Segment batch of 100 events is one request, as in
//! pycolytics, where a batch counts as one hit). A bucket holds at most `burst` tokens (0 = one
//! second's worth of the rate, at least 1) and refills continuously at the rate; a request that
//! finds less than one token is refused with 429 and `Retry-After` = the whole seconds until a
//! token is back (at least 1).
//!
//! # Sharing and memory
//!
//! One [`RateLimiter`] per limit lives in the application (an `Arc` shared by every connection
//! task, whatever partition its requests are routed to). Buckets are spread over
//! [`SHARDS`] mutex-protected maps by a keyed hash of the client, so concurrent requests rarely
//! touch the same lock and a client cannot aim its keys at one shard. Only a hash of the client
//! is stored (never the key itself).
//!
//! Memory is bounded by `limits.max_buckets` per limiter. When a shard reaches its share, first
//! every bucket that has refilled completely is dropped (a missing bucket behaves exactly like a
//! full one, so this changes nothing); if the shard is still full, half of its buckets are
//! dropped. Those clients start again with a full bucket: under a flood of distinct clients the
//! limit errs towards letting requests through, never towards refusing well-behaved clients.
//!
//! # Reloading
//!
//! The limiter holds buckets only; the rate and burst are passed with each check
//! ([`BucketSpec`]), so a reloaded configuration applies to existing buckets at once (a bucket
//! holding more tokens than a smaller new burst is clamped on its next use).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::units::{check_range, Violation};

/// Number of independently locked bucket maps per limiter.
pub const SHARDS: usize = 64;
/// The largest count a rate may have (`N` in `N/s`).
pub const MAX_RATE_COUNT: u64 = 1_000_000_000;
/// The largest `limits.burst`.
pub const MAX_BURST: u64 = 1_000_000_000;

/// A rate limit as written in the configuration: `off`, or `N/s`, `N/min`, `N/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateSetting {
    /// No limit (the default).
    #[default]
    Off,
    /// At most `count` requests per `per` on average.
    Limit {
        /// Requests allowed per period.
        count: u64,
        /// The period.
        per: Period,
    },
}

/// The period of a [`RateSetting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// `/s`.
    Second,
    /// `/min`.
    Minute,
    /// `/h`.
    Hour,
}

impl Period {
    fn seconds(self) -> f64 {
        match self {
            Period::Second => 1.0,
            Period::Minute => 60.0,
            Period::Hour => 3600.0,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Period::Second => "s",
            Period::Minute => "min",
            Period::Hour => "h",
        }
    }
}

impl RateSetting {
    /// Tokens per second, or `None` when off.
    pub fn per_second(self) -> Option<f64> {
        match self {
            RateSetting::Off => None,
            RateSetting::Limit { count, per } => Some(count as f64 / per.seconds()),
        }
    }

    /// The bucket this setting and `limits.burst` describe, or `None` when off.
    pub fn spec(self, burst: u64) -> Option<BucketSpec> {
        let rate = self.per_second()?;
        let capacity = if burst == 0 {
            rate.ceil().max(1.0)
        } else {
            burst as f64
        };
        Some(BucketSpec { rate, capacity })
    }
}

impl FromStr for RateSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("off") {
            return Ok(RateSetting::Off);
        }
        let help =
            || format!("`{s}` is not a rate; write e.g. `1000/s`, `60/min`, `500/h` or `off`");
        let (count, unit) = t.split_once('/').ok_or_else(help)?;
        let count: u64 = count.trim().parse().map_err(|_| help())?;
        let per = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => Period::Second,
            "m" | "min" | "minute" => Period::Minute,
            "h" | "hour" => Period::Hour,
            _ => return Err(help()),
        };
        Ok(RateSetting::Limit { count, per })
    }
}

impl fmt::Display for RateSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateSetting::Off => f.write_str("off"),
            RateSetting::Limit { count, per } => write!(f, "{count}/{}", per.suffix()),
        }
    }
}

impl Serialize for RateSetting {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The `[limits]` section: request rate limits (429 + `Retry-After`) on every tracking route.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests per client IP: `N/s`, `N/min`, `N/h` or `off` (the default). The client IP is
    /// the TCP peer, or the nearest untrusted `X-Forwarded-For` / `Forwarded` hop when the peer
    /// is in `enrich.trusted_proxies`. `N` from 1 to 1 000 000 000. Environment
    /// `SLUICE_LIMITS__PER_IP="1000/s"`.
    pub per_ip: RateSetting,
    /// Requests per write key or API key (the one the request presented; requests without a key
    /// are only limited per IP). Same syntax; default `off`.
    pub per_key: RateSetting,
    /// Bucket size: how many requests a client may send at once after being idle. `0` (the
    /// default) means one second's worth of the rate, at least 1. 0 to 1 000 000 000.
    pub burst: u64,
    /// Most clients tracked per limit (memory: about 64 bytes each); beyond it idle clients are
    /// forgotten first. Default 100 000; 1 000 to 10 000 000.
    pub max_buckets: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            per_ip: RateSetting::Off,
            per_key: RateSetting::Off,
            burst: 0,
            max_buckets: 100_000,
        }
    }
}

impl LimitsConfig {
    /// Values outside their documented bounds, each naming its key.
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        for (key, rate) in [
            ("limits.per_ip", self.per_ip),
            ("limits.per_key", self.per_key),
        ] {
            if let RateSetting::Limit { count, .. } = rate {
                if !(1..=MAX_RATE_COUNT).contains(&count) {
                    out.push(Violation {
                        key,
                        message: format!(
                            "{rate}: the count must be 1 to {MAX_RATE_COUNT} (use `off` for no limit)"
                        ),
                    });
                }
            }
        }
        check_range(&mut out, "limits.burst", self.burst, 0, MAX_BURST);
        let buckets = self.max_buckets;
        check_range(&mut out, "limits.max_buckets", buckets, 1_000, 10_000_000);
        out
    }
}

/// A bucket's refill rate and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSpec {
    /// Tokens added per second.
    pub rate: f64,
    /// Most tokens a bucket holds.
    pub capacity: f64,
}

/// The outcome of one [`RateLimiter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A token was taken.
    Allowed,
    /// No token: try again after this long (the exact time until one token is back).
    Limited {
        /// Time until the bucket holds one token.
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    /// The bucket's tokens at `now` (refilled, clamped to the capacity).
    fn level(&self, spec: BucketSpec, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * spec.rate).min(spec.capacity)
    }
}

/// Token buckets for one limit, keyed by a hash of the client (see the module docs).
pub struct RateLimiter {
    shards: Box<[Mutex<HashMap<u64, Bucket>>]>,
    per_shard: usize,
    hasher: RandomState,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("tracked", &self.tracked())
            .field("per_shard", &self.per_shard)
            .finish()
    }
}

impl RateLimiter {
    /// A limiter tracking at most about `max_buckets` clients.
    pub fn new(max_buckets: usize) -> RateLimiter {
        RateLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max_buckets.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    /// Takes one token from `client`'s bucket at `now`, or says how long until one is back.
    pub fn check<K: Hash + ?Sized>(&self, spec: BucketSpec, client: &K, now: Instant) -> Decision {
        let hash = self.hasher.hash_one(client);
        let shard = &self.shards[(hash as usize) % SHARDS];
        let mut buckets = shard.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= self.per_shard && !buckets.contains_key(&hash) {
            evict(&mut buckets, spec, now, self.per_shard);
        }
        let bucket = buckets.entry(hash).or_insert(Bucket {
            tokens: spec.capacity,
            updated: now,
        });
        let level = bucket.level(spec, now);
        bucket.updated = now.max(bucket.updated);
        if level >= 1.0 {
            bucket.tokens = level - 1.0;
            Decision::Allowed
        } else {
            bucket.tokens = level;
            let wait = (1.0 - level) / spec.rate;
            Decision::Limited {
                retry_after: Duration::from_secs_f64(wait.min(1e9)),
            }
        }
    }

    /// The number of clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// Makes room in a full shard: drops refilled buckets, then half of the rest if still full.
fn evict(buckets: &mut HashMap<u64, Bucket>, spec: BucketSpec, now: Instant, per_shard: usize) {
    buckets.retain(|_, b| b.level(spec, now) < spec.capacity);
    if buckets.len() >= per_shard {
        let mut keep = false;
        buckets.retain(|_, _| {
            keep = !keep;
            keep
        });
    }
}

/// `Retry-After` in whole seconds for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str, burst: u64) -> BucketSpec {
        s.parse::<RateSetting>().unwrap().spec(burst).unwrap()
    }

    #[test]
    fn rates_parse_in_every_documented_form_and_print_canonically() {
        for (text, shown) in [
            ("1000/s", "1000/s"),
            ("60/min", "60/min"),
            ("60/m", "60/min"),
            (" 5 / hour ", "5/h"),
            ("OFF", "off"),
        ] {
            assert_eq!(text.parse::<RateSetting>().unwrap().to_string(), shown);
        }
        for bad in ["1000", "x/s", "10/week", "-1/s", ""] {
            assert!(bad.parse::<RateSetting>().is_err(), "{bad}");
        }
        assert_eq!("off".parse::<RateSetting>().unwrap().spec(5), None);
    }

    #[test]
    fn the_default_burst_is_one_seconds_worth_and_at_least_one() {
        assert_eq!(spec("1000/s", 0).capacity, 1000.0);
        assert_eq!(spec("60/min", 0).capacity, 1.0);
        assert_eq!(spec("1/h", 0).capacity, 1.0);
        assert_eq!(spec("1/h", 7).capacity, 7.0);
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_until_it_refills() {
        let limiter = RateLimiter::new(1000);
        let s = spec("2/s", 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(s, "a", t0), Decision::Allowed);
        }
        let Decision::Limited { retry_after } = limiter.check(s, "a", t0) else {
            panic!("the fourth request must be limited")
        };
        assert_eq!(retry_after, Duration::from_millis(500));
        assert_eq!(retry_after_secs(retry_after), 1);
        // Another client has its own bucket.
        assert_eq!(limiter.check(s, "b", t0), Decision::Allowed);
        // Half a second later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.check(s, "a", t1), Decision::Allowed);
        assert!(matches!(
            limiter.check(s, "a", t1),
            Decision::Limited { .. }
        ));
    }

    #[test]
    fn a_smaller_reloaded_burst_clamps_existing_buckets() {
        let limiter = RateLimiter::new(1000);
        let t0 = Instant::now();
        assert_eq!(
            limiter.check(spec("100/s", 100), "a", t0),
            Decision::Allowed
        );
        let small = spec("1/min", 1);
        assert_eq!(limiter.check(small, "a", t0), Decision::Allowed);
        let Decision::Limited { retry_after } = limiter.check(small, "a", t0) else {
            panic!("the clamped bucket must be empty")
        };
        assert_eq!(retry_after_secs(retry_after), 60);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_distinct_clients() {
        let limiter = RateLimiter::new(1000);
        let s = spec("1/h", 1);
        let t0 = Instant::now();
        for i in 0..50_000u32 {
            assert_eq!(limiter.check(s, &i, t0), Decision::Allowed);
        }
        assert!(limiter.tracked() <= 1000 + SHARDS, "{}", limiter.tracked());
    }

    #[test]
    fn refilled_buckets_are_dropped_before_active_ones() {
        let s = spec("1/s", 2);
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(10);
        let mut buckets = HashMap::new();
        // Idle for 10 s: full again, so forgetting it changes nothing.
        buckets.insert(
            1,
            Bucket {
                tokens: 0.0,
                updated: t0,
            },
        );
        // Just used: forgetting it would hand its client a fresh burst.
        buckets.insert(
            2,
            Bucket {
                tokens: 0.0,
                updated: now,
            },
        );
        evict(&mut buckets, s, now, 2);
        assert_eq!(buckets.keys().copied().collect::<Vec<_>>(), [2]);
        // When every bucket is active, half of them go.
        let mut busy: HashMap<u64, Bucket> = (0..10)
            .map(|k| {
                (
                    k,
                    Bucket {
                        tokens: 0.0,
                        updated: now,
                    },
                )
            })
            .collect();
        evict(&mut busy, s, now, 10);
        assert_eq!(busy.len(), 5);
    }

    #[test]
    fn limits_section_bounds_name_their_keys() {
        assert!(LimitsConfig::default().violations().is_empty());
        let c = LimitsConfig {
            per_ip: RateSetting::Limit {
                count: 0,
                per: Period::Second,
            },
            burst: MAX_BURST + 1,
            max_buckets: 10,
            ..LimitsConfig::default()
        };
        let keys: Vec<_> = c.violations().into_iter().map(|v| v.key).collect();
        assert_eq!(
            keys,
            ["limits.per_ip", "limits.burst", "limits.max_buckets"]
        );
    }
}
