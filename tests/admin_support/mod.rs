//! What the admin API's and the console's tests share: a runtime, a daemon configuration on
//! free loopback ports, and the token the daemon generated.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use sluice::config::{Config, HumanDuration};

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Every listener on a free loopback port, one partition, batches sent after 50 ms.
pub fn config(dir: &Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.wal.partitions = 1;
    config.publish.batch_age = HumanDuration(Duration::from_millis(50));
    config
}

/// The token a daemon with data directory `dir` generated at start.
pub fn token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_string()
}
