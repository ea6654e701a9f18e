"""End to end: the official Python Snowplow tracker against `sluice serve`, killed with SIGKILL.

The guarantee under test is sluice's first promise: a request that got a 2xx is on disk. Several
threads send page views and structured events through `snowplow_tracker` (POST batches to
`/com.snowplowanalytics.snowplow/tp2` and one-event GETs to `/i`), each event carrying a unique
marker. A `requests` hook records exactly which requests the collector acknowledged. The daemon
is SIGKILLed at random moments under that load and restarted on the same data dir; the trackers
retry what failed, as they do in production. Afterwards the operator CLI must show every
acknowledged request, byte for byte, and `sluice wal verify` must pass.

Environment knobs: E2E_SEED (reproduce a run), E2E_KILLS (kill/restart cycles).
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from pathlib import Path

import requests
from snowplow_tracker import Emitter, PageView, SelfDescribingJson, StructuredEvent, Tracker

from sluice_e2e import (
    PAGE_URL_PREFIX,
    TP2_ROUTE,
    Daemon,
    DaemonError,
    Ledger,
    local_override,
    wal_records,
    wal_status,
    wal_verify,
)

# A log of small segments, so that several fill and roll over during the test (and some kills
# land near a segment boundary). A request must fit in one segment, hence the smaller body cap;
# the POST trackers' buffers are capped below it (TRACKER_BUFFER_EVENTS).
SMALL_WAL = {
    "SLUICE_WAL__SEGMENT_SIZE": "256KiB",
    "SLUICE_WAL__CAPACITY": "64MiB",
    "SLUICE_WAL__PARTITIONS": "2",
    "SLUICE_SERVER__MAX_BODY_BYTES": "128KiB",
    "SLUICE_LOG__LEVEL": "warn",
}
# Events a tracker holds while the collector is down (the library drops further ones, which are
# then never acknowledged). 100 events make a POST body of about 70 KB.
TRACKER_BUFFER_EVENTS = 100
# The whole crash test must finish within this many seconds (it takes well under a minute).
TIME_LIMIT_S = 120.0
KILL_CYCLES = int(local_override("E2E_KILLS", "6"))
# Events each tracker thread produces per second at most: enough to keep requests in flight at
# every kill, small enough that the 64 MiB log never fills.
EVENTS_PER_SECOND_PER_THREAD = 400
# Acknowledged requests to wait for after each (re)start before the next kill, so every kill
# lands mid-load.
PROGRESS_BETWEEN_KILLS = 60

# An entity attached to structured events, as real trackers send (base64 `cx`).
CONTEXT = SelfDescribingJson(
    "iglu:com.acme/test_run/jsonschema/1-0-0", {"suite": "e2e", "purpose": "crash test"}
)


class TrackerThread(threading.Thread):
    """One application thread using the official tracker: produces events until told to stop,
    then flushes what the tracker still holds (retrying through any outage) until a deadline."""

    def __init__(self, name: str, method: str, port: int, ledger: Ledger, stop: threading.Event, run_id: str):
        super().__init__(name=name, daemon=True)
        self.stop = stop
        self.marker_prefix = f"{run_id}-{name}"
        session = requests.Session()
        session.hooks["response"].append(ledger.response_hook)
        # Returning browsers carry the collector's `sp` cookie (the network user id), which is
        # what sluice routes partitions by; a few users per thread spread the load over both.
        self.session = session
        self.users = [uuid.uuid4().hex for _ in range(4)]
        self.emitter = Emitter(
            "127.0.0.1",
            protocol="http",
            port=port,
            method=method,
            batch_size=5 if method == "post" else 1,
            on_success=ledger.on_success,
            on_failure=ledger.on_failure,
            request_timeout=(2.0, 10.0),
            max_retry_delay_seconds=1,
            buffer_capacity=TRACKER_BUFFER_EVENTS,
            session=session,
        )
        self.tracker = Tracker(namespace=f"e2e-{name}", emitters=self.emitter, app_id="sluice-e2e")
        self.produced = 0
        self.drain_deadline = 0.0
        self.error: BaseException | None = None

    def _backing_off(self) -> bool:
        return self.emitter.retry_timer.is_active()

    def run(self) -> None:
        try:
            interval = 1.0 / EVENTS_PER_SECOND_PER_THREAD
            while not self.stop.is_set():
                started = time.monotonic()
                marker = f"{self.marker_prefix}-{self.produced}"
                self.session.cookies.set("sp", self.users[self.produced % len(self.users)])
                if self.produced % 3 == 0:
                    event = PageView(page_url=PAGE_URL_PREFIX + marker, page_title="sluice e2e")
                else:
                    event = StructuredEvent(
                        category="e2e", action="crash-test", label=marker, value=self.produced, context=[CONTEXT]
                    )
                self.tracker.track(event)
                self.produced += 1
                # While the collector is down the tracker only buffers; don't pile up events.
                pause = interval - (time.monotonic() - started)
                if self._backing_off():
                    pause = max(pause, 0.02)
                if pause > 0:
                    time.sleep(pause)
            while True:
                # The emitter's lock is held for a whole flush (also one started by its retry
                # timer), so under it "nothing buffered, no retry pending" means all is sent.
                with self.emitter.lock:
                    if self.emitter.event_store.size() == 0 and not self._backing_off():
                        return
                    if time.monotonic() >= self.drain_deadline:
                        self.emitter.retry_timer.cancel()
                        return
                    if not self._backing_off():
                        self.emitter.flush()
                time.sleep(0.05)
        except BaseException as e:  # reported by the test, not lost in a thread
            self.error = e


def wait_for_acks(ledger: Ledger, target: int, deadline: float, daemon: Daemon, threads) -> None:
    while ledger.snapshot()[0] < target:
        for t in threads:
            assert t.error is None, f"tracker thread {t.name} failed: {t.error!r}"
        if time.monotonic() > deadline:
            raise DaemonError(
                f"only {ledger.snapshot()[0]} of {target} requests acknowledged in time\n{daemon.log_tail()}"
            )
        time.sleep(0.02)


def test_every_acknowledged_request_survives_sigkill_and_restart(sluice_bin: Path, tmp_path: Path):
    seed = int(os.environ.get("E2E_SEED", str(random.randrange(1 << 32))))
    rng = random.Random(seed)
    print(f"seed {seed} (E2E_SEED={seed} reproduces the kill timing)")
    deadline = time.monotonic() + TIME_LIMIT_S
    data_dir = tmp_path / "data"
    daemon = Daemon(sluice_bin, data_dir, tmp_path / "daemon.log", env=SMALL_WAL)
    ledger = Ledger()
    stop = threading.Event()
    run_id = uuid.uuid4().hex[:8]
    threads: list[TrackerThread] = []
    kills = 0
    try:
        daemon.start()
        threads = [TrackerThread(f"post{i}", "post", daemon.port, ledger, stop, run_id) for i in range(3)]
        threads += [TrackerThread(f"get{i}", "get", daemon.port, ledger, stop, run_id) for i in range(3)]
        for t in threads:
            t.start()

        for _ in range(KILL_CYCLES):
            wait_for_acks(ledger, ledger.snapshot()[0] + PROGRESS_BETWEEN_KILLS, deadline - 40, daemon, threads)
            time.sleep(rng.uniform(0.05, 1.0))
            daemon.kill()
            kills += 1
            # Every request acknowledged so far was answered by the process just killed: all of
            # them must already be counted in the log it left behind (read without a daemon).
            acked_at_kill = ledger.snapshot()[0]
            status = wal_status(daemon)
            assert status["appended_total"] >= acked_at_kill, (
                f"after kill {kills}: {acked_at_kill} requests acknowledged "
                f"but the log holds only {status['appended_total']} records"
            )
            time.sleep(rng.uniform(0.0, 0.5))  # the trackers meet refused connections and back off
            daemon.start()

        # The load goes on after the last restart, then the trackers flush what they hold.
        wait_for_acks(ledger, ledger.snapshot()[0] + PROGRESS_BETWEEN_KILLS, deadline - 30, daemon, threads)
        drain_deadline = min(time.monotonic() + 15, deadline - 10)
        for t in threads:
            t.drain_deadline = drain_deadline
        stop.set()
        for t in threads:
            t.join(timeout=max(1.0, drain_deadline - time.monotonic() + 5))
            assert not t.is_alive(), f"tracker thread {t.name} did not finish"
            assert t.error is None, f"tracker thread {t.name} failed: {t.error!r}"
        code = daemon.terminate()
        assert code == 0, f"sluice serve exited {code} on SIGTERM\n{daemon.log_tail()}"
    finally:
        stop.set()
        daemon.kill()
        for t in threads:
            t.drain_deadline = 0.0
            t.join(timeout=5)

    acked_requests, acked_queries, acked_bodies = ledger.snapshot()
    produced = sum(t.produced for t in threads)
    acked_markers = ledger.acked_markers_on_the_wire()

    verify = wal_verify(daemon)
    assert verify.returncode == 0, f"wal verify failed:\n{verify.stdout}\n{verify.stderr}"

    status = wal_status(daemon)
    assert status["appended_total"] >= acked_requests, (
        f"{acked_requests} requests acknowledged but appended_total is {status['appended_total']}"
    )

    wal = wal_records(daemon)
    missing_gets = acked_queries - wal.get_queries
    missing_posts = acked_bodies - wal.post_bodies
    # Events the tracker library itself reported as sent (its on_success callback) count too.
    missing_markers = (acked_markers | ledger.tracker_acked_markers) - wal.markers
    print(
        f"{kills} kills, {daemon.starts} starts; {produced} events produced, "
        f"{len(acked_markers)} acknowledged in {acked_requests} requests "
        f"({len(acked_queries)} GET, {len(acked_bodies)} POST), {ledger.failed_requests} non-2xx, "
        f"{ledger.tracker_failures} failed tracker flushes; "
        f"log: {status['appended_total']} records ({[p.get('appended_total') for p in status['partitions']]} "
        f"per partition), {len(wal.records)} inspected, {len(wal.markers)} events; "
        f"SIGTERM to exit {daemon.stop_seconds:.2f} s"
    )
    assert not missing_gets, f"{len(missing_gets)} acknowledged GET /i requests missing, e.g. {sorted(missing_gets)[:3]}"
    assert not missing_posts, f"{len(missing_posts)} acknowledged tp2 POST bodies missing, e.g. {sorted(missing_posts)[:1]}"
    assert not missing_markers, f"{len(missing_markers)} acknowledged events missing, e.g. {sorted(missing_markers)[:5]}"
    # The tracker library never reports as sent an event whose request did not get a 2xx.
    assert ledger.tracker_acked_markers <= acked_markers
    # Load really ran through every kill (the checks above are not vacuous).
    assert kills == KILL_CYCLES and daemon.starts == KILL_CYCLES + 1
    assert acked_queries and acked_bodies
    assert len(acked_markers) >= (KILL_CYCLES + 1) * PROGRESS_BETWEEN_KILLS


def test_tracker_requests_are_logged_exactly_as_sent(sluice_bin: Path, tmp_path: Path):
    """Without crashes: one record per acknowledged request, holding the raw request (route,
    method, query or body, the headers later stages need) byte for byte."""
    data_dir = tmp_path / "data"
    daemon = Daemon(sluice_bin, data_dir, tmp_path / "daemon.log", env=SMALL_WAL)
    ledger = Ledger()
    run_id = uuid.uuid4().hex[:8]
    try:
        daemon.start()
        trackers = []
        for method, batch in (("post", 5), ("get", 1)):
            session = requests.Session()
            session.hooks["response"].append(ledger.response_hook)
            emitter = Emitter(
                "127.0.0.1",
                protocol="http",
                port=daemon.port,
                method=method,
                batch_size=batch,
                on_success=ledger.on_success,
                on_failure=ledger.on_failure,
                request_timeout=10.0,
                session=session,
            )
            trackers.append((method, Tracker(namespace=f"exact-{method}", emitters=emitter, app_id="sluice-e2e")))
        for method, tracker in trackers:
            for n in range(10):
                marker = f"{run_id}-{method}-{n}"
                if n % 2:
                    tracker.track(PageView(page_url=PAGE_URL_PREFIX + marker, page_title="exact"))
                else:
                    tracker.track(StructuredEvent(category="e2e", action="exact", label=marker, context=[CONTEXT]))
            tracker.flush()
        code = daemon.terminate()
        assert code == 0, f"sluice serve exited {code} on SIGTERM\n{daemon.log_tail()}"
    finally:
        daemon.kill()

    acked_requests, acked_queries, acked_bodies = ledger.snapshot()
    assert ledger.failed_requests == 0 and ledger.tracker_failures == 0
    assert (acked_requests, len(acked_queries), len(acked_bodies)) == (12, 10, 2)
    assert len(ledger.tracker_acked_markers) == 20

    assert wal_verify(daemon).returncode == 0
    assert wal_status(daemon)["appended_total"] == acked_requests

    wal = wal_records(daemon)
    assert len(wal.records) == acked_requests
    assert wal.get_queries == acked_queries
    assert wal.post_bodies == acked_bodies
    assert wal.markers == ledger.tracker_acked_markers
    for rec in wal.records:
        headers = {name.lower(): value for name, value in rec["headers"]}
        assert headers.get("user-agent", "").startswith("python-requests/"), rec
        assert (rec.get("peer") or "").startswith("127.0.0.1"), rec
        if rec["method"] == "POST":
            assert rec["route"] == TP2_ROUTE and rec["path"] == TP2_ROUTE, rec
            assert headers.get("content-type") == "application/json; charset=utf-8", rec
        else:
            assert rec["route"] == "/i" and rec["path"] == "/i", rec
