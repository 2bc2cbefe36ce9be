'use strict';
// The same Express app (express_app.js) under pm2 in cluster mode, 4 instances, started by pm2
// with `node_args: -r shmetrics/register` and no master code at all: the checks of
// app_checks.js, pm2 restarting the killed instance. pm2 runs with a PM2_HOME of its own, its
// daemon killed in after().

const childProcess = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const {after, before, test} = require('node:test');

const checks = require('./app_checks');
const support = require('./support');

const region = support.uniqueRegion('pm2');
const pm2Home = fs.mkdtempSync(path.join(os.tmpdir(), 'shmetrics-pm2-'));
let pm2Bin;
let gateway;
let appPort;

function pm2(...args) {
  const r = childProcess.spawnSync(process.execPath, [pm2Bin, ...args],
                                   {env: {...process.env, PM2_HOME: pm2Home}, timeout: 30000,
                                    encoding: 'utf8'});
  if (r.error || r.status !== 0) {
    throw new Error(`pm2 ${args.join(' ')}: ${r.error || `exit ${r.status}`}\n` +
                    `${r.stdout}${r.stderr}`);
  }
  return r.stdout;
}

// The app's instances pm2 has online: their pids and restart counts.
function instances() {
  return JSON.parse(pm2('jlist'))
      .filter((p) => p.name === 'app' && p.pm2_env.status === 'online' && p.pid > 0)
      .map((p) => ({pid: p.pid, restarts: p.pm2_env.restart_time}));
}

// Until pm2 has four instances online, `restarts` restarts done, and the app answers.
async function fourServing(restarts = 0) {
  await support.waitFor(async () => {
    const online = instances();
    return online.length === 4 && online.reduce((n, p) => n + p.restarts, 0) >= restarts &&
           await checks.hit(appPort, '/healthz');
  }, `four pm2 instances online after ${restarts} restart(s), serving`, 30000);
}

before(async () => {
  pm2Bin = path.join(path.dirname(support.resolvePeer('pm2/package.json')), 'bin', 'pm2');
  gateway = await support.Gateway.start(region);
  appPort = await support.freePort();
  const ecosystem = path.join(pm2Home, 'ecosystem.config.js');
  fs.writeFileSync(ecosystem, `module.exports = ${JSON.stringify({
    apps: [{
      name: 'app',
      script: path.join(__dirname, 'express_app.js'),
      exec_mode: 'cluster',
      instances: 4,
      node_args: '-r shmetrics/register',
      restart_delay: 1500,  // so a scrape can see the killed instance gone
      env: {
        SHMETRICS_REGION: region,
        SHMETRICS_GATEWAY_URL: `http://127.0.0.1:${gateway.port}/metrics`,
        PORT: String(appPort),
        NODE_PATH: process.env.NODE_PATH,
      },
    }],
  }, null, 2)};\n`);
  pm2('start', ecosystem);
  await fourServing();
});

after(() => {
  try {
    pm2('kill');
  } catch (e) {
    // pm2 kill did not finish: its daemon goes by its pid file.
    const pid = Number(fs.readFileSync(path.join(pm2Home, 'pm2.pid'), 'utf8'));
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    throw e;
  } finally {
    gateway.stop();
    support.removeRegion(region);
    fs.rmSync(pm2Home, {recursive: true, force: true});
  }
});

test('pm2 cluster mode: N requests over four instances are N, with no master code',
     () => checks.checkRequestsAreCounted(gateway, appPort));

test('pm2 cluster mode: an instance SIGKILLed mid-traffic is restarted, its counts kept', () =>
  checks.checkKilledWorkerKeepsItsCounts(gateway, appPort, () => fourServing(1)));
