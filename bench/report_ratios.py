#!/usr/bin/python3
"""Turns one scripts/bench run into RATIO lines and the performance targets with PASS/MISS.

  report_ratios.py --benchmark-json FILE [--loadgen1 FILE... --loadgen2 FILE...]
                   [--python FILE...] [--node FILE...] [--memory FILE]

--benchmark-json  Google Benchmark's JSON (run with repetitions: medians are used)
--loadgen1/2      shmetrics-loadgen outputs of the P=1 and P=2 runs (their `total ...` lines);
                  loadgen_scaling_2_vs_1 = median P=2 rate / median P=1 rate
--python          outputs of compare_python_multiprocess.py and python_bench.py (their RATIO
                  lines are passed through, `n/a` for what did not run; PYTHON_TARGETS names the
                  targets among them)
--node            output of bench/node_bench.js (its RATIO lines passed through the same way;
                  NODE_TARGETS names the targets among them)
--memory          output of `shmetrics_bench --helper=memory` (sparse writers; informational)

Times are median CPU times: the benchmark thread's own time, which other processes on a shared
machine do not inflate the way they inflate wall time. For single-threaded benchmarks it equals
the wall time on a quiet machine. For Threads(2), Google Benchmark sums CPU time over the threads
and divides by all threads' iterations: the time one thread spends per update while the other
thread updates too, which is what "time per update <= 1.25 x single-thread" compares.
A ratio whose inputs were not run (e.g. --filter) is printed as n/a.
"""
import argparse
import json
import re
import statistics
import sys

UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}

# Targets among the Python scripts' RATIO lines: name -> (op, target). A target whose line is
# missing or n/a (a mode that is not built) is shown as n/a.
PYTHON_TARGETS = {
    "python_write_over_shmetrics": (">=", 100),
    "python_scrape_over_shmetrics_10000_64": (">=", 100),
    # python_bench.py: prometheus_client's time over shmetrics' for the same call.
    "python_multiprocess_child_inc_over_native": (">=", 5),
    "python_single_child_inc_over_native": (">=", 1),
    "python_multiprocess_labels_inc_over_native": (">=", 3),
    "python_single_child_inc_over_backend": (">=", 1),
    "python_single_labels_inc_over_backend": (">=", 1),
    "python_single_histogram_observe_over_backend": (">=", 1),
    "python_scrape_over_gateway_10000_16_dead256": (">=", 100),
}

# Targets among node_bench.js's RATIO lines, the same way: prom-client's time over shmetrics',
# and the gateway's scrape after 64 dead workers over the same scrape before them.
NODE_TARGETS = {
    "node_prom_client_child_inc_over_shmetrics": (">=", 5),
    "node_scrape_prom_client_over_gateway_10000_16": (">=", 50),
    "node_scrape_dead64_over_dead0_10000_16": ("<=", 1.25),
}


def medians(path):
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data.get("benchmarks", []):
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        if b.get("error_occurred"):
            continue
        scale = UNIT_NS[b.get("time_unit", "ns")]
        entry = {"real": b["real_time"] * scale, "cpu": b["cpu_time"] * scale}
        for k, v in b.items():
            if isinstance(v, (int, float)) and k not in entry:
                entry[k] = v
        # A median aggregate wins over a single run of the same name.
        if b.get("run_type") == "aggregate" or b["run_name"] not in out:
            out[b["run_name"]] = entry
    return out


def loadgen_rate(paths):
    rates = []
    for path in paths:
        with open(path) as f:
            for line in f:
                if line.startswith("total "):
                    rates.append(float(re.search(r"updates_per_second=([0-9.]+)", line).group(1)))
    return statistics.median(rates) if rates else None


def ratio_lines(paths):
    """{name: value or None} of the `RATIO <name> <value>` lines in the files at `paths`."""
    out = {}
    for path in paths or ():
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) == 3 and p[0] == "RATIO":
                    out[p[1]] = None if p[2] == "n/a" else float(p[2])
    return out


def fmt(v):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.3f" % v  # enough digits to see which side of a target like 1.2 a value is on


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--benchmark-json", required=True)
    ap.add_argument("--loadgen1", nargs="+")
    ap.add_argument("--loadgen2", nargs="+")
    ap.add_argument("--python", nargs="+")
    ap.add_argument("--node", nargs="+")
    ap.add_argument("--memory")
    args = ap.parse_args()
    m = medians(args.benchmark_json)

    def t(name, kind="cpu"):
        return m[name][kind] if name in m else None

    def div(a, b):
        return a / b if a is not None and b else None

    ratios = []  # (name, value, op, target, kind) ; kind: target | goal | info

    def add(name, value, op=None, target=None, kind="info"):
        ratios.append((name, value, op, target, kind))

    add("counter_inc_over_relaxed_fetch_add", div(t("BM_Counter_Inc"), t("BM_Baseline_RelaxedFetchAdd")), "<=", 1.2, "target")
    add("counter_inc_over_plain_increment", div(t("BM_Counter_Inc"), t("BM_Baseline_PlainIncrement")), "<=", 3, "goal")
    add("counter_inc_over_relaxed_load_store", div(t("BM_Counter_Inc"), t("BM_Baseline_RelaxedLoadStore")))
    add("counter_inc_threads2_over_threads1",
        div(t("BM_Counter_Inc/threads:2", "cpu"), t("BM_Counter_Inc", "cpu")), "<=", 1.25, "target")
    add("histogram_observe_threads2_over_threads1",
        div(t("BM_Histogram_Observe/threads:2", "cpu"), t("BM_Histogram_Observe", "cpu")), "<=", 1.25, "target")
    add("prometheus_cpp_counter_over_counter_inc", div(t("BM_PrometheusCpp_CounterIncrement"), t("BM_Counter_Inc")))
    add("prometheus_cpp_histogram_over_histogram_observe",
        div(t("BM_PrometheusCpp_HistogramObserve"), t("BM_Histogram_Observe")), ">=", 5, "target")
    add("prometheus_cpp_family_add_over_labels_resolve",
        div(t("BM_PrometheusCpp_FamilyAdd"), t("BM_Labels_Resolve")), ">=", 5, "target")
    if args.loadgen1 and args.loadgen2:
        p1, p2 = loadgen_rate(args.loadgen1), loadgen_rate(args.loadgen2)
        add("loadgen_scaling_2_vs_1", div(p2, p1), ">=", 1.8, "target")
        add("loadgen_updates_per_second_1_worker", p1)
        add("loadgen_updates_per_second_2_workers", p2)
    else:
        add("loadgen_scaling_2_vs_1", None, ">=", 1.8, "target")
    add("prometheus_cpp_serialize_100000_over_scrape_100000_16",
        div(t("BM_PrometheusCpp_Serialize/100000"), t("BM_Scrape_Text/100000/16")), ">=", 5, "target")
    for s in (1000, 10000):
        add("prometheus_cpp_serialize_%d_over_scrape_%d_16" % (s, s),
            div(t("BM_PrometheusCpp_Serialize/%d" % s), t("BM_Scrape_Text/%d/16" % s)))
    add("scrape_dead_4096_over_dead_0",
        div(t("BM_Scrape_Text_DeadWorkers/4096"), t("BM_Scrape_Text_DeadWorkers/0")), "<=", 1.1, "target")
    add("scrape_dead_256_over_dead_0", div(t("BM_Scrape_Text_DeadWorkers/256"), t("BM_Scrape_Text_DeadWorkers/0")))
    add("scrape_dead_4096_over_dead_256",
        div(t("BM_Scrape_Text_DeadWorkers/4096"), t("BM_Scrape_Text_DeadWorkers/256")))
    dense = m.get("BM_Scrape_Text/100000/16", {})
    add("region_bytes_per_series_writer", dense.get("writer_bytes_per_series_writer"), "<=", 16, "target")
    add("region_used_bytes_per_series_writer", dense.get("used_bytes_per_series_writer"))

    for paths, targets in ((args.python, PYTHON_TARGETS), (args.node, NODE_TARGETS)):
        passed = ratio_lines(paths)
        for name, value in passed.items():
            if name in targets:
                add(name, value, *targets[name], "target")
            else:
                add(name, value)
        for name, (op, target) in targets.items():
            if name not in passed:
                add(name, None, op, target, "target")
    if args.memory:
        with open(args.memory) as f:
            mem = json.loads(f.read().strip().splitlines()[-1])
        add("region_bytes_per_series_writer_sparse_%g" % mem["fraction"], mem["writer_bytes_per_series_writer"])

    for name, value, *_ in ratios:
        print("RATIO %s %s" % (name, fmt(value)))
    print()
    print("%-56s %10s  %-9s %s" % ("target", "value", "wanted", "result"))
    missed = 0
    for name, value, op, target, kind in ratios:
        if kind == "info":
            continue
        if value is None:
            result = "n/a"
        else:
            ok = value <= target if op == "<=" else value >= target
            result = "PASS" if ok else "MISS"
            missed += not ok and kind == "target"
        print("%-56s %10s  %-9s %s%s" % (name, fmt(value), "%s %g" % (op, target),
                                         result, " (goal)" if kind == "goal" else ""))
    print()
    print("targets missed: %d" % missed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
