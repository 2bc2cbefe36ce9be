"""An unmodified Django site with django-prometheus (servers/django_app: its middlewares and urls)
under gunicorn's sync workers forked from a preloaded master (so all of them take requests from
the first), switched to shmetrics only by shmetrics.install() in
gunicorn.conf.py: the library's own counters, created in each worker, count every request once."""

import unittest

import gateway_support
from servers import harness

WORKERS = 4
REQUESTS = 200

DJANGO_FAMILIES = {
    'django_http_requests_before_middlewares': 'counter',
    'django_http_responses_before_middlewares': 'counter',
    'django_http_requests_total_by_method': 'counter',
    'django_http_responses_total_by_status': 'counter',
    'django_http_requests_latency_seconds_by_view_method': 'histogram',
    'django_http_requests_latency_including_middlewares_seconds': 'histogram',
    'django_http_requests_body_total_bytes': 'histogram',
}


class DjangoPrometheusTest(harness.ExpositionChecks, unittest.TestCase):
    def setUp(self):
        self.region = gateway_support.unique_region('django')
        self.addCleanup(gateway_support.remove_region, self.region)
        self.gateway = gateway_support.Gateway(self.region)
        self.addCleanup(self.gateway.close)

    def test_django_prometheus_counts_every_request_once(self):
        self.serve_and_check()

    def test_with_exemplar_storage_the_30_bucket_histogram_is_served_too(self):
        # django_http_requests_body_total_bytes has 30 bounds: more than fit with exemplars.
        self.serve_and_check(SHMETRICS_EXEMPLARS='1')

    def serve_and_check(self, **env):
        server = harness.start_server(
            lambda port: harness.gunicorn_argv(harness.DJANGO_APP, 'gunicorn.conf.py', port,
                                               workers=WORKERS, worker_class='sync',
                                               preload=True, app='shop.wsgi:application'),
            harness.server_env(SHMETRICS_REGION=self.region, **env))
        self.addCleanup(server.close)
        server.wait_until(lambda: len(server.children()) == WORKERS, 30, f'{WORKERS} workers')
        workload = [harness.Request('GET', '/hello', None, 200)] * REQUESTS
        traffic = harness.Traffic(server.port, workload, threads=4).start().join(90)
        self.assertEqual(traffic.total_answered(), REQUESTS)
        self.assertGreater(len(traffic.worker_pids), 1, 'one worker served everything')

        body = self.gateway.scrape_text()
        self.assert_clean_exposition(body, DJANGO_FAMILIES)
        samples = harness.normalized(gateway_support.parse_text(body))
        self.assert_samples(samples, {
            ('django_http_requests_total_by_method_total', frozenset({('method', 'GET')})):
                REQUESTS,
            ('django_http_responses_total_by_status_total', frozenset({('status', '200')})):
                REQUESTS,
            ('django_http_requests_before_middlewares_total', frozenset()): REQUESTS,
            ('django_http_responses_before_middlewares_total', frozenset()): REQUESTS,
            ('django_http_requests_body_total_bytes_count', frozenset()): REQUESTS,
            ('django_http_requests_body_total_bytes_bucket', frozenset({('le', float('inf'))})):
                REQUESTS,
        })
        self.assertEqual(harness.sample_sum(
            samples, 'django_http_requests_latency_seconds_by_view_method_count',
            view='shop.views.hello', method='GET'), REQUESTS)
        self.assertEqual(harness.sample_sum(
            samples, 'django_http_requests_latency_including_middlewares_seconds_count'),
            REQUESTS)


if __name__ == '__main__':
    unittest.main()
