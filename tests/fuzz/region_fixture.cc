#include "region_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>

#include "region_reader.h"
#include "shmetrics/shmetrics.h"

namespace shmetrics::fuzz {
namespace {

constexpr const char* kPrefix = "shmetrics-fuzz-";

[[noreturn]] void SetupFailed(const std::string& what) {
  std::fprintf(stderr, "region_fixture: setup failed (not a finding): %s\n", what.c_str());
  std::abort();
}

shm::RegionOptions Options() {
  shm::RegionOptions o;
  o.size_bytes = 512u << 10;
  o.max_families = 32;
  o.max_series = 128;
  o.max_slots = 8;
  o.max_cells = 8 * shm::kCellsPerPage;
  o.string_bytes = 8u << 10;
  return o;
}

// Regions of fuzz processes that died without their atexit handler (a crash is how a finding
// ends) are removed by the next one.
void RemoveStaleRegions() {
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) return;
  while (dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    if (!name.starts_with(kPrefix)) continue;
    const long pid = std::strtol(name.c_str() + std::strlen(kPrefix), nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      shm::Region::Remove(name);
    }
  }
  ::closedir(dir);
}

// The families every writer registers (same definitions in every process).
struct Metrics {
  Family<Counter>* requests;
  Family<Counter>* sent;
  Family<Counter>* bare;
  Family<Counter>* capped;
  std::vector<Family<Gauge>*> gauges;  // one per mode
  Family<Gauge>* special;
  Family<Histogram>* latency;
  Family<Histogram>* signed_hist;
  Family<Histogram>* native_only;
  Family<Histogram>* mixed;
  Family<Summary>* payload;
};

Metrics Register(Client& c) {
  Metrics m;
  m.requests = &BuildCounter()
                    .Name("fz_requests_total")
                    .Help("Requests, with \"quotes\", a back\\slash and a\nnewline.")
                    .Labels({"method", "path"})
                    .Exemplars()
                    .Register(c);
  m.sent = &BuildCounter().Name("fz_sent_bytes_total").Help("Bytes.").Unit("bytes").Register(c);
  m.bare = &BuildCounter().Name("fz_bare_total").Register(c);
  m.capped = &BuildCounter()
                  .Name("fz_capped_total")
                  .Help("Two series at most.")
                  .Labels({"k"})
                  .MaxSeries(2)
                  .Register(c);
  const GaugeMode modes[] = {GaugeMode::kAll,           GaugeMode::kLiveAll, GaugeMode::kSum,
                             GaugeMode::kLiveSum,       GaugeMode::kMax,     GaugeMode::kLiveMax,
                             GaugeMode::kMin,           GaugeMode::kLiveMin, GaugeMode::kMostRecent,
                             GaugeMode::kLiveMostRecent};
  for (GaugeMode mode : modes) {
    m.gauges.push_back(&BuildGauge()
                            .Name("fz_gauge_mode_" + std::to_string(static_cast<int>(mode)))
                            .Help("A gauge in one mode.")
                            .Labels({"shard"})
                            .Mode(mode)
                            .Register(c));
  }
  m.special = &BuildGauge().Name("fz_special").Help("Special values.").Labels({"v"}).Register(c);
  m.latency = &BuildHistogram()
                   .Name("fz_latency_seconds")
                   .Help("Latency.")
                   .Unit("seconds")
                   .Labels({"route"})
                   .Buckets({0.001, 0.1, 1, 10})
                   .Exemplars()
                   .Register(c);
  m.signed_hist = &BuildHistogram()
                       .Name("fz_delta_celsius")
                       .Help("Negative bounds.")
                       .Unit("celsius")
                       .Buckets({-10, 0, 10})
                       .Register(c);
  m.native_only = &BuildHistogram()
                       .Name("fz_native")
                       .Help("Native only, a window of 4 per sign.")
                       .Native(3, 8, 1e-9)
                       .Register(c);
  m.mixed = &BuildHistogram()
                 .Name("fz_mixed_seconds")
                 .Help("Classic, native and exemplars.")
                 .Labels({"op"})
                 .Buckets({0.1, 1, 10})
                 .Native()
                 .Exemplars()
                 .Register(c);
  m.payload = &BuildSummary()
                   .Name("fz_payload_bytes")
                   .Help("Sizes.")
                   .Unit("bytes")
                   .Labels({"dir"})
                   .Register(c);
  return m;
}

// Values depend on `role` so that the accumulator, live writers and dead writers differ.
void Write(Metrics& m, int role) {
  const double r = role;
  const std::string trace = "t" + std::to_string(role);
  m.requests->Add({"GET", "/a\"b"}).Add(3 + r, {{"trace_id", trace}, {"span", "ü"}});
  m.requests->Add({"POST", "C:\\dir\\"}).Inc();
  m.requests->Add({"PUT", "line1\nline2"}).Add(0.5);
  m.requests->Add({"", ""}).Add(7);
  if (role == 1) m.requests->Add({"żółw", "✓ ünïcödé"}).Add(1e20);
  m.sent->Get().Add(1234 * (r + 1));
  m.bare->Get().Inc();
  for (const char* k : {"a", "b", "c"}) m.capped->Add({k}).Inc();  // "c" is over the cap
  for (size_t i = 0; i < m.gauges.size(); ++i) {
    m.gauges[i]->Add({"a"}).Set(1.5 + r + static_cast<double>(i));
    m.gauges[i]->Add({role == 1 ? "live" : "dead"}).Set(-r);
  }
  if (role == 1) {
    m.special->Add({"nan"}).Set(std::numeric_limits<double>::quiet_NaN());
    m.special->Add({"inf"}).Set(std::numeric_limits<double>::infinity());
    m.special->Add({"-inf"}).Set(-std::numeric_limits<double>::infinity());
    m.special->Add({"tiny"}).Set(5e-324);
  }
  for (double v : {0.0005, 0.05, 0.5, 5.0, 50.0}) {
    m.latency->Add({"/"}).Observe(v * (1 + r), {{"trace_id", trace}});
  }
  m.latency->Add({"/api"}).Observe(0.2);
  for (double v : {-20.0, -5.0, 5.0, 50.0}) m.signed_hist->Get().Observe(v + r);
  for (double v : {1e-3, 0.5, 1.0, 2.0, 1000.0, -3.0, 0.0, 1e30, -1e-30}) {
    m.native_only->Get().Observe(v * (1 + r));
  }
  for (double v : {0.05, 0.5, 5.0, 500.0}) m.mixed->Add({"read"}).Observe(v + r, {{"id", trace}});
  m.mixed->Add({"write"}).Observe(-1 - r);
  m.payload->Add({"in"}).Observe(100 + r);
  m.payload->Add({"out"}).Observe(28);
}

[[noreturn]] void Child(const std::string& name, int role, int ready_fd, int hold_fd) {
  try {
    if (role == 1) ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    Client& client = Client::Attach(name);
    Metrics m = Register(client);
    Write(m, role);
    if (role == 1) {
      // A thread that writes and exits: its slot is released for folding while we live on.
      std::thread([&m] { Write(m, 3); }).join();
    } else if (role == 2) {
      // A thread still writing when the process dies: a dead non-primary slot.
      int started[2];
      if (::pipe(started) != 0) ::_exit(4);
      std::thread([&m, &started] {
        Write(m, 4);
        char c = 1;
        (void)!::write(started[1], &c, 1);
        ::pause();
      }).detach();
      char c;
      (void)!::read(started[0], &c, 1);
    }
    if (ready_fd >= 0) {
      char c = 1;
      (void)!::write(ready_fd, &c, 1);
    }
    if (hold_fd >= 0) {
      char c;
      while (::read(hold_fd, &c, 1) > 0) {
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "region_fixture: writer %d: %s\n", role, e.what());
    ::_exit(3);
  }
  ::_exit(0);  // never exit(): the atexit handlers are the fuzz process's
}

pid_t Spawn(const std::string& name, int role, int ready_fd, int hold_fd) {
  const pid_t pid = ::fork();
  if (pid < 0) SetupFailed(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) Child(name, role, ready_fd, hold_fd);
  return pid;
}

void Reap(pid_t pid, int role) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    SetupFailed("writer " + std::to_string(role) + " failed, status " + std::to_string(status));
}

RegionFixture* g_fixture = nullptr;  // for the atexit handler

}  // namespace

RegionFixture& RegionFixture::Get() {
  static RegionFixture* fixture = new RegionFixture();  // lives until exit; atexit cleans up
  return *fixture;
}

RegionFixture::RegionFixture() {
  static int counter = 0;
  name_ = std::string(kPrefix) + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  RemoveStaleRegions();
  shm::Region::Remove(name_);
  try {
    region_ = shm::Region::OpenOrCreate(name_, Options());
  } catch (const std::exception& e) {
    SetupFailed(e.what());
  }
  layout_ = region_->layout();
  base_ = reinterpret_cast<char*>(&region_->header());
  bytes_ = layout_.region_bytes;
  g_fixture = this;
  std::atexit([] {
    RegionFixture* f = g_fixture;
    if (f == nullptr) return;
    if (f->live_worker_ > 0) {
      ::kill(f->live_worker_, SIGKILL);
      ::waitpid(f->live_worker_, nullptr, 0);
    }
    shm::Region::Remove(f->name_);
  });
  Populate();
  const shm::RegionHeader& h = region_->header();
  family_count_ = h.family_count.load();
  series_count_ = h.series_count.load();
  strings_used_ = h.strings_used.load();
  pages_used_ = h.pages_used.load();
  pristine_.assign(base_, base_ + bytes_);
}

void RegionFixture::Populate() {
  Reap(Spawn(name_, 0, -1, -1), 0);
  try {  // folds writer 0 into the accumulator bank
    gateway::RegionReader reader(shm::Region::Open(name_));
    gateway::Snapshot snapshot;
    reader.Collect(snapshot);
  } catch (const std::exception& e) {
    SetupFailed(std::string("first fold: ") + e.what());
  }
  int ready[2], hold[2];
  if (::pipe(ready) != 0 || ::pipe(hold) != 0) SetupFailed("pipe");
  live_worker_ = Spawn(name_, 1, ready[1], hold[0]);
  ::close(ready[1]);
  ::close(hold[0]);
  live_hold_fd_ = hold[1];  // closed by our exit: the worker then exits too
  ::fcntl(live_hold_fd_, F_SETFD, FD_CLOEXEC);
  char c;
  if (::read(ready[0], &c, 1) != 1) SetupFailed("the live writer died during setup");
  ::close(ready[0]);
  Reap(Spawn(name_, 2, -1, -1), 2);
}

void RegionFixture::Restore() { std::memcpy(base_, pristine_.data(), bytes_); }

void RegionFixture::ApplyInput(const uint8_t* data, size_t size) {
  auto& h = *reinterpret_cast<shm::RegionHeader*>(base_);
  const uint32_t total_slots = layout_.total_slots();
  auto write = [&](uint64_t offset, const void* src, size_t n) {
    if (offset >= bytes_) return;
    std::memcpy(base_ + offset, src, std::min<uint64_t>(n, bytes_ - offset));
  };
  auto le = [](const uint8_t* d, size_t n) {
    uint64_t v = 0;
    for (size_t k = 0; k < n && k < 8; ++k) v |= uint64_t{d[k]} << (8 * k);
    return v;
  };
  struct Range {
    uint64_t start, size;
  };
  const Range sections[7] = {
      {0, sizeof(shm::RegionHeader)},
      {layout_.families_offset, uint64_t{family_count_} * sizeof(shm::FamilyRecord)},
      {layout_.series_offset, uint64_t{series_count_} * sizeof(shm::SeriesRecord)},
      {layout_.hash_offset, uint64_t{layout_.hash_buckets} * sizeof(uint32_t)},
      {layout_.strings_offset, strings_used_},
      {layout_.slots_offset, uint64_t{total_slots} * sizeof(shm::SlotHeader)},
      {layout_.directory_offset, uint64_t{total_slots} * layout_.pages_per_slot * sizeof(uint32_t)},
  };

  size_t i = 0;
  while (i + 4 < size) {
    const uint8_t tag = data[i], sel = data[i + 1];
    const uint32_t off = data[i + 2] | uint32_t{data[i + 3]} << 8;
    i += 4;
    const size_t n = std::min<size_t>((tag >> 4) + 1, size - i);
    const uint8_t* d = data + i;
    i += n;
    const uint64_t pos = uint64_t{sel} << 16 | off;
    const unsigned op = tag & 15;
    if (op <= 6) {
      const Range r = sections[op];
      if (r.size > 0) write(r.start + pos % r.size, d, n);
    } else if (op == 7) {
      const uint32_t page = pages_used_ > 1 ? sel % (pages_used_ - 1) + 1 : 1;
      write(layout_.pages_offset + uint64_t{page} * shm::kPageBytes + off % shm::kPageBytes, d, n);
    } else if (op == 9) {
      shm::SlotHeader* s = region_->slot(sel % total_slots);
      s->state.store(n >= 4 ? static_cast<uint32_t>(le(d, 4)) : d[0] % 5u);
    } else if (op == 10) {
      const unsigned kind = sel % 3;
      const uint64_t record = kind == 0   ? sizeof(shm::FamilyRecord)
                              : kind == 1 ? sizeof(shm::SeriesRecord)
                                          : sizeof(shm::SlotHeader);
      const uint64_t start = kind == 0   ? layout_.families_offset
                             : kind == 1 ? layout_.series_offset
                                         : layout_.slots_offset;
      std::atomic<uint32_t>* count = kind == 0   ? &h.family_count
                                     : kind == 1 ? &h.series_count
                                                 : nullptr;
      const uint32_t capacity = kind == 0   ? layout_.max_families
                                : kind == 1 ? layout_.max_series
                                            : total_slots;
      const uint32_t used = count ? std::min(count->load(), capacity) : total_slots;
      if (used == 0) continue;
      const uint32_t src = (off & 255) % used;
      uint32_t dst = (off >> 8) % (used + 1);
      if (dst == used) {
        if (count == nullptr || used >= capacity) continue;
        count->store(used + 1);
      }
      std::memmove(base_ + start + dst * record, base_ + start + src * record, record);
    } else if (op == 11) {
      const uint32_t used = h.strings_used.load();
      if (used > layout_.string_bytes || layout_.string_bytes - used < n) continue;
      shm::StringRef* ref = nullptr;
      if (sel % 2 == 0) {
        const uint32_t families = std::min(h.family_count.load(), layout_.max_families);
        if (families == 0) continue;
        shm::FamilyRecord* f = region_->family((off & 255) % families);
        const uint32_t field = off >> 8;
        if (field == 0 || (field > 2 && f->label_count == 0)) {
          ref = &f->name;
        } else if (field == 1) {
          ref = &f->help;
        } else if (field == 2) {
          ref = &f->unit;
        } else {
          const uint32_t at =
              f->labels_offset + (field - 3) % f->label_count * sizeof(shm::StringRef);
          ref =
              reinterpret_cast<shm::StringRef*>(region_->mutable_arena(at, sizeof(shm::StringRef)));
        }
      } else {
        const uint32_t series = std::min(h.series_count.load(), layout_.max_series);
        if (series == 0) continue;
        const shm::SeriesRecord* s = region_->series((off & 255) % series);
        const shm::FamilyRecord* f = region_->family(s->family);
        if (f == nullptr || f->label_count == 0) continue;
        const uint32_t at = s->values_offset + (off >> 8) % f->label_count * sizeof(shm::StringRef);
        ref = reinterpret_cast<shm::StringRef*>(region_->mutable_arena(at, sizeof(shm::StringRef)));
      }
      if (ref == nullptr || reinterpret_cast<uintptr_t>(ref) % alignof(shm::StringRef) != 0)
        continue;
      std::memcpy(region_->mutable_arena(used, static_cast<uint32_t>(n)), d, n);
      *ref = shm::StringRef{used, static_cast<uint32_t>(n)};
      h.strings_used.store(used + static_cast<uint32_t>(n));
    } else if (op == 12) {
      const uint64_t v = le(d, n);
      switch (sel % 6) {
        case 0:
          h.family_count.store(static_cast<uint32_t>(v));
          break;
        case 1:
          h.series_count.store(static_cast<uint32_t>(v));
          break;
        case 2:
          h.cells_used.store(static_cast<uint32_t>(v));
          break;
        case 3:
          h.strings_used.store(static_cast<uint32_t>(v));
          break;
        case 4:
          h.pages_used.store(static_cast<uint32_t>(v));
          break;
        default:
          h.fold_commit.store(v);
          break;
      }
    } else {  // 8, 13..15
      write(pos % bytes_, d, n);
    }
  }
  h.ready.store(shm::kReadyValue);
}

}  // namespace shmetrics::fuzz
