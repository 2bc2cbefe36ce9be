// Fuzzes the gateway's read side with hostile region bytes: the registry cache, the liveness probe
// and fold of dead writers into the accumulator bank, the merge into a Snapshot, and the three
// encoders. Each input is a list of patches over a real region that real client processes wrote
// (region_fixture.h describes both); the region is restored to its pristine bytes before the next
// input, so a run is deterministic per input.
//
// Per input: patch, attach a RegionReader (a header that fails validation is refused at attach,
// by design, and ends the input), then twice (a first scrape folds the dead, the second reads the
// bank it committed): Collect, render text 0.0.4, OpenMetrics and protobuf, and check every body
// with the independent strict checkers (exposition_checker.h). Findings: any sanitizer report, any
// exception out of the reader or the encoders (a gateway would answer every scrape with a 500),
// and any body that violates its format.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>

#include "exposition.h"
#include "exposition_checker.h"
#include "fuzz_report.h"
#include "region_fixture.h"
#include "region_reader.h"

namespace {

using shmetrics::fuzz::Finding;
using shmetrics::fuzz::SkippedCategory;
namespace gw = shmetrics::gateway;

constexpr const char* kTarget = "region_reader_fuzz_test";

void Check(const char* format, int scrape, const std::string& body,
           std::string (*checker)(std::string_view)) {
  const std::string problem = checker(body);
  if (problem.empty() || SkippedCategory(problem)) return;
  Finding(kTarget,
          std::string(format) + " body of scrape " + std::to_string(scrape) + ": " + problem, body);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  shmetrics::fuzz::RegionFixture::Get();  // fork the writers before libFuzzer starts threads
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& fixture = shmetrics::fuzz::RegionFixture::Get();
  fixture.Restore();
  fixture.ApplyInput(data, size);

  std::unique_ptr<shmetrics::shm::Region> region;
  try {
    region = shmetrics::shm::Region::Open(fixture.name());
  } catch (const shmetrics::shm::RegionError&) {
    return 0;  // the header failed validation: refused at attach, loudly, as designed
  }
  try {
    gw::RegionReader reader(std::move(region));  // takes the gateway lock; released per input
    gw::Snapshot snapshot;
    for (int scrape = 1; scrape <= 2; ++scrape) {
      reader.Collect(snapshot);
      std::string text, openmetrics, protobuf;
      gw::AppendExposition(gw::Format::kText, reader, snapshot, text);
      gw::AppendExposition(gw::Format::kOpenMetrics, reader, snapshot, openmetrics);
      gw::AppendExposition(gw::Format::kProtobuf, reader, snapshot, protobuf);
      Check("text 0.0.4", scrape, text, shmetrics::fuzz::CheckText004);
      Check("OpenMetrics", scrape, openmetrics, shmetrics::fuzz::CheckOpenMetrics);
      Check("protobuf", scrape, protobuf, shmetrics::fuzz::CheckProtobufDelimited);
    }
  } catch (const std::exception& e) {
    const std::string problem = std::string("exception: ") + e.what();
    if (!SkippedCategory(problem)) Finding(kTarget, problem);
  }
  return 0;
}
