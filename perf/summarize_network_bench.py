#!/usr/bin/env python3
"""Markdown summary of a network_bench JSON file (per-repetition data).

    perf/summarize_network_bench.py RESULTS.json [COMMIT]

Medians and min-max over the repetitions; per repetition, the placement (the cache-line probe
before and after: near < 250 ns) and how much of the machine other processes used
(foreign_cpu_pct), with medians over the repetitions others disturbed least (< 5 %).
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_runs import Stats, load  # noqa: E402

commit = sys.argv[2] if len(sys.argv) > 2 else "?"

ORDER = ["Decode/frames", "Decode/inspect", "Decode/ingest", "Decode/text",
         "PingPong/echo_blocking", "PingPong/echo_busy_poll", "PingPong/uring_echo/default",
         "PingPong/uring_echo/coop_peek", "PingPong/uring_echo/coop_flag",
         "PingPong/uring_echo/defer_flag", "PingPong/uring_echo/defer_wait", "PingPong/sluice",
         "PingPong/sluice_park"]
for conns in ("1", "8"):
    ORDER += [f"Pipelined/{s}/{conns}" for s in ("echo_epoll", "sluice_trivial", "sluice",
                                                 "sluice_journal")]
ctx, runs = load(sys.argv[1], ORDER)
stats = Stats(runs, digits=1)
vals, med, f, spread = stats.vals, stats.med, stats.f, stats.spread

def quiet(name, key, scale=1.0, limit=5.0):
    """Median of `key` over the repetitions that others disturbed least (foreign % < limit)."""
    e = runs.get(name)
    v = [float(r[key]) * scale for r in e["runs"]
         if key in r and 0 <= r.get("foreign_cpu_pct", 100) < limit] if e else []
    return (statistics.median(v) if v else None), len(v)

def placement(name):
    """near / far / mixed counts from the cache-line probe around each repetition."""
    e = runs.get(name)
    if not e:
        return "-"
    near = far = mixed = 0
    for r in e["runs"]:
        a, b = r.get("cl_rtt_before_ns", -1), r.get("cl_rtt_after_ns", -1)
        if a < 0 or b < 0:
            continue
        if a < 250 and b < 250:
            near += 1
        elif a >= 250 and b >= 250:
            far += 1
        else:
            mixed += 1
    return f"{near}/{far}/{mixed}"

def foreign(name):
    return f(med(name, "foreign_cpu_pct"))

reps = max((len(e["runs"]) + len(e["errors"]) for e in runs.values()), default=0)
print(f"### network_bench: {ctx.get('date', '?')}, commit {commit}")
print()
print(f"- {reps} repetitions, random interleaving; {ctx.get('num_cpus', '?')} CPUs at "
      f"{ctx.get('mhz_per_cpu', '?')} MHz; client pinned to CPU 0, server thread to CPU 1")
print(f"- {ctx.get('io_uring', '')}")
print(f"- sluice server path: {ctx.get('sluice_path', '')}")
print("- placement n/f/m: repetitions whose cache-line probe before and after said near "
      "(< 250 ns) / far / one of each; foreign %: median share of the machine's CPU time used "
      "by other processes during a repetition")
print()

print("**Decode throughput** (one core), M frames/s")
print()
print("| benchmark | median | min–max |")
print("|---|---:|---:|")
for n in runs:
    if n.startswith("Decode/"):
        print(f"| {n} | {f(med(n, 'items_per_second', 1e-6))} | "
              f"{spread(n, 'items_per_second', 1e-6)} |")

print()
print("**Loopback round trip** (44-byte TRANSACTION out, 28-byte DECISION back), µs; medians "
      "over repetitions of each repetition's percentiles")
print()
print("| benchmark | p50 | p50 min–max | p99 | p99.9 | max (median) | p50 ÷ echo_blocking | "
      "p50, foreign < 5 % (n) | placement n/f/m | foreign % |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
floor = med("PingPong/echo_blocking", "rtt_p50_ns")
for n in runs:
    if not n.startswith("PingPong/"):
        continue
    e = runs[n]
    if not e["runs"]:
        print(f"| {n} | ERROR: {e['errors'][0].get('error_message', '?')} | | | | | | | | |")
        continue
    p50 = med(n, "rtt_p50_ns")
    qp50, qn = quiet(n, "rtt_p50_ns", 1e-3)
    ratio = "-" if floor is None or p50 is None else f"{p50 / floor:.2f}"
    print(f"| {n} | {f(None if p50 is None else p50 / 1e3)} | "
          f"{spread(n, 'rtt_p50_ns', 1e-3)} | {f(med(n, 'rtt_p99_ns', 1e-3))} | "
          f"{f(med(n, 'rtt_p999_ns', 1e-3))} | {f(med(n, 'rtt_max_ns', 1e-3), 0)} | {ratio} | "
          f"{f(qp50)} ({qn}) | {placement(n)} | {foreign(n)} |")

print()
print("**Pipelined throughput** (every decision received), M events/s")
print()
print("| benchmark | median | min–max | ÷ echo_epoll (same connections) | median, foreign < 5 % "
      "(n) | placement n/f/m | foreign % |")
print("|---|---:|---:|---:|---:|---:|---:|")
for n in runs:
    if not n.startswith("Pipelined/"):
        continue
    e = runs[n]
    if not e["runs"]:
        print(f"| {n} | ERROR: {e['errors'][0].get('error_message', '?')} | | | | | |")
        continue
    conns = n.split("/")[-1]
    q, qn = quiet(n, "items_per_second", 1e-6)
    base = med(f"Pipelined/echo_epoll/{conns}", "items_per_second")
    m = med(n, "items_per_second")
    ratio = "-" if base is None or m is None or n.startswith("Pipelined/echo") else f"{m / base:.2f}"
    print(f"| {n} | {f(m * 1e-6, 2)} | {spread(n, 'items_per_second', 1e-6, 2)} | {ratio} | "
          f"{f(q, 2)} ({qn}) | {placement(n)} | {foreign(n)} |")

print()
print("**Targets**")
print()
p50 = med("PingPong/sluice", "rtt_p50_ns")
if p50 is not None and floor is not None:
    r = p50 / floor
    print(f"- PingPong/sluice p50 <= 1.2x PingPong/echo_blocking p50: {p50/1e3:.1f} vs "
          f"{floor/1e3:.1f} us = {r:.2f}x {'MET' if r <= 1.2 else 'MISSED'}")
    q, qn = quiet("PingPong/sluice", "rtt_p50_ns")
    qf, qfn = quiet("PingPong/echo_blocking", "rtt_p50_ns")
    if q is not None and qf is not None:
        print(f"  (repetitions with foreign < 5 %: {q/1e3:.1f} (n={qn}) vs {qf/1e3:.1f} us "
              f"(n={qfn}) = {q/qf:.2f}x)")
for conns in ("1", "8"):
    m = med(f"Pipelined/sluice/{conns}", "items_per_second")
    if m is not None:
        q, qn = quiet(f"Pipelined/sluice/{conns}", "items_per_second")
        quiet_note = f" (foreign < 5 %: {q/1e6:.2f} M/s, n={qn})" if q is not None else ""
        print(f"- Pipelined/sluice/{conns} >= 1M events/s: {m/1e6:.2f} M/s "
              f"{'MET' if m >= 1e6 else 'MISSED'}{quiet_note}")

failed = [n for n, e in runs.items() if e["errors"]]
if failed:
    print()
    print("**Failed benchmarks:** " + "; ".join(
        f"{n}: {runs[n]['errors'][0].get('error_message', '?')}" for n in failed))
