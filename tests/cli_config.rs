//! The `sluice` binary's command-line surface: version, help, configuration precedence and
//! reporting, exit codes of configuration errors.

mod cli_support;

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

#[test]
fn every_subcommand_has_help_with_a_description_and_an_example() {
    for args in [
        &["serve"][..],
        &["wal"],
        &["wal", "status"],
        &["wal", "inspect"],
        &["wal", "verify"],
        &["config"],
        &["config", "show"],
    ] {
        let (code, out, err) = run(sluice().args(args).arg("--help"));
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("Usage: sluice"), "{args:?}: {out}");
        assert!(out.contains("Example"), "{args:?} has no example: {out}");
        assert!(out.contains("--config <FILE>"), "{args:?}: {out}");
    }
    let (_, out, _) = run(sluice().args(["serve", "--help"]));
    for flag in [
        "--listen",
        "--metrics-listen",
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
fn a_usage_error_exits_2() {
    let (code, _, err) = run(sluice().args(["wal", "status", "--bogus"]));
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = run(sluice().arg("frobnicate"));
    assert_eq!(code, 2);
    let (code, _, _) = run(&mut sluice());
    assert_eq!(code, 2);
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
