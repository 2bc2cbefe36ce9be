// The gateway's metrics about the region are absolute values of what it reads, each family once,
// and a family's drop series appear only once they are non-zero.
#include "self_metrics.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>
#include <string>

#include "exposition.h"
#include "format_test_support.h"
#include "gateway.h"
#include "test_region.h"

namespace shmetrics::gateway {
namespace {

using shmetrics::testing::ScopedRegionName;
using shmetrics::testing::SmallOptions;

std::string RenderText(const SelfStats& stats) {
  std::vector<prometheus::MetricFamily> families;
  AppendSelfStats(stats, families);
  std::string out;
  const std::unique_ptr<Renderer> r = MakeRenderer(Format::kText, out);
  RenderSelfFamilies(families, *r);
  r->Finish();
  return out;
}

FamilyInfo Family(std::string name, uint32_t drop_cell) {
  FamilyInfo f;
  f.view.name = std::move(name);
  f.view.drop_cell = drop_cell;
  return f;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(SelfMetricsTest, CountsAreServedAsReadAndFamilyDropsOnceNonZero) {
  const std::vector<FamilyInfo> families = {Family("a", 0), Family("b", 2)};
  Snapshot snap;
  snap.cells = {4, 0, 0, 0};  // a: 4 over its series cap; b: nothing dropped
  snap.folded_workers = 7;
  snap.dropped_no_page = 3;
  const shm::Layout layout = shm::ComputeLayout(SmallOptions());
  ReaderStats reader;
  reader.fold_rounds = 9;
  HttpServerStats http;
  http.not_found = 2;
  const std::string body = RenderText({snap, families, 5, layout, reader, http});

  EXPECT_TRUE(Contains(body, "\nshmetrics_workers_dead_total 7\n")) << body;
  EXPECT_TRUE(Contains(body, "\nshmetrics_dropped_updates_total{reason=\"no_page\"} 3\n"));
  EXPECT_TRUE(Contains(body, "\nshmetrics_dropped_updates_total{reason=\"series_limit\"} 4\n"));
  EXPECT_TRUE(Contains(body, "\nshmetrics_fold_rounds_total{result=\"ok\"} 9\n"));
  EXPECT_TRUE(Contains(body, "\nshmetrics_http_errors_total{reason=\"not_found\"} 2\n"));
  EXPECT_TRUE(Contains(body, "\nshmetrics_series 5\n"));
  EXPECT_TRUE(Contains(body,
                       "\nshmetrics_family_dropped_updates_total{family=\"a\",reason="
                       "\"series_limit\"} 4\n"))
      << body;
  EXPECT_FALSE(Contains(body, "family=\"b\"")) << body;
  EXPECT_FALSE(Contains(body, "family=\"a\",reason=\"invalid_value\"")) << body;  // zero

  // Nothing dropped per family: the family is left out altogether.
  snap.cells = {0, 0, 0, 0};
  EXPECT_FALSE(Contains(RenderText({snap, families, 5, layout, reader, http}),
                        "shmetrics_family_dropped_updates_total"));
}

// Every family of a gateway's body, region and self alike, is declared exactly once.
TEST(SelfMetricsTest, GatewayBodyDeclaresEveryFamilyOnce) {
  ScopedRegionName name("selfonce");
  testing::PopulateRegion(Client::Attach(name.name, SmallOptions()));
  GatewayOptions o;
  o.region = name.name;
  o.region_options = SmallOptions();
  Gateway gw(o);
  gw.RenderMetrics();  // a second body also carries the first scrape's duration
  std::istringstream lines(gw.RenderMetrics());
  std::map<std::string, int> types;
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("# TYPE ")) ++types[line.substr(7, line.find(' ', 7) - 7)];
  }
  for (const char* family :
       {"shmetrics_scrapes_total", "shmetrics_scrape_duration_seconds", "shmetrics_workers",
        "shmetrics_workers_dead_total", "shmetrics_dropped_updates_total",
        "shmetrics_region_attached", "shmetrics_http_errors_total", "fmt_requests_total"}) {
    EXPECT_EQ(types[family], 1) << family;
  }
  for (const auto& [family, n] : types) EXPECT_EQ(n, 1) << family;
}

}  // namespace
}  // namespace shmetrics::gateway
