#!/usr/bin/python3
"""Python write and scrape speed: shmetrics' native and backend modes beside prometheus_client's
single-process and multiprocess modes, in one run, with Debian's interpreter.

  /usr/bin/python3 bench/python_bench.py --pythonpath BUILD/bindings/python
                                         --gateway BUILD/gateway/shmetrics-gateway
                                         [--quick] [--rounds N] [--json FILE]

Writes: child `.inc()`, `.labels('GET', '200').inc()` of a child seen before, and a histogram
  child's `.observe(0.3)` (default buckets), each mode in its own interpreter: prometheus_client
  as imported (single-process), prometheus_client with PROMETHEUS_MULTIPROC_DIR set before the
  import (multiprocess), shmetrics.install() then prometheus_client (backend), shmetrics' own
  classes (native). Timed like timeit: one repeat runs the statement `number` times (calibrated
  per statement to about --target-seconds), the empty loop is timed the same way, and ns per call
  is best repeat minus best empty loop. Rounds are interleaved: every round asks each interpreter
  for one repeat of everything, so a burst of load from elsewhere hits all modes alike. Every
  call is checked afterwards: the values each mode holds (read through MultiProcessCollector,
  through the real shmetrics-gateway, or from the registry) equal the calls made.
Scrape: 10000 counter series (families of 1000, labels route and code: the shape of
  compare_python_multiprocess.py, whose helpers are used), 16 live workers and 256 dead ones, each
  having incremented every series once. prometheus_client: MultiProcessCollector +
  generate_latest over the directory of 272 worker files (two written by real workers, the rest
  copies of those byte-identical files). shmetrics: 272 Python workers forked from a master that
  created the metrics (native mode), 16 of them kept alive, the others exited and folded by a
  real shmetrics-gateway, timed as one HTTP GET /metrics on loopback (request to last byte: the
  HTTP exchange counts against shmetrics). Both bodies are checked: every series equals the
  number of workers. Best of interleaved rounds.

Prints a table, then `RATIO <name> <value>` lines (`n/a` for backend mode when shmetrics has no
install()); bench/report_ratios.py checks the targets. An error (exit 1) when
prometheus_client is not importable: it is a dependency the scripts install.
"""
import argparse
import http.client
import importlib.metadata
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import timeit

sys.dont_write_bytecode = True  # the import below would write bench/__pycache__ into the tree
import compare_python_multiprocess as multiprocess_shape  # noqa: E402

MODES = ('single', 'multiprocess', 'backend', 'native')
MODE_TITLES = {'single': 'single-process', 'multiprocess': 'multiprocess', 'backend': 'backend',
               'native': 'native'}
LOOP = 'loop'
OPS = (
    ('child_inc', 'child .inc()', 'child.inc()'),
    ('labels_inc', ".labels(a, b).inc()", "family.labels('GET', '200').inc()"),
    ('histogram_observe', 'histogram .observe()', 'histogram.observe(0.3)'),
)
OBSERVED = 0.3
LABELS = {'a': 'GET', 'b': '200'}
FIRST_COPY_PID = 1 << 23
COUNTER_CELLS = 21  # a counter with exemplars: value, seqlock, value, time, used, 128 label bytes
CELLS_PER_PAGE = 512
STARTUP_SECONDS = 60  # an interpreter that imports and calibrates within this, or an error


def ns(value):
    return 'n/a' if value is None else '%.1f' % value


# --- Worker: one interpreter, one mode -----------------------------------------------------------

def worker_metrics(mode, region):
    """The three metrics of `mode`, or a string saying why the mode is not available."""
    if mode == 'native':
        import shmetrics
        shmetrics.attach(region)
        counter, histogram = shmetrics.Counter, shmetrics.Histogram
    else:
        if mode == 'backend':
            import shmetrics
            install = getattr(shmetrics, 'install', None)
            if install is None:
                return ('shmetrics.install() is not in this build of the shmetrics package '
                        '(backend mode not merged yet)')
            install(region)
        import prometheus_client
        from prometheus_client import values
        value_class = values.ValueClass
        # The mode must really be in effect: prometheus_client falls back to single-process mode
        # silently when the variable is set too late.
        in_effect = {
            'single': value_class is values.MutexValue,
            'multiprocess': value_class.__name__ == 'MmapedValue',
            'backend': value_class.__module__.startswith('shmetrics'),
        }[mode]
        if not in_effect:
            raise RuntimeError('%s mode is not in effect: prometheus_client.values.ValueClass '
                               'is %s.%s' % (mode, value_class.__module__,
                                             value_class.__qualname__))
        counter, histogram = prometheus_client.Counter, prometheus_client.Histogram
    family = counter('bench_labels_total', 'Increments through labels().', ['a', 'b'])
    family.labels('GET', '200')  # a child seen before, as in a request handler
    child = counter('bench_child_total', 'Increments of a child.', ['a', 'b'])
    latency = histogram('bench_latency_seconds', 'Observations.', ['a', 'b'])
    return {'child': child.labels('GET', '200'), 'family': family,
            'histogram': latency.labels('GET', '200')}


def worker_main(mode, region, target_seconds):
    """Speaks JSON lines on stdout: ready (or unavailable), then one line per `round` read from
    stdin, then the calls made on `finish`."""
    def say(obj):
        sys.stdout.write(json.dumps(obj) + '\n')
        sys.stdout.flush()

    namespace = worker_metrics(mode, region)
    if isinstance(namespace, str):
        say({'unavailable': namespace})
        return 0
    calls = {op: 0 for op, _, _ in OPS}
    timers = {op: timeit.Timer(stmt, globals=namespace) for op, _, stmt in OPS}
    timers[LOOP] = timeit.Timer('pass')

    def timed(op, number):
        seconds = timers[op].timeit(number)
        if op in calls:
            calls[op] += number
        return seconds

    numbers = {}
    for op in timers:
        number = 1
        while True:  # like timeit's autorange, then scaled up to the target
            seconds = timed(op, number)
            if seconds >= target_seconds / 20:
                break
            number *= 10
        numbers[op] = max(1, int(number * target_seconds / seconds))
    say({'ready': True, 'numbers': numbers})
    for line in sys.stdin:
        command = line.strip()
        if command == 'round':
            say({op: timed(op, numbers[op]) for op in timers})
        elif command == 'finish':
            held = {}
            if mode == 'single':  # nothing outside this process can read its registry
                from prometheus_client import REGISTRY
                held = {name: REGISTRY.get_sample_value(name, LABELS) for name in expected(calls)}
            say({'calls': calls, 'held': held})
            return 0
        else:
            raise RuntimeError('unknown command %r' % command)
    raise RuntimeError('stdin closed before finish')


def expected(calls):
    """{sample name: value} that the calls in `calls` must leave behind (labels LABELS)."""
    return {
        'bench_child_total': calls['child_inc'],
        'bench_labels_total': calls['labels_inc'],
        'bench_latency_seconds_count': calls['histogram_observe'],
        'bench_latency_seconds_sum': calls['histogram_observe'] * OBSERVED,
    }


def check_held(mode, calls, held):
    for name, want in expected(calls).items():
        got = held.get(name)
        # The sum adds 0.3 millions of times: exact counts, a sum within rounding.
        if got is None or abs(got - want) > 1e-6 * max(1.0, want):
            raise RuntimeError('%s mode holds %s{a="GET",b="200"} = %s, expected %s from the calls '
                               'made (%s)' % (mode, name, got, want, calls))


# --- Processes -----------------------------------------------------------------------------------

def read_line(process, seconds, what):
    """One line of the worker's stdout within `seconds`, or an error naming `what`."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(seconds):
            raise RuntimeError('%s: no answer within %.0f s' % (what, seconds))
    line = process.stdout.readline()
    if not line:
        raise RuntimeError('%s: exited with status %s' % (what, process.wait(timeout=10)))
    return json.loads(line)


def stop_process(process):
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


class ModeWorker:
    def __init__(self, mode, region, pythonpath, mp_dir, target_seconds):
        self.mode = mode
        env = {k: v for k, v in os.environ.items()
               if k not in ('PROMETHEUS_MULTIPROC_DIR', 'prometheus_multiproc_dir', 'PYTHONPATH',
                            'SHMETRICS_REGION')}
        if mode == 'multiprocess':
            env['PROMETHEUS_MULTIPROC_DIR'] = mp_dir
        if mode in ('backend', 'native'):
            env['PYTHONPATH'] = pythonpath
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), '--worker', mode, '--region', region,
             '--target-seconds', str(target_seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        self.unavailable = None
        self.numbers = None

    def wait_ready(self):
        answer = read_line(self.process, STARTUP_SECONDS, '%s mode worker' % self.mode)
        self.unavailable = answer.get('unavailable')
        self.numbers = answer.get('numbers')

    def ask(self, command, seconds):
        self.process.stdin.write(command + '\n')
        self.process.stdin.flush()
        return read_line(self.process, seconds, '%s mode worker (%s)' % (self.mode, command))


def wait_pid(pid, seconds):
    """The exit status of child `pid`; SIGKILL and an error if it takes longer than `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise RuntimeError('worker %d did not finish within %.0f s' % (pid, seconds))
        time.sleep(0.005)


class GatewayProcess:
    """shmetrics-gateway on a free loopback port, serving `region` (creating it if needed)."""

    def __init__(self, binary, region, extra_args=()):
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen([binary, '--region', region, '--listen', '127.0.0.1:0']
                                        + list(extra_args),
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            found = re.search(rb'http://127\.0\.0\.1:([0-9]+)/metrics', self.log_text(raw=True))
            if found:
                self.port = int(found.group(1))
                return
            status = self.process.poll()
            if status is not None or time.monotonic() > deadline:
                stop_process(self.process)
                raise RuntimeError('%s %s: %s' % (
                    binary, 'exited with status %d' % status if status is not None
                    else 'did not start within 10 s', self.log_text()))
            time.sleep(0.01)

    def log_text(self, raw=False):
        self.log.seek(0)
        text = self.log.read()
        return text if raw else text.decode('utf-8', 'replace')

    def get(self):
        """(seconds from request to last byte, body) of one GET /metrics on a new connection."""
        connection = http.client.HTTPConnection('127.0.0.1', self.port, timeout=30)
        try:
            start = time.perf_counter()
            connection.request('GET', '/metrics')
            response = connection.getresponse()
            body = response.read()
            seconds = time.perf_counter() - start
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError('shmetrics-gateway answered %d: %r' % (response.status, body[:200]))
        return seconds, body.decode('utf-8')

    def wait_for(self, predicate, seconds, what):
        """Scrapes until predicate(body) holds; returns that body. Bounded."""
        deadline = time.monotonic() + seconds
        while True:
            body = self.get()[1]
            if predicate(body):
                return body
            if time.monotonic() > deadline:
                own = [line for line in body.splitlines() if line.startswith('shmetrics_')]
                raise RuntimeError('shmetrics-gateway: %s not seen within %.0f s; it serves:\n%s'
                                   % (what, seconds, '\n'.join(own)))
            time.sleep(0.05)

    def close(self):
        stop_process(self.process)
        self.log.close()


def samples(body):
    """{sample name: value} of the samples labelled exactly LABELS in a text exposition."""
    from prometheus_client.parser import text_string_to_metric_families
    return {s.name: s.value for f in text_string_to_metric_families(body) for s in f.samples
            if s.labels == LABELS}


def remove_region(name):
    try:
        os.unlink('/dev/shm/' + name)
    except FileNotFoundError:
        pass


# --- Writes --------------------------------------------------------------------------------------

def measure_writes(args, region_prefix, results):
    """Starts one interpreter per mode, runs the interleaved rounds, checks every mode's values."""
    mp_dir = multiprocess_shape.make_dir()
    regions = {mode: '%s-%s' % (region_prefix, mode) for mode in ('backend', 'native')}
    workers = []
    try:
        for mode in MODES:
            workers.append(ModeWorker(mode, regions.get(mode, ''), args.pythonpath, mp_dir,
                                      args.target_seconds))
        for worker in workers:
            worker.wait_ready()
        live = [w for w in workers if w.unavailable is None]
        repeats = {w.mode: [] for w in live}
        round_seconds = 10 + 40 * args.target_seconds * (len(OPS) + 1)
        for r in range(args.rounds):
            for worker in live[r % len(live):] + live[:r % len(live)]:
                repeats[worker.mode].append(worker.ask('round', round_seconds))
        finished = {w.mode: w.ask('finish', 30) for w in live}
        for worker in live:
            worker.process.stdin.close()
            if worker.process.wait(timeout=10) != 0:
                raise RuntimeError('%s mode worker exited with status %d'
                                   % (worker.mode, worker.process.returncode))
        verify_writes(args, finished, mp_dir, regions)
    finally:
        for worker in workers:
            stop_process(worker.process)
        shutil.rmtree(mp_dir, ignore_errors=True)
        for region in regions.values():
            remove_region(region)

    writes = results['writes']
    for worker in workers:
        if worker.unavailable is not None:
            writes[worker.mode] = {'unavailable': worker.unavailable}
            continue
        best = {op: min(r[op] for r in repeats[worker.mode]) / worker.numbers[op]
                for op in worker.numbers}
        writes[worker.mode] = {op: (best[op] - best[LOOP]) * 1e9 for op, _, _ in OPS}
        writes[worker.mode]['loop'] = best[LOOP] * 1e9


def verify_writes(args, finished, mp_dir, regions):
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector
    for mode, answer in finished.items():
        calls = answer['calls']
        if mode == 'single':
            held = answer['held']
        elif mode == 'multiprocess':
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=mp_dir)
            held = {name: registry.get_sample_value(name, LABELS) for name in expected(calls)}
        else:  # the worker has exited: its slot is folded within the gateway's reap interval
            gateway = GatewayProcess(args.gateway, regions[mode])
            try:
                want = expected(calls)
                body = gateway.wait_for(
                    lambda b: samples(b).get('bench_child_total') == want['bench_child_total'],
                    10, '%s mode\'s %d child increments' % (mode, want['bench_child_total']))
                held = samples(body)
            finally:
                gateway.close()
        check_held(mode, calls, held)


# --- Scrape --------------------------------------------------------------------------------------

def measure_scrape(args, region, series, live, dead, rounds, gateway_scrapes, results):
    import shmetrics
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    expected_value = live + dead
    mp_dir = multiprocess_shape.make_dir()
    gateway = None
    live_pids, stop_w = [], None
    try:
        started = time.monotonic()
        fill_multiprocess_dir(mp_dir, series, live, dead)
        print('scrape: %d series x %d live + %d dead workers in %s, multiprocess files written in '
              '%.1f s' % (series, live, dead, mp_dir, time.monotonic() - started), file=sys.stderr)

        # The gateway creates the region; the master registers every family and resolves every
        # child before fork(), as a gunicorn --preload app does; workers only write.
        started = time.monotonic()
        gateway = GatewayProcess(args.gateway, region,
                                 ['--size', str(region_bytes(series, live + args.dead_batch))])
        shmetrics.attach(region)
        families = [shmetrics.Counter(multiprocess_shape.family_name(f),
                                      'Requests handled by route group %d.' % f, ['route', 'code'])
                    for f in range((series + multiprocess_shape.SERIES_PER_FAMILY - 1)
                                   // multiprocess_shape.SERIES_PER_FAMILY)]
        children = [families[i // multiprocess_shape.SERIES_PER_FAMILY]
                    .labels(multiprocess_shape.route(i), '200') for i in range(series)]

        stop_r, stop_w = os.pipe()
        written_r, written_w = os.pipe()
        for _ in range(live):
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    os.close(stop_w)
                    for child in children:
                        child.inc()
                    os.write(written_w, b'w')
                    os.read(stop_r, 1)  # stays live (holding its slot) until the pipe closes
                    status = 0
                finally:
                    os._exit(status)
            live_pids.append(pid)
        os.close(stop_r)
        os.close(written_w)
        for n in range(live):
            if not selectors_wait(written_r, 60):
                raise RuntimeError('%d of %d live workers wrote their series within 60 s'
                                   % (n, live))
            os.read(written_r, 1)
        os.close(written_r)
        # Dead workers in batches the region's writer slots and cells hold at once (the gateway
        # folds each batch before the next, as it would while workers are recycled over time).
        folded = 0
        while folded < dead:
            batch = min(args.dead_batch, dead - folded)
            pids = []
            for _ in range(batch):
                pid = os.fork()
                if pid == 0:
                    status = 1
                    try:
                        os.close(stop_w)
                        for child in children:
                            child.inc()
                        status = 0
                    finally:
                        os._exit(status)
                pids.append(pid)
            for pid in pids:
                if wait_pid(pid, 60) != 0:
                    raise RuntimeError('dead-to-be worker %d failed' % pid)
            folded += batch
            gateway.wait_for(
                lambda b, n=folded: re.search(r'^shmetrics_writers_folded_total %d$' % n, b, re.M),
                30, 'shmetrics_writers_folded_total %d' % folded)
        print('scrape: region written by Python workers and %d dead ones folded in %.1f s'
              % (dead, time.monotonic() - started), file=sys.stderr)

        python_times, gateway_times = [], []
        python_body = gateway_body = ''
        for _ in range(rounds):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=mp_dir)
            start = time.perf_counter()
            python_body = generate_latest(registry).decode('utf-8')
            python_times.append(time.perf_counter() - start)
            for _ in range(gateway_scrapes):
                seconds, gateway_body = gateway.get()
                gateway_times.append(seconds)
        multiprocess_shape.check_body(python_body, series, expected_value, 'prometheus_client')
        multiprocess_shape.check_body(gateway_body, series, expected_value, 'shmetrics-gateway')
        results['scrape'] = {
            'series': series, 'live': live, 'dead': dead,
            'python_seconds': min(python_times), 'gateway_seconds': min(gateway_times),
            'python_bytes': len(python_body), 'gateway_bytes': len(gateway_body),
        }
    finally:
        if stop_w is not None:
            os.close(stop_w)  # the live workers read EOF and exit
        for pid in live_pids:
            try:
                wait_pid(pid, 10)
            except (ChildProcessError, RuntimeError) as e:
                print('scrape: %s' % e, file=sys.stderr)
        if gateway is not None:
            gateway.close()
        remove_region(region)
        shutil.rmtree(mp_dir, ignore_errors=True)


def fill_multiprocess_dir(mp_dir, series, live, dead):
    """What `live` + `dead` prometheus_client workers that each increment every series once leave
    in the directory. Two real workers write theirs (compare_python_multiprocess's populate); the
    rest are copies, since a worker's file holds no pid and these workers' files are byte for byte
    the same (checked): forking 272 writers costs about 30 s here and measures nothing."""
    from prometheus_client import multiprocess
    pids = multiprocess_shape.populate(mp_dir, series, 2)
    files = [os.path.join(mp_dir, 'counter_%d.db' % pid) for pid in pids]
    with open(files[0], 'rb') as a, open(files[1], 'rb') as b:
        if a.read() != b.read():
            raise RuntimeError('two workers with the same writes left different files: %s' % files)
    if sorted(os.listdir(mp_dir)) != sorted(os.path.basename(f) for f in files):
        raise RuntimeError('unexpected files in %s: %s' % (mp_dir, sorted(os.listdir(mp_dir))))
    # Above pid_max (2^22), so no copy can be taken for a live process's file.
    copies = [FIRST_COPY_PID + i for i in range(live + dead - 2)]
    for pid in copies:
        shutil.copyfile(files[0], os.path.join(mp_dir, 'counter_%d.db' % pid))
    for pid in (pids + copies)[live:]:
        multiprocess.mark_process_dead(pid, mp_dir)  # as gunicorn's child_exit hook does


def region_bytes(series, writers):
    """A region for `series` counters x `writers` at once: native-mode counters keep an exemplar
    block per writer (21 cells, 168 B, a series), plus the gateway's two accumulator banks and
    16 MiB for the registry and strings."""
    cells = COUNTER_CELLS * series
    pages = (cells + CELLS_PER_PAGE - 1) // CELLS_PER_PAGE
    return (writers + 2) * pages * CELLS_PER_PAGE * 8 + (16 << 20)


def selectors_wait(fd, seconds):
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        return bool(selector.select(seconds))


# --- Report --------------------------------------------------------------------------------------

def report(results):
    writes = results['writes']
    print('ns per call, best of %d interleaved rounds, the empty loop subtracted '
          '(prometheus_client %s, Python %s)' % (results['rounds'], results['prometheus_client'],
                                                 results['python']))
    print('%-24s' % 'operation' + ''.join('%16s' % MODE_TITLES[m] for m in MODES))
    for op, title, _ in OPS:
        print('%-24s' % title + ''.join('%16s' % ns(writes[m].get(op)) for m in MODES))
    print('%-24s' % 'empty loop' + ''.join('%16s' % ns(writes[m].get('loop')) for m in MODES))
    for mode in MODES:
        if 'unavailable' in writes[mode]:
            print('%s mode: not available: %s' % (MODE_TITLES[mode], writes[mode]['unavailable']))
    s = results.get('scrape')
    if s:
        print('scrape %d series x %d workers + %d dead, best of %d: prometheus_client '
              'MultiProcessCollector %.1f ms (%d B), shmetrics-gateway GET /metrics %.3f ms (%d B)'
              % (s['series'], s['live'], s['dead'], results['scrape_rounds'],
                 s['python_seconds'] * 1e3, s['python_bytes'], s['gateway_seconds'] * 1e3,
                 s['gateway_bytes']))
    sys.stdout.flush()

    def ratio(slower, faster, op):
        a, b = writes[slower].get(op), writes[faster].get(op)
        return a / b if a is not None and b else None

    lines = []
    for op, _, _ in OPS:
        for baseline in ('multiprocess', 'single'):
            for mode in ('native', 'backend'):
                lines.append(('python_%s_%s_over_%s' % (baseline, op, mode),
                              ratio(baseline, mode, op)))
    if s:
        name = 'python_scrape_over_gateway_%d_%d_dead%d' % (s['series'], s['live'], s['dead'])
        lines.append((name, s['python_seconds'] / s['gateway_seconds']))
    for name, value in lines:
        print('RATIO %s %s' % (name, 'n/a' if value is None else '%.3f' % value))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--pythonpath', help='directory holding the shmetrics package '
                                         '(BUILD/bindings/python)')
    ap.add_argument('--gateway', help='path to the shmetrics-gateway binary')
    ap.add_argument('--quick', action='store_true', help='small and short, for ctest')
    ap.add_argument('--rounds', type=int, default=9, help='interleaved write rounds (best of)')
    ap.add_argument('--target-seconds', type=float, default=0.08,
                    help='length of one timed repeat of one statement')
    ap.add_argument('--scrape-rounds', type=int, default=3,
                    help='interleaved scrape rounds: one MultiProcessCollector scrape and 10 '
                         'gateway scrapes each (best of)')
    ap.add_argument('--series', type=int, help='scrape: counter series (default 10000)')
    ap.add_argument('--workers', type=int, help='scrape: live workers (default 16)')
    ap.add_argument('--dead', type=int, help='scrape: dead workers (default 256)')
    ap.add_argument('--dead-batch', type=int, default=32,
                    help='dead workers alive at once before the gateway folds them')
    ap.add_argument('--json', help='also write the results to this file')
    ap.add_argument('--worker', choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument('--region', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args.worker, args.region, args.target_seconds)

    if not args.pythonpath or not os.path.isfile(os.path.join(args.pythonpath, 'shmetrics',
                                                              '__init__.py')):
        ap.error('--pythonpath %r does not hold the shmetrics package (shmetrics/__init__.py); '
                 'build the shmetrics_python target' % args.pythonpath)
    if not args.gateway or not os.access(args.gateway, os.X_OK):
        ap.error('--gateway %r is not an executable shmetrics-gateway' % args.gateway)
    for name, value in (('--rounds', args.rounds), ('--scrape-rounds', args.scrape_rounds),
                        ('--dead-batch', args.dead_batch), ('--series', args.series),
                        ('--workers', args.workers), ('--dead', args.dead)):
        if value is not None and value < (0 if name == '--dead' else 1):
            ap.error('%s must be at least 1, got %d' % (name, value))
    if not 0 < args.target_seconds <= 10:
        ap.error('--target-seconds must be in (0, 10], got %g' % args.target_seconds)
    args.pythonpath = os.path.abspath(args.pythonpath)
    sys.path.insert(0, args.pythonpath)

    # This process reads the multiprocess directories, so the variable is set before the import.
    base = multiprocess_shape.make_dir()
    os.environ['PROMETHEUS_MULTIPROC_DIR'] = base
    try:
        try:
            import prometheus_client
        except ImportError:
            print('python_bench: error: prometheus_client is not importable by %s '
                  '(apt-get install python3-prometheus-client)' % sys.executable, file=sys.stderr)
            return 1
        if args.quick:
            args.rounds, args.target_seconds, args.scrape_rounds = 2, 0.005, 1
            args.dead_batch = min(args.dead_batch, 4)
        series = args.series or (1000 if args.quick else 10000)
        live = args.workers or (2 if args.quick else 16)
        dead = args.dead if args.dead is not None else (6 if args.quick else 256)
        results = {'prometheus_client': importlib.metadata.version(prometheus_client.__name__),
                   'python': sys.version.split()[0], 'rounds': args.rounds,
                   'scrape_rounds': args.scrape_rounds, 'writes': {}}
        prefix = 'shmetrics-bench-py-%d' % os.getpid()
        started = time.monotonic()
        measure_writes(args, prefix, results)
        print('writes measured in %.1f s' % (time.monotonic() - started), file=sys.stderr)
        measure_scrape(args, prefix + '-scrape', series, live, dead, args.scrape_rounds, 10,
                       results)
        results['seconds'] = time.monotonic() - started
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report(results)
    print('python_bench: %.1f s' % results['seconds'], file=sys.stderr)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except RuntimeError as e:  # a failed check or a worker that misbehaved: no traceback needed
        print('python_bench: error: %s' % e, file=sys.stderr)
        sys.exit(1)
