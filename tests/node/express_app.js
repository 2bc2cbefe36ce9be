'use strict';
// A worker of an Express app as apps write it, with prom-client and express-prom-bundle: nothing
// in this file knows shmetrics. Started with `node -r shmetrics/register` (under node:cluster by
// cluster_app.js, or by pm2 in cluster mode), its require('prom-client') is shmetrics, so every
// worker writes into the region SHMETRICS_REGION, and express-prom-bundle's /metrics route serves
// the region as the gateway (SHMETRICS_GATEWAY_URL) merges it.
//
// GET /hit counts a request, GET /healthz does not; GET /die makes the worker that receives it
// SIGKILL itself (so no other request of that worker is halfway through its handler).

const express = require('express');
const promBundle = require('express-prom-bundle');
const promClient = require('prom-client');

const requests = new promClient.Counter({name: 'http_requests_total', help: 'Requests served.',
                                         labelNames: ['path']});
const up = new promClient.Gauge({name: 'workers_up', help: 'Live workers.'});  // aggregator sum
up.set(1);
const hits = requests.labels('/hit');

const app = express();
app.use(promBundle({includeMethod: true, includePath: true, buckets: [0.001, 0.01, 0.1, 1]}));
app.get('/hit', (req, res) => {
  hits.inc();
  res.send('ok');
});
app.get('/healthz', (req, res) => res.send('ok'));
app.get('/die', () => process.kill(process.pid, 'SIGKILL'));

app.listen(Number(process.env.PORT), '127.0.0.1', () => {
  // node:cluster's primary (cluster_app.js) counts these; pm2 is asked through `pm2 jlist`.
  if (process.send && process.env.pm_id === undefined) process.send('listening');
});
