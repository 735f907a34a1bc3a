#!/usr/bin/env bash
# Runs the journal benchmarks the way perf/RESULTS.md reports them, from the repo root.
#
#   perf/run_journal_bench.sh [BUILD_DIR]
#
# 1. waits until no ring_buffer_bench is running (polls every 30 s: the two must not share this
#    2-CPU machine) and, with WAIT_FOR_IDLE=<seconds>, for the CPUs to be idle;
# 2. prints the placement-independent facts: CPU, kernel, the scratch directory's filesystem and
#    disk (df -T, findmnt, lsblk);
# 3. runs bench/journal_bench with REPETITIONS repetitions and random interleaving; the JSON
#    (every repetition, not only aggregates) goes to perf/results/journal_bench-<UTC date>-<commit>.json;
# 4. prints a markdown summary (median and min-max over the repetitions, ratios to the baselines,
#    the targets) and saves it next to the JSON as .md.
# perf/summarize_bench.py is specific to ring_buffer_bench (topologies, core placement), so the
# journal summary is the small Python program at the end of this script (on perf/bench_runs.py,
# which it shares with perf/summarize_network_bench.py).
#
# Environment: BUILD_DIR (default build/release; the argument wins), REPETITIONS (5),
# BENCH_FILTER (a --benchmark_filter regex), OUT_DIR (perf/results), JOURNAL_BENCH_DIR (scratch
# directory, default build/bench-journal-tmp: it must be on the filesystem being measured, and is
# removed afterwards), WAIT_FOR_IDLE (seconds to wait for 10 idle seconds; default 0).
# The binary must already be built:
#   cmake --preset release && cmake --build --preset release --target journal_bench
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source perf/lib.sh

build_dir=${1:-${BUILD_DIR:-build/release}}
bin=$build_dir/bench/journal_bench
reps=${REPETITIONS:-5}
out_dir=${OUT_DIR:-perf/results}
scratch=${JOURNAL_BENCH_DIR:-build/bench-journal-tmp}

if [[ ! -x $bin ]]; then
  echo "run_journal_bench.sh: $bin not found; build it with:" \
    "cmake --build --preset release --target journal_bench" >&2
  exit 1
fi

# Read-only git queries: the short commit, marked -dirty when the tree differs from it.
commit=$(commit_tag)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out_dir" "$scratch"
scratch=$(cd "$scratch" && pwd)
base=$out_dir/journal_bench-$stamp-$commit
json=$base.json
trap 'rm -rf "$scratch"' EXIT


while pgrep -f ring_buffer_bench >/dev/null; do
  echo "ring_buffer_bench is running; waiting 30 s" >&2
  sleep 30
done
wait_for_idle "${WAIT_FOR_IDLE:-0}" 5

# Placement-independent facts.
{
  echo "### journal_bench environment"
  echo
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) vCPUs"
  echo "- kernel: $(uname -r); compiler: $(g++ --version | head -1)"
  echo "- commit: $commit"
  echo "- scratch directory: $scratch"
  echo
  echo '```'
  df -T "$scratch"
  echo
  findmnt -no SOURCE,FSTYPE,OPTIONS -T "$scratch" 2>/dev/null || true
  dev=$(df --output=source "$scratch" | tail -1)
  lsblk -o NAME,TYPE,SIZE,ROTA,MODEL,SCHED "$dev" 2>/dev/null || true
  echo '```'
  echo
} | tee "$base.env.md"

busy=$(busy_pct)
echo "machine busy before the run: ${busy}% of CPU time"
if ((busy > 10)); then
  echo "WARNING: something else is using the CPUs; results will be noisy (see top)." >&2
fi

cmd=("$bin"
  --benchmark_repetitions="$reps"
  --benchmark_enable_random_interleaving=true
  --benchmark_display_aggregates_only=true
  --benchmark_out="$json"
  --benchmark_out_format=json)
if [[ -n ${BENCH_FILTER:-} ]]; then
  cmd+=(--benchmark_filter="$BENCH_FILTER")
fi
echo "+ JOURNAL_BENCH_DIR=$scratch ${cmd[*]}"
# Runs the benchmark and writes "<other processes' CPU seconds> <wall seconds>" to $base.cpu.
status=0
JOURNAL_BENCH_DIR=$scratch python3 - "$base.cpu" "${cmd[@]}" <<'PY' || status=$?
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
  echo "run_journal_bench.sh: journal_bench exited with status $status" >&2
  exit "$status"
fi

python3 - "$json" "$foreign_cpu" "$wall" <<'PY' | tee "$base.md" || status=$?
"""Markdown summary of a journal_bench JSON file (per-repetition data)."""
import sys

sys.path.insert(0, "perf")  # the script runs from the repo root
from bench_runs import Stats, load  # noqa: E402

foreign, wall = float(sys.argv[2]), float(sys.argv[3])

ORDER = ["JournalAppend/none/uring", "JournalAppend/none/pwrite", "PwriteBaseline",
         "JournalAppend/batch/uring", "JournalAppend/batch/pwrite",
         "JournalAppend/batch/uring/noprepare", "PwriteBaseline/fdatasync",
         "JournalAppend/none/uring/poll_each", "JournalAppend/none/pwrite/poll_each",
         "RecordEncode",
         "DurableLatency/batch/10k", "DurableLatency/sync/10k", "DurableLatency/sync/10k/zeroed",
         "DurableLatency/batch/100k", "DurableLatency/sync/100k",
         "DurableLatency/sync/100k/zeroed", "DurableLatency/batch/1M", "DurableLatency/sync/1M",
         "DurableLatency/sync/1M/noprepare",
         "RawFdatasync/fallocated", "RawFdatasync/overwrite",
         "JournalRead", "MemoryReadBaseline", "FreshMmapRead", "FreshMmapRead/populate",
         "RecordCrcScan"]
ctx, runs = load(sys.argv[1], ORDER)
stats = Stats(runs, digits=2)
vals, med, f, spread = stats.vals, stats.med, stats.f, stats.spread

def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b

def pct(r):
    return "-" if r is None else f"{100 * r:.0f}%"

reps = max((len(e["runs"]) + len(e["errors"]) for e in runs.values()), default=0)
print(f"### journal_bench: {ctx.get('date', '?')}")
print()
print(f"- {reps} repetitions, random interleaving; {ctx.get('num_cpus', '?')} CPUs; "
      f"kernel {ctx.get('kernel', '?')}; scratch filesystem {ctx.get('journal_filesystem', '?')}")
print(f"- record {ctx.get('record_bytes', '?')}; segment {int(ctx.get('segment_size', 0)) >> 20} MiB; "
      f"max_batch_bytes {int(ctx.get('max_batch_bytes', 0)) >> 10} KiB; "
      f"{ctx.get('io_uring', '')}")
ncpu = ctx.get("num_cpus", 2) or 2
share = 100.0 * foreign / (wall * ncpu) if wall else 0.0
noisy = "  **(disturbed: other work shared the CPUs)**" if share > 2.0 else ""
print(f"- other processes used {foreign:.1f} CPU-seconds during the {wall:.0f} s run "
      f"({share:.1f}% of the machine){noisy}")
print("- GB/s = 10^9 bytes/s of record bytes (96 per event); median and min–max over repetitions")

G = 1e-9
print()
print("**Append throughput** (timed: open() of a fresh journal, i.e. creation of the first "
      "segment, through flush(); rolls included)")
print()
print("| benchmark | GB/s median | GB/s min–max | M events/s | ÷ baseline | create ms | "
      "roll ms (prepared) | wait % | append ns/event |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
append_names = [n for n in runs if n.startswith(("JournalAppend", "PwriteBaseline", "RecordEncode"))]
for n in append_names:
    e = runs[n]
    if not e["runs"]:
        print(f"| {n} | ERROR: {e['errors'][0].get('error_message', '?')} | | | | | | | |")
        continue
    base = None
    if n.startswith("JournalAppend/none"):
        base = "PwriteBaseline"
    elif n.startswith("JournalAppend/batch"):
        base = "PwriteBaseline/fdatasync"
    r = ratio(med(n, "bytes_per_second"), med(base, "bytes_per_second")) if base else None
    extra = (f"{f(med(n, 'create_ms'))} | {f(med(n, 'roll_ms'))} ({f(med(n, 'prepared_rolls'), 1)}) | "
             f"{f(med(n, 'wait_pct'), 1)} | "
             f"{f(med(n, 'append_ns'), 1)}") if n.startswith("JournalAppend") else (
             f"- | - | - | {f(med(n, 'encode_ns'), 1)}" if n == "RecordEncode" else "- | - | - | -")
    print(f"| {n} | {f(med(n, 'bytes_per_second', G))} | {spread(n, 'bytes_per_second', G)} | "
          f"{f(med(n, 'items_per_second', 1e-6), 1)} | "
          f"{pct(r) + ' of ' + base if base else '-'} | {extra} |")

print()
print("**Durable latency** (open loop, from the intended send time to the observer seeing the "
      "event durable), µs; medians over repetitions, p99 and p99.9 also min–max")
print()
print("| benchmark | p50 | p99 | p99 min–max | p99.9 | p99.9 min–max | max (median / worst) | "
      "achieved/s | events/commit | producer lag p99 | rolls (prepared) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in runs:
    if not n.startswith(("DurableLatency", "RawFdatasync")):
        continue
    e = runs[n]
    if not e["runs"]:
        print(f"| {n} | ERROR: {e['errors'][0].get('error_message', '?')} | | | | | | | | | |")
        continue
    lat = n.startswith("DurableLatency")
    print(f"| {n} | {f(med(n, 'p50_us'), 0)} | {f(med(n, 'p99_us'), 0)} | "
          f"{spread(n, 'p99_us', d=0)} | {f(med(n, 'p999_us'), 0)} | {spread(n, 'p999_us', d=0)} | "
          f"{f(med(n, 'max_us'), 0)} / {f(max(vals(n, 'max_us')), 0)} | "
          f"{f(med(n, 'achieved_per_s'), 0) if lat else '-'} | "
          f"{f(med(n, 'events_per_commit'), 1) if lat else '-'} | "
          f"{f(med(n, 'lag_p99_us'), 0) if lat else '-'} | "
          f"{f(med(n, 'rolls'), 0) + ' (' + f(med(n, 'prepared_rolls'), 0) + ')' if lat else '-'} |")

print()
print("**Read / verify throughput** (page cache warm)")
print()
print("| benchmark | GB/s median | GB/s min–max | M events/s | ÷ MemoryReadBaseline | "
      "÷ FreshMmapRead | minor faults/pass |")
print("|---|---:|---:|---:|---:|---:|---:|")
for n in runs:
    if not n.startswith(("JournalRead", "MemoryReadBaseline", "FreshMmapRead", "RecordCrcScan")):
        continue
    e = runs[n]
    if not e["runs"]:
        print(f"| {n} | ERROR: {e['errors'][0].get('error_message', '?')} | | | | | |")
        continue
    bw = med(n, "bytes_per_second")
    print(f"| {n} | {f(bw * G)} | {spread(n, 'bytes_per_second', G)} | "
          f"{f(med(n, 'items_per_second', 1e-6), 1)} | "
          f"{pct(ratio(bw, med('MemoryReadBaseline', 'bytes_per_second')))} | "
          f"{pct(ratio(bw, med('FreshMmapRead', 'bytes_per_second')))} | {f(med(n, 'faults'), 0)} |")

print()
print("**Targets** (ratios of medians)")
print()
def target(label, a, b, need):
    r = ratio(med(a, "bytes_per_second"), med(b, "bytes_per_second"))
    verdict = "n/a" if r is None else ("MET" if r >= need else "MISSED")
    print(f"- {label}: {pct(r)} (need {need:.0%}) {verdict}")
target("JournalAppend/none/uring >= 80% of PwriteBaseline", "JournalAppend/none/uring",
       "PwriteBaseline", 0.8)
target("JournalAppend/none/pwrite >= 80% of PwriteBaseline", "JournalAppend/none/pwrite",
       "PwriteBaseline", 0.8)
target("JournalRead >= 50% of MemoryReadBaseline", "JournalRead", "MemoryReadBaseline", 0.5)

failed = [n for n, e in runs.items() if e["errors"]]
if failed:
    print()
    print("**Failed benchmarks:** " + "; ".join(
        f"{n}: {runs[n]['errors'][0].get('error_message', '?')}" for n in failed))
sys.exit(1 if failed else 0)
PY
echo
echo "results: $json (summary: $base.md, environment: $base.env.md)"
if ((status != 0)); then
  echo "run_journal_bench.sh: some benchmarks failed (see the summary)" >&2
fi
exit "$status"
