'use strict';
// A node:cluster app as apps write it: the primary forks WORKERS workers and re-forks any that
// dies; each worker serves HTTP on PORT and counts its requests with the shmetrics package (the
// primary has no metrics code). GET /die makes the worker that receives it SIGKILL itself (so
// no other request of that worker is halfway through its handler); REFORK_DELAY_MS delays the
// replacement so that a scrape can see the worker gone.

const cluster = require('node:cluster');
const http = require('node:http');

const workers = Number(process.env.WORKERS || 4);

if (cluster.isPrimary) {
  for (let i = 0; i < workers; ++i) cluster.fork();
  cluster.on('message', (worker, message) => {
    if (message === 'listening') console.log(`listening ${worker.process.pid}`);
  });
  cluster.on('exit', () => setTimeout(() => cluster.fork(), Number(process.env.REFORK_DELAY_MS || 0)));
  process.on('SIGTERM', () => {
    cluster.removeAllListeners('exit');
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
    process.exit(0);
  });
} else {
  const client = require(process.env.SHMETRICS_NODE_PACKAGE);
  const requests = new client.Counter({name: 'http_requests_total', help: 'Requests served.',
                                       labelNames: ['path']});
  const latency = new client.Histogram({name: 'http_request_duration_seconds', help: 'Latency.',
                                        buckets: [0.001, 0.01, 0.1, 1]});
  const up = new client.Gauge({name: 'workers_up', help: 'Live workers.'});  // aggregator sum
  up.set(1);
  const hits = requests.labels('/hit');
  http.createServer((req, res) => {
    const end = latency.startTimer();
    if (req.url === '/die') {
      process.kill(process.pid, 'SIGKILL');
    } else {
      hits.inc();
      res.end('ok');
    }
    end();
  }).listen(Number(process.env.PORT), '127.0.0.1', () => process.send('listening'));
}
