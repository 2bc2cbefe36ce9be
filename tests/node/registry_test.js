'use strict';
// register.metrics() and contentType (the region as the gateway serves it, for an app's own
// /metrics route), other registries, the calls a shared region refuses, and install() / -r
// shmetrics/register, which hand code that requires 'prom-client' this package instead.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const {after, before, test} = require('node:test');

const support = require('./support');

const region = support.uniqueRegion('registry');
const otherRegion = support.uniqueRegion('registry-other');
let gateway;
let otherGateway;
let client;

before(async () => {
  gateway = await support.Gateway.start(region);
  otherGateway = await support.Gateway.start(otherRegion);
  process.env.SHMETRICS_REGION = region;
  process.env.SHMETRICS_GATEWAY_URL = `http://127.0.0.1:${gateway.port}/metrics`;
  client = require(process.env.SHMETRICS_NODE_PACKAGE);
});

after(() => {
  gateway.stop();
  otherGateway.stop();
  support.removeRegion(region);
  support.removeRegion(otherRegion);
});

// Runs `code` in a new node process with this test's environment (plus `env`); returns it.
function node(args, code, env = {}) {
  const r = childProcess.spawnSync(process.execPath, [...args, '-e', code],
                                   {env: {...process.env, ...env}, timeout: 30000});
  assert.equal(r.error, undefined);
  return r;
}

test('register.metrics() is the whole region merged, with prom-client\'s content types',
     async () => {
  const promClient = support.requirePeer('prom-client');
  assert.equal(client.register.contentType, promClient.register.contentType);
  assert.equal(client.Registry.OPENMETRICS_CONTENT_TYPE,
               promClient.Registry.OPENMETRICS_CONTENT_TYPE);
  assert.equal(client.prometheusContentType, promClient.prometheusContentType);

  const jobs = new client.Counter({name: 'registry_jobs_total', help: 'Jobs.', labelNames: ['q']});
  jobs.inc({q: 'a'}, 2);
  // Another worker adds to the same series: metrics() shows the sum, not this process's share.
  const other = node([], `
    const c = require(process.env.SHMETRICS_NODE_PACKAGE);
    new c.Counter({name: 'registry_jobs_total', help: 'Jobs.', labelNames: ['q']})
        .inc({q: 'a'}, 5);`);
  assert.equal(other.status, 0, String(other.stderr));

  const body = await client.register.metrics();
  assert.equal(support.parse(body)['registry_jobs_total{q="a"}'], 7);
  assert.equal((body.match(/^# TYPE registry_jobs_total counter$/gm) || []).length, 1);
  assert.match(body, /^shmetrics_/m, 'the gateway\'s own families are part of the region\'s view');

  const openMetrics = new client.Registry(client.openMetricsContentType);
  assert.equal(openMetrics.contentType, promClient.openMetricsContentType);
  new client.Gauge({name: 'registry_depth', help: 'Depth.', registers: [openMetrics]}).set(3);
  const om = await openMetrics.metrics();
  assert.equal(om, '# TYPE registry_depth gauge\n# HELP registry_depth Depth.\n' +
                   'registry_depth 3.0\n# EOF\n');
  assert.doesNotMatch(om, /registry_jobs/, 'another registry shows only its own families');
  assert.equal(openMetrics.getSingleMetric('registry_depth').name, 'registry_depth');
  assert.equal(client.register.getSingleMetric('registry_depth'), undefined);
  assert.throws(() => openMetrics.setContentType('text/html'),
                /Content type text\/html is unsupported/);
});

test('register.metrics() rejects naming the URL: another region\'s gateway, none, a bad URL',
     async () => {
  const url = `http://127.0.0.1:${otherGateway.port}/metrics`;
  client.attach(region, {gatewayUrl: url});
  try {
    await assert.rejects(client.register.metrics(), (e) => {
      assert.match(e.message,
                   new RegExp(`${url}.*region '${region}'.*serves region '${otherRegion}'`));
      return true;
    });
    const closed = `http://127.0.0.1:${await support.freePort()}/metrics`;
    client.attach(region, {gatewayUrl: closed});
    await assert.rejects(client.register.metrics(),
                         new RegExp(`no exposition from the gateway at ${closed}.*ECONNREFUSED`));
    assert.throws(() => client.attach(region, {gatewayUrl: 'ftp://x/metrics'}),
                  /gatewayUrl 'ftp:\/\/x\/metrics' must be an http: or https: URL/);
    assert.throws(() => client.attach(region, {gatewayUrl: 'not a url'}), /is not a URL/);
  } finally {
    client.attach(region, {gatewayUrl: `http://127.0.0.1:${gateway.port}/metrics`});
  }
  assert.ok((await client.register.metrics()).length > 0);
});

test('what a shared region cannot do is refused, saying why', () => {
  const why = /cannot be removed or reset: they are summed over every worker/;
  assert.throws(() => client.register.clear(), why);
  assert.throws(() => client.register.resetMetrics(), why);
  assert.throws(() => client.register.removeSingleMetric('registry_jobs_total'), why);
});

test('install(): require(\'prom-client\') is this package, and code written for it counts',
     async () => {
  const r = node([], `
    const shmetrics = require(process.env.SHMETRICS_NODE_PACKAGE);
    shmetrics.install();
    shmetrics.install();  // idempotent
    const promClient = require('prom-client');
    if (promClient !== shmetrics) throw new Error('prom-client is not shmetrics');
    // express-prom-bundle requires prom-client itself and registers its histogram and 'up'.
    const bundle = require('express-prom-bundle')({includeMethod: true, buckets: [0.1, 1]});
    bundle.metrics.http_request_duration_seconds.observe({status_code: '200', method: 'GET'},
                                                         0.05);`);
  assert.equal(r.status, 0, String(r.stderr));
  const s = await gateway.samples();
  assert.equal(
      s['http_request_duration_seconds_bucket{status_code="200",method="GET",le="0.1"}'], 1);
  assert.equal(s['up'], 0, 'express-prom-bundle\'s up gauge (aggregator sum) left with its worker');
});

test('install() after prom-client was loaded is refused, naming it', () => {
  const r = node([], `
    require('prom-client');
    require(process.env.SHMETRICS_NODE_PACKAGE).install();`);
  assert.notEqual(r.status, 0);
  assert.match(String(r.stderr),
               new RegExp('install\\(\\): prom-client is already loaded ' +
                          '\\(.*/node_modules/prom-client/index\\.js\\)'));
});

test('node -r shmetrics/register: the app\'s own require(\'prom-client\') writes into the region',
     async () => {
  const r = node(['-r', 'shmetrics/register'], `
    const promClient = require('prom-client');
    new promClient.Counter({name: 'registry_preloaded', help: 'x'}).inc(4);`);
  assert.equal(r.status, 0, String(r.stderr));
  assert.equal((await gateway.samples())['registry_preloaded_total'], 4);
});

test('collectDefaultMetrics(): process and Node.js metrics, summed or kept as workers merge',
     async () => {
  // A worker with default metrics (and a GC forced) that lives until the scrape is done.
  const worker = childProcess.spawn(process.execPath, ['--expose-gc', '-e', `
    const c = require(process.env.SHMETRICS_NODE_PACKAGE);
    c.collectDefaultMetrics({prefix: 'dm_', labels: {app: 'x'}, intervalMs: 100});
    global.gc();
    setTimeout(() => console.log(JSON.stringify({rss: process.memoryUsage().rss,
                                                 cpu: process.cpuUsage()})), 300);
    process.stdin.resume();
    process.stdin.on('end', () => process.exit(0));`],
                                    {stdio: ['pipe', 'pipe', 'inherit']});
  try {
    const line = await new Promise((resolve, reject) => {
      worker.stdout.once('data', (d) => resolve(String(d)));
      worker.once('exit', (code) => reject(new Error(`the worker exited (${code})`)));
    });
    const seen = JSON.parse(line);
    const s = await gateway.samples();
    const rss = s['dm_process_resident_memory_bytes{app="x"}'];
    assert.ok(rss > seen.rss / 2 && rss < seen.rss * 2,
              `resident ${rss} vs the worker's ${seen.rss}`);
    const cpu = s['dm_process_cpu_seconds_total{app="x"}'];
    assert.ok(cpu > 0 && cpu <= (seen.cpu.user + seen.cpu.system) / 1e6 + 1, `cpu ${cpu}`);
    assert.ok(s['dm_process_open_fds{app="x"}'] > 2);
    assert.ok(s['dm_nodejs_heap_size_used_bytes{app="x"}'] > 0);
    assert.ok(Math.abs(s['dm_process_start_time_seconds{app="x"}'] - Date.now() / 1000) < 60);
    assert.equal(s[`dm_nodejs_version_info{app="x",version="${process.version}",` +
                   `major="${process.versions.node.split('.')[0]}",` +
                   `minor="${process.versions.node.split('.')[1]}",` +
                   `patch="${process.versions.node.split('.')[2]}"}`], 1);
    assert.ok(s['dm_nodejs_gc_duration_seconds_count{app="x",kind="major"}'] >= 1, 'the forced GC');
  } finally {
    worker.stdin.end();
    if (worker.exitCode === null) await new Promise((resolve) => worker.once('exit', resolve));
  }
  // Gone with its worker: the sizes; kept: its CPU seconds.
  const s = await gateway.samples();
  assert.equal(s['dm_process_resident_memory_bytes{app="x"}'], 0);
  assert.ok(s['dm_process_cpu_seconds_total{app="x"}'] > 0);
});
