#include "metrics_endpoint.h"

#include <cstdio>

#include "gzip.h"
#include "log.h"

namespace shmetrics::gateway {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string FormatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", s);
  return buf;
}

}  // namespace

MetricsEndpoint::MetricsEndpoint(prometheus::Registry& registry, MetricsEndpointOptions options)
    : options_(options),
      scrapes_(prometheus::BuildCounter()
                   .Name("shmetrics_scrapes_total")
                   .Help("/metrics responses served, by negotiated format and content coding.")
                   .Register(registry)),
      deadline_(
          prometheus::BuildCounter()
              .Name("shmetrics_scrape_deadline_actions_total")
              .Help("Scrapes near or past the scraper's X-Prometheus-Scrape-Timeout-Seconds: "
                    "skipped_gzip (sent uncompressed to save time), answered_503 (the body was "
                    "ready only after the timeout).")
              .Register(registry)),
      skipped_gzip_(deadline_.Add({{"action", "skipped_gzip"}})),
      answered_503_(deadline_.Add({{"action", "answered_503"}})),
      gzip_bytes_per_second_(options.initial_gzip_bytes_per_second) {
  for (Format f : {Format::kText, Format::kOpenMetrics, Format::kProtobuf}) {
    served_[static_cast<int>(f)][0] =
        &scrapes_.Add({{"format", FormatName(f)}, {"encoding", "identity"}});
    served_[static_cast<int>(f)][1] =
        &scrapes_.Add({{"format", FormatName(f)}, {"encoding", "gzip"}});
  }
}

bool MetricsEndpoint::GzipFits(size_t bytes, double bytes_per_second, double seconds_left) {
  if (!(bytes_per_second > 0)) return true;
  return static_cast<double>(bytes) / bytes_per_second <= seconds_left;
}

HttpResponse MetricsEndpoint::Handle(const HttpRequestInfo& request, const Renderer& render) {
  const Clock::time_point start = Clock::now();
  HttpResponse r;
  r.headers.emplace_back("Vary", "Accept, Accept-Encoding");

  std::string error;
  const std::optional<Format> forced = FormatFromQuery(request.query, &error);
  if (!error.empty()) {
    r.status = 400;
    r.body = error + "\n";
    return r;
  }
  const Format format = forced ? *forced : NegotiateFormat(request.accept);
  bool gzip = AcceptsGzip(request.accept_encoding);

  std::string body = render(format);

  const double timeout = request.scrape_timeout_seconds;  // 0: no deadline
  const double elapsed = Seconds(Clock::now() - start);
  if (timeout > 0 && elapsed > timeout) {
    answered_503_.Increment();
    const uint64_t n = deadline_misses_.fetch_add(1, std::memory_order_relaxed) + 1;
    const std::string why = "collecting and encoding the " + std::string(FormatName(format)) +
                            " body took " + FormatSeconds(elapsed) +
                            " s, past the scraper's timeout of " + FormatSeconds(timeout) +
                            " s (X-Prometheus-Scrape-Timeout-Seconds)";
    if (LogThisOccurrence(n))
      LogWarn("/metrics: answered 503 (" + std::to_string(n) + " so far): " + why);
    r.status = 503;
    r.body = why + "\n";
    return r;
  }
  if (gzip && timeout > 0 &&
      !GzipFits(body.size(), gzip_bytes_per_second_.load(std::memory_order_relaxed),
                timeout - elapsed)) {
    gzip = false;
    skipped_gzip_.Increment();
  }
  if (gzip) {
    const Clock::time_point gzip_start = Clock::now();
    std::string compressed = Gzip(body, options_.gzip_level);
    const double took = Seconds(Clock::now() - gzip_start);
    // Only bodies large enough to time meaningfully update the throughput estimate.
    if (body.size() >= (64u << 10) && took > 0) {
      const double measured = static_cast<double>(body.size()) / took;
      const double old = gzip_bytes_per_second_.load(std::memory_order_relaxed);
      gzip_bytes_per_second_.store(0.7 * old + 0.3 * measured, std::memory_order_relaxed);
    }
    body = std::move(compressed);
    r.headers.emplace_back("Content-Encoding", "gzip");
  }
  served_[static_cast<int>(format)][gzip ? 1 : 0]->Increment();
  r.content_type = ContentType(format);
  r.body = std::move(body);
  return r;
}

}  // namespace shmetrics::gateway
