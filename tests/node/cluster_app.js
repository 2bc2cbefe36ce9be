'use strict';
// The node:cluster primary of the Express app: forks WORKERS workers running express_app.js and
// re-forks any that dies, after REFORK_DELAY_MS (so a scrape can see the worker gone). It has no
// metrics code; started as `node -r shmetrics/register cluster_app.js`, its workers inherit the
// -r (cluster.fork passes the primary's execArgv).

const cluster = require('node:cluster');
const path = require('node:path');

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
