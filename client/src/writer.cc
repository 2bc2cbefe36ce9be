// The write path's slow half: claiming slots, mapping pages, counting drops, and resetting after
// fork() so that a child never writes into its parent's slots.
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cstring>

#include "shmetrics/shm/native_histogram.h"
#include "shmetrics/shm/ofd_lock.h"
#include "shmetrics/shm/page_pool.h"
#include "writer_state.h"

namespace shmetrics::detail {

constinit thread_local PageEntry* tls_pages[kMaxRegions] = {};
std::atomic<PageEntry*> process_pages[kMaxRegions] = {};

namespace {

// Trivially destructible on purpose: worker threads may still write while exit() runs static
// destructors, and the region must stay mapped until the kernel tears the process down (that is
// also what releases the slot locks).
RegionState* g_states[kMaxRegions] = {};
std::atomic<uint32_t> g_region_count{0};

// Where updates go when there is no slot or no page: written, never read.
alignas(64) shm::Cell g_sink[shm::kCellsPerPage];

constexpr uint64_t kClaimRetryNs = 100'000'000;  // a thread without a slot retries every 100 ms
thread_local uint64_t tls_next_claim_ns[kMaxRegions] = {};

// Releases this thread's non-primary slots when the thread exits, so the gateway folds them.
struct ThreadSlots {
  OwnedWriter* owned[kMaxRegions] = {};
  ~ThreadSlots();
};
thread_local ThreadSlots tls_slots;

int GetTid() { return static_cast<int>(::syscall(SYS_gettid)); }

OwnedWriter* NewWriter(const shm::Region& region, uint32_t slot) {
  auto* w = new OwnedWriter();
  w->slot = slot;
  const uint32_t pages = region.layout().pages_per_slot;
  w->pages = new PageEntry[pages];
  for (uint32_t i = 0; i < pages; ++i) w->pages[i].store(nullptr, std::memory_order_relaxed);
  return w;
}

// Claims a free slot for this process. Caller holds state.mu.
OwnedWriter* ClaimSlotLocked(RegionState& state, bool primary) {
  const shm::Region& region = *state.region;
  const int fd = LockFdLocked(state);
  if (fd < 0) return nullptr;
  for (uint32_t i = 0; i < region.layout().max_slots; ++i) {
    shm::SlotHeader* s = region.slot(i);
    // Our own slots are never kFree, so this never re-locks (and then unlocks) one of them.
    if (s->state.load(std::memory_order_acquire) != static_cast<uint32_t>(shm::SlotState::kFree))
      continue;
    if (shm::TryLockByte(fd, shm::kSlotLockBase + i) != shm::LockResult::kAcquired) continue;
    if (s->state.load(std::memory_order_acquire) != static_cast<uint32_t>(shm::SlotState::kFree)) {
      shm::UnlockByte(fd, shm::kSlotLockBase + i);
      continue;
    }
    s->primary_slot = primary ? i : state.primary->slot;
    s->pid = static_cast<int32_t>(::getpid());
    s->tid = GetTid();
    s->claimed_unix_ns = NowUnixNs();
    s->fold_epoch = 0;
    s->occupancy.fetch_add(1, std::memory_order_relaxed);
    s->state.store(static_cast<uint32_t>(shm::SlotState::kActive), std::memory_order_release);
    return NewWriter(region, i);
  }
  return nullptr;
}

// Maps (allocating if needed) the page of `cell_base` for writer `w`. Caller holds state.mu.
shm::Cell* MapPageLocked(RegionState& state, OwnedWriter& w, uint32_t cell_base) {
  const shm::Region& region = *state.region;
  const uint32_t page_no = cell_base / shm::kCellsPerPage;
  if (page_no >= region.layout().pages_per_slot) return nullptr;
  if (shm::Cell* p = w.pages[page_no].load(std::memory_order_acquire)) {
    return p + cell_base % shm::kCellsPerPage;
  }
  shm::DirectoryEntry& entry = region.directory(w.slot)[page_no];
  uint32_t page_index = entry.load(std::memory_order_acquire);  // kept from an earlier occupant
  if (page_index == shm::kNoPage) {
    // Fresh pages are zero (the region is fallocate'd, never reused).
    page_index = shm::TakePage(region.header(), region.layout().page_count);
    if (page_index == shm::kNoPage) return nullptr;  // pool exhausted
    entry.store(page_index, std::memory_order_release);
  }
  shm::Cell* page = region.page(page_index);
  if (page == nullptr) return nullptr;
  w.pages[page_no].store(page, std::memory_order_release);
  return page + cell_base % shm::kCellsPerPage;
}

shm::Cell* Sink(const shm::Region& region, std::atomic<uint64_t> shm::RegionHeader::*counter) {
  (region.header().*counter).fetch_add(1, std::memory_order_relaxed);
  return g_sink;
}

OwnedWriter* EnsurePrimaryLocked(RegionState& state) {
  if (state.primary == nullptr) state.primary = ClaimSlotLocked(state, true);
  return state.primary;
}

void ForkPrepare() {
  const uint32_t n = g_region_count.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < n; ++i) {
    g_states[i]->registry_mu.lock();
    g_states[i]->mu.lock();
  }
}

void ForkParent() {
  const uint32_t n = g_region_count.load(std::memory_order_acquire);
  for (uint32_t i = n; i-- > 0;) {
    g_states[i]->mu.unlock();
    g_states[i]->registry_mu.unlock();
  }
}

// In the child: forget every slot (they are the parent's, and stay locked by the parent), and
// drop the inherited descriptor so the parent's locks do not outlive the parent in us.
void ForkChild() {
  const uint32_t n = g_region_count.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < n; ++i) {
    RegionState& s = *g_states[i];
    if (s.lock_fd >= 0) ::close(s.lock_fd);
    s.lock_fd = -1;
    s.primary = nullptr;
    s.primary_has_thread = false;
    process_pages[i].store(nullptr, std::memory_order_relaxed);
    tls_pages[i] = nullptr;
    tls_slots.owned[i] = nullptr;
    tls_next_claim_ns[i] = 0;
    s.mu.unlock();
    s.registry_mu.unlock();
  }
}

ThreadSlots::~ThreadSlots() {
  const uint32_t n = g_region_count.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < n; ++i) {
    OwnedWriter* w = owned[i];
    if (w == nullptr) continue;
    RegionState& s = *g_states[i];
    std::lock_guard lock(s.mu);
    tls_pages[i] = nullptr;
    if (w == s.primary) continue;  // the process slot lives as long as the process
    shm::SlotHeader* slot = s.region->slot(w->slot);
    slot->state.store(static_cast<uint32_t>(shm::SlotState::kReleased), std::memory_order_release);
    if (s.lock_fd >= 0) shm::UnlockByte(s.lock_fd, shm::kSlotLockBase + w->slot);
    owned[i] = nullptr;
    // Freed, or every thread that ever exits would leak a page table (LeakSanitizer's report in
    // client_test). Nothing else can reach it: tls_pages is this thread's and now null, and
    // process_pages only ever holds the primary's.
    delete[] w->pages;
    delete w;
  }
}

}  // namespace

RegionState& StateOf(uint32_t region) { return *g_states[region]; }

uint32_t AddRegionState(const shm::Region* region) {
  static std::once_flag atfork_once;
  std::call_once(atfork_once, [] { ::pthread_atfork(ForkPrepare, ForkParent, ForkChild); });
  const uint32_t id = g_region_count.load(std::memory_order_relaxed);
  if (id >= kMaxRegions) {
    throw shm::RegionError("region \"" + region->name() + "\": a process may attach at most " +
                           std::to_string(kMaxRegions) + " regions");
  }
  auto* state = new RegionState();
  state->region = region;
  g_states[id] = state;
  g_region_count.store(id + 1, std::memory_order_release);
  return id;
}

int OpenLockFdLocked(RegionState& state) {
  if (state.lock_fd < 0) state.lock_fd = state.region->OpenLockDescriptor();
  return state.lock_fd;
}

int LockFdLocked(RegionState& state) noexcept {
  try {
    return OpenLockFdLocked(state);
  } catch (...) {
    return -1;  // the slow path cannot report it; the next registration throws it with errno
  }
}

shm::Cell* ThreadCellsSlow(uint32_t region, uint32_t cell_base) noexcept {
  RegionState& state = StateOf(region);
  OwnedWriter* w = tls_slots.owned[region];
  if (w == nullptr) {
    const uint64_t now = NowUnixNs();
    if (now < tls_next_claim_ns[region])
      return Sink(*state.region, &shm::RegionHeader::dropped_no_slot);
    std::lock_guard lock(state.mu);
    // The process's first writing thread takes the primary slot; later threads get their own.
    if (EnsurePrimaryLocked(state) != nullptr && !state.primary_has_thread) {
      w = state.primary;
      state.primary_has_thread = true;
      process_pages[region].store(state.primary->pages, std::memory_order_release);
    } else if (state.primary != nullptr) {
      w = ClaimSlotLocked(state, false);
    }
    if (w == nullptr) {
      tls_next_claim_ns[region] = now + kClaimRetryNs;
      return Sink(*state.region, &shm::RegionHeader::dropped_no_slot);
    }
    tls_slots.owned[region] = w;
    tls_pages[region] = w->pages;
  }
  shm::Cell* cells;
  {
    std::lock_guard lock(state.mu);
    cells = MapPageLocked(state, *w, cell_base);
  }
  return cells ? cells : Sink(*state.region, &shm::RegionHeader::dropped_no_page);
}

shm::Cell* ProcessCellsSlow(uint32_t region, uint32_t cell_base) noexcept {
  RegionState& state = StateOf(region);
  std::lock_guard lock(state.mu);
  OwnedWriter* w = EnsurePrimaryLocked(state);
  if (w == nullptr) return Sink(*state.region, &shm::RegionHeader::dropped_no_slot);
  process_pages[region].store(w->pages, std::memory_order_release);
  shm::Cell* cells = MapPageLocked(state, *w, cell_base);
  return cells ? cells : Sink(*state.region, &shm::RegionHeader::dropped_no_page);
}

void CountDrop(uint32_t region, uint32_t drop_cell) noexcept {
  if (drop_cell == 0) {
    StateOf(region).region->header().dropped_region_full.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  shm::Cell* c = ThreadCells(region, drop_cell);
  if (c != g_sink) CountInc(*c);
}

int32_t NativeBucketKey(double a, int32_t schema) noexcept {
  return shm::native::BucketKey(a, schema);
}

void NativeObserveSlow(shm::Cell* block, double v, const NativeParams& p) noexcept {
  // Seqlock: readers retry while the count is odd or has changed under them.
  shm::Cell& seqlock = block[shm::native::kSeqCell];
  const uint64_t seq = seqlock.load(std::memory_order_relaxed);
  seqlock.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  shm::native::AddInPlace(block, p.window, p.schema, v);  // stack buffers: no allocation
  seqlock.store(seq + 2, std::memory_order_release);
}

void WriteExemplar(uint32_t region, shm::Cell* block, double value, const ExemplarLabelView* labels,
                   size_t count) noexcept {
  unsigned char bytes[shm::kExemplarLabelBytes] = {};
  size_t used = 0;
  bool fits = block != nullptr;
  for (size_t i = 0; fits && i < count; ++i) {
    const std::string_view parts[2] = {labels[i].name, labels[i].value};
    for (std::string_view part : parts) {
      if (part.size() > 255 || used + 1 + part.size() > sizeof bytes) {
        fits = false;
        break;
      }
      bytes[used++] = static_cast<unsigned char>(part.size());
      std::memcpy(bytes + used, part.data(), part.size());
      used += part.size();
    }
  }
  if (!fits) {
    StateOf(region).region->header().dropped_exemplars.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  shm::Cell& seqlock = block[shm::kExemplarSeq];
  const uint64_t seq = seqlock.load(std::memory_order_relaxed);
  seqlock.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  block[shm::kExemplarValue].store(std::bit_cast<uint64_t>(value), std::memory_order_relaxed);
  block[shm::kExemplarUnixNs].store(NowUnixNs(), std::memory_order_relaxed);
  block[shm::kExemplarUsed].store(used, std::memory_order_relaxed);
  for (size_t w = 0; w < shm::kExemplarLabelBytes / shm::kCellBytes; ++w) {
    uint64_t word;
    std::memcpy(&word, bytes + w * shm::kCellBytes, shm::kCellBytes);
    block[shm::kExemplarLabels + w].store(word, std::memory_order_relaxed);
  }
  seqlock.store(seq + 2, std::memory_order_release);
}

bool ClaimThreadSlot(uint32_t region) noexcept {
  ThreadCells(region, shm::kSystemCells);  // any cell: claims the slot as a side effect
  return tls_slots.owned[region] != nullptr;
}

}  // namespace shmetrics::detail
