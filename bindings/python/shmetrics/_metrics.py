"""Counter, Gauge, Histogram, Summary, Info and Enum with prometheus_client's constructors,
writing into the shared-memory region through shmetrics._native.

Each class is a Python subclass of its native handle type: the object Counter(...) returns (an
unlabelled metric) or .labels(...) returns (a child) *is* the series handle, so child.inc() is
one METH_FASTCALL call with no Python frame in between. Checks and error texts follow
prometheus_client 0.16 (metrics.py), because code and libraries match on them.
"""

import os
import re
import threading
import warnings

from . import _context, _native, _statesets

METRIC_NAME_RE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*$')
METRIC_LABEL_NAME_RE = re.compile(r'^[a-zA-Z_][a-zA-Z0-9_]*$')
RESERVED_METRIC_LABEL_NAME_RE = re.compile(r'^__.*$')
INF = float('inf')


class RegionError(OSError):
    """No region is configured, or the region cannot be attached (errno and message say why)."""


_native._set_region_error(RegionError)

_region = None
_region_lock = threading.Lock()
_exemplars = False  # whether counters and histograms get exemplar storage (attach)
_TRUE_WORDS = ('1', 'true', 'yes', 'on')


def _exemplars_from_environment():
    return os.environ.get('SHMETRICS_EXEMPLARS', '').strip().lower() in _TRUE_WORDS


def attach(region, exemplars=None):
    """Attaches this process to `region` (created if no gateway created it yet). Call it before
    the first metric, or set SHMETRICS_REGION instead; a second call must name the same region.

    exemplars: whether the counters and histograms this process registers keep exemplar storage
    (default: $SHMETRICS_EXEMPLARS, off). It costs a 168-byte block per series and worker instead
    of one 8-byte cell, so it is opt-in; without it an exemplar is dropped and counted
    (shmetrics_dropped_updates_total{reason="exemplar"}), its value kept. Every process writing a
    family must agree: the setting is part of the family's definition."""
    global _region, _exemplars
    with _region_lock:
        if _region is not None:
            if region != _region:
                raise RegionError(f"already attached to region '{_region}', cannot attach '{region}'")
            if exemplars is not None and bool(exemplars) != _exemplars:
                raise ValueError(f"already attached to region '{region}' with exemplars "
                                 f"{'on' if _exemplars else 'off'}")
            return
        _native.attach(region)
        _region = region
        _exemplars = _exemplars_from_environment() if exemplars is None else bool(exemplars)


def exemplars_enabled():
    """Whether this process's counters and histograms are registered with exemplar storage."""
    return _exemplars


def exemplar_storage(native_type, name, buckets):
    """Whether the family `name` gets exemplar storage: counters and histograms when exemplars
    are on, except a histogram with more finite bounds than a series with exemplars can hold in
    one page (libraries use such: django-prometheus's body sizes have 30). That one is
    registered without, with a warning; its exemplars are dropped and counted."""
    if not _exemplars or native_type not in (_native.COUNTER, _native.HISTOGRAM):
        return False
    if native_type == _native.HISTOGRAM and len(buckets) > _native.MAX_EXEMPLAR_HISTOGRAM_BOUNDS:
        warnings.warn(f'shmetrics: histogram {name} has {len(buckets)} finite buckets, more than '
                      f'the {_native.MAX_EXEMPLAR_HISTOGRAM_BOUNDS} a series with exemplars can '
                      'hold: registered without exemplars', RuntimeWarning, stacklevel=4)
        return False
    return True


def _ensure_attached():
    if _region is None:
        region = os.environ.get('SHMETRICS_REGION')
        if not region:
            raise RegionError('no shmetrics region: set SHMETRICS_REGION or call '
                              'shmetrics.attach(name) before creating the first metric')
        attach(region)


def _build_full_name(metric_type, name, namespace, subsystem, unit):
    full_name = ''
    if namespace:
        full_name += namespace + '_'
    if subsystem:
        full_name += subsystem + '_'
    full_name += name
    if metric_type == 'counter' and full_name.endswith('_total'):
        full_name = full_name[:-6]  # the _total suffix is added back on exposition
    if unit and not full_name.endswith('_' + unit):
        full_name += '_' + unit
    return full_name


def _label_key(metric, labelvalues, labelkwargs):
    """The child key of labels(*values) / labels(**kw): the values as str, in label-name order;
    prometheus_client's checks and texts."""
    if not metric._labelnames:
        raise ValueError('No label names were set when constructing %s' % metric)
    if metric._labelvalues:
        raise ValueError('{} already has labels set ({}); can not chain calls to .labels()'.format(
            metric, dict(zip(metric._labelnames, metric._labelvalues))))
    if labelvalues and labelkwargs:
        raise ValueError("Can't pass both *args and **kwargs")
    if labelkwargs:
        if sorted(labelkwargs) != sorted(metric._labelnames):
            raise ValueError('Incorrect label names')
        labelvalues = tuple(labelkwargs[n] for n in metric._labelnames)
    elif len(labelvalues) != len(metric._labelnames):
        raise ValueError('Incorrect label count')
    return tuple(str(v) for v in labelvalues)


def validate_info(labelnames, val):
    """info(val)'s checks: keys that are label names, none of them one of the metric's own."""
    if set(labelnames).intersection(val.keys()):
        raise ValueError('Overlapping labels for Info metric, metric: {} child: {}'.format(
            labelnames, val))
    for key in val:
        if not isinstance(key, str) or not METRIC_LABEL_NAME_RE.match(key):
            raise ValueError('Invalid label metric name: {}'.format(key))
        if RESERVED_METRIC_LABEL_NAME_RE.match(key):
            raise ValueError('Reserved label metric name: ' + key)


def _validate_labelnames(cls, labelnames):
    labelnames = tuple(labelnames)
    for label in labelnames:
        if not METRIC_LABEL_NAME_RE.match(label):
            raise ValueError('Invalid label metric name: ' + label)
        if RESERVED_METRIC_LABEL_NAME_RE.match(label) or label in cls._reserved_labelnames:
            raise ValueError('Reserved label metric name: ' + label)
    return labelnames


class _Described:
    """What every metric shows of itself: prometheus_client's str/repr and its check that a
    labelled metric is written through a child."""

    __slots__ = ()

    def _raise_if_not_observable(self):
        if self._labelnames and not self._labelvalues:
            raise ValueError('%s metric is missing label values' % str(self._type))

    def __str__(self):
        return f'{self._type}:{self._name}'

    def __repr__(self):
        cls = type(self)
        return f'{cls.__module__}.{cls.__name__}({self._name})'


class _Metric(_Described):
    """What the four types share: naming, registration and the .labels() cache."""

    __slots__ = ()  # the attributes live in the native handle's __dict__

    _type = None
    _native_type = None
    _reserved_labelnames = ()

    def __init__(self, name, documentation, labelnames=(), namespace='', subsystem='', unit='',
                 registry=None, _labelvalues=None):
        # registry: accepted for prometheus_client's signature; the gateway serves every family.
        self._name = _build_full_name(self._type, name, namespace, subsystem, unit)
        self._labelnames = _validate_labelnames(self, labelnames)
        self._labelvalues = ()
        self._documentation = documentation
        self._unit = unit
        if not METRIC_NAME_RE.match(self._name):
            raise ValueError('Invalid metric name: ' + self._name)
        _ensure_attached()
        self._family = _native.register(
            self._native_type, self._registered_name(), documentation, unit, self._labelnames,
            self._gauge_mode(), self._native_buckets(),
            exemplar_storage(self._native_type, self._name, self._native_buckets() or ()))
        self._lock = threading.Lock()
        self._children = None  # labelled parents only: {tuple of str values: child}
        if self._labelnames:
            self._children = {}
            self._set_children(self._children, self._labelnames)
        else:
            self._bind(self._family, ())

    def _registered_name(self):
        return self._name

    def _gauge_mode(self):
        return 0

    def _native_buckets(self):
        return None

    # labels(*values) / labels(**kw) is the native handle's: one dict lookup in C for a child
    # seen before, and _resolve_labels the first time and for every error.

    def _resolve_labels(self, labelvalues, labelkwargs):
        key = _label_key(self, labelvalues, labelkwargs)
        if labelkwargs:
            labelvalues = tuple(labelkwargs[n] for n in self._labelnames)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self.__class__.__new__(self.__class__)
                child.__dict__.update(self.__dict__)
                child._labelvalues = key
                child._children = None
                child._bind(self._family, key)
                self._child_created(child)
                self._children[key] = child
            # Also under the values as given when they are str and int only (labels(200)): the
            # native lookup tries no other types, so 1.0 or True never find the child of 1.
            if all(type(v) is str or type(v) is int for v in labelvalues):
                self._children[labelvalues] = child
            return child

    def _child_created(self, child):
        pass


class Counter(_Metric, _native.Counter):
    """inc(amount=1, exemplar=None) only goes up; count_exceptions() counts what escapes a block."""

    _type = 'counter'
    _native_type = _native.COUNTER

    def _registered_name(self):
        return self._name + '_total'

    def count_exceptions(self, exception=Exception):
        self._raise_if_not_observable()
        return _context.ExceptionCounter(self, exception)


GAUGE_MODES = {
    'all': _native.GAUGE_ALL,
    'liveall': _native.GAUGE_LIVEALL,
    'sum': _native.GAUGE_SUM,
    'livesum': _native.GAUGE_LIVESUM,
    'max': _native.GAUGE_MAX,
    'livemax': _native.GAUGE_LIVEMAX,
    'min': _native.GAUGE_MIN,
    'livemin': _native.GAUGE_LIVEMIN,
    'mostrecent': _native.GAUGE_MOSTRECENT,
    'livemostrecent': _native.GAUGE_LIVEMOSTRECENT,
}


class Gauge(_Metric, _native.Gauge):
    """multiprocess_mode picks how the gateway merges the workers' values ('all': one series per
    worker, with a pid label; 'live*': a dead worker's value is dropped)."""

    _type = 'gauge'
    _native_type = _native.GAUGE
    _MULTIPROC_MODES = frozenset(GAUGE_MODES)

    def __init__(self, name, documentation, labelnames=(), namespace='', subsystem='', unit='',
                 registry=None, _labelvalues=None, multiprocess_mode='all'):
        if multiprocess_mode not in self._MULTIPROC_MODES:
            raise ValueError('Invalid multiprocess mode: ' + multiprocess_mode)
        self._multiprocess_mode = multiprocess_mode
        super().__init__(name, documentation, labelnames, namespace, subsystem, unit, registry)
        self._child_created(self)

    def _gauge_mode(self):
        return GAUGE_MODES[self._multiprocess_mode]

    def _child_created(self, child):
        # The last value set wins across workers; an increment has nothing to add to.
        if self._multiprocess_mode.endswith('mostrecent'):
            child._set_no_add(True)

    def track_inprogress(self):
        self._raise_if_not_observable()
        return _context.InprogressTracker(self)

    def time(self):
        return _context.Timer(self, 'set')


class Histogram(_Metric, _native.Histogram):
    """Classic buckets (prometheus_client's defaults unless given); observe(amount, exemplar=None)."""

    _type = 'histogram'
    _native_type = _native.HISTOGRAM
    _reserved_labelnames = ('le',)
    DEFAULT_BUCKETS = (.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 7.5, 10.0, INF)

    def __init__(self, name, documentation, labelnames=(), namespace='', subsystem='', unit='',
                 registry=None, _labelvalues=None, buckets=DEFAULT_BUCKETS):
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError('Buckets not in sorted order')
        if bounds and bounds[-1] != INF:
            bounds.append(INF)
        if len(bounds) < 2:
            raise ValueError('Must have at least two buckets')
        self._upper_bounds = bounds
        super().__init__(name, documentation, labelnames, namespace, subsystem, unit, registry)

    def _native_buckets(self):
        return tuple(self._upper_bounds[:-1])  # +Inf is implicit in the region

    def time(self):
        return _context.Timer(self, 'observe')


class Summary(_Metric, _native.Summary):
    """Count and sum of observations (no quantiles, as prometheus_client)."""

    _type = 'summary'
    _native_type = _native.SUMMARY
    _reserved_labelnames = ('quantile',)

    def time(self):
        return _context.Timer(self, 'observe')


class _StateMetric(_Described):
    """Info and Enum: naming and .labels() as the other types, on plain Python objects (their
    writes are rare; the region stores them as gauges, see _statesets)."""

    _type = None

    def __init__(self, name, documentation, labelnames, namespace, subsystem, unit):
        self._name = _build_full_name(self._type, name, namespace, subsystem, unit)
        if not METRIC_NAME_RE.match(self._name):
            raise ValueError('Invalid metric name: ' + self._name)
        self._labelnames = _validate_labelnames(self, labelnames)
        self._labelvalues = ()
        self._documentation = documentation
        _ensure_attached()
        self._lock = threading.Lock()
        self._children = {} if self._labelnames else None

    def labels(self, *labelvalues, **labelkwargs):
        key = _label_key(self, labelvalues, labelkwargs)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self.__class__.__new__(self.__class__)
                child.__dict__.update(self.__dict__)
                child._labelvalues = key
                child._children = None
                child._lock = threading.Lock()
                child._make_writer()
                self._children[key] = child
            return child


class Info(_StateMetric):
    """info(dict): the gauge `<name>_info` is 1 for these labels. Every info() call of a metric
    must give the same keys (the family's label names are fixed at the first)."""

    _type = 'info'
    _reserved_labelnames = ()

    def __init__(self, name, documentation, labelnames=(), namespace='', subsystem='', unit='',
                 registry=None, _labelvalues=None):
        super().__init__(name, documentation, labelnames, namespace, subsystem, unit)
        self._family = _statesets.InfoFamily(self._name, documentation, self._labelnames)
        self._writer = None
        if not self._labelnames:
            self._make_writer()

    def _make_writer(self):
        self._writer = _statesets.InfoWriter(self._family, self._labelvalues)

    def info(self, val):
        self._raise_if_not_observable()
        validate_info(self._labelnames, val)
        with self._lock:
            self._writer.info(val)


class Enum(_StateMetric):
    """state(name): which of `states` is current; the gauge `<name>{<name>="<state>"}` is 1 for it
    and 0 for the others, across workers the state the most recent state() call set."""

    _type = 'stateset'
    _reserved_labelnames = ()

    def __init__(self, name, documentation, labelnames=(), namespace='', subsystem='', unit='',
                 registry=None, _labelvalues=None, states=None):
        if name in labelnames:
            raise ValueError(f'Overlapping labels for Enum metric: {name}')
        if not states:
            raise ValueError(f'No states provided for Enum metric: {name}')
        super().__init__(name, documentation, labelnames, namespace, subsystem, unit)
        self._states = [str(s) for s in states]
        self._family = _statesets.register_enum(self._name, documentation, self._labelnames)
        self._writer = None
        if not self._labelnames:
            self._make_writer()

    def _make_writer(self):
        self._writer = _statesets.EnumWriter(self._family, self._labelvalues, self._states)

    def state(self, state):
        self._raise_if_not_observable()
        with self._lock:
            self._writer.state(state)
