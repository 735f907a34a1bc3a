#!/usr/bin/env bash
# End-to-end results: sluiced under `sluice load`, for each durability mode and rate, beside the
# kernel's loopback floor and the disk's fdatasync floor measured in the same run.
#
#   perf/run_e2e.sh [BUILD_DIR]
#
# For every mode in MODES and rate in RATES: a fresh data directory, sluiced started on it
# (DAEMON_ARGS), `sluice load --rate R` for DURATION seconds after WARMUP, latency from each
# event's intended send time to its DECISION (coordinated-omission corrected) into a .hgrm
# file, then SIGTERM (exit 0 required). Then, for each mode in MAX_MODES, the rates of MAX_RATES
# in turn until one is not sustained: the highest sustained rate is the last that was
# (sustained: every event decided, achieved >= 99% of the target, p99.9 under 50 ms).
# The floors: `sluice floor` (blocking sockets and --spin) at FLOOR_RATE round trips/s, and
# `sluice floor --fdatasync` (4 KiB pwrite + fdatasync) at FSYNC_RATE, before and after.
#
# Output in perf/results/e2e-<UTC date>-<commit>/: every JSON line (results.jsonl), every .hgrm,
# latency-by-percentile plots (PNG, when gnuplot is installed: apt-get install gnuplot-nox),
# and summary.md: the table perf/RESULTS.md quotes, with the targets checked.
#
# Environment: MODES ("none batch sync"), RATES ("10000 100000 500000"), MAX_MODES ("none"),
# MAX_RATES ("700000 1000000 1300000"), DURATION (10), WARMUP (2), CONNECTIONS (4),
# FLOOR_RATE (10000), FSYNC_RATE (500), DAEMON_ARGS (""), LOAD_ARGS (""), LOAD_CPUS (pin the
# load generator, e.g. 0 with DAEMON_ARGS="--shard-threads 0 --cpus 1"), WAIT_FOR_IDLE (seconds
# to wait for 10 idle seconds first; 0), OUT_DIR
# (perf/results), SCRATCH (build/e2e-scratch: data directories, on the source tree's disk).
# Build first: cmake --build --preset release --target sluiced sluice
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source perf/lib.sh

build_dir=${1:-${BUILD_DIR:-build/release}}
sluiced=$build_dir/tools/sluiced
sluice=$build_dir/tools/sluice
modes=${MODES:-none batch sync}
rates=${RATES:-10000 100000 500000}
max_modes=${MAX_MODES-none}
max_rates=${MAX_RATES:-700000 1000000 1300000}
duration=${DURATION:-10}
warmup=${WARMUP:-2}
connections=${CONNECTIONS:-4}
floor_rate=${FLOOR_RATE:-10000}
fsync_rate=${FSYNC_RATE:-500}
scratch=${SCRATCH:-build/e2e-scratch}
for bin in "$sluiced" "$sluice"; do
  [[ -x $bin ]] || { echo "run_e2e.sh: $bin not built (cmake --build --preset release --target sluiced sluice)" >&2; exit 1; }
done

commit=$(commit_tag)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=${OUT_DIR:-perf/results}/e2e-$stamp-$commit
mkdir -p "$out" "$scratch"
jsonl=$out/results.jsonl
: >"$jsonl"

daemon_pid=
stop_daemon() {
  if [[ -n $daemon_pid ]]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    local status=0
    wait "$daemon_pid" || status=$?
    daemon_pid=
    return "$status"
  fi
}
trap 'stop_daemon || true; rm -rf "$scratch"' EXIT

record() {  # kind mode rate json
  printf '{"kind":"%s","mode":"%s","rate":%s,"result":%s}\n' "$1" "$2" "$3" "$4" >>"$jsonl"
}

floors() {  # label
  local j
  j=$("$sluice" floor --rate "$floor_rate" --duration "$duration" --warmup 1 --json --hgrm "$out/floor-blocking-$1.hgrm") || true
  record floor blocking "$floor_rate" "$j"
  j=$("$sluice" floor --spin --rate "$floor_rate" --duration "$duration" --warmup 1 --json --hgrm "$out/floor-spin-$1.hgrm") || true
  record floor spin "$floor_rate" "$j"
  j=$("$sluice" floor --fdatasync "$scratch" --size 4096 --rate "$fsync_rate" --duration "$duration" --json --hgrm "$out/floor-fdatasync-$1.hgrm") || true
  record floor fdatasync "$fsync_rate" "$j"
}

# One measured run; prints the load's JSON. Fails (status 1) if the daemon did not stop cleanly.
run_one() {  # mode rate
  local data=$scratch/data-$1-$2
  rm -rf "$data"
  # shellcheck disable=SC2086
  "$sluiced" --data-dir "$data" --listen 127.0.0.1:0 --text-listen "" --durability "$1" \
    ${DAEMON_ARGS:-} 2>"$out/sluiced-$1-$2.log" &
  daemon_pid=$!
  for _ in $(seq 1 300); do [[ -f $data/listening ]] && break; sleep 0.1; done
  local target
  target=$(awk '$1 == "binary" { print $2 }' "$data/listening")
  local j
  # shellcheck disable=SC2086
  local pin=()
  [[ -n ${LOAD_CPUS:-} ]] && pin=(taskset -c "$LOAD_CPUS")
  j=$("${pin[@]}" "$sluice" load --target "$target" --rate "$2" --duration "$duration" --warmup "$warmup" \
    --connections "$connections" --mix both --json --hgrm "$out/sluiced-$1-$2.hgrm" ${LOAD_ARGS:-}) || true
  "$sluice" stat "$data" --once --json >"$out/stat-$1-$2.json" 2>/dev/null || true
  stop_daemon || { echo "run_e2e.sh: sluiced ($1, $2/s) did not stop cleanly" >&2; return 1; }
  rm -rf "$data"
  echo "$j"
}

sustained() {  # json target
  python3 - "$1" "$2" <<'EOF'
import json, sys
try:
    r = json.loads(sys.argv[1])
except Exception:
    sys.exit(1)
ok = r.get("missing", 1) == 0 and r["decided"] == r["sent"] and \
     r["rate_achieved"] >= 0.99 * float(sys.argv[2]) and r["latency_ns"]["p999"] < 50_000_000
sys.exit(0 if ok else 1)
EOF
}

wait_for_idle "${WAIT_FOR_IDLE:-0}" 5
echo "== sluiced end to end: commit $commit, $(nproc) CPUs, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "modes: $modes; rates: $rates; duration ${duration}s after ${warmup}s warm-up; $connections connections; daemon: ${DAEMON_ARGS:-defaults}; load on CPUs ${LOAD_CPUS:-any}" | tee -a "$out/machine.txt"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
floors before
for mode in $modes; do
  for rate in $rates; do
    j=$(run_one "$mode" "$rate")
    record load "$mode" "$rate" "$j"
    echo "$mode $rate/s: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); l=r["latency_ns"]; print(f"achieved {r["rate_achieved"]:.0f}/s decided {r["decided"]}/{r["sent"]} p50 {l["p50"]/1e3:.1f}us p99 {l["p99"]/1e3:.1f}us p99.9 {l["p999"]/1e3:.1f}us")' "$j" 2>/dev/null || echo "$j")"
  done
done
for mode in $max_modes; do
  best=0
  for rate in $max_rates; do
    j=$(run_one "$mode" "$rate")
    record max "$mode" "$rate" "$j"
    if sustained "$j" "$rate"; then best=$rate; echo "$mode $rate/s: sustained"; else echo "$mode $rate/s: not sustained"; break; fi
  done
  record best "$mode" "$best" '{}'
done
floors after
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"

python3 perf/summarize_e2e.py "$out" "$commit"

if command -v gnuplot >/dev/null 2>&1; then
  for mode in $modes; do
    plot="set terminal pngcairo size 1000,600; set output '$out/latency-$mode.png';"
    plot+=" set title 'sluiced, durability $mode: latency by percentile (intended send to DECISION)';"
    plot+=" set logscale x; set logscale y; set xlabel 'percentile'; set ylabel 'latency (us)'; set grid;"
    plot+=" set xtics ('50%%' 2, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000, '99.999%%' 100000);"
    plot+=" plot"
    sep=""
    for rate in $rates; do
      plot+="$sep '$out/sluiced-$mode-$rate.hgrm' using 4:1 with lines lw 2 title '$rate/s'"
      sep=","
    done
    plot+=", '$out/floor-blocking-before.hgrm' using 4:1 with lines dt 2 title 'loopback floor (blocking)'"
    plot+=", '$out/floor-spin-before.hgrm' using 4:1 with lines dt 3 title 'loopback floor (polling)'"
    [[ $mode == sync ]] && plot+=", '$out/floor-fdatasync-before.hgrm' using 4:1 with lines dt 4 title 'disk fdatasync'"
    # .hgrm files hold a header and footer gnuplot skips as non-numeric; values are us.
    gnuplot -e "$plot" 2>/dev/null || echo "run_e2e.sh: gnuplot failed for $mode" >&2
  done
  echo "plots: $out/latency-*.png"
else
  echo "run_e2e.sh: gnuplot not installed (apt-get install gnuplot-nox): no plots" >&2
fi
echo "results: $out"
