"""A gunicorn worker of the FastAPI app killed with SIGKILL in the middle of traffic: while the
client keeps going and the gateway is scraped over and over, no counter ever goes down, the total
equals the requests the client saw answered, and the livesum gauges drop the dead worker's share:
workers_up falls to the three still alive (the master is stopped meanwhile, so that no
replacement hides the drop), then is four again with the replacement gunicorn starts."""

import os
import signal
import threading
import unittest

import gateway_support
from servers import harness

WORKERS = 4
REQUESTS = 800


class Scraper(threading.Thread):
    """Scrapes the gateway until stopped, keeping every scrape's samples."""

    def __init__(self, gateway):
        super().__init__(daemon=True)
        self.gateway = gateway
        self.scrapes = []
        self.errors = []
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            try:
                self.scrapes.append(harness.normalized(
                    gateway_support.parse_text(self.gateway.scrape_text())))
            except Exception as e:  # reported by the test
                self.errors.append(f'{type(e).__name__}: {e}')
            self._stop_event.wait(0.02)

    def stop(self):
        self._stop_event.set()
        self.join(10)


class KilledWorkerTest(harness.ExpositionChecks, unittest.TestCase):
    def setUp(self):
        self.region = gateway_support.unique_region('kill')
        self.addCleanup(gateway_support.remove_region, self.region)
        self.gateway = gateway_support.Gateway(self.region)
        self.addCleanup(self.gateway.close)

    def test_sigkilled_worker_keeps_its_counts_and_drops_its_livesum_share(self):
        server = harness.start_server(
            lambda port: harness.gunicorn_argv(harness.FASTAPI_APP, 'gunicorn.conf.py', port,
                                               workers=WORKERS),
            harness.server_env(SHMETRICS_REGION=self.region))
        self.addCleanup(server.close)
        server.wait_until(lambda: self.gateway.value('workers_up') == WORKERS, 60,
                          f'{WORKERS} workers up')
        workers_before = server.children()

        scraper = Scraper(self.gateway)
        scraper.start()
        self.addCleanup(scraper.stop)
        workload = harness.fastapi_workload(REQUESTS)
        traffic = harness.Traffic(server.port, workload).start()
        self.addCleanup(traffic.release)

        # Kill a worker that holds client connections and has answered requests, at a moment no
        # request of the client is inside it, while the other connections keep sending.
        connections = server.wait_until(
            lambda: (traffic.total_answered() >= REQUESTS // 4 and
                     None not in traffic.connection_pids().values() and
                     traffic.connection_pids()), 30, 'a quarter of the traffic answered')
        pids = list(connections.values())
        victim = max(set(pids), key=pids.count)
        self.assertIn(victim, workers_before)
        traffic.park_connections_of(victim)
        answered_by_victim = traffic.worker_pids[victim]
        # The master is stopped meanwhile, so no replacement hides the drop of the dead share.
        os.kill(server.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, server.pid, signal.SIGCONT)
        os.kill(victim, signal.SIGKILL)
        server.wait_until(lambda: victim not in server.children(), 10, 'the victim dead')
        traffic.release()
        answered_at_kill = traffic.total_answered()
        server.wait_until(lambda: self.gateway.value('workers_up') == WORKERS - 1, 10,
                          "the livesum gauge without the dead worker's share")
        self.assertEqual(len(server.children()), WORKERS - 1)
        os.kill(server.pid, signal.SIGCONT)
        traffic.join(90)
        self.assertLess(answered_at_kill, REQUESTS, 'the traffic ended before the kill')
        self.assertGreater(answered_by_victim, 0)
        self.assertEqual(traffic.total_answered(), REQUESTS)

        # gunicorn starts a replacement; the gateway folds the dead worker's slot away.
        server.wait_until(
            lambda: (len(server.children()) == WORKERS and
                     self.gateway.value('shmetrics_workers_dead_total') and
                     self.gateway.value('workers_up') == WORKERS), 30,
            'a replacement worker up and the dead one folded')
        self.assertNotIn(victim, server.children())
        scraper.stop()
        self.assertEqual(scraper.errors, [])
        final = self.gateway.scrape_text()
        self.assert_clean_exposition(final, harness.FASTAPI_FAMILIES)
        samples = harness.normalized(gateway_support.parse_text(final))
        self.assertEqual(harness.sample_sum(samples, 'http_requests_total'), REQUESTS)
        self.assert_samples(samples, harness.fastapi_expected(workload, WORKERS))

        # Across every scrape, before, during and after the kill: no counter series ever lower.
        scrapes = scraper.scrapes + [samples]
        self.assertGreater(len(scrapes), 10)
        monotonic = ('http_requests_total', 'http_request_duration_seconds_count',
                     'http_request_duration_seconds_bucket', 'http_request_size_bytes_count',
                     'echo_items_count')
        for before, after in zip(scrapes, scrapes[1:]):
            lower = {key: (value, after.get(key)) for key, value in before.items()
                     if key[0] in monotonic and not after.get(key, -1) >= value}
            self.assertEqual(lower, {}, 'counter series that went down between two scrapes')
        folded = [s for s in scrapes if s.get(('shmetrics_workers_dead_total', frozenset()))]
        self.assertTrue(folded)
        self.assertLessEqual(max(s[('workers_up', frozenset())] for s in folded), WORKERS,
                             "a scrape after the fold still counted the dead worker's share")
        totals = [harness.sample_sum(s, 'http_requests_total') for s in scrapes]
        self.assertEqual(totals[-1], REQUESTS)
        self.assertTrue(any(0 < t < REQUESTS for t in totals), 'no scrape during the traffic')


if __name__ == '__main__':
    unittest.main()
