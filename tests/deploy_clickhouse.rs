//! `deploy/clickhouse/`: the cluster DDL creates exactly the table `sluice db init` creates on a
//! modern server (so the two cannot drift), on engines sluice's own rule says deduplicate; and
//! the users.d file gives the daemon, the DDL job and readers the least they need, with the
//! passwords docker-compose.yml passes.

mod deploy_support;

use std::collections::BTreeMap;

use deploy_support::*;
use serde_norway::Value;
use sluice::event::COLUMNS;
use sluice::sink::clickhouse::migrate::{ddl, TableInfo};
use sluice::sink::clickhouse::version::ServerVersion;
use sluice::sink::clickhouse::ClickHouseConfig;

/// The modern server the cluster DDL is written for (ClickHouse 25.8 LTS, as in the compose file).
const MODERN: &str = "25.8";

fn cluster_sql() -> String {
    read(&deploy().join("clickhouse/cluster/events.sql"))
}

/// SQL statements without `--` comments.
fn statements(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .map(|l| match l.find("--") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn unquote(name: &str) -> String {
    name.trim().trim_matches('`').to_string()
}

/// `name → type` of a `CREATE TABLE … ( columns ) …` statement's column list.
fn create_columns(stmt: &str) -> BTreeMap<String, String> {
    let open = stmt.find('(').expect("a column list");
    let mut depth = 0;
    let mut close = None;
    for (i, c) in stmt[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            _ => {}
        }
    }
    let body = &stmt[open + 1..close.expect("a closed column list")];
    split_top_level(body)
        .into_iter()
        .map(|col| {
            let col = col.trim();
            let (name, ty) = col
                .split_once(char::is_whitespace)
                .unwrap_or_else(|| panic!("column without a type: {col}"));
            (unquote(name), ty.trim().to_string())
        })
        .collect()
}

/// `name → type` of every `ADD COLUMN [IF NOT EXISTS] name type` in an ALTER statement.
fn added_columns(stmt: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for part in split_top_level(stmt) {
        let Some(at) = part.find("ADD COLUMN") else {
            continue;
        };
        let rest = part[at + "ADD COLUMN".len()..].trim();
        let rest = rest.strip_prefix("IF NOT EXISTS").unwrap_or(rest).trim();
        let (name, ty) = rest.split_once(char::is_whitespace).unwrap();
        let ty = match ty.find(" AFTER ").or_else(|| ty.find(" FIRST")) {
            Some(i) => &ty[..i],
            None => ty,
        };
        out.insert(unquote(name), ty.trim().to_string());
    }
    out
}

/// Splits on commas outside parentheses and quotes.
fn split_top_level(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quote) = (Vec::new(), String::new(), 0, false);
    for c in s.chars() {
        match c {
            '\'' => quote = !quote,
            '(' if !quote => depth += 1,
            ')' if !quote => depth -= 1,
            ',' if !quote && depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// The events table as `db init` leaves it on a modern server: every migration's statements
/// for the configured table, creations and added columns together.
fn db_init_table(config: &ClickHouseConfig) -> (BTreeMap<String, String>, String) {
    let version: ServerVersion = MODERN.parse().unwrap();
    let table = config.qualified_table();
    let mut columns = BTreeMap::new();
    let mut create = None;
    for stmt in ddl(config, version) {
        if stmt.starts_with("CREATE TABLE") && stmt.contains(&table) {
            columns.extend(create_columns(&stmt));
            create = Some(stmt);
        } else if stmt.starts_with("ALTER TABLE") && stmt.contains(&table) {
            columns.extend(added_columns(&stmt));
        }
    }
    (columns, create.expect("db init creates the events table"))
}

/// The clause starting with `keyword` (up to the end of its line).
fn clause(stmt: &str, keyword: &str) -> String {
    let at = stmt
        .find(keyword)
        .unwrap_or_else(|| panic!("no {keyword} in {stmt}"));
    stmt[at..].lines().next().unwrap().trim().to_string()
}

#[test]
fn the_cluster_table_has_exactly_the_columns_db_init_creates_on_a_modern_server() {
    let sql = cluster_sql();
    let stmts = statements(&sql);
    let local = stmts
        .iter()
        .find(|s| s.starts_with("CREATE TABLE") && s.contains("sluice.events_local"))
        .expect("CREATE TABLE sluice.events_local");
    let cluster = create_columns(local);

    // Every column sluice fills, by name (what the encoder matches on).
    for c in COLUMNS {
        assert!(
            cluster.contains_key(c.name),
            "the cluster table lacks column {} of sluice::event::COLUMNS",
            c.name
        );
    }
    // And the same types db init picks for a modern server, column by column, nothing extra.
    let (expected, create) = db_init_table(&ClickHouseConfig::default());
    let differences: Vec<String> = expected
        .keys()
        .chain(cluster.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|name| expected.get(*name) != cluster.get(*name))
        .map(|name| {
            format!(
                "{name}: db init {:?}, cluster {:?}",
                expected.get(name),
                cluster.get(name)
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "deploy/clickhouse/cluster/events.sql differs from `sluice db init --print-ddl \
         --server-version {MODERN}`: {differences:#?}"
    );
    for keyword in ["PARTITION BY", "ORDER BY"] {
        assert_eq!(
            clause(local, keyword),
            clause(&create, keyword),
            "{keyword} differs from db init's"
        );
    }
}

#[test]
fn every_cluster_statement_runs_on_the_cluster_with_replicated_and_distributed_engines() {
    let stmts = statements(&cluster_sql());
    assert!(stmts.len() >= 3, "database, local table, distributed table");
    for s in &stmts {
        assert!(s.contains("ON CLUSTER"), "not ON CLUSTER: {s}");
        assert!(s.contains("IF NOT EXISTS"), "not idempotent: {s}");
    }
    let local = stmts
        .iter()
        .find(|s| s.contains("sluice.events_local ON CLUSTER") && s.starts_with("CREATE TABLE"))
        .unwrap();
    assert!(local.contains("ENGINE = ReplicatedMergeTree("));
    let dist = stmts
        .iter()
        .find(|s| s.contains("ENGINE = Distributed("))
        .expect("a Distributed table");
    assert!(
        dist.contains("events_local"),
        "Distributed over events_local"
    );
    assert!(
        !dist.contains("rand()"),
        "a re-sent batch must split across shards as the first attempt did: {dist}"
    );
}

#[test]
fn sluice_sends_its_dedup_token_to_the_replicated_table_but_not_the_distributed_one() {
    // sluice's own rule (TableInfo::deduplicates) decides whether an insert carries
    // insert_deduplication_token; docs/scaling.md tells operators to point sluice at the
    // replicated local table for that reason.
    let stmts = statements(&cluster_sql());
    let engine_full = |name: &str| -> String {
        let s = stmts
            .iter()
            .find(|s| s.starts_with("CREATE TABLE") && s.contains(name))
            .unwrap();
        s[s.find("ENGINE = ").unwrap() + "ENGINE = ".len()..].to_string()
    };
    let info = |full: String| TableInfo {
        columns: Vec::new(),
        engine: full
            .split(|c: char| c == '(' || c.is_whitespace())
            .next()
            .unwrap()
            .to_string(),
        engine_full: full,
    };
    assert!(info(engine_full("sluice.events_local ON CLUSTER")).deduplicates());
    assert!(!info(engine_full("sluice.events ON CLUSTER")).deduplicates());
}

fn users_xml() -> String {
    read(&deploy().join("clickhouse/users.d/sluice.xml"))
}

/// `(profile, grants, password env var)` of a user in the users.d file.
fn user(doc: &roxmltree::Document, name: &str) -> (String, Vec<String>, String) {
    let users = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("users"))
        .expect("<users>");
    let u = users
        .children()
        .find(|n| n.has_tag_name(name))
        .unwrap_or_else(|| panic!("no user {name}"));
    let child = |tag: &str| u.children().find(|n| n.has_tag_name(tag));
    let profile = child("profile").and_then(|n| n.text()).unwrap().to_string();
    let grants = child("grants")
        .map(|g| {
            g.children()
                .filter(|n| n.has_tag_name("query"))
                .map(|n| n.text().unwrap().trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    let password = child("password").unwrap_or_else(|| panic!("{name} has no <password>"));
    assert!(
        password.text().is_none_or(|t| t.trim().is_empty()),
        "{name}'s password is written in the file"
    );
    let env = password
        .attribute("from_env")
        .unwrap_or_else(|| panic!("{name}'s password is not from_env"))
        .to_string();
    (profile, grants, env)
}

/// A setting of a profile, if set.
fn setting(doc: &roxmltree::Document, profile: &str, key: &str) -> Option<String> {
    doc.root_element()
        .children()
        .find(|n| n.has_tag_name("profiles"))?
        .children()
        .find(|n| n.has_tag_name(profile))
        .unwrap_or_else(|| panic!("no profile {profile}"))
        .children()
        .find(|n| n.has_tag_name(key))
        .and_then(|n| n.text())
        .map(str::to_string)
}

/// The privileges and object of `GRANT p1, p2 ON object`.
fn grant(query: &str) -> (Vec<String>, String) {
    let rest = query.strip_prefix("GRANT ").expect("GRANT …");
    let (privs, object) = rest.split_once(" ON ").expect("… ON …");
    (
        privs.split(',').map(|p| p.trim().to_string()).collect(),
        object.trim().to_string(),
    )
}

#[test]
fn the_daemon_user_may_only_insert_and_select_in_sluices_database() {
    let text = users_xml();
    let doc = roxmltree::Document::parse(&text).expect("users.d/sluice.xml is not XML");
    let database = ClickHouseConfig::default().database;
    let (profile, grants, _) = user(&doc, "sluice");
    assert_eq!(grants.len(), 1, "one grant: {grants:?}");
    let (privs, object) = grant(&grants[0]);
    assert_eq!(privs, ["INSERT", "SELECT"]);
    assert_eq!(object, format!("{database}.*"));
    assert_ne!(setting(&doc, &profile, "readonly").as_deref(), Some("1"));
    // Synchronous, deduplicated, one block per insert: what exactly-once relies on.
    assert_eq!(
        setting(&doc, &profile, "async_insert").as_deref(),
        Some("0")
    );
    assert_eq!(
        setting(&doc, &profile, "insert_deduplicate").as_deref(),
        Some("1")
    );
    // The server's own limit must not cut an insert before sluice's client timeout does.
    let server: u64 = setting(&doc, &profile, "max_execution_time")
        .unwrap()
        .parse()
        .unwrap();
    let client = ClickHouseConfig::default().request_timeout.get().as_secs();
    assert!(
        server > client,
        "max_execution_time {server}s <= clickhouse.request_timeout {client}s"
    );

    let (profile, grants, _) = user(&doc, "sluice_reader");
    assert_eq!(setting(&doc, &profile, "readonly").as_deref(), Some("1"));
    for g in &grants {
        assert_eq!(grant(g).0, ["SELECT"], "the reader only reads: {g}");
    }

    let (_, grants, _) = user(&doc, "sluice_admin");
    let privs: Vec<String> = grants
        .iter()
        .flat_map(|g| {
            let (p, o) = grant(g);
            assert_eq!(o, format!("{database}.*"), "admin limited to the database");
            p
        })
        .collect();
    for p in [
        "CREATE DATABASE",
        "CREATE TABLE",
        "ALTER ADD COLUMN",
        "INSERT",
        "SELECT",
    ] {
        assert!(privs.iter().any(|x| x == p), "admin lacks {p}: {privs:?}");
    }
}

#[test]
fn compose_runs_init_as_the_admin_and_serve_as_the_writer_with_the_passwords_clickhouse_reads() {
    let text = users_xml();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let compose = yaml(&deploy().join("docker-compose.yml"));
    let env_of = |service: &str| -> BTreeMap<String, String> {
        at(&compose, &["services", service, "environment"])
            .and_then(Value::as_mapping)
            .unwrap()
            .iter()
            .map(|(k, v)| (scalar(k), compose_default(&scalar(v))))
            .collect()
    };
    let clickhouse = env_of("clickhouse");
    for (service, user_name) in [("sluice", "sluice"), ("sluice-db-init", "sluice_admin")] {
        let env = env_of(service);
        assert_eq!(
            env.get("SLUICE_CLICKHOUSE__USER").map(String::as_str),
            Some(user_name)
        );
        let (_, _, var) = user(&doc, user_name);
        let server_side = clickhouse
            .get(&var)
            .unwrap_or_else(|| panic!("the clickhouse service does not set {var}"));
        assert_eq!(
            env.get("SLUICE_CLICKHOUSE__PASSWORD"),
            Some(server_side),
            "{service} and ClickHouse disagree on {user_name}'s password"
        );
    }
}

/// `(name, value)` of every setting in the users.d profiles (and the names constrained).
fn profile_settings() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for file in [
        "clickhouse/users.d/sluice.xml",
        "clickhouse/cluster/users.d/sluice-quorum.xml",
    ] {
        let text = read(&deploy().join(file));
        let doc =
            roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{file} is not XML: {e}"));
        let Some(profiles) = doc
            .root_element()
            .children()
            .find(|n| n.has_tag_name("profiles"))
        else {
            continue;
        };
        for profile in profiles.children().filter(|n| n.is_element()) {
            for s in profile.children().filter(|n| n.is_element()) {
                let name = s.tag_name().name();
                if name == "constraints" {
                    for c in s.children().filter(|n| n.is_element()) {
                        out.push((c.tag_name().name().to_string(), String::new()));
                    }
                } else {
                    out.push((name.to_string(), s.text().unwrap_or("").trim().to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn the_profiles_and_table_settings_are_ones_the_modern_engine_accepts() {
    // chdb (ClickHouse 26.x in-process, in the venv scripts/test.sh creates) checks every
    // profile setting's name and value, and the MergeTree settings of the cluster table. A
    // misspelt setting in a users.d profile stops clickhouse-server from loading its users.
    let python = repo().join(".venv/bin/python");
    let has_chdb = python.is_file()
        && std::process::Command::new(&python)
            .args(["-c", "import chdb"])
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        has_chdb,
        "{} cannot import chdb: run scripts/test.sh, which creates .venv/ with \
         tests/e2e/requirements.txt (chdb-core)",
        python.display()
    );
    let settings = profile_settings();
    assert!(settings.len() >= 8, "{settings:?}");
    let table_settings: Vec<String> = statements(&cluster_sql())
        .iter()
        .filter_map(|s| s.split_once("SETTINGS ").map(|(_, r)| r.to_string()))
        .flat_map(|r| {
            r.split(',')
                .map(|kv| kv.split('=').next().unwrap().trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(table_settings.len() >= 3, "{table_settings:?}");
    let script = r#"
import json, sys, chdb
settings, table_settings = json.loads(sys.argv[1]), json.loads(sys.argv[2])
known = set(chdb.query("SELECT name FROM system.settings", "CSV").bytes().decode().replace('"', '').split())
mt = set(chdb.query("SELECT name FROM system.merge_tree_settings", "CSV").bytes().decode().replace('"', '').split())
bad = [n for n, _ in settings if n not in known] + [n for n in table_settings if n not in mt]
for n, v in settings:
    if v and n in known:
        literal = v if v.lstrip('-').isdigit() else "'" + v + "'"
        try:
            chdb.query("SELECT 1 SETTINGS " + n + " = " + literal)
        except Exception as e:
            bad.append(n + " = " + v + ": " + str(e).splitlines()[0])
print(json.dumps(bad))
"#;
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(serde_json::to_string(&settings).unwrap())
        .arg(serde_json::to_string(&table_settings).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chdb check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad: Vec<String> = serde_json::from_slice(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert!(
        bad.is_empty(),
        "settings the modern engine refuses: {bad:#?}"
    );
}
