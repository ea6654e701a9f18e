//! Shared helpers of the `deploy_*` tests: reading the files under `deploy/`, and asking the
//! real `sluice` binary (`config show --json`) what configuration a deployment's file and
//! environment produce, so the checks compare against sluice's own loader and defaults rather
//! than a copy of them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_norway::Value;
use sluice::config::{ByteSize, HumanDuration};

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `deploy/` in the repository.
pub fn deploy() -> PathBuf {
    repo().join("deploy")
}

/// Reads a file, naming it when it is missing.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Parses one YAML document.
pub fn yaml(path: &Path) -> Value {
    serde_norway::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// Parses every document of a multi-document YAML file.
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// `value[key]` for a path of mapping keys, or `None`.
pub fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut v = value;
    for key in path {
        v = v.as_mapping()?.get(*key)?;
    }
    Some(v)
}

/// A string at `path`, panicking with the path when absent.
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {}", path.join(".")))
}

/// The effective configuration as `sluice config show --json` prints it: dotted key → value.
#[derive(Debug, Clone)]
pub struct Effective(pub BTreeMap<String, serde_json::Value>);

impl Effective {
    /// A key's value as text.
    pub fn text(&self, key: &str) -> String {
        match self.0.get(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => panic!("`config show` printed no key {key}"),
        }
    }

    /// The port of a `listen` address.
    pub fn port(&self, key: &str) -> u16 {
        let addr = self.text(key);
        addr.parse::<std::net::SocketAddr>()
            .unwrap_or_else(|e| panic!("{key} = {addr} is not an address: {e}"))
            .port()
    }

    /// A duration key.
    pub fn duration(&self, key: &str) -> Duration {
        let text = self.text(key);
        text.parse::<HumanDuration>()
            .unwrap_or_else(|e| panic!("{key} = {text}: {e}"))
            .get()
    }

    /// A size key, in bytes.
    pub fn bytes(&self, key: &str) -> u64 {
        let text = self.text(key);
        text.parse::<ByteSize>()
            .unwrap_or_else(|e| panic!("{key} = {text}: {e}"))
            .bytes()
    }
}

/// Runs `sluice config show --json` with exactly `env` (no inherited `SLUICE_*` variable) and
/// an optional configuration file, and returns the effective configuration. Panics with the
/// binary's message when it refuses the configuration (an unknown key, a bad value).
pub fn effective(config_file: Option<&Path>, env: &[(String, String)]) -> Effective {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.env_clear();
    for keep in ["PATH", "HOME", "TMPDIR"] {
        if let Ok(v) = std::env::var(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.args(["config", "show", "--json"]);
    if let Some(file) = config_file {
        cmd.arg("--config").arg(file);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cannot run the sluice binary");
    assert!(
        out.status.success(),
        "sluice refuses this deployment's configuration (env {env:?}, file {config_file:?}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| {
            panic!(
                "`config show --json` printed no JSON object ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
    let values = map
        .into_iter()
        .map(|(k, v)| {
            let value = v
                .get("value")
                .cloned()
                .unwrap_or_else(|| panic!("`config show --json` entry {k} has no value: {v}"));
            (k, value)
        })
        .collect();
    Effective(values)
}

/// Resolves docker compose's `${NAME:-default}` / `${NAME-default}` interpolation to the
/// default (what an operator gets without setting NAME). A bare `${NAME}` is refused: every
/// variable in these files must have a working default.
pub fn compose_default(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .unwrap_or_else(|| panic!("unterminated ${{ in {value}"))
            + start;
        let inner = &rest[start + 2..end];
        let default = inner
            .split_once(":-")
            .or_else(|| inner.split_once('-'))
            .map(|(_, d)| d)
            .unwrap_or_else(|| panic!("`${{{inner}}}` in {value} has no default"));
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A YAML scalar as text (numbers and booleans too).
pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

/// Parses a Kubernetes/compose duration such as `45s` or `1m30s`.
pub fn duration(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or_else(|e| panic!("`{text}` is not a duration: {e}"))
}
