"""The oracle: the same FastAPI workload under prometheus_client's own multiprocess mode (a fresh
PROMETHEUS_MULTIPROC_DIR, the child_exit hook, MultiProcessCollector) and under shmetrics. Both
bodies parsed by prometheus_client; they must hold the same families, types, series and values.

The only differences allowed, each because the two runs cannot or should not agree:
- the gateway's own shmetrics_* families (the region's health), which have no counterpart;
- the latency histogram's finite buckets and _sum: wall-clock times of two different runs. Its
  _count and +Inf bucket must still agree, and on both sides its buckets are cumulative.
HELP texts agree too (prometheus_client 0.16 keeps them in its files). Neither side has _created
samples in the text format, nor pid labels: the app's gauges are livesum.
"""

import importlib.util
import os
import shutil
import struct
import tempfile
import unittest

import gateway_support
from prometheus_client import REGISTRY
from servers import harness

WORKERS = 4
REQUESTS = 400
LATENCY = 'http_request_duration_seconds'


def timing_dependent(sample_name, labels):
    if sample_name == LATENCY + '_sum':
        return True
    return sample_name == LATENCY + '_bucket' and dict(labels)['le'] != float('inf')


def app_documentation():
    """{family: HELP text} as the app declares it, from importing the app file here."""
    spec = importlib.util.spec_from_file_location(
        'oracle_fastapi_app', os.path.join(harness.FASTAPI_APP, 'app.py'))
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return {f.name: f.documentation for f in REGISTRY.collect()
            if f.name in harness.FASTAPI_FAMILIES}


class MultiprocessOracleTest(harness.ExpositionChecks, unittest.TestCase):
    def drive(self, conf, env, ready, collect):
        """The workload through gunicorn with `conf`; collect()'s families, while it still runs."""
        server = harness.start_server(
            lambda port: harness.gunicorn_argv(harness.FASTAPI_APP, conf, port, workers=WORKERS),
            env)
        try:
            server.wait_until(ready, 60, f'{WORKERS} workers up')
            traffic = harness.Traffic(server.port, harness.fastapi_workload(REQUESTS))
            traffic.start().join(90)
            self.assertEqual(traffic.total_answered(), REQUESTS)
            return collect()
        finally:
            server.close()

    def multiprocess_run(self):
        directory = tempfile.mkdtemp(prefix='shmetrics-oracle-')
        self.addCleanup(shutil.rmtree, directory)

        def ready():
            try:
                samples = harness.normalized(harness.multiprocess_families(directory))
            except struct.error:  # a worker's file read between its creation and its sizing
                return False
            return samples.get(('workers_up', frozenset())) == WORKERS

        return self.drive('gunicorn_multiproc.conf.py',
                          harness.server_env(PROMETHEUS_MULTIPROC_DIR=directory), ready,
                          lambda: harness.multiprocess_families(directory))

    def shmetrics_run(self):
        region = gateway_support.unique_region('oracle')
        self.addCleanup(gateway_support.remove_region, region)
        gateway = gateway_support.Gateway(region)
        self.addCleanup(gateway.close)
        return self.drive('gunicorn.conf.py', harness.server_env(SHMETRICS_REGION=region),
                          lambda: gateway.value('workers_up') == WORKERS,
                          lambda: list(gateway_support.parse_text(gateway.scrape_text())))

    def assert_latency_plausible(self, samples):
        """What the timing-dependent samples must still satisfy on either side: cumulative
        buckets ending at the count, and a sum of positive times."""
        routes = {labels for name, labels in samples if name == LATENCY + '_count'}
        for route in routes:
            buckets = sorted((dict(labels)['le'], value)
                             for (name, labels), value in samples.items()
                             if name == LATENCY + '_bucket' and route < labels)
            counts = [value for _, value in buckets]
            self.assertEqual(counts, sorted(counts), f'buckets of {set(route)} not cumulative')
            self.assertEqual(counts[-1], samples[(LATENCY + '_count', route)])
            self.assertGreater(samples[(LATENCY + '_sum', route)], 0)

    def test_gateway_serves_what_multiprocess_mode_serves(self):
        oracle = self.multiprocess_run()
        served = [f for f in self.shmetrics_run() if not f.name.startswith('shmetrics_')]

        self.assertEqual({f.name: f.type for f in served}, {f.name: f.type for f in oracle})
        self.assertEqual({f.name: f.type for f in oracle}, harness.FASTAPI_FAMILIES)
        documentation = app_documentation()
        self.assertEqual({f.name: f.documentation for f in served}, documentation)
        self.assertEqual({f.name: f.documentation for f in oracle}, documentation)

        expected = harness.normalized(oracle)
        samples = harness.normalized(served)
        self.assertEqual(sorted(samples, key=repr), sorted(expected, key=repr), 'series differ')
        differ = {key: (samples[key], value) for key, value in expected.items()
                  if samples[key] != value and not timing_dependent(*key)}
        self.assertEqual(differ, {}, 'values (shmetrics, multiprocess mode) that differ')
        for side in (samples, expected):
            self.assert_latency_plausible(side)
        self.assertEqual(harness.sample_sum(samples, 'http_requests_total'), REQUESTS)
        # The workload is known: neither side merely agrees with the other by being wrong.
        self.assert_samples(
            samples, harness.fastapi_expected(harness.fastapi_workload(REQUESTS), WORKERS))


if __name__ == '__main__':
    unittest.main()
