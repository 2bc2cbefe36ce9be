'use strict';
// The package in one process: prom-client's constructors, write methods, labels and error texts,
// each value read back through the real gateway.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const {after, before, test} = require('node:test');

const support = require('./support');

const region = support.uniqueRegion('api');
let gateway;
let client;

before(async () => {
  gateway = await support.Gateway.start(region);
  process.env.SHMETRICS_REGION = region;
  client = require(process.env.SHMETRICS_NODE_PACKAGE);
});

after(() => {
  gateway.stop();
  support.removeRegion(region);
});

test('counter: inc with and without labels, resolved children, _total added once', async () => {
  const requests = new client.Counter({name: 'api_requests_total', help: 'Requests.',
                                       labelNames: ['method', 'code']});
  requests.inc({method: 'GET', code: 200});
  requests.inc({method: 'GET', code: '200'}, 2);
  const child = requests.labels('POST', '500');
  for (let i = 0; i < 1000; ++i) child.inc();
  requests.labels({method: 'POST', code: '500'}).inc(0.5);
  const jobs = new client.Counter({name: 'api_jobs', help: 'Jobs.'});
  jobs.inc();
  jobs.inc(4);
  const s = await gateway.samples();
  assert.equal(s['api_requests_total{method="GET",code="200"}'], 3);
  assert.equal(s['api_requests_total{method="POST",code="500"}'], 1000.5);
  assert.equal(s['api_jobs_total'], 5);
  assert.match(gateway.lastBody, /# TYPE api_requests_total counter/);
});

test('gauge: set, inc, dec, setToCurrentTime, startTimer, and the aggregator as gauge mode',
     async () => {
  const g = new client.Gauge({name: 'api_inflight', help: 'In flight.', labelNames: ['pool']});
  g.set({pool: 'a'}, 10);
  g.inc({pool: 'a'});
  g.dec({pool: 'a'}, 3);
  g.labels('b').inc(2);
  const peak = new client.Gauge({name: 'api_peak', help: 'Peak.', aggregator: 'max'});
  peak.set(7);
  const stamp = new client.Gauge({name: 'api_stamp', help: 'Time.', mode: 'livemostrecent'});
  stamp.setToCurrentTime();
  assert.throws(() => stamp.inc(), /not allowed in the mostrecent modes/);
  const took = new client.Gauge({name: 'api_took_seconds', help: 'Took.'});
  const end = took.startTimer();
  await support.sleep(20);
  const seconds = end();
  assert.ok(seconds >= 0.015, String(seconds));
  const s = await gateway.samples();
  assert.equal(s['api_inflight{pool="a"}'], 8);
  assert.equal(s['api_inflight{pool="b"}'], 2);
  assert.equal(s['api_peak'], 7);
  assert.ok(Math.abs(s['api_stamp'] - Date.now() / 1000) < 60, String(s['api_stamp']));
  assert.equal(s['api_took_seconds'], seconds);
});

test('histogram and summary: buckets become the family\'s, timers observe seconds', async () => {
  const h = new client.Histogram({name: 'api_latency_seconds', help: 'Latency.',
                                  labelNames: ['route'], buckets: [0.1, 0.5, 2]});
  for (const v of [0.05, 0.3, 0.3, 1, 9]) h.observe({route: '/a'}, v);
  h.labels('/a').observe(0.2);
  const end = h.startTimer({route: '/b'});
  end();
  const sizes = new client.Summary({name: 'api_size_bytes', help: 'Sizes.'});
  sizes.observe(100);
  sizes.observe(50);
  const d = new client.Histogram({name: 'api_default_seconds', help: 'Default buckets.'});
  d.observe(0.3);
  const s = await gateway.samples();
  const bucket = (route, le) => s[`api_latency_seconds_bucket{route="${route}",le="${le}"}`];
  assert.deepEqual([bucket('/a', '0.1'), bucket('/a', '0.5'), bucket('/a', '2.0'),
                    bucket('/a', '+Inf')], [1, 4, 5, 6]);
  assert.equal(s['api_latency_seconds_count{route="/a"}'], 6);
  assert.ok(Math.abs(s['api_latency_seconds_sum{route="/a"}'] - 10.85) < 1e-9);
  assert.equal(s['api_latency_seconds_count{route="/b"}'], 1);
  assert.equal(s['api_size_bytes_count'], 2);
  assert.equal(s['api_size_bytes_sum'], 150);
  // prom-client's default buckets: 0.005 ... 10.
  assert.equal(s['api_default_seconds_bucket{le="0.25"}'], 0);
  assert.equal(s['api_default_seconds_bucket{le="0.5"}'], 1);
  assert.equal(s['api_default_seconds_bucket{le="10.0"}'], 1);
});

test('bad input throws prom-client\'s errors, and the worker goes on', () => {
  const c = new client.Counter({name: 'api_errors', help: 'x', labelNames: ['a']});
  assert.throws(() => new client.Counter({help: 'x'}), /Missing mandatory name parameter/);
  assert.throws(() => new client.Counter({name: 'api_nohelp'}), /Missing mandatory help parameter/);
  assert.throws(() => new client.Counter({name: '1bad', help: 'x'}), /Invalid metric name/);
  assert.throws(() => new client.Counter({name: 'api_badlabel', help: 'x', labelNames: ['1x']}),
                /Invalid label name/);
  assert.throws(() => new client.Histogram({name: 'api_le', help: 'x', labelNames: ['le']}),
                /le is a reserved label keyword/);
  assert.throws(() => new client.Counter({name: 'api_errors', help: 'x'}),
                /A metric with the name api_errors has already been registered/);
  assert.throws(() => c.inc(-1), /It is not possible to decrease a counter/);
  assert.throws(() => c.inc({a: '1'}, NaN), /Value is not a valid number: NaN/);
  assert.throws(() => c.inc({b: '1'}), /Added label "b" is not included in initial labelset/);
  assert.throws(() => c.labels('1', '2'), /Invalid number of arguments \(2\)/);
  assert.throws(() => new client.Gauge({name: 'api_avg', help: 'x', aggregator: 'average'}),
                /aggregator 'average' has no gauge mode/);
  assert.throws(() => new client.Counter({name: 'api_first', help: 'x', aggregator: 'first'}),
                /always summed over workers/);
  assert.throws(() => new client.Summary({name: 'api_q', help: 'x', percentiles: [0.5]}),
                /keeps count and sum only/);
  assert.throws(() => client.attach(region + '-other'), /already attached to region/);
  assert.equal(client.register.getSingleMetric('api_errors'), c);
});

test('a definition that conflicts with the region is an EINVAL error naming the family', () => {
  // Another process registers api_conflict_total as a gauge first.
  const other = childProcess.spawnSync(process.execPath, ['-e', `
    const c = require(process.env.SHMETRICS_NODE_PACKAGE);
    new c.Gauge({name: 'api_conflict_total', help: 'x'}).set(1);`], {timeout: 30000});
  assert.equal(other.status, 0, String(other.stderr));
  assert.throws(() => new client.Counter({name: 'api_conflict', help: 'x'}), (e) => {
    assert.equal(e.code, 'EINVAL');
    assert.match(e.message, /api_conflict_total/);
    return true;
  });
});

test('no region named is a clear error', () => {
  const env = {...process.env};
  delete env.SHMETRICS_REGION;
  const r = childProcess.spawnSync(process.execPath, ['-e', `
    const c = require(process.env.SHMETRICS_NODE_PACKAGE);
    try { new c.Counter({name: 'x_total', help: 'x'}); } catch (e) {
      console.error(e.message); process.exit(3); }`], {env, timeout: 30000});
  assert.equal(r.status, 3, String(r.stderr));
  assert.match(String(r.stderr), /no region: set SHMETRICS_REGION or call attach\(name\)/);
});

test('series the region has no room for: updates dropped and counted, the worker goes on',
     async () => {
  const small = support.uniqueRegion('api-full');
  const smallGateway = await support.Gateway.start(small, ['--max-series', '64']);
  try {
    const r = childProcess.spawnSync(process.execPath, ['-e', `
      const c = require(process.env.SHMETRICS_NODE_PACKAGE);
      const k = new c.Counter({name: 'api_full_total', help: 'x', labelNames: ['i']});
      for (let i = 0; i < 100; ++i) k.inc({i: String(i)});
      k.inc({i: '0'}, 5);  // a series that has room still counts
      console.log('done');`], {env: {...process.env, SHMETRICS_REGION: small}, timeout: 30000});
    assert.equal(r.status, 0, String(r.stderr));
    assert.equal(String(r.stdout), 'done\n');
    const s = await support.waitFor(async () => {
      const samples = await smallGateway.samples();
      return samples['shmetrics_dropped_updates_total{reason="region_full"}'] > 0 && samples;
    }, 'the drops counted');
    const served = Object.keys(s).filter((k) => k.startsWith('api_full_total{'));
    assert.equal(s['api_full_total{i="0"}'], 6);
    assert.equal(s['shmetrics_dropped_updates_total{reason="region_full"}'], 100 - served.length);
  } finally {
    smallGateway.stop();
    support.removeRegion(small);
  }
});
