#!/usr/bin/env bash
# Instructions per event of the publisher's own work (decode, enrich, fingerprint, RowBinary
# encoding) over the drain benchmark's request, counted by callgrind: examples/publish_cost.rs
# runs at two record counts and the difference is divided by the events between them, so
# start-up work cancels out. Deterministic, unlike wall-clock figures on a shared machine;
# instructions are not time (a cache miss or a mispredicted branch costs more than one), so
# BENCHMARKS.md quotes both.
#
#   benches/instructions.sh              # 20 and 300 records (28 000 events apart)
#   benches/instructions.sh 20 1000
# Not part of scripts/test.sh: it measures, it asserts nothing.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"

low="${1:-20}"
high="${2:-300}"
if ! [[ "$low" =~ ^[0-9]+$ && "$high" =~ ^[0-9]+$ ]] || [ "$high" -le "$low" ]; then
    die "usage: $0 [LOW HIGH] (record counts, HIGH > LOW; got: $low $high)"
fi

apt_ensure valgrind
cargo build --quiet --release --example publish_cost
bin="$TARGET_DIR/release/examples/publish_cost"

count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
a="$(count "$low")"
b="$(count "$high")"
[ -n "$a" ] && [ -n "$b" ] || die "callgrind printed no instruction count"
events=$(((high - low) * 100))
echo "instructions per event: $(((b - a) / events)) ($low → $high records, $events events)"
