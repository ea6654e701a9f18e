#!/usr/bin/env bash
# Start the collector locally: builds the release binary and runs `sluice serve`.
#
#   scripts/serve.sh [sluice serve flags...]
#
# By default it listens on 0.0.0.0:8080 (collector) and 0.0.0.0:9090 (metrics) and keeps its
# write-ahead log in ./data at the repository root. Any flag is passed on to `sluice serve`
# (e.g. `--listen 127.0.0.1:8080`, `--data-dir /var/lib/sluice`, `--config sluice.toml`), and the
# usual SLUICE_* environment variables apply (e.g. SLUICE_WAL__CAPACITY=1GiB).
# Stop it with Ctrl-C (SIGINT): in-flight requests finish, then it exits 0.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

section "building the release binary (cargo build --release --bin sluice)"
cargo build --quiet --release --bin sluice
section_done

# ---------------------------------------------------------------------------------------------
# ClickHouse: this version only buffers events in the write-ahead log; delivery to ClickHouse
# arrives with a later issue. That issue starts a local clickhouse-server here (when one can be
# started on this machine and none is reachable at --clickhouse-url) before starting sluice.
# ---------------------------------------------------------------------------------------------

section "sluice serve $*"
note "collector: GET /i, POST /com.snowplowanalytics.snowplow/tp2, /v1/*, /v1.0/event(s), /collect"
note "health: GET /health, GET /ready; metrics: GET /metrics on the metrics listener"
exec "$TARGET_DIR/release/sluice" serve "$@"
