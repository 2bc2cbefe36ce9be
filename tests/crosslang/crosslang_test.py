"""One counter family and one histogram family written by a C++ worker (the client library), a
Python worker (the shmetrics package, native mode) and a Node worker (the shmetrics npm package):
the gateway serves one series per label set, summed, under one HELP and TYPE; a worker that
registers a conflicting definition second gets a clear error naming the family."""

import os
import subprocess
import sys
import textwrap
import unittest

import gateway_support

NODE = os.environ.get('SHMETRICS_NODE', 'node')
NODE_PACKAGE = os.environ['SHMETRICS_NODE_PACKAGE']
CPP_WORKER = os.environ['CROSSLANG_CPP_WORKER']


def run(argv, region, timeout=60):
    """A worker process on `region`: (exit code, stderr)."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, 'SHMETRICS_REGION': region})
    return p.returncode, p.stderr


def python_worker(code, region):
    return run([sys.executable, '-c', textwrap.dedent(code)], region)


def node_worker(code, region):
    return run([NODE, '-e', f'const client = require({NODE_PACKAGE!r});\n' + code], region)


class CrossLanguageFamilyTest(unittest.TestCase):
    def setUp(self):
        self.region = gateway_support.unique_region('xlang')
        self.addCleanup(gateway_support.remove_region, self.region)
        self.gateway = gateway_support.Gateway(self.region)
        self.addCleanup(self.gateway.close)

    def test_three_languages_one_family_summed(self):
        code, err = run([CPP_WORKER, self.region], self.region)
        self.assertEqual(code, 0, err)
        code, err = python_worker('''
            import shmetrics
            shmetrics.Counter('xlang_requests', 'Requests, by path.', ['path']).labels('/a').inc(5)
            shmetrics.Histogram('xlang_latency_seconds', 'Latency.', buckets=[0.1, 1]).observe(0.5)
        ''', self.region)
        self.assertEqual(code, 0, err)
        code, err = node_worker('''
            new client.Counter({name: 'xlang_requests_total', help: 'Requests, by path.',
                                labelNames: ['path']}).inc({path: '/a'}, 7);
            new client.Histogram({name: 'xlang_latency_seconds', help: 'Latency.',
                                  buckets: [0.1, 1]}).observe(5);
        ''', self.region)
        self.assertEqual(code, 0, err)
        s = self.gateway.wait_for(
            lambda s: s.get(('xlang_requests_total', frozenset({('path', '/a')}))) == 15)
        self.assertEqual(s[('xlang_requests_total', frozenset({('path', '/a')}))], 15)
        bucket = 'xlang_latency_seconds_bucket'
        self.assertEqual([s[(bucket, frozenset({('le', le)}))] for le in ('0.1', '1.0', '+Inf')],
                         [1, 2, 3])
        self.assertEqual(s[('xlang_latency_seconds_count', frozenset())], 3)
        self.assertAlmostEqual(s[('xlang_latency_seconds_sum', frozenset())], 5.55)
        body = self.gateway.scrape_text()
        for family in ('xlang_requests_total', 'xlang_latency_seconds'):
            self.assertEqual(body.count(f'# TYPE {family} '), 1, body)
            self.assertEqual(body.count(f'# HELP {family} '), 1, body)

    def test_a_conflicting_definition_fails_in_the_second_worker(self):
        code, err = run([CPP_WORKER, self.region], self.region)
        self.assertEqual(code, 0, err)
        # Other buckets, from Node: an Error with code EINVAL naming the family.
        code, err = node_worker('''
            try {
              new client.Histogram({name: 'xlang_latency_seconds', help: 'Latency.',
                                    buckets: [0.2, 1]});
            } catch (e) { console.error(e.code, e.message); process.exit(3); }
        ''', self.region)
        self.assertEqual(code, 3, err)
        self.assertIn('EINVAL', err)
        self.assertIn('xlang_latency_seconds', err)
        # Another type, from Python: a ValueError naming the family.
        code, err = python_worker('''
            import sys, shmetrics
            try:
                shmetrics.Gauge('xlang_requests_total', 'Requests, by path.', ['path'])
            except ValueError as e:
                print(e, file=sys.stderr); sys.exit(3)
        ''', self.region)
        self.assertEqual(code, 3, err)
        self.assertIn('xlang_requests_total', err)
        # The C++ worker's own writes are untouched by the refused registrations.
        s = self.gateway.samples()
        self.assertEqual(s[('xlang_requests_total', frozenset({('path', '/a')}))], 3)


if __name__ == '__main__':
    unittest.main()
