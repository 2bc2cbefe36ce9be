"""Info and Enum as the region stores them: gauges, one series per label set.

prometheus_client keeps both in the process (they are the two types its multiprocess mode cannot
serve). Here an Info `build` is the gauge family `build_info`, 1 for the label set last given to
info() by a live worker; an Enum `state` is the gauge family `state` with a label `state` per
state, 1 for the state last set by any live worker and 0 for the others. Both the native classes
and the backend mode (which patches prometheus_client's classes) write through these writers.
"""

from . import _native

# Gauge modes: an Info label set counts while a live worker asserts it; an Enum shows the state
# the most recent state() call of a live worker set.
_INFO_MODE = _native.GAUGE_LIVEMAX
_ENUM_MODE = _native.GAUGE_LIVEMOSTRECENT


class InfoFamily:
    """The `<name>_info` family of one Info metric, registered at the first info() call: its label
    names are the metric's own followed by the info keys, sorted, and stay those for good."""

    def __init__(self, name, documentation, labelnames):
        self.name = name + '_info'
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._keys = None
        self._family = None

    def bind(self, labelvalues, val):
        """The series handle for this child's `labelvalues` and the info dict `val`."""
        keys = tuple(sorted(val))
        if self._family is None:
            self._family = _native.register(_native.GAUGE, self.name, self._documentation, '',
                                            self._labelnames + keys, _INFO_MODE, None, False)
            self._keys = keys
        elif keys != self._keys:
            raise ValueError(
                'Info metric {} holds the keys {}; shmetrics keeps one set of keys per Info '
                'metric, got {}'.format(self.name, list(self._keys), list(keys)))
        series = _native.Gauge()
        series._bind(self._family, tuple(labelvalues) + tuple(str(val[k]) for k in keys))
        return series


class InfoWriter:
    """One child's current label set: info(val) sets its series to 1, and a label set it replaces
    to 0 (the region keeps a series once written)."""

    def __init__(self, family, labelvalues):
        self._family = family
        self._labelvalues = tuple(labelvalues)
        self._current = None
        self._current_val = None

    def info(self, val):
        if self._current is not None and val == self._current_val:
            return
        series = self._family.bind(self._labelvalues, val)
        series.set(1)
        if self._current is not None:
            self._current.set(0)
        self._current, self._current_val = series, dict(val)


def register_enum(name, documentation, labelnames):
    """The family of an Enum: the metric's label names and then one named like the metric."""
    return _native.register(_native.GAUGE, name, documentation, '',
                            tuple(labelnames) + (name,), _ENUM_MODE, None, False)


class EnumWriter:
    """One child's state: a gauge per state, 1 for the current one. Starts in the first state, as
    prometheus_client's Enum does."""

    def __init__(self, family, labelvalues, states):
        self._states = list(states)
        self._series = []
        for state in self._states:
            series = _native.Gauge()
            series._bind(family, tuple(labelvalues) + (str(state),))
            self._series.append(series)
        self._index = None
        self.set_index(0)

    def set_index(self, index):
        # Every state is written at each change: the gateway takes each state's most recent
        # write across live workers, so all of them must come from the same state() call.
        for i, series in enumerate(self._series):
            if i != index:
                series.set(0)
        self._series[index].set(1)
        self._index = index

    def state(self, state):
        self.set_index(self._states.index(state))

    @property
    def index(self):
        return self._index
