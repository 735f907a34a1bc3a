"""Per-repetition Google Benchmark results, grouped by benchmark, for the summary scripts
(perf/summarize_network_bench.py, the summary inside perf/run_journal_bench.sh).

    ctx, runs = load("results.json", order=[...])
    s = Stats(runs, digits=2)
    s.med("JournalRead", "bytes_per_second", 1e-9), s.spread(...), s.f(x)
"""
import json
import statistics
from collections import OrderedDict


def load(path, order=()):
    """(context, runs) of a --benchmark_out JSON file written with per-repetition data.

    runs maps a benchmark's name without its /iterations:N and /manual_time parts to
    {"runs": [repetitions], "errors": [repetitions that failed]}: the names in `order` first, in
    that order, then the others by name."""
    doc = json.load(open(path))
    runs = OrderedDict()
    for b in doc["benchmarks"]:
        if b.get("run_type") == "aggregate":
            continue
        name = b.get("run_name", b["name"])
        name = "/".join(p for p in name.split("/")
                        if not p.startswith("iterations:") and p != "manual_time")
        e = runs.setdefault(name, {"runs": [], "errors": []})
        (e["errors"] if b.get("error_occurred") else e["runs"]).append(b)
    order = list(order)
    runs = OrderedDict(sorted(runs.items(), key=lambda kv: (
        order.index(kv[0]) if kv[0] in order else len(order), kv[0])))
    return doc.get("context", {}), runs


class Stats:
    """Medians and min-max of a counter over a benchmark's repetitions, formatted with `digits`
    decimals unless told otherwise; "-" where there is nothing."""

    def __init__(self, runs, digits):
        self.runs = runs
        self.digits = digits

    def vals(self, name, key, scale=1.0):
        e = self.runs.get(name)
        return [float(r[key]) * scale for r in e["runs"] if key in r] if e else []

    def med(self, name, key, scale=1.0):
        v = self.vals(name, key, scale)
        return statistics.median(v) if v else None

    def f(self, x, d=None):
        return "-" if x is None else f"{x:.{self.digits if d is None else d}f}"

    def spread(self, name, key, scale=1.0, d=None):
        v = self.vals(name, key, scale)
        return f"{self.f(min(v), d)}–{self.f(max(v), d)}" if v else "-"
