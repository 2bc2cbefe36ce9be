"""Errors that need a process of their own (the attachment is per process): no region, a region
that cannot be attached, a definition that conflicts with another process's family. Each is a
Python exception with a message that says what is wrong, never a crash."""

import errno
import json
import os
import subprocess
import sys
import unittest

import gateway_support
import shmetrics

# Runs `code` in a fresh interpreter; prints {"ok": ...} or the exception's type, text and errno.
_HARNESS = '''
import json, sys
import shmetrics
try:
    exec(sys.argv[1])
    print(json.dumps({"ok": True}))
except Exception as e:
    print(json.dumps({"type": type(e).__name__, "message": str(e),
                      "errno": getattr(e, "errno", None)}))
'''


def run_python(code, **env):
    environment = {k: v for k, v in os.environ.items() if k != 'SHMETRICS_REGION'}
    environment.update(env)
    done = subprocess.run([sys.executable, '-c', _HARNESS, code], env=environment,
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f'child exited {done.returncode}: {done.stderr}')
    return json.loads(done.stdout.strip().splitlines()[-1])


class RegionErrorsTest(unittest.TestCase):
    def test_no_region_configured(self):
        r = run_python("shmetrics.Counter('x_total', 'X.')")
        self.assertEqual(r['type'], 'RegionError')
        self.assertIn('SHMETRICS_REGION', r['message'])
        self.assertIn('shmetrics.attach', r['message'])

    def test_region_from_the_environment(self):
        region = gateway_support.unique_region('env')
        self.addCleanup(gateway_support.remove_region, region)
        gateway = gateway_support.Gateway(region)
        self.addCleanup(gateway.close)
        r = run_python("shmetrics.Counter('from_env_total', 'X.').inc(5)", SHMETRICS_REGION=region)
        self.assertEqual(r, {'ok': True})
        self.assertEqual(gateway.value('from_env_total'), 5)

    def test_something_else_holds_the_name(self):
        region = gateway_support.unique_region('dir')
        os.mkdir('/dev/shm/' + region)
        self.addCleanup(os.rmdir, '/dev/shm/' + region)
        r = run_python(f"shmetrics.attach('{region}')")
        self.assertEqual(r['type'], 'RegionError')
        self.assertEqual(r['errno'], errno.EEXIST)
        self.assertIn(region, r['message'])

    def test_a_file_that_is_not_a_region(self):
        region = gateway_support.unique_region('junk')
        path = '/dev/shm/' + region
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.write(fd, b'not a region' * 4096)
        os.close(fd)
        self.addCleanup(os.unlink, path)
        r = run_python(f"shmetrics.attach('{region}')")
        self.assertEqual(r['type'], 'RegionError')
        self.assertEqual(r['errno'], errno.EPROTO)
        self.assertIn('not a shmetrics region', r['message'])
        self.assertIn(region, r['message'])


class ConflictWithAnotherProcessTest(unittest.TestCase):
    def test_type_and_label_conflicts_with_a_family_in_the_region(self):
        region = gateway_support.unique_region('conflict')
        self.addCleanup(gateway_support.remove_region, region)
        gateway = gateway_support.Gateway(region)
        self.addCleanup(gateway.close)
        shmetrics.attach(region)
        shmetrics.Counter('shared_total', 'Shared.', ['k']).labels('a').inc()
        for code in ("shmetrics.Gauge('shared_total', 'Shared.', ['k'])",
                     "shmetrics.Counter('shared_total', 'Shared.', ['k', 'j'])",
                     "shmetrics.Counter('shared', 'Shared.', ['other'])"):
            with self.subTest(code=code):
                r = run_python(code, SHMETRICS_REGION=region)
                self.assertEqual(r['type'], 'ValueError')
                self.assertIn('shared', r['message'])
        # The same definition in another process is the same family.
        r = run_python("shmetrics.Counter('shared_total', 'Shared.', ['k']).labels('a').inc(2)",
                       SHMETRICS_REGION=region)
        self.assertEqual(r, {'ok': True})
        self.assertEqual(gateway.value('shared_total', k='a'), 3)


if __name__ == '__main__':
    unittest.main()
