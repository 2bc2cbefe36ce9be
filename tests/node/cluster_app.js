'use strict';
// The node:cluster primary of the Express app: forks WORKERS workers running express_app.js and
// re-forks any that dies, after REFORK_DELAY_MS (so a scrape can see the worker gone). It keeps
// the cluster metrics route prom-client's docs give (an AggregatorRegistry on METRICS_PORT), as an
// app that only switched to shmetrics would; started as `node -r shmetrics/register
// cluster_app.js`, that route is served from the gateway, and the workers inherit the -r
// (cluster.fork passes the primary's execArgv).

const cluster = require('node:cluster');
const http = require('node:http');
const path = require('node:path');
const {AggregatorRegistry} = require('prom-client');

const aggregatorRegistry = new AggregatorRegistry();
http.createServer(async (req, res) => {
  try {
    const metrics = await aggregatorRegistry.clusterMetrics();
    res.setHeader('Content-Type', aggregatorRegistry.contentType);
    res.end(metrics);
  } catch (e) {
    res.statusCode = 500;
    res.end(e.message);
  }
}).listen(Number(process.env.METRICS_PORT), '127.0.0.1');

const workers = Number(process.env.WORKERS || 4);

cluster.setupPrimary({exec: path.join(__dirname, 'express_app.js')});
for (let i = 0; i < workers; ++i) cluster.fork();
cluster.on('message', (worker, message) => {
  if (message === 'listening') console.log(`listening ${worker.process.pid}`);
});
const reforkDelayMs = Number(process.env.REFORK_DELAY_MS || 0);
cluster.on('exit', () => setTimeout(() => cluster.fork(), reforkDelayMs));
process.on('SIGTERM', () => {
  cluster.removeAllListeners('exit');
  for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
  process.exit(0);
});
