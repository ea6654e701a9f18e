//! `sluice config show`: the effective configuration and where each value came from.
//!
//! TOML output keeps the file format an operator can copy, with `# from: <source>` after each
//! value; `--json` gives `{"dotted.key": {"value": …, "source": "…"}}`. Values of keys whose
//! name suggests a secret (`*key*`, `*password*`, `*secret*`, `*token*`) are never printed.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{json, Value};

use crate::config::{flatten, is_secret_key, Loaded};

/// What is printed instead of a secret's value.
pub const REDACTED: &str = "<redacted>";

/// `(dotted key, value, source)` for every key, secrets redacted.
pub fn entries(loaded: &Loaded) -> Vec<(String, Value, String)> {
    redacted(flatten(&loaded.config), &loaded.sources)
}

/// Pairs each value with its source, replacing secret-looking keys' non-empty values by
/// [`REDACTED`].
fn redacted(
    values: BTreeMap<String, Value>,
    sources: &BTreeMap<String, String>,
) -> Vec<(String, Value, String)> {
    values
        .into_iter()
        .map(|(key, value)| {
            // An empty secret (none configured) is shown as it is: there is nothing to hide,
            // and the operator sees that none is set.
            let empty = matches!(&value, Value::String(v) if v.is_empty())
                || matches!(&value, Value::Array(v) if v.is_empty());
            let value = if is_secret_key(&key) && !empty {
                Value::String(REDACTED.into())
            } else {
                value
            };
            let source = sources
                .get(&key)
                .cloned()
                .unwrap_or_else(|| "default".into());
            (key, value, source)
        })
        .collect()
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
        Value::Object(_) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn loaded() -> Loaded {
        let config = Config::default();
        let sources = flatten(&config)
            .into_keys()
            .map(|k| (k, "default".to_string()))
            .collect();
        Loaded { config, sources }
    }

    #[test]
    fn toml_output_parses_back_to_the_same_configuration() {
        let mut out = Vec::new();
        show(&loaded(), false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("capacity = \"4GiB\"  # from: default"),
            "{text}"
        );
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn json_output_has_value_and_source_per_key() {
        let mut out = Vec::new();
        show(&loaded(), true, &mut out).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["wal.capacity"]["value"], "4GiB");
        assert_eq!(v["wal.capacity"]["source"], "default");
        assert_eq!(v["server.listen"]["value"], "0.0.0.0:8080");
    }

    #[test]
    fn keys_that_look_secret_are_redacted() {
        assert!(is_secret_key("segment.write_key"));
        assert!(is_secret_key("clickhouse.password"));
        assert!(is_secret_key("auth.api_token"));
        assert!(is_secret_key("client_secret"));
        assert!(!is_secret_key("wal.capacity"));
        assert!(!is_secret_key("clickhouse.url"));
        let values: BTreeMap<String, Value> = [
            ("clickhouse.password".to_string(), json!("hunter2")),
            ("clickhouse.url".to_string(), json!("http://ch")),
        ]
        .into();
        let sources = [("clickhouse.password".to_string(), "env X".to_string())].into();
        let e = redacted(values, &sources);
        assert_eq!(
            e[0],
            (
                "clickhouse.password".into(),
                json!(REDACTED),
                "env X".into()
            )
        );
        assert_eq!(
            e[1],
            (
                "clickhouse.url".into(),
                json!("http://ch"),
                "default".into()
            )
        );
    }
}
