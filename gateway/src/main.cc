// shmetrics-gateway: serves one region's merged metrics over HTTP. See --help.
#include <signal.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway.h"
#include "log.h"

namespace {

constexpr const char* kUsage = R"(Usage: shmetrics-gateway --region NAME [options]

Serves the merged metrics of every worker writing into the shared-memory region NAME
(/dev/shm/NAME) as one Prometheus /metrics endpoint. Creates the region if no worker has.

Region:
  --region NAME            region name: [A-Za-z0-9._-], 1-200 characters (required)
  --group NAME             trust group NAME: accept a region owned by another user if its group
                           is NAME and it is not world-writable; create it with that group
                           (without it, only regions this user owns are accepted)
  --reap-interval SECONDS  how often dead workers are looked for and folded, 1..86400
                           (default 1)
  --dead-gauge-retention SECONDS
                           how long gauges in mode `all` keep showing a dead worker, at most
                           a year (default 300)
  --reset                  remove the region NAME and exit (stop its workers first)

Web (the flags Prometheus exporters use):
  --web.listen-address HOST:PORT
                           address to serve on; repeat it to serve on several (default
                           127.0.0.1:9716: loopback only; :PORT is every interface, IPv4 and
                           IPv6; 0.0.0.0:PORT every IPv4 one; IPv6 as [::1]:PORT). Alias: --listen
  --web.telemetry-path PATH
                           path of the metrics (default /metrics); [A-Za-z0-9._~/-], from /
  --web.max-requests N     scrapes rendered at once; more are answered 503 at once and counted
                           in shmetrics_scrapes_refused_total (default 40; 0: no limit)
  --web.config.file FILE   exporter-toolkit web config (the format of node_exporter's and
                           Prometheus' own): tls_server_config (TLS only, then; certificates
                           re-read for new connections), basic_auth_users (bcrypt hashes),
                           http_server_config.headers, rate_limit; see README "TLS and basic
                           auth". Checked at start; later edits apply without a restart
  --threads N              HTTP io threads (default 2)

HTTP limits (at the connection cap idle clients make room, so a scrape always gets through):
  --max-connections N      connections open at once, 1..65536 (default 256). At the cap a new
                           connection evicts the one idle the longest (keep-alive between
                           requests, or no byte sent yet); with none idle it is refused
  --idle-timeout SECONDS   how long a keep-alive connection may idle between requests
                           (default 60; fractions allowed, at most 86400)
  --request-timeout SECONDS
                           a request must arrive whole, and its response be taken, within this;
                           a new connection's first request is timed from accept (default 10;
                           fractions allowed, at most 3600)
  --header-limit BYTES     largest request header block, 1K..1M, suffixes K, M (default 8K);
                           larger is answered 431

Options used only when the gateway creates the region (workers that create it use their own):
  --size BYTES             region size, suffixes K, M, G allowed (default 32M)
  --max-series N           series in the region (default 65536)
  --max-families N         families in the region (default 1024)
  --max-slots N            concurrent writer threads over all workers (default 256)
  --max-cells N            value cells, multiple of 512 (default 1048576)
  --mode OCTAL             file mode of /dev/shm/NAME (default 0600; 0660 to share with the
                           --group); world-writable modes and setuid/setgid/sticky bits are refused

Logging (one line per event on stderr):
  --log.level LEVEL        debug, info, warn or error (default info)
  --log.format FORMAT      logfmt (ts=... level=... msg="...", the default) or json (one object
                           per line: ts, level, msg)

  --version                the version, and the region layout version this build reads
  --help                   this text

Endpoints (GET and HEAD):
  /metrics (or --web.telemetry-path)
                           text 0.0.4, OpenMetrics 1.0 or protobuf (with native histograms) as
                           the Accept header asks, gzip when Accept-Encoding allows;
                           ?format=text|openmetrics|protobuf overrides Accept
  /-/healthy, /healthz     200 while the gateway runs
  /-/ready                 503 until the first reap has folded what died before the gateway
                           started, then 200 (it stays 200 when the region is lost later:
                           shmetrics_region_attached says that, and a sidecar's readiness would
                           take the app's pod out of service)
  /                        a page linking to the others

A region is refused when another user could write it: world-writable, or owned by another user
and not in the --group. A region replaced or truncated under the running gateway is re-attached
once it is valid; until then the last good state is served (shmetrics_region_attached is 0).
Exit status: 0 on SIGINT/SIGTERM, 2 on bad usage, 1 when the region or the address fails.
With --reset: 0 when the region was removed or there was none ("no region named NAME"), 1 when
it cannot be removed (e.g. permission denied: only its owner or root may remove it).
)";

[[noreturn]] void Usage(const std::string& error) {
  std::cerr << "shmetrics-gateway: " << error << "\nTry 'shmetrics-gateway --help'.\n";
  std::exit(2);
}

// A whole number for `flag`, at most `max` (after a K/M/G suffix when `suffixes`); anything else,
// including a value that does not fit, is a usage error that names the flag.
uint64_t ParseNumber(std::string_view flag, std::string_view text, uint64_t max, int base = 10,
                     bool suffixes = false) {
  const auto invalid = [&] {
    Usage("invalid number for " + std::string(flag) + ": '" + std::string(text) + "'");
  };
  const auto too_large = [&] {
    Usage(std::string(flag) + " '" + std::string(text) + "' is too large (at most " +
          std::to_string(max) + ")");
  };
  uint64_t value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (ec == std::errc::result_out_of_range) too_large();
  if (ec != std::errc() || p == text.data()) invalid();
  std::string_view rest(p, text.data() + text.size() - p);
  if (suffixes && rest.size() == 1) {
    const char s = static_cast<char>(std::toupper(rest[0]));
    const int shift = s == 'K' ? 10 : s == 'M' ? 20 : s == 'G' ? 30 : -1;
    if (shift < 0)
      Usage("invalid size suffix for " + std::string(flag) + ": '" + std::string(rest) +
            "' (use K, M or G)");
    if (value > (max >> shift)) too_large();
    value <<= shift;
    rest = {};
  }
  if (!rest.empty()) invalid();
  if (value > max) too_large();
  return value;
}

constexpr uint64_t kMaxU32 = std::numeric_limits<uint32_t>::max();

// HOST:PORT, [IPV6]:PORT or :PORT (every interface).
shmetrics::gateway::ListenAddress ParseListen(std::string_view flag, std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos)
    Usage(std::string(flag) + " wants HOST:PORT or :PORT, got '" + std::string(text) + "'");
  std::string host(text.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  else if (host.find(':') != std::string::npos)
    Usage(std::string(flag) + " '" + std::string(text) + "': write an IPv6 address in brackets, " +
          "e.g. [::1]:9716");
  const uint64_t port = ParseNumber(std::string(flag) + " port", text.substr(colon + 1), 65535);
  return {host, static_cast<uint16_t>(port)};
}

// A path the HTTP server can route to exactly: from "/", URL-safe characters only (no query, no
// percent-encoding, nothing the landing page would have to escape), not a health endpoint's.
std::string ParseTelemetryPath(std::string_view text) {
  const auto bad = [&](const std::string& why) {
    Usage("--web.telemetry-path '" + std::string(text) + "' " + why);
  };
  if (text.empty() || text.front() != '/') bad("must start with /");
  if (text.size() > 256) bad("is longer than 256 characters");
  for (const char c : text) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '~' &&
        c != '/' && c != '-')
      bad("may hold only A-Z a-z 0-9 . _ ~ / -");
  }
  for (std::string_view taken : {"/-/healthy", "/-/ready", "/healthz"}) {
    if (text == taken) bad("is the health endpoint's");
  }
  return std::string(text);
}

// Seconds with up to millisecond precision ("0.5", "60"), within (0, max_seconds].
std::chrono::milliseconds ParseSeconds(std::string_view flag, std::string_view text,
                                       double max_seconds) {
  double seconds = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec != std::errc() || p != text.data() + text.size() || !(seconds >= 0.001) ||
      seconds > max_seconds) {
    Usage(std::string(flag) + " wants seconds from 0.001 to " +
          std::to_string(static_cast<int>(max_seconds)) + ", got '" + std::string(text) + "'");
  }
  return std::chrono::milliseconds(std::llround(seconds * 1000));
}

}  // namespace

int main(int argc, char** argv) {
  using namespace shmetrics;
  gateway::GatewayOptions options;
  bool reset = false;
  std::vector<gateway::ListenAddress> listen;
  gateway::LogLevel log_level = gateway::LogLevel::kInfo;
  gateway::LogFormat log_format = gateway::LogFormat::kLogfmt;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) Usage("option " + std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--version") {
      std::cout << "shmetrics-gateway, version " << gateway::GatewayVersion() << " (region layout "
                << shm::kLayoutVersion << ")\n";
      return 0;
    } else if (arg == "--region") {
      options.region = value();
    } else if (arg == "--web.listen-address" || arg == "--listen") {
      const std::string_view text = value();
      gateway::ListenAddress address = ParseListen(arg, text);
      for (const auto& seen : listen) {
        if (seen.host == address.host && seen.port == address.port && address.port != 0)
          Usage(std::string(arg) + " " + std::string(text) + " is given twice");
      }
      listen.push_back(std::move(address));
    } else if (arg == "--web.telemetry-path") {
      options.telemetry_path = ParseTelemetryPath(value());
    } else if (arg == "--web.max-requests") {
      options.max_requests = static_cast<uint32_t>(ParseNumber(arg, value(), 65536));
    } else if (arg == "--log.level") {
      const std::string_view name = value();
      const auto level = gateway::ParseLogLevel(name);
      if (!level) Usage("--log.level '" + std::string(name) + "': use debug, info, warn or error");
      log_level = *level;
    } else if (arg == "--log.format") {
      const std::string_view name = value();
      const auto format = gateway::ParseLogFormat(name);
      if (!format) Usage("--log.format '" + std::string(name) + "': use logfmt or json");
      log_format = *format;
    } else if (arg == "--web.config.file") {
      options.http.web_config_file = value();
    } else if (arg == "--reap-interval") {
      options.reap_interval = std::chrono::milliseconds(ParseNumber(arg, value(), 86400) * 1000);
      if (options.reap_interval.count() == 0) Usage("--reap-interval must be at least 1");
    } else if (arg == "--dead-gauge-retention") {
      options.reader.dead_gauge_retention =
          std::chrono::seconds(ParseNumber(arg, value(), 365 * 86400));
    } else if (arg == "--threads") {
      options.http.threads = static_cast<int>(ParseNumber(arg, value(), 64));
      if (options.http.threads < 1) Usage("--threads must be 1..64");
    } else if (arg == "--max-connections") {
      const uint64_t n = ParseNumber(arg, value(), 65536);
      if (n < 1) Usage("--max-connections must be 1..65536");
      options.http.max_connections = static_cast<uint32_t>(n);
    } else if (arg == "--idle-timeout") {
      options.http.idle_timeout = ParseSeconds(arg, value(), 86400);
    } else if (arg == "--request-timeout") {
      options.http.request_timeout = ParseSeconds(arg, value(), 3600);
    } else if (arg == "--header-limit") {
      const uint64_t n = ParseNumber(arg, value(), 1u << 20, 10, true);
      if (n < 1024) Usage("--header-limit must be 1K..1M bytes");
      options.http.header_limit = static_cast<uint32_t>(n);
    } else if (arg == "--size") {
      options.region_options.size_bytes = ParseNumber(arg, value(), UINT64_MAX, 10, true);
    } else if (arg == "--max-series") {
      options.region_options.max_series = static_cast<uint32_t>(ParseNumber(arg, value(), kMaxU32));
    } else if (arg == "--max-families") {
      options.region_options.max_families =
          static_cast<uint32_t>(ParseNumber(arg, value(), kMaxU32));
    } else if (arg == "--max-slots") {
      options.region_options.max_slots = static_cast<uint32_t>(ParseNumber(arg, value(), kMaxU32));
    } else if (arg == "--max-cells") {
      options.region_options.max_cells = static_cast<uint32_t>(ParseNumber(arg, value(), kMaxU32));
    } else if (arg == "--mode") {
      const std::string_view text = value();
      const uint64_t mode = ParseNumber(arg, text, UINT64_MAX, 8);
      if (mode > 07777) Usage("--mode '" + std::string(text) + "' is not a file mode");
      if (std::string problem = shm::ModeProblem(static_cast<mode_t>(mode)); !problem.empty())
        Usage("--mode: " + problem);
      options.region_options.mode = static_cast<mode_t>(mode);
    } else if (arg == "--group") {
      options.region_options.group = value();
      try {
        shm::ResolveGroup(options.region_options.group);
      } catch (const shm::RegionError& e) {
        Usage(std::string("--group: ") + e.what());
      }
    } else if (arg == "--reset") {
      reset = true;
    } else {
      Usage("unknown option '" + std::string(arg) + "'");
    }
  }
  if (options.region.empty()) Usage("--region NAME is required");
  if (!listen.empty()) options.http.listen = std::move(listen);
  gateway::SetLogOptions(log_level, log_format);

  try {
    if (reset) {
      // Only ENOENT means "none"; anything else (EACCES, EPERM) throws and exits 1 below.
      const bool removed = shm::Region::Remove(options.region);
      std::cout << (removed ? "removed region " : "no region named ") << options.region << "\n";
      return 0;
    }
    // Signals are taken by sigwait in this thread only: block them before any thread starts.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    gateway::Gateway gw(options);
    gw.Start();
    int sig = 0;
    sigwait(&signals, &sig);
    gateway::LogInfo(std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                     ", stopping");
    gw.Stop();
    return 0;
  } catch (const std::exception& e) {
    gateway::LogError(e.what());
    return 1;
  }
}
