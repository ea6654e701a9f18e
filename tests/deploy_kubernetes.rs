//! `deploy/kubernetes/sluice.yaml`: the ConfigMap's sluice.toml is accepted by sluice's loader,
//! and the StatefulSet agrees with it: container ports are the listeners, probes ask /health
//! and /ready on the collector port, the Prometheus annotations name the metrics port, data_dir
//! is the PersistentVolumeClaim's mount and the claim holds wal.capacity, and the termination
//! grace covers the preStop pause, the drain and the publishers.

mod deploy_support;

use std::time::Duration;

use deploy_support::*;
use serde_norway::Value;

fn documents() -> Vec<Value> {
    yaml_documents(&deploy().join("kubernetes/sluice.yaml"))
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| at(d, &["kind"]).map(scalar).as_deref() == Some(kind))
        .collect()
}

fn one<'a>(docs: &'a [Value], k: &str) -> &'a Value {
    let found = kind(docs, k);
    assert_eq!(found.len(), 1, "expected one {k}");
    found[0]
}

fn seq<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("no list at {}", path.join(".")))
}

/// The effective configuration of the ConfigMap's sluice.toml plus the container's environment
/// (secret references replaced by a placeholder value).
fn config(docs: &[Value]) -> Effective {
    let cm = one(docs, "ConfigMap");
    let sts = one(docs, "StatefulSet");
    let container = &seq(sts, &["spec", "template", "spec", "containers"])[0];
    let args: Vec<String> = seq(container, &["args"]).iter().map(scalar).collect();
    let config_path = args
        .iter()
        .position(|a| a == "--config")
        .map(|i| args[i + 1].clone())
        .expect("the container passes --config");
    // The file is the ConfigMap key under a volume mounted at the file's directory.
    let (dir, file) = config_path.rsplit_once('/').unwrap();
    let mount = seq(container, &["volumeMounts"])
        .iter()
        .find(|m| str_at(m, &["mountPath"]) == dir)
        .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
    let volume = seq(sts, &["spec", "template", "spec", "volumes"])
        .iter()
        .find(|v| str_at(v, &["name"]) == str_at(mount, &["name"]))
        .expect("the config volume");
    assert_eq!(
        str_at(volume, &["configMap", "name"]),
        str_at(cm, &["metadata", "name"])
    );
    let toml = str_at(cm, &["data", file]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(file);
    std::fs::write(&path, toml).unwrap();
    let env: Vec<(String, String)> = at(container, &["env"])
        .and_then(Value::as_sequence)
        .map(|e| {
            e.iter()
                .map(|v| {
                    let value = at(v, &["value"])
                        .map(scalar)
                        .unwrap_or_else(|| "from-a-secret".into());
                    (str_at(v, &["name"]).to_string(), value)
                })
                .collect()
        })
        .unwrap_or_default();
    effective(Some(&path), &env)
}

fn container_port(container: &Value, name: &str) -> u16 {
    let p = seq(container, &["ports"])
        .iter()
        .find(|p| str_at(p, &["name"]) == name)
        .unwrap_or_else(|| panic!("no container port named {name}"));
    scalar(at(p, &["containerPort"]).unwrap()).parse().unwrap()
}

#[test]
fn container_ports_probes_and_scrape_annotations_match_the_configured_listeners() {
    let docs = documents();
    let cfg = config(&docs);
    let sts = one(&docs, "StatefulSet");
    let pod = at(sts, &["spec", "template"]).unwrap();
    let container = &seq(pod, &["spec", "containers"])[0];
    let http = container_port(container, "http");
    let metrics = container_port(container, "metrics");
    assert_eq!(http, cfg.port("server.listen"));
    assert_eq!(metrics, cfg.port("metrics.listen"));

    let probe_path = |probe: &str| -> (String, String) {
        let p = at(container, &[probe, "httpGet"]).unwrap_or_else(|| panic!("no {probe}"));
        (
            str_at(p, &["path"]).to_string(),
            scalar(at(p, &["port"]).unwrap()),
        )
    };
    assert_eq!(
        probe_path("readinessProbe"),
        ("/ready".into(), "http".into())
    );
    assert_eq!(
        probe_path("livenessProbe"),
        ("/health".into(), "http".into())
    );

    let ann = |k: &str| str_at(pod, &["metadata", "annotations", k]).to_string();
    assert_eq!(ann("prometheus.io/scrape"), "true");
    assert_eq!(ann("prometheus.io/port"), metrics.to_string());
    assert_eq!(ann("prometheus.io/path"), "/metrics");

    // Every Service targets a named port of the container and selects the pods.
    let labels = at(pod, &["metadata", "labels"]).unwrap();
    let services = kind(&docs, "Service");
    assert!(services.len() >= 2, "a Service and the headless one");
    for svc in services {
        for (k, v) in at(svc, &["spec", "selector"])
            .and_then(Value::as_mapping)
            .unwrap()
        {
            assert_eq!(labels.as_mapping().unwrap().get(k), Some(v));
        }
        for p in seq(svc, &["spec", "ports"]) {
            container_port(container, &scalar(at(p, &["targetPort"]).unwrap()));
        }
    }
    let headless = str_at(sts, &["spec", "serviceName"]);
    assert!(
        kind(&docs, "Service")
            .iter()
            .any(|s| str_at(s, &["metadata", "name"]) == headless
                && at(s, &["spec", "clusterIP"]).map(scalar).as_deref() == Some("None")),
        "serviceName {headless} must be a headless Service"
    );
}

#[test]
fn the_log_lives_on_a_claim_big_enough_for_wal_capacity() {
    let docs = documents();
    let cfg = config(&docs);
    let sts = one(&docs, "StatefulSet");
    let container = &seq(sts, &["spec", "template", "spec", "containers"])[0];
    let data_dir = cfg.text("data_dir");
    let mount = seq(container, &["volumeMounts"])
        .iter()
        .find(|m| str_at(m, &["mountPath"]) == data_dir)
        .unwrap_or_else(|| panic!("data_dir {data_dir} is not a volume mount"));
    let claim = seq(sts, &["spec", "volumeClaimTemplates"])
        .iter()
        .find(|c| str_at(c, &["metadata", "name"]) == str_at(mount, &["name"]))
        .expect("data_dir's volume is a volumeClaimTemplate");
    let size = quantity(str_at(claim, &["spec", "resources", "requests", "storage"]));
    let capacity = cfg.bytes("wal.capacity");
    assert!(
        size > capacity,
        "claim {size} B must exceed wal.capacity {capacity} B (plus ledgers and dead letters)"
    );
    assert!(seq(claim, &["spec", "accessModes"])
        .iter()
        .any(|m| scalar(m) == "ReadWriteOnce"));
}

#[test]
fn termination_grace_covers_the_pre_stop_pause_the_drain_and_the_publishers() {
    let docs = documents();
    let cfg = config(&docs);
    let sts = one(&docs, "StatefulSet");
    let spec = at(sts, &["spec", "template", "spec"]).unwrap();
    let container = &seq(spec, &["containers"])[0];
    let pause: Vec<String> = seq(container, &["lifecycle", "preStop", "exec", "command"])
        .iter()
        .map(scalar)
        .collect();
    assert_eq!(pause[0], "sleep", "preStop pauses: {pause:?}");
    let pause = Duration::from_secs(pause[1].parse().unwrap());
    let grace = Duration::from_secs(
        scalar(at(spec, &["terminationGracePeriodSeconds"]).unwrap())
            .parse()
            .unwrap(),
    );
    let needed =
        pause + cfg.duration("server.shutdown_grace") + cfg.duration("publish.stop_timeout");
    assert!(
        grace > needed,
        "terminationGracePeriodSeconds {grace:?} must exceed preStop + shutdown_grace + \
         stop_timeout = {needed:?}"
    );
    assert_eq!(
        scalar(at(spec, &["securityContext", "runAsNonRoot"]).unwrap()),
        "true"
    );
}

/// A Kubernetes quantity (`10Gi`, `500M`, `1024`) in bytes.
fn quantity(q: &str) -> u64 {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (n, unit) = q.split_at(split);
    let n: u64 = n.parse().unwrap();
    let mult: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        other => panic!("unknown quantity unit {other} in {q}"),
    };
    n * mult
}
