#!/usr/bin/env bash
# A/B comparison of two (or more) builds of one Google Benchmark binary on a noisy machine, from
# the repo root:
#
#   perf/ab_bench.sh FILTER ROUNDS REPETITIONS BINARY_A BINARY_B [BINARY ...]
#
# Runs the binaries in turn, ROUNDS times (A B A B ...), each run with
# --benchmark_filter=FILTER --benchmark_repetitions=REPETITIONS, so that a slow stretch of the
# host hits every binary alike. Keeps each run's JSON in $OUT_DIR (default
# perf/results/ab-<UTC>-<commit>/, named <binary file name>.<round>.json) and prints, per
# benchmark and binary, the median, min and max over every repetition of every round of
# items_per_second (M/s) or, for a benchmark that reports no rate, of its time (in its unit).
# Give the binaries distinct file names (copy them to /tmp/old, /tmp/new first). Environment
# variables (SLUICE_BENCH_IDS=scrambled, say) pass through to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source perf/lib.sh

if [[ $# -lt 5 ]]; then
  sed -n '2,14p' "$0" >&2
  exit 2
fi
filter=$1 rounds=$2 reps=$3
shift 3
out_dir=${OUT_DIR:-perf/results/ab-$(date -u +%Y%m%dT%H%M%SZ)-$(commit_tag)}
mkdir -p "$out_dir"

for round in $(seq "$rounds"); do
  for bin in "$@"; do
    echo "round $round: $bin (machine busy before: $(busy_pct 2)%)" >&2
    "$bin" --benchmark_filter="$filter" --benchmark_repetitions="$reps" \
      --benchmark_format=json >"$out_dir/$(basename "$bin").$round.json"
  done
done

python3 - "$out_dir" <<'EOF'
import collections, glob, json, os, statistics, sys

runs = collections.defaultdict(list)
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    binary = os.path.basename(path).rsplit(".", 2)[0]
    with open(path) as f:
        for b in json.load(f)["benchmarks"]:
            if b.get("run_type") == "aggregate" or b.get("error_occurred"):
                continue
            if "items_per_second" in b:
                runs[(b["name"], binary, "M/s")].append(b["items_per_second"] / 1e6)
            else:
                runs[(b["name"], binary, b["time_unit"])].append(b["real_time"])
print(f"{'benchmark':52} {'binary':16} {'median':>9} {'min':>9} {'max':>9}  unit  n")
for (name, binary, unit), v in sorted(runs.items()):
    print(f"{name:52} {binary:16} {statistics.median(v):9.2f} {min(v):9.2f} {max(v):9.2f}"
          f"  {unit:4}  {len(v)}")
EOF
echo "JSON files in $out_dir" >&2
