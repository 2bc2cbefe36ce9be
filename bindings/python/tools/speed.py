"""ns per call of shmetrics native mode beside prometheus_client single-process mode, same run.

    PYTHONPATH=<build>/bindings/python /usr/bin/python3 bindings/python/tools/speed.py

Best of 5 timeit repeats, the empty loop's cost subtracted. A quick look, not the benchmark
suite (bench/ and scripts/bench are that)."""

import os
import timeit

import prometheus_client
import shmetrics

N = 200_000


def ns_per_call(stmt, namespace):
    loop = min(timeit.repeat('pass', number=N, repeat=5))
    best = min(timeit.repeat(stmt, globals=namespace, number=N, repeat=5))
    return (best - loop) / N * 1e9


def main():
    region = f'shmetrics-speed-{os.getpid()}'
    shmetrics.attach(region)
    try:
        registry = prometheus_client.CollectorRegistry()
        ns = {
            'pc_child': prometheus_client.Counter('pc_total', 'x', ['a', 'b'], registry=registry)
            .labels('GET', '200'),
            'pc': prometheus_client.Counter('pc2_total', 'x', ['a', 'b'], registry=registry),
            'pc_h': prometheus_client.Histogram('pc_h', 'x', registry=registry),
            'sm_child': shmetrics.Counter('sm_total', 'x', ['a', 'b']).labels('GET', '200'),
            'sm': shmetrics.Counter('sm2_total', 'x', ['a', 'b']),
            'sm_h': shmetrics.Histogram('sm_h', 'x'),
        }
        ns['pc'].labels('GET', '200')
        ns['sm'].labels('GET', '200')
        rows = [
            ('child .inc()', 'pc_child.inc()', 'sm_child.inc()'),
            ('.labels(a, b).inc()', "pc.labels('GET', '200').inc()",
             "sm.labels('GET', '200').inc()"),
            ('.labels(a, 200).inc()', "pc.labels('GET', 200).inc()",
             "sm.labels('GET', 200).inc()"),
            ('.labels(a=, b=).inc()', "pc.labels(a='GET', b='200').inc()",
             "sm.labels(a='GET', b='200').inc()"),
            ('histogram .observe()', 'pc_h.observe(0.3)', 'sm_h.observe(0.3)'),
        ]
        print(f"{'ns per call':<24}{'prometheus_client':>18}{'shmetrics native':>18}{'ratio':>8}")
        for label, pc_stmt, sm_stmt in rows:
            pc_ns, sm_ns = ns_per_call(pc_stmt, ns), ns_per_call(sm_stmt, ns)
            print(f'{label:<24}{pc_ns:>18.0f}{sm_ns:>18.0f}{pc_ns / sm_ns:>7.1f}x')
    finally:
        try:
            os.unlink('/dev/shm/' + region)
        except FileNotFoundError:
            pass


if __name__ == '__main__':
    main()
