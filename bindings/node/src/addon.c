/* shmetrics' Node-API addon: the C ABI (libshmetrics.so.1) for lib/index.js.
 *
 * Node-API version 8 (Node 12.22 and later), so one build loads in every Node since. The control
 * plane (attach, register, bind, writer) throws a JS Error carrying the C ABI's message and
 * errno. The data plane is a function per series and write (made by writer(), the series bound
 * in as its data) that takes a number and returns nothing: one N-API call into the inline write
 * path.
 *
 * Node's cluster and child_process start each worker as a new process that loads the addon
 * afresh, so no handle crosses a fork(). A process attaches to one region, for its lifetime.
 */
#define NAPI_VERSION 8
#include <errno.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>

#include "shmetrics/shmetrics_c.h"

static shmetrics_client *g_client; /* set by attach(), for the life of the process */

/* --- Errors ---------------------------------------------------------------------------------- */

static napi_value ThrowMessage(napi_env env, const char *code, const char *message) {
  napi_throw_error(env, code, message);
  return NULL;
}

/* A failed control-plane call: an Error whose message is shmetrics_last_error() and whose code
 * names the errno (EINVAL: a definition problem; anything else: the region). */
static napi_value ThrowFromC(napi_env env, int rc) {
  const char *code = rc == -EINVAL   ? "EINVAL"
                     : rc == -ENOMEM ? "ENOMEM"
                     : rc == -ENOENT ? "ENOENT"
                     : rc == -EACCES ? "EACCES"
                     : rc == -EPROTO ? "EPROTO"
                     : rc == -ENOSPC ? "ENOSPC"
                                     : "EREGION";
  return ThrowMessage(env, code, shmetrics_last_error());
}

#define CHECK(call)                                                         \
  do {                                                                      \
    if ((call) != napi_ok) return ThrowMessage(env, NULL, "N-API: " #call); \
  } while (0)

/* A JS string as a malloc'd UTF-8 string (the caller frees it), or NULL with a TypeError. */
static char *StringArg(napi_env env, napi_value v, const char *what) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, what);
    return NULL;
  }
  char *s = malloc(len + 1);
  if (s == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

/* A JS array of strings as malloc'd UTF-8 strings; frees what it made on failure. */
static int StringArray(napi_env env, napi_value array, char ***out, uint32_t *count,
                       const char *what) {
  bool is_array = false;
  if (napi_is_array(env, array, &is_array) != napi_ok || !is_array) {
    napi_throw_type_error(env, NULL, what);
    return -1;
  }
  napi_get_array_length(env, array, count);
  *out = calloc(*count > 0 ? *count : 1, sizeof(char *));
  if (*out == NULL) return napi_throw_error(env, "ENOMEM", "out of memory"), -1;
  for (uint32_t i = 0; i < *count; ++i) {
    napi_value item;
    napi_get_element(env, array, i, &item);
    (*out)[i] = StringArg(env, item, what);
    if ((*out)[i] == NULL) {
      for (uint32_t j = 0; j < i; ++j) free((*out)[j]);
      free(*out);
      return -1;
    }
  }
  return 0;
}

static void FreeStrings(char **strings, uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) free(strings[i]);
  free(strings);
}

/* --- Control plane ---------------------------------------------------------------------------- */

/* attach(region): this process's attachment (the region is created if no gateway made it yet). */
static napi_value Attach(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) return ThrowMessage(env, NULL, "attach(region: string)");
  char *region = StringArg(env, argv[0], "attach(region: string)");
  if (region == NULL) return NULL;
  shmetrics_client *client = NULL;
  const int rc = shmetrics_attach(region, NULL, &client);
  free(region);
  if (rc < 0) return ThrowFromC(env, rc);
  g_client = client;
  return NULL;
}

/* register(type, name, help, labelNames, gaugeMode, buckets | null) -> family (External). */
static napi_value Register(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 6)
    return ThrowMessage(env, NULL, "register(type, name, help, labelNames, mode, buckets)");
  if (g_client == NULL) return ThrowMessage(env, NULL, "register() before attach()");
  int32_t type = 0, mode = 0;
  if (napi_get_value_int32(env, argv[0], &type) != napi_ok ||
      napi_get_value_int32(env, argv[4], &mode) != napi_ok) {
    napi_throw_type_error(env, NULL, "register: type and mode must be numbers");
    return NULL;
  }
  char *name = StringArg(env, argv[1], "name must be a string");
  if (name == NULL) return NULL;
  char *help = StringArg(env, argv[2], "help must be a string");
  if (help == NULL) return free(name), NULL;
  char **labels = NULL;
  uint32_t label_count = 0;
  if (StringArray(env, argv[3], &labels, &label_count, "labelNames must be an array of strings") <
      0) {
    free(name);
    free(help);
    return NULL;
  }
  double *bounds = NULL;
  uint32_t bound_count = 0;
  napi_valuetype buckets_type;
  napi_typeof(env, argv[5], &buckets_type);
  if (buckets_type != napi_null && buckets_type != napi_undefined) {
    bool is_array = false;
    napi_is_array(env, argv[5], &is_array);
    if (is_array) napi_get_array_length(env, argv[5], &bound_count);
    bounds = is_array ? calloc(bound_count > 0 ? bound_count : 1, sizeof(double)) : NULL;
    for (uint32_t i = 0; bounds != NULL && i < bound_count; ++i) {
      napi_value item;
      napi_get_element(env, argv[5], i, &item);
      if (napi_get_value_double(env, item, &bounds[i]) != napi_ok) {
        free(bounds);
        bounds = NULL;
      }
    }
    if (bounds == NULL) {
      free(name);
      free(help);
      FreeStrings(labels, label_count);
      napi_throw_type_error(env, NULL, "buckets must be an array of numbers");
      return NULL;
    }
  }
  struct shmetrics_family_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.help = help;
  opts.label_count = label_count;
  opts.label_names = (const char *const *)labels;
  opts.gauge_mode = mode;
  opts.buckets = bounds;
  opts.bucket_count = bound_count;
  shmetrics_family *family = NULL;
  const int rc = shmetrics_register(g_client, type, name, &opts, &family);
  free(name);
  free(help);
  FreeStrings(labels, label_count);
  free(bounds);
  if (rc < 0) return ThrowFromC(env, rc);
  napi_value result;
  CHECK(napi_create_external(env, family, NULL, NULL, &result));
  return result;
}

/* bind(type, family, labelValues) -> series (External): the series of these label values. */
static napi_value Bind(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t type = 0;
  void *family = NULL;
  if (argc != 3 || napi_get_value_int32(env, argv[0], &type) != napi_ok ||
      napi_get_value_external(env, argv[1], &family) != napi_ok) {
    napi_throw_type_error(env, NULL, "bind(type, family, labelValues)");
    return NULL;
  }
  char **values = NULL;
  uint32_t count = 0;
  if (StringArray(env, argv[2], &values, &count, "label values must be strings") < 0) return NULL;
  const char *const *v = (const char *const *)values;
  void *series = NULL;
  int rc = -EINVAL;
  switch (type) {
    case SHMETRICS_COUNTER:
      rc = shmetrics_counter_labels(family, count, v, NULL, (shmetrics_counter **)&series);
      break;
    case SHMETRICS_GAUGE:
      rc = shmetrics_gauge_labels(family, count, v, NULL, (shmetrics_gauge **)&series);
      break;
    case SHMETRICS_HISTOGRAM:
      rc = shmetrics_histogram_labels(family, count, v, NULL, (shmetrics_histogram **)&series);
      break;
    case SHMETRICS_SUMMARY:
      rc = shmetrics_summary_labels(family, count, v, NULL, (shmetrics_summary **)&series);
      break;
  }
  FreeStrings(values, count);
  if (rc < 0) return ThrowFromC(env, rc);
  napi_value result;
  CHECK(napi_create_external(env, series, NULL, NULL, &result));
  return result;
}

/* --- Data plane: a function per series and write, (value) -> nothing ------------------------- */

/* The series travels as the function's data, so a write costs one napi_get_cb_info and one
 * napi_get_value_double (15 ns here; 25 with the series as an External argument). */
#define SERIES_WRITE_FUNCTION(js_name, c_call)                                             \
  static napi_value js_name(napi_env env, napi_callback_info info) {                       \
    size_t argc = 1;                                                                       \
    napi_value arg;                                                                        \
    void *series;                                                                          \
    double value;                                                                          \
    if (napi_get_cb_info(env, info, &argc, &arg, NULL, &series) != napi_ok || argc != 1 || \
        napi_get_value_double(env, arg, &value) != napi_ok) {                              \
      napi_throw_type_error(env, NULL, "a series write takes (number)");                   \
      return NULL;                                                                         \
    }                                                                                      \
    c_call;                                                                                \
    return NULL;                                                                           \
  }

SERIES_WRITE_FUNCTION(SeriesCounterAdd, shmetrics_counter_add(series, value))
SERIES_WRITE_FUNCTION(SeriesGaugeSet, shmetrics_gauge_set(series, value))
SERIES_WRITE_FUNCTION(SeriesGaugeAdd, shmetrics_gauge_add(series, value))
SERIES_WRITE_FUNCTION(SeriesHistogramObserve, shmetrics_histogram_observe(series, value))
SERIES_WRITE_FUNCTION(SeriesSummaryObserve, shmetrics_summary_observe(series, value))

/* writer(write, series) -> function(value): `write` is one of the WRITE_* constants. */
static napi_value Writer(napi_env env, napi_callback_info info) {
  static const napi_callback kWrites[] = {SeriesCounterAdd, SeriesGaugeSet, SeriesGaugeAdd,
                                          SeriesHistogramObserve, SeriesSummaryObserve};
  size_t argc = 2;
  napi_value argv[2];
  int32_t write = -1;
  void *series = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, argv[0], &write) != napi_ok || write < 0 ||
      write >= (int32_t)(sizeof kWrites / sizeof kWrites[0]) ||
      napi_get_value_external(env, argv[1], &series) != napi_ok) {
    napi_throw_type_error(env, NULL, "writer(write, series)");
    return NULL;
  }
  napi_value fn;
  CHECK(napi_create_function(env, NULL, 0, kWrites[write], series, &fn));
  return fn;
}

/* --- Module ------------------------------------------------------------------------------------
 */

static napi_value Init(napi_env env, napi_value exports) {
  if (shmetrics_abi_version() != SHMETRICS_ABI_VERSION) {
    return ThrowMessage(env, NULL, "libshmetrics has another ABI version than this addon");
  }
  const napi_property_descriptor functions[] = {
      {"attach", NULL, Attach, NULL, NULL, NULL, napi_enumerable, NULL},
      {"register", NULL, Register, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bind", NULL, Bind, NULL, NULL, NULL, napi_enumerable, NULL},
      {"writer", NULL, Writer, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions) !=
      napi_ok) {
    return NULL;
  }
  const struct {
    const char *name;
    int value;
  } constants[] = {
      {"COUNTER", SHMETRICS_COUNTER},
      {"GAUGE", SHMETRICS_GAUGE},
      {"HISTOGRAM", SHMETRICS_HISTOGRAM},
      {"SUMMARY", SHMETRICS_SUMMARY},
      {"GAUGE_ALL", SHMETRICS_GAUGE_ALL},
      {"GAUGE_LIVEALL", SHMETRICS_GAUGE_LIVEALL},
      {"GAUGE_SUM", SHMETRICS_GAUGE_SUM},
      {"GAUGE_LIVESUM", SHMETRICS_GAUGE_LIVESUM},
      {"GAUGE_MAX", SHMETRICS_GAUGE_MAX},
      {"GAUGE_LIVEMAX", SHMETRICS_GAUGE_LIVEMAX},
      {"GAUGE_MIN", SHMETRICS_GAUGE_MIN},
      {"GAUGE_LIVEMIN", SHMETRICS_GAUGE_LIVEMIN},
      {"GAUGE_MOSTRECENT", SHMETRICS_GAUGE_MOSTRECENT},
      {"GAUGE_LIVEMOSTRECENT", SHMETRICS_GAUGE_LIVEMOSTRECENT},
      {"WRITE_COUNTER_ADD", 0},
      {"WRITE_GAUGE_SET", 1},
      {"WRITE_GAUGE_ADD", 2},
      {"WRITE_HISTOGRAM_OBSERVE", 3},
      {"WRITE_SUMMARY_OBSERVE", 4},
  };
  for (size_t i = 0; i < sizeof constants / sizeof constants[0]; ++i) {
    napi_value v;
    if (napi_create_int32(env, constants[i].value, &v) != napi_ok ||
        napi_set_named_property(env, exports, constants[i].name, v) != napi_ok) {
      return NULL;
    }
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
