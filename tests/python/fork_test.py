"""Metrics created before os.fork() (gunicorn --preload) written by forked workers: each writes
its own slot, nothing is counted twice, a SIGKILLed worker's counts stay, and livesum gauges
drop its share. Totals read back through the real gateway."""

import os
import signal
import unittest

import gateway_support
import shmetrics

WORKERS = 4


def amount(i):
    return 1000 * (i + 1)


class ForkTest(unittest.TestCase):
    def setUp(self):
        self.region = gateway_support.unique_region('fork')
        self.gateway = gateway_support.Gateway(self.region)
        self.addCleanup(gateway_support.remove_region, self.region)
        self.addCleanup(self.gateway.close)

    def _fork_worker(self, body):
        """A child that runs body(), reports on `ready`, then waits for `release` to exit 0."""
        ready_r, ready_w = os.pipe()
        release_r, release_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(ready_r)
                os.close(release_w)
                body()
                os.write(ready_w, b'x')
                os.read(release_r, 1)
                code = 0
            finally:
                os._exit(code)  # never back into unittest in the child
        os.close(ready_w)
        os.close(release_r)
        self.assertEqual(os.read(ready_r, 1), b'x', 'worker died before it was ready')
        os.close(ready_r)
        return pid, release_w

    def test_preforked_workers_sum_exactly_and_a_killed_one_keeps_its_counts(self):
        shmetrics.attach(self.region)
        jobs = shmetrics.Counter('jobs_total', 'Jobs.', ['kind'])
        busy = shmetrics.Gauge('busy_workers', 'Busy.', multiprocess_mode='livesum')
        sizes = shmetrics.Histogram('job_size', 'Sizes.', buckets=[10, 100])
        resolved = jobs.labels('batch')  # resolved in the parent, used in the children
        resolved.inc(7)  # the parent's own count, before fork: must not be counted again

        workers = []
        for i in range(WORKERS):
            def body(i=i):
                busy.inc()
                for _ in range(amount(i)):
                    resolved.inc()
                    sizes.observe(50)
                jobs.labels(kind='worker').inc(i + 1)  # a child resolved after fork

            workers.append(self._fork_worker(body))

        expected_jobs = 7 + sum(amount(i) for i in range(WORKERS))
        expected_sizes = sum(amount(i) for i in range(WORKERS))
        expected_worker = sum(i + 1 for i in range(WORKERS))
        s = self.gateway.samples()
        self.assertEqual(s[('jobs_total', frozenset({('kind', 'batch')}))], expected_jobs)
        self.assertEqual(s[('jobs_total', frozenset({('kind', 'worker')}))], expected_worker)
        self.assertEqual(s[('job_size_count', frozenset())], expected_sizes)
        self.assertEqual(s[('job_size_bucket', frozenset({('le', '100.0')}))], expected_sizes)
        self.assertEqual(s[('busy_workers', frozenset())], WORKERS)

        killed_pid, killed_release = workers[0]
        os.kill(killed_pid, signal.SIGKILL)
        _, status = os.waitpid(killed_pid, 0)
        self.assertTrue(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL)
        os.close(killed_release)

        # Every scrape until the gateway folds the dead worker keeps the counter exact.
        seen = []

        def busy_dropped(samples):
            seen.append(samples[('jobs_total', frozenset({('kind', 'batch')}))])
            return samples.get(('busy_workers', frozenset())) == WORKERS - 1

        s = self.gateway.wait_for(busy_dropped)
        self.assertEqual(s[('busy_workers', frozenset())], WORKERS - 1)
        self.assertEqual(set(seen), {expected_jobs})

        for pid, release in workers[1:]:
            os.write(release, b'x')
            os.close(release)
            _, status = os.waitpid(pid, 0)
            self.assertTrue(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
        s = self.gateway.wait_for(lambda s: s.get(('busy_workers', frozenset())) == 0)
        self.assertEqual(s[('busy_workers', frozenset())], 0)
        self.assertEqual(s[('jobs_total', frozenset({('kind', 'batch')}))], expected_jobs)
        self.assertEqual(s[('jobs_total', frozenset({('kind', 'worker')}))], expected_worker)
        self.assertEqual(s[('job_size_count', frozenset())], expected_sizes)
        self.assertEqual(s[('job_size_sum', frozenset())], 50 * expected_sizes)


if __name__ == '__main__':
    unittest.main()
