//! `sluice config show`: the effective configuration and where each value came from.
//!
//! TOML output keeps the file format an operator can copy, with `# from: <source>` after each
//! value; `--json` gives `{"dotted.key": {"value": …, "source": "…"}}` (one document).
//!
//! # Redaction
//!
//! Credentials are never printed. A key is a credential when a word of its name (or of any
//! section above it) is `key(s)`, `password`, `passwd`, `secret(s)`, `token(s)` or
//! `credential(s)` (so `clickhouse.password`, `segment.write_keys`, `pycolytics.api_keys`,
//! `collect.api_keys`, `auth.snowplow_keys`), or when [`is_secret_key`] says so. Its text is
//! replaced by [`REDACTED`]: a string by the marker, a list by as many markers as it has items
//! (the count stays visible), a table by numbered keys with redacted values (a table's keys may
//! themselves be secrets). Switches and numbers (`enrich.strict_body_keys = true`) are not
//! credentials and are shown; an empty value is shown as it is (nothing to hide, and the
//! operator sees that none is set). A password inside a URL (`http://user:pw@host`) is
//! redacted wherever it appears.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{json, Value};

use crate::config::load::{is_secret_key, Loaded};
use crate::logging::redact_url;

/// What is printed instead of a secret's value.
pub const REDACTED: &str = "<redacted>";

/// Words that make a key name a credential.
const SECRET_WORDS: &[&str] = &[
    "key",
    "keys",
    "password",
    "passwd",
    "secret",
    "secrets",
    "token",
    "tokens",
    "credential",
    "credentials",
];

/// Keys whose name has a secret-looking word but whose value is not a credential.
const NOT_SECRET: &[&str] = &["limits.per_key", "auth.header"];

/// Whether the value at `key` (dotted) must be redacted.
pub fn is_credential(key: &str) -> bool {
    if NOT_SECRET.contains(&key) {
        return false;
    }
    is_secret_key(key)
        || key.split('.').any(|segment| {
            segment
                .to_ascii_lowercase()
                .split(['_', '-'])
                .any(|word| SECRET_WORDS.contains(&word))
        })
}

/// `(dotted key, value, source)` for every key, secrets redacted.
pub fn entries(loaded: &Loaded) -> Vec<(String, Value, String)> {
    // Serializing plain data (strings, numbers, enums) cannot fail.
    let tree = serde_json::to_value(&loaded.config).unwrap_or_default();
    redacted(tree, &loaded.sources)
}

/// The leaves of `tree` with their sources: tables are walked into, except a credential's
/// (redacted whole) and an empty one (shown as `{}`, so every key is listed).
fn redacted(tree: Value, sources: &BTreeMap<String, String>) -> Vec<(String, Value, String)> {
    fn walk(key: String, value: Value, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) if !map.is_empty() && (key.is_empty() || !is_credential(&key)) => {
                for (k, v) in map {
                    let child = if key.is_empty() {
                        k
                    } else {
                        format!("{key}.{k}")
                    };
                    walk(child, v, out);
                }
            }
            value if is_credential(&key) => out.push((key, redact(value))),
            value => out.push((key, redact_url_passwords(value))),
        }
    }
    let mut leaves = Vec::new();
    walk(String::new(), tree, &mut leaves);
    leaves
        .into_iter()
        .map(|(key, value)| {
            let prefix = format!("{key}.");
            let source = sources
                .get(&key)
                .or_else(|| {
                    sources
                        .iter()
                        .find(|(k, _)| k.starts_with(&prefix))
                        .map(|(_, s)| s)
                })
                .cloned()
                .unwrap_or_else(|| "default".into());
            (key, value, source)
        })
        .collect()
}

/// A credential's value with its text replaced, its shape kept.
fn redact(value: Value) -> Value {
    match value {
        Value::String(s) if s.is_empty() => Value::String(s),
        Value::String(_) => Value::String(REDACTED.into()),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .enumerate()
                .map(|(i, (_, v))| (format!("redacted_{}", i + 1), redact(v)))
                .collect(),
        ),
        other @ (Value::Null | Value::Bool(_) | Value::Number(_)) => other,
    }
}

/// Any string that is a URL with a password gets the password redacted.
fn redact_url_passwords(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(redact_url(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(redact_url_passwords).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, redact_url_passwords(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Writes the configuration as TOML (or JSON), each value with its source.
pub fn show(loaded: &Loaded, as_json: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let entries = entries(loaded);
    if as_json {
        let obj: serde_json::Map<String, Value> = entries
            .into_iter()
            .map(|(k, value, source)| (k, json!({ "value": value, "source": source })))
            .collect();
        return writeln!(out, "{}", Value::Object(obj));
    }

    // Top-level values first (TOML requires it), then one table per section.
    let mut sections: BTreeMap<String, Vec<(String, Value, String)>> = BTreeMap::new();
    for (key, value, source) in entries {
        let (section, leaf) = match key.rsplit_once('.') {
            Some((s, l)) => (s.to_string(), l.to_string()),
            None => (String::new(), key.clone()),
        };
        sections
            .entry(section)
            .or_default()
            .push((leaf, value, source));
    }
    let mut first = true;
    for (section, items) in sections {
        if !section.is_empty() {
            if !first {
                writeln!(out)?;
            }
            writeln!(out, "[{section}]")?;
        }
        first = false;
        for (leaf, value, source) in items {
            writeln!(out, "{leaf} = {}  # from: {source}", toml_value(&value))?;
        }
    }
    Ok(())
}

/// A JSON scalar (or array) written as a TOML value.
fn toml_value(v: &Value) -> String {
    match v {
        Value::Null => "\"\"".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // A JSON string literal is a valid TOML basic string (same escapes).
        Value::String(_) => v.to_string(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(toml_value).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{} = {}", Value::String(k.clone()), toml_value(v)))
                .collect();
            if inner.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", inner.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::flatten;
    use crate::config::Config;

    fn loaded() -> Loaded {
        let config = Config::default();
        let sources = flatten(&config)
            .into_keys()
            .map(|k| (k, "default".to_string()))
            .collect();
        Loaded { config, sources }
    }

    fn text(loaded: &Loaded, as_json: bool) -> String {
        let mut out = Vec::new();
        show(loaded, as_json, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn toml_output_parses_back_to_the_same_configuration() {
        let text = text(&loaded(), false);
        assert!(
            text.contains("capacity = \"4GiB\"  # from: default"),
            "{text}"
        );
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn json_output_has_value_and_source_per_key() {
        let v: Value = serde_json::from_str(&text(&loaded(), true)).unwrap();
        assert_eq!(v["wal.capacity"]["value"], "4GiB");
        assert_eq!(v["wal.capacity"]["source"], "default");
        assert_eq!(v["server.listen"]["value"], "0.0.0.0:8080");
    }

    #[test]
    fn credentials_are_recognised_by_any_word_of_their_name() {
        for key in [
            "clickhouse.password",
            "segment.write_keys",
            "pycolytics.api_keys",
            "collect.api_keys",
            "auth.snowplow_keys",
            "auth.api_token",
            "client_secret",
            "s3.credentials.id",
        ] {
            assert!(is_credential(key), "{key}");
        }
        for key in [
            "wal.capacity",
            "clickhouse.url",
            "limits.per_key",
            "auth.header",
            "monkey.business",
        ] {
            assert!(!is_credential(key), "{key}");
        }
    }

    #[test]
    fn every_kind_of_credential_is_redacted_and_everything_else_is_shown() {
        let tree = json!({
            "clickhouse": {
                "password": "hunter2",
                "url": "http://sluice:pa55word@ch:8123/?database=x",
                "user": "sluice",
            },
            "segment": { "write_keys": ["wk-1", "wk-2"] },
            "pycolytics": { "api_keys": [] },
            "auth": { "snowplow_keys": { "sp-key-in-a-name": "app" }, "header": "X-API-Key" },
            "enrich": { "strict_body_keys": true },
            "limits": { "per_key": "100/s" },
            "empty": {},
        });
        let sources = [
            ("clickhouse.password".to_string(), "env X".to_string()),
            (
                "auth.snowplow_keys.sp-key-in-a-name".to_string(),
                "file f".to_string(),
            ),
        ]
        .into();
        let e: BTreeMap<String, (Value, String)> = redacted(tree, &sources)
            .into_iter()
            .map(|(k, v, s)| (k, (v, s)))
            .collect();
        let all = format!("{e:?}");
        for secret in ["hunter2", "pa55word", "wk-1", "wk-2", "sp-key-in-a-name"] {
            assert!(!all.contains(secret), "{secret} leaked: {all}");
        }
        assert_eq!(e["clickhouse.password"], (json!(REDACTED), "env X".into()));
        assert_eq!(
            e["clickhouse.url"].0,
            json!("http://sluice:<redacted>@ch:8123/?database=x")
        );
        assert_eq!(e["clickhouse.user"].0, json!("sluice"));
        assert_eq!(e["segment.write_keys"].0, json!([REDACTED, REDACTED]));
        assert_eq!(e["pycolytics.api_keys"].0, json!([]));
        assert_eq!(
            e["auth.snowplow_keys"],
            (json!({ "redacted_1": REDACTED }), "file f".into())
        );
        assert_eq!(e["auth.header"].0, json!("X-API-Key"));
        assert_eq!(e["enrich.strict_body_keys"].0, json!(true));
        assert_eq!(e["limits.per_key"].0, json!("100/s"));
        assert_eq!(e["empty"].0, json!({}));
    }

    #[test]
    fn urls_without_a_password_are_unchanged() {
        for url in [
            "http://127.0.0.1:8123",
            "http://user@ch:8123",
            "https://ch/path?x=a@b",
            "not a url",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn a_redacted_table_is_still_valid_toml() {
        let v = json!({ "redacted_1": REDACTED, "redacted_2": [REDACTED] });
        let line = format!("x = {}", toml_value(&v));
        let parsed: toml::Table = toml::from_str(&line).unwrap();
        assert_eq!(parsed["x"]["redacted_1"].as_str(), Some(REDACTED));
    }
}
