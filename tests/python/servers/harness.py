"""Real Python servers for the integration tests: gunicorn or uvicorn started in a session of their
own on a free loopback port, HTTP traffic from client threads over keep-alive connections, and the
tools to read what the servers left: promtool and prometheus_client's own multiprocess collector.

Every wait is bounded. Server.stop() kills the whole process group and reaps every member: this
process is made a child subreaper, so workers orphaned by a killed master are reaped here too.
"""

import collections
import ctypes
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import tempfile
import threading
import time

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families as parse_text

PYTHON = '/usr/bin/python3'  # Debian's: the python3 first on PATH cannot see python3-* packages
PROMTOOL = '/usr/bin/promtool'
HERE = os.path.dirname(os.path.abspath(__file__))
FASTAPI_APP = os.path.join(HERE, 'fastapi_app')
DJANGO_APP = os.path.join(HERE, 'django_app')

_PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _proc_stat(pid):
    """(state, ppid, pgid) of a process, or None once it is gone."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(')') + 2:].split()  # the command name may hold spaces
    return fields[0], int(fields[1]), int(fields[2])


def _all_pids():
    return [int(d) for d in os.listdir('/proc') if d.isdigit()]


def wait_until(predicate, seconds, what, log=lambda: ''):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {seconds} s waiting for {what}\n{log()}')
        time.sleep(0.05)


class Server:
    """argv run in a new session (its own process group) with its output in a temporary log."""

    def __init__(self, argv, env, cwd=None):
        self.argv = argv
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.pid = self.process.pid

    def log(self):
        self._log.seek(0)
        text = self._log.read().decode('utf-8', 'replace')
        return f'--- log of {" ".join(self.argv)}\n{text[-20000:]}'

    def alive(self):
        return self.process.poll() is None

    def children(self):
        """Live (not zombie) children of the server's first process: gunicorn's workers."""
        pids = []
        for pid in _all_pids():
            stat = _proc_stat(pid)
            if stat and stat[1] == self.pid and stat[0] != 'Z':
                pids.append(pid)
        return sorted(pids)

    def wait_until(self, predicate, seconds, what):
        def check():
            if not self.alive():
                raise AssertionError(f'{what}: the server exited with {self.process.returncode}'
                                     f'\n{self.log()}')
            return predicate()
        return wait_until(check, seconds, what, self.log)

    def group(self):
        return [pid for pid in _all_pids() if (_proc_stat(pid) or (0, 0, 0))[2] == self.pid]

    def stop(self):
        """SIGKILL to the whole group, then every member reaped (ours by subreaping)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while True:
            left = self.group()
            for pid in left:
                if (_proc_stat(pid) or (0, 0))[1] == os.getpid():
                    try:
                        os.waitpid(pid, 0)  # an orphaned worker, reparented to this subreaper
                    except ChildProcessError:
                        pass
            left = self.group()
            if not left:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f'processes of group {self.pid} outlived SIGKILL: {left}')
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.05)

    def close(self):
        try:
            self.stop()
        finally:
            self._log.close()


# What gunicorn and uvicorn log once their socket is bound, and when the port was taken.
_LISTENING = ('Listening at: http://127.0.0.1:', 'Uvicorn running on http://127.0.0.1:')
_PORT_TAKEN = 'in use'


def start_server(make_argv, env, cwd=None, attempts=5):
    """make_argv(port) started on a free port and listening; retried only when the port was
    taken between the probe and the server's bind."""
    for _ in range(attempts):
        port = free_port()
        server = Server(make_argv(port), env, cwd)
        server.port = port
        try:
            log = wait_until(lambda: (any(m in server.log() for m in _LISTENING + (_PORT_TAKEN,))
                                      or not server.alive()) and server.log(),
                             30, 'the server to listen', server.log)
        except BaseException:
            server.close()
            raise
        if _PORT_TAKEN not in log and server.alive():
            return server
        server.close()
        if _PORT_TAKEN not in log:
            raise AssertionError('the server exited before it listened\n' + log)
    raise RuntimeError('no free port for ' + ' '.join(make_argv(0)))


def gunicorn_argv(app_dir, conf, port, workers=4, worker_class='uvicorn.workers.UvicornWorker',
                  preload=False, max_requests=0, max_requests_jitter=0, app='app:app'):
    argv = [PYTHON, '-m', 'gunicorn', '--config', os.path.join(app_dir, conf),
            '--chdir', app_dir, '--bind', f'127.0.0.1:{port}', '--workers', str(workers),
            '--worker-class', worker_class,
            '--keep-alive', '30',  # idle client connections stay with their worker
            '--graceful-timeout', '5']
    if preload:
        argv.append('--preload')
    if max_requests:
        argv += ['--max-requests', str(max_requests),
                 '--max-requests-jitter', str(max_requests_jitter)]
    return argv + [app]


def server_env(**overrides):
    """This process's environment (PYTHONPATH reaches the built shmetrics package) without any
    switch to a metrics backend, plus overrides."""
    env = dict(os.environ)
    for name in ('SHMETRICS_REGION', 'PROMETHEUS_MULTIPROC_DIR', 'prometheus_multiproc_dir'):
        env.pop(name, None)
    env.update(overrides)
    return env


# --- The workload -------------------------------------------------------------------------------

Request = collections.namedtuple('Request', 'method path body status')


def fastapi_workload(n):
    """n requests for the FastAPI app, the same list every time: pings, 404s and /echo bodies of
    0..12 items."""
    requests = []
    for i in range(n):
        if i % 4 == 0:
            requests.append(Request('POST', '/echo', json.dumps(list(range(i % 13))), 200))
        elif i % 4 == 1:
            requests.append(Request('GET', '/missing', None, 404))
        else:
            requests.append(Request('GET', '/ping', None, 200))
    return requests


def _retryable(error):
    # The server closed the connection without answering: a worker recycled (max_requests) or
    # killed while this connection was idle. The request was never processed.
    return isinstance(error, (http.client.RemoteDisconnected, ConnectionResetError,
                              ConnectionAbortedError, BrokenPipeError, ConnectionRefusedError))


class Traffic:
    """The workload sent from `threads` threads, each over its own keep-alive connection, at most
    one request in flight per connection. A request is counted as answered when its whole
    response arrived with the expected status. park_connections_of() holds back every connection
    served by one worker (and every connection not yet known), so that worker can be killed while
    no request of the client is inside it and the rest of the traffic goes on."""

    MAX_ATTEMPTS = 20

    def __init__(self, port, workload, threads=8, timeout=10.0):
        self.port = port
        self.timeout = timeout
        self.answered = collections.Counter()  # (method, path, status) -> responses
        self.worker_pids = collections.Counter()  # pid from X-Worker-Pid -> responses
        self.retries = 0
        self.errors = []
        self._queue = queue.SimpleQueue()
        for request in workload:
            self._queue.put(request)
        self._cond = threading.Condition()
        self._connection_pid = {}  # thread -> pid of its connection's worker; None: not known
        self._parked = set()
        self._parked_pid = None
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def start(self):
        for i, thread in enumerate(self._threads):
            self._connection_pid[i] = None
            thread.start()
        return self

    def join(self, seconds=60.0):
        deadline = time.monotonic() + seconds
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = sum(t.is_alive() for t in self._threads)
        if alive:
            raise AssertionError(f'{alive} client threads still busy after {seconds} s')
        if self.errors:
            raise AssertionError('client errors: ' + '; '.join(self.errors[:5]))
        return self

    def total_answered(self):
        with self._cond:
            return sum(self.answered.values())

    def connection_pids(self):
        with self._cond:
            return dict(self._connection_pid)

    def park_connections_of(self, pid, seconds=10.0):
        """Returns once no request is in flight to `pid`: each connection it serves (or that is
        not known yet) waits before its next request until release()."""
        deadline = time.monotonic() + seconds
        with self._cond:
            self._parked_pid = pid
            self._cond.notify_all()
            while True:
                pending = [i for i, p in self._connection_pid.items()
                           if p in (pid, None) and i not in self._parked]
                if not pending:
                    return len(self._parked)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f'connections {pending} did not park within {seconds} s')
                self._cond.wait(left)

    def release(self):
        with self._cond:
            self._parked_pid = None
            self._cond.notify_all()

    def _wait_if_parked(self, i):
        with self._cond:
            while self._parked_pid is not None and self._connection_pid[i] in (self._parked_pid,
                                                                               None):
                self._parked.add(i)
                self._cond.notify_all()
                self._cond.wait()
            self._parked.discard(i)

    def _run(self, i):
        connection = None
        try:
            while True:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    return
                for attempt in range(self.MAX_ATTEMPTS):
                    self._wait_if_parked(i)
                    if connection is None:
                        connection = http.client.HTTPConnection('127.0.0.1', self.port,
                                                                timeout=self.timeout)
                    try:
                        headers = {'Content-Type': 'application/json'} if request.body else {}
                        connection.request(request.method, request.path, request.body, headers)
                        response = connection.getresponse()
                        response.read()
                    except OSError as e:
                        if not _retryable(e):
                            raise
                        connection.close()
                        connection = None
                        with self._cond:
                            self._connection_pid[i] = None
                            self.retries += 1
                        time.sleep(0.01 * attempt)
                        continue
                    if response.status != request.status:
                        raise AssertionError(f'{request.method} {request.path}: status '
                                             f'{response.status}, expected {request.status}')
                    pid = int(response.getheader('X-Worker-Pid', '0'))
                    closing = response.getheader('Connection', '').lower() == 'close'
                    with self._cond:
                        self.answered[(request.method, request.path, str(response.status))] += 1
                        self.worker_pids[pid] += 1
                        self._connection_pid[i] = None if closing else pid
                    if closing:  # gunicorn's sync workers answer one request per connection
                        connection.close()
                        connection = None
                    break
                else:
                    raise AssertionError(f'{request.method} {request.path}: no answer after '
                                         f'{self.MAX_ATTEMPTS} connections')
        except Exception as e:  # reported by join()
            with self._cond:
                self.errors.append(f'thread {i}: {type(e).__name__}: {e}')
        finally:
            if connection is not None:
                connection.close()
            with self._cond:
                del self._connection_pid[i]
                self._parked.discard(i)
                self._cond.notify_all()


# --- Reading the results ------------------------------------------------------------------------

def promtool_check(body):
    """(exit code, output) of `promtool check metrics` on an exposition body."""
    result = subprocess.run([PROMTOOL, 'check', 'metrics'], input=body.encode('utf-8'),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return result.returncode, result.stdout.decode('utf-8', 'replace')


def type_lines(body):
    """The metric name of every '# TYPE' line, in order, duplicates kept."""
    return [line.split()[2] for line in body.splitlines() if line.startswith('# TYPE ')]


def help_lines(body):
    return [line.split()[2] for line in body.splitlines() if line.startswith('# HELP ')]


def normalized(families):
    """{(sample name, frozenset of labels): value} with `le` and `quantile` compared as numbers,
    since the two sides format bucket bounds differently (0.1 vs 0.1, 1 vs 1.0)."""
    samples = {}
    for family in families:
        for s in family.samples:
            labels = {k: (float(v) if k in ('le', 'quantile') else v) for k, v in s.labels.items()}
            samples[(s.name, frozenset(labels.items()))] = s.value
    return samples


def multiprocess_families(directory):
    """What prometheus_client's documented multiprocess setup serves from `directory`."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return list(registry.collect())


def sample_sum(samples, name, **labels):
    """The sum over every sample called `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def fastapi_expected(workload, workers):
    """Every sample of the FastAPI app whose value follows from the workload alone (all but the
    latency buckets and sum), in normalized() form."""
    inf = float('inf')
    expected = collections.Counter()
    for r in workload:
        expected[('http_requests_total', frozenset(
            {('method', r.method), ('path', r.path), ('status', str(r.status))}))] += 1
        route = frozenset({('method', r.method), ('path', r.path)})
        expected[('http_request_duration_seconds_count', route)] += 1
        expected[('http_request_duration_seconds_bucket', route | {('le', inf)})] += 1
        if r.path == '/echo':
            size = frozenset({('path', '/echo')})
            expected[('http_request_size_bytes_count', size)] += 1
            expected[('http_request_size_bytes_sum', size)] += len(r.body)
            items = len(json.loads(r.body))
            expected[('echo_items_count', frozenset())] += 1
            expected[('echo_items_sum', frozenset())] += items
            for bound in (1.0, 5.0, 10.0, 50.0, inf):
                if items <= bound:
                    expected[('echo_items_bucket', frozenset({('le', bound)}))] += 1
    expected = dict(expected)
    expected[('http_requests_inprogress', frozenset())] = 0
    expected[('workers_up', frozenset())] = workers
    return expected


FASTAPI_FAMILIES = {'http_requests': 'counter', 'http_request_duration_seconds': 'histogram',
                    'http_requests_inprogress': 'gauge', 'http_request_size_bytes': 'summary',
                    'echo_items': 'histogram', 'workers_up': 'gauge'}


class ExpositionChecks:
    """unittest.TestCase mixin: what every scrape of a served app must satisfy."""

    def assert_clean_exposition(self, body, families):
        """promtool-clean, and each family once: one HELP and one TYPE line, the expected type."""
        code, output = promtool_check(body)
        self.assertEqual(code, 0, f'promtool check metrics:\n{output}\n{body}')
        types = type_lines(body)
        helps = help_lines(body)
        self.assertEqual(sorted(set(types)), sorted(types), 'a family appears twice')
        self.assertEqual(sorted(set(helps)), sorted(helps), 'a family appears twice')
        served = {line.split()[2]: line.split()[3]
                  for line in body.splitlines() if line.startswith('# TYPE ')}
        for name, kind in families.items():
            exposed = name + '_total' if kind == 'counter' and name + '_total' in served else name
            self.assertEqual(served.get(exposed), kind, f'family {name} in\n{body}')
        # Nothing the workers wrote was dropped or refused on the way.
        samples = {(s.name, frozenset(s.labels.items())): s.value
                   for f in parse_text(body) for s in f.samples}
        for name in ('shmetrics_dropped_updates_total', 'shmetrics_registration_errors_total',
                     'shmetrics_region_invalid_records_total'):
            self.assertEqual(sample_sum(samples, name), 0, name)

    def assert_samples(self, samples, expected):
        wrong = {key: (samples.get(key), value) for key, value in expected.items()
                 if samples.get(key) != value}
        self.assertEqual(wrong, {}, 'samples (served, expected) that differ')
