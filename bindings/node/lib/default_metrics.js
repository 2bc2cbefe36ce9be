'use strict';
// collectDefaultMetrics(): prom-client's default process and Node.js metrics, as far as their
// merge over workers means something. Counters (CPU seconds, GC time) are summed and keep a dead
// worker's share; sizes are summed over live workers (`livesum`); the start time is the oldest
// live worker's (`livemin`); event-loop lag is the worst live worker's (`livemax`). Values are
// taken when collectDefaultMetrics() is called and then every `intervalMs` (prom-client takes them
// at each scrape, which a region read by the gateway has no hook for).

const fs = require('node:fs');
const perfHooks = require('node:perf_hooks');

const DEFAULT_GC_BUCKETS = [0.001, 0.01, 0.1, 1, 2, 5];
const DEFAULT_INTERVAL_MS = 5000;

// /proc/self/status in bytes: VmRSS, VmSize, VmData (prom-client's resident, virtual and heap).
function procStatus() {
  const out = {};
  for (const line of fs.readFileSync('/proc/self/status', 'utf8').split('\n')) {
    const m = /^(VmRSS|VmSize|VmData):\s+(\d+) kB/.exec(line);
    if (m) out[m[1]] = Number(m[2]) * 1024;
  }
  return out;
}

function openFds() {
  return fs.readdirSync('/proc/self/fd').length - 1;  // less the one readdir opened
}

function collectDefaultMetrics(client, config = {}) {
  const prefix = config.prefix || '';
  const labels = config.labels || {};
  const labelNames = Object.keys(labels);
  const registers = config.register ? [config.register] : undefined;
  const intervalMs = config.intervalMs === undefined ? DEFAULT_INTERVAL_MS : config.intervalMs;
  if (!(Number.isInteger(intervalMs) && intervalMs >= 100)) {
    throw new Error(`shmetrics: collectDefaultMetrics: intervalMs ${intervalMs} must be an ` +
                    'integer of at least 100');
  }
  const make = (Type, name, help, {labelNames: more = [], ...options} = {}) =>
    new Type({name: prefix + name, help, labelNames: [...labelNames, ...more], registers,
              ...options});

  const cpuUser = make(client.Counter, 'process_cpu_user_seconds_total',
                       'Total user CPU time spent in seconds.').labels(labels);
  const cpuSystem = make(client.Counter, 'process_cpu_system_seconds_total',
                         'Total system CPU time spent in seconds.').labels(labels);
  const cpuTotal = make(client.Counter, 'process_cpu_seconds_total',
                        'Total user and system CPU time spent in seconds.').labels(labels);
  const startTime = make(client.Gauge, 'process_start_time_seconds',
                         'Start time of the oldest live worker since unix epoch in seconds.',
                         {mode: 'livemin'}).labels(labels);
  const sized = (name, help) => make(client.Gauge, name, help, {mode: 'livesum'}).labels(labels);
  const resident = sized('process_resident_memory_bytes', 'Resident memory size in bytes.');
  const virtual = sized('process_virtual_memory_bytes', 'Virtual memory size in bytes.');
  const heap = sized('process_heap_bytes', 'Process heap size in bytes.');
  const fds = sized('process_open_fds', 'Number of open file descriptors.');
  const heapTotal = sized('nodejs_heap_size_total_bytes',
                          'Process heap size from Node.js in bytes.');
  const heapUsed = sized('nodejs_heap_size_used_bytes',
                         'Process heap size used from Node.js in bytes.');
  const external = sized('nodejs_external_memory_bytes',
                         'Node.js external memory size in bytes.');
  const resources = sized('nodejs_active_resources_total',
                          'Number of active resources keeping the event loop alive.');
  const lagMean = make(client.Gauge, 'nodejs_eventloop_lag_mean_seconds',
                       'Mean event loop lag of the worst live worker in seconds.',
                       {mode: 'livemax'}).labels(labels);
  const lagMax = make(client.Gauge, 'nodejs_eventloop_lag_max_seconds',
                      'Largest event loop lag of the worst live worker in seconds.',
                      {mode: 'livemax'}).labels(labels);
  const [major, minor, patch] = process.versions.node.split('.');
  make(client.Gauge, 'nodejs_version_info', 'Node.js version info.',
       {mode: 'livemax', labelNames: ['version', 'major', 'minor', 'patch']})
      .set({...labels, version: process.version, major, minor, patch}, 1);
  const gc = make(client.Histogram, 'nodejs_gc_duration_seconds',
                  'Garbage collection duration by kind, one of major, minor, incremental or ' +
                  'weakcb.',
                  {labelNames: ['kind'], buckets: config.gcDurationBuckets || DEFAULT_GC_BUCKETS});

  const gcKinds = {
    [perfHooks.constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
    [perfHooks.constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
    [perfHooks.constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
    [perfHooks.constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
  };
  const gcChildren = {};
  for (const kind of Object.values(gcKinds)) gcChildren[kind] = gc.labels({...labels, kind});
  new perfHooks.PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const child = gcChildren[gcKinds[(entry.detail || entry).kind]];  // .kind before Node 16
      if (child) child.observe(entry.duration / 1000);
    }
  }).observe({entryTypes: ['gc']});

  const lag =
      perfHooks.monitorEventLoopDelay({resolution: config.eventLoopMonitoringPrecision || 10});
  lag.enable();

  startTime.set(Math.round(Date.now() / 1000 - process.uptime()));
  let lastCpu = {user: 0, system: 0};
  const update = () => {
    const cpu = process.cpuUsage();  // microseconds since start
    const user = (cpu.user - lastCpu.user) / 1e6;
    const system = (cpu.system - lastCpu.system) / 1e6;
    lastCpu = cpu;
    cpuUser.inc(user);
    cpuSystem.inc(system);
    cpuTotal.inc(user + system);
    const status = procStatus();
    resident.set(status.VmRSS || 0);
    virtual.set(status.VmSize || 0);
    heap.set(status.VmData || 0);
    fds.set(openFds());
    const memory = process.memoryUsage();
    heapTotal.set(memory.heapTotal);
    heapUsed.set(memory.heapUsed);
    external.set(memory.external);
    if (process.getActiveResourcesInfo) resources.set(process.getActiveResourcesInfo().length);
    if (lag.count > 0) {
      lagMean.set(lag.mean / 1e9);
      lagMax.set(lag.max / 1e9);
    }
    lag.reset();
  };
  update();
  setInterval(update, intervalMs).unref();
}

module.exports = {collectDefaultMetrics};
