// Baselines: what the hardware does with the simplest possible loop for each kind of update, and
// how fast memory can be read, measured in the same run as the real thing.
//
// The target memory is reached through a pointer laundered with DoNotOptimize, so the compiler
// cannot keep the value in a register; ClobberMemory (a compiler-only barrier, no instruction)
// then forces one load and one store per iteration and stops iterations from being merged. The
// loops compile to (g++ 12 -O3, x86-64; see bench/README.md):
//   PlainIncrement     addq $1, (reg)                 non-atomic read-modify-write of memory
//   RelaxedLoadStore   mov (reg), r; add $1, r; mov r, (reg)   single-writer atomic: no lock prefix
//   RelaxedFetchAdd    lock addq $1, (reg)            uncontended atomic RMW
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace shmetrics::bench {
namespace {

void BM_Baseline_PlainIncrement(benchmark::State& state) {
  auto storage = std::make_unique<uint64_t>(0);
  uint64_t* p = storage.get();
  benchmark::DoNotOptimize(p);
  for (auto _ : state) {
    ++*p;
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(*p);
}
BENCHMARK(BM_Baseline_PlainIncrement);

void BM_Baseline_RelaxedLoadStore(benchmark::State& state) {
  auto storage = std::make_unique<std::atomic<uint64_t>>(0);
  std::atomic<uint64_t>* a = storage.get();
  benchmark::DoNotOptimize(a);
  for (auto _ : state) {
    a->store(a->load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_Baseline_RelaxedLoadStore);

void BM_Baseline_RelaxedFetchAdd(benchmark::State& state) {
  auto storage = std::make_unique<std::atomic<uint64_t>>(0);
  std::atomic<uint64_t>* a = storage.get();
  benchmark::DoNotOptimize(a);
  for (auto _ : state) {
    a->fetch_add(1, std::memory_order_relaxed);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_Baseline_RelaxedFetchAdd);

// Memory read bandwidth, the floor for a merge that reads every writer's cells: sums an array of
// <MiB> MiB of 64-bit words (vectorised; the sum is kept so the reads cannot be dropped).
void BM_Baseline_SumArray(benchmark::State& state) {
  const size_t words = static_cast<size_t>(state.range(0)) << 20 >> 3;
  std::vector<uint64_t> data(words);
  for (size_t i = 0; i < words; ++i) data[i] = i;
  const uint64_t* p = data.data();
  benchmark::DoNotOptimize(p);
  for (auto _ : state) {
    uint64_t sum = 0;
    for (size_t i = 0; i < words; ++i) sum += p[i];
    benchmark::DoNotOptimize(sum);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(words * 8));
}
BENCHMARK(BM_Baseline_SumArray)->Arg(1)->Arg(16)->Arg(64)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace shmetrics::bench
