#!/usr/bin/env bash
# make pgo: a profile-guided build of sluice in build/pgo, from the repo root:
#
#   scripts/build-pgo.sh [TARGET ...]
#
#  1. builds sluiced and sluice instrumented (preset pgo-generate),
#  2. trains them on what the product does, not on a benchmark: the demo (scripts/demo.sh:
#     sluiced with two shards and durability batch under `sluice load`, then `sluice replay` of
#     its journal with one and two shards), then the demo again with the one-thread layout
#     (`--shard-threads 0`), durability none and `sluice load --time-scale 10` (the steady state:
#     full windows, state evicted as it expires, which seconds of wall-clock event time never
#     reach); each checks that replay reproduces the live decisions, so a broken instrumented
#     build fails here,
#  3. rebuilds the same directory with that profile (preset pgo): TARGETs, or everything.
#
# Every run starts from an empty profile, so the profile always matches the sources being
# built (GCC refuses a stale one). The training's own output goes to build/pgo/training.log.
# PGO_TRAIN_RATE (events/s, default 30000) and PGO_TRAIN_SECONDS (the first run's, default 8)
# adjust the training for a slower machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUILD_DIR=build/pgo
PROFILE_DIR=$BUILD_DIR/pgo-profile
LOG=$BUILD_DIR/training.log
RATE=${PGO_TRAIN_RATE:-30000}

say() { printf '\033[1m== %s\033[0m\n' "$*"; }

say "instrumented build (preset pgo-generate)"
cmake --preset pgo-generate >/dev/null
rm -rf "$PROFILE_DIR"
cmake --build --preset pgo-generate --target sluiced sluice

# train WHAT [VAR=VALUE ...]: one demo run on the instrumented build, with the demo's settings.
train() {
  local what=$1
  shift
  env DEMO_RATE="$RATE" "$@" bash scripts/demo.sh "$BUILD_DIR" >>"$LOG" 2>&1 || {
    tail -n 30 "$LOG" >&2
    echo "build-pgo: the $what training run failed (log: $LOG)" >&2
    exit 1
  }
}

say "training run (log: $LOG)"
: >"$LOG"
train "demo" DEMO_SECONDS="${PGO_TRAIN_SECONDS:-8}"
# 15 s at 10x event time: 150 s of it, so the 65 s fraud windows (60 s + 5 s lateness) fill and
# cleanup timers evict for most of the run; 50k accounts hold ~2 transactions each in a window.
train "one-thread" DEMO_SECONDS=15 \
  DEMO_DAEMON_ARGS="--shards 1 --shard-threads 0 --durability none" \
  DEMO_LOAD_ARGS="--accounts 50000 --time-scale 10"
profiles=$(find "$PROFILE_DIR" -name '*.gcda' 2>/dev/null | wc -l)
[ "$profiles" -gt 0 ] || { echo "build-pgo: the training wrote no profile to $PROFILE_DIR" >&2; exit 1; }
echo "$profiles profile files in $PROFILE_DIR"

say "optimised build (preset pgo)"
cmake --preset pgo >/dev/null
if [ $# -gt 0 ]; then
  cmake --build --preset pgo --target "$@"
else
  cmake --build --preset pgo
fi
