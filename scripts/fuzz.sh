#!/usr/bin/env bash
# Builds sluice's cargo-fuzz targets (fuzz/) and runs each one briefly.
#
#   scripts/fuzz.sh [SECONDS]      # default 20 seconds per target; 0 = build only
#
# Targets: tp2_body (the tp2 POST body decoder + processor), query_string (query-string and
# base64 decoding + processor), envelope (the WAL record decoder), segment (Segment single
# calls and batches, plain and gzip, + processor), pycolytics (validate/parse agreement +
# processor), collect (/collect bodies and stream names + processor). cargo-fuzz needs nightly
# compiler flags; a stable toolchain is told to accept them with RUSTC_BOOTSTRAP=1. cargo-fuzz
# itself is installed from crates.io when missing. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes this script exit non-zero. Each run starts from the
# committed seeds in fuzz/seeds/<target>/ (real tracker and SDK payloads, one valid request of
# each kind, a few near misses) plus whatever fuzz/corpus/<target>/ holds; new inputs are
# written to the corpus (ignored by git). The build uses the committed fuzz/Cargo.lock.
set -euo pipefail

seconds="${1:-${FUZZ_SECONDS:-20}}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS]  (got: $seconds)" >&2
    exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
targets=(tp2_body query_string envelope segment pycolytics collect)
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd "$root/fuzz"
echo "==> building fuzz targets: ${targets[*]}"
cargo fuzz build

if [ "$seconds" -eq 0 ]; then
    echo "fuzz targets built (not run: 0 seconds)"
    exit 0
fi

failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "==> fuzzing $t for ${seconds}s"
    if ! cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=0 2>"corpus/.$t.log"; then
        echo "FAIL: $t crashed; input in fuzz/artifacts/$t/; log:" >&2
        tail -n 40 "corpus/.$t.log" >&2
        failed=$((failed + 1))
    else
        grep -E '^Done|#[0-9]+.*DONE' "corpus/.$t.log" | tail -n 1 || true
    fi
done
passed=$(( ${#targets[@]} - failed ))
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
