// What the benchmark files and the helper modes of shmetrics_bench share: region names that are
// removed when the binary exits, region options sized for a workload, the scrape shape used by
// every side of a comparison (shmetrics, prometheus-cpp, Python), and ScrapeFixture, a real region
// whose writers each hold a value for every series while they stay alive.
//
// Not a library: only shmetrics_bench links it.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gateway.h"
#include "shmetrics/shmetrics.h"
#include "workload.h"

namespace shmetrics::bench {

// The scrape shape: families of kSeriesPerFamily counter series each,
//   bench_requests_<f>_total{route="/api/v1/resource/<i>",code="200"}
// with the same names, help and labels in prometheus-cpp and in the Python comparison.
inline constexpr uint32_t kSeriesPerFamily = 1000;
uint32_t FamilyCount(uint32_t series);
std::string FamilyName(uint32_t family);  // without the counter's "_total"
std::string FamilyHelp(uint32_t family);
std::string RouteLabel(uint32_t series);  // the route label value of series number `series`

// "shmetrics-bench-<pid>-<what>": a fresh name, remembered so RemoveRegions can remove it.
std::string NewRegionName(const std::string& what);
// Removes every region NewRegionName handed out. Call once, at the end of main.
void RemoveRegions();

// Options for a region that holds `series` series of `cells_per_series` cells each (in families
// of kSeriesPerFamily) written by up to `writer_slots` concurrent writers, every writer touching
// every series. Sized exactly: fixed sections + (writers + 2 accumulator banks) x all pages.
shm::RegionOptions SizedOptions(uint32_t series, uint32_t writer_slots,
                                uint32_t cells_per_series = 1);

// Memory of the live writers of a region, measured from the region itself.
struct RegionMemory {
  uint64_t live_writers = 0;
  uint64_t writer_pages = 0;  // pages mapped in live writers' directories
  uint64_t writer_bytes = 0;  // those pages + the writers' directories and slot headers
  uint64_t pairs = 0;         // (series, live writer) pairs with a non-zero cell
  uint64_t used_bytes = 0;    // what the gateway reports as used: fixed sections + pages handed out
  double writer_bytes_per_pair() const { return pairs ? double(writer_bytes) / double(pairs) : 0; }
  double used_bytes_per_pair() const { return pairs ? double(used_bytes) / double(pairs) : 0; }
};
RegionMemory MeasureRegionMemory(const shm::Region& region);

// A real region with `live` writers that each added `live_amount` to every one of `series`
// counter series and stay alive (so their slots stay live), after `dead` more writers each added
// 1 and exited and were folded by the gateway. Writers are threads of this process (each thread
// owns one writer slot, exactly as a worker process's thread does) or forked processes. Scrape() is
// one /metrics body exactly as shmetrics-gateway serves it (Gateway::RenderMetrics).
class ScrapeFixture {
 public:
  enum class Writers { kThreads, kProcesses };
  ScrapeFixture(uint32_t series, uint32_t live, uint32_t dead, Writers kind,
                uint64_t live_amount = 1);
  ~ScrapeFixture();  // stops the writers (threads joined, processes SIGKILLed and reaped)
  ScrapeFixture(const ScrapeFixture&) = delete;
  ScrapeFixture& operator=(const ScrapeFixture&) = delete;

  std::string Scrape() { return gateway_->RenderMetrics(); }
  // Empty when a body shows what the writers wrote (every series = live x live_amount + dead, the
  // folded writers counted); otherwise what is wrong.
  std::string Check(const std::string& body) const;
  const RegionMemory& memory() const { return memory_; }
  uint32_t series() const { return series_; }

 private:
  void StartThreadWriters(uint32_t n, bool park);
  void StartProcessWriters(uint32_t n, bool park);
  uint64_t Expected() const { return live_ * live_amount_ + dead_; }

  uint32_t series_, live_, dead_;
  uint64_t live_amount_;
  Writers kind_;
  std::string region_name_;
  Client* client_ = nullptr;
  std::vector<Counter*> counters_;
  std::unique_ptr<gateway::Gateway> gateway_;
  RegionMemory memory_;
  // Parked thread writers wait for release_.
  std::mutex mu_;
  std::condition_variable cv_;
  uint32_t ready_ = 0;
  bool release_ = false;
  std::vector<std::thread> threads_;
  std::vector<pid_t> children_;
};

// Fixtures built once per binary run and kept (benchmarks run many times over the same one).
ScrapeFixture& CachedScrapeFixture(uint32_t series, uint32_t live, uint32_t dead,
                                   uint64_t live_amount = 1);
void DestroyCachedFixtures();

}  // namespace shmetrics::bench
