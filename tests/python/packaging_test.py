"""pip install --no-build-isolation --no-index bindings/python into a fresh
`python3 -m venv --system-site-packages`, as the README tells users to: the package imports from
the venv alone (no PYTHONPATH, outside the source tree) with the libshmetrics.so.1 it carries, has
the CMake project's version, leaves the checkout as it was, and both native mode and the installed
shmetrics-run count into a region that the real gateway reads back exactly.

The ctest entry sets SHMETRICS_VERSION, the CMake project's version.
"""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

import gateway_support

SOURCE_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
PACKAGE_SOURCE = os.path.join(SOURCE_DIR, 'bindings', 'python')
PIP_TIMEOUT = 600  # compiles the client and the extension: about 10 s to 2 min on 2 cores

# Run by the venv's interpreter: what it imported, from where, and one count in native mode.
NATIVE_PROBE = '''
import importlib.metadata
import json
import sys

import shmetrics

shmetrics.attach(sys.argv[1])
shmetrics.Counter('pip_requests_total', 'Requests.', ['method']).labels('GET').inc(7)
print(json.dumps({
    'package': shmetrics.__file__,
    'version': importlib.metadata.version('shmetrics'),
    'libraries': sorted({line.split()[-1] for line in open('/proc/self/maps')
                         if 'libshmetrics' in line}),
}))
'''


def venv_env(**changes):
    """An environment in which nothing but the venv provides shmetrics: no PYTHONPATH (ctest's
    points at the build tree), no region, no pip cache or version check outside the venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'SHMETRICS_REGION', 'PYTHONHOME')}
    env.update(PIP_NO_CACHE_DIR='1', PIP_DISABLE_PIP_VERSION_CHECK='1',
               CMAKE_BUILD_PARALLEL_LEVEL=env.get('CMAKE_BUILD_PARALLEL_LEVEL', '2'))
    env.update(changes)
    return env


def leftovers():
    """What setuptools would leave in the checkout if its build tree were not temporary."""
    return sorted(name for name in os.listdir(PACKAGE_SOURCE)
                  if name == 'build' or name.endswith('.egg-info'))


class PipInstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        scratch = tempfile.TemporaryDirectory(prefix='shmetrics-pip-test-')
        cls.addClassCleanup(scratch.cleanup)
        cls.dir = scratch.name
        cls.venv = os.path.join(cls.dir, 'venv')
        cls.python = os.path.join(cls.venv, 'bin', 'python')
        cls.leftovers_before = leftovers()
        subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', cls.venv],
                       env=venv_env(), check=True, timeout=120, capture_output=True)
        cls.pip = subprocess.run(
            [cls.python, '-m', 'pip', 'install', '--no-build-isolation', '--no-index',
             PACKAGE_SOURCE], env=venv_env(), cwd=cls.dir, capture_output=True, text=True,
            timeout=PIP_TIMEOUT)

    def setUp(self):
        self.assertEqual(self.pip.returncode, 0,
                         f'pip install failed:\n{self.pip.stdout}\n{self.pip.stderr}')
        self.region = gateway_support.unique_region('pip')
        self.gateway = gateway_support.Gateway(self.region)
        self.addCleanup(gateway_support.remove_region, self.region)
        self.addCleanup(self.gateway.close)

    def test_package_from_the_venv_alone_counts_into_the_region(self):
        done = subprocess.run([self.python, '-c', NATIVE_PROBE, self.region], env=venv_env(),
                              cwd=self.dir, capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        probe = json.loads(done.stdout.strip().splitlines()[-1])
        package_dir = os.path.dirname(probe['package'])
        self.assertTrue(package_dir.startswith(self.venv + os.sep), probe['package'])
        self.assertEqual(os.path.basename(package_dir), 'shmetrics')
        # The library bundled beside _native, not the build tree's or an installed one.
        self.assertEqual(probe['libraries'], [os.path.join(package_dir, 'libshmetrics.so.1')])
        self.assertEqual(probe['version'], os.environ['SHMETRICS_VERSION'])
        samples = self.gateway.wait_for(
            lambda s: s.get(('pip_requests_total', frozenset({('method', 'GET')}))) == 7)
        self.assertEqual(samples.get(('pip_requests_total', frozenset({('method', 'GET')}))), 7)

    def test_installed_launcher_runs_an_unmodified_prometheus_client_program(self):
        launcher = os.path.join(self.venv, 'bin', 'shmetrics-run')
        self.assertTrue(os.access(launcher, os.X_OK), launcher)
        program = textwrap.dedent('''
            import sys
            import prometheus_client
            prometheus_client.Counter('pip_launched', 'Launched.').inc(3)
            print(sys.modules['shmetrics'].__file__)
        ''')
        done = subprocess.run([launcher, '--region', self.region, self.python, '-c', program],
                              env=venv_env(), cwd=self.dir, capture_output=True, text=True,
                              timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertNotIn('runs without shmetrics', done.stderr)
        self.assertTrue(done.stdout.strip().startswith(self.venv + os.sep), done.stdout)
        samples = self.gateway.wait_for(lambda s: s.get(('pip_launched_total', frozenset())) == 3)
        self.assertEqual(samples.get(('pip_launched_total', frozenset())), 3)

    def test_checkout_is_left_as_it_was(self):
        self.assertEqual(leftovers(), self.leftovers_before)


if __name__ == '__main__':
    unittest.main()
