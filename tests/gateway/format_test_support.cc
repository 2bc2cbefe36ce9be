#include "format_test_support.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "metrics.pb.h"

namespace shmetrics::gateway::testing {
namespace {

namespace pb = io::prometheus::client;

std::string Canonical(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

double ParseDouble(const std::string& s) { return std::strtod(s.c_str(), nullptr); }

std::string Unhex(std::string_view h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) {
    out += static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16));
  }
  return out;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  return parts;
}

// The strict parser, reporting samples with hex-encoded label values (they may hold newlines).
constexpr const char* kPythonScript = R"PY(
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
with open(sys.argv[1], encoding='utf-8', newline='') as f:
    data = f.read()
try:
    families = list(text_string_to_metric_families(data))
except Exception as e:
    print('ERROR\t' + type(e).__name__ + ': ' + str(e).replace('\n', '\\n'))
    sys.exit(1)
for fam in families:
    print('F\t' + '|'.join([fam.name, fam.type, fam.unit, fam.documentation]).encode().hex())
    for s in fam.samples:
        labels = ','.join(k + '=' + v.encode().hex() for k, v in sorted(s.labels.items()))
        print('S\t' + s.name + '\t' + labels + '\t' + repr(float(s.value)))
)PY";

std::string WriteTempFile(const std::string& content, const char* suffix) {
  std::string path = std::string("/tmp/shmetrics-format-test-XXXXXX") + suffix;
  const int fd = ::mkstemps(path.data(), static_cast<int>(std::strlen(suffix)));
  if (fd < 0) return {};
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return path;
}

}  // namespace

std::string SeriesKey(std::string_view name, Labels labels) {
  for (auto& [k, v] : labels) {
    if (k == "le" || k == "quantile") v = Canonical(ParseDouble(v));
  }
  std::sort(labels.begin(), labels.end());
  std::string key(name);
  key += '{';
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) key += ',';
    key += labels[i].first;
    key += '=';
    key += labels[i].second;
  }
  key += '}';
  return key;
}

bool SameSamples(const Samples& a, const Samples& b, std::string* diff) {
  bool same = true;
  auto note = [&](const std::string& line) {
    same = false;
    if (diff != nullptr) *diff += line + "\n";
  };
  for (const auto& [k, v] : a) {
    auto it = b.find(k);
    if (it == b.end()) {
      note("only in first: " + k + " = " + Canonical(v));
    } else if (!(std::isnan(v) && std::isnan(it->second)) &&
               std::memcmp(&v, &it->second, sizeof v) != 0) {
      note("differs: " + k + " = " + Canonical(v) + " vs " + Canonical(it->second));
    }
  }
  for (const auto& [k, v] : b) {
    if (a.count(k) == 0) note("only in second: " + k + " = " + Canonical(v));
  }
  return same;
}

void PopulateRegion(Client& client) {
  auto& requests = BuildCounter()
                       .Name("fmt_requests_total")
                       .Help("Requests, with \"quotes\", a back\\slash and a\nnewline.")
                       .Labels({"method", "path"})
                       .Register(client);
  auto& sent = BuildCounter()
                   .Name("fmt_sent_bytes_total")
                   .Help("Bytes sent.")
                   .Unit("bytes")
                   .Register(client);
  auto& never = BuildCounter()
                    .Name("fmt_never_total")
                    .Help("Registered, never incremented.")
                    .Register(client);
  auto& no_help = BuildCounter().Name("fmt_no_help_total").Register(client);

  struct ModeGauge {
    const char* name;
    GaugeMode mode;
  };
  const ModeGauge modes[] = {
      {"fmt_gauge_all", GaugeMode::kAll},
      {"fmt_gauge_liveall", GaugeMode::kLiveAll},
      {"fmt_gauge_sum", GaugeMode::kSum},
      {"fmt_gauge_livesum", GaugeMode::kLiveSum},
      {"fmt_gauge_max", GaugeMode::kMax},
      {"fmt_gauge_livemax", GaugeMode::kLiveMax},
      {"fmt_gauge_min", GaugeMode::kMin},
      {"fmt_gauge_livemin", GaugeMode::kLiveMin},
      {"fmt_gauge_mostrecent", GaugeMode::kMostRecent},
      {"fmt_gauge_livemostrecent", GaugeMode::kLiveMostRecent},
  };
  std::vector<Family<Gauge>*> gauges;
  for (const ModeGauge& m : modes) {
    gauges.push_back(&BuildGauge()
                          .Name(m.name)
                          .Help(std::string("A gauge in mode ") + m.name)
                          .Labels({"shard"})
                          .Mode(m.mode)
                          .Register(client));
  }
  auto& special =
      BuildGauge().Name("fmt_special").Help("Special values.").Labels({"v"}).Register(client);
  auto& temperature =
      BuildGauge().Name("fmt_room_celsius").Help("Temperature.").Unit("celsius").Register(client);

  auto& latency = BuildHistogram()
                      .Name("fmt_latency_seconds")
                      .Help("Latency.")
                      .Unit("seconds")
                      .Labels({"route"})
                      .Buckets({0.0001, 0.005, 0.1, 1, 100000, 1234567})
                      .Register(client);
  auto& signed_hist = BuildHistogram()
                          .Name("fmt_delta_celsius")
                          .Help("Negative buckets: no _sum/_count in OpenMetrics.")
                          .Unit("celsius")
                          .Buckets({-10, 0, 10})
                          .Register(client);
  auto& negative_sum = BuildHistogram()
                           .Name("fmt_offset")
                           .Help("Non-negative buckets, negative sum.")
                           .Buckets({1, 2})
                           .Register(client);
  auto& nan_sum = BuildHistogram()
                      .Name("fmt_nan_observed")
                      .Help("A NaN observation.")
                      .Buckets({1})
                      .Register(client);
  auto& payload = BuildSummary()
                      .Name("fmt_payload_bytes")
                      .Help("Payload sizes (count and sum only).")
                      .Unit("bytes")
                      .Labels({"dir"})
                      .Register(client);
  auto& idle = BuildHistogram()
                   .Name("fmt_idle")
                   .Help("Never observed.")
                   .Labels({"x"})
                   .Buckets({1, 2})
                   .Register(client);

  requests.Add({"GET", "/a\"b"}).Add(3);
  requests.Add({"POST", "C:\\dir\\"}).Inc();
  requests.Add({"PUT", "line1\nline2"}).Add(0.5);
  requests.Add({"żółw", "✓ ünïcödé"}).Add(1e20);
  requests.Add({"", ""}).Add(7);
  sent.Get().Add(123456789);
  never.Get();
  no_help.Get().Add(2);
  for (auto* g : gauges) g->Add({"a"}).Set(1.5);
  special.Add({"nan"}).Set(std::numeric_limits<double>::quiet_NaN());
  special.Add({"inf"}).Set(std::numeric_limits<double>::infinity());
  special.Add({"-inf"}).Set(-std::numeric_limits<double>::infinity());
  special.Add({"tiny"}).Set(1e-300);
  special.Add({"negative"}).Set(-2.5);
  special.Add({"big"}).Set(1234567.0);
  temperature.Get().Set(21.5);
  for (double v : {0.00005, 0.0001, 0.003, 0.05, 0.5, 2.0, 99999.0, 2000000.0})
    latency.Add({"/"}).Observe(v);
  latency.Add({"/api"}).Observe(0.2);
  for (double v : {-20.0, -5.0, 5.0, 50.0}) signed_hist.Get().Observe(v);
  negative_sum.Get().Observe(-5);
  negative_sum.Get().Observe(0.5);
  nan_sum.Get().Observe(std::numeric_limits<double>::quiet_NaN());
  nan_sum.Get().Observe(0.5);
  idle.Add({"y"});
  payload.Add({"in"}).Observe(100);
  payload.Add({"in"}).Observe(28);

  // A worker that writes and dies: folded into the accumulator by the first Collect.
  const pid_t pid = ::fork();
  if (pid == 0) {
    requests.Add({"GET", "/a\"b"}).Add(2);
    for (auto* g : gauges) g->Add({"a"}).Set(4);
    latency.Add({"/"}).Observe(0.05);
    payload.Add({"in"}).Observe(1000);  // folded: count 3, sum 1128
    _exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
}

Samples ParseText(std::string_view body, std::vector<std::string>* errors) {
  Samples out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string_view::npos) end = body.size();
    const std::string_view line = body.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line.front() == '#') continue;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    const std::string name(line.substr(0, i));
    Labels labels;
    bool ok = true;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (ok && i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        if (eq == std::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
          ok = false;
          break;
        }
        std::string lname(line.substr(i, eq - i));
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            value += line[j] == 'n' ? '\n' : line[j];
          } else {
            value += line[j];
          }
        }
        if (j >= line.size()) {
          ok = false;
          break;
        }
        labels.emplace_back(std::move(lname), std::move(value));
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) ok = false;
      ++i;  // '}'
    }
    if (!ok || i >= line.size() || line[i] != ' ') {
      if (errors) errors->emplace_back(line);
      continue;
    }
    std::string value(line.substr(i + 1));
    if (const size_t sp = value.find(' '); sp != std::string::npos) value.resize(sp);  // timestamp
    out[SeriesKey(name, std::move(labels))] = ParseDouble(value);
  }
  return out;
}

Samples DecodeProtobuf(std::string_view body, std::vector<std::string>* families,
                       std::string* error) {
  Samples out;
  size_t pos = 0;
  pb::MetricFamily mf;
  while (pos < body.size()) {
    uint64_t len = 0;
    int shift = 0;
    while (true) {
      if (pos >= body.size() || shift > 63) {
        if (error) *error = "truncated length prefix";
        return out;
      }
      const uint8_t b = static_cast<uint8_t>(body[pos++]);
      len |= uint64_t{b & 0x7fu} << shift;
      shift += 7;
      if ((b & 0x80) == 0) break;
    }
    if (len > body.size() - pos || !mf.ParseFromArray(body.data() + pos, static_cast<int>(len))) {
      if (error) *error = "bad MetricFamily record at byte " + std::to_string(pos);
      return out;
    }
    pos += len;
    if (families) {
      families->push_back(mf.name() + "|" + pb::MetricType_Name(mf.type()) + "|" + mf.unit() + "|" +
                          mf.help());
    }
    for (const pb::Metric& m : mf.metric()) {
      Labels labels;
      for (const pb::LabelPair& l : m.label()) labels.emplace_back(l.name(), l.value());
      auto put = [&](const std::string& name, double v, const char* extra = nullptr,
                     double extra_value = 0) {
        Labels ls = labels;
        if (extra) ls.emplace_back(extra, Canonical(extra_value));
        out[SeriesKey(name, std::move(ls))] = v;
      };
      switch (mf.type()) {
        case pb::COUNTER:
          put(mf.name(), m.counter().value());
          break;
        case pb::GAUGE:
          put(mf.name(), m.gauge().value());
          break;
        case pb::UNTYPED:
          put(mf.name(), m.untyped().value());
          break;
        case pb::SUMMARY:
          for (const pb::Quantile& q : m.summary().quantile())
            put(mf.name(), q.value(), "quantile", q.quantile());
          put(mf.name() + "_sum", m.summary().sample_sum());
          put(mf.name() + "_count", static_cast<double>(m.summary().sample_count()));
          break;
        case pb::HISTOGRAM:
        case pb::GAUGE_HISTOGRAM: {
          const pb::Histogram& h = m.histogram();
          const double count = h.sample_count_float() > 0 ? h.sample_count_float()
                                                          : static_cast<double>(h.sample_count());
          bool has_inf = false;
          for (const pb::Bucket& b : h.bucket()) {
            const double c = b.cumulative_count_float() > 0
                                 ? b.cumulative_count_float()
                                 : static_cast<double>(b.cumulative_count());
            put(mf.name() + "_bucket", c, "le", b.upper_bound());
            has_inf = has_inf || std::isinf(b.upper_bound());
          }
          if (!has_inf)
            put(mf.name() + "_bucket", count, "le", std::numeric_limits<double>::infinity());
          put(mf.name() + "_sum", h.sample_sum());
          put(mf.name() + "_count", count);
          break;
        }
      }
    }
  }
  return out;
}

StrictParse ParseOpenMetricsStrictly(const std::string& body) {
  StrictParse result;
  const std::string body_path = WriteTempFile(body, ".txt");
  const std::string script_path = WriteTempFile(kPythonScript, ".py");
  const std::string out_path = WriteTempFile("", ".out");
  const std::string cmd =
      "/usr/bin/python3 " + script_path + " " + body_path + " > " + out_path + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream in(out_path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string output = ss.str();
  for (const std::string& p : {body_path, script_path, out_path}) ::unlink(p.c_str());

  std::istringstream lines(output);
  std::string line;
  while (std::getline(lines, line)) {
    const auto f = Split(line, '\t');
    if (f[0] == "ERROR") {
      result.error = line.substr(6);
    } else if (f[0] == "F" && f.size() == 2) {
      result.families.push_back(Unhex(f[1]));
    } else if (f[0] == "S" && f.size() == 4) {
      Labels labels;
      if (!f[2].empty()) {
        for (const std::string& kv : Split(f[2], ',')) {
          const size_t eq = kv.find('=');
          labels.emplace_back(kv.substr(0, eq), Unhex(kv.substr(eq + 1)));
        }
      }
      result.samples[SeriesKey(f[1], std::move(labels))] = ParseDouble(f[3]);
    } else if (result.error.empty()) {
      result.error = "unexpected output: " + line;
    }
  }
  result.ok = rc == 0 && result.error.empty();
  if (rc != 0 && result.error.empty())
    result.error = "python exited with " + std::to_string(rc) + ": " + output;
  return result;
}

}  // namespace shmetrics::gateway::testing
