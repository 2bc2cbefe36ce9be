'use strict';
// The Express app (express_app.js) under node:cluster with 4 workers, started with
// `node -r shmetrics/register`: the checks of app_checks.js, the primary re-forking the killed
// worker.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const path = require('node:path');
const {after, before, test} = require('node:test');

const checks = require('./app_checks');
const support = require('./support');

const region = support.uniqueRegion('cluster');
let gateway;
let app;
let appPort;
let metricsPort;
let listening = 0;

before(async () => {
  gateway = await support.Gateway.start(region);
  appPort = await support.freePort();
  metricsPort = await support.freePort();
  app = childProcess.spawn(
      process.execPath, ['-r', 'shmetrics/register', path.join(__dirname, 'cluster_app.js')], {
        env: {...process.env, SHMETRICS_REGION: region, PORT: String(appPort), WORKERS: '4',
              METRICS_PORT: String(metricsPort),
              REFORK_DELAY_MS: '1500',
              SHMETRICS_GATEWAY_URL: `http://127.0.0.1:${gateway.port}/metrics`},
        stdio: ['ignore', 'pipe', 'inherit'],
        detached: true,  // its own process group: killed whole in after()
      });
  app.stdout.setEncoding('utf8');
  app.stdout.on('data', (d) => { listening += (d.match(/^listening /gm) || []).length; });
  await support.waitFor(() => listening >= 4, 'four workers listening', 30000);
});

after(() => {
  if (app) {
    try { process.kill(-app.pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  gateway.stop();
  support.removeRegion(region);
});

test('N requests over four workers are N in the gateway, in the app\'s /metrics and the primary\'s',
     async () => {
       await checks.checkRequestsAreCounted(gateway, appPort);
       // The primary's AggregatorRegistry route, unchanged: the gateway's merge, no IPC.
       const primary = await support.get(metricsPort, '/cluster_metrics');
       assert.equal(primary.status, 200);
       const s = support.parse(primary.body);
       assert.equal(s['http_requests_total{path="/hit"}'], 400);
       assert.equal(s['workers_up'], 4);
     });

test('a worker SIGKILLed mid-traffic: counters never go down, totals stay exact', () =>
  checks.checkKilledWorkerKeepsItsCounts(
      gateway, appPort,
      () => support.waitFor(() => listening >= 5, 'the replacement worker', 30000)));
