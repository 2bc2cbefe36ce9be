// Sizes and encode times of the three exposition formats for a large region (100k series: 70k
// counters, 20k gauges, 10k histograms of 10 buckets), gzip off and on. Prints a table; asserts
// only what must hold whatever the machine: the protobuf body decodes to the text body, and a
// format encodes 100k series well within a typical scrape timeout.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

#include "exposition.h"
#include "format_test_support.h"
#include "gzip.h"
#include "openmetrics_format.h"
#include "protobuf_format.h"
#include "region_reader.h"
#include "test_region.h"

namespace shmetrics::gateway {
namespace {

using Clock = std::chrono::steady_clock;

// Best of `runs` wall-clock times, in milliseconds.
double BestMs(int runs, const std::function<void()>& f) {
  double best = 1e300;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  return best;
}

TEST(FormatsSpeedTest, LargeRegionSizesAndEncodeTimes) {
  shmetrics::testing::ScopedRegionName name("speed");
  RegionOptions o;
  o.size_bytes = 96ull << 20;
  o.max_series = 131072;
  o.max_families = 64;
  o.max_slots = 8;
  o.max_cells = 1u << 18;
  o.string_bytes = 16u << 20;
  Client& client = Client::Attach(name.name, o);

  const auto t_reg = Clock::now();
  const char* methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH"};
  for (int f = 0; f < 7; ++f) {
    auto& fam = BuildCounter()
                    .Name("speed_requests_" + std::to_string(f) + "_total")
                    .Help("Requests served, by method, code and route.")
                    .Labels({"method", "code", "route"})
                    .MaxSeries(10000)
                    .Register(client);
    for (int i = 0; i < 10000; ++i) {
      fam.Add({methods[i % 5], std::to_string(200 + (i / 5) % 4),
               "/api/v1/resource/" + std::to_string(i / 20)})
          .Add(static_cast<double>(i * 37 % 100003));
    }
  }
  for (int f = 0; f < 2; ++f) {
    auto& fam = BuildGauge()
                    .Name("speed_queue_depth_" + std::to_string(f))
                    .Help("Queue depth per shard.")
                    .Labels({"shard"})
                    .MaxSeries(10000)
                    .Register(client);
    for (int i = 0; i < 10000; ++i) fam.Add({"shard-" + std::to_string(i)}).Set(i * 0.25);
  }
  auto& latency = BuildHistogram()
                      .Name("speed_latency_seconds")
                      .Help("Latency per route.")
                      .Unit("seconds")
                      .Labels({"route"})
                      .Buckets({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5})
                      .MaxSeries(10000)
                      .Register(client);
  for (int i = 0; i < 10000; ++i) {
    Histogram& h = latency.Add({"/route/" + std::to_string(i)});
    for (int k = 0; k < 5; ++k) h.Observe((i % 100 + k) * 0.01);
  }
  const double register_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - t_reg).count();

  RegionReader reader(shm::Region::Open(name.name));
  Snapshot snap;
  reader.Collect(snap);
  ASSERT_EQ(reader.series().size(), 100000u);
  const double collect_ms = BestMs(3, [&] { reader.Collect(snap); });

  struct Row {
    const char* format;
    std::function<void(std::string&)> encode;
    std::string body{};
    double encode_ms = 0;
  };
  std::vector<Row> rows = {
      {"text 0.0.4", [&](std::string& out) { AppendText(reader, snap, out); }},
      {"OpenMetrics 1.0",
       [&](std::string& out) {
         AppendOpenMetrics(reader, snap, out);
         AppendOpenMetricsEof(out);
       }},
      {"protobuf delimited", [&](std::string& out) { AppendProtobuf(reader, snap, out); }},
  };
  std::printf(
      "\n100000 series (70k counters, 20k gauges, 10k histograms x 10 buckets); registration %.0f "
      "ms, "
      "collect %.1f ms\n",
      register_ms, collect_ms);
  std::printf("%-20s %12s %10s %12s %10s %12s %10s\n", "format", "bytes", "encode ms",
              "gzip-1 bytes", "gzip-1 ms", "gzip-6 bytes", "gzip-6 ms");
  for (Row& r : rows) {
    r.encode_ms = BestMs(5, [&] {
      r.body.clear();
      r.body.reserve(reader.series().size() * 64 + 4096);
      r.encode(r.body);
    });
    std::string gz1, gz6;
    const double gz1_ms = BestMs(3, [&] { gz1 = Gzip(r.body, 1); });
    const double gz6_ms = BestMs(1, [&] { gz6 = Gzip(r.body, 6); });
    std::printf("%-20s %12zu %10.1f %12zu %10.1f %12zu %10.1f\n", r.format, r.body.size(),
                r.encode_ms, gz1.size(), gz1_ms, gz6.size(), gz6_ms);
    EXPECT_EQ(Gunzip(gz1), r.body);
    EXPECT_LT(r.encode_ms, 2000) << r.format;  // 100k series in well under a scrape timeout
  }

  std::vector<std::string> errors;
  std::string error;
  const testing::Samples text = testing::ParseText(rows[0].body, &errors);
  const testing::Samples proto = testing::DecodeProtobuf(rows[2].body, nullptr, &error);
  ASSERT_TRUE(errors.empty());
  ASSERT_TRUE(error.empty()) << error;
  std::string diff;
  EXPECT_TRUE(testing::SameSamples(text, proto, &diff)) << diff.substr(0, 2000);
  EXPECT_EQ(text.size(), 70000u + 20000u + 10000u * 13u);
}

}  // namespace
}  // namespace shmetrics::gateway
