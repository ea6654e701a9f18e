#!/usr/bin/env bash
# Delivery benchmarks: drain rate from a backlog vs ClickHouse alone, and
# acknowledgement → row-visible latency at 10k events/s. Release build, a real clickhouse-server
# on a free port, everything in a temp dir; see benches/delivery.py for what is measured.
#
#   benches/delivery.sh                         # both
#   benches/delivery.sh drain --events 1000000  # one, with options (benches/delivery.py --help)
# Not part of scripts/test.sh: it measures, it asserts nothing.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"

section "prerequisites (clickhouse-server, venv, release build)"
apt_ensure clickhouse-server
python_ensure_venv
cargo build --quiet --release --bin sluice
note "$(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
section_done

export E2E_SLUICE_BIN="$TARGET_DIR/release/sluice"
if [ "$#" -gt 0 ]; then
    section "delivery.py $*"
    "$VENV_DIR/bin/python" benches/delivery.py "$@"
    section_done
else
    section "drain from a backlog"
    "$VENV_DIR/bin/python" benches/delivery.py drain
    section_done
    section "latency at 10k events/s"
    "$VENV_DIR/bin/python" benches/delivery.py latency
    section_done
fi
