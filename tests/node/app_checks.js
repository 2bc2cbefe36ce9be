'use strict';
// The checks the Express app (express_app.js) passes under node:cluster and under pm2, with four
// workers: N requests from a real HTTP client are N in the gateway, and a worker SIGKILLed in the
// middle of traffic and replaced keeps its counts (counters never go down, totals stay exact)
// while its share of the live gauges goes.

const assert = require('node:assert/strict');
const http = require('node:http');

const support = require('./support');

const HITS = 'http_requests_total{path="/hit"}';
// express-prom-bundle's histogram of the same requests.
const HIT_DURATIONS =
    'http_request_duration_seconds_count{status_code="200",method="GET",path="/hit"}';

// One request on a new connection: true when answered 200 with the body 'ok'.
function hit(port, urlPath) {
  return new Promise((resolve) => {
    const req = http.get({host: '127.0.0.1', port, path: urlPath, agent: false, timeout: 5000},
                         (res) => {
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
async function traffic(port, n, concurrency, onProgress = () => {}) {
  let answered = 0;
  let inFlight = 0;
  let attempts = 0;
  const client = async () => {
    while (answered + inFlight < n) {
      if (++attempts > n * 3) throw new Error('too many unanswered requests');
      inFlight += 1;
      const ok = await hit(port, '/hit');
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

// The counts before a check, once the histogram (observed when a response is finished) has
// caught up with the counter: both 0 before the first request.
async function settledHits(gateway) {
  const s = await support.waitFor(async () => {
    const samples = await gateway.samples();
    return (samples[HITS] || 0) === (samples[HIT_DURATIONS] || 0) && samples;
  }, `${HIT_DURATIONS} == ${HITS}`);
  return s[HITS] || 0;
}

// 400 requests over the four workers: the gateway serves 400 more, once per family, and so does
// the app's own /metrics route (express-prom-bundle's, rendering the region through the gateway).
async function checkRequestsAreCounted(gateway, appPort) {
  const before = await settledHits(gateway);
  const answered = await traffic(appPort, 400, 8);
  assert.equal(answered, 400);
  const want = before + 400;
  const s = await support.waitFor(async () => {
    const samples = await gateway.samples();
    return samples[HITS] === want && samples[HIT_DURATIONS] === want && samples;
  }, `${HITS} and ${HIT_DURATIONS} == ${want}`);
  assert.equal(s['workers_up'], 4);
  assert.equal(s['up'], 4, 'express-prom-bundle\'s up gauge, one per live worker');
  assert.equal((gateway.lastBody.match(/^# TYPE http_requests_total /gm) || []).length, 1);

  const own = await support.get(appPort, '/metrics');
  assert.equal(own.status, 200);
  const served = support.parse(own.body);
  assert.equal(served[HITS], want);
  assert.equal(served['workers_up'], 4);
}

// A worker SIGKILLs itself (GET /die) after 200 of 800 requests: every scrape meanwhile sees the
// counter no lower than before and the live gauge at most 4, one sees it at 3, and once
// `replaced()` (its manager started another) the totals are exact and the gauge is 4 again.
async function checkKilledWorkerKeepsItsCounts(gateway, appPort, replaced) {
  const before = await settledHits(gateway);
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
  let answered;
  let s;
  try {
    answered = await traffic(appPort, 800, 8, async (n) => {
      if (n === 200 && !killed) {
        killed = true;
        assert.equal(await hit(appPort, '/die'), false);  // that worker died without answering
      }
    });
    await replaced();
    s = await support.waitFor(async () => {
      const samples = await gateway.samples();
      return samples['workers_up'] === 4 && samples[HITS] === before + answered && samples;
    }, 'the replacement counted and every request served');
  } finally {
    scraping = false;
    await scraper;
  }
  assert.equal(answered, 800);
  assert.equal(s[HITS], before + 800);
  assert.ok(sawThree, 'no scrape saw the killed worker\'s live gauge gone');
}

module.exports = {hit, checkRequestsAreCounted, checkKilledWorkerKeepsItsCounts};
