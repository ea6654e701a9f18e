"""Helpers of benches/run.sh (the whole benchmark suite); not meant to be run on its own.

  load KIND NAME SCRIPT EVENTS_PER_REQUEST RATE RESULTS
                              one wrk run (RATE 0 = closed loop) against the daemon, with its CPU,
                              RSS and WAL counters before and after; appends a results line
  evict DIR                   drop DIR's files from the page cache (fsync + POSIX_FADV_DONTNEED)
  ready-time OUT BIN ARGS...  start `BIN ARGS...`, time until GET /ready answers 200 (port from
                              --listen), SIGTERM it, wait for its exit; append `seconds=...` to OUT
  quiet DIR MIN MAX           wait until the disk is quiet (see quiet()), at least MIN s, at most
                              MAX s: deleting gigabytes on ext4 mounted with `discard` can keep the
                              disk busy afterwards
  table RESULTS OUT           print the markdown table from the results file, and write it to OUT
  stuck-viewer PORT TOKEN     open the admin API's live feed on PORT and never read from it
  wait-viewers PORT TOKEN N   wait (at most 30 s) until the admin status counts N live viewers

Results file: one line per measurement, `kind name key=value ...` (see run.sh).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Frame header of a WAL record (length, CRC, LSN); sluice_wal_bytes_appended_total counts it.
RECORD_FRAME_BYTES = 16
# After a large delete, the disk counts as settled once it discards less than this.
SETTLE_BYTES_PER_S = float(os.environ.get("BENCH_SETTLE_MB_PER_S", "8")) * 1e6
# ... and a 4 KiB write + fdatasync takes less than this (median over 3 s).
SETTLE_SYNC_MS = float(os.environ.get("BENCH_SETTLE_SYNC_MS", "2"))


def counters(mport: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
    wanted = {
        "sluice_wal_records_appended_total": "records",
        "sluice_wal_bytes_appended_total": "bytes",
        "sluice_wal_commit_records_count": "commits",
        "sluice_wal_fsync_duration_seconds_sum": "fsync_s",
    }
    values = dict.fromkeys(wanted.values(), 0.0)
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        key = wanted.get(name.split("{")[0])
        if key:
            values[key] += float(value)
    return values


def snapshot(pid: str, mport: str) -> dict[str, float]:
    """The daemon's CPU ticks and WAL counters, the machine's busy ticks, our children's CPU."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[:8])
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    snap = {
        "t": time.monotonic(),
        "daemon_ticks": int(fields[11]) + int(fields[12]),  # utime + stime (stat fields 14, 15)
        "busy_ticks": user + nice + system + irq + softirq + steal,
        "children_s": children.ru_utime + children.ru_stime,
    }
    snap.update(counters(mport))
    return snap


def load(kind: str, name: str, script: str, events_per_request: str, rate: str, results: str) -> None:
    """One wrk run against the daemon (env: BENCH_PORT, BENCH_MPORT, BENCH_PID, BENCH_THREADS,
    BENCH_CONNECTIONS, BENCH_DURATION); appends `KIND NAME key=value ...` to RESULTS."""
    env = os.environ
    pid, mport = env["BENCH_PID"], env["BENCH_MPORT"]
    threads, conns, duration = env["BENCH_THREADS"], env["BENCH_CONNECTIONS"], env["BENCH_DURATION"]
    wrk_env = dict(env, WRK_THREADS=threads, WRK_RATE=rate if float(rate) > 0 else "",
                   WRK_SCRIPTS_DIR=str(HERE / "wrk"))
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s",
            "-s", str(HERE / "wrk" / script), f"http://127.0.0.1:{env['BENCH_PORT']}"]
    before = snapshot(pid, mport)
    out = subprocess.run(argv, env=wrk_env, capture_output=True, text=True, check=True).stdout
    after = snapshot(pid, mport)
    for line in out.splitlines():
        print("    " + line)
    result = next((line.split()[1:] for line in out.splitlines() if line.startswith("SLUICE_RESULT ")), None)
    if result is None:
        raise SystemExit("wrk printed no SLUICE_RESULT line")
    r = {k: float(v) for k, v in (f.split("=", 1) for f in result)}
    d = {k: after[k] - before[k] for k in after}
    hz = os.sysconf("SC_CLK_TCK")
    wall = d["t"]
    errors = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    acked = r["requests"] - r["non2xx"]
    per = int(events_per_request)
    events = acked * max(per, 1)
    daemon_s = d["daemon_ticks"] / hz
    other = max(d["busy_ticks"] / hz - daemon_s - d["children_s"], 0.0)
    rss_kb = next(int(x.split()[1]) for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    line = {
        "acked_rps": acked / r["seconds"],
        "acked_eps": events / r["seconds"] if per else 0,
        "offered": float(rate),
        "non2xx": int(r["non2xx"]),
        "errors": int(errors),
        "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "p999_ms": r["p999_ms"], "max_ms": r["max_ms"],
        "record_bytes": d["bytes"] / d["records"] - RECORD_FRAME_BYTES if d["records"] else 0,
        "records_per_commit": d["records"] / d["commits"] if d["commits"] else 0,
        "fsync_ms": 1000 * d["fsync_s"] / d["commits"] if d["commits"] else 0,
        "cpu_per_1k": 1000 * daemon_s / events if events else 0,
        "sluice_cpu": round(100 * daemon_s / wall),
        "wrk_cpu": round(100 * d["children_s"] / wall),
        "other_cpu": round(100 * other / wall),
        "rss_kb": rss_kb,
    }
    with open(results, "a") as f:
        f.write(f"{kind} {name} " + " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in line.items()) + "\n")
    print(f"    -> {line['acked_rps']:,.0f} acknowledged req/s, {line['acked_eps']:,.0f} events/s, "
          f"p99 {r['p99_ms']:.2f} ms, non-2xx {line['non2xx']}, errors {line['errors']}, "
          f"record {line['record_bytes']:.0f} B, {line['records_per_commit']:.1f} records/fsync, "
          f"CPU % sluice/wrk/other {line['sluice_cpu']}/{line['wrk_cpu']}/{line['other_cpu']}")
    if r["non2xx"] or errors:
        print(f"    WARNING: {name}: {int(r['non2xx'])} non-2xx answers, {int(errors)} socket errors")


def evict(directory: str) -> None:
    for root, _dirs, files in os.walk(directory):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def ready_time(out: str, argv: list[str]) -> None:
    listen = argv[argv.index("--listen") + 1]
    url = f"http://{listen}/ready"
    log = open(out + ".daemon.log", "ab")
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the daemon exited with {proc.returncode} before /ready answered (log: {out}.daemon.log)")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - start > 600:
                raise SystemExit("/ready did not answer 200 within 600 s")
            time.sleep(0.005)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    with open(out, "a") as f:
        f.write(f"seconds={took:.3f}\n")
    print(f"    /ready answered 200 after {took:.3f} s")


def discarded_bytes() -> int:
    """Bytes the whole disks have discarded since boot (/proc/diskstats, kernel ≥ 4.18)."""
    total = 0
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        # whole disks only (vda, sda, nvme0n1): partitions would count twice
        if len(f) >= 18 and os.path.exists(f"/sys/block/{f[2]}"):
            total += int(f[16]) * 512  # sectors discarded
    return total


def quiet(directory: str, min_s: str, max_s: str) -> None:
    """Waits until the disk is quiet again: over the last 3 s it discarded less than
    BENCH_SETTLE_MB_PER_S and the median of 4 KiB write + fdatasync probes in DIRECTORY was
    under BENCH_SETTLE_SYNC_MS. Other work on a shared machine keeps a trickle of both going, so
    "nothing at all" may never come; MAX bounds the wait."""
    probe = Path(directory) / ".settle-probe"
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        start = time.monotonic()
        samples: list[tuple[float, int, float]] = []
        while True:
            t = time.monotonic()
            os.pwrite(fd, os.urandom(4096), 0)
            os.fdatasync(fd)
            now = time.monotonic()
            samples.append((now, discarded_bytes(), (now - t) * 1000))
            while len(samples) > 2 and samples[1][0] <= now - 3:
                samples.pop(0)
            window = now - samples[0][0]
            rate = (samples[-1][1] - samples[0][1]) / max(window, 1e-9)
            sync_ms = sorted(x[2] for x in samples)[len(samples) // 2]
            waited = now - start
            if waited >= float(max_s) or (waited >= float(min_s) and window >= 2.9
                                          and rate < SETTLE_BYTES_PER_S and sync_ms < SETTLE_SYNC_MS):
                break
            time.sleep(0.25)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)
    print(f"    waited {time.monotonic() - start:.0f} s for the disk to settle (last 3 s: discarding "
          f"{rate / 1e6:.1f} MB/s, fdatasync median {sync_ms:.2f} ms)")


def fmt(x: float, digits: int = 0) -> str:
    s = f"{x:,.{digits}f}"
    return s.replace(",", "\u202f")


def table(results: str, out: str) -> None:
    rows: list[tuple[str, str, dict[str, str]]] = []
    for line in Path(results).read_text().splitlines():
        kind, name, *fields = line.split()
        rows.append((kind, name, dict(f.split("=", 1) for f in fields)))

    def get(kind: str, name: str) -> dict[str, str] | None:
        for k, n, f in rows:
            if k == kind and n == name:
                return f
        return None

    meta = get("meta", "run") or {}
    lines = []
    lines.append(f"`benches/run.sh` on {meta.get('host', '?')}, {meta.get('date', '?')}: {meta.get('cores', '?')} cores, "
                 f"wrk -t{meta.get('threads', '?')} -c{meta.get('connections', '?')}, {meta.get('seconds', '?')} s per load run, "
                 f"load average before {meta.get('load', '?').replace('_', ' ')}.")
    lines.append("")

    def cpus(r: dict[str, str]) -> str:
        return f"{r['sluice_cpu']} / {r['wrk_cpu']} / {r['other_cpu']}"

    health = get("max", "health")
    health_rps = float(health["acked_rps"]) if health else 0.0
    lines.append("**Ingest: acknowledged (2xx after fdatasync) at full load, against the HTTP limit (`/health`) and the disk limit "
                 "(the daemon's own logs appending records of the same mean size, same group commit, same concurrency, no HTTP)**")
    lines.append("")
    lines.append("| scenario | req/s | events/s | record B | vs HTTP limit | disk limit req/s | vs disk limit | "
                 "records/fsync | CPU s per 1k events | RSS after MiB | non-2xx | CPU % sluice / wrk / other |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    if health:
        lines.append(f"| `GET /health` (HTTP limit) | {fmt(health_rps)} | – | – | 1.00 | – | – | – | "
                     f"{float(health['cpu_per_1k']):.3f} per 1k req | {float(health['rss_kb']) / 1024:.1f} | {health['non2xx']} | {cpus(health)} |")
    labels = {
        "get_i": "`GET /i` (1 event)",
        "post_tp2": "POST tp2 (10 events)",
        "segment_batch": "Segment `/v1/batch` (100 events)",
        "pycolytics_batch": "pycolytics `/v1.0/events` (100 events)",
    }
    for name, label in labels.items():
        r = get("max", name)
        if not r:
            continue
        rps = float(r["acked_rps"])
        size = int(float(r["record_bytes"]))
        wal = get("wal", name)
        if wal:
            wal_rate = float(wal["rate"])
            disk = f"{fmt(wal_rate)}"
            vs_disk = f"{rps / wal_rate:.2f}" if wal_rate else "–"
        else:
            disk = vs_disk = "–"
        ratio = f"{rps / health_rps:.2f}" if health_rps else "–"
        lines.append(f"| {label} | {fmt(rps)} | {fmt(float(r['acked_eps']))} | {fmt(size)} | {ratio} | {disk} | {vs_disk} | "
                     f"{float(r['records_per_commit']):.1f} | {float(r['cpu_per_1k']):.3f} | {float(r['rss_kb']) / 1024:.1f} | "
                     f"{r['non2xx']} | {cpus(r)} |")
    lines.append("")
    lines.append(f"*record B*: mean envelope stored per request. *disk limit req/s*: records of that size the daemon's logs "
                 f"make durable per second with {meta.get('connections', '?')} concurrent appenders and no HTTP "
                 f"(`examples/wal_append.rs`, run right after the scenario). *CPU s per 1k events*: the daemon's utime + stime "
                 f"over the run ÷ acknowledged events × 1 000. *CPU %*: of the daemon, of wrk, and of every other process during the run, "
                 f"in % of one core ({meta.get('cores', '?')} cores = {int(meta.get('cores', '0')) * 100} %); "
                 f"an *other* well above a few percent means the run shared the machine and every figure in that row understates sluice.")
    lines.append("")

    lines.append("**Acknowledgement latency at half the measured maximum** (wrk paced by `benches/wrk/common.lua`, "
                 "latency from the moment each request is written)")
    lines.append("")
    lines.append("| scenario | offered req/s | achieved req/s | events/s | p50 ms | p99 ms | p99.9 ms | max ms | non-2xx | CPU % other |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, label in labels.items():
        r = get("paced", name)
        if not r:
            continue
        lines.append(f"| {label} | {fmt(float(r['offered']))} | {fmt(float(r['acked_rps']))} | {fmt(float(r['acked_eps']))} | "
                     f"{float(r['p50_ms']):.2f} | {float(r['p99_ms']):.2f} | {float(r['p999_ms']):.2f} | {float(r['max_ms']):.2f} | {r['non2xx']} | {r['other_cpu']} |")
    lines.append("")

    summary = get("memory", "daemon")
    if summary:
        lines.append(f"Peak RSS of the daemon over all load runs (`VmHWM`): **{float(summary['peak_kb']) / 1024:.1f} MiB**, "
                     f"with {fmt(float(summary['log_records']))} records ({float(summary['log_bytes']) / 2**30:.2f} GiB) "
                     f"unconfirmed in its log at the end.")
        lines.append("")

    rec = get("recovery", "cold")
    warm = get("recovery", "warm")
    if rec:
        lines.append(f"**Recovery**: `sluice serve` start → `/ready` 200 with {float(rec['log_bytes']) / 2**30:.2f} GiB "
                     f"({fmt(float(rec['log_records']))} records) unconfirmed in its log: "
                     f"**{rec['median']} s** median of {rec['runs']} starts with the log's files evicted from the page cache "
                     f"(in order: {rec['all'].replace(',', ' s, ')} s)" +
                     (f"; {warm['median']} s with the files cached." if warm else "."))
        lines.append("")

    drain = get("drain", "clickhouse")
    if drain:
        if drain.get("status") == "ok":
            lines.append(f"**Drain into ClickHouse** (`benches/delivery.py drain --events {drain['events']}`, as `benches/delivery.sh drain` runs it): "
                         f"sluice **{fmt(float(drain['drain_eps']))} events/s** (first row → last) vs ClickHouse alone "
                         f"**{fmt(float(drain['alone_eps']))} events/s** for the same rows as pre-encoded RowBinary (in the order collected) "
                         f"= **{drain['ratio']}**.")
        else:
            lines.append(f"**Drain into ClickHouse**: `benches/delivery.sh drain` failed ({drain.get('status')}); see its log above.")
        lines.append("")

    lines.append("**Against the targets**")
    lines.append("")
    lines.append("| target | measured here | verdict |")
    lines.append("|---|---:|---|")

    def verdict(ok: bool | None, how: str = "") -> str:
        if ok is None:
            return "not measured"
        return ("met" if ok else "**missed**") + (f" ({how})" if how else "")

    def target_row(label: str, value: float | None, limit: float, unit: str, higher: bool = True, digits: int = 0,
                   other: str | None = None) -> None:
        if value is None:
            lines.append(f"| {label} | – | not measured |")
            return
        ok = value >= limit if higher else value <= limit
        how = f"{value / limit:.2f}× the target" if higher else (f"{value - limit:+.2f} {unit}" if not ok else "")
        if other is not None and int(other) > 20:
            how += f"{'; ' if how else ''}shared machine: {other} % CPU to other processes"
        lines.append(f"| {label} | {fmt(value, digits)} {unit} | {verdict(ok, how)} |")

    def other(kind: str, name: str) -> str | None:
        r = get(kind, name)
        return r.get("other_cpu") if r else None

    def val(kind: str, name: str, key: str) -> float | None:
        r = get(kind, name)
        return float(r[key]) if r and key in r else None

    target_row("`GET /i` ≥ 40 000 req/s", val("max", "get_i", "acked_rps"), 40_000, "req/s", other=other("max", "get_i"))
    target_row("POST tp2 ≥ 100 000 events/s", val("max", "post_tp2", "acked_eps"), 100_000, "events/s",
               other=other("max", "post_tp2"))
    target_row("Segment batch ≥ 100 000 events/s", val("max", "segment_batch", "acked_eps"), 100_000, "events/s",
               other=other("max", "segment_batch"))
    for name, label in labels.items():
        target_row(f"p99 ≤ 5 ms at half load (here: half the measured maximum), {label}", val("paced", name, "p99_ms"),
                   5.0, "ms", higher=False, digits=2, other=other("paced", name))
    peak = float(summary["peak_kb"]) / 1024 if summary else None
    target_row("RSS ≤ 150 MB under load", peak * 1.048576 if peak is not None else None, 150, "MB", higher=False, digits=1)
    if drain and drain.get("status") == "ok":
        target_row("drain ≥ 100 000 events/s", float(drain["drain_eps"]), 100_000, "events/s")
        ratio = float(drain["drain_eps"]) / float(drain["alone_eps"])
        lines.append(f"| drain ≥ 80 % of ClickHouse alone | {ratio:.0%} | {verdict(ratio >= 0.8)} |")
    else:
        lines.append("| drain ≥ 100 000 events/s, ≥ 80 % of ClickHouse alone | – | not measured |")

    text = "\n".join(lines) + "\n"
    print(text)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)


def stuck_viewer(port: str, token: str) -> None:
    """A live-feed viewer that connects and never reads: its socket buffers fill and stay full."""
    s = socket.create_connection(("127.0.0.1", int(port)))
    s.sendall(f"GET /api/v1/live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    time.sleep(3600)


def wait_viewers(port: str, token: str, n: str) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/status",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            if json.load(r)["live"]["viewers"] >= int(n):
                return
        time.sleep(0.2)
    raise SystemExit(f"fewer than {n} live viewers after 30 s")


def main() -> None:
    cmd, *args = sys.argv[1:]
    if cmd == "load":
        load(*args)
    elif cmd == "evict":
        evict(*args)
    elif cmd == "ready-time":
        ready_time(args[0], args[1:])
    elif cmd == "quiet":
        quiet(*args)
    elif cmd == "table":
        table(*args)
    elif cmd == "stuck-viewer":
        stuck_viewer(*args)
    elif cmd == "wait-viewers":
        wait_viewers(*args)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
