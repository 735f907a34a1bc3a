#!/usr/bin/env bash
# Runs the ring buffer microbenchmarks the way perf/RESULTS.md reports them, from the repo root.
#
#   perf/run_bench.sh [BUILD_DIR]          (make bench calls it with build/release)
#
# 1. placement probe: PingPong/raw_cacheline alone (~1 s): the cache-line round trip between
#    the two vCPUs, which this host makes "near" (~100 ns) or "far" (~450 ns) from run to run;
# 2. the full ring_buffer_bench: REPETITIONS repetitions with random interleaving, so every
#    implementation sees the same mix of conditions; per-repetition JSON (not aggregates only)
#    is written to perf/results/ring_buffer_bench-<date>-<commit>.json;
# 3. the placement probe again;
# 4. perf/summarize_bench.py: markdown tables of medians / spread / ratios and the placement
#    verdict, printed and saved next to the JSON as .md.
#
# Environment: BUILD_DIR (default build/release; the argument wins), REPETITIONS (10),
# MIN_TIME (seconds per repetition, 0.5), BENCH_FILTER (a --benchmark_filter regex), OUT_DIR
# (perf/results), WAIT_FOR_IDLE (seconds to wait for the machine to be idle for 10 s before
# starting; default 0, don't wait). The binary must already be built:
#   cmake --build <BUILD_DIR> --target ring_buffer_bench
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source perf/lib.sh

build_dir=${1:-${BUILD_DIR:-build/release}}
bin=$build_dir/bench/ring_buffer_bench
reps=${REPETITIONS:-10}
min_time=${MIN_TIME:-0.5}
out_dir=${OUT_DIR:-perf/results}

if [[ ! -x $bin ]]; then
  echo "run_bench.sh: $bin not found; build it with: cmake --build $build_dir --target ring_buffer_bench" >&2
  exit 1
fi

# Read-only git queries: the short commit, marked -dirty when the tree differs from it.
commit=$(commit_tag)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out_dir"
base=$out_dir/ring_buffer_bench-$stamp-$commit
json=$base.json


probe() {
  "$bin" --benchmark_filter='^PingPong/raw_cacheline/' --benchmark_min_time=0.5 \
    --benchmark_out="$1" --benchmark_out_format=json >/dev/null
  python3 - "$1" <<'EOF'
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if "rtt_p50_ns" in b:
        p50 = b["rtt_p50_ns"]
        kind = "near" if p50 <= 250 else "far" if p50 >= 350 else "unclear"
        print(f"placement probe: cache-line round trip p50 {p50:.0f} ns -> {kind}")
EOF
}

wait_for_idle "${WAIT_FOR_IDLE:-0}" 5

busy=$(busy_pct)
echo "machine busy before the run: ${busy}% of CPU time"
if ((busy > 10)); then
  echo "WARNING: something else is using the CPUs; results will be noisy (see top)." >&2
fi

probe "$base.probe-before.json"

cmd=("$bin"
  --benchmark_repetitions="$reps"
  --benchmark_enable_random_interleaving=true
  --benchmark_min_time="$min_time"
  --benchmark_display_aggregates_only=true
  --benchmark_out="$json"
  --benchmark_out_format=json)
if [[ -n ${BENCH_FILTER:-} ]]; then
  cmd+=(--benchmark_filter="$BENCH_FILTER")
fi
echo "+ ${cmd[*]}"
# Runs the benchmark and writes "<other processes' CPU seconds> <wall seconds>" to $base.cpu:
# machine-wide busy time (/proc/stat) minus the benchmark's own user+system time.
status=0
python3 - "$base.cpu" "${cmd[@]}" <<'PY' || status=$?
import os, resource, subprocess, sys, time
def busy_ticks():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return sum(v) - v[3] - v[4]
t0, b0 = time.monotonic(), busy_ticks()
rc = subprocess.call(sys.argv[2:])
busy = (busy_ticks() - b0) / os.sysconf("SC_CLK_TCK")
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    f.write(f"{max(0.0, busy - ru.ru_utime - ru.ru_stime):.1f} {time.monotonic() - t0:.1f}\n")
sys.exit(rc)
PY
read -r foreign_cpu wall < "$base.cpu"
rm -f "$base.cpu"
echo "other processes used ${foreign_cpu} CPU-seconds during the ${wall} s run"
if ((status != 0)); then
  echo "run_bench.sh: ring_buffer_bench exited with status $status" >&2
  exit "$status"
fi

probe "$base.probe-after.json"

python3 perf/summarize_bench.py "$json" \
  --probe-before "$base.probe-before.json" --probe-after "$base.probe-after.json" \
  --busy-before "$busy" --foreign-cpu "$foreign_cpu" --wall "$wall" | tee "$base.md" || status=$?
echo
echo "results: $json (summary: $base.md)"
if ((status != 0)); then
  echo "run_bench.sh: some benchmarks failed (see the summary)" >&2
fi
exit "$status"
