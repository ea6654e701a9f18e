"""Delivery benchmarks of the whole pipeline (the drain and insert targets); run through benches/delivery.sh.

  drain    Fill the log with N events (tp2 POSTs of EVENTS_PER_REQUEST events, each request from
           one of USERS network user ids, sent as the `sp` cookie, so the backlog spreads over
           the partitions as real traffic does) while ClickHouse is down, start ClickHouse, time
           until all N rows are in `sluice.events` (active parts' row counts, every DRAIN_POLL
           seconds) → events/s from the first row seen to the last.
           Then ClickHouse's own rate for the same rows: they are dumped as RowBinary in the
           order they were collected (as sluice's batches hold them; --baselines key adds the
           table's sort key order), in batches of the publisher's batch size (one file per
           batch, encoded before the clock starts), and once no merge is running re-inserted
           into an identical empty table with as many concurrent inserters as the daemon has
           partitions, timed → events/s. Prints both and the ratio.
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
import re
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


def metric_sum(text: str, name: str) -> float:
    """The sum of every series of `name` in a Prometheus exposition."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.split("{", 1)[0].split(" ", 1)[0] == name)


# The row orders ClickHouse alone can be measured with: the label in the output.
ORDERS = {
    # As they were collected: by request (collector time, then the request's network user id),
    # each request's events in their order. sluice's batches hold the rows this way.
    "collected": "",
    # By the table's own sort key, so each batch arrives sorted and ClickHouse need not sort it.
    "key": ", rows sorted by the table's key",
}


def order_by(ch: ClickHouse, order: str) -> str:
    """The ORDER BY expression of `order` (one of ORDERS) for `sluice.events`."""
    if order == "collected":
        return "collector_tstamp, network_userid, se_value"
    # The table's sort key as `sluice db init` created it, read from the server.
    create = ch.execute(f"SHOW CREATE TABLE {EVENTS_TABLE} FORMAT TSVRaw")
    key = re.search(r"ORDER BY \((.*?)\)(?: SETTINGS|$)", create.strip())
    if key is None:
        raise SystemExit(f"no ORDER BY (...) in {EVENTS_TABLE}'s definition:\n{create}")
    return key.group(1)


def settle(ch: ClickHouse, limit: float = 120) -> None:
    """Waits until ClickHouse runs no merge, so none is left over into a measurement."""
    deadline = time.monotonic() + limit
    while ch.count("SELECT count() FROM system.merges") and time.monotonic() < deadline:
        time.sleep(0.5)


def ordered_batches(ch: ClickHouse, order_by: str, batch_rows: int) -> list[bytes]:
    """The rows of `sluice.events` in `order_by` order as RowBinary, cut into batches.

    The rows are numbered in that order once (into a scratch table keyed by the number), so
    each batch is an exact, disjoint range however the server splits its reads.
    """
    columns = ", ".join(f"`{line.split(chr(9))[0]}`" for line in
                        ch.execute(f"DESCRIBE TABLE {EVENTS_TABLE} FORMAT TabSeparated").splitlines())
    scratch = f"{EVENTS_TABLE}_ordered"
    ch.execute(f"DROP TABLE IF EXISTS {scratch}")
    ch.execute(f"CREATE TABLE {scratch} ENGINE = MergeTree ORDER BY seq AS SELECT rowNumberInAllBlocks() AS seq, * "
               f"FROM (SELECT * FROM {EVENTS_TABLE} ORDER BY {order_by})", timeout=600)
    total = ch.count(f"SELECT count() FROM {scratch}")
    files = []
    for start in range(0, total, batch_rows):
        files.append(ch.session.post(ch.url, data=(
            f"SELECT {columns} FROM {scratch} WHERE seq >= {start} AND seq < {start + batch_rows} "
            f"ORDER BY seq FORMAT RowBinary").encode(), timeout=300).content)
    ch.execute(f"DROP TABLE {scratch}")
    return files


def insert_alone(ch: ClickHouse, files: list[bytes], lanes_n: int) -> tuple[float, float, int, int]:
    """Inserts `files` into an empty copy of the table from `lanes_n` threads, timed.

    Returns (rows per second, ClickHouse CPU seconds per row, bytes, rows).
    """
    copy = f"{EVENTS_TABLE}_copy"
    ch.execute(f"DROP TABLE IF EXISTS {copy}")
    ch.execute(f"CREATE TABLE {copy} AS {EVENTS_TABLE}")
    settle(ch)
    os.sync()  # the scratch table's writes are not left to be flushed during the measurement
    lanes = [files[i::lanes_n] for i in range(lanes_n)]

    def insert(lane):
        for data in lane:
            ch.execute(f"INSERT INTO {copy} FORMAT RowBinary", data=data, timeout=300)

    cpu0 = cpu_seconds(ch.proc.pid)
    t0 = time.monotonic()
    ts = [threading.Thread(target=insert, args=(lane,)) for lane in lanes]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    took = time.monotonic() - t0
    cpu = cpu_seconds(ch.proc.pid) - cpu0
    rows = ch.count(f"SELECT count() FROM {copy}")
    ch.execute(f"DROP TABLE {copy}")
    return rows / took, cpu / rows, sum(map(len, files)), rows


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
        anon = []  # sluice's RssAnon, sampled every 50 ms
        polled = 0.0
        while True:
            anon.append(status_mib(daemon.proc.pid, "RssAnon"))
            if time.monotonic() - polled >= args.drain_poll:
                # A query of system.parts costs 18.16 about 5 ms of CPU with tens of parts: at
                # 20 a second the benchmark would take a tenth of ClickHouse's core itself.
                polled = time.monotonic()
                n = ch.count(f"SELECT sum(rows) FROM system.parts WHERE database = 'sluice' AND table = 'events' AND active")
                if n and first is None:
                    first = (time.monotonic(), n)
                    ch_cpu_first = cpu_seconds(ch.proc.pid)
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
              f"clickhouse {ch_cpu:.1f} s = {ch_cpu / total * 1e6:.1f} µs/event (since its restart), "
              f"{(ch_cpu - ch_cpu_first) / (total - first[1]) * 1e6:.1f} µs/event from first row to last; "
              f"load average {os.getloadavg()[0]:.1f}")
        metrics = daemon.metrics_text()
        batches = metric_sum(metrics, "sluice_publish_batch_rows_count")
        print(f"drain batches: {batches:.0f}, mean {metric_sum(metrics, 'sluice_publish_batch_rows_sum') / max(batches, 1):,.0f} rows")
        print(f"sluice peak RSS: {rss_backlog:.1f} MiB when the backlog was built, "
              f"{status_mib(daemon.proc.pid, 'VmHWM'):.1f} MiB after the drain; anonymous memory while "
              f"draining: median {sorted(anon)[len(anon) // 2]:.1f} MiB, max {max(anon):.1f} MiB "
              f"({len(anon)} samples)")
        daemon.terminate()
        if os.environ.get("DELIVERY_SHOW_LOG"):
            print(daemon.log_tail(200))

        # ClickHouse alone: the same rows as RowBinary, same batch size, same concurrency, in the
        # order they were collected (as sluice's batches hold them); then sorted by the table's key.
        # (insert_alone waits for merges to end before it starts the clock.)
        alone = {}
        for order in args.baselines.split(","):
            files = ordered_batches(ch, order_by(ch, order), args.batch_rows)
            rate, cpu, size, rows = alone[order] = insert_alone(ch, files, args.partitions)
            print(f"clickhouse alone{ORDERS[order]}: {rows} rows ({size / 1e6:.1f} MB RowBinary, {len(files)} batches of "
                  f"{args.batch_rows}, {args.partitions} concurrent) = {rate:,.0f} events/s, "
                  f"clickhouse CPU {cpu * 1e6:.1f} µs/event")
        for order, (rate, *_) in alone.items():
            print(f"ratio{ORDERS[order]}: sluice drain {drain_rate:,.0f} / clickhouse alone {rate:,.0f} = {drain_rate / rate:.0%}")
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
    ap.add_argument("--baselines", default="collected",
                    help="drain: row orders to measure ClickHouse alone with, in turn: collected (the ratio's "
                         "baseline), key (sorted by the table's key), comma-separated")
    ap.add_argument("--drain-poll", type=float, default=0.2,
                    help="drain: seconds between ClickHouse row counts (each costs 18.16 about 5 ms of CPU)")
    args = ap.parse_args()
    unknown = [o for o in args.baselines.split(",") if o not in ORDERS]
    if unknown:
        ap.error(f"--baselines: unknown order {', '.join(unknown)} (choose from {', '.join(ORDERS)})")
    if args.mode == "latency" and args.per_request == 100:
        args.per_request = 20
    binary = Path(os.environ.get("E2E_SLUICE_BIN", ROOT / "target" / "release" / "sluice"))
    with tempfile.TemporaryDirectory(prefix="sluice-delivery-") as tmp:
        (drain if args.mode == "drain" else latency)(args, binary, Path(tmp))


if __name__ == "__main__":
    main()
