"""End to end: the admin console in a real browser (Debian's headless Chromium, driven by
puppeteer-core in tests/e2e/js/console.mjs) against the daemon publishing into a real ClickHouse.

The browser signs in through the 401 page's form; on each tab it checks what a person would look
at (an official tracker's event in Live with its enriched row, a malformed request as a failure
and then as a dead letter that is replayed and purged, the Pipeline's charts drawn, the tracker's
row in Events, the Setup tab's test event stored) and saves a screenshot of it in
`CARGO_TARGET_DIR/console-screenshots/` (printed at the end). The daemon runs with a small
`collector.max_payload_bytes`, so requests the browser run sends over it are dead-lettered as
`size_violation`; the daemon is then restarted with the limit raised (the config fix), and a second
browser run pages through those dead letters, replays them and finds their rows in Events.
Afterwards ClickHouse must hold the tracker's row, the console's test event and every replayed row,
once each.

Chromium and puppeteer-core are required, never skipped: scripts/test.sh installs both. The
browser run is bounded (NODE_TIMEOUT_S), and so is the whole test (conftest's hard limit).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from pipeline import EVENTS_TABLE, Pipeline

ROOT = Path(__file__).resolve().parents[2]
JS_DIR = Path(__file__).resolve().parent / "js"
SCREENSHOTS = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "console-screenshots"
# Each browser run: sign-in, the tabs, replays and a purge (about 15 s here).
NODE_TIMEOUT_S = 110
# The limit before the config fix, and each oversized request's padding (over it, well under
# the fixed limit and the drop limit `server.max_body_bytes`).
SMALL_PAYLOAD_LIMIT = "4KiB"
FIXED_PAYLOAD_LIMIT = "1MiB"
OVERSIZED_BYTES = 6000
OVERSIZED = 30
CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is not installed (scripts/test.sh installs Debian's chromium package)")


def test_the_console_shows_a_tracker_event_a_dead_letter_and_the_pipeline_in_a_browser(
    sluice_bin: Path, tmp_path: Path
):
    browser = chromium()
    assert (JS_DIR / "node_modules" / "puppeteer-core").is_dir(), (
        "tests/e2e/js/node_modules/puppeteer-core is missing: run `npm ci` in tests/e2e/js (scripts/test.sh does)"
    )
    run_id = uuid.uuid4().hex[:8]
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    pipe = Pipeline(
        sluice_bin,
        tmp_path,
        env={"SLUICE_WAL__PARTITIONS": "2", "SLUICE_COLLECTOR__MAX_PAYLOAD_BYTES": SMALL_PAYLOAD_LIMIT},
    )
    try:
        pipe.daemon.start()
        token = (pipe.daemon.data_dir / "admin.token").read_text().strip()
        env = {
            **os.environ,
            "CONSOLE_ADMIN_URL": f"http://127.0.0.1:{pipe.daemon.admin_port}",
            "CONSOLE_TOKEN": token,
            "CONSOLE_COLLECTOR_PORT": str(pipe.daemon.port),
            "CONSOLE_CHROMIUM": browser,
            "CONSOLE_SCREENSHOTS": str(SCREENSHOTS),
            "CONSOLE_RUN_ID": run_id,
            "CONSOLE_OVERSIZED_BYTES": str(OVERSIZED_BYTES),
        }
        result = run_browser("main", env, pipe)
        # What the page showed is what ClickHouse holds.
        app_id = result["app_id"]
        test_event = result["test_event_id"]
        deadline = time.monotonic() + 20
        while True:
            tracker_rows = pipe.ch.count(f"SELECT count() FROM {EVENTS_TABLE} WHERE app_id = '{app_id}'")
            test_rows = pipe.ch.count(
                f"SELECT count() FROM {EVENTS_TABLE} WHERE app_id = 'sluice-console' "
                f"AND toString(event_id) = '{test_event}'"
            )
            if (tracker_rows, test_rows) == (1, 1) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert tracker_rows == 1, f"{tracker_rows} rows of the tracker's page view"
        assert test_rows == 1, f"{test_rows} rows of the console's test event {test_event}"
        oversized_app = result["oversized_app_id"]
        assert pipe.ch.count(f"SELECT count() FROM {EVENTS_TABLE} WHERE app_id = '{oversized_app}'") == 0

        # The config fix: the same data directory and ports, a limit the requests fit under.
        assert pipe.daemon.terminate() == 0
        restarted_ms = int(time.time() * 1000)
        pipe.daemon.env["SLUICE_COLLECTOR__MAX_PAYLOAD_BYTES"] = FIXED_PAYLOAD_LIMIT
        pipe.daemon.start()
        run_browser("replay", env, pipe)
        rows = pipe.ch.query_rows(
            f"SELECT count() AS n, uniqExact(event_id) AS ids, "
            f"toUnixTimestamp(max(collector_tstamp)) AS latest_s "
            f"FROM {EVENTS_TABLE} WHERE app_id = '{oversized_app}'"
        )
        counts = [(int(r["n"]), int(r["ids"])) for r in rows]
        assert counts == [(OVERSIZED, OVERSIZED)], f"the replayed rows in ClickHouse (count, distinct ids): {counts}"
        # A replay keeps the time the collector first received the request.
        assert int(rows[0]["latest_s"]) * 1000 < restarted_ms, f"collector_tstamp {rows[0]['latest_s']} s is after the restart"
        assert pipe.daemon.health() == 200
    finally:
        pipe.close()


def run_browser(phase: str, env: dict[str, str], pipe: Pipeline) -> dict:
    """Runs one phase of console.mjs; fails the test with the browser's and the daemon's output."""
    started = time.monotonic()
    try:
        out = subprocess.run(
            ["node", "console.mjs"],
            cwd=JS_DIR,
            env={**env, "CONSOLE_PHASE": phase},
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"console.mjs ({phase}) ran over {NODE_TIMEOUT_S}s\n{e.stderr}\n{pipe.daemon.log_tail()}")
    took = time.monotonic() - started
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"console.mjs ({phase}) printed no result (exit {out.returncode}):\n{out.stdout}\n{out.stderr}"
    result = json.loads(lines[-1])
    print(f"\nconsole screenshots, {phase} ({took:.1f}s in the browser):")
    for path in result.get("screenshots", []):
        print(f"  {path}")
    for c in result.get("checks", []):
        print(f"  ok: {c}")
    assert result["ok"] and out.returncode == 0, (
        f"the browser run ({phase}) failed: {result.get('error')}\n{out.stderr}\n{pipe.daemon.log_tail()}"
    )
    return result
