"""The current ClickHouse engine (chdb, in-process) behind the part of ClickHouse's HTTP interface
sluice uses, so the daemon's own sink can deliver into a server that deduplicates by
`insert_deduplication_token` (Debian's 18.16 cannot).

Run as a process: `python chdb_front.py --port P --path DIR` (a chdb session over DIR). Tests use
the `ChdbFront` class, a `ClickHouse` (tests/e2e/clickhouse.py) whose queries go through the front.

What it serves, as ClickHouse does:

- `GET /ping` → `Ok.`;
- `POST /` with the SQL as the body and settings as URL parameters → the statement's output
  (TabSeparated unless the SQL names a FORMAT; `default_format` is honoured);
- `POST /?query=INSERT INTO t (cols) FORMAT RowBinary&<settings>` with the rows as the body →
  `INSERT INTO t (cols) SETTINGS <settings> SELECT * FROM file(<body>, 'RowBinary', <the
  columns' types from DESCRIBE>)`. The engine applies the token exactly as a server would
  (chdb's own test: tests/chdb). `decompress=1` is refused: run sluice with
  `clickhouse.compression = "none"`.
- errors: status 500 (404 for an unknown table or database, 400 for a syntax error), the
  exception text as the body and `X-ClickHouse-Exception-Code`, which is what sluice reads.

And two routes of its own, for tests:

- `POST /_front/hold`: the next INSERT is committed, then its answer is held back until the
  client goes away or `POST /_front/release`. A test holds an insert, waits until `held` in
  `/_front/stats` is true, and SIGKILLs sluice: the batch is then in the table but was never
  acknowledged to sluice, which must re-send it with the same token.
- `GET /_front/stats`: `{"inserts", "repeated_tokens", "held"}`. `repeated_tokens` counts INSERTs
  whose `insert_deduplication_token` the front had seen before (re-sent batches).

Statements run one at a time (one lock around the session).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from clickhouse import ClickHouse, ClickHouseError
from sluice_e2e import _die_with_parent, free_port

INSERT_RE = re.compile(r"^\s*INSERT\s+INTO\s+(\S+)\s*\((.*)\)\s*FORMAT\s+RowBinary\s*$", re.I | re.S)
FORMAT_RE = re.compile(r"\bFORMAT\s+\w+\s*;?\s*$", re.I)
CODE_RE = re.compile(r"Code: (\d+)")
# Settings the front interprets itself rather than passing to the engine.
FRONT_PARAMS = {"query", "default_format", "database"}


def quote_setting(value: str) -> str:
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Engine:
    """One chdb session, one statement at a time, plus what the test routes report."""

    def __init__(self, path: str):
        from chdb import session as chs

        self.session = chs.Session(path)
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.inserts = 0
        self.repeated = 0
        self.hold_next = False
        self.held = threading.Event()
        self.release = threading.Event()
        self.scratch = tempfile.mkdtemp(prefix="chdb-front-")

    def run(self, sql: str, fmt: str) -> bytes:
        with self.lock:
            return self.session.query(sql, fmt).bytes()

    def structure(self, table: str, columns: list[str]) -> str:
        described = self.run(f"DESCRIBE TABLE {table} FORMAT JSONEachRow", "JSONEachRow")
        types = {}
        for line in described.decode().splitlines():
            if line.strip():
                row = json.loads(line)
                types[row["name"]] = row["type"]
        return ", ".join(f"`{c}` {types[c]}" for c in columns)

    def insert(self, table: str, column_list: str, settings: dict[str, str], body: bytes) -> None:
        columns = [c.strip().strip("`") for c in column_list.split(",")]
        fd, path = tempfile.mkstemp(dir=self.scratch, suffix=".bin")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            settings_sql = ", ".join(f"{k} = {quote_setting(v)}" for k, v in settings.items())
            structure = self.structure(table, columns).replace("'", "\\'")
            sql = (
                f"INSERT INTO {table} ({column_list}) "
                + (f"SETTINGS {settings_sql} " if settings_sql else "")
                + f"SELECT * FROM file('{path}', 'RowBinary', '{structure}')"
            )
            self.run(sql, "TabSeparated")
        finally:
            os.unlink(path)
        token = settings.get("insert_deduplication_token")
        with self.lock:
            self.inserts += 1
            if token is not None:
                if token in self.tokens:
                    self.repeated += 1
                self.tokens.add(token)


class Handler(BaseHTTPRequestHandler):
    engine: Engine
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    def answer(self, status: int, body: bytes, code: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        if code is not None:
            self.send_header("X-ClickHouse-Exception-Code", str(code))
        self.end_headers()
        self.wfile.write(body)

    def fail(self, message: str) -> None:
        m = CODE_RE.search(message)
        code = int(m.group(1)) if m else 1000
        status = 404 if code in (60, 81) else 400 if code == 62 else 500
        self.answer(status, message.encode() + b"\n", code)

    def do_GET(self):
        path = urlsplit(self.path).path
        if path in ("/ping", "/"):
            self.answer(200, b"Ok.\n")
        elif path == "/_front/stats":
            e = self.engine
            with e.lock:
                stats = {"inserts": e.inserts, "repeated_tokens": e.repeated, "held": e.held.is_set()}
            self.answer(200, json.dumps(stats).encode())
        else:
            self.answer(404, b"not found\n")

    def do_POST(self):
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        e = self.engine
        if url.path == "/_front/hold":
            e.release.clear()
            e.held.clear()
            e.hold_next = True
            return self.answer(200, b"holding the next insert\n")
        if url.path == "/_front/release":
            e.release.set()
            return self.answer(200, b"released\n")
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        settings = {k: v for k, v in params.items() if k not in FRONT_PARAMS}
        if settings.pop("decompress", "0") not in ("0", ""):
            return self.fail("Code: 1000. the chdb front takes no compressed bodies: set clickhouse.compression = \"none\"")
        try:
            query = params.get("query")
            if query is not None:
                m = INSERT_RE.match(query)
                if not m:
                    return self.fail(f"Code: 62. the chdb front only takes INSERT ... FORMAT RowBinary with a body, not {query[:100]!r}")
                e.insert(m.group(1), m.group(2), settings, body)
                if e.hold_next:
                    e.hold_next = False
                    e.held.set()
                    e.release.wait(timeout=60)
                return self.answer(200, b"")
            sql = body.decode().strip().rstrip(";")
            if settings:
                assignments = ", ".join(f"{k} = {quote_setting(v)}" for k, v in settings.items())
                m = FORMAT_RE.search(sql)
                head, tail = (sql[: m.start()], " " + sql[m.start():]) if m else (sql, "")
                sql = f"{head} SETTINGS {assignments}{tail}"
            fmt = params.get("default_format") or "TabSeparated"
            self.answer(200, e.run(sql, fmt))
        except Exception as err:  # chdb raises ChdbError with the server's own message
            self.fail(str(err))


def serve(port: int, path: str) -> None:
    Handler.engine = Engine(path)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"chdb front on http://127.0.0.1:{port}", flush=True)
    server.serve_forever()


# ----- the test side -----


class ChdbFront(ClickHouse):
    """A front process this helper owns; queries go through it like through any server."""

    @classmethod
    def start(cls, tmp_dir: Path, timeout: float = 60.0, own: bool = True) -> "ChdbFront":
        work_dir = Path(tmp_dir) / "chdb"
        work_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        front = cls(f"http://127.0.0.1:{port}", work_dir, port, owned=True)
        front.restart(timeout)
        return front

    def restart(self, timeout: float = 60.0) -> None:
        assert self.work_dir is not None
        out = open(self.work_dir / "stdout.log", "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__)), "--port", str(self.http_port), "--path", str(self.work_dir / "data")],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise ClickHouseError(f"the chdb front did not start\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        p = (self.work_dir or Path("/nonexistent")) / "stdout.log"
        if not p.exists():
            return "(no chdb front log)"
        return "--- chdb front (tail) ---\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])

    def hold_next_insert(self) -> None:
        self.session.post(f"{self.url}/_front/hold", timeout=5).raise_for_status()

    def release(self) -> None:
        self.session.post(f"{self.url}/_front/release", timeout=5).raise_for_status()

    def stats(self) -> dict:
        return self.session.get(f"{self.url}/_front/stats", timeout=5).json()

    def wait_held(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.stats()["held"]:
            assert time.monotonic() < deadline, "no insert arrived to hold"
            time.sleep(0.02)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    a = ap.parse_args()
    serve(a.port, a.path)
