'use strict';
// node:cluster with 4 workers, each writing its own cells: N requests from a real HTTP client and
// the gateway serves exactly N; a worker SIGKILLed in the middle of traffic and re-forked keeps
// its counts (counters never go down, totals stay exact) and its share of the live gauge goes.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const http = require('node:http');
const path = require('node:path');
const {after, before, test} = require('node:test');

const support = require('./support');

const region = support.uniqueRegion('cluster');
let gateway;
let app;
let appPort;
let listening = 0;

before(async () => {
  gateway = await support.Gateway.start(region);
  appPort = await support.freePort();
  app = childProcess.spawn(process.execPath, [path.join(__dirname, 'cluster_app.js')], {
    env: {...process.env, SHMETRICS_REGION: region, PORT: String(appPort), WORKERS: '4',
          REFORK_DELAY_MS: '1500'},
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

// One request on a new connection: true when answered 200 with the whole body.
function hit(urlPath) {
  return new Promise((resolve) => {
    const req = http.get({host: '127.0.0.1', port: appPort, path: urlPath, agent: false,
                          timeout: 5000}, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(res.statusCode === 200 && body === 'ok'));
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

// `n` answered requests by `concurrency` clients, each retrying what was not answered (a
// connection the killed worker held); onProgress(answered) after each.
async function traffic(n, concurrency, onProgress = () => {}) {
  let answered = 0;
  let inFlight = 0;
  let attempts = 0;
  const client = async () => {
    while (answered + inFlight < n) {
      if (++attempts > n * 3) throw new Error('too many unanswered requests');
      inFlight += 1;
      const ok = await hit('/hit');
      inFlight -= 1;
      if (ok) {
        answered += 1;
        await onProgress(answered);
      }
    }
  };
  await Promise.all(Array.from({length: concurrency}, client));
  return answered;
}

const HITS = 'http_requests_total{path="/hit"}';

test('N requests over four workers are N in the gateway', async () => {
  const answered = await traffic(400, 8);
  const s = await support.waitFor(async () => {
    const samples = await gateway.samples();
    return samples[HITS] === answered && samples;
  }, `${HITS} == ${answered}`);
  assert.equal(s[HITS], 400);
  assert.equal(s['workers_up'], 4);
  assert.equal(s['http_request_duration_seconds_count'], 400);
  assert.equal((gateway.lastBody.match(/^# TYPE http_requests_total /gm) || []).length, 1);
});

test('a worker SIGKILLed mid-traffic: counters never go down, totals stay exact', async () => {
  const before = (await gateway.samples())[HITS];
  let last = before;
  let sawThree = false;
  let killed = false;
  let scraping = true;
  const scraper = (async () => {
    while (scraping) {
      const s = await gateway.samples();
      assert.ok(s[HITS] >= last, `${HITS} went from ${last} to ${s[HITS]}`);
      assert.ok(s['workers_up'] <= 4, `workers_up ${s['workers_up']}`);
      last = s[HITS];
      if (s['workers_up'] === 3) sawThree = true;
      await support.sleep(20);
    }
  })();
  const answered = await traffic(800, 8, async (n) => {
    if (n === 200 && !killed) {
      killed = true;
      assert.equal(await hit('/die'), false);  // that worker died without answering
    }
  });
  await support.waitFor(() => listening >= 5, 'the replacement worker', 30000);
  const s = await support.waitFor(async () => {
    const samples = await gateway.samples();
    return samples['workers_up'] === 4 && samples[HITS] === before + answered && samples;
  }, 'the replacement counted and every request served');
  scraping = false;
  await scraper;
  assert.equal(answered, 800);
  assert.equal(s[HITS], before + 800);
  assert.ok(sawThree, 'no scrape saw the killed worker\'s live gauge gone');
});
