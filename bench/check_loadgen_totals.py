#!/usr/bin/python3
"""Checks that a /metrics body serves exactly the totals shmetrics-loadgen reported.

  check_loadgen_totals.py LOADGEN_OUTPUT METRICS_BODY

Sums loadgen_requests_total, loadgen_latency_seconds_count and loadgen_latency_seconds_sum over
all series of the body and compares them with the `total ...` line of the load generator: the
counts must be equal, the sums equal up to floating-point summation order (1e-9 relative).
Exit status 0 when they match, 1 otherwise.
"""
import re
import sys


def main():
    report, body = sys.argv[1], sys.argv[2]
    total = [line for line in open(report) if line.startswith("total ")]
    if not total:
        print("check_loadgen_totals: no 'total' line in %s" % report, file=sys.stderr)
        return 1
    want = {k: float(v) for k, v in re.findall(r"(requests_total|latency_count|latency_sum)=([0-9.e+-]+)", total[0])}
    got = {"requests_total": 0.0, "latency_count": 0.0, "latency_sum": 0.0}
    prefixes = {"loadgen_requests_total{": "requests_total", "loadgen_latency_seconds_count{": "latency_count",
                "loadgen_latency_seconds_sum{": "latency_sum"}
    for line in open(body):
        for prefix, key in prefixes.items():
            if line.startswith(prefix):
                got[key] += float(line.rsplit(" ", 1)[1])
    ok = (got["requests_total"] == want["requests_total"] and got["latency_count"] == want["latency_count"] and
          abs(got["latency_sum"] - want["latency_sum"]) <= 1e-9 * max(1.0, want["latency_sum"]))
    print("[shmetrics] served by the gateway: requests_total=%d latency_count=%d latency_sum=%.17g: %s"
          % (got["requests_total"], got["latency_count"], got["latency_sum"],
             "equal to the workers' totals" if ok else "MISMATCH, the workers reported %s" % want), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
