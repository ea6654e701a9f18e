#!/usr/bin/env bash
# The whole test suite: the one command contributors run, and exactly what CI runs (.ci/run).
#
#   scripts/test.sh
#
# Installs what the tests need (quietly, only when missing), then runs, stopping at the first
# failing step:
#   formatting, clippy (warnings are errors), rustdoc (warnings are errors), doctests,
#   the Python end-to-end tests against the real daemon, and every Rust test (nextest).
# The Rust test run goes last so that its closing summary line is the last thing printed.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

# Debian packages the tests need. Later issues add clickhouse-server here (the real server the
# end-to-end delivery tests start on a free port).
APT_PACKAGES=()

started=$SECONDS

section "prerequisites"
command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (rustup) first"
if [ "${#APT_PACKAGES[@]}" -gt 0 ]; then
    apt_ensure "${APT_PACKAGES[@]}"
fi
python_ensure_venv
if cargo nextest --version >/dev/null 2>&1; then
    have_nextest=1
else
    have_nextest=0
    note "cargo-nextest not found; falling back to cargo test"
fi
note "$(cargo --version), $("$VENV_DIR/bin/python" --version)"
section_done

section "cargo fmt --all -- --check"
cargo fmt --all -- --check
section_done

section "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --quiet --workspace --all-targets -- -D warnings
section_done

section "cargo doc --workspace --no-deps (warnings are errors)"
RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -Dwarnings" cargo doc --quiet --workspace --no-deps
section_done

section "cargo test --doc --workspace"
cargo test --quiet --doc --workspace
section_done

section "end-to-end: the daemon under the official Python tracker, killed with SIGKILL"
cargo build --quiet --bin sluice
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
