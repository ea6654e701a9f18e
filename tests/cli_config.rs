//! The `sluice` binary's command-line surface: version, help, configuration precedence and
//! reporting, exit codes of configuration errors.

mod cli_support;

use clap::CommandFactory;
use cli_support::{run, sluice};
use std::path::Path;

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn version_prints_the_package_version() {
    let (code, out, _) = run(sluice().arg("--version"));
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("sluice {}", env!("CARGO_PKG_VERSION")));
}

/// Every visible subcommand of the grammar, as the words after `sluice`.
fn subcommands() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            out.push(p.clone());
            walk(sub, p, out);
        }
    }
    let mut out = Vec::new();
    walk(&sluice::cli::Cli::command(), Vec::new(), &mut out);
    out
}

#[test]
fn every_subcommand_has_help_with_a_description_and_examples() {
    let all = subcommands();
    for expected in [
        "serve",
        "db init",
        "db check",
        "wal status",
        "wal inspect",
        "wal tail",
        "wal verify",
        "wal replay",
        "dlq list",
        "dlq show",
        "dlq replay",
        "dlq purge",
        "config show",
    ] {
        assert!(
            all.iter().any(|p| p.join(" ") == expected),
            "{expected} is missing from {all:?}"
        );
    }
    for args in all {
        let (code, out, err) = run(sluice().args(&args).arg("--help"));
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("Usage: sluice"), "{args:?}: {out}");
        assert!(out.contains("--config <FILE>"), "{args:?}: {out}");
        let examples = out
            .split_once("Examples:\n")
            .unwrap_or_else(|| panic!("{args:?} has no Examples section: {out}"))
            .1;
        assert!(
            examples
                .lines()
                .next()
                .unwrap_or_default()
                .starts_with("  sluice ")
                || examples
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .starts_with("  SLUICE_"),
            "{args:?}: {examples}"
        );
    }
    let (_, out, _) = run(sluice().args(["serve", "--help"]));
    for flag in [
        "--listen",
        "--metrics-listen",
        "--admin-listen",
        "--data-dir",
        "--clickhouse-url",
    ] {
        assert!(out.contains(flag), "serve --help lacks {flag}");
    }
    let (_, out, _) = run(sluice().args(["wal", "inspect", "--help"]));
    for flag in [
        "--partition",
        "--from",
        "--limit",
        "--json",
        "[default: 100]",
    ] {
        assert!(out.contains(flag), "wal inspect --help lacks {flag}");
    }
}

#[test]
fn top_level_help_lists_the_exit_codes_and_examples() {
    for flag in ["--help", "-h"] {
        let (code, out, _) = run(sluice().arg(flag));
        assert_eq!(code, 0);
        for line in [
            "Exit codes:",
            "  0  success",
            "  1  failure",
            "  2  usage or configuration error",
            "  3  problems found in the data",
            "Examples:\n  sluice db init",
        ] {
            assert!(out.contains(line), "{flag}: no `{line}` in {out}");
        }
    }
}

#[test]
fn a_usage_error_exits_2() {
    let (code, _, err) = run(sluice().args(["wal", "status", "--bogus"]));
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = run(sluice().arg("frobnicate"));
    assert_eq!(code, 2);
    let (code, _, _) = run(&mut sluice());
    assert_eq!(code, 2);
    let (code, _, err) =
        run(sluice().args(["db", "init", "--print-ddl", "--server-version", "banana"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--server-version"), "{err}");
}

#[test]
fn bad_dead_letter_selections_exit_2_and_a_locked_store_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let dlq = |args: &[&str]| {
        run(sluice()
            .arg("dlq")
            .args(args)
            .arg("--data-dir")
            .arg(dir.path()))
    };
    let (code, _, err) = dlq(&["list", "--reason", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown reason `nope`"), "{err}");
    let (code, _, err) = dlq(&["show", "not-an-id"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = dlq(&["purge"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("purge needs"), "{err}");
    let (code, out, err) = dlq(&["purge", "--older-than", "1d", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), r#"{"purged":0}"#);

    // Another process holds the store: a failure, not a usage error.
    let config = sluice::config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let _held =
        sluice::deadletter::Store::open(&config.dead_letter.path(&config.data_dir)).unwrap();
    let (code, _, err) = dlq(&["list"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("sluice: error: "), "{err}");
}

#[test]
fn an_unreachable_clickhouse_exits_1() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _, err) = run(sluice()
        .args(["db", "check", "--clickhouse-url"])
        .arg(format!("http://127.0.0.1:{port}")));
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("sluice: error: "), "{err}");
}

#[test]
fn config_show_never_prints_a_credential() {
    // Every key whose name marks a credential, given a value through the environment.
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(sluice().args(["config", "show", "--json"]));
    assert_eq!(code, 0, "{err}");
    let defaults: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&out).unwrap();
    let mut cmd = sluice();
    cmd.args(["config", "show", "--json", "--data-dir"])
        .arg(dir.path());
    let mut secrets = Vec::new();
    for (key, entry) in &defaults {
        if !sluice::commands::config_show::is_credential(key) {
            continue;
        }
        let secret = format!("sentinel-{}-long-enough", secrets.len());
        let var = format!("SLUICE_{}", key.replace('.', "__").to_ascii_uppercase());
        match &entry["value"] {
            serde_json::Value::String(_) => cmd.env(&var, &secret),
            serde_json::Value::Array(_) => cmd.env(&var, format!("[\"{secret}\"]")),
            _ => continue,
        };
        secrets.push((key.clone(), secret));
    }
    assert!(
        secrets.iter().any(|(k, _)| k == "clickhouse.password"),
        "{secrets:?}"
    );
    cmd.env(
        "SLUICE_CLICKHOUSE__URL",
        "http://sluice:sentinel-url@127.0.0.1:8123",
    );
    let (code, out, err) = run(&mut cmd);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("sentinel"), "a credential leaked: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for (key, _) in &secrets {
        assert!(
            v[key]["value"].to_string().contains("<redacted>"),
            "{key}: {}",
            v[key]
        );
        assert!(
            v[key]["source"]
                .as_str()
                .unwrap()
                .starts_with("env SLUICE_"),
            "{key}"
        );
    }
    assert_eq!(
        v["clickhouse.url"]["value"],
        "http://sluice:<redacted>@127.0.0.1:8123"
    );

    // The TOML form too.
    let (_, out, _) = run(sluice()
        .args(["config", "show"])
        .env("SLUICE_CLICKHOUSE__PASSWORD", "sentinel-x"));
    assert!(
        out.contains("password = \"<redacted>\"  # from: env SLUICE_CLICKHOUSE__PASSWORD"),
        "{out}"
    );
    assert!(!out.contains("sentinel"), "{out}");
}

#[test]
fn config_show_reports_each_value_and_the_source_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        "[server]\nlisten = \"127.0.0.1:1111\"\nmax_body_bytes = \"1MiB\"\n\
         [wal]\ncapacity = \"1GiB\"\nqueue_capacity = 100\n",
    );
    let (code, out, err) = run(sluice()
        .args(["config", "show", "--config"])
        .arg(&file)
        .args(["--listen", "127.0.0.1:3333"])
        .env("SLUICE_WAL__CAPACITY", "2GiB")
        .env("SLUICE_SERVER__LISTEN", "127.0.0.1:2222"));
    assert_eq!(code, 0, "{err}");
    let from_file = format!("# from: file {}", file.display());
    assert!(
        out.contains("listen = \"127.0.0.1:3333\"  # from: flag --listen"),
        "{out}"
    );
    assert!(
        out.contains("capacity = \"2GiB\"  # from: env SLUICE_WAL__CAPACITY"),
        "{out}"
    );
    assert!(
        out.contains(&format!("max_body_bytes = \"1MiB\"  {from_file}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("queue_capacity = 100  {from_file}")),
        "{out}"
    );
    assert!(
        out.contains("segment_size = \"32MiB\"  # from: default"),
        "{out}"
    );
    // The output is itself a valid configuration file.
    let reparsed: toml::Table = toml::from_str(&out).unwrap();
    assert_eq!(
        reparsed["server"]["listen"].as_str(),
        Some("127.0.0.1:3333")
    );
}

#[test]
fn config_show_json_gives_value_and_source_per_key_and_reads_sluice_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "data_dir = \"/from/file\"\n");
    let (code, out, err) = run(sluice()
        .args(["config", "show", "--json"])
        .env("SLUICE_CONFIG", &file)
        .env("SLUICE_LOG__FORMAT", "json"));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data_dir"]["value"], "/from/file");
    assert_eq!(
        v["data_dir"]["source"],
        format!("file {}", file.display()).as_str()
    );
    assert_eq!(v["log.format"]["value"], "json");
    assert_eq!(v["log.format"]["source"], "env SLUICE_LOG__FORMAT");
    assert_eq!(v["metrics.listen"]["value"], "0.0.0.0:9090");
    assert_eq!(v["metrics.listen"]["source"], "default");
}

#[test]
fn an_unknown_key_in_the_file_exits_2_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "[wal]\nsegmentsize = \"1MiB\"\n");
    let (code, out, err) = run(sluice().args(["config", "show", "--config"]).arg(&file));
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("`wal.segmentsize`"), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
}

#[test]
fn an_unknown_sluice_variable_exits_2_naming_it() {
    let (code, _, err) = run(sluice()
        .args(["wal", "status", "--data-dir", "/nonexistent"])
        .env("SLUICE_WAL__CAPASITY", "1GiB"));
    assert_eq!(code, 2);
    assert!(err.contains("`wal.capasity`"), "{err}");
    assert!(err.contains("SLUICE_WAL__CAPASITY"), "{err}");
}

#[test]
fn an_out_of_bounds_value_exits_2_naming_the_key() {
    let (code, _, err) = run(sluice()
        .args(["wal", "verify", "--data-dir", "/nonexistent"])
        .env("SLUICE_WAL__SEGMENT_SIZE", "4KiB"));
    assert_eq!(code, 2);
    assert!(err.contains("`wal.segment_size`"), "{err}");

    // config show still prints, then reports the problem.
    let (code, out, err) = run(sluice()
        .args(["config", "show"])
        .env("SLUICE_SERVER__MAX_CONNECTIONS", "0"));
    assert_eq!(code, 2);
    assert!(out.contains("max_connections = 0  # from: env SLUICE_SERVER__MAX_CONNECTIONS"));
    assert!(err.contains("`server.max_connections`"), "{err}");
}

#[test]
fn a_missing_config_file_exits_2() {
    let (code, _, err) = run(sluice().args(["config", "show", "--config", "/nonexistent/s.toml"]));
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/s.toml"), "{err}");
}

#[test]
fn serve_refuses_to_start_on_an_invalid_configuration() {
    let (code, _, err) = run(sluice().args(["serve", "--clickhouse-url", "not-a-url"]));
    assert_eq!(code, 2);
    assert!(err.contains("`clickhouse.url`"), "{err}");
}

#[test]
fn key_lists_and_rate_limits_from_the_environment_are_shown_with_keys_redacted() {
    let (code, out, err) = run(sluice()
        .args(["config", "show", "--json"])
        .env(
            "SLUICE_SEGMENT__WRITE_KEYS",
            r#"["wk-secret-1","wk-secret-2"]"#,
        )
        .env("SLUICE_PYCOLYTICS__API_KEYS", r#"["pk-secret"]"#)
        .env("SLUICE_LIMITS__PER_IP", "1000/s"));
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("secret"), "a key was printed: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_ne!(v["segment.write_keys"]["value"], serde_json::json!([]));
    assert_eq!(
        v["segment.write_keys"]["source"],
        "env SLUICE_SEGMENT__WRITE_KEYS"
    );
    assert_eq!(v["limits.per_ip"]["value"], "1000/s");
    assert_eq!(v["limits.per_ip"]["source"], "env SLUICE_LIMITS__PER_IP");
    assert_eq!(v["collect.api_keys"]["value"], serde_json::json!([]));
}

/// Every key of `sluice.example.toml` (which a unit test keeps equal to the defaults) as its
/// dotted name: `# key = value` lines under their `[section]`.
fn example_keys() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sluice.example.toml"))
        .unwrap();
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((key, _)) = line.strip_prefix("# ").and_then(|l| l.split_once(" = ")) {
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                keys.push(if section.is_empty() {
                    key.to_string()
                } else {
                    format!("{section}.{key}")
                });
            }
        }
    }
    keys
}

#[test]
fn the_readme_configuration_reference_lists_every_key_of_the_example_file() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let keys = example_keys();
    assert!(keys.len() > 50, "{keys:?}");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !readme.contains(&format!("| `{k}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's configuration table lacks {missing:?}"
    );
}
