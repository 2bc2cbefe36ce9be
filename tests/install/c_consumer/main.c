/* The C ABI as an outside C99 program uses it: attach, register every metric type, write, print
 * OK. Built against the installed header and library (pkg-config, and CMake's shmetrics::c), and
 * in the build tree as c_api_consumer_test. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "shmetrics/shmetrics_c.h"

#define CHECK(call)                                                                    \
  do {                                                                                 \
    int rc_ = (call);                                                                  \
    if (rc_ < 0) {                                                                     \
      fprintf(stderr, "c_consumer: %s: %d: %s\n", #call, rc_, shmetrics_last_error()); \
      return 1;                                                                        \
    }                                                                                  \
  } while (0)

int main(int argc, char **argv) {
  static const char *const request_labels[] = {"method", "code"};
  static const char *const get_ok[] = {"GET", "200"};
  static const double bounds[] = {0.01, 0.1, 1};
  static const char *const trace_name[] = {"trace_id"};
  static const char *const trace_value[] = {"4bf92f3577b34da6"};
  struct shmetrics_region_opts region_opts;
  struct shmetrics_family_opts o;
  shmetrics_client *client;
  shmetrics_family *requests, *bad, *in_flight, *latest, *latency, *native, *sizes;
  shmetrics_counter *ok;
  shmetrics_gauge *busy, *last;
  shmetrics_histogram *lat, *nat;
  shmetrics_summary *size;
  int rc;

  if (argc != 2) {
    fprintf(stderr, "usage: %s REGION\n", argv[0]);
    return 2;
  }
  if (shmetrics_abi_version() != SHMETRICS_ABI_VERSION) {
    fprintf(stderr, "c_consumer: library ABI %d, header %d\n", shmetrics_abi_version(),
            SHMETRICS_ABI_VERSION);
    return 1;
  }
  memset(&region_opts, 0, sizeof region_opts);
  region_opts.sz = sizeof region_opts;
  region_opts.size_bytes = 8u << 20;
  region_opts.max_slots = 16;
  CHECK(shmetrics_attach(argv[1], &region_opts, &client));

  memset(&o, 0, sizeof o);
  o.sz = sizeof o;
  o.help = "Requests served.";
  o.label_count = 2;
  o.label_names = request_labels;
  o.exemplars = 1;
  CHECK(shmetrics_register(client, SHMETRICS_COUNTER, "c_requests_total", &o, &requests));
  CHECK(shmetrics_counter_labels(requests, 2, get_ok, NULL, &ok));
  shmetrics_counter_inc(ok);
  shmetrics_counter_add(ok, 1);
  shmetrics_counter_add_exemplar(ok, 1, 1, trace_name, trace_value);

  /* An invalid name fails with -EINVAL and a message that names the metric. */
  rc = shmetrics_register(client, SHMETRICS_COUNTER, "0bad", &o, &bad);
  if (rc != -EINVAL || strstr(shmetrics_last_error(), "0bad") == NULL) {
    fprintf(stderr, "c_consumer: invalid name gave %d: %s\n", rc, shmetrics_last_error());
    return 1;
  }

  memset(&o, 0, sizeof o);
  o.sz = sizeof o;
  o.help = "Requests in flight.";
  CHECK(shmetrics_register(client, SHMETRICS_GAUGE, "c_in_flight", &o, &in_flight));
  CHECK(shmetrics_gauge_labels(in_flight, 0, NULL, NULL, &busy));
  shmetrics_gauge_set(busy, 5);
  shmetrics_gauge_add(busy, -2);
  o.help = "When the last job ran.";
  o.gauge_mode = SHMETRICS_GAUGE_MOSTRECENT;
  CHECK(shmetrics_register(client, SHMETRICS_GAUGE, "c_last_job_seconds", &o, &latest));
  CHECK(shmetrics_gauge_labels(latest, 0, NULL, NULL, &last));
  shmetrics_gauge_set_to_current_time(last);

  memset(&o, 0, sizeof o);
  o.sz = sizeof o;
  o.help = "Request latency.";
  o.unit = "seconds";
  o.bucket_count = sizeof bounds / sizeof bounds[0];
  o.buckets = bounds;
  o.exemplars = 1;
  CHECK(shmetrics_register(client, SHMETRICS_HISTOGRAM, "c_latency_seconds", &o, &latency));
  CHECK(shmetrics_histogram_labels(latency, 0, NULL, NULL, &lat));
  shmetrics_histogram_observe(lat, 0.05);
  shmetrics_histogram_observe_exemplar(lat, 0.5, 1, trace_name, trace_value);

  memset(&o, 0, sizeof o);
  o.sz = sizeof o;
  o.help = "Latency, native.";
  o.native = 1;
  o.native_schema = 3;
  CHECK(shmetrics_register(client, SHMETRICS_HISTOGRAM, "c_native_seconds", &o, &native));
  CHECK(shmetrics_histogram_labels(native, 0, NULL, NULL, &nat));
  shmetrics_histogram_observe(nat, 0.25);

  memset(&o, 0, sizeof o);
  o.sz = sizeof o;
  o.help = "Response sizes.";
  CHECK(shmetrics_register(client, SHMETRICS_SUMMARY, "c_response_bytes", &o, &sizes));
  CHECK(shmetrics_summary_labels(sizes, 0, NULL, NULL, &size));
  shmetrics_summary_observe(size, 512);

  puts("OK");
  return 0;
}
