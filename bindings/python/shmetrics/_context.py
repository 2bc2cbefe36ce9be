"""time(), track_inprogress() and count_exceptions(): each both a decorator and a context manager,
as in prometheus_client."""

import functools
from timeit import default_timer


def _decorate(make_manager, f):
    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        with make_manager():
            return f(*args, **kwargs)

    return wrapped


class ExceptionCounter:
    def __init__(self, counter, exception):
        self._counter = counter
        self._exception = exception

    def __enter__(self):
        pass

    def __exit__(self, typ, value, traceback):
        if isinstance(value, self._exception):
            self._counter.inc()
        return False

    def __call__(self, f):
        return _decorate(lambda: self, f)


class InprogressTracker:
    def __init__(self, gauge):
        self._gauge = gauge

    def __enter__(self):
        self._gauge.inc()

    def __exit__(self, typ, value, traceback):
        self._gauge.dec()

    def __call__(self, f):
        return _decorate(lambda: self, f)


class Timer:
    """Calls metric.<callback_name>(seconds) on exit. A decorator makes a new Timer per call, so
    it is reentrant and thread-safe."""

    def __init__(self, metric, callback_name):
        self._metric = metric
        self._callback_name = callback_name

    def _new_timer(self):
        return self.__class__(self._metric, self._callback_name)

    def __enter__(self):
        self._start = default_timer()
        return self

    def __exit__(self, typ, value, traceback):
        duration = max(default_timer() - self._start, 0)  # the clock may step back
        getattr(self._metric, self._callback_name)(duration)

    def labels(self, *args, **kw):
        self._metric = self._metric.labels(*args, **kw)

    def __call__(self, f):
        return _decorate(self._new_timer, f)
