"""The native-mode API in one process: names, labels, every write method, decorators and context
managers, exemplars, gauge modes and the prometheus_client error texts, each value read back
through the real gateway."""

import os
import threading
import time
import unittest

import gateway_support
import shmetrics

gateway = None


def setUpModule():
    global gateway
    region = gateway_support.unique_region('api')
    unittest.addModuleCleanup(gateway_support.remove_region, region)
    gateway = gateway_support.Gateway(region)
    unittest.addModuleCleanup(gateway.close)
    shmetrics.attach(region, exemplars=True)


class NamingTest(unittest.TestCase):
    def test_counter_name_gets_total_once(self):
        shmetrics.Counter('jobs_total', 'Jobs.').inc()
        shmetrics.Counter('tasks', 'Tasks.').inc(2)
        self.assertEqual(gateway.value('jobs_total'), 1)
        self.assertEqual(gateway.value('tasks_total'), 2)
        self.assertIsNone(gateway.value('jobs_total_total'))

    def test_namespace_subsystem_and_unit_build_the_name(self):
        h = shmetrics.Histogram('latency', 'Latency.', namespace='app', subsystem='http',
                                unit='seconds', buckets=[0.1, 1])
        self.assertEqual(str(h), 'histogram:app_http_latency_seconds')
        for v in (0.05, 0.5, 5):
            h.observe(v)
        s = gateway.samples()
        bucket = 'app_http_latency_seconds_bucket'
        self.assertEqual(s[(bucket, frozenset({('le', '0.1')}))], 1)
        self.assertEqual(s[(bucket, frozenset({('le', '1.0')}))], 2)
        self.assertEqual(s[(bucket, frozenset({('le', '+Inf')}))], 3)
        self.assertEqual(s[('app_http_latency_seconds_count', frozenset())], 3)
        self.assertAlmostEqual(s[('app_http_latency_seconds_sum', frozenset())], 5.55)
        # A unit already at the end of the name is not added twice.
        c = shmetrics.Counter('sent_bytes_total', 'Bytes.', unit='bytes')
        c.inc(10)
        self.assertEqual(gateway.value('sent_bytes_total'), 10)

    def test_invalid_names_raise_prometheus_client_texts(self):
        cases = [
            (lambda: shmetrics.Counter('1bad', 'x'), 'Invalid metric name: 1bad'),
            (lambda: shmetrics.Gauge('ok', 'x', namespace='a-b'), 'Invalid metric name: a-b_ok'),
            (lambda: shmetrics.Counter('ok_c', 'x', ['1x']), 'Invalid label metric name: 1x'),
            (lambda: shmetrics.Counter('ok_c', 'x', ['__x']), 'Reserved label metric name: __x'),
            (lambda: shmetrics.Histogram('ok_h', 'x', ['le']), 'Reserved label metric name: le'),
            (lambda: shmetrics.Summary('ok_s', 'x', ['quantile']),
             'Reserved label metric name: quantile'),
            (lambda: shmetrics.Gauge('ok_g', 'x', multiprocess_mode='bogus'),
             'Invalid multiprocess mode: bogus'),
            (lambda: shmetrics.Histogram('ok_h', 'x', buckets=[2, 1]), 'Buckets not in sorted order'),
            (lambda: shmetrics.Histogram('ok_h', 'x', buckets=[float('inf')]),
             'Must have at least two buckets'),
        ]
        for make, text in cases:
            with self.subTest(text=text):
                with self.assertRaises(ValueError) as cm:
                    make()
                self.assertEqual(str(cm.exception), text)

    def test_same_definition_twice_is_the_same_family(self):
        a = shmetrics.Counter('twice_total', 'Twice.', ['k'])
        b = shmetrics.Counter('twice_total', 'Twice.', ['k'])
        a.labels('x').inc()
        b.labels('x').inc()
        self.assertEqual(gateway.value('twice_total', k='x'), 2)

    def test_conflicting_definition_raises_value_error_naming_the_metric(self):
        shmetrics.Counter('conflict_total', 'Conflict.', ['k'])
        for make in (lambda: shmetrics.Gauge('conflict_total', 'Conflict.'),
                     lambda: shmetrics.Counter('conflict_total', 'Other help.', ['k']),
                     lambda: shmetrics.Counter('conflict_total', 'Conflict.', ['k', 'j'])):
            with self.assertRaises(ValueError) as cm:
                make()
            self.assertIn('conflict', str(cm.exception))


class LabelsTest(unittest.TestCase):
    def test_positional_and_keyword_labels_reach_one_series(self):
        c = shmetrics.Counter('http_requests_total', 'Requests.', ['method', 'code'])
        c.labels('GET', '200').inc()
        c.labels(method='GET', code='200').inc()
        c.labels(code=200, method='GET').inc()  # values become str, as in prometheus_client
        c.labels('GET', 200).inc(0.5)
        c.labels('POST', '500').inc(3)
        self.assertEqual(gateway.value('http_requests_total', method='GET', code='200'), 3.5)
        self.assertEqual(gateway.value('http_requests_total', method='POST', code='500'), 3)

    def test_children_are_cached_per_label_tuple(self):
        c = shmetrics.Counter('cached_total', 'Cached.', ['a', 'b'])
        child = c.labels('x', 'y')
        self.assertIs(c.labels('x', 'y'), child)
        self.assertIs(c.labels(b='y', a='x'), child)
        self.assertIsNot(c.labels('x', 'z'), child)
        # Equal keys that print differently are different series.
        self.assertIsNot(c.labels(1, 'y'), c.labels(True, 'y'))
        self.assertIs(c.labels(1, 'y'), c.labels('1', 'y'))
        self.assertIsNot(c.labels(1.0, 'y'), c.labels(1, 'y'))
        self.assertEqual(c.labels(True, 'y')._labelvalues, ('True', 'y'))
        self.assertEqual(c.labels(1.0, 'y')._labelvalues, ('1.0', 'y'))
        # An unhashable value is turned into str like any other.
        c.labels(['l'], 'y').inc()
        self.assertEqual(gateway.value('cached_total', a="['l']", b='y'), 1)

    def test_label_errors_raise_prometheus_client_texts(self):
        c = shmetrics.Counter('label_errors_total', 'Errors.', ['a', 'b'])
        c.labels('x', 'y')  # the errors below must come with a child in the cache too
        plain = shmetrics.Counter('plain_total', 'Plain.')
        cases = [
            (lambda: c.labels('x'), 'Incorrect label count'),
            (lambda: c.labels('x', 'y', 'z'), 'Incorrect label count'),
            (lambda: c.labels(a='x'), 'Incorrect label names'),
            (lambda: c.labels(a='x', c='y'), 'Incorrect label names'),
            (lambda: c.labels('x', b='y'), "Can't pass both *args and **kwargs"),
            (lambda: plain.labels('x'),
             'No label names were set when constructing counter:plain'),
            (lambda: c.labels('x', 'y').labels('x', 'y'),
             "counter:label_errors already has labels set ({'a': 'x', 'b': 'y'}); "
             'can not chain calls to .labels()'),
            (lambda: c.inc(), 'counter metric is missing label values'),
            (lambda: c.count_exceptions(), 'counter metric is missing label values'),
            (lambda: c.labels('x', 'y').inc(-1),
             'Counters can only be incremented by non-negative amounts.'),
        ]
        for call, text in cases:
            with self.subTest(text=text):
                with self.assertRaises(ValueError) as cm:
                    call()
                self.assertEqual(str(cm.exception), text)
        g = shmetrics.Gauge('label_errors_g', 'Errors.', ['a'])
        h = shmetrics.Histogram('label_errors_h', 'Errors.', ['a'])
        s = shmetrics.Summary('label_errors_s', 'Errors.', ['a'])
        for call, text in [(g.inc, 'gauge'), (g.dec, 'gauge'), (lambda: g.set(1), 'gauge'),
                           (g.set_to_current_time, 'gauge'), (g.track_inprogress, 'gauge'),
                           (lambda: h.observe(1), 'histogram'), (lambda: s.observe(1), 'summary')]:
            with self.assertRaises(ValueError) as cm:
                call()
            self.assertEqual(str(cm.exception), text + ' metric is missing label values')

    def test_threads_of_one_process_sum_exactly(self):
        child = shmetrics.Counter('threaded_total', 'Threads.', ['t']).labels('all')
        h = shmetrics.Histogram('threaded_h', 'Threads.', buckets=[1])

        def work():
            for _ in range(10000):
                child.inc()
                h.observe(0.5)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(gateway.value('threaded_total', t='all'), 40000)
        self.assertEqual(gateway.value('threaded_h_count'), 40000)


class WriteMethodsTest(unittest.TestCase):
    def test_gauge_inc_dec_set_and_current_time(self):
        g = shmetrics.Gauge('queue_depth', 'Depth.', multiprocess_mode='livesum')
        g.set(10)
        g.inc()
        g.inc(2.5)
        g.dec()
        g.dec(0.5)
        self.assertEqual(gateway.value('queue_depth'), 12)
        t = shmetrics.Gauge('last_run', 'Time.', multiprocess_mode='max')
        before = time.time()
        t.set_to_current_time()
        after = time.time()
        self.assertGreaterEqual(gateway.value('last_run'), before - 0.01)
        self.assertLessEqual(gateway.value('last_run'), after + 0.01)

    def test_summary_observes_count_and_sum(self):
        s = shmetrics.Summary('payload_bytes', 'Payload.', ['route'])
        s.labels('/a').observe(100)
        s.labels(route='/a').observe(28)
        self.assertEqual(gateway.value('payload_bytes_count', route='/a'), 2)
        self.assertEqual(gateway.value('payload_bytes_sum', route='/a'), 128)

    def test_every_multiprocess_mode_maps_to_a_gauge_mode(self):
        pid = str(os.getpid())
        for mode in ('all', 'liveall', 'sum', 'livesum', 'max', 'livemax', 'min', 'livemin',
                     'mostrecent', 'livemostrecent'):
            with self.subTest(mode=mode):
                g = shmetrics.Gauge('mode_' + mode, 'Mode.', multiprocess_mode=mode)
                g.set(4)
                if mode.endswith('all'):  # one series per worker
                    self.assertEqual(gateway.value('mode_' + mode, pid=pid), 4)
                else:
                    self.assertEqual(gateway.value('mode_' + mode), 4)
                if mode.endswith('mostrecent'):
                    with self.assertRaises(ValueError):
                        g.inc()
                    with self.assertRaises(ValueError):
                        g.dec()
                    g.set(5)
                    self.assertEqual(gateway.value('mode_' + mode), 5)

    def test_a_gauge_mode_conflict_is_a_definition_conflict(self):
        shmetrics.Gauge('mode_conflict', 'Mode.', multiprocess_mode='max')
        with self.assertRaises(ValueError):
            shmetrics.Gauge('mode_conflict', 'Mode.', multiprocess_mode='min')


class DecoratorsAndContextManagersTest(unittest.TestCase):
    def test_gauge_track_inprogress(self):
        g = shmetrics.Gauge('inprogress', 'In progress.', multiprocess_mode='livesum')
        with g.track_inprogress():
            self.assertEqual(gateway.value('inprogress'), 1)
        self.assertEqual(gateway.value('inprogress'), 0)

        @g.track_inprogress()
        def work(x):
            self.assertEqual(gateway.value('inprogress'), 1)
            return x * 2

        self.assertEqual(work(21), 42)
        self.assertEqual(work.__name__, 'work')
        self.assertEqual(gateway.value('inprogress'), 0)

    def test_time_observes_durations(self):
        h = shmetrics.Histogram('op_seconds', 'Op.', buckets=[0.001, 10])
        s = shmetrics.Summary('op2_seconds', 'Op.')
        g = shmetrics.Gauge('op3_seconds', 'Op.', multiprocess_mode='max')
        for metric in (h, s, g):
            with metric.time():
                time.sleep(0.02)

            @metric.time()
            def slept():
                time.sleep(0.02)

            slept()
        self.assertEqual(gateway.value('op_seconds_count'), 2)
        self.assertEqual(gateway.value('op_seconds_bucket', le='0.001'), 0)
        self.assertEqual(gateway.value('op_seconds_bucket', le='10.0'), 2)
        self.assertGreaterEqual(gateway.value('op_seconds_sum'), 0.04)
        self.assertEqual(gateway.value('op2_seconds_count'), 2)
        self.assertGreaterEqual(gateway.value('op2_seconds_sum'), 0.04)
        self.assertGreaterEqual(gateway.value('op3_seconds'), 0.02)
        self.assertLess(gateway.value('op3_seconds'), 5)

    def test_time_on_a_labelled_parent_takes_labels(self):
        h = shmetrics.Histogram('labelled_op_seconds', 'Op.', ['op'])
        with h.time() as timer:
            timer.labels('read')
        self.assertEqual(gateway.value('labelled_op_seconds_count', op='read'), 1)

    def test_count_exceptions(self):
        c = shmetrics.Counter('failures_total', 'Failures.')
        with self.assertRaises(KeyError):
            with c.count_exceptions():
                raise KeyError('x')
        with c.count_exceptions():
            pass
        with self.assertRaises(KeyError):
            with c.count_exceptions(ValueError):  # another type: not counted, still raised
                raise KeyError('x')

        @c.count_exceptions((ValueError, TypeError))
        def fail(kind):
            raise kind('x')

        for kind in (ValueError, TypeError):
            with self.assertRaises(kind):
                fail(kind)
        self.assertEqual(gateway.value('failures_total'), 3)


class ExemplarTest(unittest.TestCase):
    def test_counter_and_histogram_exemplars_reach_openmetrics(self):
        c = shmetrics.Counter('exemplary_total', 'Exemplars.', ['k'])
        c.labels('a').inc(exemplar={'trace_id': 'abc123'})
        c.labels('a').inc(2, {'trace_id': 'def456'})
        h = shmetrics.Histogram('exemplary_seconds', 'Exemplars.', buckets=[0.1, 1])
        h.observe(0.5, exemplar={'trace_id': 'h1'})
        h.observe(amount=0.05)
        families = gateway.openmetrics_families()
        [total] = [s for s in families['exemplary'].samples if s.name == 'exemplary_total']
        self.assertEqual(total.value, 3)
        self.assertEqual(total.exemplar.labels, {'trace_id': 'def456'})
        self.assertEqual(total.exemplar.value, 2)
        buckets = {s.labels['le']: s for s in families['exemplary_seconds'].samples
                   if s.name == 'exemplary_seconds_bucket'}
        self.assertEqual(buckets['1.0'].value, 2)
        self.assertEqual(buckets['1.0'].exemplar.labels, {'trace_id': 'h1'})
        self.assertEqual(buckets['1.0'].exemplar.value, 0.5)
        self.assertIsNone(buckets['0.1'].exemplar)

    def test_exemplar_valid_for_prometheus_client_but_over_the_region_slot_is_a_counted_drop(self):
        # prometheus_client counts 128 characters of names and values; the region's exemplar slot
        # holds 128 bytes including a length byte per name and value.
        c = shmetrics.Counter('long_exemplar_total', 'Exemplars.')
        dropped = gateway.value('shmetrics_dropped_updates_total', reason='exemplar') or 0
        c.inc(1, exemplar={f'l{i}': 'v' for i in range(30)})  # 90 characters, 150 bytes stored
        self.assertEqual(gateway.value('long_exemplar_total'), 1)
        self.assertEqual(gateway.value('shmetrics_dropped_updates_total', reason='exemplar'),
                         dropped + 1)

    def test_invalid_exemplars_raise(self):
        c = shmetrics.Counter('bad_exemplar_total', 'Exemplars.')
        h = shmetrics.Histogram('bad_exemplar_seconds', 'Exemplars.')
        for write in (lambda e: c.inc(1, exemplar=e), lambda e: h.observe(1, exemplar=e)):
            with self.assertRaises(ValueError) as cm:
                write({'1a': 'x'})
            self.assertEqual(str(cm.exception), 'Invalid label metric name: 1a')
            with self.assertRaises(ValueError) as cm:
                write({'a' * 100: 'b' * 29})
            self.assertIn('exceeding the limit of 128', str(cm.exception))
            with self.assertRaises(TypeError):
                write({'a': 1})
        self.assertEqual(gateway.value('bad_exemplar_total'), 0)  # a refused call writes nothing
        self.assertEqual(gateway.value('bad_exemplar_seconds_count'), 0)


class InfoAndEnumTest(unittest.TestCase):
    def test_info_is_a_gauge_of_its_label_set(self):
        i = shmetrics.Info('nat_build', 'Build.', ['service'])
        with self.assertRaisesRegex(ValueError, 'info metric is missing label values'):
            i.info({'version': '1'})
        child = i.labels(service='api')
        child.info({'version': '1.0', 'python': '3.11'})
        self.assertEqual(gateway.value('nat_build_info', service='api', version='1.0',
                                       python='3.11'), 1)
        child.info({'version': '1.1', 'python': '3.11'})
        self.assertEqual(gateway.value('nat_build_info', service='api', version='1.1',
                                       python='3.11'), 1)
        self.assertEqual(gateway.value('nat_build_info', service='api', version='1.0',
                                       python='3.11'), 0)
        for bad, text in (({'service': 'x'}, 'Overlapping labels for Info metric'),
                          ({'1x': 'y'}, 'Invalid label metric name: 1x'),
                          ({'__x': 'y'}, 'Reserved label metric name: __x'),
                          ({'version': '2'}, 'one set of keys')):
            with self.assertRaisesRegex(ValueError, text):
                child.info(bad)

    def test_enum_sets_one_state(self):
        e = shmetrics.Enum('nat_phase', 'Phase.', states=['idle', 'busy', 'done'])
        self.assertEqual(gateway.value('nat_phase', nat_phase='idle'), 1)
        e.state('busy')
        s = gateway.samples()
        self.assertEqual([s[('nat_phase', frozenset({('nat_phase', st)}))]
                          for st in ('idle', 'busy', 'done')], [0, 1, 0])
        with self.assertRaises(ValueError):
            e.state('bogus')
        with self.assertRaisesRegex(ValueError, 'No states provided for Enum metric: nat_x'):
            shmetrics.Enum('nat_x', 'x')
        with self.assertRaisesRegex(ValueError, 'Overlapping labels for Enum metric: nat_y'):
            shmetrics.Enum('nat_y', 'x', ['nat_y'], states=['a'])
        labelled = shmetrics.Enum('nat_job', 'Job.', ['job'], states=['a', 'b'])
        labelled.labels('j1').state('b')
        self.assertEqual(gateway.value('nat_job', job='j1', nat_job='b'), 1)
        self.assertEqual(gateway.value('nat_job', job='j1', nat_job='a'), 0)


class ExemplarStorageTest(unittest.TestCase):
    def test_a_histogram_too_wide_for_exemplars_is_registered_without_them(self):
        bounds = [float(i) for i in range(1, 31)]  # django-prometheus's body sizes have 30
        with self.assertWarnsRegex(RuntimeWarning, 'registered without exemplars'):
            h = shmetrics.Histogram('nat_wide_bytes', 'Wide.', buckets=bounds)
        before = gateway.value('shmetrics_dropped_updates_total', reason='exemplar')
        h.observe(2.5, exemplar={'trace_id': 'w'})
        self.assertEqual(gateway.value('nat_wide_bytes_bucket', le='3.0'), 1)
        self.assertEqual(gateway.value('shmetrics_dropped_updates_total', reason='exemplar'),
                         before + 1)
        narrow = shmetrics.Histogram('nat_narrow_bytes', 'Narrow.', buckets=bounds[:10])
        narrow.observe(2.5, exemplar={'trace_id': 'n'})
        om = gateway.openmetrics_families()['nat_narrow_bytes']
        self.assertEqual([s.exemplar.labels for s in om.samples if s.exemplar], [{'trace_id': 'n'}])


class AttachTest(unittest.TestCase):
    def test_attach_again_same_region_is_fine_another_raises(self):
        shmetrics.attach(gateway.region)
        with self.assertRaises(shmetrics.RegionError) as cm:
            shmetrics.attach(gateway.region + '-other')
        self.assertIn(gateway.region, str(cm.exception))


if __name__ == '__main__':
    unittest.main()
