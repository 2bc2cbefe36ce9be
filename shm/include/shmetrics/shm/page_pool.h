// The region's page pool: RegionHeader::pages_used is a bump pointer over pages [1, page_count).
// Writers take pages for their slots and the gateway for its accumulator banks, both through
// TakePage; pages never return to the pool (they stay with the slot that took them).
//
// Invariants: page 0 is kNoPage and is never handed out, even when the shared bump pointer was
// scribbled below 1; no page at or past page_count is handed out. Lock-free: a process killed
// mid-call leaves at most one page taken and unused.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "shmetrics/shm/layout.h"

namespace shmetrics::shm {

// Returns a fresh page index, or kNoPage when the pool is exhausted.
inline uint32_t TakePage(RegionHeader& header, uint32_t page_count) noexcept {
  std::atomic<uint32_t>& used = header.pages_used;
  uint32_t next = used.load(std::memory_order_relaxed);
  uint32_t page = 0;
  do {
    page = std::max(next, 1u);
    if (page >= page_count) return kNoPage;
  } while (!used.compare_exchange_weak(next, page + 1, std::memory_order_relaxed));
  return page;
}

}  // namespace shmetrics::shm
