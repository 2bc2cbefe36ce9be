/* shmetrics C ABI: the client library as libshmetrics.so.1, for C and for language bindings.
 *
 *   shmetrics_client *c;
 *   shmetrics_family *requests;
 *   shmetrics_counter *ok;
 *   const char *labels[] = {"method", "code"};
 *   const char *values[] = {"GET", "200"};
 *   struct shmetrics_family_opts o = {
 *       .sz = sizeof o, .help = "Requests served.", .label_count = 2, .label_names = labels};
 *   if (shmetrics_attach("myapp", NULL, &c) < 0 ||
 *       shmetrics_register(c, SHMETRICS_COUNTER, "http_requests_total", &o, &requests) < 0 ||
 *       shmetrics_counter_labels(requests, 2, values, NULL, &ok) < 0) {
 *     fprintf(stderr, "metrics: %s\n", shmetrics_last_error());
 *     return 1;
 *   }
 *   shmetrics_counter_inc(ok);   (a few ns, no lock, no syscall)
 *
 * The rules:
 *  - Every function may be called from any thread. Threads of one process writing one series sum
 *    correctly.
 *  - Control plane (attach, register, *_labels): returns 0 or a negative errno, and then
 *    shmetrics_last_error() holds this thread's message naming the metric or region. These calls
 *    may lock, allocate and wait for the region's registry lock.
 *  - Data plane (*_inc, *_add, *_set, *_observe, with or without an exemplar): returns nothing and
 *    never blocks, allocates or makes a syscall. An update that cannot be stored (a series over
 *    its family's cap, a full region, a negative counter increment) is dropped and counted, and
 *    the drop shows in the gateway's /metrics. They take only handles the control plane
 *    returned (never NULL: there is no check on this path).
 *  - After fork() the child writes only its own slot; no call is needed, and every handle the
 *    parent resolved stays valid in the child.
 *  - Handles live as long as the process: there is nothing to free and no close.
 *
 * Errors the control plane returns:
 *   -EINVAL   a NULL argument, an invalid name or definition, a definition that conflicts with the
 *             family of that name already in this process or the region, a wrong number of label
 *             values, a handle of another metric type, an options struct with unknown fields set
 *   -ENOENT   the region does not exist and could not be created
 *   -EACCES   the operating system refused to open the region
 *   -EPERM    the region is owned or writable by another user we do not trust
 *   -EEXIST   something that is not a region (a directory, a FIFO, a link) holds its name
 *   -EAGAIN   the region is not initialised yet (its creator is busy, or died doing it)
 *   -EPROTO   the region is not one this library can read (another layout version, corrupt)
 *   -ENOSPC   shmetrics_claim_slot: the region has no free writer slot
 *   -ENOMEM   out of memory
 *   -EIO      anything else (the message says what)
 *
 * Options structs begin with their own size: set `sz = sizeof(struct ...)` and leave the fields
 * you do not need at zero, which means "the default". A caller built against an older header
 * passes a smaller size and gets defaults for the fields it does not know.
 */
#ifndef SHMETRICS_SHMETRICS_C_H_
#define SHMETRICS_SHMETRICS_C_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SHMETRICS_API __attribute__((visibility("default")))
#else
#define SHMETRICS_API
#endif

/* The ABI this header describes; shmetrics_abi_version() is the one of the library loaded. They
 * differ only when a program runs against another major version than it was built with. */
#define SHMETRICS_ABI_VERSION 1
SHMETRICS_API int shmetrics_abi_version(void);

/* This thread's message for its most recent failed control-plane call ("" if none). Valid until
 * this thread's next failing call. */
SHMETRICS_API const char *shmetrics_last_error(void);

typedef struct shmetrics_client shmetrics_client;
typedef struct shmetrics_family shmetrics_family;
typedef struct shmetrics_counter shmetrics_counter;
typedef struct shmetrics_gauge shmetrics_gauge;
typedef struct shmetrics_histogram shmetrics_histogram;
typedef struct shmetrics_summary shmetrics_summary;

enum shmetrics_metric_type {
  SHMETRICS_COUNTER = 1,
  SHMETRICS_GAUGE = 2,
  SHMETRICS_HISTOGRAM = 3,
  SHMETRICS_SUMMARY = 4
};

/* How the gateway merges a gauge over workers. "LIVE" modes drop a dead worker's value. */
enum shmetrics_gauge_mode {
  SHMETRICS_GAUGE_DEFAULT = 0, /* LIVESUM */
  SHMETRICS_GAUGE_ALL = 1,     /* one series per worker, label pid */
  SHMETRICS_GAUGE_LIVEALL = 2,
  SHMETRICS_GAUGE_SUM = 3,
  SHMETRICS_GAUGE_LIVESUM = 4,
  SHMETRICS_GAUGE_MAX = 5,
  SHMETRICS_GAUGE_LIVEMAX = 6,
  SHMETRICS_GAUGE_MIN = 7,
  SHMETRICS_GAUGE_LIVEMIN = 8,
  SHMETRICS_GAUGE_MOSTRECENT = 9,
  SHMETRICS_GAUGE_LIVEMOSTRECENT = 10
};

/* What a region is created with, if this process is the first to attach it. Zero: the default. */
struct shmetrics_region_opts {
  size_t sz;             /* sizeof(struct shmetrics_region_opts) */
  uint64_t size_bytes;   /* 32 MiB, reserved in full at creation */
  uint32_t max_families; /* 1024 */
  uint32_t max_series;   /* 65536 */
  uint32_t max_slots;    /* 256 concurrent writer threads over all processes */
  uint32_t max_cells;    /* 2^20 */
  uint32_t string_bytes; /* 4 MiB */
  uint32_t mode;         /* file mode of a region we create: 0600; 0660 shares it with `group` */
  /* The trusted group by name (NULL: none): a region another user owns is attached only if its
   * group is this one; a region we create is given this group. */
  const char *group;
  /* How long to wait for a concurrent creator: 0 means 5000 ms, negative means not at all. */
  int32_t creator_wait_ms;
};

/* A family's definition. Zero: the default (or "none"). */
struct shmetrics_family_opts {
  size_t sz; /* sizeof(struct shmetrics_family_opts) */
  const char *help;
  const char *unit; /* a suffix of the name (OpenMetrics) */
  size_t label_count;
  const char *const *label_names;
  uint32_t max_series; /* per-family cardinality cap: 10000 */
  int gauge_mode;      /* gauges: enum shmetrics_gauge_mode */
  /* Histograms: finite, strictly increasing upper bounds; +Inf is implicit. */
  size_t bucket_count;
  const double *buckets;
  /* Histograms: non-zero adds a native (exponential) part, alone or beside the buckets. Buckets
   * at `native_schema` are 2^(2^-schema) wide (taken as given: the C++ default is 3, ~9%); each
   * writer keeps at most `native_max_buckets` (0: 160) and halves its resolution when a new
   * observation would need more. |v| <= native_zero_threshold counts in the zero bucket (taken
   * as given; the C++ default is 2^-128). */
  int native;
  int32_t native_schema;
  uint32_t native_max_buckets;
  double native_zero_threshold;
  /* Counters and classic histogram buckets: non-zero keeps the latest exemplar of each writer. */
  int exemplars;
};

/* The most finite bucket bounds a classic histogram registered with `exemplars` can have (a
 * series' cells fit one page); with more, register it without exemplars. */
SHMETRICS_API uint32_t shmetrics_max_exemplar_histogram_bounds(void);

/* --- Control plane: 0 or a negative errno (see above) ---------------------------------------- */

/* The process-wide attachment to `region`, created on the first call (and the region too if no
 * gateway created it yet); later calls return the same client. `opts` may be NULL. */
SHMETRICS_API int shmetrics_attach(const char *region, const struct shmetrics_region_opts *opts,
                                   shmetrics_client **out);

/* Registers a family of `type` (enum shmetrics_metric_type), or returns the one this process
 * registered before under that name if the definition is the same. `opts` may be NULL. */
SHMETRICS_API int shmetrics_register(shmetrics_client *client, int type, const char *name,
                                     const struct shmetrics_family_opts *opts,
                                     shmetrics_family **out);

/* Resolves label values (in the order of the family's label names) to the series handle, creating
 * the series on first use; keep the handle. `lens` NULL: the values are NUL-terminated; otherwise
 * lens[i] bytes of values[i]. A series the region or the family's cap has no room for is not an
 * error: its handle counts updates as drops. The family must be of the handle's type. */
SHMETRICS_API int shmetrics_counter_labels(shmetrics_family *family, size_t count,
                                           const char *const *values, const size_t *lens,
                                           shmetrics_counter **out);
SHMETRICS_API int shmetrics_gauge_labels(shmetrics_family *family, size_t count,
                                         const char *const *values, const size_t *lens,
                                         shmetrics_gauge **out);
SHMETRICS_API int shmetrics_histogram_labels(shmetrics_family *family, size_t count,
                                             const char *const *values, const size_t *lens,
                                             shmetrics_histogram **out);
SHMETRICS_API int shmetrics_summary_labels(shmetrics_family *family, size_t count,
                                           const char *const *values, const size_t *lens,
                                           shmetrics_summary **out);

/* Claims this thread's writer slot now rather than at its first update. 0, or -ENOSPC when the
 * region has no free slot (updates are then counted as drops until one frees up). */
SHMETRICS_API int shmetrics_claim_slot(shmetrics_client *client);

/* --- Data plane: never blocks, allocates or makes a syscall ---------------------------------- */

SHMETRICS_API void shmetrics_counter_inc(shmetrics_counter *c);
/* A negative or NaN `v` is dropped and counted. */
SHMETRICS_API void shmetrics_counter_add(shmetrics_counter *c, double v);
/* With an exemplar (families registered with `exemplars`): `count` labels as parallel arrays of
 * NUL-terminated names and values, at most 128 bytes in all (longer: the exemplar is dropped and
 * counted). Costs a clock read. */
SHMETRICS_API void shmetrics_counter_add_exemplar(shmetrics_counter *c, double v, size_t count,
                                                  const char *const *names,
                                                  const char *const *values);
/* Only the exemplar of an increment of `v` made before (prometheus_client's value API adds and
 * attaches the exemplar in two calls); labels as in shmetrics_counter_add_exemplar. */
SHMETRICS_API void shmetrics_counter_set_exemplar(shmetrics_counter *c, double v, size_t count,
                                                  const char *const *names,
                                                  const char *const *values);

SHMETRICS_API void shmetrics_gauge_set(shmetrics_gauge *g, double v);
SHMETRICS_API void shmetrics_gauge_add(shmetrics_gauge *g, double v);
SHMETRICS_API void shmetrics_gauge_set_to_current_time(shmetrics_gauge *g);

SHMETRICS_API void shmetrics_histogram_observe(shmetrics_histogram *h, double v);
/* With an exemplar for the bucket `v` falls in; labels as in shmetrics_counter_add_exemplar. */
SHMETRICS_API void shmetrics_histogram_observe_exemplar(shmetrics_histogram *h, double v,
                                                        size_t count, const char *const *names,
                                                        const char *const *values);

SHMETRICS_API void shmetrics_summary_observe(shmetrics_summary *s, double v);

#ifdef __cplusplus
}
#endif

#endif /* SHMETRICS_SHMETRICS_C_H_ */
