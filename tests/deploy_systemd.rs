//! `deploy/systemd/sluice.service`: the unit parses, has the sandboxing and lifecycle keys the
//! deployment relies on, its stop timeout covers sluice's drain, and `systemd-analyze verify`
//! accepts it (that needs Debian's `systemd` package, not systemd as PID 1; scripts/test.sh
//! installs it, and the test fails without it).

mod deploy_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use deploy_support::*;

/// `section → key → values` (a key may repeat, e.g. `SystemCallFilter=`).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = None;
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(body) = line.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        let line = format!("{pending}{line}");
        pending.clear();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_string());
            unit.entry(name.to_string()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        let section = section
            .clone()
            .unwrap_or_else(|| panic!("{line} is outside any section"));
        unit.entry(section)
            .or_default()
            .entry(key.trim().to_string())
            .or_default()
            .push(value.trim().to_string());
    }
    unit
}

fn unit_path() -> std::path::PathBuf {
    deploy().join("systemd/sluice.service")
}

fn service_key<'a>(unit: &'a Unit, key: &str) -> &'a [String] {
    unit.get("Service")
        .and_then(|s| s.get(key))
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("[Service] has no {key}="))
}

fn last<'a>(unit: &'a Unit, key: &str) -> &'a str {
    service_key(unit, key).last().unwrap()
}

#[test]
fn the_unit_has_a_dynamic_user_a_state_directory_for_the_log_and_a_sandbox() {
    let unit = parse_unit(&read(&unit_path()));
    for section in ["Unit", "Service", "Install"] {
        assert!(unit.contains_key(section), "no [{section}]");
    }
    assert_eq!(last(&unit, "DynamicUser"), "yes");
    let state = last(&unit, "StateDirectory");
    assert!(!state.is_empty());
    for (key, want) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(last(&unit, key), want, "{key}=");
    }
    assert_eq!(
        last(&unit, "CapabilityBoundingSet"),
        "",
        "no capabilities at all"
    );
    assert!(service_key(&unit, "SystemCallFilter").contains(&"@system-service".to_string()));
    let families = last(&unit, "RestrictAddressFamilies");
    for f in ["AF_INET", "AF_INET6"] {
        assert!(families.contains(f), "RestrictAddressFamilies lacks {f}");
    }
    let nofile: u64 = last(&unit, "LimitNOFILE").parse().unwrap();
    let defaults = effective(None, &[]);
    let connections: u64 = defaults.text("server.max_connections").parse().unwrap();
    assert!(
        nofile > connections,
        "LimitNOFILE={nofile} must exceed server.max_connections={connections}"
    );

    // The log goes in the state directory: sluice's data_dir is /var/lib/<StateDirectory>.
    let data_dir: Vec<&String> = service_key(&unit, "Environment")
        .iter()
        .filter(|e| e.starts_with("SLUICE_DATA_DIR="))
        .collect();
    assert_eq!(
        data_dir,
        [&format!("SLUICE_DATA_DIR=/var/lib/{state}")],
        "data_dir must be the StateDirectory"
    );
    let env: Vec<(String, String)> = service_key(&unit, "Environment")
        .iter()
        .map(|e| {
            let (k, v) = e.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    assert_eq!(
        effective(None, &env).text("data_dir"),
        format!("/var/lib/{state}")
    );
}

#[test]
fn the_unit_reloads_with_sighup_and_waits_for_the_drain_before_killing() {
    let unit = parse_unit(&read(&unit_path()));
    assert_eq!(last(&unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
    let start = last(&unit, "ExecStart");
    let words: Vec<&str> = start.split_whitespace().collect();
    assert!(
        words[0].ends_with("/sluice") && words[1] == "serve",
        "ExecStart runs `sluice serve`: {start}"
    );
    let defaults = effective(None, &[]);
    let needed =
        defaults.duration("server.shutdown_grace") + defaults.duration("publish.stop_timeout");
    let stop = duration(last(&unit, "TimeoutStopSec"));
    assert!(
        stop > needed,
        "TimeoutStopSec={stop:?} must exceed shutdown_grace + stop_timeout = {needed:?}"
    );
    let signal = unit
        .get("Service")
        .and_then(|s| s.get("KillSignal"))
        .map(|v| v.last().unwrap().as_str())
        .unwrap_or("SIGTERM");
    assert_eq!(signal, "SIGTERM", "sluice drains on SIGTERM");
}

#[test]
fn systemd_analyze_verifies_the_unit_and_scores_its_sandbox() {
    let analyze = systemd_analyze().expect(
        "systemd-analyze is not installed: install Debian's `systemd` package (scripts/test.sh \
         does; systemd need not be running)",
    );
    // `verify` checks that ExecStart's binary exists and is executable: point it at the binary
    // under test instead of the install path. Nothing else in the unit changes.
    let dir = tempfile::tempdir().unwrap();
    let text = read(&unit_path());
    let start = text
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("ExecStart=");
    let binary = start["ExecStart=".len()..]
        .split_whitespace()
        .next()
        .unwrap();
    let rewritten = text.replacen(
        &format!("ExecStart={binary}"),
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_sluice")),
        1,
    );
    let path = dir.path().join("sluice.service");
    std::fs::write(&path, rewritten).unwrap();

    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {} {stderr}",
        out.status
    );

    // The sandbox's exposure score, computed offline from the file (0 = fully sandboxed,
    // 10 = not at all). Above 2.0 means a protection was dropped.
    let out = Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score = exposure(&text).unwrap_or_else(|| {
        panic!(
            "`systemd-analyze security --offline` printed no exposure score ({}; stderr: {})",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    });
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}

/// The overall exposure from `systemd-analyze security`'s last line.
fn exposure(text: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    line.split(':')
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn systemd_analyze() -> Option<std::path::PathBuf> {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
}
