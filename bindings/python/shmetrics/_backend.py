"""Backend mode: the unmodified prometheus_client writes into the region.

prometheus_client builds the storage of every counter and gauge child as
`values.ValueClass(typ, metric_name, name, labelnames, labelvalues, help_text, **kwargs)`, looked up
at each child's creation; install() puts a class there whose objects are shmetrics series
handles, so an increment is one native call. Histograms and summaries are written through the
same seam in prometheus_client as one value per bucket and one for the sum, which the region
cannot take apart again, so their observe() is replaced by one native observe; Info and Enum,
which prometheus_client keeps in the process, additionally write their gauges (_statesets).
Everything else, registries and exposition included, stays prometheus_client's: an app's own
/metrics route shows this process's values (get()), and the gateway serves every worker's, merged.
"""

import os
import sys
import threading
import time
import warnings

from . import _metrics, _native, _statesets

_install_lock = threading.Lock()
_installed_region = None
_families = {}  # (type, name, definition...) -> Family, registered once per process
_info_families = {}  # Info full name -> _statesets.InfoFamily


def install(region=None, exemplars=None):
    """Makes prometheus_client write into the shmetrics region `region` (default: the one named
    by $SHMETRICS_REGION). Call it once, before the app or its libraries create metrics: in
    gunicorn.conf.py, at the top of the app, or let shmetrics-run do it. A second call with the
    same region does nothing. `exemplars` as for shmetrics.attach (default $SHMETRICS_EXEMPLARS,
    off)."""
    global _installed_region
    if region is None:
        region = os.environ.get('SHMETRICS_REGION')
        if not region:
            raise _metrics.RegionError('shmetrics.install(): no region: pass install(region=...) '
                                       'or set SHMETRICS_REGION')
    with _install_lock:
        if _installed_region is not None:
            if region != _installed_region:
                raise _metrics.RegionError(
                    f"shmetrics.install(): already installed for region '{_installed_region}', "
                    f"cannot install for '{region}'")
            return
        from prometheus_client import metrics, values
        _refuse_existing_metrics(metrics)
        _metrics.attach(region, exemplars)
        if os.environ.get('PROMETHEUS_MULTIPROC_DIR') or os.environ.get('prometheus_multiproc_dir'):
            warnings.warn('shmetrics.install(): PROMETHEUS_MULTIPROC_DIR is set; shmetrics does '
                          'not use it, and libraries that see it serve an empty '
                          'MultiProcessCollector: unset it', RuntimeWarning, stacklevel=2)
        values.ValueClass = _value_class
        _patch_histogram(metrics.Histogram)
        _patch_summary(metrics.Summary)
        _patch_info(metrics.Info)
        _patch_enum(metrics.Enum)
        _installed_region = region


def installed():
    """The region install() made prometheus_client write into, or None."""
    return _installed_region


def _refuse_existing_metrics(metrics):
    # A metric made before install() keeps prometheus_client's own storage: its counts would
    # never reach the region, so this is an error rather than a silent loss.
    from prometheus_client import REGISTRY
    existing = sorted(
        c._name for c in list(REGISTRY._collector_to_names) if isinstance(c, metrics.MetricWrapperBase))
    if existing:
        raise RuntimeError(
            'shmetrics.install() must run before prometheus_client metrics are created, but {} '
            'already exist{}: call it earlier (gunicorn.conf.py, the first line of the app) or start '
            'the server under shmetrics-run'.format(', '.join(existing), 's' if len(existing) == 1 else ''))


def _family(native_type, name, documentation, unit, labelnames, gauge_mode=0, buckets=None):
    key = (native_type, name, documentation, unit, tuple(labelnames), gauge_mode, buckets)
    family = _families.get(key)
    if family is None:
        exemplars = _metrics.exemplar_storage(native_type, name, buckets or ())
        family = _native.register(native_type, name, documentation, unit, tuple(labelnames),
                                  gauge_mode, buckets, exemplars)
        _families[key] = family
    return family


def _calling_metric_unit():
    # ValueClass is called from the metric's _metric_init, whose `self` knows the unit (the
    # value API does not pass it). Without it the family is registered without a unit.
    try:
        owner = sys._getframe(2).f_locals.get('self')
    except ValueError:
        return ''
    unit = getattr(owner, '_unit', '')
    return unit if isinstance(unit, str) else ''


class _CounterValue(_native.Counter):
    """A counter child's storage: the series handle itself, so inc() is one native call."""

    _multiprocess = True
    get = _native.Counter._local

    def set(self, value, timestamp=None):
        # Counter.reset() (prometheus_client 0.20+) sets 0; a region's counters only go up.
        raise ValueError('shmetrics: a counter cannot be set or reset: in the region it only goes up')

    def set_exemplar(self, exemplar):
        self._set_exemplar(exemplar.value, exemplar.labels)
        self._exemplar = exemplar

    def get_exemplar(self):
        return self.__dict__.get('_exemplar')


class _GaugeValue(_native.Gauge):
    """A gauge child's storage, in the gauge mode its multiprocess_mode names."""

    _multiprocess = True
    get = _native.Gauge._local

    def set(self, value, timestamp=None, _set=_native.Gauge.set):
        # Newer prometheus_client versions pass the time of the set for their mostrecent modes;
        # the region stamps each write itself.
        _set(self, value)

    def set_exemplar(self, exemplar):
        pass  # prometheus_client has no gauge exemplars

    def get_exemplar(self):
        return None


def _value_class(typ, metric_name, name, labelnames, labelvalues, help_text, multiprocess_mode='',
                 **kwargs):
    labelvalues = tuple(str(v) for v in labelvalues)
    if typ == 'counter':
        value = _CounterValue()
        value._bind(_family(_native.COUNTER, name, help_text, _calling_metric_unit(), labelnames),
                    labelvalues)
        return value
    if typ == 'gauge':
        mode = _metrics.GAUGE_MODES.get(multiprocess_mode or 'all')
        if mode is None:
            raise ValueError('Invalid multiprocess mode: ' + multiprocess_mode)
        value = _GaugeValue()
        value._bind(_family(_native.GAUGE, name, help_text, _calling_metric_unit(), labelnames,
                            mode), labelvalues)
        return value
    # Histogram and Summary do not come here once patched; another type has no region form.
    from prometheus_client.values import MutexValue
    warnings.warn(f'shmetrics: {typ} {metric_name} is kept in this process only (no region form '
                  'for this type)', RuntimeWarning, stacklevel=3)
    return MutexValue(typ, metric_name, name, labelnames, labelvalues, help_text, **kwargs)


# --- Histogram and Summary: one native observe --------------------------------------------------


def _patch_histogram(cls):
    from prometheus_client.samples import Sample
    from prometheus_client.utils import floatToGoString
    from prometheus_client import metrics

    def _metric_init(self):
        self._created = time.time()
        family = _family(_native.HISTOGRAM, self._name, self._documentation, self._unit,
                         self._labelnames, buckets=tuple(self._upper_bounds[:-1]))
        self._shmetrics = _native.Histogram()
        self._shmetrics._bind(family, tuple(self._labelvalues))

    def observe(self, amount, exemplar=None):
        self._raise_if_not_observable()
        if exemplar:
            self._shmetrics.observe(amount, exemplar)
        else:
            self._shmetrics.observe(amount)

    def _child_samples(self):
        counts, total = self._shmetrics._local()
        samples = []
        acc = 0.0
        for bound, count in zip(self._upper_bounds, counts):
            acc += count
            samples.append(Sample('_bucket', {'le': floatToGoString(bound)}, acc, None, None))
        samples.append(Sample('_count', {}, acc, None, None))
        if self._upper_bounds[0] >= 0:
            samples.append(Sample('_sum', {}, total, None, None))
        if metrics._use_created:
            samples.append(Sample('_created', {}, self._created, None, None))
        return tuple(samples)

    cls._metric_init = _metric_init
    cls.observe = observe
    cls._child_samples = _child_samples


def _patch_summary(cls):
    from prometheus_client.samples import Sample
    from prometheus_client import metrics

    def _metric_init(self):
        self._created = time.time()
        family = _family(_native.SUMMARY, self._name, self._documentation, self._unit,
                         self._labelnames)
        self._shmetrics = _native.Summary()
        self._shmetrics._bind(family, tuple(self._labelvalues))

    def observe(self, amount):
        self._raise_if_not_observable()
        self._shmetrics.observe(amount)

    def _child_samples(self):
        count, total = self._shmetrics._local()
        samples = [Sample('_count', {}, count, None, None), Sample('_sum', {}, total, None, None)]
        if metrics._use_created:
            samples.append(Sample('_created', {}, self._created, None, None))
        return tuple(samples)

    cls._metric_init = _metric_init
    cls.observe = observe
    cls._child_samples = _child_samples


# --- Info and Enum: prometheus_client's own state, and the region's gauges beside it -----------


def _patch_info(cls):
    original_metric_init, original_info = cls._metric_init, cls.info

    def _metric_init(self):
        original_metric_init(self)
        family = _info_families.get(self._name)
        if family is None:
            family = _info_families.setdefault(
                self._name, _statesets.InfoFamily(self._name, self._documentation, self._labelnames))
        self._shmetrics = _statesets.InfoWriter(family, self._labelvalues)

    def info(self, val):
        # The region's checks first (a key set other than the first is refused there), so
        # that a refused info() changes neither the region nor the local copy.
        _metrics.validate_info(self._labelnames, val)
        with self._lock:
            self._shmetrics.info(val)
        original_info(self, val)  # the copy its _child_samples reads

    cls._metric_init = _metric_init
    cls.info = info


def _patch_enum(cls):
    # prometheus_client sets _states after its base __init__ has run _metric_init, so the
    # writer is made once __init__ is done.
    original_init, original_state = cls.__init__, cls.state

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if self._labelnames and not self._labelvalues:
            return  # a labelled parent: its children write
        family = _family_for_enum(self)
        self._shmetrics = _statesets.EnumWriter(family, self._labelvalues, self._states)

    def state(self, state):
        original_state(self, state)  # its checks, and the index its _child_samples reads
        with self._lock:
            self._shmetrics.set_index(self._value)

    cls.__init__ = __init__
    cls.state = state


def _family_for_enum(metric):
    key = ('enum', metric._name, metric._documentation, tuple(metric._labelnames))
    family = _families.get(key)
    if family is None:
        family = _statesets.register_enum(metric._name, metric._documentation, metric._labelnames)
        _families[key] = family
    return family
