#!/usr/bin/env bash
# Runs one bench of two checkouts alternately, in one session, so both see
# the same machine: before, after, before, after, ... (RUNS pairs).
#
#   git worktree add ../before <commit>
#   (cd ../before && cargo build --release --benches)
#   cargo build --release --benches
#   benches/side-by-side.sh ../before exchange 3 > exchange.txt
#
# Extra environment (BENCH_SUBMITS, BENCH_BACKLOG, ...) is passed to both.
# The bench sources should be the same in both checkouts (copy them over),
# so only the code under test differs. Prints each run's output under a
# header naming the checkout and run.
set -euo pipefail
BEFORE=$(realpath "${1:?usage: side-by-side.sh BEFORE_CHECKOUT BENCH [RUNS]}")
BENCH=${2:?bench name}
RUNS=${3:-3}
AFTER=$(cd "$(dirname "$0")/.." && pwd)

binary() {
    # The newest bench executable of that name in the checkout's target dir.
    ls -t "$1"/target/release/deps/"$BENCH"-* 2>/dev/null | grep -v '\.d$' | head -1
}
for side in "$BEFORE" "$AFTER"; do
    [ -x "$(binary "$side")" ] || { echo "no $BENCH bench built in $side" >&2; exit 1; }
done
for run in $(seq "$RUNS"); do
    for side in "$BEFORE" "$AFTER"; do
        name=$([ "$side" = "$BEFORE" ] && echo before || echo after)
        echo "=== $name run $run ($(git -C "$side" rev-parse --short HEAD))"
        (cd "$side" && "$(binary "$side")" --bench)
    done
done
