#!/usr/bin/env python3
"""Summarizes a ring_buffer_bench JSON file (Google Benchmark, per-repetition data) as markdown.

Usage:
  perf/summarize_bench.py RESULTS.json [MORE.json ...] [--probe-before PROBE.json]
                          [--probe-after PROBE.json] [--busy-before PCT]
                          [--foreign-cpu SECONDS --wall SECONDS]

Several RESULTS files (runs of the same binary) are pooled: their repetitions are summarized
together, which on a shared machine collects enough undisturbed near and far repetitions.

Benchmarks are named Topology/impl/payload[/yield]. Every repetition of every benchmark carries
the counters cl_rtt_before_ns / cl_rtt_after_ns (a cache-line round trip between the two CPUs
measured just before and just after it) and foreign_cpu_pct (the share of the machine's CPU
time that went to other processes or the hypervisor meanwhile). This host places its two vCPUs
"near" (round trip ~60-130 ns) or "far" (~360-510 ns) and changes that while a run is in
progress, and other work may share the two CPUs. So each repetition is classified: disturbed
(foreign_cpu_pct above --max-foreign, default 5%), else near, far or mixed (the two probes
disagree). The tables give the median over all repetitions and over the undisturbed near and
undisturbed far ones separately.

Prints:
  - throughput benchmarks: median / min / max of items_per_second (M items/s) over all
    repetitions, the near-only and far-only medians, and for sluice rows the ratio of medians to
    the boost queue of that topology (boost_spsc for OneToOne, boost_queue for ThreeToOne) and
    to the best non-sluice peer;
  - PingPong: medians of the rtt_p50_ns / rtt_p99_ns / rtt_p999_ns counters, the p50 near / far,
    and p50 ratios to raw_cacheline, boost_spsc and the best peer (lower is better);
  - the placement verdicts of the probe runs before and after (run_bench.sh) and the mix of
    placements during the run;
  - which of the sluice performance targets were met, overall and per placement.
Only the standard library is used. Exit status 1 if any benchmark reported an error.
"""

import argparse
import json
import statistics
import sys
from collections import OrderedDict

NEAR_MAX_NS = 250.0  # cache-line round trip p50 at or below this: near
FAR_MIN_NS = 350.0   # at or above this: far; in between: unclear

PROBE = "PingPong/raw_cacheline/8B"
TOPOLOGIES = ["OneToOne", "ThreeToOne", "OneToThreePipeline", "OneToThreeMulticast",
              "OneToThreeDiamond", "PingPong"]
IMPLS = ["sluice", "sluice_batch64", "raw_cacheline", "boost_spsc", "boost_queue",
         "moodycamel_rwq", "moodycamel_cq", "mutex_deque"]
GROUPS = ("all", "near", "far")
MIN_GROUP = 3  # repetitions a near / far median needs before ratios and targets use it


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def base_name(name):
    for suffix in ("/manual_time", "/real_time"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def split_name(name):
    """Topology/impl/payload[/yield] -> (topology, impl, payload[/yield])."""
    parts = name.split("/")
    return parts[0], (parts[1] if len(parts) > 1 else ""), "/".join(parts[2:])


def sort_key(name):
    topo, impl, rest = split_name(name)
    payload = rest.split("/")[0]
    size = int(payload[:-1]) if payload[:-1].isdigit() else 0
    return (TOPOLOGIES.index(topo) if topo in TOPOLOGIES else len(TOPOLOGIES), topo, size, rest,
            IMPLS.index(impl) if impl in IMPLS else len(IMPLS), impl)


def classify(ns):
    if ns is None or ns < 0:
        return "unknown"
    if ns <= NEAR_MAX_NS:
        return "near"
    if ns >= FAR_MIN_NS:
        return "far"
    return "unclear"


MAX_FOREIGN_PCT = 5.0


def run_placement(run):
    """near / far / mixed / unclear / unknown, or "disturbed" if other work shared the CPUs."""
    if run.get("foreign_cpu_pct", 0.0) > MAX_FOREIGN_PCT:
        return "disturbed"
    before = classify(run.get("cl_rtt_before_ns"))
    after = classify(run.get("cl_rtt_after_ns"))
    if before == after:
        return before
    return "mixed"


def collect(*docs):
    """name -> {"runs": [per-repetition dicts], "errors": [messages]}, in canonical order."""
    out = {}
    for b in (b for doc in docs for b in doc.get("benchmarks", [])):
        if b.get("run_type") == "aggregate":
            continue
        name = base_name(b.get("run_name", b["name"]))
        entry = out.setdefault(name, {"runs": [], "errors": []})
        if b.get("error_occurred"):
            entry["errors"].append(b.get("error_message", "error"))
        else:
            entry["runs"].append(b)
    return OrderedDict(sorted(out.items(), key=lambda kv: sort_key(kv[0])))


def values(entry, key, group="all"):
    return [float(r[key]) for r in entry["runs"]
            if key in r and (group == "all" or run_placement(r) == group)]


def median(xs):
    return statistics.median(xs) if xs else None


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}x"


def fmt_ratios(rs):
    """{'all': r, 'near': r, 'far': r} -> 'all (near / far)'."""
    if all(rs[g] is None for g in GROUPS):
        return "-"
    return f"{fmt_ratio(rs['all'])} ({fmt_ratio(rs['near'])} / {fmt_ratio(rs['far'])})"


def is_latency(name):
    return name.startswith("PingPong/")


def is_sluice(impl):
    return impl.startswith("sluice")


def probe_p50(path):
    if not path:
        return None
    try:
        entry = collect(load(path)).get(PROBE)
    except (OSError, ValueError) as e:
        print(f"warning: cannot read probe {path}: {e}", file=sys.stderr)
        return None
    return median(values(entry, "rtt_p50_ns")) if entry else None


def main():
    global MAX_FOREIGN_PCT
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+")
    ap.add_argument("--probe-before")
    ap.add_argument("--probe-after")
    ap.add_argument("--busy-before", type=float, help="%% of the CPUs busy just before the run")
    ap.add_argument("--foreign-cpu", type=float,
                    help="CPU-seconds other processes used during the run")
    ap.add_argument("--wall", type=float, help="wall-clock seconds of the run")
    ap.add_argument("--max-foreign", type=float, default=MAX_FOREIGN_PCT,
                    help="a repetition during which other work used more than this %% of the "
                         "CPU time is disturbed (default %(default)s)")
    args = ap.parse_args()
    MAX_FOREIGN_PCT = args.max_foreign

    docs = [load(path) for path in args.results]
    ctx = docs[0].get("context", {})
    runs = collect(*docs)

    # Medians per benchmark and placement group: items/s, and the ping-pong p50. Ratios and
    # targets use a near or far median only when at least MIN_GROUP repetitions make it.
    def group_median(xs, g):
        return median(xs) if g == "all" or len(xs) >= MIN_GROUP else None

    ips = {g: {} for g in GROUPS}
    p50 = {g: {} for g in GROUPS}
    for name, e in runs.items():
        for g in GROUPS:
            ips[g][name] = group_median(values(e, "items_per_second", g), g)
            if is_latency(name):
                p50[g][name] = group_median(values(e, "rtt_p50_ns", g), g)

    def peers(name, table):
        """Medians of the non-sluice implementations of the same topology and payload."""
        topo, _, rest = split_name(name)
        return {split_name(o)[1]: v for o, v in table.items()
                if v is not None and split_name(o)[0] == topo and split_name(o)[2] == rest
                and not is_sluice(split_name(o)[1]) and split_name(o)[1] != "raw_cacheline"}

    def table_all(table):
        return ips["all"] if table in ips.values() else p50["all"]

    def vs_boost(name, table):
        ps = peers(name, table)
        return ratio(table.get(name), ps.get("boost_spsc", ps.get("boost_queue")))

    def vs_best(name, table, lower_is_better=False):
        ps = peers(name, table)
        if not ps:
            return None, None
        if set(ps) != set(peers(name, table_all(table))):
            return None, None  # a peer lacks enough repetitions in this group: no "best" to name
        pick = min if lower_is_better else max
        best_name, best = pick(ps.items(), key=lambda kv: kv[1])
        return ratio(table.get(name), best), best_name

    # Header.
    reps = max((len(e["runs"]) + len(e["errors"]) for e in runs.values()), default=0)
    dates = ", ".join(d.get("context", {}).get("date", "?") for d in docs)
    print(f"### ring_buffer_bench: {dates}")
    print()
    pooled = f" pooled from {len(docs)} runs" if len(docs) > 1 else ""
    print(f"- `{ctx.get('executable', '?')}` on {ctx.get('num_cpus', '?')} CPUs, {reps} repetitions"
          f"{pooled} (random interleaving), clock: {ctx.get('clock', '?')}")
    print(f"- capacity {ctx.get('ring_capacity', '?')} slots everywhere; items per iteration "
          f"{ctx.get('items_per_iteration', '?')} (ThreeToOne "
          f"{ctx.get('three_to_one_items_per_iteration', '?')}); ping-pong round trips per iteration "
          f"{ctx.get('round_trips_per_iteration', '?')}")
    la = ctx.get("load_avg")
    if la:
        busy = (f"; CPUs busy in the second before: {args.busy_before:.0f}%"
                if args.busy_before is not None else "")
        print(f"- load average at start: {', '.join(f'{x:.2f}' for x in la)}{busy}")
    if args.foreign_cpu is not None and args.wall:
        ncpu = ctx.get("num_cpus", 2) or 2
        share = 100.0 * args.foreign_cpu / (args.wall * ncpu)
        noisy = "  **(disturbed: other work shared the CPUs)**" if share > 2.0 else ""
        print(f"- other processes used {args.foreign_cpu:.1f} CPU-seconds during the "
              f"{args.wall:.0f} s run ({share:.1f}% of the machine){noisy}")

    # Placement.
    counts = {}
    for e in runs.values():
        for r in e["runs"]:
            k = run_placement(r)
            counts[k] = counts.get(k, 0) + 1
    before, after = probe_p50(args.probe_before), probe_p50(args.probe_after)
    print()
    print(f"**Conditions** (placement by the cache-line round trip p50: near <= {NEAR_MAX_NS:.0f} ns, "
          f"far >= {FAR_MIN_NS:.0f} ns)")
    print()
    if args.probe_before or args.probe_after:
        print(f"- probe before the run: {fmt(before, 0)} ns -> {classify(before)}; "
              f"after: {fmt(after, 0)} ns -> {classify(after)}")
    if counts:
        print(f"- repetitions by conditions (disturbed: other work took more than "
              f"{MAX_FOREIGN_PCT:g}% of the CPU time; else placement by the probes just before "
              "and after each): " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    raw = values(runs.get(PROBE, {"runs": []}), "rtt_p50_ns")
    if raw:
        print(f"- PingPong/raw_cacheline p50 over its repetitions: {fmt(min(raw), 0)}-"
              f"{fmt(max(raw), 0)} ns")

    # Throughput.
    print()
    print("**Throughput**, M items/s (median/min/max over all repetitions; near / far: medians "
          "of the undisturbed repetitions that ran entirely under that placement, n = count); "
          f"ratios are of medians: all (near / far; a near or far ratio needs n >= {MIN_GROUP} "
          "on both sides)")
    print()
    print("| benchmark | median | min | max | near (n) | far (n) | sluice ÷ boost | "
          "sluice ÷ best peer |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, e in runs.items():
        if is_latency(name):
            continue
        if not e["runs"]:
            print(f"| {name} | ERROR: {e['errors'][0]} | | | | | | |")
            continue
        m = [v / 1e6 for v in values(e, "items_per_second")]
        near = values(e, "items_per_second", "near")
        far = values(e, "items_per_second", "far")
        r_boost = r_best = "-"
        if is_sluice(split_name(name)[1]):
            r_boost = fmt_ratios({g: vs_boost(name, ips[g]) for g in GROUPS})
            best = {g: vs_best(name, ips[g]) for g in GROUPS}
            if best["all"][1]:
                r_best = (fmt_ratios({g: best[g][0] for g in GROUPS}) + f" {best['all'][1]}")
        failed = f" ({len(e['errors'])} failed)" if e["errors"] else ""
        print(f"| {name}{failed} | {fmt(median(m))} | {fmt(min(m))} | {fmt(max(m))} | "
              f"{fmt(None if not near else median(near) / 1e6)} ({len(near)}) | "
              f"{fmt(None if not far else median(far) / 1e6)} ({len(far)}) | {r_boost} | {r_best} |")

    # Latency.
    print()
    print("**PingPong round trip**, ns (medians over repetitions of each repetition's percentile); "
          f"ratios of p50 medians, lower is better: all (near / far, n >= {MIN_GROUP})")
    print()
    print("| benchmark | p50 | p99 | p99.9 | p50 near (n) | p50 far (n) | ÷ raw_cacheline | "
          "÷ boost_spsc | ÷ best peer |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, e in runs.items():
        if not is_latency(name):
            continue
        if not e["runs"]:
            print(f"| {name} | ERROR: {e['errors'][0]} | | | | | | | |")
            continue
        impl = split_name(name)[1]
        near = values(e, "rtt_p50_ns", "near")
        far = values(e, "rtt_p50_ns", "far")
        r_raw = "-"
        if impl != "raw_cacheline":
            r_raw = fmt_ratios({g: ratio(p50[g][name], p50[g].get(PROBE)) for g in GROUPS})
        r_boost = r_best = "-"
        if is_sluice(impl):
            r_boost = fmt_ratios({g: ratio(p50[g][name], peers(name, p50[g]).get("boost_spsc"))
                                  for g in GROUPS})
            best = {g: vs_best(name, p50[g], lower_is_better=True) for g in GROUPS}
            if best["all"][1]:
                r_best = fmt_ratios({g: best[g][0] for g in GROUPS}) + f" {best['all'][1]}"
        failed = f" ({len(e['errors'])} failed)" if e["errors"] else ""
        print(f"| {name}{failed} | {fmt(p50['all'][name], 0)} | "
              f"{fmt(median(values(e, 'rtt_p99_ns')), 0)} | "
              f"{fmt(median(values(e, 'rtt_p999_ns')), 0)} | "
              f"{fmt(median(near), 0)} ({len(near)}) | {fmt(median(far), 0)} ({len(far)}) | "
              f"{r_raw} | {r_boost} | {r_best} |")

    # Targets, overall and per placement.
    print()
    print("**Targets** (all repetitions; undisturbed near; undisturbed far)")
    print()

    def verdicts(test):
        out = []
        for g in GROUPS:
            value, ok = test(g)
            if ok is None:
                out.append(f"{g} n/a" + (f" (fewer than {MIN_GROUP} undisturbed repetitions)"
                                         if g != "all" else ""))
            else:
                out.append(f"{g} {value} {'MET' if ok else 'MISSED'}")
        return "; ".join(out)

    one = "OneToOne/sluice/8B"

    def t_boost(g):
        r = vs_boost(one, ips[g])
        return fmt_ratio(r), None if r is None else r >= 2.0

    def t_best(g):
        r, who = vs_best(one, ips[g])
        return (f"{fmt_ratio(r)} (vs {who})" if who else "-"), None if r is None else r >= 1.5

    def t_batch(g):
        v = ips[g].get("OneToOne/sluice_batch64/8B")
        return f"{fmt(None if v is None else v / 1e6)} M/s", None if v is None else v > 500e6

    pp = "PingPong/sluice/8B"

    def t_raw(g):
        r = ratio(p50[g].get(pp), p50[g].get(PROBE))
        return f"{fmt(p50[g].get(pp), 0)}/{fmt(p50[g].get(PROBE), 0)} ns = {fmt_ratio(r)}", \
            None if r is None else r <= 1.2

    def t_peers(g):
        r, who = vs_best(pp, p50[g], lower_is_better=True)
        return (f"{fmt_ratio(r)} of {who}" if who else "-"), None if r is None else r <= 1.0

    print(f"- OneToOne/sluice/8B >= 2x boost_spsc: {verdicts(t_boost)}")
    print(f"- OneToOne/sluice/8B >= 1.5x best peer: {verdicts(t_best)}")
    print(f"- OneToOne/sluice_batch64/8B > 500 M items/s: {verdicts(t_batch)}")
    print(f"- PingPong/sluice/8B p50 <= 1.2x raw_cacheline: {verdicts(t_raw)}")
    print(f"- PingPong/sluice/8B p50 not above any peer's: {verdicts(t_peers)}")

    failed = [n for n, e in runs.items() if e["errors"]]
    if failed:
        print()
        print("**Failed benchmarks:** " + "; ".join(f"{n}: {runs[n]['errors'][0]}" for n in failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
