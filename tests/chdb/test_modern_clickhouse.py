"""The sink's modern-server schema and RowBinary against the current ClickHouse engine (chdb).

Run: TEST_SLUICE_BIN=target/debug/sluice python -m pytest tests/chdb -q
(needs the `chdb-core` package; `sluice` built first).
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

try:
    from chdb import session as chs
except ImportError as e:
    raise ImportError(
        "chdb is not importable: run scripts/test.sh, which creates .venv/ with "
        "tests/e2e/requirements.txt (chdb-core), and run pytest with .venv/bin/python"
    ) from e

ROOT = Path(__file__).resolve().parents[2]
SLUICE = os.environ.get("TEST_SLUICE_BIN") or str(ROOT / "target" / "debug" / "sluice")
VERSION = "26.1"


def sluice(*args):
    # sluice reads SLUICE_* variables as configuration: pass none of them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    r = subprocess.run([SLUICE, *args], capture_output=True, text=True, env=env)
    assert r.returncode == 0, f"sluice {' '.join(args)} exited {r.returncode}: {r.stderr}"
    return r.stdout


@pytest.fixture()
def sess():
    d = tempfile.mkdtemp(prefix="sluice-chdb-")
    s = chs.Session(d)
    yield s
    s.close()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "batch.bin"
    sluice("db", "encode-sample", "--out", str(out), "--server-version", VERSION, "--rows", "60")
    return {
        "data": out,
        "structure": Path(str(out) + ".structure").read_text(),
        "columns": Path(str(out) + ".columns").read_text(),
    }


def run_ddl(s):
    ddl = sluice("db", "init", "--print-ddl", "--server-version", VERSION)
    for stmt in [x.strip() for x in ddl.split(";\n") if x.strip()]:
        s.query(stmt)


def test_modern_migrations_run_and_pick_modern_types(sess):
    run_ddl(sess)
    types = str(sess.query(
        "SELECT name, type FROM system.columns WHERE database='sluice' AND table='events' FORMAT TSV"))
    assert "collector_tstamp\tDateTime64(3, \\'UTC\\')" in types
    assert "platform\tLowCardinality(Nullable(String))" in types
    engine = str(sess.query(
        "SELECT engine_full FROM system.tables WHERE database='sluice' AND name='events' FORMAT TSV"))
    assert "non_replicated_deduplication_window = 1000" in engine
    assert "toYYYYMM(collector_tstamp)" in engine


def test_sink_rowbinary_loads_and_reads_back_identical(sess, sample):
    run_ddl(sess)
    cols = sample["columns"]
    sess.query(
        f"INSERT INTO sluice.events ({cols}) SELECT * FROM file('{sample['data']}', 'RowBinary', '{sample['structure']}')")
    assert str(sess.query("SELECT count() FROM sluice.events FORMAT TSV")).strip() == "60"
    back = sess.query(f"SELECT {cols} FROM sluice.events ORDER BY wal_index FORMAT RowBinary")
    assert back.bytes() == sample["data"].read_bytes()
    row = str(sess.query(
        "SELECT page_title, toUnixTimestamp64Milli(collector_tstamp) FROM sluice.events WHERE wal_index = 0 FORMAT TSV"))
    assert row.startswith("Grüße, 世界 🚀 \\t\\n tab\t1700000000000"), row


def test_the_same_batch_with_the_same_token_is_stored_once(sess, sample):
    run_ddl(sess)
    cols = sample["columns"]
    for token in ["sluice-0-1-60", "sluice-0-1-60", "sluice-0-61-120"]:
        sess.query(
            f"INSERT INTO sluice.events ({cols}) SETTINGS insert_deduplication_token = '{token}' "
            f"SELECT * FROM file('{sample['data']}', 'RowBinary', '{sample['structure']}')")
    # The repeated token is dropped; a new token is a new batch (stored again).
    assert str(sess.query("SELECT count() FROM sluice.events FORMAT TSV")).strip() == "120"


def test_the_json_source_columns_get_modern_types(sess):
    run_ddl(sess)
    rows = str(sess.query(
        "SELECT name, type FROM system.columns WHERE database='sluice' AND table='events' "
        "ORDER BY position FORMAT TSV")).strip().splitlines()
    types = dict(r.split("\t", 1) for r in rows)
    for name in ["source", "stream", "app_version"]:
        assert types[name] == "LowCardinality(Nullable(String))", (name, types[name])
    for name in ["message_id", "anonymous_id", "properties", "traits", "context"]:
        assert types[name] == "Nullable(String)", (name, types[name])
    names = [r.split("\t", 1)[0] for r in rows]
    # Each sits where migration 2 puts it on tables created before it (AFTER its neighbour).
    for before, col in [("event_id", "message_id"), ("app_id", "app_version"), ("platform", "source"),
                        ("source", "stream"), ("user_id", "anonymous_id"),
                        ("unstruct_event", "properties"), ("properties", "traits"), ("traits", "context")]:
        assert names.index(col) == names.index(before) + 1, (before, col)
