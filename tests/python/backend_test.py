"""Backend mode: the unmodified prometheus_client, after shmetrics.install(), writes into the
region. Every type, the gauge modes, exemplars, Info and Enum, forked workers, and the app's own
exposition of this process's values, each read back through the real gateway."""

import os
import signal
import subprocess
import sys
import textwrap
import unittest

import gateway_support
import shmetrics

gateway = None
region = None


def setUpModule():
    global gateway, region
    region = gateway_support.unique_region('backend')
    unittest.addModuleCleanup(gateway_support.remove_region, region)
    gateway = gateway_support.Gateway(region)
    unittest.addModuleCleanup(gateway.close)
    shmetrics.install(region, exemplars=True)


import prometheus_client  # noqa: E402  (after install() would matter only for metrics, not here)
from prometheus_client import Counter, Enum, Gauge, Histogram, Info, Summary  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def local_samples():
    """{(name, labels): value} of prometheus_client's own exposition of this process."""
    body = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(body) for s in f.samples}


class TypesTest(unittest.TestCase):
    def test_counter_children_and_exemplar(self):
        c = Counter('be_requests', 'Requests.', ['method', 'code'])
        c.labels('GET', 200).inc()
        c.labels(method='GET', code='200').inc(2)
        c.labels('POST', '500').inc(0.5, exemplar={'trace_id': 'abc'})
        self.assertEqual(gateway.value('be_requests_total', method='GET', code='200'), 3)
        self.assertEqual(gateway.value('be_requests_total', method='POST', code='500'), 0.5)
        om = gateway.openmetrics_families()['be_requests']
        exemplars = [s.exemplar for s in om.samples if s.name == 'be_requests_total'
                     and s.labels.get('method') == 'POST']
        self.assertEqual(exemplars[0].labels, {'trace_id': 'abc'})
        self.assertEqual(exemplars[0].value, 0.5)
        # The app's own exposition shows this process's values.
        self.assertEqual(local_samples()[('be_requests_total',
                                          frozenset({('method', 'GET'), ('code', '200')}))], 3)
        with self.assertRaisesRegex(ValueError, 'non-negative'):
            c.labels('GET', '200').inc(-1)

    def test_gauge_modes_and_methods(self):
        g = Gauge('be_inprogress', 'In progress.', multiprocess_mode='livesum')
        g.inc(5)
        g.dec(2)
        with g.track_inprogress():
            self.assertEqual(gateway.value('be_inprogress'), 4)
        self.assertEqual(gateway.value('be_inprogress'), 3)
        peak = Gauge('be_peak', 'Peak.', ['pool'], multiprocess_mode='max')
        peak.labels('a').set(7)
        self.assertEqual(gateway.value('be_peak', pool='a'), 7)
        every = Gauge('be_every', 'Per worker.')  # prometheus_client's default mode: all
        every.set(9)
        self.assertEqual(gateway.value('be_every', pid=str(os.getpid())), 9)
        stamp = Gauge('be_stamp', 'Time.', multiprocess_mode='mostrecent'
                      if 'mostrecent' in Gauge._MULTIPROC_MODES else 'max')
        stamp.set_to_current_time()
        self.assertGreater(gateway.value('be_stamp'), 1.7e9)
        self.assertEqual(local_samples()[('be_inprogress', frozenset())], 3)

    def test_invalid_multiprocess_mode_is_prometheus_clients_error(self):
        with self.assertRaisesRegex(ValueError, 'Invalid multiprocess mode: bogus'):
            Gauge('be_bad_mode', 'x', multiprocess_mode='bogus')

    def test_histogram_buckets_become_the_familys(self):
        h = Histogram('be_latency_seconds', 'Latency.', ['route'], buckets=[0.1, 0.5, 2])
        child = h.labels('/a')
        for v in (0.05, 0.3, 0.3, 1, 9):
            child.observe(v)
        child.observe(0.2, exemplar={'trace_id': 'h1'})
        s = gateway.samples()
        bucket = 'be_latency_seconds_bucket'
        for le, expected in (('0.1', 1), ('0.5', 4), ('2.0', 5), ('+Inf', 6)):
            self.assertEqual(s[(bucket, frozenset({('route', '/a'), ('le', le)}))], expected, le)
        self.assertEqual(s[('be_latency_seconds_count', frozenset({('route', '/a')}))], 6)
        self.assertAlmostEqual(s[('be_latency_seconds_sum', frozenset({('route', '/a')}))], 10.85)
        local = local_samples()
        self.assertEqual(local[(bucket, frozenset({('route', '/a'), ('le', '0.5')}))], 4)
        self.assertAlmostEqual(local[('be_latency_seconds_sum', frozenset({('route', '/a')}))],
                               10.85)
        with h.labels('/b').time():
            pass
        self.assertEqual(gateway.value('be_latency_seconds_count', route='/b'), 1)

    def test_summary(self):
        s = Summary('be_size_bytes', 'Sizes.')
        s.observe(100)
        s.observe(50)
        self.assertEqual(gateway.value('be_size_bytes_count'), 2)
        self.assertEqual(gateway.value('be_size_bytes_sum'), 150)
        self.assertEqual(local_samples()[('be_size_bytes_count', frozenset())], 2)

    def test_info(self):
        i = Info('be_build', 'Build.')
        i.info({'version': '1.2', 'commit': 'abc'})
        self.assertEqual(gateway.value('be_build_info', version='1.2', commit='abc'), 1)
        i.info({'version': '1.3', 'commit': 'def'})
        self.assertEqual(gateway.value('be_build_info', version='1.3', commit='def'), 1)
        self.assertEqual(gateway.value('be_build_info', version='1.2', commit='abc'), 0)
        with self.assertRaisesRegex(ValueError, 'one set of keys'):
            i.info({'version': '2'})
        with self.assertRaisesRegex(ValueError, 'Overlapping labels for Info metric'):
            Info('be_build_l', 'x', ['version']).labels('1').info({'version': '2'})
        self.assertEqual(local_samples()[('be_build_info', frozenset(
            {('version', '1.3'), ('commit', 'def')}))], 1)

    def test_enum(self):
        e = Enum('be_task_state', 'State.', ['task'], states=['starting', 'running', 'stopped'])
        e.labels('t1').state('running')
        s = gateway.samples()
        for state, expected in (('starting', 0), ('running', 1), ('stopped', 0)):
            self.assertEqual(s[('be_task_state', frozenset({('task', 't1'),
                                                            ('be_task_state', state)}))], expected)
        with self.assertRaises(ValueError):
            e.labels('t1').state('bogus')
        fresh = Enum('be_fresh_state', 'State.', states=['idle', 'busy'])
        self.assertIsNotNone(fresh)
        self.assertEqual(gateway.value('be_fresh_state', be_fresh_state='idle'), 1)

    def test_duplicate_name_keeps_prometheus_clients_error(self):
        Counter('be_dup', 'x')
        with self.assertRaisesRegex(ValueError, 'Duplicated timeseries in CollectorRegistry'):
            Counter('be_dup', 'x')

    def test_unregistered_metrics_write_too(self):
        c = Counter('be_unregistered', 'x', registry=None)
        c.inc(4)
        self.assertEqual(gateway.value('be_unregistered_total'), 4)


class ThreadsTest(unittest.TestCase):
    def test_threads_of_one_worker_lose_nothing(self):
        import threading
        c = Counter('be_threads', 'Threads.', ['t'])
        h = Histogram('be_threads_seconds', 'Threads.', buckets=[1])
        def work(t):
            for i in range(5000):
                c.labels(str(t % 2)).inc()
                h.observe(0.5 if i % 2 else 2)
        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        s = gateway.samples()
        self.assertEqual(s[('be_threads_total', frozenset({('t', '0')}))], 20000)
        self.assertEqual(s[('be_threads_total', frozenset({('t', '1')}))], 20000)
        self.assertEqual(s[('be_threads_seconds_bucket', frozenset({('le', '1.0')}))], 20000)
        self.assertEqual(s[('be_threads_seconds_count', frozenset())], 40000)


class ForkTest(unittest.TestCase):
    def test_children_created_before_fork_write_their_own_slots(self):
        c = Counter('be_forked', 'Forked.', ['w'])
        parent_child = c.labels('x')
        parent_child.inc(1000)  # the master's own count, before any fork: counted once
        live = Gauge('be_forked_up', 'Up.', multiprocess_mode='livesum')
        pids = []
        for w in range(3):
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    for _ in range(100):
                        parent_child.inc()
                    c.labels(str(w)).inc(w + 1)
                    live.set(1)
                except BaseException:
                    code = 1
                os._exit(code)
            pids.append(pid)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        s = gateway.wait_for(lambda s: s.get(('be_forked_total', frozenset({('w', 'x')}))) == 1300)
        self.assertEqual(s[('be_forked_total', frozenset({('w', 'x')}))], 1300)
        for w in range(3):
            self.assertEqual(s[('be_forked_total', frozenset({('w', str(w))}))], w + 1)
        # The workers are gone: their livesum share went with them.
        self.assertEqual(gateway.wait_for(lambda s: s.get(('be_forked_up', frozenset())) in
                                          (None, 0)).get(('be_forked_up', frozenset()), 0), 0)

    def test_killed_worker_keeps_its_counts(self):
        c = Counter('be_killed', 'Killed.')
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            c.inc(42)
            os.write(w, b'x')
            signal.pause()
            os._exit(0)
        os.close(w)
        self.assertEqual(os.read(r, 1), b'x')
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        self.assertEqual(gateway.wait_for(lambda s: s.get(('be_killed_total', frozenset())) == 42)
                         .get(('be_killed_total', frozenset())), 42)


def run_fresh(code, **env):
    """`code` in a fresh interpreter with this test's PYTHONPATH; (exit code, stderr)."""
    p = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                       text=True, timeout=60, env={**os.environ, **env})
    return p.returncode, p.stderr


class InstallTest(unittest.TestCase):
    def test_install_twice_same_region_is_a_no_op_other_region_is_an_error(self):
        shmetrics.install(region)
        self.assertEqual(shmetrics.installed(), region)
        with self.assertRaisesRegex(shmetrics.RegionError, 'already installed'):
            shmetrics.install(region + '-other')

    def test_no_region_named_is_a_clear_error(self):
        code, err = run_fresh('''
            import os, shmetrics
            os.environ.pop('SHMETRICS_REGION', None)
            try:
                shmetrics.install()
            except shmetrics.RegionError as e:
                print(e, file=__import__('sys').stderr); raise SystemExit(3)
        ''')
        self.assertEqual(code, 3, err)
        self.assertIn('SHMETRICS_REGION', err)

    def test_metrics_made_before_install_are_refused_by_name(self):
        code, err = run_fresh(f'''
            import prometheus_client, shmetrics
            prometheus_client.Counter('early_requests', 'x')
            try:
                shmetrics.install({region!r})
            except RuntimeError as e:
                print(e, file=__import__('sys').stderr); raise SystemExit(3)
        ''')
        self.assertEqual(code, 3, err)
        self.assertIn('early_requests', err)

    def test_environment_variable_names_the_region(self):
        code, err = run_fresh('''
            import shmetrics
            shmetrics.install()
            import prometheus_client
            prometheus_client.Counter('be_from_env', 'x').inc(5)
        ''', SHMETRICS_REGION=region)
        self.assertEqual(code, 0, err)
        self.assertEqual(gateway.wait_for(lambda s: s.get(('be_from_env_total', frozenset())) == 5)
                         .get(('be_from_env_total', frozenset())), 5)

    def test_without_exemplar_storage_an_exemplar_is_dropped_and_counted(self):
        def dropped():
            return gateway.value('shmetrics_dropped_updates_total', reason='exemplar') or 0
        before = dropped()
        code, err = run_fresh(f'''
            import shmetrics
            shmetrics.install({region!r})  # SHMETRICS_EXEMPLARS unset: no exemplar storage
            import prometheus_client
            prometheus_client.Counter('be_no_exemplars', 'x').inc(2, exemplar={{'trace_id': 'a'}})
        ''', SHMETRICS_EXEMPLARS='')
        self.assertEqual(code, 0, err)
        self.assertEqual(gateway.wait_for(lambda s: s.get(('be_no_exemplars_total', frozenset()))
                                          == 2).get(('be_no_exemplars_total', frozenset())), 2)
        self.assertEqual(dropped(), before + 1)
        om = gateway.openmetrics_families()['be_no_exemplars']
        self.assertEqual([s.exemplar for s in om.samples if s.name == 'be_no_exemplars_total'],
                         [None])

    def test_a_conflicting_definition_in_the_region_is_a_value_error(self):
        Gauge('be_conflict_total', 'x')
        code, err = run_fresh(f'''
            import shmetrics
            shmetrics.install({region!r})
            import prometheus_client
            try:
                prometheus_client.Counter('be_conflict', 'x')
            except ValueError as e:
                print(e, file=__import__('sys').stderr); raise SystemExit(3)
        ''')
        self.assertEqual(code, 3, err)
        self.assertIn('be_conflict', err)


if __name__ == '__main__':
    unittest.main()
