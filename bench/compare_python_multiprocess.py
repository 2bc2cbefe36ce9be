#!/usr/bin/python3
"""shmetrics against Python's prometheus_client in multiprocess mode, same workloads, same machine.

  /usr/bin/python3 bench/compare_python_multiprocess.py --shmetrics-bench BUILD/bench/shmetrics_bench
                                                        [--quick] [--repeat N] [--json FILE]

Uses Debian's python3-prometheus-client (hence /usr/bin/python3, not a pyenv python) with
PROMETHEUS_MULTIPROC_DIR on /dev/shm. The shmetrics side is measured by shmetrics_bench's helper
modes, the same C++ code as the benchmarks, not re-implemented here.

Write: the cost of one counter increment in a forked worker. The master creates the labelled
  counter before fork() (as a pre-forking server does); the worker resolves the child once and
  increments it in a loop (Python: child.inc(), loop overhead included as users pay it;
  shmetrics: Counter::Inc). Median of rounds.
Scrape: W worker processes each increment every one of S counter series (families of 1000, labels
  route and code, as in BM_Scrape_Text), then exit; for the dead cases D more workers do the same
  and are marked dead (mark_process_dead, as gunicorn's child_exit hook does). Python: one
  MultiProcessCollector + generate_latest over the directory. shmetrics: one /metrics body
  (Gateway::RenderMetrics) with the W workers alive and the D dead ones folded. Median of scrapes.

Prints a table, then `RATIO python_write_over_shmetrics X` and
`RATIO python_scrape_over_shmetrics_<series>_<workers>[_dead<D>] X` lines.
Exit status 77 (skipped) when prometheus_client is not importable.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SERIES_PER_FAMILY = 1000


def family_name(f):
    return "bench_requests_%d" % f  # exposed as bench_requests_<f>_total


def route(i):
    return "/api/v1/resource/%d" % i


def make_dir():
    return tempfile.mkdtemp(prefix="shmetrics-bench-py-", dir="/dev/shm")


def run_forked(fn):
    """Runs fn() in a forked child; returns what it wrote (bytes) to the pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(r)
            os.write(w, fn())
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError("forked worker failed (status %d)" % status)
    return b"".join(chunks)


def python_write_ns(iterations, rounds):
    from prometheus_client import Counter
    d = make_dir()
    try:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = d
        counter = Counter("bench_requests", "Requests.", ["route", "code"], registry=None)

        def worker():
            child = counter.labels(route(0), "200")
            child.inc()
            per_inc = []
            for _ in range(rounds):
                t0 = time.perf_counter_ns()
                for _ in range(iterations):
                    child.inc()
                per_inc.append((time.perf_counter_ns() - t0) / iterations)
            return json.dumps(statistics.median(per_inc)).encode()

        return json.loads(run_forked(worker))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def populate(d, series, workers):
    """Forks `workers` processes that each increment every series once and exit; returns pids."""
    from prometheus_client import Counter
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = d
    families = [Counter(family_name(f), "Requests handled by route group %d." % f, ["route", "code"], registry=None)
                for f in range((series + SERIES_PER_FAMILY - 1) // SERIES_PER_FAMILY)]
    pids, running = [], []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                for i in range(series):
                    families[i // SERIES_PER_FAMILY].labels(route(i), "200").inc()
                status = 0
            finally:
                os._exit(status)
        pids.append(pid)
        running.append(pid)
        if len(running) >= 4:
            wait_ok(running.pop(0))
    for pid in running:
        wait_ok(pid)
    return pids


def wait_ok(pid):
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError("worker %d failed (status %d)" % (pid, status))


def python_scrape_seconds(series, live, dead, repeat):
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess
    d = make_dir()
    try:
        populate(d, series, live)
        for pid in populate(d, series, dead):
            multiprocess.mark_process_dead(pid, d)
        times, body = [], b""
        for _ in range(repeat):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=d)
            t0 = time.perf_counter()
            body = generate_latest(registry)
            times.append(time.perf_counter() - t0)
        check_body(body.decode(), series, live + dead, "python")
        return statistics.median(times), len(body)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def check_body(text, series, expected, who):
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("bench_requests_")
              and not line.startswith("bench_requests_0_created")]
    values = [v for v in values if v < 1e9]  # _created timestamps, if any
    if len(values) != series or any(v != expected for v in values):
        raise RuntimeError("%s body: %d series, values %s, expected %d series of %d"
                           % (who, len(values), sorted(set(values))[:5], series, expected))


def shmetrics(bench, *args):
    out = subprocess.run([bench] + [str(a) for a in args], check=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shmetrics-bench", required=True, help="path to the shmetrics_bench binary")
    ap.add_argument("--quick", action="store_true", help="one small case of each, for ctest")
    ap.add_argument("--repeat", type=int, default=3, help="Python scrapes per case (median)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    # The variable must be set before prometheus_client is imported, or it silently stays
    # single-process.
    base = make_dir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = base
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        print("skipped: prometheus_client is not importable by %s (apt-get install python3-prometheus-client)"
              % sys.executable)
        shutil.rmtree(base, ignore_errors=True)
        return 77
    if not os.access(args.shmetrics_bench, os.X_OK):
        print("error: %s is not an executable shmetrics_bench" % args.shmetrics_bench, file=sys.stderr)
        return 2

    results = {"prometheus_client": prometheus_client.__version__ if hasattr(prometheus_client, "__version__")
               else "unknown", "python": sys.version.split()[0], "write": {}, "scrape": []}
    try:
        if args.quick:
            py_iter, py_rounds, cc_iter, cc_rounds = 20000, 1, 1000000, 1
            cases = [(1000, 4, 0), (1000, 4, 8)]
            repeat, cc_scrapes = 1, 3
        else:
            py_iter, py_rounds, cc_iter, cc_rounds = 200000, 3, 50000000, 5
            cases = [(s, w, 0) for s in (1000, 10000) for w in (4, 16, 64)] + [(1000, 4, 256), (10000, 4, 256)]
            repeat, cc_scrapes = args.repeat, 20

        py_ns = python_write_ns(py_iter, py_rounds)
        cc = shmetrics(args.shmetrics_bench, "--helper=write", "--iterations", cc_iter, "--rounds", cc_rounds)
        results["write"] = {"python_ns_per_inc": py_ns, "shmetrics_ns_per_inc": cc["ns_per_inc"]}
        print("write, ns per counter increment in a forked worker: python %.1f  shmetrics %.3f  (%.0fx)"
              % (py_ns, cc["ns_per_inc"], py_ns / cc["ns_per_inc"]))
        print("%-8s %-8s %-6s %14s %14s %9s %12s %12s" % ("series", "workers", "dead", "python_ms", "shmetrics_ms",
                                                          "ratio", "python_B", "shmetrics_B"))
        for series, live, dead in cases:
            py_s, py_bytes = python_scrape_seconds(series, live, dead, repeat)
            c = shmetrics(args.shmetrics_bench, "--helper=scrape", "--series", series, "--workers", live,
                          "--dead", dead, "--scrapes", cc_scrapes)
            results["scrape"].append({"series": series, "workers": live, "dead": dead, "python_seconds": py_s,
                                      "shmetrics_seconds": c["median_seconds"], "python_bytes": py_bytes,
                                      "shmetrics_bytes": c["body_bytes"]})
            print("%-8d %-8d %-6d %14.3f %14.3f %9.0f %12d %12d" % (series, live, dead, py_s * 1e3,
                                                                     c["median_seconds"] * 1e3,
                                                                     py_s / c["median_seconds"], py_bytes,
                                                                     c["body_bytes"]))
            sys.stdout.flush()
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print("RATIO python_write_over_shmetrics %.1f" % (results["write"]["python_ns_per_inc"] /
                                                       results["write"]["shmetrics_ns_per_inc"]))
    for s in results["scrape"]:
        name = "python_scrape_over_shmetrics_%d_%d" % (s["series"], s["workers"])
        if s["dead"]:
            name += "_dead%d" % s["dead"]
        print("RATIO %s %.1f" % (name, s["python_seconds"] / s["shmetrics_seconds"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
