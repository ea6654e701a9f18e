//! `deploy/docker-compose.yml`, `deploy/Dockerfile` and the files they mount, checked for
//! structure. No docker engine runs here, so nothing is started: the checks are that every
//! referenced file exists, that published ports, health checks and the Prometheus target agree
//! with the ports sluice listens on (as sluice's own loader computes them from each service's
//! environment), that named volumes are declared, and that `db init` runs to completion before
//! `serve` starts.

mod deploy_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use deploy_support::*;
use serde_norway::Value;

fn compose() -> Value {
    yaml(&deploy().join("docker-compose.yml"))
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    at(compose, &["services", name]).unwrap_or_else(|| panic!("no service {name}"))
}

/// A service's environment as name → value, with compose defaults resolved.
fn environment(service: &Value) -> Vec<(String, String)> {
    match at(service, &["environment"]) {
        None => Vec::new(),
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| (scalar(k), compose_default(&scalar(v))))
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| {
                let s = scalar(i);
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                (k.to_string(), compose_default(v))
            })
            .collect(),
        Some(other) => panic!("environment is neither a mapping nor a list: {other:?}"),
    }
}

/// The command as a list of words.
fn command(service: &Value) -> Option<Vec<String>> {
    match at(service, &["command"])? {
        Value::Sequence(items) => Some(items.iter().map(scalar).collect()),
        Value::String(s) => Some(s.split_whitespace().map(str::to_string).collect()),
        other => panic!("command is neither a list nor a string: {other:?}"),
    }
}

/// `(host port, container port)` of every published port.
fn published(service: &Value) -> Vec<(u16, u16)> {
    let Some(ports) = at(service, &["ports"]).and_then(Value::as_sequence) else {
        return Vec::new();
    };
    ports
        .iter()
        .map(|p| {
            let text = compose_default(&scalar(p));
            let text = text.split('/').next().unwrap();
            let parts: Vec<&str> = text.split(':').collect();
            let (host, container) = match parts.as_slice() {
                [host, container] | [_, host, container] => (*host, *container),
                _ => panic!("port {text} is not HOST:CONTAINER"),
            };
            (
                host.parse()
                    .unwrap_or_else(|_| panic!("bad host port in {text}")),
                container
                    .parse()
                    .unwrap_or_else(|_| panic!("bad container port in {text}")),
            )
        })
        .collect()
}

/// `(source, target)` of every volume entry.
fn mounts(service: &Value) -> Vec<(String, String)> {
    let Some(vols) = at(service, &["volumes"]).and_then(Value::as_sequence) else {
        return Vec::new();
    };
    vols.iter()
        .map(|v| {
            let text = scalar(v);
            let mut parts = text.split(':');
            let source = parts.next().unwrap().to_string();
            let target = parts
                .next()
                .unwrap_or_else(|| panic!("volume {text} has no target"))
                .to_string();
            (source, target)
        })
        .collect()
}

fn is_bind(source: &str) -> bool {
    source.starts_with('.') || source.starts_with('/')
}

/// The sluice services: those built from deploy/Dockerfile.
fn sluice_services(compose: &Value) -> Vec<String> {
    at(compose, &["services"])
        .and_then(Value::as_mapping)
        .unwrap()
        .iter()
        .filter(|(_, s)| at(s, &["build"]).is_some())
        .map(|(k, _)| scalar(k))
        .collect()
}

/// The effective configuration of a sluice service: its environment through `config show`.
fn sluice_config(service: &Value) -> Effective {
    effective(None, &environment(service))
}

#[test]
fn every_file_and_directory_the_compose_file_references_exists() {
    let c = compose();
    let base = deploy();
    let services = at(&c, &["services"]).and_then(Value::as_mapping).unwrap();
    let mut checked = 0;
    for (name, s) in services {
        for (source, _) in mounts(s) {
            if is_bind(&source) {
                let path = base.join(&source);
                assert!(
                    path.exists(),
                    "service {} mounts {source}, which does not exist ({})",
                    scalar(name),
                    path.display()
                );
                checked += 1;
            }
        }
        if let Some(build) = at(s, &["build"]) {
            let context = base.join(str_at(build, &["context"]));
            assert!(
                context.is_dir(),
                "build context {} missing",
                context.display()
            );
            let dockerfile = context.join(str_at(build, &["dockerfile"]));
            assert!(
                dockerfile.is_file(),
                "Dockerfile {} missing",
                dockerfile.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "expected the mounts and builds of the stack, checked {checked}"
    );
}

#[test]
fn the_stack_has_sluice_clickhouse_prometheus_grafana_and_a_one_shot_db_init() {
    let c = compose();
    for name in ["clickhouse", "prometheus", "grafana"] {
        service(&c, name);
    }
    let built = sluice_services(&c);
    let init: Vec<&String> = built
        .iter()
        .filter(|n| command(service(&c, n)).as_deref() == Some(&["db".into(), "init".into()]))
        .collect();
    let serve: Vec<&String> = built
        .iter()
        .filter(|n| {
            command(service(&c, n))
                .map(|cmd| cmd.first().map(String::as_str) == Some("serve"))
                .unwrap_or(true)
        })
        .collect();
    assert_eq!(
        init.len(),
        1,
        "one service runs `sluice db init`: {built:?}"
    );
    assert_eq!(serve.len(), 1, "one service runs `sluice serve`: {built:?}");
    let (init, serve) = (init[0], serve[0]);

    // serve waits for init to finish successfully; init waits for a healthy ClickHouse.
    assert_eq!(
        at(service(&c, serve), &["depends_on", init, "condition"]).map(scalar),
        Some("service_completed_successfully".into()),
        "{serve} must start only after {init} exited 0"
    );
    assert_eq!(
        at(
            service(&c, init),
            &["depends_on", "clickhouse", "condition"]
        )
        .map(scalar),
        Some("service_healthy".into()),
        "{init} must wait for a healthy ClickHouse"
    );
    assert!(
        at(service(&c, "clickhouse"), &["healthcheck", "test"]).is_some(),
        "ClickHouse needs a health check for service_healthy"
    );
    let restart = at(service(&c, init), &["restart"]).map(scalar);
    assert!(
        restart.is_none() || restart.as_deref() == Some("no"),
        "a one-shot job must not restart: {restart:?}"
    );

    // Both talk to the compose ClickHouse, the writer and the DDL user being different users
    // defined in the mounted users.d file.
    let init_cfg = sluice_config(service(&c, init));
    let serve_cfg = sluice_config(service(&c, serve));
    for cfg in [&init_cfg, &serve_cfg] {
        let url = cfg.text("clickhouse.url");
        assert!(
            url.starts_with("http://clickhouse:"),
            "ClickHouse URL {url} is not the clickhouse service"
        );
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(port, 8123, "ClickHouse's HTTP port in the image is 8123");
    }
    assert_ne!(
        init_cfg.text("clickhouse.user"),
        serve_cfg.text("clickhouse.user"),
        "the daemon should not run as the DDL user"
    );
}

#[test]
fn sluices_published_ports_health_check_and_prometheus_target_match_its_listeners() {
    let c = compose();
    let serve = sluice_services(&c)
        .into_iter()
        .find(|n| command(service(&c, n)).as_deref() != Some(&["db".into(), "init".into()]))
        .unwrap();
    let s = service(&c, &serve);
    let cfg = sluice_config(s);
    let collector = cfg.port("server.listen");
    let metrics = cfg.port("metrics.listen");
    let container_ports: BTreeSet<u16> = published(s).iter().map(|(_, c)| *c).collect();
    assert!(
        container_ports.contains(&collector),
        "collector port {collector} not published: {container_ports:?}"
    );
    assert!(
        container_ports.contains(&metrics),
        "metrics port {metrics} not published: {container_ports:?}"
    );

    // The image exposes and health-checks the same ports.
    let dockerfile = read(&deploy().join("Dockerfile"));
    let exposed: BTreeSet<u16> = instructions(&dockerfile, "EXPOSE")
        .iter()
        .flat_map(|args| args.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
        .collect();
    assert_eq!(exposed, BTreeSet::from([collector, metrics]));
    let health = instructions(&dockerfile, "HEALTHCHECK").join(" ");
    assert!(
        health.contains(&format!("127.0.0.1:{collector}/health")),
        "HEALTHCHECK must ask /health on the collector port {collector}: {health}"
    );

    // Prometheus scrapes that service's metrics port.
    let prom_mount = mounts(service(&c, "prometheus"))
        .into_iter()
        .find(|(_, t)| t.ends_with("prometheus.yml"))
        .expect("prometheus.yml is mounted");
    let prom = yaml(&deploy().join(&prom_mount.0));
    let targets: Vec<String> = at(&prom, &["scrape_configs"])
        .and_then(Value::as_sequence)
        .unwrap()
        .iter()
        .flat_map(|job| {
            at(job, &["static_configs"])
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|sc| {
            at(&sc, &["targets"])
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default()
        })
        .map(|t| scalar(&t))
        .collect();
    assert!(
        targets.contains(&format!("{serve}:{metrics}")),
        "Prometheus must scrape {serve}:{metrics}, has {targets:?}"
    );
    let job = at(&prom, &["scrape_configs"])
        .and_then(Value::as_sequence)
        .unwrap()
        .iter()
        .find(|j| str_at(j, &["job_name"]) == "sluice")
        .expect("a job named sluice");
    let path = at(job, &["metrics_path"]).map(scalar);
    assert!(path.is_none() || path.as_deref() == Some("/metrics"));

    // No two services publish the same host port.
    let mut seen = BTreeMap::new();
    for (name, svc) in at(&c, &["services"]).and_then(Value::as_mapping).unwrap() {
        for (host, _) in published(svc) {
            if let Some(other) = seen.insert(host, scalar(name)) {
                panic!("host port {host} published by {other} and {}", scalar(name));
            }
        }
    }
}

#[test]
fn named_volumes_are_declared_and_the_log_lives_on_one() {
    let c = compose();
    let declared: BTreeSet<String> = at(&c, &["volumes"])
        .and_then(Value::as_mapping)
        .map(|m| m.keys().map(scalar).collect())
        .unwrap_or_default();
    for (name, s) in at(&c, &["services"]).and_then(Value::as_mapping).unwrap() {
        for (source, _) in mounts(s) {
            if !is_bind(&source) {
                assert!(
                    declared.contains(&source),
                    "service {} uses volume {source}, not declared under volumes:",
                    scalar(name)
                );
            }
        }
    }
    let serve = sluice_services(&c)
        .into_iter()
        .find(|n| command(service(&c, n)).as_deref() != Some(&["db".into(), "init".into()]))
        .unwrap();
    let s = service(&c, &serve);
    let data_dir = image_env("SLUICE_DATA_DIR");
    let cfg = effective(
        None,
        &[
            vec![("SLUICE_DATA_DIR".to_string(), data_dir.clone())],
            environment(s),
        ]
        .concat(),
    );
    let data_dir = cfg.text("data_dir");
    assert!(
        mounts(s)
            .iter()
            .any(|(src, target)| !is_bind(src) && *target == data_dir),
        "{serve}'s data_dir {data_dir} is not on a named volume"
    );
    let volumes = instructions(&read(&deploy().join("Dockerfile")), "VOLUME").join(" ");
    assert!(
        volumes.contains(&data_dir),
        "the image declares VOLUME {volumes}, not data_dir {data_dir}"
    );
}

#[test]
fn stop_grace_covers_the_drain_and_the_publishers() {
    let c = compose();
    for name in sluice_services(&c) {
        let s = service(&c, &name);
        if command(s).as_deref() == Some(&["db".into(), "init".into()]) {
            continue;
        }
        let cfg = sluice_config(s);
        let needed = cfg.duration("server.shutdown_grace") + cfg.duration("publish.stop_timeout");
        let grace = at(s, &["stop_grace_period"])
            .map(|v| duration(&scalar(v)))
            .unwrap_or(std::time::Duration::from_secs(10));
        assert!(
            grace > needed,
            "{name}: stop_grace_period {grace:?} must exceed shutdown_grace + stop_timeout = {needed:?}"
        );
    }
}

#[test]
fn grafana_is_provisioned_with_the_prometheus_of_the_stack_and_the_dashboard() {
    let c = compose();
    let g = service(&c, "grafana");
    let m = mounts(g);
    let provisioning = m
        .iter()
        .find(|(_, t)| t == "/etc/grafana/provisioning")
        .expect("provisioning mounted at /etc/grafana/provisioning");
    let provisioning = deploy().join(&provisioning.0);

    // Data source: the prometheus service on its container port.
    let ds_dir = provisioning.join("datasources");
    let mut urls = Vec::new();
    for f in files(&ds_dir) {
        let doc = yaml(&f);
        for ds in at(&doc, &["datasources"])
            .and_then(Value::as_sequence)
            .unwrap()
        {
            if str_at(ds, &["type"]) == "prometheus" {
                urls.push(str_at(ds, &["url"]).to_string());
            }
        }
    }
    let prom_ports: Vec<u16> = published(service(&c, "prometheus"))
        .iter()
        .map(|(_, c)| *c)
        .collect();
    assert!(
        urls.iter()
            .any(|u| prom_ports.iter().any(|p| *u == format!("http://prometheus:{p}"))),
        "no Prometheus data source points at the prometheus service ({urls:?}, ports {prom_ports:?})"
    );

    // Dashboards: the provider's path is a mount whose source holds grafana/sluice.json.
    let mut provided = false;
    for f in files(&provisioning.join("dashboards")) {
        let doc = yaml(&f);
        for p in at(&doc, &["providers"])
            .and_then(Value::as_sequence)
            .unwrap()
        {
            let path = str_at(p, &["options", "path"]);
            let (source, _) = m
                .iter()
                .find(|(_, t)| t == path)
                .unwrap_or_else(|| panic!("dashboard path {path} is not mounted into grafana"));
            let dir = deploy().join(source);
            assert!(
                dir.join("sluice.json").is_file(),
                "{} has no sluice.json",
                dir.display()
            );
            assert_eq!(
                dir.canonicalize().unwrap(),
                repo().join("grafana").canonicalize().unwrap()
            );
            provided = true;
        }
    }
    assert!(provided, "no dashboard provider");
}

#[test]
fn the_image_is_multi_stage_unprivileged_and_built_from_files_the_context_keeps() {
    let dockerfile = read(&deploy().join("Dockerfile"));
    let froms = instructions(&dockerfile, "FROM");
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].contains(" AS "),
        "the builder stage is named: {}",
        froms[0]
    );
    assert!(
        froms.last().unwrap().starts_with("debian:") && froms.last().unwrap().contains("slim"),
        "runtime image: {}",
        froms.last().unwrap()
    );
    let users = instructions(&dockerfile, "USER");
    let user = users.last().expect("a USER instruction");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "runs as {user}"
    );
    assert!(instructions(&dockerfile, "ENTRYPOINT")
        .join(" ")
        .contains("sluice"));
    assert!(instructions(&dockerfile, "CMD").join(" ").contains("serve"));

    // Every COPY source from the build context exists and survives .dockerignore.
    let ignore = read(&repo().join(".dockerignore"));
    let mut copied = 0;
    for args in instructions(&dockerfile, "COPY") {
        if args.starts_with("--from=") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        for src in &words[..words.len() - 1] {
            let path = repo().join(src);
            assert!(path.exists(), "COPY {src}: {} missing", path.display());
            assert!(
                dockerignore_keeps(&ignore, src),
                ".dockerignore excludes {src}, which the Dockerfile copies"
            );
            copied += 1;
        }
    }
    assert!(copied >= 3, "copies the manifests and sources: {copied}");
    assert!(
        !dockerignore_keeps(&ignore, "target"),
        ".dockerignore should keep target/ out of the build context"
    );
}

/// The arguments of every `INSTRUCTION` line (continuations joined).
fn instructions(dockerfile: &str, name: &str) -> Vec<String> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let t = line.trim();
        if t.starts_with('#') && current.is_empty() {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
        } else {
            current.push_str(t);
            joined.push(std::mem::take(&mut current));
        }
    }
    joined
        .iter()
        .filter_map(|l| {
            let (word, rest) = l.split_once(char::is_whitespace)?;
            word.eq_ignore_ascii_case(name)
                .then(|| rest.trim().to_string())
        })
        .collect()
}

/// The environment value an `ENV` instruction of the Dockerfile sets.
fn image_env(key: &str) -> String {
    let dockerfile = read(&deploy().join("Dockerfile"));
    for args in instructions(&dockerfile, "ENV") {
        for pair in args.split_whitespace() {
            if let Some(v) = pair.strip_prefix(&format!("{key}=")) {
                return v.to_string();
            }
        }
    }
    panic!("the Dockerfile sets no {key}")
}

/// Whether `path` (relative to the context) is sent with the build context, by Docker's rule:
/// the last matching pattern wins; `!` re-includes. Patterns here are simple names or `*`.
fn dockerignore_keeps(ignore: &str, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    let mut keep = true;
    for line in ignore.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (negate, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, line),
        };
        let pattern = pattern.trim_end_matches('/');
        let top = path.split('/').next().unwrap();
        let matches = pattern == "*"
            || pattern == path
            || pattern == top
            || path.starts_with(&format!("{pattern}/"));
        if matches {
            keep = negate;
        }
    }
    keep
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "{} is empty", dir.display());
    out
}

#[test]
fn every_target_file_cargo_needs_to_load_the_manifests_is_copied_into_the_build_stage() {
    // Cargo refuses a manifest whose declared or auto-discovered target files are missing (a
    // `[[example]]` without its file fails even `cargo build --bin`), so the builder stage must
    // copy every workspace member and every target file their manifests name.
    let dockerfile = read(&deploy().join("Dockerfile"));
    let ignore = read(&repo().join(".dockerignore"));
    let copied: Vec<String> = instructions(&dockerfile, "COPY")
        .iter()
        .filter(|a| !a.starts_with("--from="))
        .flat_map(|a| {
            let words: Vec<&str> = a.split_whitespace().collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let in_build = |path: &str| {
        copied
            .iter()
            .any(|c| path == c || path.starts_with(&format!("{c}/")))
            && dockerignore_keeps(&ignore, path)
    };
    let root: toml::Value = toml::from_str(&read(&repo().join("Cargo.toml"))).unwrap();
    let members: Vec<String> = root["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    let mut needed = Vec::new();
    for member in &members {
        let dir = if member == "." {
            String::new()
        } else {
            format!("{member}/")
        };
        needed.push(format!("{dir}Cargo.toml"));
        let manifest: toml::Value = toml::from_str(&read(&repo().join(&needed[needed.len() - 1])))
            .unwrap_or_else(|e| panic!("{dir}Cargo.toml: {e}"));
        for (section, default_dir) in [
            ("bin", "src/bin"),
            ("example", "examples"),
            ("bench", "benches"),
            ("test", "tests"),
        ] {
            for target in manifest
                .get(section)
                .and_then(toml::Value::as_array)
                .into_iter()
                .flatten()
            {
                let path = match target.get("path").and_then(toml::Value::as_str) {
                    Some(p) => p.to_string(),
                    None => {
                        let name = target["name"].as_str().unwrap();
                        let file = format!("{default_dir}/{name}.rs");
                        if repo().join(&dir).join(&file).exists() {
                            file
                        } else {
                            format!("{default_dir}/{name}/main.rs")
                        }
                    }
                };
                needed.push(format!("{dir}{path}"));
            }
        }
        if let Some(lib) = manifest.get("lib") {
            let path = lib
                .get("path")
                .and_then(toml::Value::as_str)
                .unwrap_or("src/lib.rs");
            needed.push(format!("{dir}{path}"));
        }
    }
    needed.push("Cargo.lock".into());
    for path in &needed {
        assert!(
            repo().join(path).exists(),
            "{path} is declared but does not exist"
        );
        assert!(
            in_build(path),
            "the builder stage does not get {path} (COPY sources {copied:?}); `cargo build` \
             would refuse the manifest"
        );
    }
    assert!(needed.len() >= 6, "checked {needed:?}");
}
