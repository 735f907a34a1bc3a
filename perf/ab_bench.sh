#!/usr/bin/env bash
# A/B comparison of two (or more) builds of one Google Benchmark binary on a noisy machine, from
# the repo root:
#
#   perf/ab_bench.sh FILTER ROUNDS REPETITIONS BINARY_A BINARY_B [BINARY ...]
#
# Runs the binaries in turn, ROUNDS times (A B A B ...), each run with
# --benchmark_filter=FILTER --benchmark_repetitions=REPETITIONS, so that a slow stretch of the
# host hits every binary alike. Keeps each run's CSV in $OUT_DIR (default
# perf/results/ab-<UTC>-<commit>/, named <binary file name>.<round>.csv) and prints, per
# benchmark and binary, the median, min and max of items_per_second (M/s) over every repetition
# of every round. Give the binaries distinct file names (copy them to /tmp/old, /tmp/new first).
# Environment variables (SLUICE_BENCH_IDS=scrambled, say) pass through to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source perf/lib.sh

if [[ $# -lt 5 ]]; then
  sed -n '2,13p' "$0" >&2
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
      --benchmark_format=csv >"$out_dir/$(basename "$bin").$round.csv"
  done
done

python3 - "$out_dir" <<'EOF'
import collections, csv, glob, os, statistics, sys

runs = collections.defaultdict(list)
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.csv"))):
    binary = os.path.basename(path).rsplit(".", 2)[0]
    with open(path) as f:
        # Google Benchmark prints a context block before the CSV header on some versions.
        lines = [l for l in f if l.startswith("name,") or l.startswith('"')]
    for row in csv.DictReader(lines):
        name = row["name"]
        if name.endswith(("_mean", "_median", "_stddev", "_cv")) or not row["items_per_second"]:
            continue
        runs[(name, binary)].append(float(row["items_per_second"]) / 1e6)
print(f"{'benchmark':52} {'binary':16} {'median':>7} {'min':>7} {'max':>7}  n")
for (name, binary), v in sorted(runs.items()):
    print(f"{name:52} {binary:16} {statistics.median(v):7.2f} {min(v):7.2f} {max(v):7.2f}  {len(v)}")
EOF
echo "CSV files in $out_dir" >&2
