// shmetrics-inspect: what is in one region, for an operator, without a gateway and without
// changing the region. See --help; the model and its renderings are in inspect.h.
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>

#include "inspect.h"
#include "shmetrics/shm/region.h"

#ifndef SHMETRICS_VERSION
#define SHMETRICS_VERSION "unknown"
#endif

namespace {

constexpr const char* kUsage = R"(Usage: shmetrics-inspect --region NAME [--json] [--group NAME]

Prints what the shared-memory region NAME (/dev/shm/NAME) holds: its header and capacities, how
full each section is, the families by series count with their dropped updates, the writer slots
that are not free (live or dead, with pid, threads and pages), and warnings. Needs no running
gateway and changes nothing: the region is opened and mapped read-only, and a slot's liveness is
tested (F_OFD_GETLK on its lock) without taking the lock, so no gateway or worker ever waits on
it. The numbers are the ones the gateway's self-metrics serve (shmetrics_dropped_updates_total
and the like), read by the same code.

Options:
  --region NAME   region name: [A-Za-z0-9._-], 1-200 characters (required)
  --json          one JSON object instead of text (keys below)
  --group NAME    trust group NAME, as shmetrics-gateway --group: accept a region owned by
                  another user if its group is NAME and it is not world-writable
  --help          this text
  --version       the version

Liveness of a slot (liveness column / key):
  live         its process holds the slot's lock
  dead         state active but the lock is gone: the process died; the next gateway folds it
  released     its thread ended and released it; the next gateway folds it
  folding      a gateway is folding it now
  interrupted  a gateway died while folding it; the next one folds it again from scratch
  folded       folded and committed, not yet freed
  unknown      the lock probe failed (a gateway then keeps the slot as live)
  corrupt      the slot's state is none of the above
The pid is as the writer saw it; "kernel" says whether this kernel has such a process, which in
another pid namespace may be a different one. The lock is what decides.

Warnings (kind: meaning): section_full (a section >= 90% full), family_cap (a family >= 90% of
its series cap), drops (updates dropped or registrations refused), dead_slots (slots wait for a
fold and no gateway serves the region), corrupt_record (a family or series record the reader
rejects, with its offset), corrupt_slot, corrupt_block, corrupt_header, layout_version (a
version this build cannot read).

JSON (format 1): {"format", "region", "path", "error" (null or text), "exit_code",
  "file": {bytes, uid, user, gid, group, mode} | null,
  "header": {magic_ok, layout_version, known_layout_version, header_bytes, region_bytes,
             generation, created_unix_ns, created, page_bytes} | null,
  "capacities": {max_families, max_series, max_slots, max_cells, pages_per_slot, page_count,
                 hash_buckets, string_bytes},
  "offsets": {families, series, hash, strings, slots, directory, pages} (bytes),
  "decoded": bool; when true also
  "gateway": {serving, lock, registering, fold_epoch, active_bank},
  "sections": {families|series|strings|cells|pages|slots: {used, capacity, percent}},
  "drops": {series_limit, invalid_value, exemplar, region_full, no_slot, no_page,
            registration_errors},
  "families": [{name, index, type, gauge_mode, labels, series, max_series,
                dropped: {series_limit, invalid_value}}]  (most series first),
  "slots": [{index, state, liveness, lock, lock_error, pid, pid_running, proc_entry, tid,
             primary_slot, threads (primary slots; else null), pages, claimed_unix_ns}],
  "free_slots", "free_slots_with_pages",
  and always "warnings": [{kind, message, offset (byte offset in the region, or null)}]}

Exit status: 0 healthy (no warnings), 1 warnings, 2 bad usage or the region cannot be opened
or decoded (the message names the region and the reason; with --json the object still comes,
with "error" set).
)";

[[noreturn]] void Usage(const std::string& error) {
  std::cerr << "shmetrics-inspect: " << error << "\nTry 'shmetrics-inspect --help'.\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace shmetrics;
  std::string region, group;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage("option " + std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--version") {
      // The gateway's format (and the Prometheus exporters'): "NAME, version X (...)".
      std::cout << "shmetrics-inspect, version " << SHMETRICS_VERSION << " (region layout "
                << shm::kLayoutVersion << ")\n";
      return 0;
    } else if (arg == "--region") {
      region = value();
      if (std::string problem = shm::RegionNameProblem(region); !problem.empty()) Usage(problem);
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--group") {
      group = value();
      try {
        shm::ResolveGroup(group);
      } catch (const shm::RegionError& e) {
        Usage(std::string("--group: ") + e.what());
      }
    } else {
      Usage("unknown option '" + std::string(arg) + "'");
    }
  }
  if (region.empty()) Usage("--region NAME is required");

  const gateway::InspectReport report = gateway::Inspect(region, group);
  std::cout << (json ? gateway::RenderJson(report) : gateway::RenderText(report)) << std::flush;
  if (report.error) std::cerr << "shmetrics-inspect: " << *report.error << "\n";
  return gateway::ExitCode(report);
}
