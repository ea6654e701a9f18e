//! Loading: built-in defaults < TOML file < environment < flags, with each value's source
//! kept for `config show`, and the keys that are secrets.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::collections::BTreeMap;
use std::path::Path;

use super::{Config, ConfigError};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

/// Prefix of every environment variable that sets a configuration key.
pub const ENV_PREFIX: &str = "SLUICE_";

/// Separator between nesting levels in an environment variable's name
/// (`SLUICE_WAL__CAPACITY` sets `wal.capacity`).
pub const ENV_NESTING: &str = "__";

/// The environment variable naming the configuration file. It is read by the CLI as the default
/// of `--config` and is not itself a configuration key.
pub const CONFIG_FILE_ENV: &str = "SLUICE_CONFIG";

/// Environment variables with this prefix belong to the test suite (e.g.
/// `SLUICE_TEST_CLICKHOUSE_URL`) and are never configuration keys.
pub const TEST_ENV_PREFIX: &str = "SLUICE_TEST_";

/// How a value set by no source is reported.
const DEFAULT_SOURCE: &str = "default";

/// Provider name of the environment (reported as `env VARIABLE`).
const ENV_SOURCE: &str = "env";

/// Values given on the command line; they win over every other source. `None` = not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--listen` → `server.listen`.
    pub listen: Option<SocketAddr>,
    /// `--metrics-listen` → `metrics.listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `--admin-listen` → `admin.listen`.
    pub admin_listen: Option<SocketAddr>,
    /// `--data-dir` → `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// `--clickhouse-url` → `clickhouse.url`.
    pub clickhouse_url: Option<String>,
}

impl Overrides {
    /// `(dotted key, flag, value)` for each flag that was given.
    fn entries(&self) -> Vec<(&'static str, &'static str, Value)> {
        let mut out = Vec::new();
        if let Some(v) = self.listen {
            out.push(("server.listen", "--listen", Value::from(v.to_string())));
        }
        if let Some(v) = self.metrics_listen {
            out.push((
                "metrics.listen",
                "--metrics-listen",
                Value::from(v.to_string()),
            ));
        }
        if let Some(v) = self.admin_listen {
            out.push(("admin.listen", "--admin-listen", Value::from(v.to_string())));
        }
        if let Some(v) = &self.data_dir {
            out.push((
                "data_dir",
                "--data-dir",
                Value::from(v.to_string_lossy().into_owned()),
            ));
        }
        if let Some(v) = &self.clickhouse_url {
            out.push(("clickhouse.url", "--clickhouse-url", Value::from(v.clone())));
        }
        out
    }
}

/// Where a configuration is read from: the file and the command-line flags. `serve` keeps it
/// to read the configuration again on SIGHUP (the environment is read again too).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origin {
    /// `--config FILE` or `SLUICE_CONFIG`.
    pub file: Option<PathBuf>,
    /// The flags given on the command line.
    pub overrides: Overrides,
}

impl Origin {
    /// Loads the configuration from this origin and the current environment ([`load`]).
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        load(self.file.as_deref(), &self.overrides)
    }
}

/// A loaded configuration and where each of its values came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The effective configuration (not yet validated; call [`Config::validate`]).
    pub config: Config,
    /// For every dotted key (`wal.capacity`): `default`, `file PATH`, `env SLUICE_…` or
    /// `flag --…`.
    pub sources: BTreeMap<String, String>,
}

/// Loads the configuration: defaults < `file` (TOML) < `SLUICE_*` environment variables <
/// `overrides`. Unknown keys and unparseable values are errors naming the key and its source.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    load_from(file, &env, overrides)
}

/// [`load`] with the environment given explicitly (tests pass their own, so they never race on
/// the process environment).
pub fn load_from(
    file: Option<&Path>,
    env: &[(String, String)],
    overrides: &Overrides,
) -> Result<Loaded, ConfigError> {
    let file_source = file.map(|p| format!("file {}", p.display()));
    let file_text = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            if let Err(e) = toml::from_str::<toml::Table>(&text) {
                return Err(ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: e.to_string().trim_end().to_string(),
                });
            }
            Some(text)
        }
        None => None,
    };
    let mut env = EnvVars::new(env)?;

    // An environment value is typed from its text (`100` is a number), which is wrong for a
    // string key given a number-like value (`SLUICE_CLICKHOUSE__PASSWORD=12345`): on a type
    // error at such a key, take its text as a string and try again. Each key is retried once.
    loop {
        let mut figment = Figment::new().merge(Named {
            inner: Serialized::defaults(Config::default()),
            name: DEFAULT_SOURCE.into(),
        });
        if let (Some(text), Some(name)) = (&file_text, &file_source) {
            figment = figment.merge(Named {
                inner: Toml::string(text),
                name: name.clone(),
            });
        }
        figment = figment.merge(Named {
            inner: env.clone(),
            name: ENV_SOURCE.into(),
        });
        for (key, flag, value) in overrides.entries() {
            figment = figment.merge(Named {
                inner: Serialized::default(key, value),
                name: format!("flag {flag}"),
            });
        }

        let config: Config = match figment.extract() {
            Ok(config) => config,
            Err(e) => {
                if let Some(key) = env_type_error_key(&e, &figment, &env) {
                    if env.take_as_text(&key) {
                        continue;
                    }
                }
                return Err(from_figment(e, &|key| {
                    source_of(&figment, &env, file_source.as_deref(), key)
                }));
            }
        };

        let sources = leaf_keys(&config)
            .into_iter()
            .map(|key| {
                let source = source_of(&figment, &env, file_source.as_deref(), &key);
                (key, source)
            })
            .collect();
        return Ok(Loaded { config, sources });
    }
}

/// Where `key`'s effective value came from, as `config show` prints it.
fn source_of(figment: &Figment, env: &EnvVars, file_source: Option<&str>, key: &str) -> String {
    match figment.find_metadata(key).map(|m| m.name.as_ref()) {
        Some(ENV_SOURCE) => format!("env {}", env.var_for(key)),
        Some(name) => name.to_string(),
        // A key nobody provided (e.g. an unknown key's parent): best guess from the sources
        // that could have named it.
        None => env
            .has(key)
            .then(|| format!("env {}", env.var_for(key)))
            .or_else(|| file_source.map(String::from))
            .unwrap_or_else(|| "unknown source".into()),
    }
}

/// The key of a type error caused by an environment variable, if that is what `e` is.
fn env_type_error_key(e: &figment::Error, figment: &Figment, env: &EnvVars) -> Option<String> {
    let first = e.clone().into_iter().next()?;
    if !matches!(first.kind, figment::error::Kind::InvalidType(..)) {
        return None;
    }
    let key = first.path.join(".");
    let from_env = figment
        .find_metadata(&key)
        .is_some_and(|m| m.name == ENV_SOURCE);
    (from_env && env.has(&key)).then_some(key)
}

/// Turns figment's first error into a [`ConfigError`] that names the full dotted key and the
/// source that supplied it.
fn from_figment(e: figment::Error, source_of: &dyn Fn(&str) -> String) -> ConfigError {
    let Some(e) = e.into_iter().next() else {
        return ConfigError::Other("unknown error".into());
    };
    let path = e.path.join(".");
    match &e.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            let key = if e.path.last().map(String::as_str) == Some(field.as_str()) {
                path.clone()
            } else if path.is_empty() {
                field.clone()
            } else {
                format!("{path}.{field}")
            };
            ConfigError::UnknownKey {
                origin: source_of(&key),
                key,
                expected: expected.iter().map(|s| s.to_string()).collect(),
            }
        }
        kind if !path.is_empty() => ConfigError::InvalidValue {
            origin: source_of(&path),
            key: path,
            message: kind.to_string(),
        },
        _ => ConfigError::Other(e.to_string()),
    }
}

/// A provider with our own name in its metadata, so each value's source can be reported.
struct Named<P> {
    inner: P,
    name: String,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// The `SLUICE_*` environment variables as a figment provider. `SLUICE_CONFIG` (the file's
/// path) and `SLUICE_TEST_*` (the test suite's) are skipped; `__` separates nesting levels; names are case-insensitive.
#[derive(Debug, Clone)]
struct EnvVars {
    /// dotted key → (variable name, raw value)
    vars: BTreeMap<String, (String, String)>,
    /// Keys whose value is taken as text rather than typed from it.
    as_text: std::collections::BTreeSet<String>,
}

impl EnvVars {
    fn new(env: &[(String, String)]) -> Result<EnvVars, ConfigError> {
        let mut vars = BTreeMap::new();
        for (name, value) in env {
            let upper = name.to_ascii_uppercase();
            let Some(rest) = upper.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if upper == CONFIG_FILE_ENV || upper.starts_with(TEST_ENV_PREFIX) {
                continue;
            }
            let key = rest.to_ascii_lowercase().replace(ENV_NESTING, ".");
            if key.split('.').any(str::is_empty) {
                return Err(ConfigError::BadEnvName { name: name.clone() });
            }
            vars.insert(key, (name.clone(), value.clone()));
        }
        Ok(EnvVars {
            vars,
            as_text: Default::default(),
        })
    }

    fn has(&self, key: &str) -> bool {
        self.vars.contains_key(key)
    }

    /// Takes `key`'s value as text from now on; false if it already was.
    fn take_as_text(&mut self, key: &str) -> bool {
        self.has(key) && self.as_text.insert(key.to_string())
    }

    /// The variable that set `key` (or would set it).
    fn var_for(&self, key: &str) -> String {
        match self.vars.get(key) {
            Some((name, _)) => name.clone(),
            None => format!(
                "{ENV_PREFIX}{}",
                key.replace('.', ENV_NESTING).to_ascii_uppercase()
            ),
        }
    }
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_SOURCE)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (key, (_, raw)) in &self.vars {
            let value: Value = if self.as_text.contains(key) {
                Value::from(raw.clone())
            } else {
                raw.parse().unwrap_or_else(|_| Value::from(raw.clone()))
            };
            let mut parts: Vec<&str> = key.split('.').collect();
            let leaf = parts.pop().unwrap_or_default();
            let mut dict = &mut root;
            for part in parts {
                let entry = dict
                    .entry(part.to_string())
                    .or_insert_with(|| Value::from(Dict::new()));
                if !matches!(entry, Value::Dict(..)) {
                    *entry = Value::from(Dict::new());
                }
                let Value::Dict(_, inner) = entry else {
                    unreachable!("just made a dict")
                };
                dict = inner;
            }
            dict.insert(leaf.to_string(), value);
        }
        Ok(Profile::Default.collect(root))
    }
}

/// Every configuration value as `(dotted key, JSON value)`, keys sorted.
pub fn flatten(config: &Config) -> BTreeMap<String, serde_json::Value> {
    // Serializing plain data (strings, numbers, enums) cannot fail.
    flatten_value(serde_json::to_value(config).unwrap_or_default())
}

/// The leaves of a JSON tree as `(dotted key, value)`.
fn flatten_value(value: serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    fn walk(prefix: &str, v: serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

fn leaf_keys(config: &Config) -> Vec<String> {
    flatten(config).into_keys().collect()
}

/// Whether a key's value must not be printed (`config show`): names containing `key`,
/// `password`, `secret` or `token`.
pub fn is_secret_key(key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    // Credentials by name: passwords, secrets, tokens and API/write/auth keys. Not every name
    // containing "key" (e.g. `enrich.strict_body_keys` is a switch, not a secret).
    matches!(leaf.as_str(), "key" | "keys")
        || [
            "password",
            "secret",
            "token",
            "tokens",
            "api_key",
            "api_keys",
            "write_key",
            "write_keys",
            "auth_key",
            "auth_keys",
            "snowplow_keys",
        ]
        .iter()
        .any(|w| leaf.ends_with(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn load_err(file: Option<&Path>, env_: &[(&str, &str)]) -> ConfigError {
        load_from(file, &env(env_), &Overrides::default()).unwrap_err()
    }

    #[test]
    fn defaults_apply_when_no_source_sets_anything() {
        let loaded = load_from(None, &env(&[("PATH", "/bin")]), &Overrides::default()).unwrap();
        assert_eq!(loaded.config, Config::default());
        assert!(!loaded.sources.is_empty());
        assert!(
            loaded.sources.values().all(|s| s == "default"),
            "{:?}",
            loaded.sources
        );
        assert!(loaded.sources.contains_key("wal.capacity"));
        assert!(loaded.sources.contains_key("data_dir"));
    }

    #[test]
    fn file_is_overridden_by_env_which_is_overridden_by_flags() {
        let f = file(
            "data_dir = \"/from-file\"\n\
             [server]\nlisten = \"127.0.0.1:1111\"\nmax_body_bytes = \"1MiB\"\n\
             [wal]\ncapacity = \"1GiB\"\nsegment_size = \"8MiB\"\n\
             [clickhouse]\nurl = \"http://file:8123\"\n",
        );
        let vars = env(&[
            ("SLUICE_WAL__CAPACITY", "2GiB"),
            ("SLUICE_SERVER__LISTEN", "127.0.0.1:2222"),
            ("SLUICE_DATA_DIR", "/from-env"),
            ("SLUICE_CONFIG", "/ignored/path.toml"),
        ]);
        let flags = Overrides {
            listen: Some("127.0.0.1:3333".parse().unwrap()),
            ..Overrides::default()
        };
        let loaded = load_from(Some(f.path()), &vars, &flags).unwrap();
        let c = &loaded.config;
        let s = &loaded.sources;
        let from_file = format!("file {}", f.path().display());

        // flag beats env beats file
        assert_eq!(c.server.listen, "127.0.0.1:3333".parse().unwrap());
        assert_eq!(s["server.listen"], "flag --listen");
        // env beats file
        assert_eq!(c.wal.capacity, ByteSize(2 << 30));
        assert_eq!(s["wal.capacity"], "env SLUICE_WAL__CAPACITY");
        assert_eq!(c.data_dir, PathBuf::from("/from-env"));
        assert_eq!(s["data_dir"], "env SLUICE_DATA_DIR");
        // file beats default
        assert_eq!(c.server.max_body_bytes, ByteSize(1 << 20));
        assert_eq!(s["server.max_body_bytes"], from_file);
        assert_eq!(c.wal.segment_size, ByteSize(8 << 20));
        assert_eq!(c.clickhouse.url, "http://file:8123");
        assert_eq!(s["clickhouse.url"], from_file);
        // untouched keys stay default
        assert_eq!(c.wal.queue_capacity, 65_536);
        assert_eq!(s["wal.queue_capacity"], "default");
        assert_eq!(s["metrics.listen"], "default");
    }

    #[test]
    fn every_flag_overrides_its_key() {
        let flags = Overrides {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            metrics_listen: Some("127.0.0.1:2".parse().unwrap()),
            admin_listen: None,
            data_dir: Some("/flag".into()),
            clickhouse_url: Some("http://flag:1".into()),
        };
        let vars = env(&[
            ("SLUICE_METRICS__LISTEN", "127.0.0.1:9"),
            ("SLUICE_CLICKHOUSE__URL", "http://env:1"),
        ]);
        let loaded = load_from(None, &vars, &flags).unwrap();
        assert_eq!(loaded.config.metrics.listen, "127.0.0.1:2".parse().unwrap());
        assert_eq!(loaded.sources["metrics.listen"], "flag --metrics-listen");
        assert_eq!(loaded.config.data_dir, PathBuf::from("/flag"));
        assert_eq!(loaded.sources["data_dir"], "flag --data-dir");
        assert_eq!(loaded.config.clickhouse.url, "http://flag:1");
        assert_eq!(loaded.sources["clickhouse.url"], "flag --clickhouse-url");
    }

    #[test]
    fn env_values_are_typed_from_their_text() {
        let vars = env(&[
            ("SLUICE_WAL__PARTITIONS", "3"),
            ("SLUICE_WAL__FULL_POLICY", "drop_oldest"),
            ("SLUICE_SERVER__REQUEST_TIMEOUT", "1m 30s"),
            ("SLUICE_WAL__SEGMENT_SIZE", "1048576"),
            ("SLUICE_LOG__FORMAT", "json"),
        ]);
        let c = load_from(None, &vars, &Overrides::default())
            .unwrap()
            .config;
        assert_eq!(c.wal.partitions, 3);
        assert_eq!(c.wal.full_policy, FullPolicySetting::DropOldest);
        assert_eq!(
            c.server.request_timeout,
            HumanDuration(Duration::from_secs(90))
        );
        assert_eq!(c.wal.segment_size, ByteSize(1 << 20));
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn key_lists_and_rate_limits_come_from_the_environment() {
        let vars = env(&[
            ("SLUICE_SEGMENT__WRITE_KEYS", r#"["k1","k2"]"#),
            ("SLUICE_PYCOLYTICS__API_KEYS", r#"["123"]"#),
            ("SLUICE_COLLECT__API_KEYS", "[]"),
            ("SLUICE_LIMITS__PER_IP", "1000/s"),
            ("SLUICE_LIMITS__PER_KEY", "60/min"),
            ("SLUICE_LIMITS__BURST", "20"),
            ("SLUICE_AUTH__HEADER", "X-Sluice-Key"),
            ("SLUICE_SERVER__MAX_DECOMPRESSED_BYTES", "8MiB"),
        ]);
        let loaded = load_from(None, &vars, &Overrides::default()).unwrap();
        let c = &loaded.config;
        assert_eq!(c.segment.write_keys, ["k1", "k2"]);
        assert_eq!(c.pycolytics.api_keys, ["123"]);
        assert!(c.collect.api_keys.is_empty());
        assert_eq!(c.limits.per_ip.to_string(), "1000/s");
        assert_eq!(c.limits.per_ip.per_second(), Some(1000.0));
        assert_eq!(c.limits.per_key.per_second(), Some(1.0));
        assert_eq!(c.limits.burst, 20);
        assert_eq!(c.auth.header, "X-Sluice-Key");
        assert_eq!(c.server.max_decompressed_bytes, ByteSize(8 << 20));
        assert_eq!(
            loaded.sources["segment.write_keys"],
            "env SLUICE_SEGMENT__WRITE_KEYS"
        );
        c.validate().unwrap();
        // A rate that does not parse names the key and the accepted forms.
        let msg = load_err(None, &[("SLUICE_LIMITS__PER_IP", "fast")]).to_string();
        assert!(
            msg.contains("`limits.per_ip`") && msg.contains("60/min"),
            "{msg}"
        );
    }

    #[test]
    fn every_key_list_is_a_secret_and_the_key_header_is_not() {
        for key in [
            "segment.write_keys",
            "pycolytics.api_keys",
            "collect.api_keys",
            "auth.snowplow_keys",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        assert!(!is_secret_key("auth.header"));
        assert!(!is_secret_key("limits.per_key"));
        assert!(!is_secret_key("segment.max_batch_items"));
        // Every secret key that exists is recognised as one.
        let keys = flatten(&Config::default());
        let secrets: Vec<_> = keys.keys().filter(|k| is_secret_key(k)).collect();
        assert!(secrets.len() >= 4, "{secrets:?}");
    }

    #[test]
    fn a_number_like_env_value_for_a_text_key_is_taken_as_text() {
        let vars = env(&[
            ("SLUICE_DATA_DIR", "2024"),
            ("SLUICE_LOG__LEVEL", "true"),
            ("SLUICE_WAL__QUEUE_CAPACITY", "77"),
        ]);
        let loaded = load_from(None, &vars, &Overrides::default()).unwrap();
        assert_eq!(loaded.config.data_dir, PathBuf::from("2024"));
        assert_eq!(loaded.config.log.level, "true");
        assert_eq!(loaded.config.wal.queue_capacity, 77);
        assert_eq!(loaded.sources["data_dir"], "env SLUICE_DATA_DIR");
        // A text value for a number key is still an error naming the key.
        let msg = load_err(None, &[("SLUICE_WAL__QUEUE_CAPACITY", "many")]).to_string();
        assert!(
            msg.contains("`wal.queue_capacity`") && msg.contains("SLUICE_WAL__QUEUE_CAPACITY"),
            "{msg}"
        );
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_naming_key_and_file() {
        let f = file("[wal]\ncapasity = \"1GiB\"\n");
        let err = load_err(Some(f.path()), &[]);
        let ConfigError::UnknownKey { key, origin, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(key, "wal.capasity");
        assert_eq!(origin, &format!("file {}", f.path().display()));
        let msg = err.to_string();
        assert!(
            msg.contains("`wal.capasity`") && msg.contains("capacity"),
            "{msg}"
        );
        assert_eq!(err.code(), "unknown_key");
    }

    #[test]
    fn an_unknown_top_level_key_in_the_file_is_an_error() {
        let f = file("datadir = \"/x\"\n");
        let err = load_err(Some(f.path()), &[]);
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, .. } if key == "datadir"),
            "{err:?}"
        );
    }

    #[test]
    fn an_unknown_key_in_the_environment_is_an_error_naming_the_variable() {
        let err = load_err(None, &[("SLUICE_WAL__CAPASITY", "1GiB")]);
        let ConfigError::UnknownKey { key, origin, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(key, "wal.capasity");
        assert_eq!(origin, "env SLUICE_WAL__CAPASITY");

        let err = load_err(None, &[("SLUICE_LISTEN", "127.0.0.1:1")]);
        assert!(
            err.to_string().contains("`listen`") && err.to_string().contains("SLUICE_LISTEN"),
            "{err}"
        );
    }

    #[test]
    fn the_config_file_variable_is_not_a_key() {
        let loaded = load_from(
            None,
            &env(&[("SLUICE_CONFIG", "/etc/sluice.toml")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(loaded.config, Config::default());
    }

    #[test]
    fn an_env_name_with_an_empty_level_is_rejected() {
        let err = load_err(None, &[("SLUICE_WAL__", "1")]);
        assert!(matches!(err, ConfigError::BadEnvName { ref name } if name == "SLUICE_WAL__"));
    }

    #[test]
    fn a_bad_size_names_the_key_the_source_and_the_accepted_units() {
        let err = load_err(None, &[("SLUICE_WAL__CAPACITY", "4GiBB")]);
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::InvalidValue { .. }), "{err:?}");
        assert!(msg.contains("`wal.capacity`"), "{msg}");
        assert!(msg.contains("SLUICE_WAL__CAPACITY"), "{msg}");
        assert!(msg.contains("unknown size unit"), "{msg}");

        let f = file("[server]\nmax_body_bytes = \"lots\"\n");
        let msg = load_err(Some(f.path()), &[]).to_string();
        assert!(msg.contains("`server.max_body_bytes`"), "{msg}");
        assert!(msg.contains("is not a size"), "{msg}");
    }

    #[test]
    fn a_bad_duration_names_the_key() {
        let f = file("[server]\nrequest_timeout = \"soon\"\n");
        let err = load_err(Some(f.path()), &[]);
        let msg = err.to_string();
        assert!(msg.contains("`server.request_timeout`"), "{msg}");
        assert!(msg.contains("is not a duration"), "{msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    }

    #[test]
    fn a_bad_address_or_enum_names_the_key() {
        let msg = load_err(None, &[("SLUICE_SERVER__LISTEN", "localhost")]).to_string();
        assert!(msg.contains("`server.listen`"), "{msg}");
        let msg = load_err(None, &[("SLUICE_WAL__FULL_POLICY", "sometimes")]).to_string();
        assert!(
            msg.contains("`wal.full_policy`") && msg.contains("drop_oldest"),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_file_and_bad_toml_are_reported_with_the_path() {
        let err = load_err(Some(Path::new("/nonexistent/sluice.toml")), &[]);
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/sluice.toml"));

        let f = file("[wal\ncapacity = 1\n");
        let err = load_err(Some(f.path()), &[]);
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
        assert!(err.to_string().contains(&f.path().display().to_string()));
    }

    #[test]
    fn the_defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    /// Applies `change` to a default config and asserts validation fails naming `key`.
    fn assert_rejected(key: &str, change: impl FnOnce(&mut Config)) {
        let mut c = Config::default();
        c.wal.partitions = 1;
        change(&mut c);
        let err = c.validate().expect_err(key);
        let ConfigError::OutOfBounds(v) = &err else {
            panic!("{err:?}")
        };
        assert!(v.iter().any(|v| v.key == key), "{key}: {v:?}");
        assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
        assert_eq!(err.code(), "out_of_bounds");
    }

    /// Applies `change` to a default config and asserts it validates.
    fn assert_accepted(change: impl FnOnce(&mut Config)) {
        let mut c = Config::default();
        c.wal.partitions = 1;
        change(&mut c);
        c.validate().unwrap();
    }

    #[test]
    fn every_bound_is_checked_and_names_its_key() {
        assert_rejected("data_dir", |c| c.data_dir = PathBuf::new());
        assert_rejected("server.max_body_bytes", |c| {
            c.server.max_body_bytes = ByteSize(1023)
        });
        assert_rejected("server.max_body_bytes", |c| {
            c.server.max_body_bytes = ByteSize((64 << 20) + 1)
        });
        assert_rejected("server.max_header_bytes", |c| {
            c.server.max_header_bytes = ByteSize((8 << 10) - 1)
        });
        assert_rejected("server.max_header_bytes", |c| {
            c.server.max_header_bytes = ByteSize((1 << 20) + 1)
        });
        let d = |ms| HumanDuration(Duration::from_millis(ms));
        assert_rejected("server.request_timeout", |c| {
            c.server.request_timeout = d(999)
        });
        assert_rejected("server.request_timeout", |c| {
            c.server.request_timeout = d(600_001)
        });
        assert_rejected("server.max_connections", |c| c.server.max_connections = 0);
        assert_rejected("server.max_connections", |c| {
            c.server.max_connections = 1_000_001
        });
        assert_rejected("server.shutdown_grace", |c| {
            c.server.shutdown_grace = d(600_001)
        });
        assert_rejected("server.retry_after", |c| c.server.retry_after = d(999));
        assert_rejected("server.retry_after", |c| {
            c.server.retry_after = d(3_600_001)
        });
        assert_rejected("wal.partitions", |c| c.wal.partitions = 257);
        assert_rejected("wal.segment_size", |c| {
            c.wal.segment_size = ByteSize((64 << 10) - 1)
        });
        assert_rejected("wal.segment_size", |c| {
            c.wal.segment_size = ByteSize((1 << 30) + 1)
        });
        assert_rejected("wal.queue_capacity", |c| c.wal.queue_capacity = 0);
        assert_rejected("wal.queue_capacity", |c| c.wal.queue_capacity = 16_777_217);
        assert_rejected("wal.capacity", |c| {
            c.wal.capacity = ByteSize((64 << 20) - 1)
        });
        assert_rejected("wal.capacity", |c| {
            c.wal.partitions = 4;
            c.wal.capacity = ByteSize(255 << 20);
        });
        assert_rejected("clickhouse.url", |c| c.clickhouse.url = "ch:8123".into());
        assert_rejected("log.level", |c| c.log.level = "sluice=loud".into());
        assert_rejected("server.max_decompressed_bytes", |c| {
            c.server.max_decompressed_bytes = ByteSize((256 << 20) + 1)
        });
        assert_rejected("segment.max_event_bytes", |c| {
            c.segment.max_event_bytes = ByteSize(1023)
        });
        assert_rejected("segment.max_batch_bytes", |c| {
            c.segment.max_batch_bytes = ByteSize((64 << 20) + 1)
        });
        assert_rejected("segment.max_batch_items", |c| c.segment.max_batch_items = 0);
        assert_rejected("segment.write_keys", |c| {
            c.segment.write_keys = vec!["".into()]
        });
        assert_rejected("pycolytics.api_keys", |c| {
            c.pycolytics.api_keys = vec!["a b".into()]
        });
        assert_rejected("collect.api_keys", |c| {
            c.collect.api_keys = vec!["x".repeat(513)]
        });
        assert_rejected("auth.header", |c| c.auth.header = "X Key".into());
        assert_rejected("auth.snowplow_keys", |c| {
            c.auth.snowplow_keys = vec!["\u{7f}".into()]
        });
        assert_rejected("limits.burst", |c| c.limits.burst = u64::MAX);
        assert_rejected("limits.max_buckets", |c| c.limits.max_buckets = 999);
        assert_rejected("limits.per_key", |c| {
            c.limits.per_key = crate::ratelimit::RateSetting::Limit {
                count: 0,
                per: crate::ratelimit::Period::Second,
            }
        });
    }

    #[test]
    fn bounds_are_inclusive() {
        let d = |ms| HumanDuration(Duration::from_millis(ms));
        assert_accepted(|c| c.server.max_body_bytes = ByteSize(1 << 10));
        assert_accepted(|c| c.server.max_header_bytes = ByteSize(8 << 10));
        assert_accepted(|c| c.server.max_header_bytes = ByteSize(1 << 20));
        assert_accepted(|c| c.server.request_timeout = d(1000));
        assert_accepted(|c| c.server.request_timeout = d(600_000));
        assert_accepted(|c| c.server.shutdown_grace = d(0));
        assert_accepted(|c| c.server.retry_after = d(3_600_000));
        assert_accepted(|c| {
            c.wal.partitions = 256;
            c.wal.capacity = ByteSize(16 << 30);
        });
        assert_accepted(|c| c.wal.queue_capacity = 16_777_216);
        assert_accepted(|c| c.wal.capacity = ByteSize(64 << 20));
        assert_accepted(|c| {
            c.wal.segment_size = ByteSize(1 << 30);
            c.wal.capacity = ByteSize(2 << 30);
            c.server.max_body_bytes = ByteSize(64 << 20);
        });
        assert_accepted(|c| c.log.level = "sluice=debug,info".into());
    }

    #[test]
    fn dead_letter_retention_bounds_are_checked_and_zero_turns_a_limit_off() {
        let d = |ms| HumanDuration(Duration::from_millis(ms));
        const DAY_MS: u64 = 86_400_000;
        assert_rejected("dead_letter.max_age", |c| c.dead_letter.max_age = d(59_999));
        assert_rejected("dead_letter.max_age", |c| {
            c.dead_letter.max_age = d(3650 * DAY_MS + 1)
        });
        assert_rejected("dead_letter.max_bytes", |c| {
            c.dead_letter.max_bytes = ByteSize((1 << 20) - 1)
        });
        assert_rejected("dead_letter.max_bytes", |c| {
            c.dead_letter.max_bytes = ByteSize((16 << 40) + 1)
        });
        assert_rejected("dead_letter.retention_interval", |c| {
            c.dead_letter.retention_interval = d(999)
        });
        assert_rejected("dead_letter.retention_interval", |c| {
            c.dead_letter.retention_interval = d(DAY_MS + 1)
        });
        assert_rejected("dead_letter.retention_interval", |c| {
            c.dead_letter.retention_interval = d(0)
        });
        assert_accepted(|c| c.dead_letter.max_age = d(0));
        assert_accepted(|c| c.dead_letter.max_age = d(60_000));
        assert_accepted(|c| c.dead_letter.max_age = d(3650 * DAY_MS));
        assert_accepted(|c| c.dead_letter.max_bytes = ByteSize(0));
        assert_accepted(|c| c.dead_letter.max_bytes = ByteSize(1 << 20));
        assert_accepted(|c| c.dead_letter.max_bytes = ByteSize(16 << 40));
        assert_accepted(|c| c.dead_letter.retention_interval = d(1000));
        assert_accepted(|c| c.dead_letter.retention_interval = d(DAY_MS));
        // The message says that 0 is allowed too.
        let mut c = Config::default();
        c.dead_letter.max_bytes = ByteSize(1);
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("`dead_letter.max_bytes`: 1B is outside 1MiB to 16TiB (or 0"),
            "{err}"
        );
    }

    #[test]
    fn the_largest_request_must_fit_in_one_segment() {
        // 64KiB segments hold 65536 - 80 bytes of record: body + headers + 4096 must fit.
        let fits = |body: u64| {
            move |c: &mut Config| {
                c.wal.segment_size = ByteSize(64 << 10);
                c.wal.capacity = ByteSize(1 << 20);
                c.server.max_header_bytes = ByteSize(8 << 10);
                c.server.max_body_bytes = ByteSize(body);
            }
        };
        let limit = (64 << 10) - 80 - 4096 - (8 << 10);
        assert_accepted(fits(limit));
        assert_rejected("server.max_body_bytes", fits(limit + 1));
    }

    #[test]
    fn every_violation_is_listed_at_once() {
        let mut c = Config::default();
        c.server.max_connections = 0;
        c.wal.queue_capacity = 0;
        let ConfigError::OutOfBounds(v) = c.validate().unwrap_err() else {
            panic!()
        };
        let keys: Vec<_> = v.iter().map(|v| v.key).collect();
        assert_eq!(keys, ["server.max_connections", "wal.queue_capacity"]);
    }

    /// `sluice.example.toml` with every commented-out `key = value` line enabled.
    fn uncommented_example() -> String {
        let text = include_str!("../../sluice.example.toml");
        text.lines()
            .map(|line| {
                let t = line.trim_start();
                match t.strip_prefix("# ").or_else(|| t.strip_prefix('#')) {
                    Some(rest)
                        if rest.starts_with('[')
                            || rest
                                .split_once(" = ")
                                .is_some_and(|(k, _)| !k.is_empty() && !k.contains(' ')) =>
                    {
                        rest.to_string()
                    }
                    _ => line.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        let text = uncommented_example();
        let parsed: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed, Config::default());
        // Every key appears, so an operator can find it, and nothing else does.
        let table: toml::Table = toml::from_str(&text).unwrap();
        let in_file: Vec<String> = flatten_value(serde_json::to_value(table).unwrap())
            .into_keys()
            .collect();
        let known: Vec<String> = flatten(&Config::default()).into_keys().collect();
        assert_eq!(in_file, known);
        // And it loads through the real loader, from the file, as-is (all commented out).
        let loaded = load_from(
            Some(Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/sluice.example.toml"
            ))),
            &[],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(loaded.config, Config::default());
    }
}
