#!/usr/bin/env bash
# The whole benchmark suite, one command: every figure next to the limit it is bounded by,
# both measured in the same run on this machine. Prints a markdown table (for BENCHMARKS.md)
# and writes it to target/bench/suite-<UTC time>.md (the raw figures next to it, .results).
#
#   benches/run.sh                              # everything, ~7 minutes with the defaults
#   BENCH_SECONDS=5 BENCH_STEPS=load benches/run.sh   # a quick look at ingest only
#
# Steps (BENCH_STEPS, comma-separated, default all four, always in this order):
#   load      the release `sluice serve` on loopback (ClickHouse unreachable, so nothing is
#             published and the log only grows), driven by wrk with the Lua scenarios in
#             benches/wrk/. Closed loop, BENCH_SECONDS each: GET /health (the HTTP limit: same
#             binary and HTTP stack, no log), GET /i (1 event), POST tp2 (10 events), Segment
#             /v1/batch (100 track messages), pycolytics /v1.0/events (100 events). A request
#             counts as acknowledged when it got a 2xx, which the daemon sends only after
#             fdatasync. Then each logging scenario again, paced at half its measured maximum
#             (benches/wrk/common.lua's fixed-rate schedule), for p50/p99 latency. Per run, from
#             /proc and the daemon's /metrics: CPU seconds of the daemon per 1 000 acknowledged
#             events (utime + stime before/after ÷ events), RSS, mean record size, records per
#             fdatasync, and the CPU other processes took (noise). Peak RSS (VmHWM) at the end.
#   wal       the disk limit, right after each scenario's full-load run: examples/wal_append.rs
#             opens the daemon's own partitioned logs (same configuration, same group commit) and
#             appends records of that scenario's mean envelope size from BENCH_CONNECTIONS
#             concurrent tasks, without HTTP, for BENCH_WAL_SECONDS.
#   recovery  a fresh data dir is filled with ≥ BENCH_RECOVERY_BYTES of unconfirmed records (tp2
#             POSTs through the daemon, ClickHouse unreachable), then `sluice serve` is started
#             BENCH_RECOVERY_RUNS times with the log's files evicted from the page cache, and
#             once with them cached; timed from exec until GET /ready answers 200.
#   drain     what `benches/delivery.sh drain --events BENCH_DRAIN_EVENTS` runs (benches/delivery.py,
#             owned by the delivery benchmark; a real clickhouse-server), with this run's binary:
#             sluice's drain rate from a backlog vs the same ClickHouse inserting the same rows
#             as pre-encoded RowBinary in the order collected, batches of the publisher's size.
#
# Settings (environment): BENCH_SECONDS (10) per load run; BENCH_THREADS (2) and
# BENCH_CONNECTIONS (64) for wrk; BENCH_WARMUP (3) seconds of GET /i before the load runs;
# BENCH_WAL_SECONDS (4) per record size; BENCH_RECOVERY_BYTES (1073741824);
# BENCH_RECOVERY_RUNS (5); BENCH_DRAIN_EVENTS (2000000); BENCH_SETTLE_* (below); BENCH_BUILD
# (1; 0 uses the binaries already in target/); BENCH_OUT (the markdown file).
#
# Everything runs on 127.0.0.1 on free ports, in one temporary directory under target/ (the real
# disk, never tmpfs). The daemons this script starts are stopped by PID and every log is deleted
# at exit, also on failure or Ctrl-C. Deleting gigabytes on this machine (ext4 mounted with
# `discard`) has been seen to keep the disk busy for up to a minute, so after each large delete
# the script waits at least BENCH_SETTLE_MIN (10) s and then until, over 3 s, the disk discards
# less than BENCH_SETTLE_MB_PER_S (8) and a 4 KiB fdatasync probe's median is under
# BENCH_SETTLE_SYNC_MS (2), at most BENCH_SETTLE_MAX (90) s, before measuring again.
# Not part of scripts/test.sh: it measures, it asserts nothing.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"

BENCH_SECONDS="${BENCH_SECONDS:-10}"
BENCH_THREADS="${BENCH_THREADS:-2}"
BENCH_CONNECTIONS="${BENCH_CONNECTIONS:-64}"
BENCH_WARMUP="${BENCH_WARMUP:-3}"
BENCH_WAL_SECONDS="${BENCH_WAL_SECONDS:-4}"
BENCH_RECOVERY_BYTES="${BENCH_RECOVERY_BYTES:-1073741824}"
BENCH_RECOVERY_RUNS="${BENCH_RECOVERY_RUNS:-5}"
BENCH_DRAIN_EVENTS="${BENCH_DRAIN_EVENTS:-2000000}"
BENCH_SETTLE_MIN="${BENCH_SETTLE_MIN:-10}"
BENCH_SETTLE_MAX="${BENCH_SETTLE_MAX:-90}"
BENCH_STEPS="${BENCH_STEPS:-load,wal,recovery,drain}"
BENCH_BUILD="${BENCH_BUILD:-1}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
BENCH_OUT="${BENCH_OUT:-$TARGET_DIR/bench/suite-$stamp.md}"

want() { [[ ",$BENCH_STEPS," == *",$1,"* ]]; }

suite_started=$SECONDS
section "prerequisites (wrk from Debian, release builds)"
apt_ensure wrk
BIN="$TARGET_DIR/release/sluice"
WAL_BIN="$TARGET_DIR/release/examples/wal_append"
if [ "$BENCH_BUILD" = 1 ]; then
    cargo build --quiet --release --bin sluice --example wal_append
fi
if [ ! -x "$BIN" ] || [ ! -x "$WAL_BIN" ]; then
    die "missing $BIN or $WAL_BIN (run with BENCH_BUILD=1)"
fi
note "$(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg); steps: $BENCH_STEPS"
section_done

mkdir -p "$TARGET_DIR"
work="$(mktemp -d "$TARGET_DIR/bench-suite.XXXXXX")"
results="$work/results.txt"
: >"$results"
daemon_pid=""

# stop_daemon: SIGTERM the daemon this script started, wait for it (SIGKILL after 30 s).
stop_daemon() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        for _ in $(seq 1 300); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    daemon_pid=""
}
cleanup() {
    stop_daemon
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# settle: after deleting a lot, wait until the disk is quiet again (see the header).
settle() {
    python3 benches/suite.py quiet "$work" "$BENCH_SETTLE_MIN" "$BENCH_SETTLE_MAX"
}

# delete DIR: remove it and wait for the disk to settle.
delete() {
    local size
    size="$(du -sh "$1" 2>/dev/null | cut -f1)"
    rm -rf "$1"
    note "deleted $1 ($size)"
    settle
}

# Keys the daemon may require once configured: configure the ones this
# binary knows, so the load uses them exactly as the Lua scenarios send them. Unknown keys would
# be refused by the daemon, hence the check.
daemon_env=(SLUICE_LOG__LEVEL=warn)
config_keys="$("$BIN" config show 2>/dev/null | python3 -c '
import sys, tomllib
flat = []
def walk(prefix, table):
    for k, v in table.items():
        if isinstance(v, dict):
            walk(prefix + k + ".", v)
        else:
            flat.append(prefix + k)
walk("", tomllib.loads(sys.stdin.read()))
print(" ".join(flat))' || true)"
has_key() { [[ " $config_keys " == *" $1 "* ]]; }
has_key segment.write_keys && daemon_env+=('SLUICE_SEGMENT__WRITE_KEYS=["bench-write-key"]')
has_key pycolytics.api_keys && daemon_env+=('SLUICE_PYCOLYTICS__API_KEYS=["bench-api-key"]')
for key in $config_keys; do
    case "$key" in
        limits.*) note "configured rate limit $key (from config show) left at its default" ;;
    esac
done

# start_daemon DATA_DIR [ENV...]: start `sluice serve` on free ports with ClickHouse unreachable
# (a free port nothing listens on), wait for /health. Sets daemon_pid, port, mport.
start_daemon() {
    local data="$1"
    shift
    port="$(free_port)"
    mport="$(free_port)"
    aport="$(free_port)"
    local ch_port
    ch_port="$(free_port)"
    env "${daemon_env[@]}" "$@" "$BIN" serve --listen "127.0.0.1:$port" \
        --metrics-listen "127.0.0.1:$mport" --admin-listen "127.0.0.1:$aport" --data-dir "$data" \
        --clickhouse-url "http://127.0.0.1:$ch_port" >>"$work/daemon.log" 2>&1 &
    daemon_pid=$!
    python3 - "$port" <<'EOF' || { tail -n 30 "$work/daemon.log"; die "the daemon did not become healthy"; }
import sys, time, urllib.request
deadline = time.time() + 60
while time.time() < deadline:
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1).status == 200:
            sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
EOF
}

# load KIND NAME SCRIPT EVENTS_PER_REQUEST [RATE]: one wrk run, result line appended.
load() {
    local kind="$1" name="$2" script="$3" per="$4" rate="${5:-0}"
    section "$kind $name: wrk -t$BENCH_THREADS -c$BENCH_CONNECTIONS -d${BENCH_SECONDS}s benches/wrk/$script${5:+ paced at $rate req/s}"
    BENCH_PID="$daemon_pid" BENCH_PORT="$port" BENCH_MPORT="$mport" BENCH_THREADS="$BENCH_THREADS" \
        BENCH_CONNECTIONS="$BENCH_CONNECTIONS" BENCH_DURATION="$BENCH_SECONDS" \
        python3 benches/suite.py load "$kind" "$name" "$script" "$per" "$rate" "$results"
    kill -0 "$daemon_pid" 2>/dev/null || { tail -n 30 "$work/daemon.log"; die "the daemon died"; }
    section_done
}

# wal_limit NAME BYTES: the disk limit for a scenario whose records average BYTES: the daemon's
# own logs (examples/wal_append.rs, fresh logs in $work/wal) appending BYTES-byte records from
# BENCH_CONNECTIONS tasks, no HTTP. Run right after the scenario so both see the same machine.
wal_limit() {
    local name="$1" bytes="$2" out
    section "disk limit for $name: the daemon's logs alone, $bytes-byte records, $BENCH_CONNECTIONS appenders, ${BENCH_WAL_SECONDS}s"
    out="$("$WAL_BIN" --dir "$work/wal/$name" --sizes "$bytes" --concurrency "$BENCH_CONNECTIONS" \
        --seconds "$BENCH_WAL_SECONDS" --warmup 1)"
    printf '%s\n' "$out" | sed 's/^/    /'
    printf 'wal %s %s\n' "$name" "$(printf '%s\n' "$out" | grep '^WAL_RESULT ' | sed 's/^WAL_RESULT //')" >>"$results"
    section_done
}

# result NAME KIND KEY: a value from the results file.
result() {
    awk -v kind="$1" -v name="$2" -v key="$3" \
        '$1 == kind && $2 == name { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) print kv[2] } }' \
        "$results" | tail -n 1
}

printf 'meta run host=%s date=%s cores=%s threads=%s connections=%s seconds=%s load=%s\n' \
    "$(hostname)" "$stamp" "$(nproc)" "$BENCH_THREADS" "$BENCH_CONNECTIONS" "$BENCH_SECONDS" \
    "$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '_')" >>"$results"

scenarios=(
    "get_i get_i.lua 1"
    "post_tp2 post_tp2.lua 10"
    "segment_batch segment_batch.lua 100"
    "pycolytics_batch pycolytics_batch.lua 100"
)

if want load; then
    section "starting sluice serve (data dir $work/load, 64 GiB log budget, ClickHouse unreachable)"
    # A budget no run fills: nothing publishes, so nothing is recycled.
    start_daemon "$work/load" SLUICE_WAL__CAPACITY=64GiB
    note "pid $daemon_pid, listening on 127.0.0.1:$port, metrics on 127.0.0.1:$mport"
    note "warm-up: ${BENCH_WARMUP}s of GET /i (not reported)"
    WRK_SCRIPTS_DIR=benches/wrk wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"${BENCH_WARMUP}s" \
        -s benches/wrk/get_i.lua "http://127.0.0.1:$port" >/dev/null
    section_done

    load max health health.lua 0
    for s in "${scenarios[@]}"; do
        read -r name script per <<<"$s"
        load max "$name" "$script" "$per"
        if want wal; then
            wal_limit "$name" "$(printf '%.0f' "$(result max "$name" record_bytes)")"
        fi
    done
    for s in "${scenarios[@]}"; do
        read -r name script per <<<"$s"
        rate="$(python3 -c 'import sys; print(max(1, round(float(sys.argv[1]) / 2)))' "$(result max "$name" acked_rps)")"
        load paced "$name" "$script" "$per" "$rate"
    done

    peak_kb="$(awk '/^VmHWM:/ {print $2}' "/proc/$daemon_pid/status")"
    read -r log_records log_bytes < <("$BIN" wal status --data-dir "$work/load" --json |
        python3 -c 'import json, sys; s = json.load(sys.stdin); print(s["unpublished"], s["used_bytes"])')
    printf 'memory daemon peak_kb=%s log_records=%s log_bytes=%s\n' "$peak_kb" "$log_records" "$log_bytes" >>"$results"
    note "peak RSS $((peak_kb / 1024)) MiB; $log_records records ($((log_bytes >> 20)) MiB) unconfirmed in the log"
    stop_daemon
fi

if want wal && ! want load; then
    # Without the load step: the mean envelope sizes the scenarios produced when this was written.
    wal_limit get_i 1160
    wal_limit post_tp2 8140
    wal_limit segment_batch 57170
    wal_limit pycolytics_batch 33590
fi

if want load || want wal; then
    section "deleting the load runs' logs"
    for dir in "$work/load" "$work/wal"; do
        if [ -d "$dir" ]; then delete "$dir"; fi
    done
    section_done
fi

if want recovery; then
    section "recovery: filling a fresh log with ≥ $((BENCH_RECOVERY_BYTES >> 20)) MiB of unconfirmed records"
    start_daemon "$work/recovery"
    while :; do
        used="$("$BIN" wal status --data-dir "$work/recovery" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["used_bytes"])')"
        [ "$used" -ge "$BENCH_RECOVERY_BYTES" ] && break
        WRK_SCRIPTS_DIR=benches/wrk wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d2s \
            -s benches/wrk/post_tp2.lua "http://127.0.0.1:$port" >/dev/null
    done
    stop_daemon
    read -r log_records log_bytes < <("$BIN" wal status --data-dir "$work/recovery" --json |
        python3 -c 'import json, sys; s = json.load(sys.stdin); print(s["unpublished"], s["used_bytes"])')
    note "$log_records records, $((log_bytes >> 20)) MiB unconfirmed; daemon stopped"
    section_done

    section "recovery: time from exec to /ready 200"
    rport="$(free_port)"
    rmport="$(free_port)"
    raport="$(free_port)"
    rch="$(free_port)"
    serve=(env "${daemon_env[@]}" "$BIN" serve --listen "127.0.0.1:$rport" --metrics-listen "127.0.0.1:$rmport"
        --admin-listen "127.0.0.1:$raport"
        --data-dir "$work/recovery" --clickhouse-url "http://127.0.0.1:$rch")
    for i in $(seq 1 "$BENCH_RECOVERY_RUNS"); do
        python3 benches/suite.py evict "$work/recovery"
        note "start $i, page cache evicted"
        python3 benches/suite.py ready-time "$work/recovery-cold.txt" "${serve[@]}"
    done
    note "start with the log cached"
    cat "$work/recovery"/wal/*/ring-* >/dev/null
    python3 benches/suite.py ready-time "$work/recovery-warm.txt" "${serve[@]}"
    python3 - "$work" "$log_records" "$log_bytes" >>"$results" <<'EOF'
import statistics, sys
work, records, size = sys.argv[1:4]
for kind in ("cold", "warm"):
    times = [float(l.split("=")[1]) for l in open(f"{work}/recovery-{kind}.txt")]
    print(f"recovery {kind} runs={len(times)} median={statistics.median(times):.2f} min={min(times):.2f} "
          f"max={max(times):.2f} all={','.join(f'{t:.2f}' for t in times)} log_records={records} log_bytes={size}")
EOF
    section_done
    section "deleting the recovery log"
    delete "$work/recovery"
    section_done
fi

if want drain; then
    section "drain into ClickHouse vs ClickHouse alone: benches/delivery.py drain --events $BENCH_DRAIN_EVENTS"
    # What benches/delivery.sh drain runs, minus its `cargo build`: the suite measures the one
    # binary built above, even if the sources change while it runs.
    apt_ensure clickhouse-server
    python_ensure_venv
    if E2E_SLUICE_BIN="$BIN" PYTHONUNBUFFERED=1 "$VENV_DIR/bin/python" benches/delivery.py drain \
        --events "$BENCH_DRAIN_EVENTS" 2>&1 | tee "$work/drain.log" | sed 's/^/    /'; then
        python3 - "$work/drain.log" "$BENCH_DRAIN_EVENTS" >>"$results" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
drain = re.search(r"([\d,]+) events/s from first row to last", text)
alone = re.search(r"clickhouse alone: .*= ([\d,]+) events/s", text)
ratio = re.search(r"ratio: .* = (\d+%)", text)
if drain and alone:
    print(f"drain clickhouse status=ok events={sys.argv[2]} drain_eps={drain.group(1).replace(',', '')} "
          f"alone_eps={alone.group(1).replace(',', '')} ratio={ratio.group(1) if ratio else '?'}")
else:
    print("drain clickhouse status=unparsed")
EOF
    else
        printf 'drain clickhouse status=failed\n' >>"$results"
    fi
    section_done
fi

section "results ($((SECONDS - suite_started)) s in all); also in $BENCH_OUT"
python3 benches/suite.py table "$results" "$BENCH_OUT"
cp "$results" "${BENCH_OUT%.md}.results"  # the raw figures: `benches/suite.py table FILE OUT` re-renders them
section_done
