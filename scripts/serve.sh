#!/usr/bin/env bash
# Start the collector locally: builds the release binary and runs `sluice serve`.
#
#   scripts/serve.sh [sluice serve flags...]
#
# By default it listens on 0.0.0.0:8080 (collector) and 0.0.0.0:9090 (metrics) and keeps its
# write-ahead log in ./data at the repository root. Any flag is passed on to `sluice serve`
# (e.g. `--listen 127.0.0.1:8080`, `--data-dir /var/lib/sluice`, `--config sluice.toml`), and the
# usual SLUICE_* environment variables apply (e.g. SLUICE_WAL__CAPACITY=1GiB).
# Once the daemon answers, it prints the web console's address with the admin token in it
# (http://127.0.0.1:9091/console/?token=...): open that in a browser.
# Stop it with Ctrl-C (SIGINT): in-flight requests finish, then it exits 0.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

section "building the release binary (cargo build --release --bin sluice)"
cargo build --quiet --release --bin sluice
section_done

# ---------------------------------------------------------------------------------------------
# ClickHouse. sluice publishes to the server at SLUICE_CLICKHOUSE__URL (default
# http://127.0.0.1:8123; a --clickhouse-url flag given to this script wins too). When nothing
# answers there and the URL is this machine's default port, a local clickhouse-server is started
# (installed from Debian's packages when missing and we may), keeping its data in
# ./data/clickhouse and stopped again when sluice stops. When none can be reached or started,
# sluice still starts: it acknowledges and buffers every event in its write-ahead log and
# publishes them once ClickHouse is reachable.
# ---------------------------------------------------------------------------------------------
CH_URL="${SLUICE_CLICKHOUSE__URL:-http://127.0.0.1:8123}"
# Passed on to `sluice serve` unless the caller gave --clickhouse-url themselves.
CH_FLAG=(--clickhouse-url "$CH_URL")
prev=""
for arg in "$@"; do
    case "$arg" in
        --clickhouse-url=*) CH_URL="${arg#*=}"; CH_FLAG=() ;;
    esac
    if [ "$prev" = "--clickhouse-url" ]; then CH_URL="$arg"; CH_FLAG=(); fi
    prev="$arg"
done
CH_PID=""

ch_ping() { curl -fsS --max-time 2 "$CH_URL/ping" >/dev/null 2>&1; }

start_local_clickhouse() {
    command -v clickhouse-server >/dev/null 2>&1 || {
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            (apt_ensure clickhouse-server) || return 1
        else
            return 1
        fi
    }
    local dir="$REPO_ROOT/data/clickhouse" port="${CH_URL##*:}"
    port="${port%%/*}"
    mkdir -p "$dir/tmp"
    note "starting a local clickhouse-server on port $port (data in $dir, log in $dir/server.log)"
    clickhouse-server --config-file=/etc/clickhouse-server/config.xml -- \
        --path="$dir/" --tmp_path="$dir/tmp/" --user_files_path="$dir/user_files/" \
        --format_schema_path="$dir/format_schemas/" \
        --logger.log="$dir/server.log" --logger.errorlog="$dir/server.err.log" --logger.console=0 \
        --http_port="$port" --tcp_port=0 --interserver_http_port=0 \
        >"$dir/stdout.log" 2>&1 &
    CH_PID=$!
    for _ in $(seq 1 150); do
        ch_ping && return 0
        kill -0 "$CH_PID" 2>/dev/null || { CH_PID=""; return 1; }
        sleep 0.2
    done
    return 1
}

section "ClickHouse at $CH_URL"
if ch_ping; then
    note "reachable"
elif [[ "$CH_URL" =~ ^http://(127\.0\.0\.1|localhost):[0-9]+/?$ ]] && start_local_clickhouse; then
    note "started (pid $CH_PID)"
else
    note "not reachable and none could be started here: sluice buffers events in its log"
    note "and publishes them once ClickHouse answers at $CH_URL"
fi
if ch_ping; then
    "$TARGET_DIR/release/sluice" db init --clickhouse-url "$CH_URL" ||
        note "sluice db init failed (see above); sluice keeps buffering until the table is usable"
fi
section_done

# ---------------------------------------------------------------------------------------------
# The console. `sluice config show --json` (with the same flags and environment) says where the
# admin listener and the data directory are; once the listener answers, the token is read from
# DATA_DIR/admin.token (the daemon generates it at first start) and the console's URL printed
# with it: opening it signs the browser in and takes the token out of the address bar. A
# configured admin.token is never printed (config show redacts it): the URL comes without it.
# Runs in the background beside the daemon and gives up after a minute.
# ---------------------------------------------------------------------------------------------
announce_console() {
    local show fields addr data_dir configured url token
    show="$("$TARGET_DIR/release/sluice" config show --json "$@" 2>/dev/null)" || return 0
    fields="$(python3 -c '
import json, sys
c = json.load(sys.stdin)
addr = c["admin.listen"]["value"]
host, _, port = addr.rpartition(":")
host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
print(f"{host}:{port}", c["data_dir"]["value"], "yes" if c["admin.token"]["value"] else "no", sep="\t")
' <<<"$show")" || return 0
    IFS=$'\t' read -r addr data_dir configured <<<"$fields"
    url="http://$addr/console/"
    for _ in $(seq 1 300); do
        if curl -fsS --max-time 1 "http://$addr/healthz" >/dev/null 2>&1; then
            if [ "$configured" = "yes" ]; then
                note "console: $url (sign in with admin.token)"
            elif token="$(tr -d '[:space:]' <"$data_dir/admin.token" 2>/dev/null)" && [ -n "$token" ]; then
                note "console: $url?token=$token"
            else
                note "console: $url (the token is in $data_dir/admin.token)"
            fi
            return 0
        fi
        sleep 0.2
    done
}

section "sluice serve $*"
note "collector: GET /i, POST /com.snowplowanalytics.snowplow/tp2, /v1/*, /v1.0/event(s), /collect"
note "health: GET /health, GET /ready; metrics: GET /metrics on the metrics listener"
note "admin API and web console on the admin listener: the console's URL follows once it answers"
announce_console "${CH_FLAG[@]}" "$@" &
if [ -z "$CH_PID" ]; then
    exec "$TARGET_DIR/release/sluice" serve "${CH_FLAG[@]}" "$@"
fi
# We own a ClickHouse: run sluice as a child, pass SIGINT/SIGTERM on, then stop ClickHouse.
"$TARGET_DIR/release/sluice" serve "${CH_FLAG[@]}" "$@" &
SLUICE_PID=$!
trap 'kill -TERM "$SLUICE_PID" 2>/dev/null' INT TERM
status=0
wait "$SLUICE_PID" || status=$?
# A signal interrupts the first wait; wait again for sluice's own exit.
kill -0 "$SLUICE_PID" 2>/dev/null && { wait "$SLUICE_PID" || status=$?; }
note "stopping the local clickhouse-server"
kill -TERM "$CH_PID" 2>/dev/null && wait "$CH_PID" 2>/dev/null
exit "$status"
