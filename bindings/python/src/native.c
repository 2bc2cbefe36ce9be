/* shmetrics._native: the CPython extension over the C ABI (libshmetrics.so.1).
 *
 * Owns the handle types the Python package subclasses (Counter, Gauge, Histogram, Summary: one
 * series handle each, NULL on a labelled parent) and the control plane (attach, register, bind a
 * handle to label values). The write methods are METH_FASTCALL and keep the GIL: releasing it
 * costs more than the write. They raise only for what prometheus_client raises for (a parent
 * without label values, a negative counter increment, an invalid exemplar); everything else the
 * C data plane takes as is and counts as a drop when it cannot store it.
 *
 * Each handle also keeps this process's own running value of its series (local), which is what
 * prometheus_client's value API reads back (get()) for an app's own /metrics route: the region
 * holds every worker's cells, but only the gateway reads and merges them.
 *
 * The GIL serialises every call here, so the module state (one client per process) and the local
 * values need no lock.
 * After fork() the child keeps every handle: the C client moves it to its own writer slot.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#include "shmetrics/shmetrics_c.h"

static shmetrics_client *g_client; /* set by attach(), for the life of the process */
static PyObject *g_region_error;   /* shmetrics.RegionError, installed by the package */

/* --- Errors ------------------------------------------------------------------------------------
 */

/* A failed control-plane call: a definition problem is the caller's ValueError; anything about
 * the region itself is a RegionError carrying the errno. */
static PyObject *RaiseFromC(int rc) {
  const char *message = shmetrics_last_error();
  if (rc == -EINVAL) {
    PyErr_SetString(PyExc_ValueError, message);
  } else if (rc == -ENOMEM) {
    PyErr_NoMemory();
  } else {
    PyObject *type = g_region_error != NULL ? g_region_error : PyExc_OSError;
    PyObject *args = Py_BuildValue("(is)", -rc, message);
    if (args != NULL) {
      PyErr_SetObject(type, args);
      Py_DECREF(args);
    }
  }
  return NULL;
}

static PyObject *RaiseMissingLabels(const char *type) {
  PyErr_Format(PyExc_ValueError, "%s metric is missing label values", type);
  return NULL;
}

/* A Python number as a double, as prometheus_client's arithmetic accepts it. */
static int ToDouble(PyObject *o, double *out) {
  if (PyFloat_CheckExact(o)) {
    *out = PyFloat_AS_DOUBLE(o);
    return 0;
  }
  *out = PyFloat_AsDouble(o);
  return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* --- Exemplars ----------------------------------------------------------------------------------
 * prometheus_client's rules: label names [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__", at most
 * 128 characters of names and values together. Every name has at least one character, so 128
 * pairs is the most a valid exemplar can have. */
enum { kMaxExemplarLabels = 128 };

static int ValidLabelName(const char *s, Py_ssize_t n) {
  if (n == 0) return 0;
  for (Py_ssize_t i = 0; i < n; ++i) {
    const char c = s[i];
    const int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return 0;
  }
  return 1;
}

typedef struct {
  size_t count;
  const char *names[kMaxExemplarLabels];
  const char *values[kMaxExemplarLabels];
} ExemplarLabels;

/* Fills `out` from a dict of str to str; the strings stay owned by the dict, which the caller
 * holds for the duration of the write. */
static int ParseExemplar(PyObject *exemplar, ExemplarLabels *out) {
  if (!PyDict_Check(exemplar)) {
    PyErr_SetString(PyExc_TypeError, "exemplar must be a dict of label names to values");
    return -1;
  }
  Py_ssize_t pos = 0, runes = 0;
  PyObject *key, *value;
  out->count = 0;
  while (PyDict_Next(exemplar, &pos, &key, &value)) {
    if (!PyUnicode_Check(key) || !PyUnicode_Check(value)) {
      PyErr_SetString(PyExc_TypeError, "exemplar label names and values must be str");
      return -1;
    }
    Py_ssize_t key_len;
    const char *k = PyUnicode_AsUTF8AndSize(key, &key_len);
    const char *v = PyUnicode_AsUTF8(value);
    if (k == NULL || v == NULL) return -1;
    if (!ValidLabelName(k, key_len)) {
      PyErr_Format(PyExc_ValueError, "Invalid label metric name: %U", key);
      return -1;
    }
    if (key_len >= 2 && k[0] == '_' && k[1] == '_') {
      PyErr_Format(PyExc_ValueError, "Reserved label metric name: %U", key);
      return -1;
    }
    runes += PyUnicode_GET_LENGTH(key) + PyUnicode_GET_LENGTH(value);
    if (out->count == kMaxExemplarLabels) break; /* over 128 characters, reported below */
    out->names[out->count] = k;
    out->values[out->count] = v;
    ++out->count;
  }
  if (runes > 128) {
    PyErr_Format(PyExc_ValueError,
                 "Exemplar labels have %zd UTF-8 characters, exceeding the limit of 128", runes);
    return -1;
  }
  return 0;
}

/* Parses (amount=<default>, exemplar=None) in FASTCALL form. */
static int ParseAmountExemplar(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                               int amount_required, double *amount, PyObject **exemplar) {
  PyObject *amount_obj = nargs > 0 ? args[0] : NULL;
  *exemplar = nargs > 1 ? args[1] : NULL;
  if (nargs > 2) {
    PyErr_SetString(PyExc_TypeError, "takes at most 2 positional arguments");
    return -1;
  }
  if (kwnames != NULL) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i) {
      PyObject *name = PyTuple_GET_ITEM(kwnames, i);
      PyObject *value = args[nargs + i];
      if (PyUnicode_CompareWithASCIIString(name, "amount") == 0 && amount_obj == NULL) {
        amount_obj = value;
      } else if (PyUnicode_CompareWithASCIIString(name, "exemplar") == 0 && *exemplar == NULL) {
        *exemplar = value;
      } else {
        PyErr_Format(PyExc_TypeError, "unexpected or repeated keyword argument '%U'", name);
        return -1;
      }
    }
  }
  if (amount_obj == NULL) {
    if (amount_required) {
      PyErr_SetString(PyExc_TypeError, "missing required argument 'amount'");
      return -1;
    }
    return 0; /* *amount holds the default */
  }
  return ToDouble(amount_obj, amount);
}

/* Parses a single optional number (inc/dec/set/observe without exemplars). */
static int ParseAmount(PyObject *const *args, Py_ssize_t nargs, int required, double *amount) {
  if (nargs == 1) return ToDouble(args[0], amount);
  if (nargs == 0 && !required) return 0;
  PyErr_Format(
      PyExc_TypeError,
      required ? "takes exactly 1 argument (%zd given)" : "takes at most 1 argument (%zd given)",
      nargs);
  return -1;
}

/* --- Family: one registered family; binds handles to label values ----------------------------- */

typedef struct {
  PyObject_HEAD shmetrics_family *family;
  int type;
  Py_ssize_t label_count;
  double *bounds; /* histograms: the finite bucket bounds, for the handles' local counts */
  Py_ssize_t bound_count;
} FamilyObject;

static void Family_dealloc(FamilyObject *self) {
  PyMem_Free(self->bounds);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject FamilyType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmetrics._native.Family",
    .tp_basicsize = sizeof(FamilyObject),
    .tp_dealloc = (destructor)Family_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A family registered in the region (made by register()).",
};

/* --- Handle types: one series each; Python subclasses add the rest of the API ----------------- */

typedef struct {
  PyObject_HEAD void *handle; /* NULL until bound: a labelled parent */
  int no_add;                 /* gauges in a mostrecent mode: inc/dec are refused */
  PyObject *dict;             /* the subclass's attributes */
  PyObject *children;         /* labelled parents: {tuple of label values: child} */
  PyObject *labelnames;       /* labelled parents: the family's label names, a tuple */
  int type;                   /* the family's, once bound */
  /* This process's own value: the counter's total, the gauge's value, the sum of observations. */
  double local;
  double local_count;    /* summaries and histograms: observations */
  double *local_buckets; /* histograms: observations per bucket (not cumulative), +Inf last */
  PyObject *family;      /* histograms: the FamilyObject whose bounds local_buckets follow */
} HandleObject;

static void Handle_dealloc(HandleObject *self) {
  PyObject_GC_UnTrack(self);
  Py_CLEAR(self->dict);
  Py_CLEAR(self->children);
  Py_CLEAR(self->labelnames);
  Py_CLEAR(self->family);
  PyMem_Free(self->local_buckets);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Handle_traverse(HandleObject *self, visitproc visit, void *arg) {
  Py_VISIT(self->dict);
  Py_VISIT(self->children);
  Py_VISIT(self->labelnames);
  Py_VISIT(self->family);
  Py_VISIT(Py_TYPE(self));
  return 0;
}

static int Handle_clear(HandleObject *self) {
  Py_CLEAR(self->dict);
  Py_CLEAR(self->children);
  Py_CLEAR(self->labelnames);
  Py_CLEAR(self->family);
  return 0;
}

/* _set_children(children, labelnames): the cache labels() reads first. The Python side fills it
 * (_resolve_labels) and owns its rules. */
static PyObject *Handle_set_children(HandleObject *self, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 2 || !PyDict_CheckExact(args[0]) || !PyTuple_CheckExact(args[1])) {
    PyErr_SetString(PyExc_TypeError, "_set_children(children: dict, labelnames: tuple)");
    return NULL;
  }
  Py_INCREF(args[0]);
  Py_XSETREF(self->children, args[0]);
  Py_INCREF(args[1]);
  Py_XSETREF(self->labelnames, args[1]);
  Py_RETURN_NONE;
}

/* The cache key of labels(**kw): the values in label-name order, or NULL (no error set) if the
 * keywords are not exactly the label names. */
static PyObject *KeywordKey(PyObject *labelnames, PyObject *const *values, PyObject *kwnames) {
  const Py_ssize_t n = PyTuple_GET_SIZE(labelnames);
  if (PyTuple_GET_SIZE(kwnames) != n) return NULL;
  PyObject *key = PyTuple_New(n);
  if (key == NULL) return NULL;
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject *name = PyTuple_GET_ITEM(labelnames, i);
    Py_ssize_t j = 0;
    /* Keyword names and label names are usually the same interned objects. */
    while (j < n && PyTuple_GET_ITEM(kwnames, j) != name) ++j;
    for (Py_ssize_t k = 0; j == n && k < n; ++k) {
      if (PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, k), name) == 0) j = k;
    }
    if (PyErr_Occurred()) PyErr_Clear(); /* a failed comparison only means "not this name" */
    if (j == n) {
      Py_DECREF(key);
      return NULL;
    }
    Py_INCREF(values[j]);
    PyTuple_SET_ITEM(key, i, values[j]);
  }
  return key;
}

/* Whether `key` may be looked up as it is: str and int values only, so that no value can match a
 * cached key that compares equal but prints differently (1.0 or True against 1). */
static int CacheableKey(PyObject *key) {
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(key); ++i) {
    PyObject *v = PyTuple_GET_ITEM(key, i);
    if (!PyUnicode_CheckExact(v) && !PyLong_CheckExact(v)) return 0;
  }
  return 1;
}

/* labels(*values) or labels(**kw): the cached child, in one dict lookup; the first time (and for
 * every error) the Python side's _resolve_labels(values, kw). */
static PyObject *Handle_labels(HandleObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
  const Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
  if (self->children != NULL && (nargs == 0) != (nkw == 0)) {
    PyObject *key = NULL;
    if (nkw == 0) {
      key = PyTuple_New(nargs);
      if (key == NULL) return NULL;
      for (Py_ssize_t i = 0; i < nargs; ++i) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(key, i, args[i]);
      }
    } else {
      key = KeywordKey(self->labelnames, args + nargs, kwnames);
      if (key == NULL && PyErr_Occurred()) return NULL;
    }
    if (key != NULL) {
      PyObject *child = CacheableKey(key) ? PyDict_GetItemWithError(self->children, key) : NULL;
      Py_DECREF(key);
      if (child != NULL) {
        Py_INCREF(child);
        return child;
      }
      if (PyErr_Occurred()) return NULL;
    }
  }
  PyObject *values = PyTuple_New(nargs);
  PyObject *kwargs = PyDict_New();
  PyObject *result = NULL;
  if (values == NULL || kwargs == NULL) goto done;
  for (Py_ssize_t i = 0; i < nargs; ++i) {
    Py_INCREF(args[i]);
    PyTuple_SET_ITEM(values, i, args[i]);
  }
  for (Py_ssize_t i = 0; i < nkw; ++i) {
    if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) goto done;
  }
  result = PyObject_CallMethod((PyObject *)self, "_resolve_labels", "OO", values, kwargs);
done:
  Py_XDECREF(values);
  Py_XDECREF(kwargs);
  return result;
}

/* _bind(family, values): resolves the series of `values` (a tuple of str, in label-name order)
 * and makes this object its handle. */
static PyObject *Handle_bind(HandleObject *self, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 2 || !PyObject_TypeCheck(args[0], &FamilyType) || !PyTuple_Check(args[1])) {
    PyErr_SetString(PyExc_TypeError, "_bind(family, values: tuple of str)");
    return NULL;
  }
  FamilyObject *family = (FamilyObject *)args[0];
  PyObject *values = args[1];
  const Py_ssize_t n = PyTuple_GET_SIZE(values);
  if (n != family->label_count) {
    PyErr_SetString(PyExc_ValueError, "Incorrect label count");
    return NULL;
  }
  const char **strings = PyMem_Malloc(sizeof(char *) * (n > 0 ? n : 1));
  size_t *lens = PyMem_Malloc(sizeof(size_t) * (n > 0 ? n : 1));
  if (strings == NULL || lens == NULL) {
    PyMem_Free(strings);
    PyMem_Free(lens);
    return PyErr_NoMemory();
  }
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject *v = PyTuple_GET_ITEM(values, i);
    Py_ssize_t len = 0;
    strings[i] = PyUnicode_Check(v) ? PyUnicode_AsUTF8AndSize(v, &len) : NULL;
    if (strings[i] == NULL) {
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "label values must be str");
      PyMem_Free(strings);
      PyMem_Free(lens);
      return NULL;
    }
    lens[i] = (size_t)len;
  }
  int rc = -EINVAL;
  void *handle = NULL;
  switch (family->type) {
    case SHMETRICS_COUNTER:
      rc = shmetrics_counter_labels(family->family, (size_t)n, strings, lens,
                                    (shmetrics_counter **)&handle);
      break;
    case SHMETRICS_GAUGE:
      rc = shmetrics_gauge_labels(family->family, (size_t)n, strings, lens,
                                  (shmetrics_gauge **)&handle);
      break;
    case SHMETRICS_HISTOGRAM:
      rc = shmetrics_histogram_labels(family->family, (size_t)n, strings, lens,
                                      (shmetrics_histogram **)&handle);
      break;
    case SHMETRICS_SUMMARY:
      rc = shmetrics_summary_labels(family->family, (size_t)n, strings, lens,
                                    (shmetrics_summary **)&handle);
      break;
  }
  PyMem_Free(strings);
  PyMem_Free(lens);
  if (rc < 0) return RaiseFromC(rc);
  if (family->type == SHMETRICS_HISTOGRAM) {
    double *buckets = PyMem_Calloc((size_t)family->bound_count + 1, sizeof(double));
    if (buckets == NULL) return PyErr_NoMemory();
    PyMem_Free(self->local_buckets);
    self->local_buckets = buckets;
    Py_INCREF(family);
    Py_XSETREF(self->family, (PyObject *)family);
  }
  self->handle = handle;
  self->type = family->type;
  self->local = 0;
  self->local_count = 0;
  Py_RETURN_NONE;
}

/* _local(): this process's own value of the series. A float for counters and gauges; (count,
 * sum) for summaries; (per-bucket counts with +Inf last, sum) for histograms. */
static PyObject *Handle_local(HandleObject *self, PyObject *unused) {
  (void)unused;
  if (self->handle == NULL) return PyFloat_FromDouble(0);
  if (self->local_buckets != NULL) {
    const Py_ssize_t n = ((FamilyObject *)self->family)->bound_count + 1;
    PyObject *counts = PyTuple_New(n);
    if (counts == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject *c = PyFloat_FromDouble(self->local_buckets[i]);
      if (c == NULL) {
        Py_DECREF(counts);
        return NULL;
      }
      PyTuple_SET_ITEM(counts, i, c);
    }
    return Py_BuildValue("(Nd)", counts, self->local);
  }
  if (self->type == SHMETRICS_SUMMARY) {
    return Py_BuildValue("(dd)", self->local_count, self->local);
  }
  return PyFloat_FromDouble(self->local);
}

/* The local count of `v` in a histogram's buckets: the first bound >= v, as the region's
 * buckets are (le); NaN is in none, as in prometheus_client. */
static void CountLocally(HandleObject *self, double v) {
  self->local += v;
  ++self->local_count;
  if (self->local_buckets == NULL || v != v) return;
  const FamilyObject *family = (const FamilyObject *)self->family;
  Py_ssize_t lo = 0, hi = family->bound_count;
  while (lo < hi) {
    const Py_ssize_t mid = lo + (hi - lo) / 2;
    if (family->bounds[mid] < v) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  ++self->local_buckets[lo];
}

static PyObject *Handle_set_no_add(HandleObject *self, PyObject *arg) {
  self->no_add = PyObject_IsTrue(arg);
  if (self->no_add < 0) return NULL;
  Py_RETURN_NONE;
}

#define HANDLE_COMMON_METHODS                                                              \
  {"labels", (PyCFunction)(void (*)(void))Handle_labels, METH_FASTCALL | METH_KEYWORDS,    \
   "labels(*values) or labels(**kw): the child of these label values (turned into str)."}, \
      {"_bind", (PyCFunction)(void (*)(void))Handle_bind, METH_FASTCALL,                   \
       "_bind(family, values): make this object the series of `values`."},                 \
      {"_set_children", (PyCFunction)(void (*)(void))Handle_set_children, METH_FASTCALL,   \
       "_set_children(children, labelnames): the cache labels() reads."},                  \
      {"_set_no_add", (PyCFunction)Handle_set_no_add, METH_O,                              \
       "Refuse inc/dec (gauges in a mostrecent mode)."},                                   \
  {                                                                                        \
    "_local", (PyCFunction)Handle_local, METH_NOARGS,                                      \
        "This process's own value of the series (what prometheus_client's get() reads)."   \
  }

/* Hot path: each write is one call into libshmetrics (a few ns, no lock, no syscall). */

static PyObject *Counter_inc(HandleObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames) {
  double amount = 1.0;
  PyObject *exemplar = NULL;
  if (kwnames == NULL && nargs <= 1) {
    if (ParseAmount(args, nargs, 0, &amount) < 0) return NULL;
  } else if (ParseAmountExemplar(args, nargs, kwnames, 0, &amount, &exemplar) < 0) {
    return NULL;
  }
  if (self->handle == NULL) return RaiseMissingLabels("counter");
  if (amount < 0) {
    PyErr_SetString(PyExc_ValueError, "Counters can only be incremented by non-negative amounts.");
    return NULL;
  }
  if (exemplar != NULL && PyObject_IsTrue(exemplar) == 1) {
    ExemplarLabels labels;
    if (ParseExemplar(exemplar, &labels) < 0) return NULL;
    shmetrics_counter_add_exemplar(self->handle, amount, labels.count, labels.names, labels.values);
  } else if (amount == 1.0) {
    shmetrics_counter_inc(self->handle);
  } else {
    shmetrics_counter_add(self->handle, amount);
  }
  self->local += amount;
  Py_RETURN_NONE;
}

/* _set_exemplar(amount, labels): the exemplar of an increment of `amount` made just before, for
 * prometheus_client's value API, which adds and attaches the exemplar in two calls. */
static PyObject *Counter_set_exemplar(HandleObject *self, PyObject *const *args, Py_ssize_t nargs) {
  double amount = 0;
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "_set_exemplar(amount, labels: dict)");
    return NULL;
  }
  if (ToDouble(args[0], &amount) < 0) return NULL;
  if (self->handle == NULL) return RaiseMissingLabels("counter");
  ExemplarLabels labels;
  if (ParseExemplar(args[1], &labels) < 0) return NULL;
  shmetrics_counter_set_exemplar(self->handle, amount, labels.count, labels.names, labels.values);
  Py_RETURN_NONE;
}

static PyObject *RaiseNoAdd(void) {
  PyErr_SetString(PyExc_ValueError, "inc/dec is not allowed in the mostrecent multiprocess modes");
  return NULL;
}

static PyObject *Gauge_inc(HandleObject *self, PyObject *const *args, Py_ssize_t nargs) {
  double amount = 1.0;
  if (ParseAmount(args, nargs, 0, &amount) < 0) return NULL;
  if (self->handle == NULL) return RaiseMissingLabels("gauge");
  if (self->no_add) return RaiseNoAdd();
  shmetrics_gauge_add(self->handle, amount);
  self->local += amount;
  Py_RETURN_NONE;
}

static PyObject *Gauge_dec(HandleObject *self, PyObject *const *args, Py_ssize_t nargs) {
  double amount = 1.0;
  if (ParseAmount(args, nargs, 0, &amount) < 0) return NULL;
  if (self->handle == NULL) return RaiseMissingLabels("gauge");
  if (self->no_add) return RaiseNoAdd();
  shmetrics_gauge_add(self->handle, -amount);
  self->local -= amount;
  Py_RETURN_NONE;
}

static PyObject *Gauge_set(HandleObject *self, PyObject *const *args, Py_ssize_t nargs) {
  double value = 0;
  if (ParseAmount(args, nargs, 1, &value) < 0) return NULL;
  if (self->handle == NULL) return RaiseMissingLabels("gauge");
  shmetrics_gauge_set(self->handle, value);
  self->local = value;
  Py_RETURN_NONE;
}

static PyObject *Gauge_set_to_current_time(HandleObject *self, PyObject *unused) {
  (void)unused;
  if (self->handle == NULL) return RaiseMissingLabels("gauge");
  /* The time is read here rather than by the C client so that the local value is the same. */
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  self->local = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
  shmetrics_gauge_set(self->handle, self->local);
  Py_RETURN_NONE;
}

static PyObject *Histogram_observe(HandleObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames) {
  double amount = 0;
  PyObject *exemplar = NULL;
  if (kwnames == NULL && nargs == 1) {
    if (ToDouble(args[0], &amount) < 0) return NULL;
  } else if (ParseAmountExemplar(args, nargs, kwnames, 1, &amount, &exemplar) < 0) {
    return NULL;
  }
  if (self->handle == NULL) return RaiseMissingLabels("histogram");
  if (exemplar != NULL && PyObject_IsTrue(exemplar) == 1) {
    ExemplarLabels labels;
    if (ParseExemplar(exemplar, &labels) < 0) return NULL;
    shmetrics_histogram_observe_exemplar(self->handle, amount, labels.count, labels.names,
                                         labels.values);
  } else {
    shmetrics_histogram_observe(self->handle, amount);
  }
  CountLocally(self, amount);
  Py_RETURN_NONE;
}

static PyObject *Summary_observe(HandleObject *self, PyObject *const *args, Py_ssize_t nargs) {
  double amount = 0;
  if (ParseAmount(args, nargs, 1, &amount) < 0) return NULL;
  if (self->handle == NULL) return RaiseMissingLabels("summary");
  shmetrics_summary_observe(self->handle, amount);
  CountLocally(self, amount);
  Py_RETURN_NONE;
}

static PyMethodDef CounterMethods[] = {
    {"inc", (PyCFunction)(void (*)(void))Counter_inc, METH_FASTCALL | METH_KEYWORDS,
     "inc(amount=1, exemplar=None)"},
    {"_set_exemplar", (PyCFunction)(void (*)(void))Counter_set_exemplar, METH_FASTCALL,
     "_set_exemplar(amount, labels): the exemplar of an increment made just before."},
    HANDLE_COMMON_METHODS,
    {NULL, NULL, 0, NULL}};

static PyMethodDef GaugeMethods[] = {
    {"inc", (PyCFunction)(void (*)(void))Gauge_inc, METH_FASTCALL, "inc(amount=1)"},
    {"dec", (PyCFunction)(void (*)(void))Gauge_dec, METH_FASTCALL, "dec(amount=1)"},
    {"set", (PyCFunction)(void (*)(void))Gauge_set, METH_FASTCALL, "set(value)"},
    {"set_to_current_time", (PyCFunction)Gauge_set_to_current_time, METH_NOARGS,
     "Set the gauge to the current Unix time."},
    HANDLE_COMMON_METHODS,
    {NULL, NULL, 0, NULL}};

static PyMethodDef HistogramMethods[] = {
    {"observe", (PyCFunction)(void (*)(void))Histogram_observe, METH_FASTCALL | METH_KEYWORDS,
     "observe(amount, exemplar=None)"},
    HANDLE_COMMON_METHODS,
    {NULL, NULL, 0, NULL}};

static PyMethodDef SummaryMethods[] = {
    {"observe", (PyCFunction)(void (*)(void))Summary_observe, METH_FASTCALL, "observe(amount)"},
    HANDLE_COMMON_METHODS,
    {NULL, NULL, 0, NULL}};

static PyGetSetDef HandleGetSet[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}};

#define HANDLE_TYPE(c_name, py_name, methods)                                       \
  static PyTypeObject c_name = {                                                    \
      PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmetrics._native." py_name,        \
      .tp_basicsize = sizeof(HandleObject),                                         \
      .tp_dictoffset = offsetof(HandleObject, dict),                                \
      .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,    \
      .tp_doc = "One series of a " py_name " family (unbound: a labelled parent).", \
      .tp_new = PyType_GenericNew,                                                  \
      .tp_dealloc = (destructor)Handle_dealloc,                                     \
      .tp_traverse = (traverseproc)Handle_traverse,                                 \
      .tp_clear = (inquiry)Handle_clear,                                            \
      .tp_methods = methods,                                                        \
      .tp_getset = HandleGetSet,                                                    \
  }

HANDLE_TYPE(CounterType, "Counter", CounterMethods);
HANDLE_TYPE(GaugeType, "Gauge", GaugeMethods);
HANDLE_TYPE(HistogramType, "Histogram", HistogramMethods);
HANDLE_TYPE(SummaryType, "Summary", SummaryMethods);

/* --- Module functions: the control plane ------------------------------------------------------ */

static PyObject *Attach(PyObject *module, PyObject *arg) {
  (void)module;
  const char *region = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
  if (region == NULL) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "attach(region: str)");
    return NULL;
  }
  shmetrics_client *client = NULL;
  const int rc = shmetrics_attach(region, NULL, &client);
  if (rc < 0) return RaiseFromC(rc);
  g_client = client;
  Py_RETURN_NONE;
}

static PyObject *Attached(PyObject *module, PyObject *unused) {
  (void)module;
  (void)unused;
  return PyBool_FromLong(g_client != NULL);
}

/* A Python sequence of str as a C array of borrowed UTF-8 pointers (owned by `seq`). */
static int StringArray(PyObject *seq, const char ***out, size_t *count) {
  const Py_ssize_t n = PyTuple_GET_SIZE(seq);
  *count = (size_t)n;
  *out = PyMem_Malloc(sizeof(char *) * (n > 0 ? n : 1));
  if (*out == NULL) return PyErr_NoMemory(), -1;
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject *s = PyTuple_GET_ITEM(seq, i);
    (*out)[i] = PyUnicode_Check(s) ? PyUnicode_AsUTF8(s) : NULL;
    if ((*out)[i] == NULL) {
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "label names must be str");
      PyMem_Free(*out);
      return -1;
    }
  }
  return 0;
}

/* register(type, name, help, unit, labelnames, gauge_mode, buckets, exemplars) -> Family.
 * `unit` may be ""; `buckets` a tuple of finite floats or None. */
static PyObject *Register(PyObject *module, PyObject *args) {
  (void)module;
  int type, gauge_mode, exemplars;
  const char *name, *help, *unit;
  PyObject *labelnames, *buckets;
  if (!PyArg_ParseTuple(args, "isssO!iOp", &type, &name, &help, &unit, &PyTuple_Type, &labelnames,
                        &gauge_mode, &buckets, &exemplars)) {
    return NULL;
  }
  if (g_client == NULL) {
    PyErr_SetString(PyExc_RuntimeError, "register() before attach()");
    return NULL;
  }
  struct shmetrics_family_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.help = help;
  opts.unit = unit[0] != '\0' ? unit : NULL;
  opts.gauge_mode = gauge_mode;
  opts.exemplars = exemplars;
  const char **names = NULL;
  if (StringArray(labelnames, &names, &opts.label_count) < 0) return NULL;
  opts.label_names = names;
  double *bounds = NULL;
  if (buckets != Py_None) {
    if (!PyTuple_Check(buckets)) {
      PyMem_Free(names);
      PyErr_SetString(PyExc_TypeError, "buckets must be a tuple of float");
      return NULL;
    }
    const Py_ssize_t n = PyTuple_GET_SIZE(buckets);
    bounds = PyMem_Malloc(sizeof(double) * (n > 0 ? n : 1));
    if (bounds == NULL) {
      PyMem_Free(names);
      return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; ++i) {
      if (ToDouble(PyTuple_GET_ITEM(buckets, i), &bounds[i]) < 0) {
        PyMem_Free(names);
        PyMem_Free(bounds);
        return NULL;
      }
    }
    opts.bucket_count = (size_t)n;
    opts.buckets = bounds;
  }
  shmetrics_family *family = NULL;
  const int rc = shmetrics_register(g_client, type, name, &opts, &family);
  PyMem_Free(names);
  if (rc < 0) {
    PyMem_Free(bounds);
    return RaiseFromC(rc);
  }
  FamilyObject *result = PyObject_New(FamilyObject, &FamilyType);
  if (result == NULL) {
    PyMem_Free(bounds);
    return NULL;
  }
  result->family = family;
  result->type = type;
  result->label_count = (Py_ssize_t)opts.label_count;
  result->bounds = bounds;
  result->bound_count = (Py_ssize_t)opts.bucket_count;
  return (PyObject *)result;
}

static PyObject *SetRegionError(PyObject *module, PyObject *arg) {
  (void)module;
  if (!PyType_Check(arg) ||
      !PyType_IsSubtype((PyTypeObject *)arg, (PyTypeObject *)PyExc_Exception)) {
    PyErr_SetString(PyExc_TypeError, "_set_region_error(exception type)");
    return NULL;
  }
  Py_INCREF(arg);
  Py_XSETREF(g_region_error, arg);
  Py_RETURN_NONE;
}

static PyMethodDef ModuleMethods[] = {
    {"attach", Attach, METH_O,
     "attach(region): this process's attachment to `region` (creating it if needed)."},
    {"attached", Attached, METH_NOARGS, "Whether attach() succeeded in this process."},
    {"register", Register, METH_VARARGS,
     "register(type, name, help, unit, labelnames, gauge_mode, buckets, exemplars) -> Family"},
    {"_set_region_error", SetRegionError, METH_O,
     "The exception type raised for region failures: RegionError(errno, message)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef NativeModule = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shmetrics._native",
    .m_doc = "The shmetrics C ABI for Python; use the shmetrics package instead.",
    .m_size = -1,
    .m_methods = ModuleMethods,
};

PyMODINIT_FUNC PyInit__native(void) {
  if (shmetrics_abi_version() != SHMETRICS_ABI_VERSION) {
    PyErr_Format(PyExc_ImportError, "libshmetrics ABI %d, this module needs %d",
                 shmetrics_abi_version(), SHMETRICS_ABI_VERSION);
    return NULL;
  }
  PyTypeObject *types[] = {&FamilyType, &CounterType, &GaugeType, &HistogramType, &SummaryType};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; ++i) {
    if (PyType_Ready(types[i]) < 0) return NULL;
  }
  PyObject *m = PyModule_Create(&NativeModule);
  if (m == NULL) return NULL;
  const char *names[] = {"Family", "Counter", "Gauge", "Histogram", "Summary"};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; ++i) {
    Py_INCREF(types[i]);
    if (PyModule_AddObject(m, names[i], (PyObject *)types[i]) < 0) {
      Py_DECREF(types[i]);
      Py_DECREF(m);
      return NULL;
    }
  }
  if (PyModule_AddIntConstant(m, "COUNTER", SHMETRICS_COUNTER) < 0 ||
      PyModule_AddIntConstant(m, "GAUGE", SHMETRICS_GAUGE) < 0 ||
      PyModule_AddIntConstant(m, "HISTOGRAM", SHMETRICS_HISTOGRAM) < 0 ||
      PyModule_AddIntConstant(m, "SUMMARY", SHMETRICS_SUMMARY) < 0 ||
      PyModule_AddIntConstant(m, "GAUGE_ALL", SHMETRICS_GAUGE_ALL) < 0 ||
      PyModule_AddIntConstant(m, "GAUGE_LIVEALL", SHMETRICS_GAUGE_LIVEALL) < 0 ||
      PyModule_AddIntConstant(m, "GAUGE_SUM", SHMETRICS_GAUGE_SUM) < 0 ||
      PyModule_AddIntConstant(m, "GAUGE_LIVESUM", SHMETRICS_GAUGE_LIVESUM) < 0 ||
      PyModule_AddIntConstant(m, "GAUGE_MAX", SHMETRICS_GAUGE_MAX) < 0 ||
      PyModule_AddIntConstant(m, "GAUGE_LIVEMAX", SHMETRICS_GAUGE_LIVEMAX) < 0 ||
      PyModule_AddIntConstant(m, "GAUGE_MIN", SHMETRICS_GAUGE_MIN) < 0 ||
      PyModule_AddIntConstant(m, "GAUGE_LIVEMIN", SHMETRICS_GAUGE_LIVEMIN) < 0 ||
      PyModule_AddIntConstant(m, "GAUGE_MOSTRECENT", SHMETRICS_GAUGE_MOSTRECENT) < 0 ||
      PyModule_AddIntConstant(m, "GAUGE_LIVEMOSTRECENT", SHMETRICS_GAUGE_LIVEMOSTRECENT) < 0 ||
      PyModule_AddIntConstant(m, "MAX_EXEMPLAR_HISTOGRAM_BOUNDS",
                              (long)shmetrics_max_exemplar_histogram_bounds()) < 0) {
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
