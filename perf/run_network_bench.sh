#!/usr/bin/env bash
# Runs the network benchmarks the way perf/RESULTS.md ("Network") reports them, from the repo
# root.
#
#   perf/run_network_bench.sh [BUILD_DIR]
#
# 1. with WAIT_FOR_IDLE=<seconds>, waits up to that long for 10 idle seconds (the benchmarks pin
#    a client to CPU 0 and a server to CPU 1: anything else running moves the numbers);
# 2. runs bench/network_bench with REPETITIONS repetitions and random interleaving; the JSON
#    (every repetition) goes to perf/results/network_bench-<UTC date>-<commit>.json;
# 3. prints a markdown summary (perf/summarize_network_bench.py: medians and min-max over
#    repetitions, the placement of each repetition, the ratios the targets are about) and saves
#    it next to the JSON as .md.
#
# Environment: BUILD_DIR (default build/release; the argument wins), REPETITIONS (5),
# BENCH_FILTER (a --benchmark_filter regex), OUT_DIR (perf/results), WAIT_FOR_IDLE (0),
# NETWORK_BENCH_DIR (scratch for the journal of Pipelined/sluice_journal, default
# <build dir>/network-bench-journal-tmp; removed afterwards).
# The binary must already be built:
#   cmake --preset release && cmake --build --preset release --target network_bench
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source perf/lib.sh

build_dir=${1:-${BUILD_DIR:-build/release}}
bin=$build_dir/bench/network_bench
reps=${REPETITIONS:-5}
out_dir=${OUT_DIR:-perf/results}

if [[ ! -x $bin ]]; then
  echo "run_network_bench.sh: $bin not found; build it with:" \
    "cmake --build --preset release --target network_bench" >&2
  exit 1
fi

# Read-only git queries: the short commit, marked -dirty when the tree differs from it.
commit=$(commit_tag)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out_dir"
base=$out_dir/network_bench-$stamp-$commit
json=$base.json
export NETWORK_BENCH_DIR=${NETWORK_BENCH_DIR:-$build_dir/network-bench-journal-tmp}
mkdir -p "$NETWORK_BENCH_DIR"
trap 'rm -rf "$NETWORK_BENCH_DIR"' EXIT


wait_for_idle "${WAIT_FOR_IDLE:-0}" 5
echo "machine busy before the run: $(busy_pct)% of CPU time"

cmd=("$bin"
  --benchmark_repetitions="$reps"
  --benchmark_enable_random_interleaving=true
  --benchmark_display_aggregates_only=true
  --benchmark_out="$json"
  --benchmark_out_format=json)
if [[ -n ${BENCH_FILTER:-} ]]; then
  cmd+=(--benchmark_filter="$BENCH_FILTER")
fi
echo "+ ${cmd[*]}"
"${cmd[@]}"

python3 perf/summarize_network_bench.py "$json" "$commit" | tee "$base.md"
echo
echo "results: $json (summary: $base.md)"
