// Encode cost of each exposition format, without the collect: one iteration renders the region's
// merged Snapshot into a body, as Gateway::Render does after collecting (label text cached across
// scrapes, as the gateway keeps it). The region holds 100000 series: 70k counters, 20k gauges and
// 10k histograms of 10 buckets, written by this process. BM_Encode_Gzip_* adds gzip level 1 (the
// gateway's default) of that body.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>

#include "bench_support.h"
#include "exposition.h"
#include "gzip.h"
#include "region_reader.h"

namespace shmetrics::bench {
namespace {

using gateway::Format;

struct EncodeFixture {
  EncodeFixture() {
    RegionOptions o;
    o.size_bytes = 96ull << 20;
    o.max_series = 131072;
    o.max_families = 64;
    o.max_slots = 8;
    o.max_cells = 1u << 18;
    o.string_bytes = 16u << 20;
    const std::string name = NewRegionName("encode");
    Client& client = Client::Attach(name, o);
    const char* methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH"};
    for (int f = 0; f < 7; ++f) {
      auto& fam = BuildCounter()
                      .Name("encode_requests_" + std::to_string(f) + "_total")
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
                      .Name("encode_queue_depth_" + std::to_string(f))
                      .Help("Queue depth per shard.")
                      .Labels({"shard"})
                      .MaxSeries(10000)
                      .Register(client);
      for (int i = 0; i < 10000; ++i) fam.Add({"shard-" + std::to_string(i)}).Set(i * 0.25);
    }
    auto& latency = BuildHistogram()
                        .Name("encode_latency_seconds")
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
    reader = std::make_unique<gateway::RegionReader>(shm::Region::Open(name));
    reader->Collect(snapshot);
  }

  std::unique_ptr<gateway::RegionReader> reader;
  gateway::Snapshot snapshot;
  gateway::LabelTextCache labels;
};

EncodeFixture& Fixture() {
  static EncodeFixture fx;
  return fx;
}

std::string Encode(EncodeFixture& fx, Format format) {
  std::string body;
  body.reserve(fx.reader->series().size() * 64 + 4096);
  gateway::AppendExposition(format, *fx.reader, fx.snapshot, {}, body, &fx.labels);
  return body;
}

void RunEncode(benchmark::State& state, Format format, bool gzip) {
  EncodeFixture& fx = Fixture();
  Encode(fx, format);  // fills the label cache, as the gateway's first scrape does
  size_t bytes = 0;
  for (auto _ : state) {
    std::string body = Encode(fx, format);
    if (gzip) body = gateway::Gzip(body, 1);
    bytes = body.size();
    benchmark::DoNotOptimize(body.data());
  }
  state.counters["body_bytes"] = static_cast<double>(bytes);
}

void BM_Encode_Text(benchmark::State& state) { RunEncode(state, Format::kText, false); }
void BM_Encode_OpenMetrics(benchmark::State& state) {
  RunEncode(state, Format::kOpenMetrics, false);
}
void BM_Encode_Protobuf(benchmark::State& state) { RunEncode(state, Format::kProtobuf, false); }
void BM_Encode_Gzip_Text(benchmark::State& state) { RunEncode(state, Format::kText, true); }
void BM_Encode_Gzip_Protobuf(benchmark::State& state) { RunEncode(state, Format::kProtobuf, true); }
BENCHMARK(BM_Encode_Text)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Encode_OpenMetrics)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Encode_Protobuf)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Encode_Gzip_Text)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Encode_Gzip_Protobuf)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace shmetrics::bench
