#!/usr/bin/env bash
# Load benchmark of the whole daemon: the release binary under wrk, on loopback.
#
#   benches/daemon.sh            # 10 s per scenario, 2 wrk threads, 64 connections
#   DURATION=30s CONNECTIONS=128 benches/daemon.sh
#
# Scenarios (Lua scripts in benches/wrk/):
#   health     GET /health: the HTTP stack alone, no log; the ceiling for the others
#   get_i      GET /i: a JavaScript-tracker page view per request, acknowledged after fdatasync
#   post_tp2   POST tp2 with 10 events per body, acknowledged after fdatasync
#   get_i_live GET /i while LIVE_VIEWERS (default 50) clients watch the admin API's live feed,
#              one of them never reading; then get_i_after, GET /i again without them, so the
#              two plain runs show the noise the live run is to be compared with
#   *_paced    the same at a fixed offered rate (half the throughput target), for latency
# It prints one table row per scenario plus the daemon's peak RSS (VmHWM) and the records the
# log holds afterwards. Not part of scripts/test.sh: it measures, it asserts nothing.
# Everything runs on 127.0.0.1 and stops by itself; the daemon and its temp data dir are
# removed on exit.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"

DURATION="${DURATION:-10s}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
# Half the throughput targets (GET /i 40k req/s, POST tp2 100k events/s = 10k req/s of 10 events).
GET_PACED_RATE="${GET_PACED_RATE:-20000}"
LIVE_VIEWERS="${LIVE_VIEWERS:-50}"
POST_PACED_RATE="${POST_PACED_RATE:-5000}"

section "prerequisites (wrk from Debian, release build)"
apt_ensure wrk curl
cargo build --quiet --release --bin sluice
BIN="$TARGET_DIR/release/sluice"
section_done

work="$(mktemp -d -t sluice-bench.XXXXXX)"
port="$(free_port)"
metrics_port="$(free_port)"
admin_port="$(free_port)"
daemon_pid=""
viewer_pids=()
cleanup() {
    [ "${#viewer_pids[@]}" -eq 0 ] || kill "${viewer_pids[@]}" 2>/dev/null || true
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

section "starting sluice serve on 127.0.0.1:$port (data dir $work/data)"
# A large budget so no scenario meets a full log (nothing publishes, so nothing is recycled).
env SLUICE_WAL__CAPACITY="${SLUICE_WAL__CAPACITY:-16GiB}" SLUICE_LOG__LEVEL=warn \
    "$BIN" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics_port" --admin-listen "127.0.0.1:$admin_port" \
    --data-dir "$work/data" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
python3 - "$port" <<'EOF' || { cat "$work/daemon.log"; die "the daemon did not become healthy"; }
import sys, time, urllib.request
deadline = time.time() + 30
while time.time() < deadline:
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1).status == 200:
            sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
note "pid $daemon_pid, $(nproc) cores, wrk: -t$THREADS -c$CONNECTIONS -d$DURATION"
section_done

results="$work/results.txt"
: >"$results"

# commit_counters: "group-commits records fsync-seconds" so far, from the daemon's /metrics.
commit_counters() {
    python3 - "$metrics_port" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
values = {}
for line in text.splitlines():
    if line.startswith(("sluice_wal_commit_records_", "sluice_wal_fsync_duration_seconds_")):
        name, value = line.rsplit(" ", 1)
        name = name.split("{")[0]
        values[name] = values.get(name, 0.0) + float(value)
print(int(values.get("sluice_wal_commit_records_count", 0)), int(values.get("sluice_wal_commit_records_sum", 0)),
      values.get("sluice_wal_fsync_duration_seconds_sum", 0.0))
EOF
}

# cpu_snapshot: sets CPU_SNAPSHOT to "seconds-since-boot busy-CPU-ticks daemon-CPU-ticks
# children-CPU-ms" right now. Between two snapshots around a wrk run, children-CPU-ms grows by
# wrk's CPU time, so the rest of the busy time is what other processes took from the benchmark.
# Call it directly, not in $(...): `times` must run in this shell to see its children.
cpu_snapshot() {
    local _cpu user nice system _idle _iowait irq softirq steal _rest up _up daemon_ticks
    read -r _cpu user nice system _idle _iowait irq softirq steal _rest </proc/stat
    read -r up _up </proc/uptime
    daemon_ticks=$(awk '{print $14 + $15}' "/proc/$daemon_pid/stat")
    local children re='([0-9]+)m([0-9]+)\.([0-9]+)s ([0-9]+)m([0-9]+)\.([0-9]+)s'
    times >"$work/times"
    children="$(tail -n 1 "$work/times")"
    [[ $children =~ $re ]] || die "cannot parse the shell's 'times': $children"
    local ms=$(((10#${BASH_REMATCH[1]} * 60 + 10#${BASH_REMATCH[2]} + 10#${BASH_REMATCH[4]} * 60 + 10#${BASH_REMATCH[5]}) * 1000 + 10#${BASH_REMATCH[3]} + 10#${BASH_REMATCH[6]}))
    CPU_SNAPSHOT="$up $((user + nice + system + irq + softirq + steal)) $daemon_ticks $ms"
}

# run_wrk NAME SCRIPT [RATE]: one wrk run; appends "NAME key=value..." to the results.
run_wrk() {
    local name="$1" script="$2" rate="${3:-}" out before after cpu_before cpu_after
    before="$(commit_counters)"
    section "$name: wrk -t$THREADS -c$CONNECTIONS -d$DURATION -s benches/wrk/$script${rate:+ (paced at $rate req/s)}"
    cpu_snapshot
    cpu_before="$CPU_SNAPSHOT"
    out="$(WRK_RATE="$rate" WRK_THREADS="$THREADS" WRK_SCRIPTS_DIR=benches/wrk \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 10s -s "benches/wrk/$script" \
        "http://127.0.0.1:$port")"
    cpu_snapshot
    cpu_after="$CPU_SNAPSHOT"
    printf '%s\n' "$out" | sed 's/^/    /'
    local line
    line="$(printf '%s\n' "$out" | grep '^SLUICE_RESULT ' | sed 's/^SLUICE_RESULT //')"
    [ -n "$line" ] || die "wrk printed no result line"
    after="$(commit_counters)"
    printf '%s %s rss_kb=%s %s\n' "$name" "$line" "$(grep VmRSS /proc/"$daemon_pid"/status | awk '{print $2}')" \
        "$(python3 -c 'import os, sys
b, a, cb, ca = (x.split() for x in sys.argv[1:5])
hz = os.sysconf("SC_CLK_TCK")
wall = float(ca[0]) - float(cb[0])
busy = (int(ca[1]) - int(cb[1])) / hz
sluice = (int(ca[2]) - int(cb[2])) / hz
wrk = (int(ca[3]) - int(cb[3])) / 1000
print(f"commits={int(a[0]) - int(b[0])} committed={int(a[1]) - int(b[1])} fsync_s={float(a[2]) - float(b[2]):.6f}",
      f"sluice_cpu={100 * sluice / wall:.0f} wrk_cpu={100 * wrk / wall:.0f} other_cpu={100 * max(busy - sluice - wrk, 0) / wall:.0f}")' \
            "$before" "$after" "$cpu_before" "$cpu_after")" >>"$results"
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log"; die "the daemon died"; }
    section_done
}

# Warm-up (not reported): first segment files, connection setup, page cache.
section "warm-up (3 s of GET /i, not reported)"
WRK_SCRIPTS_DIR=benches/wrk wrk -t"$THREADS" -c"$CONNECTIONS" -d3s -s benches/wrk/get_i.lua \
    "http://127.0.0.1:$port" >/dev/null
section_done

# start_viewers N: N-1 clients reading the live feed and one that connects and never reads.
start_viewers() {
    local token n="$1"
    token="$(cat "$work/data/admin.token")"
    for _ in $(seq 1 $((n - 1))); do
        curl -sN -H "Authorization: Bearer $token" "http://127.0.0.1:$admin_port/api/v1/live" >/dev/null &
        viewer_pids+=($!)
    done
    python3 benches/suite.py stuck-viewer "$admin_port" "$token" &
    viewer_pids+=($!)
    python3 benches/suite.py wait-viewers "$admin_port" "$token" "$n" || die "the viewers did not connect"
    note "$n live viewers connected (one never reads)"
}
stop_viewers() {
    kill "${viewer_pids[@]}" 2>/dev/null || true
    wait "${viewer_pids[@]}" 2>/dev/null || true
    viewer_pids=()
}

run_wrk health health.lua
run_wrk get_i get_i.lua
start_viewers "$LIVE_VIEWERS"
run_wrk get_i_live get_i.lua
stop_viewers
run_wrk get_i_after get_i.lua
run_wrk post_tp2 post_tp2.lua
run_wrk get_i_paced get_i.lua "$GET_PACED_RATE"
run_wrk post_tp2_paced post_tp2.lua "$POST_PACED_RATE"

peak_kb="$(grep VmHWM /proc/"$daemon_pid"/status | awk '{print $2}')"
appended="$("$BIN" wal status --data-dir "$work/data" --json |
    python3 -c 'import json, sys; s = json.load(sys.stdin); print(s["appended_total"], s["used_bytes"])')"

section "results"
python3 - "$results" "$peak_kb" "$appended" <<'EOF'
import os, sys
rows = {}
for line in open(sys.argv[1]):
    name, *fields = line.split()
    rows[name] = {k: float(v) for k, v in (f.split("=", 1) for f in fields)}
peak_mb = int(sys.argv[2]) / 1024
appended, used = (int(x) for x in sys.argv[3].split())
health = rows.get("health", {}).get("rps", 0)
print(f"{'scenario':<16}{'req/s':>10}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>9}"
      f"{'max ms':>9}{'non-2xx':>9}{'errors':>8}{'vs /health':>11}{'fsyncs/s':>10}{'recs/fsync':>11}{'fsync ms':>9}{'cpu% sluice/wrk/other':>22}{'RSS MiB':>8}")
for name, r in rows.items():
    events = r["rps"] * (10 if name.startswith("post_tp2") else 1)
    errors = int(r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"])
    ratio = f"{r['rps'] / health:.2f}" if health and name != "health" else "-"
    print(f"{name:<16}{r['rps']:>10.0f}{events:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
          f"{r['p999_ms']:>9.2f}{r['max_ms']:>9.2f}{int(r['non2xx']):>9}{errors:>8}{ratio:>11}"
          f"{r['commits'] / r['seconds']:>10.0f}{r['committed'] / max(r['commits'], 1):>11.1f}"
          f"{1000 * r['fsync_s'] / max(r['commits'], 1):>9.3f}"
          f"{int(r['sluice_cpu']):>12}/{int(r['wrk_cpu']):>3}/{int(r['other_cpu']):>3}{r['rss_kb'] / 1024:>8.1f}")
print(f"peak RSS (VmHWM): {peak_mb:.1f} MiB; log afterwards: {appended} records, {used / 2**20:.0f} MiB")
print(f"cpu%: of one core, over each run ({os.cpu_count()} cores = {100 * os.cpu_count()}%); 'other' is CPU taken by processes")
print("other than sluice and wrk: well above a few percent means the run shared the machine and understates sluice.")
EOF
section_done
