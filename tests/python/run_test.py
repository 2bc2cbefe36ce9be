"""shmetrics-run from the build tree: an unmodified prometheus_client program, and the fresh
interpreters it spawns, count into the region (exact totals read back through the real gateway);
the sitecustomize it shadows still runs; a process that cannot install the backend says so in one
line and goes on; usage errors, a missing region and a missing command exit 2, 2 and 127.

The ctest entry sets SHMETRICS_RUN, the launcher in the build tree.
"""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

import gateway_support

LAUNCHER = os.environ.get('SHMETRICS_RUN', 'shmetrics-run')
BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.realpath(LAUNCHER)), 'shmetrics',
                             '_bootstrap')

# A prometheus_client program with no shmetrics in it. Three workers are fresh interpreters
# (multiprocessing's 'spawn', as uvicorn starts its workers), each re-creating JOBS when it imports
# this file as __mp_main__ and incrementing it; the parent increments it too.
CHILD = '''
import json
import multiprocessing
import os
import sys

import prometheus_client

JOBS = prometheus_client.Counter('jobs', 'Jobs.', ['origin'])


def work(amount, queue):
    JOBS.labels('spawned').inc(amount)
    queue.put('shmetrics' in sys.modules)


if __name__ == '__main__':
    JOBS.labels('parent').inc(5)
    context = multiprocessing.get_context('spawn')
    queue = context.Queue()
    workers = [context.Process(target=work, args=(10 * (i + 1), queue)) for i in range(3)]
    for w in workers:
        w.start()
    installed = [queue.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    print(json.dumps({'pid': os.getpid(), 'parent_installed': 'shmetrics' in sys.modules,
                      'spawned_installed': installed,
                      'exitcodes': [w.exitcode for w in workers]}))
'''


def launcher_env(**changes):
    """The test's environment (PYTHONPATH at the build tree) without a region, plus changes; a
    value of None removes the variable."""
    env = {k: v for k, v in os.environ.items() if k != 'SHMETRICS_REGION'}
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_launcher(args, env, cwd=None, timeout=120):
    return subprocess.run([LAUNCHER] + args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


class LauncherTestCase(unittest.TestCase):
    def setUp(self):
        self.region = gateway_support.unique_region('run')
        self.gateway = gateway_support.Gateway(self.region)
        self.addCleanup(gateway_support.remove_region, self.region)
        self.addCleanup(self.gateway.close)
        scratch = tempfile.TemporaryDirectory(prefix='shmetrics-run-test-')
        self.addCleanup(scratch.cleanup)
        self.dir = scratch.name

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(textwrap.dedent(text))
        return path

    def assertNoWarning(self, stderr):
        self.assertNotIn('runs without shmetrics', stderr)


class RunTest(LauncherTestCase):
    def test_program_and_its_spawned_interpreters_count_exactly(self):
        child = self.write('child.py', CHILD)
        launcher = subprocess.Popen([LAUNCHER, sys.executable, child], cwd=self.dir,
                                    env=launcher_env(SHMETRICS_REGION=self.region),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = launcher.communicate(timeout=120)
        finally:
            if launcher.poll() is None:
                launcher.kill()
                launcher.communicate(timeout=10)
        self.assertEqual(launcher.returncode, 0, stderr)
        self.assertNoWarning(stderr)
        report = json.loads(stdout.strip().splitlines()[-1])
        self.assertEqual(report['pid'], launcher.pid, 'the launcher execs the command')
        self.assertEqual(report['exitcodes'], [0, 0, 0])
        self.assertEqual(report['spawned_installed'], [True, True, True])
        self.assertTrue(report['parent_installed'])

        def exact(samples):
            return (samples.get(('jobs_total', frozenset({('origin', 'parent')}))) == 5 and
                    samples.get(('jobs_total', frozenset({('origin', 'spawned')}))) == 60)

        samples = self.gateway.wait_for(exact)
        self.assertEqual(samples.get(('jobs_total', frozenset({('origin', 'parent')}))), 5)
        self.assertEqual(samples.get(('jobs_total', frozenset({('origin', 'spawned')}))), 60)
        self.assertEqual(self.gateway.families()['jobs'].type, 'counter')

    def test_region_option_and_the_command_exit_status(self):
        done = run_launcher(
            ['--region', self.region, sys.executable, '-c', textwrap.dedent('''
                import os, prometheus_client
                prometheus_client.Gauge('launched', 'L.', multiprocess_mode='max').set(42)
                print(os.environ['SHMETRICS_REGION'])
                raise SystemExit(3)
            ''')], launcher_env())
        self.assertEqual(done.returncode, 3, done.stderr)
        self.assertNoWarning(done.stderr)
        self.assertEqual(done.stdout.strip(), self.region)
        samples = self.gateway.wait_for(lambda s: s.get(('launched', frozenset())) == 42)
        self.assertEqual(samples.get(('launched', frozenset())), 42)

    def test_shadowed_sitecustomize_runs_after_the_backend_is_installed(self):
        # The user's own sitecustomize creates a metric: it lands in the region only if the
        # backend was installed before it ran.
        user_dir = os.path.dirname(self.write('user/sitecustomize.py', '''
            import sys
            import prometheus_client
            prometheus_client.Counter('from_sitecustomize', 'S.').inc(2)
            shmetrics = sys.modules.get('shmetrics')
            print('user sitecustomize ran, installed:', shmetrics and shmetrics.installed())
        '''))
        python_path = os.pathsep.join([os.environ['PYTHONPATH'], user_dir])
        done = run_launcher(
            [sys.executable, '-c', 'import sitecustomize; print(sitecustomize.__file__)'],
            launcher_env(SHMETRICS_REGION=self.region, PYTHONPATH=python_path))
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertNoWarning(done.stderr)
        # The launcher's own interpreter runs it first, before the exec, without the backend.
        self.assertEqual(done.stdout.splitlines(),
                         ['user sitecustomize ran, installed: None',
                          f'user sitecustomize ran, installed: {self.region}',
                          os.path.join(user_dir, 'sitecustomize.py')])
        samples = self.gateway.wait_for(
            lambda s: s.get(('from_sitecustomize_total', frozenset())) == 2)
        self.assertEqual(samples.get(('from_sitecustomize_total', frozenset())), 2)

    def test_launcher_under_launcher_puts_the_bootstrap_on_the_path_once(self):
        done = run_launcher(
            [LAUNCHER, sys.executable, '-c', 'import os; print(os.environ["PYTHONPATH"])'],
            launcher_env(SHMETRICS_REGION=self.region))
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertNoWarning(done.stderr)
        self.assertEqual(done.stdout.strip().split(os.pathsep),
                         [BOOTSTRAP_DIR] + os.environ['PYTHONPATH'].split(os.pathsep))

    def test_a_process_that_cannot_install_says_so_once_and_goes_on(self):
        # A prometheus_client that cannot be imported: the backend cannot be installed.
        self.write('broken/prometheus_client/__init__.py', '''
            raise ImportError('prometheus_client broken on purpose')
        ''')
        broken_dir = os.path.join(self.dir, 'broken')
        python_path = os.pathsep.join([broken_dir, os.environ['PYTHONPATH']])
        done = run_launcher([sys.executable, '-c', 'print("still running")'],
                            launcher_env(SHMETRICS_REGION=self.region, PYTHONPATH=python_path))
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), 'still running')
        lines = done.stderr.splitlines()
        self.assertEqual(len(lines), 1, done.stderr)
        self.assertRegex(lines[0], r'^shmetrics-run: .*python3.* \(pid \d+\) runs without '
                                   rf"shmetrics, region '{self.region}': ImportError: "
                                   'prometheus_client broken on purpose$')

    def test_a_region_that_cannot_be_attached_is_named_and_the_process_goes_on(self):
        region = gateway_support.unique_region('junk')
        self.addCleanup(gateway_support.remove_region, region)
        with open('/dev/shm/' + region, 'wb') as f:  # a region nobody initialised
            f.write(bytes(4096))
        done = run_launcher(['--region', region, sys.executable, '-c', 'print("still running")'],
                            launcher_env())
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), 'still running')
        lines = done.stderr.splitlines()
        self.assertEqual(len(lines), 1, done.stderr)
        self.assertRegex(lines[0], rf"runs without shmetrics, region '{region}': RegionError: "
                                   rf'.*region "{region}"')


class LauncherErrorsTest(unittest.TestCase):
    def test_help(self):
        done = run_launcher(['--help'], launcher_env())
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertTrue(done.stdout.startswith('usage: shmetrics-run [--region NAME]'))
        self.assertIn('SHMETRICS_REGION', done.stdout)
        self.assertEqual(done.stderr, '')

    def test_usage_errors_exit_2(self):
        cases = [
            ([], 'shmetrics-run: no command given'),
            (['--region', 'r'], 'shmetrics-run: no command given'),
            (['--region'], 'shmetrics-run: --region needs a region name'),
            (['--region=', 'true'], 'shmetrics-run: --region needs a non-empty region name'),
            (['--bogus', 'true'], 'shmetrics-run: unknown option --bogus'),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                done = run_launcher(args, launcher_env(SHMETRICS_REGION='r'))
                self.assertEqual(done.returncode, 2, done.stderr)
                self.assertEqual(done.stderr.splitlines()[0], message)
                self.assertIn('usage: shmetrics-run', done.stderr)
                self.assertEqual(done.stdout, '')

    def test_no_region_exits_2(self):
        for env in (launcher_env(), launcher_env(SHMETRICS_REGION='')):
            with self.subTest(region=env.get('SHMETRICS_REGION')):
                done = run_launcher([sys.executable, '-c', 'print("ran")'], env)
                self.assertEqual(done.returncode, 2, done.stderr)
                self.assertEqual(done.stderr, 'shmetrics-run: no region: set SHMETRICS_REGION or '
                                              'pass --region NAME (the region shmetrics-gateway '
                                              'serves)\n')
                self.assertEqual(done.stdout, '')

    def test_command_not_found_exits_127_naming_it(self):
        done = run_launcher(['no-such-command-for-shmetrics', '--flag'],
                            launcher_env(SHMETRICS_REGION='r'))
        self.assertEqual(done.returncode, 127)
        self.assertEqual(done.stderr,
                         'shmetrics-run: no-such-command-for-shmetrics: command not found\n')

    def test_command_not_executable_exits_126(self):
        with tempfile.NamedTemporaryFile(prefix='shmetrics-run-test-') as f:
            done = run_launcher([f.name], launcher_env(SHMETRICS_REGION='r'))
        self.assertEqual(done.returncode, 126)
        self.assertEqual(done.stderr,
                         f'shmetrics-run: {f.name}: cannot execute: Permission denied\n')


if __name__ == '__main__':
    unittest.main()
