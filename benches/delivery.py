"""Delivery benchmarks of the whole pipeline (issue 3 targets); run through benches/delivery.sh.

  drain    Fill the log with N events (tp2 POSTs of EVENTS_PER_REQUEST events, each request from
           one of USERS network user ids, sent as the `sp` cookie, so the backlog spreads over
           the partitions as real traffic does) while ClickHouse is down, start ClickHouse, time
           until all N rows are in `sluice.events` (active parts' row counts) → events/s.
           Then ClickHouse's own rate for the same rows: they are dumped as RowBinary in batches
           of the publisher's batch size (one file per batch, encoded before the clock starts),
           re-inserted into an identical empty table with as many concurrent inserters as the
           daemon has partitions, timed → events/s. Prints both and the ratio.
           --pin gives ClickHouse CPU 0 and sluice (and this driver) CPU 1 in both measurements,
           so the collector cannot take ClickHouse's CPU: what a separate host would show.
  latency  ClickHouse up; send RATE events/s for SECONDS (tp2 POSTs); record each request's
           acknowledgement time; poll ClickHouse every POLL_S for the request ids (se_label) that
           became visible; latency = first seen − acknowledged. Prints p50/p90/p99/max. The poll
           interval bounds the resolution (a row is seen up to POLL_S + one query late).

Measures, asserts nothing. Needs a release `sluice` (E2E_SLUICE_BIN) and clickhouse-server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from clickhouse import ClickHouse  # noqa: E402
from pipeline import EVENTS_TABLE  # noqa: E402
from sluice_e2e import Daemon, run_cli  # noqa: E402

TP2 = "/com.snowplowanalytics.snowplow/tp2"
SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def body(n: int, label: str, action: str) -> bytes:
    now = str(int(time.time() * 1000))
    events = [
        {"e": "se", "se_ca": "bench", "se_ac": action, "se_la": label, "se_va": str(i), "eid": str(uuid.uuid4()),
         "tv": "bench-0", "p": "srv", "aid": "bench", "dtm": now, "stm": now,
         "url": f"https://bench.sluice.test/p/{i}?utm_source=bench", "uid": f"user-{i % 97}"}
        for i in range(n)
    ]
    return json.dumps({"schema": SCHEMA, "data": events}).encode()


def sender(port: int, bodies, out: list, lock: threading.Lock) -> None:
    """POSTs each (label, body, user) — user is a network user id cookie, or None."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for label, b, user in bodies:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if user is not None:
            headers["Cookie"] = f"sp={user}"
        conn.request("POST", TP2, body=b, headers=headers)
        r = conn.getresponse()
        r.read()
        t = time.time()
        if not 200 <= r.status < 300:
            raise SystemExit(f"collector answered {r.status}")
        with lock:
            out.append((label, t))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time `pid` has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_mib(pid: int, field: str) -> float:
    """A memory field of /proc/PID/status in MiB: `VmHWM` (peak resident set so far) or
    `RssAnon` (anonymous resident memory now: heap, not file pages)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` runs only on `cpus` (threads it creates later inherit this)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:
            pass  # the thread ended meanwhile


def start_pipeline(binary: Path, work: Path, env: dict) -> tuple[ClickHouse, Daemon]:
    ch = ClickHouse.start(work)
    daemon = Daemon(binary, work / "data", work / "daemon.log", env=env, extra_args=["--clickhouse-url", ch.url])
    r = run_cli(binary, "db", "init", "--clickhouse-url", ch.url, env=daemon.env)
    if r.returncode != 0:
        raise SystemExit(f"db init failed: {r.stderr}")
    return ch, daemon


def drain(args, binary: Path, work: Path) -> None:
    env = {"SLUICE_LOG__LEVEL": "warn", "SLUICE_WAL__CAPACITY": "8GiB"}
    if args.max_in_flight:
        env["SLUICE_PUBLISH__MAX_IN_FLIGHT"] = str(args.max_in_flight)
    if args.batch_rows != 50_000:
        env["SLUICE_PUBLISH__BATCH_ROWS"] = str(args.batch_rows)
    env.update(kv.split("=", 1) for kv in args.env)
    print(f"drain: {args.events} events from {args.users or 'one IP and no'} user ids, "
          f"publish.max_in_flight {args.max_in_flight or 'default'}, batch_rows {args.batch_rows}")
    ch, daemon = start_pipeline(binary, work, env)
    clickhouse_cpus, sluice_cpus = ({0}, {1}) if args.pin else (None, None)
    if args.pin:
        if (os.cpu_count() or 1) < 2:
            raise SystemExit("--pin needs at least 2 CPUs")
        os.sched_setaffinity(0, sluice_cpus)  # this driver and its sender threads
        print(f"pinned: clickhouse-server to CPU {min(clickhouse_cpus)}, sluice and this driver to CPU {min(sluice_cpus)}")
    try:
        ch.kill()  # the backlog builds up while ClickHouse is down
        daemon.start()
        if args.pin:
            pin(daemon.proc.pid, sluice_cpus)
        requests_n = args.events // args.per_request
        payload = body(args.per_request, "drain", "drain")
        lock = threading.Lock()
        acked: list = []
        t0 = time.monotonic()
        users = [str(uuid.uuid4()) for _ in range(args.users)] or [None]
        per = [
            [("drain", payload, users[(k + i * args.senders) % len(users)]) for i in range(requests_n // args.senders)]
            for k in range(args.senders)
        ]
        ts = [threading.Thread(target=sender, args=(daemon.port, p, acked, lock)) for p in per]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        total = len(acked) * args.per_request
        print(f"backlog: {total} events in {len(acked)} requests acknowledged in {time.monotonic() - t0:.1f} s")
        sluice_cpu0 = cpu_seconds(daemon.proc.pid)
        rss_backlog = status_mib(daemon.proc.pid, "VmHWM")
        restarted = time.monotonic()
        if args.pin:
            os.sched_setaffinity(0, clickhouse_cpus)  # the server inherits it from its parent
        ch.restart()
        if args.pin:
            os.sched_setaffinity(0, sluice_cpus)
        first = None
        anon = []  # sluice's RssAnon, sampled with every poll
        while True:
            anon.append(status_mib(daemon.proc.pid, "RssAnon"))
            n = ch.count(f"SELECT sum(rows) FROM system.parts WHERE database = 'sluice' AND table = 'events' AND active")
            if n and first is None:
                first = (time.monotonic(), n)
            if n >= total:
                break
            if time.monotonic() - restarted > args.timeout:
                raise SystemExit(f"only {n} of {total} rows after {args.timeout} s\n{daemon.log_tail()}")
            time.sleep(0.05)
        done = time.monotonic()
        sluice_cpu = cpu_seconds(daemon.proc.pid) - sluice_cpu0
        ch_cpu = cpu_seconds(ch.proc.pid)
        drain_rate = (total - first[1]) / max(done - first[0], 1e-9)
        print(f"drain: {total} rows {done - restarted:.2f} s after ClickHouse restarted "
              f"(first rows after {first[0] - restarted:.2f} s); {total / (done - restarted):,.0f} events/s overall, "
              f"{drain_rate:,.0f} events/s from first row to last")
        print(f"drain CPU: sluice {sluice_cpu:.1f} s = {sluice_cpu / total * 1e6:.1f} µs/event, "
              f"clickhouse {ch_cpu:.1f} s = {ch_cpu / total * 1e6:.1f} µs/event (since its restart); "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"sluice peak RSS: {rss_backlog:.1f} MiB when the backlog was built, "
              f"{status_mib(daemon.proc.pid, 'VmHWM'):.1f} MiB after the drain; anonymous memory while "
              f"draining: median {sorted(anon)[len(anon) // 2]:.1f} MiB, max {max(anon):.1f} MiB "
              f"({len(anon)} samples)")
        daemon.terminate()
        if os.environ.get("DELIVERY_SHOW_LOG"):
            print(daemon.log_tail(200))

        # ClickHouse alone: the same rows as RowBinary, same batch size, same concurrency.
        ch.execute(f"CREATE TABLE {EVENTS_TABLE}_copy AS {EVENTS_TABLE}")
        files = []
        for start in range(0, total, args.batch_rows):
            data = ch.session.post(ch.url, data=f"SELECT * FROM {EVENTS_TABLE} LIMIT {start}, {args.batch_rows} FORMAT RowBinary".encode(), timeout=300).content
            files.append(data)
        size = sum(map(len, files))
        lanes = [files[i :: args.partitions] for i in range(args.partitions)]

        def insert(lane):
            for data in lane:
                ch.execute(f"INSERT INTO {EVENTS_TABLE}_copy FORMAT RowBinary", data=data, timeout=300)

        ch_cpu0 = cpu_seconds(ch.proc.pid)
        t0 = time.monotonic()
        ts = [threading.Thread(target=insert, args=(lane,)) for lane in lanes]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        took = time.monotonic() - t0
        alone_cpu = cpu_seconds(ch.proc.pid) - ch_cpu0
        copied = ch.count(f"SELECT count() FROM {EVENTS_TABLE}_copy")
        base_rate = copied / took
        print(f"clickhouse alone: {copied} rows ({size / 1e6:.1f} MB RowBinary, {len(files)} batches of "
              f"{args.batch_rows}, {args.partitions} concurrent) in {took:.2f} s = {base_rate:,.0f} events/s")
        print(f"clickhouse alone CPU: {alone_cpu:.1f} s = {alone_cpu / copied * 1e6:.1f} µs/event")
        print(f"ratio: sluice drain {drain_rate:,.0f} / clickhouse alone {base_rate:,.0f} = {drain_rate / base_rate:.0%}")
    finally:
        daemon.kill()
        ch.stop()


def latency(args, binary: Path, work: Path) -> None:
    ch, daemon = start_pipeline(binary, work, {"SLUICE_LOG__LEVEL": "warn"})
    try:
        daemon.start()
        reqs_per_s = args.rate / args.per_request
        n_requests = int(reqs_per_s * args.seconds)
        run = uuid.uuid4().hex[:6]
        acked: dict[str, float] = {}
        lock = threading.Lock()
        stop = threading.Event()
        seen: dict[str, float] = {}

        def poller():
            while not stop.is_set() or len(seen) < len(acked):
                rows = ch.query_rows(f"SELECT se_label FROM {EVENTS_TABLE} WHERE se_action = 'lat' GROUP BY se_label")
                t = time.time()
                for r in rows:
                    seen.setdefault(r["se_label"], t)
                if stop.is_set() and time.time() > stop_time + 30:
                    return
                time.sleep(args.poll)

        def paced(k: int):
            conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
            interval = args.senders / reqs_per_s
            nxt = time.monotonic() + k * interval / args.senders
            for i in range(k, n_requests, args.senders):
                label = f"{run}-{i}"
                b = body(args.per_request, label, "lat")
                delay = nxt - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                nxt += interval
                conn.request("POST", TP2, body=b, headers={"Content-Type": "application/json; charset=utf-8"})
                r = conn.getresponse()
                r.read()
                if 200 <= r.status < 300:
                    with lock:
                        acked[label] = time.time()

        p = threading.Thread(target=poller, daemon=True)
        p.start()
        t0 = time.monotonic()
        ts = [threading.Thread(target=paced, args=(k,)) for k in range(args.senders)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        sent_for = time.monotonic() - t0
        stop_time = time.time()
        stop.set()
        p.join(timeout=60)
        lat = sorted(seen[k] - acked[k] for k in acked if k in seen)
        missing = len(acked) - len(lat)

        def pct(q):
            return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

        print(f"latency: {len(acked) * args.per_request} events in {len(acked)} requests over {sent_for:.1f} s "
              f"({len(acked) * args.per_request / sent_for:,.0f} events/s offered); ack → visible: "
              f"p50 {pct(0.5):.3f} s, p90 {pct(0.9):.3f} s, p99 {pct(0.99):.3f} s, max {lat[-1] if lat else float('nan'):.3f} s; "
              f"{missing} not seen; poll every {args.poll} s")
    finally:
        daemon.kill()
        ch.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["drain", "latency"])
    ap.add_argument("--events", type=int, default=int(os.environ.get("EVENTS", 2_000_000)))
    ap.add_argument("--per-request", type=int, default=100)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--batch-rows", type=int, default=int(os.environ.get("BATCH_ROWS", 50_000)))
    ap.add_argument("--partitions", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--users", type=int, default=1000,
                    help="distinct network user ids the drain's requests come from (0: none, all from one IP)")
    ap.add_argument("--max-in-flight", type=int, default=0,
                    help="publish.max_in_flight for the daemon (0: its default)")
    ap.add_argument("--pin", action="store_true",
                    help="drain: ClickHouse on CPU 0, sluice and the driver on CPU 1, in both measurements")
    ap.add_argument("--env", action="append", default=[], metavar="SLUICE_KEY=VALUE",
                    help="extra daemon environment (drain), e.g. SLUICE_CLICKHOUSE__COMPRESSION=none")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--poll", type=float, default=0.1)
    args = ap.parse_args()
    if args.mode == "latency" and args.per_request == 100:
        args.per_request = 20
    binary = Path(os.environ.get("E2E_SLUICE_BIN", ROOT / "target" / "release" / "sluice"))
    with tempfile.TemporaryDirectory(prefix="sluice-delivery-") as tmp:
        (drain if args.mode == "drain" else latency)(args, binary, Path(tmp))


if __name__ == "__main__":
    main()
