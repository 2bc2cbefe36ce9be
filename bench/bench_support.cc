#include "bench_support.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string_view>
#include <tuple>

namespace shmetrics::bench {
namespace {

// Dead writers are started in batches this large: a batch exits, the gateway folds it, its
// slots are reused by the next one. The slot count (and so the region) is the same whatever the
// number of dead writers, so BM_Scrape_Text_DeadWorkers compares like with like.
constexpr uint32_t kDeadBatch = 60;

std::vector<std::string>& CreatedRegions() {
  static auto* names = new std::vector<std::string>();
  return *names;
}

// The value of the sample on `line` ("name{...} value"), NaN when unparsable.
double SampleValue(std::string_view line) {
  const size_t space = line.rfind(' ');
  if (space == std::string_view::npos) return std::nan("");
  const std::string text(line.substr(space + 1));
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  return end == text.c_str() ? std::nan("") : v;
}

[[noreturn]] void Fail(const std::string& what) {
  throw std::runtime_error("scrape fixture: " + what +
                           (errno ? std::string(": ") + std::strerror(errno) : ""));
}

}  // namespace

uint32_t FamilyCount(uint32_t series) { return (series + kSeriesPerFamily - 1) / kSeriesPerFamily; }
std::string FamilyName(uint32_t family) { return "bench_requests_" + std::to_string(family); }
std::string FamilyHelp(uint32_t family) {
  return "Requests handled by route group " + std::to_string(family) + ".";
}
std::string RouteLabel(uint32_t series) { return "/api/v1/resource/" + std::to_string(series); }

std::string NewRegionName(const std::string& what) {
  static int counter = 0;
  std::string name = "shmetrics-bench-" + std::to_string(::getpid()) + "-" + what + "-" +
                     std::to_string(counter++);
  shm::Region::Remove(name);
  CreatedRegions().push_back(name);
  return name;
}

void RemoveRegions() {
  for (const std::string& name : CreatedRegions()) shm::Region::Remove(name);
  CreatedRegions().clear();
}

shm::RegionOptions SizedOptions(uint32_t series, uint32_t writer_slots, uint32_t cells_per_series) {
  shm::RegionOptions o;
  const uint32_t families = FamilyCount(series);
  o.max_families = families + 16;
  o.max_series = series + 64;
  o.max_slots = writer_slots + 4;
  // Series cells, padding where a series would cross a page, one drop cell per family, the
  // reserved system cells; then whole pages.
  uint64_t cells = uint64_t{series} * cells_per_series;
  cells += cells / shm::kCellsPerPage * cells_per_series + families + 64 + shm::kSystemCells;
  cells = (cells + shm::kCellsPerPage - 1) / shm::kCellsPerPage * shm::kCellsPerPage;
  o.max_cells = static_cast<uint32_t>(std::max<uint64_t>(cells, 2 * shm::kCellsPerPage));
  o.string_bytes = std::max<uint32_t>(64u << 10, series * 64 + (64u << 10));
  o.size_bytes = 1ull << 39;  // placeholder, to learn where the page pool starts
  const shm::Layout l = shm::ComputeLayout(o);
  const uint64_t pages = 1 + uint64_t{l.total_slots()} * l.pages_per_slot;
  o.size_bytes = l.pages_offset + pages * shm::kPageBytes;
  return o;
}

RegionMemory MeasureRegionMemory(const shm::Region& region) {
  RegionMemory m;
  const shm::Layout& l = region.layout();
  const shm::RegionHeader& h = region.header();
  struct Range {
    uint32_t base, cells;
  };
  std::vector<Range> ranges;
  const uint32_t n = std::min(h.series_count.load(std::memory_order_acquire), l.max_series);
  for (uint32_t i = 0; i < n; ++i) {
    const shm::SeriesRecord* s = region.series(i);
    const shm::FamilyRecord* f = s ? region.family(s->family) : nullptr;
    if (f) ranges.push_back({s->cell_base, f->cells_per_series});
  }
  std::vector<const shm::Cell*> pages(l.pages_per_slot);
  for (uint32_t slot = 0; slot < l.max_slots; ++slot) {
    if (region.slot(slot)->state.load(std::memory_order_acquire) !=
        static_cast<uint32_t>(shm::SlotState::kActive)) {
      continue;
    }
    ++m.live_writers;
    const shm::DirectoryEntry* dir = region.directory(slot);
    for (uint32_t p = 0; p < l.pages_per_slot; ++p) {
      const uint32_t index = dir[p].load(std::memory_order_acquire);
      pages[p] = index == shm::kNoPage ? nullptr : region.page(index);
      if (pages[p]) ++m.writer_pages;
    }
    m.writer_bytes +=
        sizeof(shm::SlotHeader) + uint64_t{l.pages_per_slot} * sizeof(shm::DirectoryEntry);
    for (const Range& r : ranges) {
      for (uint32_t c = r.base; c < r.base + r.cells; ++c) {
        const shm::Cell* page = pages[c / shm::kCellsPerPage];
        if (page && page[c % shm::kCellsPerPage].load(std::memory_order_relaxed) != 0) {
          ++m.pairs;
          break;
        }
      }
    }
  }
  m.writer_bytes += m.writer_pages * shm::kPageBytes;
  m.used_bytes =
      l.pages_offset + uint64_t{h.pages_used.load(std::memory_order_relaxed)} * shm::kPageBytes;
  return m;
}

ScrapeFixture::ScrapeFixture(uint32_t series, uint32_t live, uint32_t dead, Writers kind,
                             uint64_t live_amount)
    : series_(series), live_(live), dead_(dead), live_amount_(live_amount), kind_(kind) {
  region_name_ = NewRegionName("scrape-" + std::to_string(series) + "-" + std::to_string(live) +
                               "-" + std::to_string(dead));
  const shm::RegionOptions options = SizedOptions(series, live + kDeadBatch);
  client_ = &Client::Attach(region_name_, options);
  counters_.reserve(series);
  for (uint32_t f = 0; f < FamilyCount(series); ++f) {
    auto& family = BuildCounter()
                       .Name(FamilyName(f) + "_total")
                       .Help(FamilyHelp(f))
                       .Labels({"route", "code"})
                       .MaxSeries(kSeriesPerFamily)
                       .Register(*client_);
    for (uint32_t i = f * kSeriesPerFamily; i < std::min(series, (f + 1) * kSeriesPerFamily); ++i) {
      counters_.push_back(&family.Add({RouteLabel(i), "200"}));
    }
  }
  // Worker processes are forked before the gateway exists, so that none inherits its descriptor.
  if (kind_ == Writers::kProcesses) StartProcessWriters(live_, true);
  gateway::GatewayOptions go;
  go.region = region_name_;
  go.region_options = options;
  gateway_ = std::make_unique<gateway::Gateway>(go);
  if (kind_ == Writers::kThreads) StartThreadWriters(live_, true);
  for (uint32_t done = 0; done < dead_; done += kDeadBatch) {
    const uint32_t n = std::min(kDeadBatch, dead_ - done);
    if (kind_ == Writers::kThreads) {
      StartThreadWriters(n, false);
    } else {
      StartProcessWriters(n, false);
    }
    gateway_->RenderMetrics();  // reaps and folds the batch, freeing its slots for the next
  }
  memory_ = MeasureRegionMemory(client_->region());
  errno = 0;
  if (const std::string problem = Check(Scrape()); !problem.empty()) Fail(problem);
}

ScrapeFixture::~ScrapeFixture() {
  {
    std::lock_guard lock(mu_);
    release_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  for (pid_t pid : children_) ::kill(pid, SIGKILL);
  for (pid_t pid : children_) ::waitpid(pid, nullptr, 0);
  gateway_.reset();
}

void ScrapeFixture::StartThreadWriters(uint32_t n, bool park) {
  std::vector<std::thread> batch;
  const uint32_t target = ready_ + n;
  for (uint32_t i = 0; i < n; ++i) {
    batch.emplace_back([this, park] {
      const double amount = park ? static_cast<double>(live_amount_) : 1.0;
      for (Counter* c : counters_) c->Add(amount);
      std::unique_lock lock(mu_);
      ++ready_;
      cv_.notify_all();
      if (park) cv_.wait(lock, [this] { return release_; });
    });
  }
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return ready_ >= target; });
  }
  if (park) {
    for (std::thread& t : batch) threads_.push_back(std::move(t));
  } else {
    for (std::thread& t : batch) t.join();  // thread exit releases the writer's slot
  }
}

void ScrapeFixture::StartProcessWriters(uint32_t n, bool park) {
  int ready[2];
  if (::pipe(ready) != 0) Fail("pipe");
  std::vector<pid_t> batch;
  const pid_t parent = ::getpid();
  for (uint32_t i = 0; i < n; ++i) {
    const pid_t pid = ::fork();
    if (pid < 0) Fail("fork");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      ::close(ready[0]);
      const double amount = park ? static_cast<double>(live_amount_) : 1.0;
      for (Counter* c : counters_) c->Add(amount);
      const char byte = 1;
      if (::write(ready[1], &byte, 1) != 1) ::_exit(1);
      if (!park) ::_exit(0);  // dies: the kernel drops its slot lock, the gateway folds it
      for (;;) ::pause();     // stays alive, slot live, until SIGKILL
    }
    batch.push_back(pid);
  }
  ::close(ready[1]);
  for (uint32_t got = 0; got < n;) {
    char buf[64];
    const ssize_t r = ::read(ready[0], buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) Fail("a writer process died before writing");
    got += static_cast<uint32_t>(r);
  }
  ::close(ready[0]);
  if (park) {
    children_.insert(children_.end(), batch.begin(), batch.end());
  } else {
    for (pid_t pid : batch) ::waitpid(pid, nullptr, 0);
  }
}

std::string ScrapeFixture::Check(const std::string& body) const {
  const double expected = static_cast<double>(Expected());
  uint32_t samples = 0;
  double folded = -1;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string::npos) end = body.size();
    const std::string_view line(body.data() + pos, end - pos);
    pos = end + 1;
    if (line.starts_with("bench_requests_")) {
      ++samples;
      if (SampleValue(line) != expected) {
        return "series " + std::string(line) + ": expected " + std::to_string(Expected());
      }
    } else if (line.starts_with("shmetrics_writers_folded_total ")) {
      folded = SampleValue(line);
    }
  }
  if (samples != series_)
    return std::to_string(samples) + " series in the body, expected " + std::to_string(series_);
  if (folded != static_cast<double>(dead_)) {
    return "shmetrics_writers_folded_total " + std::to_string(folded) + ", expected " +
           std::to_string(dead_);
  }
  return {};
}

namespace {
using FixtureKey = std::tuple<uint32_t, uint32_t, uint32_t, uint64_t>;
std::map<FixtureKey, std::unique_ptr<ScrapeFixture>>& Fixtures() {
  static auto* fixtures = new std::map<FixtureKey, std::unique_ptr<ScrapeFixture>>();
  return *fixtures;
}
}  // namespace

ScrapeFixture& CachedScrapeFixture(uint32_t series, uint32_t live, uint32_t dead,
                                   uint64_t live_amount) {
  auto& slot = Fixtures()[{series, live, dead, live_amount}];
  if (!slot) {
    slot = std::make_unique<ScrapeFixture>(series, live, dead, ScrapeFixture::Writers::kThreads,
                                           live_amount);
  }
  return *slot;
}

void DestroyCachedFixtures() { Fixtures().clear(); }

}  // namespace shmetrics::bench
