#!/usr/bin/env bash
# Measures `sluice load` against the fake daemon (perf/fake_sluiced: answers at once) beside the
# kernel's loopback floor (`sluice floor`), in one run, from the repo root.
#
#   perf/run_load_floor.sh [BUILD_DIR]
#
# What it shows: the generator's own latency and ceiling, i.e. what `sluice load` adds on top
# of a loopback round trip, so daemon results can be read against both. It is not a daemon
# benchmark: the fake decides nothing.
#
# For each repetition (REPETITIONS, default 3) it runs, in this order:
#   sluice floor --rate FLOOR_RATE (blocking sockets), sluice floor --spin (both ends poll),
#   then for each rate in RATES: sluice load --rate R against a fresh fake_sluiced.
# Every run prints one JSON line; they are collected (with tool, rate, repetition) into
# perf/results/load_floor-<UTC date>-<commit>.jsonl, and a markdown table of medians with
# min-max over the repetitions is printed and saved next to it as .md.
#
# Environment: BUILD_DIR (default build/release; the argument wins), RATES ("10000 100000
# 500000"), DURATION (5 s), WARMUP (1 s), CONNECTIONS (2), FLOOR_RATE (10000), REPETITIONS (3),
# OUT_DIR (perf/results), WAIT_FOR_IDLE (seconds to wait for the machine to go idle; 0). The
# binaries must already be built:
#   cmake --build --preset release --target sluice fake_sluiced
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source perf/lib.sh

build_dir=${1:-${BUILD_DIR:-build/release}}
sluice=$build_dir/tools/sluice
fake=$build_dir/perf/fake_sluiced
rates=${RATES:-10000 100000 500000}
duration=${DURATION:-5}
warmup=${WARMUP:-1}
connections=${CONNECTIONS:-2}
floor_rate=${FLOOR_RATE:-10000}
reps=${REPETITIONS:-3}
out_dir=${OUT_DIR:-perf/results}

for bin in "$sluice" "$fake"; do
  if [[ ! -x $bin ]]; then
    echo "run_load_floor.sh: $bin not found; build it with:" \
      "cmake --build --preset release --target sluice fake_sluiced" >&2
    exit 1
  fi
done

commit=$(commit_tag)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out_dir"
base=$out_dir/load_floor-$stamp-$commit
jsonl=$base.jsonl
: >"$jsonl"

fake_pid=
stop_fake() {
  if [[ -n $fake_pid ]]; then
    kill "$fake_pid" 2>/dev/null || true
    wait "$fake_pid" 2>/dev/null || true
    fake_pid=
  fi
}
trap stop_fake EXIT

# Appends one tool's JSON line, tagged, to the results file.
record() {  # tool rate rep json
  printf '{"tool":"%s","rate":%s,"rep":%s,"result":%s}\n' "$1" "$2" "$3" "$4" >>"$jsonl"
}


wait_for_idle "${WAIT_FOR_IDLE:-0}" 9  # under 10 %

echo "== load vs floor: commit $commit, $(nproc) CPUs, $(uname -r)"
grep -m1 'model name' /proc/cpuinfo || true
echo "rates: $rates; duration ${duration}s after ${warmup}s warm-up; $connections connections;" \
  "$reps repetitions"
# Other work on this shared machine disturbs every figure: say how busy it was.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average before: $load_before"

for rep in $(seq 1 "$reps"); do
  echo "-- repetition $rep"
  out=$("$sluice" floor --rate "$floor_rate" --duration "$duration" --warmup "$warmup" --json) ||
    echo "floor failed (exit $?)" >&2
  record floor "$floor_rate" "$rep" "$out"
  out=$("$sluice" floor --spin --rate "$floor_rate" --duration "$duration" --warmup "$warmup" \
    --json) || echo "floor --spin failed (exit $?)" >&2
  record floor_spin "$floor_rate" "$rep" "$out"
  for rate in $rates; do
    coproc FAKE { exec "$fake"; }
    fake_pid=$FAKE_PID
    read -r _ port <&"${FAKE[0]}"
    out=$("$sluice" load --target "127.0.0.1:$port" --rate "$rate" --duration "$duration" \
      --warmup "$warmup" --connections "$connections" --json) ||
      echo "load at $rate/s: exit $? (see its JSON)" >&2
    record load "$rate" "$rep" "$out"
    stop_fake
  done
done

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average after: $load_after"

LOAD_BEFORE=$load_before LOAD_AFTER=$load_after COMMIT=$commit python3 - "$jsonl" "$base.md" <<'EOF'
import json, os, statistics, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
groups = {}
for r in rows:
    groups.setdefault((r["tool"], r["rate"]), []).append(r["result"])

def cell(values, scale=1000.0, digits=1):
    values = [v / scale for v in values]
    med = statistics.median(values)
    return f"{med:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"

lines = [
    "| run | rate/s | achieved/s | decided/sent | p50 us | p90 us | p99 us | p99.9 us | max us |",
    "|---|---|---|---|---|---|---|---|---|",
]
order = sorted(groups, key=lambda k: ({"floor": 0, "floor_spin": 1}.get(k[0], 2), k[1]))
for tool, rate in order:
    results = groups[(tool, rate)]
    lat = lambda key: [r["latency_ns"][key] for r in results]
    name = {"floor": "floor (blocking)", "floor_spin": "floor (spin)"}.get(tool, "load vs fake")
    decided = sum(r["decided"] for r in results)
    sent = sum(r["sent"] for r in results)
    lines.append(
        f"| {name} | {rate} | {cell([r['rate_achieved'] for r in results], 1, 0)} | "
        f"{decided}/{sent} | {cell(lat('p50'))} | {cell(lat('p90'))} | {cell(lat('p99'))} | "
        f"{cell(lat('p999'))} | {cell(lat('max'))} |")
text = "\n".join(lines) + (
    "\n\nmedian [min-max] over %d repetitions; commit %s; load average before %s, after %s\n"
    % (max(len(v) for v in groups.values()), os.environ["COMMIT"], os.environ["LOAD_BEFORE"],
       os.environ["LOAD_AFTER"]))
print(text)
open(sys.argv[2], "w").write(text)
EOF
echo "results: $jsonl, $base.md"
