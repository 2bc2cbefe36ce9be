#!/usr/bin/env node
'use strict';
// Node.js write and scrape speed: the shmetrics package beside prom-client, in one run.
//
//   node bench/node_bench.js --package BUILD/bindings/node/node_modules/shmetrics
//                            --node-path BUILD/npm/node_modules
//                            --gateway BUILD/gateway/shmetrics-gateway [--quick] [--rounds N]
//
// Writes, in this process, each library's metrics side by side (label names a and b, values GET
//   and 200, as in bench/python_bench.py): a resolved child's `.inc()`,
//   `.labels('GET', '200').inc()`, `.inc({a: 'GET', b: '200'})`, and a resolved histogram child's
//   `.observe(0.3)` (default buckets). Each statement runs in its own compiled loop, `n` calls per
//   repeat (calibrated to about --target-ms after a warm-up); every round
//   times one repeat of every statement of both libraries, the order of the libraries swapped
//   each round, and ns per call is the median over rounds (the loop's own cost included, as an
//   app pays it). Every call is accounted for afterwards: prom-client's values read with get(),
//   shmetrics' through a real shmetrics-gateway.
// Scrape: --series counters (families of 1000, labels route and code, the shape of the C++ and
//   Python benchmarks) x W workers. shmetrics: W processes (child_process.fork) each write every
//   series once into one region and stay alive; a real shmetrics-gateway on a free loopback port
//   serves it; timed: one GET /metrics (text) on a new connection, request to last byte.
//   prom-client: this process is a node:cluster primary of W workers holding the same series;
//   timed: `new AggregatorRegistry().clusterMetrics()`. Both run in alternated rounds; both
//   bodies must show every series equal to W. Then, at the largest W, --dead more shmetrics
//   workers write every series and exit, the gateway folds them (shmetrics_writers_folded_total),
//   and the same scrape is timed again: its cost must not grow with the workers that died.
//
// Prints a table, then `RATIO <name> <value>` lines (`n/a` for what did not run), which
// bench/report_ratios.py checks against the targets. Exit 2 when prom-client, the package or the
// gateway cannot be found; 1 when a check fails.

const childProcess = require('node:child_process');
const cluster = require('node:cluster');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const SERIES_PER_FAMILY = 1000;
const OBSERVED = 0.3;
const STARTUP_MS = 60000; // a worker that has not written its series by then is stuck
const FOLD_WAIT_MS = 30000;
const OVERALL_MS = 300000; // the whole run, whatever hangs

const OPS = [
  {key: 'child_inc', title: 'child .inc()', stmt: 'm.child.inc()'},
  {key: 'labels_inc', title: ".labels('GET', '200').inc()",
   stmt: "m.labelled.labels('GET', '200').inc()"},
  {key: 'object_inc', title: ".inc({a: 'GET', b: '200'})", stmt: "m.object.inc({a: 'GET', b: '200'})"},
  {key: 'histogram_observe', title: 'histogram .observe()', stmt: `m.histogram.observe(${OBSERVED})`},
];
const LIBS = ['prom_client', 'shmetrics'];
const LIB_TITLES = {prom_client: 'prom-client', shmetrics: 'shmetrics'};

const familyName = (f) => `bench_requests_${f}_total`;
const route = (i) => `/api/v1/resource/${i}`;

function log(message) {
  process.stderr.write(`node_bench: ${message}\n`);
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// --- Child processes: the two kinds of scrape workers ------------------------------------------

// Every series of the scrape shape incremented once through `Counter`: what each worker holds.
function writeScrapeSeries(Counter, series) {
  const families = [];
  for (let f = 0; f * SERIES_PER_FAMILY < series; ++f) {
    families.push(new Counter({name: familyName(f), help: `Requests handled by route group ${f}.`,
                               labelNames: ['route', 'code']}));
  }
  for (let i = 0; i < series; ++i) families[Math.floor(i / SERIES_PER_FAMILY)].labels(route(i), '200').inc();
}

function childMain(spec) {
  // A worker never outlives the bench: the IPC channel closes when the bench exits or lets it go.
  process.on('disconnect', () => process.exit(0));
  if (spec.role === 'shmetrics') {
    const client = require(spec.shmetrics);
    client.attach(spec.region);
    writeScrapeSeries(client.Counter, spec.series);
  } else {
    const client = require(spec.promClient);
    // A worker answers the primary's requests only once an AggregatorRegistry exists in it:
    // prom-client adds its IPC listener in that constructor.
    new client.AggregatorRegistry();
    writeScrapeSeries(client.Counter, spec.series);
  }
  // A worker that is to die exits once the bench knows it wrote; the others stay alive.
  process.send('written', () => { if (!spec.stay) process.exit(0); });
}

// --- Processes this run started, reaped whatever happens ---------------------------------------

const running = new Set(); // ChildProcess objects: gateways (own process group) and workers
const regions = new Set();

function killEverything() {
  for (const child of running) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    try {
      process.kill(child.groupLeader ? -child.pid : child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const region of regions) fs.rmSync(`/dev/shm/${region}`, {force: true});
}

function track(child, groupLeader = false) {
  child.groupLeader = groupLeader;
  running.add(child);
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    running.delete(child);
    resolve({code, signal});
  }));
  return child;
}

// Lets a worker go (its IPC channel closed) and waits for it; SIGKILL after 10 s.
async function stopWorker(child) {
  if (child.exitCode === null && child.signalCode === null && child.connected) child.disconnect();
  await withTimeout(child.exited, 10000, `worker ${child.pid} exiting`).catch(() => {
    child.kill('SIGKILL');
    return child.exited;
  });
}

function waitWritten(children, what) {
  return withTimeout(Promise.all(children.map((child) => new Promise((resolve, reject) => {
    child.once('message', (m) => (m === 'written' ? resolve() : reject(new Error(`${what}: ${m}`))));
    child.once('exit', (code, signal) => reject(new Error(
        `${what}: worker ${child.pid} exited (${signal || code}) before writing its series`)));
  }))), STARTUP_MS, what);
}

// --- The gateway -------------------------------------------------------------------------------

function httpGet(port, urlPath) {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const req = http.get({host: '127.0.0.1', port, path: urlPath, agent: false, timeout: 30000,
                          headers: {Accept: 'text/plain;version=0.0.4'}}, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const seconds = Number(process.hrtime.bigint() - start) / 1e9;
        const body = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) {
          reject(new Error(`shmetrics-gateway answered ${res.statusCode}: ${body.slice(0, 200)}`));
        } else {
          resolve({seconds, body});
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} timed out`)));
    req.on('error', reject);
  });
}

class Gateway {
  // shmetrics-gateway serving `region` on a free loopback port (it picks one: --listen :0).
  static async start(binary, region, extraArgs = []) {
    const gateway = new Gateway();
    regions.add(region);
    gateway.log = '';
    gateway.process = track(childProcess.spawn(
        binary, ['--region', region, '--listen', '127.0.0.1:0', ...extraArgs],
        {stdio: ['ignore', 'pipe', 'pipe'], detached: true}), true);
    const seen = new Promise((resolve, reject) => {
      const onData = (data) => {
        gateway.log += data;
        const found = /http:\/\/127\.0\.0\.1:([0-9]+)\/metrics/.exec(gateway.log);
        if (found) resolve(Number(found[1]));
      };
      gateway.process.stdout.on('data', onData);
      gateway.process.stderr.on('data', onData);
      gateway.process.once('exit', (code, signal) => reject(new Error(
          `${binary} exited (${signal || code}): ${gateway.log.trim()}`)));
      gateway.process.once('error', reject);
    });
    gateway.port = await withTimeout(seen, 10000, `${binary} starting`);
    return gateway;
  }

  get() {
    return httpGet(this.port, '/metrics');
  }

  // Scrapes until predicate(body) holds; returns that body.
  async waitFor(predicate, what) {
    const deadline = Date.now() + FOLD_WAIT_MS;
    for (;;) {
      const {body} = await this.get();
      if (predicate(body)) return body;
      if (Date.now() > deadline) {
        const own = body.split('\n').filter((l) => l.startsWith('shmetrics_')).join('\n');
        throw new Error(`shmetrics-gateway: ${what} not seen within ${FOLD_WAIT_MS / 1000} s; ` +
                        `it serves:\n${own}`);
      }
      await sleep(50);
    }
  }

  async stop() {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill('SIGTERM');
    }
    await withTimeout(this.process.exited, 10000, 'shmetrics-gateway stopping').catch(() => {
      process.kill(-this.process.pid, 'SIGKILL');
      return this.process.exited;
    });
  }
}

// {'name{labels}': value} of a text exposition.
function samples(body) {
  const out = {};
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    out[line.slice(0, cut)] = Number(line.slice(cut + 1));
  }
  return out;
}

// Every series of the scrape shape, and nothing more, equals `expected` in `body`.
function checkScrapeBody(body, series, expected, who) {
  let count = 0;
  for (const [name, value] of Object.entries(samples(body))) {
    if (!name.startsWith('bench_requests_')) continue;
    count += 1;
    if (value !== expected) {
      throw new Error(`${who} serves ${name} = ${value}, expected ${expected} (one increment ` +
                      'per worker)');
    }
  }
  if (count !== series) throw new Error(`${who} serves ${count} series, expected ${series}`);
}

// --- Writes ------------------------------------------------------------------------------------

// Each statement gets a loop compiled on its own, so V8's type feedback at its call site sees
// one library only (one shared loop taking a callback would go polymorphic and time both badly).
function compileLoop(stmt) {
  return new Function('m', 'n', `for (let i = 0; i < n; i++) ${stmt};`);
}

function writeTargets(lib, client) {
  const labelled = new client.Counter({name: 'bench_labels_total', help: 'Increments through labels().',
                                       labelNames: ['a', 'b']});
  labelled.labels('GET', '200'); // a child seen before, as in a request handler
  const object = new client.Counter({name: 'bench_object_total', help: 'Increments with a labels object.',
                                     labelNames: ['a', 'b']});
  object.inc({a: 'GET', b: '200'}, 0);
  const child = new client.Counter({name: 'bench_child_total', help: 'Increments of a child.',
                                    labelNames: ['a', 'b']});
  const histogram = new client.Histogram({name: 'bench_latency_seconds', help: 'Observations.',
                                          labelNames: ['a', 'b']});
  return {
    lib,
    metrics: {labelled, object, childFamily: child, histogramFamily: histogram},
    namespace: {child: child.labels('GET', '200'), labelled, object,
                histogram: histogram.labels('GET', '200')},
  };
}

function timeRepeat(loop, namespace, n) {
  const start = process.hrtime.bigint();
  loop(namespace, n);
  return Number(process.hrtime.bigint() - start);
}

async function measureWrites(args, deps) {
  const region = `shmetrics-bench-node-${process.pid}-writes`;
  const gateway = await Gateway.start(args.gateway, region);
  try {
    const shmetrics = require(deps.shmetrics);
    shmetrics.attach(region);
    const targets = [writeTargets('prom_client', require(deps.promClient)),
                     writeTargets('shmetrics', shmetrics)];
    const calls = {};
    const runs = [];
    for (const target of targets) {
      calls[target.lib] = {};
      for (const op of OPS) {
        const run = {lib: target.lib, op: op.key, loop: compileLoop(op.stmt), ns: []};
        calls[target.lib][op.key] = 0;
        const timed = (n) => {
          calls[target.lib][op.key] += n;
          return timeRepeat(run.loop, target.namespace, n);
        };
        // Warm-up and calibration: grow n until a repeat is long enough to scale from.
        let n = 1000;
        let elapsed = timed(n);
        while (elapsed < args.targetMs * 1e6 / 10) {
          n *= 4;
          elapsed = timed(n);
        }
        run.n = Math.max(1, Math.round(n * args.targetMs * 1e6 / elapsed));
        timed(run.n);
        run.timed = timed;
        runs.push(run);
      }
    }
    for (let r = 0; r < args.rounds; ++r) {
      for (const op of OPS) {
        const pair = runs.filter((run) => run.op === op.key);
        if (r % 2) pair.reverse();
        for (const run of pair) run.ns.push(run.timed(run.n) / run.n);
      }
    }
    await verifyWrites(targets, calls, gateway);
    const result = {};
    for (const lib of LIBS) result[lib] = {};
    for (const run of runs) result[run.lib][run.op] = median(run.ns);
    return result;
  } finally {
    await gateway.stop();
    fs.rmSync(`/dev/shm/${region}`, {force: true});
  }
}

// {sample: value} the calls of `calls` must leave behind.
function expectedWrites(calls) {
  return {
    'bench_child_total{a="GET",b="200"}': calls.child_inc,
    'bench_labels_total{a="GET",b="200"}': calls.labels_inc,
    'bench_object_total{a="GET",b="200"}': calls.object_inc,
    'bench_latency_seconds_count{a="GET",b="200"}': calls.histogram_observe,
    'bench_latency_seconds_sum{a="GET",b="200"}': calls.histogram_observe * OBSERVED,
  };
}

async function verifyWrites(targets, calls, gateway) {
  for (const target of targets) {
    let held;
    if (target.lib === 'prom_client') {
      held = {};
      for (const metric of Object.values(target.metrics)) {
        for (const v of (await metric.get()).values) {
          const labels = Object.entries(v.labels).filter(([k]) => k !== 'le')
                             .map(([k, x]) => `${k}="${x}"`).join(',');
          held[`${v.metricName || metric.name}{${labels}}`] = v.value;
        }
      }
    } else {
      held = samples((await gateway.get()).body);
    }
    for (const [name, want] of Object.entries(expectedWrites(calls[target.lib]))) {
      const got = held[name];
      // Exact counts; the sum adds 0.3 millions of times, so within rounding.
      if (got === undefined || Math.abs(got - want) > 1e-6 * Math.max(1, want)) {
        throw new Error(`${LIB_TITLES[target.lib]} holds ${name} = ${got}, expected ${want} ` +
                        'from the calls made');
      }
    }
  }
}

// --- Scrape ------------------------------------------------------------------------------------

function forkShmetricsWorkers(count, spec) {
  const children = [];
  for (let i = 0; i < count; ++i) {
    children.push(track(childProcess.fork(__filename, [], {
      env: {...process.env, SHMETRICS_BENCH_CHILD: JSON.stringify({role: 'shmetrics', ...spec})},
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })));
  }
  return children;
}

function forkPromClientWorkers(count, spec) {
  cluster.setupPrimary({exec: __filename, args: [], silent: false});
  const children = [];
  for (let i = 0; i < count; ++i) {
    const worker = cluster.fork({SHMETRICS_BENCH_CHILD: JSON.stringify({role: 'prom_client', ...spec})});
    track(worker.process);
    children.push(worker.process);
  }
  return children;
}

// A region for `series` counters x `writers` at once: 8-byte cells in 4 KiB pages, the
// gateway's two accumulator banks, and 16 MiB for the registry and strings.
function regionBytes(series, writers) {
  const pages = Math.ceil(series / 512);
  return Math.max(32 << 20, (writers + 2) * pages * 4096 + (16 << 20));
}

async function gatewayScrapes(gateway, count) {
  const times = [];
  let body = '';
  for (let i = 0; i < count; ++i) {
    const got = await gateway.get();
    times.push(got.seconds);
    body = got.body;
  }
  return {times, body};
}

async function measureScrape(args, deps, workers, dead) {
  const region = `shmetrics-bench-node-${process.pid}-scrape-${workers}`;
  const {series} = args;
  const gateway = await Gateway.start(args.gateway, region,
                                      ['--size', String(regionBytes(series, workers + args.deadBatch))]);
  const live = [];
  const result = {series, workers};
  try {
    const begun = Date.now();
    const spec = {shmetrics: deps.shmetrics, promClient: deps.promClient, region, series, stay: true};
    const shmetricsWorkers = forkShmetricsWorkers(workers, spec);
    const promWorkers = forkPromClientWorkers(workers, spec);
    live.push(...shmetricsWorkers, ...promWorkers);
    await waitWritten(live, `${workers} + ${workers} scrape workers`);
    log(`scrape: ${series} series written by ${workers} shmetrics and ${workers} prom-client ` +
        `workers in ${((Date.now() - begun) / 1000).toFixed(1)} s`);

    const aggregator = new (require(deps.promClient).AggregatorRegistry)();
    const promTimes = [];
    const gatewayTimes = [];
    let promBody = '';
    let gatewayBody = '';
    for (let r = 0; r < args.scrapeRounds; ++r) {
      const timePromClient = async () => {
        const start = process.hrtime.bigint();
        promBody = await aggregator.clusterMetrics();
        promTimes.push(Number(process.hrtime.bigint() - start) / 1e9);
      };
      const timeGateway = async () => {
        const got = await gatewayScrapes(gateway, args.gatewayScrapes);
        gatewayTimes.push(...got.times);
        gatewayBody = got.body;
      };
      if (r % 2) {
        await timeGateway();
        await timePromClient();
      } else {
        await timePromClient();
        await timeGateway();
      }
    }
    checkScrapeBody(promBody, series, workers, 'prom-client AggregatorRegistry');
    checkScrapeBody(gatewayBody, series, workers, 'shmetrics-gateway');
    Object.assign(result, {
      promSeconds: median(promTimes), gatewaySeconds: median(gatewayTimes),
      promBytes: Buffer.byteLength(promBody), gatewayBytes: Buffer.byteLength(gatewayBody),
    });
    await Promise.all(promWorkers.map(stopWorker));

    if (dead > 0) {
      // Alone on the machine now: the scrape before and after `dead` workers came and went. The
      // first GETs after the prom-client workers exited are not kept.
      await gatewayScrapes(gateway, args.gatewayScrapes);
      const before = await gatewayScrapes(gateway, args.scrapeRounds * args.gatewayScrapes);
      const folded = Date.now();
      for (let done = 0; done < dead;) {
        const batch = Math.min(args.deadBatch, dead - done);
        const doomed = forkShmetricsWorkers(batch, {...spec, stay: false});
        await waitWritten(doomed, `${batch} workers about to exit`);
        for (const child of doomed) {
          const {code, signal} = await withTimeout(child.exited, 10000, `worker ${child.pid}`);
          if (code !== 0) throw new Error(`a worker about to exit failed (${signal || code})`);
        }
        done += batch;
        const pattern = new RegExp(`^shmetrics_writers_folded_total ${done}$`, 'm');
        await gateway.waitFor((b) => pattern.test(b), `shmetrics_writers_folded_total ${done}`);
      }
      log(`scrape: ${dead} dead workers folded in ${((Date.now() - folded) / 1000).toFixed(1)} s`);
      const after = await gatewayScrapes(gateway, args.scrapeRounds * args.gatewayScrapes);
      checkScrapeBody(after.body, series, workers + dead, 'shmetrics-gateway after the dead workers');
      Object.assign(result, {dead, beforeSeconds: median(before.times),
                             afterSeconds: median(after.times)});
    }
    return result;
  } finally {
    await Promise.all(live.map(stopWorker));
    await gateway.stop();
    fs.rmSync(`/dev/shm/${region}`, {force: true});
  }
}

// --- Report ------------------------------------------------------------------------------------

const fixed = (v, digits) => (v === undefined || v === null ? 'n/a' : v.toFixed(digits));

function report(args, deps, writes, scrapes) {
  console.log(`ns per call, median of ${args.rounds} alternated rounds, loop included ` +
              `(prom-client ${deps.promClientVersion}, Node ${process.version})`);
  console.log('operation'.padEnd(28) + 'prom-client'.padStart(14) + 'shmetrics'.padStart(14) +
              'ratio'.padStart(10));
  const ratios = [];
  for (const op of OPS) {
    const a = writes.prom_client[op.key];
    const b = writes.shmetrics[op.key];
    console.log(op.title.padEnd(28) + fixed(a, 1).padStart(14) + fixed(b, 1).padStart(14) +
                fixed(a / b, 2).padStart(10));
    ratios.push([`node_prom_client_${op.key}_over_shmetrics`, a / b]);
  }
  for (const s of scrapes) {
    console.log(`scrape ${s.series} series x ${s.workers} workers, medians: prom-client ` +
                `AggregatorRegistry.clusterMetrics() ${fixed(s.promSeconds * 1e3, 1)} ms ` +
                `(${s.promBytes} B), shmetrics-gateway GET /metrics ` +
                `${fixed(s.gatewaySeconds * 1e3, 3)} ms (${s.gatewayBytes} B)`);
    ratios.push([`node_scrape_prom_client_over_gateway_${s.series}_${s.workers}`,
                 s.promSeconds / s.gatewaySeconds]);
  }
  const last = scrapes[scrapes.length - 1];
  if (last.dead) {
    console.log(`scrape ${last.series} series x ${last.workers} live workers, median GET /metrics: ` +
                `${fixed(last.beforeSeconds * 1e3, 3)} ms with no dead workers, ` +
                `${fixed(last.afterSeconds * 1e3, 3)} ms after ${last.dead} wrote and exited`);
  }
  ratios.push([`node_scrape_dead${args.dead}_over_dead0_${last.series}_${last.workers}`,
               last.dead ? last.afterSeconds / last.beforeSeconds : null]);
  for (const [name, value] of ratios) {
    console.log(`RATIO ${name} ${value === null || !Number.isFinite(value) ? 'n/a' : value.toFixed(3)}`);
  }
}

// --- Arguments and dependencies ----------------------------------------------------------------

const USAGE = `Usage: node bench/node_bench.js [options]

  --package DIR        the shmetrics package (BUILD/bindings/node/node_modules/shmetrics);
                       default: 'shmetrics' found through NODE_PATH
  --node-path DIR      a node_modules directory holding prom-client (BUILD/npm/node_modules);
                       default: NODE_PATH
  --gateway BIN        the shmetrics-gateway binary (required)
  --quick              small and short: a smoke run of every step
  --rounds N           alternated write rounds (median of; default 11)
  --target-ms MS       length of one timed repeat of one statement (default 50)
  --series N           scrape: counter series (default 10000)
  --workers N,N        scrape: worker counts (default 4,16)
  --scrape-rounds N    scrape rounds: one clusterMetrics() and --gateway-scrapes GETs each (default 9)
  --gateway-scrapes N  GETs per scrape round (default 10)
  --dead N             workers that write and exit at the largest worker count (default 64; 0: skip)
  --dead-batch N       of those, how many run at once (default 16)
  --help               this text
`;

function usageError(message) {
  process.stderr.write(`node_bench: error: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function missing(message) {
  process.stderr.write(`node_bench: error: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = {rounds: 11, targetMs: 50, series: 10000, workers: [4, 16], scrapeRounds: 9,
                gatewayScrapes: 10, dead: 64, deadBatch: 16, quick: false};
  const given = new Set();
  const positive = (flag, text, min = 1) => {
    const v = Number(text);
    if (!Number.isInteger(v) || v < min) usageError(`${flag} needs an integer >= ${min}, got '${text}'`);
    return v;
  };
  for (let i = 0; i < argv.length; ++i) {
    const flag = argv[i];
    if (flag === '--help' || flag === '-h') {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    if (flag === '--quick') {
      args.quick = true;
      continue;
    }
    if (i + 1 >= argv.length) usageError(`${flag} needs a value`);
    const value = argv[++i];
    given.add(flag);
    switch (flag) {
      case '--package': args.package = value; break;
      case '--node-path': args.nodePath = value; break;
      case '--gateway': args.gateway = value; break;
      case '--rounds': args.rounds = positive(flag, value); break;
      case '--target-ms': args.targetMs = positive(flag, value); break;
      case '--series': args.series = positive(flag, value); break;
      case '--workers': args.workers = value.split(',').map((w) => positive(flag, w)); break;
      case '--scrape-rounds': args.scrapeRounds = positive(flag, value); break;
      case '--gateway-scrapes': args.gatewayScrapes = positive(flag, value); break;
      case '--dead': args.dead = positive(flag, value, 0); break;
      case '--dead-batch': args.deadBatch = positive(flag, value); break;
      default: usageError(`unknown argument '${flag}'`);
    }
  }
  if (args.quick) { // what was not given explicitly
    const quick = {'--rounds': ['rounds', 3], '--target-ms': ['targetMs', 5],
                   '--series': ['series', 1000], '--workers': ['workers', [2]],
                   '--scrape-rounds': ['scrapeRounds', 2], '--gateway-scrapes': ['gatewayScrapes', 3],
                   '--dead': ['dead', 4], '--dead-batch': ['deadBatch', 4]};
    for (const [flag, [key, value]] of Object.entries(quick)) if (!given.has(flag)) args[key] = value;
  }
  args.workers.sort((a, b) => a - b);
  return args;
}

// The directory of package `name` (its package.json names it): `dir` itself or dir/name, else
// the first NODE_PATH entry holding it; null when none does.
function findPackage(name, dir) {
  const candidates = dir ? [dir, path.join(dir, name)]
                         : (process.env.NODE_PATH || '').split(path.delimiter).filter(Boolean)
                               .map((d) => path.join(d, name));
  for (const candidate of candidates) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(candidate, 'package.json'), 'utf8'));
      if (pkg.name === name) return {dir: path.resolve(candidate), version: pkg.version};
    } catch {
      // not here
    }
  }
  return null;
}

function resolveDependencies(args) {
  const promClient = findPackage('prom-client', args.nodePath);
  if (!promClient) {
    missing(`prom-client not found in ${args.nodePath ? `--node-path ${args.nodePath}` :
                                           `NODE_PATH '${process.env.NODE_PATH || ''}'`} ` +
               '(scripts/bench installs it into BUILD/npm/node_modules)');
  }
  const shmetrics = findPackage('shmetrics', args.package);
  if (!shmetrics) {
    missing(`the shmetrics package not found in ${args.package ? `--package ${args.package}` :
                                                     `NODE_PATH '${process.env.NODE_PATH || ''}'`} ` +
               '(build it: BUILD/bindings/node/node_modules/shmetrics)');
  }
  if (!args.gateway) usageError('--gateway BIN is required');
  try {
    fs.accessSync(args.gateway, fs.constants.X_OK);
  } catch {
    missing(`--gateway '${args.gateway}' is not an executable shmetrics-gateway`);
  }
  args.gateway = path.resolve(args.gateway);
  return {promClient: promClient.dir, promClientVersion: promClient.version, shmetrics: shmetrics.dir};
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const deps = resolveDependencies(args);
  process.on('exit', killEverything);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      log(`${signal}: stopping`);
      process.exit(1);
    });
  }
  setTimeout(() => {
    log(`error: the run took longer than ${OVERALL_MS / 1000} s`);
    process.exit(1);
  }, OVERALL_MS).unref();

  const begun = Date.now();
  const writes = await measureWrites(args, deps);
  log(`writes measured in ${((Date.now() - begun) / 1000).toFixed(1)} s`);
  const scrapes = [];
  const largest = args.workers[args.workers.length - 1];
  for (const workers of args.workers) {
    scrapes.push(await measureScrape(args, deps, workers, workers === largest ? args.dead : 0));
  }
  report(args, deps, writes, scrapes);
  log(`${((Date.now() - begun) / 1000).toFixed(1)} s`);
}

if (process.env.SHMETRICS_BENCH_CHILD) {
  childMain(JSON.parse(process.env.SHMETRICS_BENCH_CHILD));
} else {
  main().then(() => process.exit(0), (e) => {
    log(`error: ${e.message}`);
    process.exit(1);
  });
}
