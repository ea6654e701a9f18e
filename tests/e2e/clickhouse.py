"""Test support: a real ClickHouse server for the end-to-end tests, and queries over its HTTP
interface.

`ClickHouse.start(tmp_dir)` runs Debian's `clickhouse-server` (18.16 on these machines) as the
current user on a free HTTP port, with every file it writes (data, metadata, logs) in a temp
directory, and waits for `/ping`. It can be SIGKILLed and restarted on the same port and data
(the outage test), and is always killed by `stop()` (call it in a `finally`). The server gets
SIGKILL if the test process dies (PR_SET_PDEATHSIG), so none outlives a run.

When `SLUICE_TEST_CLICKHOUSE_URL` is set (any server a contributor has, e.g.
`http://127.0.0.1:8123`) and this is not CI, no process is started: the tests use that server,
each in a database of its own. Tests that must kill the server (the outage test) ask for
`own=True` and always start their own. Under CI (`CI=true`) the variable is refused, so every CI
run tests against the server scripts/test.sh installs.

Queries: `query_rows(sql)` returns a list of dicts (`FORMAT JSONEachRow`), `execute(sql)` runs a
statement, `count(sql)` reads one number. Only `requests` is needed.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import requests

from sluice_e2e import _die_with_parent, free_port, local_override

# Where Debian's package puts the server and its stock configuration.
SERVER_BIN = "clickhouse-server"
STOCK_CONFIG = Path("/etc/clickhouse-server/config.xml")
# Set by contributors who bring their own server (the daemon ignores SLUICE_TEST_* variables).
URL_ENV = "SLUICE_TEST_CLICKHOUSE_URL"


class ClickHouseError(AssertionError):
    """The server did not start or answer, or a query failed. The message has the details."""


class ClickHouse:
    """One ClickHouse server: a process this helper owns, or an external one (`SLUICE_TEST_CLICKHOUSE_URL`)."""

    def __init__(self, url: str, work_dir: Path | None, http_port: int | None, owned: bool):
        self.url = url.rstrip("/")
        self.work_dir = work_dir
        self.http_port = http_port
        # Whether this helper started the server (and so may kill and restart it).
        self.owned = owned
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()
        self._version: tuple[int, ...] | None = None

    # ----- lifecycle -----

    @classmethod
    def start(cls, tmp_dir: Path, timeout: float = 60.0, own: bool = False) -> "ClickHouse":
        """An external server when `SLUICE_TEST_CLICKHOUSE_URL` is set (refused under CI) and
        `own` is false, else a new process."""
        external = "" if own else local_override(URL_ENV, "")
        if external:
            ch = cls(external, None, None, owned=False)
            ch.wait_ready(timeout)
            return ch
        if shutil.which(SERVER_BIN) is None or not STOCK_CONFIG.is_file():
            raise ClickHouseError(
                f"{SERVER_BIN} is not installed: install Debian's clickhouse-server (scripts/test.sh does)"
            )
        work_dir = Path(tmp_dir) / "clickhouse"
        work_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        ch = cls(f"http://127.0.0.1:{port}", work_dir, port, owned=True)
        ch.restart(timeout)
        return ch

    def _command(self) -> list[str]:
        d = self.work_dir
        assert d is not None
        # The stock config with every path moved into the temp dir; TCP and interserver ports
        # 0 (any free one: only HTTP is used, and it keeps its port across restarts).
        return [
            SERVER_BIN,
            f"--config-file={STOCK_CONFIG}",
            "--",
            f"--path={d}/",
            f"--tmp_path={d}/tmp/",
            f"--user_files_path={d}/user_files/",
            f"--format_schema_path={d}/format_schemas/",
            f"--logger.log={d}/server.log",
            f"--logger.errorlog={d}/server.err.log",
            "--logger.level=warning",
            "--logger.console=0",
            f"--http_port={self.http_port}",
            "--tcp_port=0",
            "--interserver_http_port=0",
        ]

    def restart(self, timeout: float = 60.0) -> None:
        """Start the owned server (again: same port, same data) and wait for `/ping`."""
        assert self.owned, "only a server this helper started can be (re)started"
        assert self.proc is None or self.proc.poll() is not None, "clickhouse-server already running"
        assert self.work_dir is not None
        deadline = time.monotonic() + timeout
        while True:
            out = open(self.work_dir / "stdout.log", "ab")
            try:
                self.proc = subprocess.Popen(
                    self._command(),
                    cwd=self.work_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
            finally:
                out.close()
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.ping():
                    return
                time.sleep(0.1)
            if self.proc.poll() is None:
                self.kill()
                raise ClickHouseError(f"clickhouse-server not ready within {timeout}s\n{self.log_tail()}")
            # A restart right after a kill can find the port still taken: try again until the deadline.
            if time.monotonic() >= deadline or "Address already in use" not in self.log_tail():
                raise ClickHouseError(f"clickhouse-server exited with {self.proc.returncode}\n{self.log_tail()}")
            time.sleep(0.3)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ping():
            if time.monotonic() > deadline:
                raise ClickHouseError(f"ClickHouse at {self.url} does not answer /ping")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the owned server and reap it (the outage); no-op for an external server."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """End the owned server (always call it in a `finally`)."""
        self.kill()
        self.session.close()

    def log_tail(self, lines: int = 30) -> str:
        if self.work_dir is None:
            return f"(external server {self.url})"
        parts = []
        for name in ("server.err.log", "stdout.log"):
            p = self.work_dir / name
            if p.exists():
                text = p.read_text(errors="replace").splitlines()
                parts.append(f"--- {name} (tail) ---\n" + "\n".join(text[-lines:]))
        return "\n".join(parts) or "(no clickhouse-server log)"

    # ----- queries -----

    def ping(self) -> bool:
        try:
            return self.session.get(f"{self.url}/ping", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def execute(self, sql: str, data: bytes | None = None, timeout: float = 60.0, **settings) -> str:
        """Run one statement (with `data` as the INSERT's body, if any); returns the response text."""
        params = {k: str(v) for k, v in settings.items()}
        try:
            if data is None:
                r = self.session.post(self.url, params=params, data=sql.encode(), timeout=timeout)
            else:
                r = self.session.post(self.url, params={**params, "query": sql}, data=data, timeout=timeout)
        except requests.RequestException as e:
            raise ClickHouseError(f"ClickHouse at {self.url} unreachable: {e}") from e
        if r.status_code != 200:
            code = r.headers.get("X-ClickHouse-Exception-Code", "?")
            raise ClickHouseError(f"ClickHouse error {code} (HTTP {r.status_code}) for {sql[:200]!r}: {r.text[:500]}")
        return r.text

    def query_rows(self, sql: str, timeout: float = 60.0) -> list[dict]:
        """`sql` (without FORMAT) as a list of dicts, one per row."""
        text = self.execute(f"{sql} FORMAT JSONEachRow", timeout=timeout)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def count(self, sql: str) -> int:
        """The single number `sql` returns (e.g. `SELECT count() FROM t`)."""
        return int(self.execute(sql).strip())

    def version(self) -> tuple[int, ...]:
        if self._version is None:
            text = self.execute("SELECT version()").strip()
            self._version = tuple(int(p) for p in text.split(".") if p.isdigit())
        return self._version

    def supports_insert_dedup_token(self) -> bool:
        """Whether `insert_deduplication_token` exists (ClickHouse 22.2 and later). Without it
        a re-sent batch is a second copy, so duplicates can only be counted, not ruled out."""
        return self.count("SELECT count() FROM system.settings WHERE name = 'insert_deduplication_token'") > 0

    def columns(self, table: str) -> dict[str, str]:
        """Column name → type, from `DESCRIBE TABLE`."""
        return {r["name"]: r["type"] for r in self.query_rows(f"DESCRIBE TABLE {table}")}

    def fresh_database(self, prefix: str = "e2e") -> str:
        """A new, empty database name for one test (not created: `sluice db init` creates it)."""
        return f"{prefix}_{uuid.uuid4().hex[:12]}"
