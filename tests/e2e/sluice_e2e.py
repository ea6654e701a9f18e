"""Test support for the end-to-end tests: run the real `sluice` binary and read its log back.

- `Daemon` starts `sluice serve` on free loopback ports with a temp data dir, waits for
  `/health`, and can SIGKILL, restart (same ports, same data dir) and SIGTERM it.
- `Ledger` records, from the client's side, exactly which HTTP requests got a 2xx: it hooks the
  `requests.Session` the tracker sends through, so it sees the real status of every request,
  and the tracker's own `on_success` callback is checked against it.
- `wal_status`, `wal_verify` and `wal_records` run the operator CLI (`sluice wal ...`) against the
  data dir, which is how an operator would look at the log.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

TP2_ROUTE = "/com.snowplowanalytics.snowplow/tp2"
GET_ROUTE = "/i"
# The page-view URLs the tests send look like this, followed by the event's marker.
PAGE_URL_PREFIX = "http://e2e.sluice.test/page/"

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_override(name: str, default: str) -> str:
    """A test-only environment override (`E2E_KILLS`, `SLUICE_TEST_CLICKHOUSE_URL`, ...), or
    `default`. Refused under CI (`CI=true`): an override changes what a test proves, and a CI run
    must prove the same thing on every runner."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if os.environ.get("CI", "").strip().lower() == "true":
        raise AssertionError(f"{name} is set but CI=true: unset it (it is for local runs only)")
    return value


def require_node() -> None:
    """Fail (never skip) when `node` is missing: the tracker-SDK tests run in every CI run."""
    assert shutil.which("node") is not None, (
        "node is not installed: install Debian's nodejs and npm (scripts/test.sh does), then "
        "`npm ci` in tests/e2e/js"
    )


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the test process dies, so no daemon outlives it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class DaemonError(AssertionError):
    """The daemon did not start, answer, or stop as it must. The message has its log's tail."""


class Daemon:
    """One `sluice serve` process, restartable on the same ports and data dir."""

    def __init__(
        self,
        binary: Path,
        data_dir: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ):
        self.binary = binary
        # more `sluice serve` flags (e.g. `--clickhouse-url URL`)
        self.extra_args = list(extra_args or [])
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.metrics_port = free_port()
        self.admin_port = free_port()
        # Only the test's own SLUICE_* settings reach the daemon, whatever the caller's shell has.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        self.env = {**inherited, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        # how long the last SIGTERM took to end the process
        self.stop_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self) -> subprocess.Popen:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        log.write(f"\n----- start #{self.starts + 1} -----\n".encode())
        log.flush()
        try:
            return subprocess.Popen(
                [
                    str(self.binary),
                    "serve",
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--metrics-listen",
                    f"127.0.0.1:{self.metrics_port}",
                    "--admin-listen",
                    f"127.0.0.1:{self.admin_port}",
                    "--data-dir",
                    str(self.data_dir),
                    *self.extra_args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart) and wait until `/health` answers 200.

        A restart right after a SIGKILL can find the port not yet free; the attempt is then
        repeated until `timeout`. Any other early exit fails at once.
        """
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        deadline = time.monotonic() + timeout
        while True:
            self.proc = self._spawn()
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self.health() == 200:
                    self.starts += 1
                    return
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.kill()
                raise DaemonError(f"/health did not answer within {timeout}s\n{self.log_tail()}")
            if time.monotonic() >= deadline or not self._bind_failed():
                raise DaemonError(
                    f"sluice serve exited with {self.proc.returncode} on start\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def _bind_failed(self) -> bool:
        """Whether the last start's output says its address was in use."""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            text = f.read().decode(errors="replace").lower()
        return "address already in use" in text or "addrinuse" in text

    def health(self) -> int | None:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, OSError):
            return None

    def metrics_text(self) -> str:
        """The daemon's Prometheus exposition (its separate metrics listener)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def kill(self) -> None:
        """SIGKILL the daemon and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 40.0) -> int:
        """SIGTERM (graceful shutdown) and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            started = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise DaemonError(f"no exit within {timeout}s of SIGTERM\n{self.log_tail()}")
            self.stop_seconds = time.monotonic() - started
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no daemon log)"
        return "daemon log (tail):\n" + "\n".join(text[-lines:])


def run_cli(binary: Path, *args: str, env: dict[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run `sluice ARGS...` with the same environment (hence configuration) as the daemon."""
    return subprocess.run(
        [str(binary), *args],
        stdin=subprocess.DEVNULL,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wal_status(daemon: Daemon) -> dict:
    """`sluice wal status --json`: totals at top level and a `partitions` array."""
    r = run_cli(daemon.binary, "wal", "status", "--data-dir", str(daemon.data_dir), "--json", env=daemon.env)
    assert r.returncode == 0, f"wal status exited {r.returncode}: {r.stderr}"
    return json.loads(r.stdout)


def wal_verify(daemon: Daemon) -> subprocess.CompletedProcess:
    return run_cli(daemon.binary, "wal", "verify", "--data-dir", str(daemon.data_dir), env=daemon.env)


@dataclass
class WalContents:
    """What `sluice wal inspect --json` shows, indexed for the checks."""

    records: list[dict] = field(default_factory=list)
    # raw query strings of GET /i requests, and raw bodies of POST tp2 requests
    get_queries: set[str] = field(default_factory=set)
    post_bodies: set[str] = field(default_factory=set)
    # the marker of every Snowplow event found in either
    markers: set[str] = field(default_factory=set)


def wal_records(daemon: Daemon) -> WalContents:
    """Every record of every partition, decoded by `sluice wal inspect --json`."""
    r = run_cli(
        daemon.binary,
        "wal",
        "inspect",
        "--data-dir",
        str(daemon.data_dir),
        "--json",
        "--limit",
        "1000000",
        env=daemon.env,
        timeout=120,
    )
    assert r.returncode == 0, f"wal inspect exited {r.returncode}: {r.stderr}"
    out = WalContents()
    for line in r.stdout.splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        out.records.append(rec)
        if rec.get("route") == GET_ROUTE and rec.get("method") == "GET":
            query = rec.get("query") or ""
            out.get_queries.add(query)
            params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
            m = event_marker(params)
            if m is not None:
                out.markers.add(m)
        elif rec.get("route") == TP2_ROUTE and rec.get("method") == "POST":
            body = rec.get("body")
            assert body is not None, f"tp2 body is not UTF-8 text in record {rec.get('lsn')}"
            out.post_bodies.add(body)
            for ev in json.loads(body)["data"]:
                m = event_marker(ev)
                if m is not None:
                    out.markers.add(m)
    return out


def event_marker(ev: dict) -> str | None:
    """The test's unique marker of one tracker event: the structured event's label, or the last
    path segment of a page view's URL."""
    if "se_la" in ev:
        return ev["se_la"]
    url = ev.get("url")
    if url and url.startswith(PAGE_URL_PREFIX):
        return url[len(PAGE_URL_PREFIX) :]
    return None


class Ledger:
    """The client's record of what the collector acknowledged. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # exactly what was sent in requests that got a 2xx (seen on the wire by a session hook)
        self.acked_get_queries: set[str] = set()
        self.acked_post_bodies: set[str] = set()
        self.acked_requests = 0
        self.failed_requests = 0
        # events the tracker library itself reported as sent (on_success) / unsent (on_failure)
        self.tracker_acked_markers: set[str] = set()
        self.tracker_failures = 0

    def response_hook(self, response, *args, **kwargs):
        """`requests` response hook: sees every request's real status code."""
        req = response.request
        ok = 200 <= response.status_code < 300
        with self._lock:
            if not ok:
                self.failed_requests += 1
                return response
            self.acked_requests += 1
            if req.method == "GET":
                self.acked_get_queries.add(urlsplit(req.url).query)
            else:
                body = req.body.decode() if isinstance(req.body, bytes) else req.body
                self.acked_post_bodies.add(body)
        return response

    def on_success(self, events) -> None:
        with self._lock:
            for ev in events:
                m = event_marker(ev)
                if m is not None:
                    self.tracker_acked_markers.add(m)

    def on_failure(self, _sent: int, _unsent) -> None:
        with self._lock:
            self.tracker_failures += 1

    def snapshot(self) -> tuple[int, set[str], set[str]]:
        with self._lock:
            return self.acked_requests, set(self.acked_get_queries), set(self.acked_post_bodies)

    def acked_markers_on_the_wire(self) -> set[str]:
        """Markers of the events inside the acknowledged requests, decoded from what was sent."""
        _, queries, bodies = self.snapshot()
        markers = set()
        for q in queries:
            m = event_marker({k: v[0] for k, v in parse_qs(q, keep_blank_values=True).items()})
            if m is not None:
                markers.add(m)
        for b in bodies:
            for ev in json.loads(b)["data"]:
                m = event_marker(ev)
                if m is not None:
                    markers.add(m)
        return markers
