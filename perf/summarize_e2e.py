#!/usr/bin/env python3
"""Summarizes a perf/run_e2e.sh result directory into summary.md (and prints it).

    perf/summarize_e2e.py RESULT_DIR [COMMIT]

Reads RESULT_DIR/results.jsonl (one JSON line a run: the floors, each `sluice load` run, the
highest-rate search) and RESULT_DIR/stat-<mode>-<rate>.json (the daemon's own view after each
run). The table gives, per run, the client's latency (intended send time to DECISION, from
`sluice load`) and the daemon's own ingest-to-decision percentiles (receive completion to the
DECISION queued for sending), so what the daemon adds can be told from what the harness and the
kernel add. The targets of issue 7 are checked at the end.
"""
import json
import os
import statistics
import sys


def us(v):
    return f"{v / 1000:.1f}"


def result_of(row):
    r = row["result"]
    return r if isinstance(r, dict) and "latency_ns" in r else None


def main():
    out_dir = sys.argv[1]
    commit = sys.argv[2] if len(sys.argv) > 2 else os.path.basename(out_dir).split("-")[-1]
    rows = [json.loads(l) for l in open(os.path.join(out_dir, "results.jsonl")) if l.strip()]

    floors = {}
    for r in rows:
        if r["kind"] == "floor" and result_of(r):
            floors.setdefault(r["mode"], []).append(result_of(r))

    def floor_p(mode, key):
        vals = [f["latency_ns"][key] for f in floors.get(mode, [])]
        return statistics.median(vals) if vals else None

    def daemon_view(mode, rate):
        path = os.path.join(out_dir, f"stat-{mode}-{rate}.json")
        try:
            return json.load(open(path))["latency_ns"]["ingest_to_decision"]
        except (OSError, ValueError, KeyError):
            return None

    lines = [
        f"Commit `{commit}`. Client: intended send time to DECISION (`sluice load`); daemon: "
        "receive to DECISION queued (`ingest_to_decision` in the stats file).",
        "",
        "| run | target/s | achieved/s | decided/sent | p50 us | p90 us | p99 us | p99.9 us | "
        "p99.99 us | max us | daemon p50 / p99 / p99.9 us |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    names = {"blocking": "floor: loopback echo, blocking", "spin": "floor: loopback echo, polling",
             "fdatasync": "floor: disk, 4 KiB pwrite + fdatasync"}
    for mode in ("blocking", "spin", "fdatasync"):
        for f in floors.get(mode, []):
            l = f["latency_ns"]
            lines.append(
                f"| {names[mode]} | {f['rate_target']:.0f} | {f['rate_achieved']:.0f} | "
                f"{f['decided']}/{f['sent']} | {us(l['p50'])} | {us(l['p90'])} | {us(l['p99'])} | "
                f"{us(l['p999'])} | {us(l['p9999'])} | {us(l['max'])} | |")
    best = {r["mode"]: r["rate"] for r in rows if r["kind"] == "best"}
    for r in rows:
        if r["kind"] not in ("load", "max"):
            continue
        x = result_of(r)
        tag = " (max search)" if r["kind"] == "max" else ""
        if not x:
            lines.append(f"| sluiced, durability {r['mode']}{tag} | {r['rate']} | failed | | | | | "
                         f"| | | |")
            continue
        l = x["latency_ns"]
        d = daemon_view(r["mode"], r["rate"])
        dcol = f"{us(d['p50'])} / {us(d['p99'])} / {us(d['p999'])}" if d else ""
        lines.append(
            f"| sluiced, durability {r['mode']}{tag} | {r['rate']} | {x['rate_achieved']:.0f} | "
            f"{x['decided']}/{x['sent']} | {us(l['p50'])} | {us(l['p90'])} | {us(l['p99'])} | "
            f"{us(l['p999'])} | {us(l['p9999'])} | {us(l['max'])} | {dcol} |")
    lines.append("")
    for mode, rate in best.items():
        lines.append(f"Highest sustained rate, durability {mode}: **{rate} events/s** of the rates "
                     "tried (sustained: every event decided, achieved >= 99 % of the target, "
                     "p99.9 under 50 ms).")

    def run(mode, rate):
        for r in rows:
            if r["kind"] == "load" and r["mode"] == mode and r["rate"] == rate and result_of(r):
                return result_of(r)
        return None

    fb, fs = floor_p("blocking", "p50"), floor_p("spin", "p50")
    n100 = run("none", 100000)
    if n100 and fb:
        p50 = n100["latency_ns"]["p50"]
        lines.append(
            f"- Target: at 100k events/s with durability none, p50 within 1.3x the loopback floor: "
            f"{us(p50)} us vs {us(fb)} us (blocking floor, median of the runs) = {p50 / fb:.2f}x"
            + (f"; {p50 / fs:.2f}x the polling floor ({us(fs)} us)" if fs else "")
            + f". p99.9 {us(n100['latency_ns']['p999'])} us (target under 100 us).")
    ffs = floor_p("fdatasync", "p99")
    s10 = run("sync", 10000)
    if s10 and ffs:
        p99 = s10["latency_ns"]["p99"]
        lines.append(
            f"- Target: with sync, p99 no worse than 1.5x the disk's own fdatasync p99: at 10k "
            f"events/s {us(p99)} us vs fdatasync p99 {us(ffs)} us = {p99 / ffs:.2f}x.")
    if "none" in best:
        lines.append(f"- Target: at least 1M events/s sustained with decisions: {best['none']} "
                     "events/s was the highest sustained rate tried.")
    text = "\n".join(lines) + "\n"
    open(os.path.join(out_dir, "summary.md"), "w").write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
