#!/usr/bin/env bash
# Runs the state, processor, replay and snapshot benchmarks the way perf/RESULTS.md reports
# them, from the repo root:
#
#   perf/run_state_bench.sh [BUILD_DIR]
#
# Each of state_store_bench, processor_bench and snapshot_bench runs with REPETITIONS
# repetitions (default 3; every repetition rebuilds and re-warms its state, so runs take minutes,
# not seconds), JSON per repetition into perf/results/<bench>-<UTC date>-<commit>.json and the
# console table next to it as .txt. Before and after each binary the script prints the share of
# CPU time other processes used over 5 s (the machine is shared: read the numbers with it).
# Scratch journals and snapshots go to $SCRATCH (default BUILD_DIR/bench-state-tmp; ~2.5 GB at
# peak, removed afterwards). BENCHES selects a subset ("state_store_bench processor_bench").
# Build first: cmake --build BUILD_DIR --target state_store_bench processor_bench snapshot_bench
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source perf/lib.sh

build_dir=${1:-${BUILD_DIR:-build/release}}
reps=${REPETITIONS:-3}
out_dir=${OUT_DIR:-perf/results}
scratch=${SCRATCH:-$build_dir/bench-state-tmp}
benches=${BENCHES:-state_store_bench processor_bench snapshot_bench}

commit=$(commit_tag)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out_dir" "$scratch"
scratch=$(cd "$scratch" && pwd)
trap 'rm -rf "$scratch"' EXIT


echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) vCPUs; kernel $(uname -r)"
echo "compiler: $(c++ --version | head -1); commit $commit"
for bench in $benches; do
  bin=$build_dir/bench/$bench
  [[ -x $bin ]] || { echo "$bin not built" >&2; exit 1; }
  base=$out_dir/$bench-$stamp-$commit
  echo "== $bench: machine busy before: $(busy_pct 5)% (others)"
  (cd "$scratch" && REPLAY_BENCH_DIR=$scratch/replay SNAPSHOT_BENCH_DIR=$scratch/snapshot \
    "$OLDPWD/$bin" --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=false \
    --benchmark_out="$OLDPWD/$base.json" --benchmark_out_format=json) | tee "$base.txt"
  echo "== $bench: machine busy after: $(busy_pct 5)%"
done
