#!/usr/bin/env bash
# The whole test suite: the one command contributors run, and exactly what CI runs (.ci/run).
#
#   scripts/test.sh
#
# Installs what the tests need (quietly, only when missing; a fresh Debian 12 machine works),
# then runs, stopping at the first failing step:
#   formatting, clippy (warnings are errors), rustdoc (warnings are errors), doctests,
#   the chdb test (the modern ClickHouse engine in-process), the fuzz targets briefly,
#   the end-to-end tests (the daemon, a real clickhouse-server and the official Snowplow,
#   Segment and RudderStack SDKs; the admin console in headless Chromium), and every Rust
#   test (nextest).
# What it installs: Debian's clickhouse-server + clickhouse-client (18.16), chromium and, when
# `node` or `npm` is missing, Debian's nodejs/npm; a Python venv (.venv/) with
# tests/e2e/requirements.txt (chdb-core, snowplow-tracker, segment-analytics-python,
# rudder-sdk-python, pytest); tests/e2e/js/node_modules via `npm ci` (@snowplow/node-tracker,
# @segment/analytics-node, puppeteer-core).
# The Rust test run goes last so that its closing summary line is the last thing printed.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

# Debian packages the tests need: the real ClickHouse server the delivery tests start on a
# free port (tests/e2e/clickhouse.py, tests/support/clickhouse.rs); systemd for
# `systemd-analyze verify` of deploy/systemd/sluice.service (tests/deploy_systemd.rs; it does
# not need systemd running as PID 1); chromium, the browser puppeteer-core drives through the
# admin console (tests/e2e/test_console_browser.py, which fails without it); strace, which
# traces a dead-letter flush's fsyncs (tests/deadletter_durability.rs).
APT_PACKAGES=(clickhouse-server clickhouse-client systemd chromium strace)
# Seconds each fuzz target runs (scripts/fuzz.sh); CI keeps it short.
FUZZ_SECONDS="${FUZZ_SECONDS:-5}"

started=$SECONDS

section "prerequisites"
command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (rustup) first"
if [ "${#APT_PACKAGES[@]}" -gt 0 ]; then
    apt_ensure "${APT_PACKAGES[@]}"
fi
command -v node >/dev/null 2>&1 || apt_ensure nodejs
command -v npm >/dev/null 2>&1 || apt_ensure npm
python_ensure_venv
node_ensure_modules "$REPO_ROOT/tests/e2e/js"
if cargo nextest --version >/dev/null 2>&1; then
    have_nextest=1
else
    have_nextest=0
    note "cargo-nextest not found; falling back to cargo test"
fi
note "$(cargo --version), $("$VENV_DIR/bin/python" --version), node $(node --version), $(clickhouse-server --version 2>/dev/null | head -n1), $(chromium --version 2>/dev/null | head -n1)"
section_done

section "cargo fmt --all -- --check (the workspace and fuzz/)"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check
section_done

section "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --quiet --workspace --all-targets -- -D warnings
section_done

section "cargo clippy on the fuzz targets (fuzz/ is its own workspace; its lock file is committed)"
cargo clippy --quiet --locked --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
section_done

section "cargo doc --workspace --no-deps (warnings are errors)"
RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -Dwarnings" cargo doc --quiet --workspace --no-deps
section_done

section "cargo test --doc --workspace"
cargo test --quiet --doc --workspace
section_done

section "cargo build --bin sluice (the binary the Python tests drive)"
cargo build --quiet --bin sluice
section_done

section "chdb: the modern ClickHouse engine (chdb-core) runs the migrations and loads the sink's RowBinary"
TEST_SLUICE_BIN="$TARGET_DIR/debug/sluice" \
    "$VENV_DIR/bin/python" -m pytest -p no:cacheprovider -v tests/chdb
section_done

section "fuzz targets, ${FUZZ_SECONDS}s each"
FUZZ_SECONDS="$FUZZ_SECONDS" bash scripts/fuzz.sh
section_done

section "end-to-end: the daemon into a real ClickHouse; official trackers and SDKs, keys, limits, outages, SIGKILL, bad input, the console in Chromium"
E2E_SLUICE_BIN="$TARGET_DIR/debug/sluice" \
    "$VENV_DIR/bin/python" -m pytest -p no:cacheprovider -v -s tests/e2e
section_done

if [ "$have_nextest" -eq 1 ]; then
    section "cargo nextest run --workspace"
    cargo nextest run --workspace --no-fail-fast
else
    section "cargo test --workspace"
    cargo test --workspace --no-fail-fast
fi
section_done

printf '\nall checks passed in %dm%02ds\n' "$(((SECONDS - started) / 60))" "$(((SECONDS - started) % 60))"
