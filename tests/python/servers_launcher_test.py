"""The same FastAPI app, unmodified and with no config at all, under
`shmetrics-run uvicorn --workers 4 app:app`: uvicorn spawns its workers as fresh interpreters and
has no exit hooks, yet every request is counted exactly once and the gateway serves each family
once, promtool-clean. SHMETRICS_RUN names the launcher in the build tree."""

import os
import unittest

import gateway_support
from servers import harness

LAUNCHER = os.environ.get('SHMETRICS_RUN', 'shmetrics-run')
WORKERS = 4
REQUESTS = 400


class LauncherUvicornTest(harness.ExpositionChecks, unittest.TestCase):
    def setUp(self):
        self.region = gateway_support.unique_region('launcher')
        self.addCleanup(gateway_support.remove_region, self.region)
        self.gateway = gateway_support.Gateway(self.region)
        self.addCleanup(self.gateway.close)

    def test_uvicorn_spawned_workers_count_every_request_once(self):
        # Debian's python3-uvicorn has no uvicorn script: the module is the same entry point.
        server = harness.start_server(
            lambda port: [LAUNCHER, harness.PYTHON, '-m', 'uvicorn', '--workers', str(WORKERS),
                          '--host', '127.0.0.1', '--port', str(port), 'app:app'],
            harness.server_env(SHMETRICS_REGION=self.region), cwd=harness.FASTAPI_APP)
        self.addCleanup(server.close)
        server.wait_until(lambda: self.gateway.value('workers_up') == WORKERS, 60,
                          f'{WORKERS} workers up')
        workload = harness.fastapi_workload(REQUESTS)
        traffic = harness.Traffic(server.port, workload).start().join(90)
        self.assertEqual(traffic.total_answered(), REQUESTS)
        self.assertEqual(set(traffic.worker_pids) - set(server.children()), set(),
                         'answered by a process that is not one of the workers')

        body = self.gateway.scrape_text()
        self.assert_clean_exposition(body, harness.FASTAPI_FAMILIES)
        samples = harness.normalized(gateway_support.parse_text(body))
        self.assertEqual(harness.sample_sum(samples, 'http_requests_total'), REQUESTS)
        self.assertEqual(harness.sample_sum(samples, 'http_request_duration_seconds_count'),
                         REQUESTS)
        self.assert_samples(samples, harness.fastapi_expected(workload, WORKERS))


if __name__ == '__main__':
    unittest.main()
