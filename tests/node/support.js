'use strict';
// What the Node tests share: a uniquely named region, the real shmetrics-gateway serving it on a
// free loopback port, scrapes parsed into {series: value}, and bounded waits. The ctest entry
// sets SHMETRICS_GATEWAY (the binary), SHMETRICS_NODE_PACKAGE (the package in the build tree) and
// NODE_PATH (that package's node_modules, then the npm packages of tests/node/npm).

const childProcess = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');

let counter = 0;

function uniqueRegion(tag) {
  counter += 1;
  return `shmetrics-nodetest-${tag}-${process.pid}-${counter}`;
}

function removeRegion(name) {
  fs.rmSync(`/dev/shm/${name}`, {force: true});
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address();
      server.close(() => resolve(port));
    });
  });
}

function get(port, path, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const req = http.get({host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs},
                         (res) => {
                           let body = '';
                           res.setEncoding('utf8');
                           res.on('data', (chunk) => { body += chunk; });
                           res.on('end', () => resolve({status: res.statusCode, body}));
                         });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Waits until check() is truthy (it may be async); throws `what` after `ms`.
async function waitFor(check, what, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const result = await check();
    if (result) return result;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

// The text exposition as {'name{a="1",b="2"}': value}, labels in the order served.
function parse(body) {
  const samples = {};
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    samples[line.slice(0, cut)] = Number(line.slice(cut + 1));
  }
  return samples;
}

class Gateway {
  // `args`: more gateway flags (region capacities: it creates the region).
  static async start(region, args = []) {
    const gw = new Gateway();
    for (let attempt = 0; attempt < 5; ++attempt) {
      gw.port = await freePort();
      gw.log = '';
      gw.process = childProcess.spawn(process.env.SHMETRICS_GATEWAY,
                                      ['--region', region, '--listen', `127.0.0.1:${gw.port}`,
                                       ...args],
                                      {stdio: ['ignore', 'pipe', 'pipe']});
      gw.process.stdout.on('data', (d) => { gw.log += d; });
      gw.process.stderr.on('data', (d) => { gw.log += d; });
      const healthy = await waitFor(async () => {
        if (gw.process.exitCode !== null) return 'exited';
        try {
          return (await get(gw.port, '/healthz', 1000)).status === 200 ? 'up' : false;
        } catch {
          return false;
        }
      }, 'the gateway to become healthy').catch(() => 'timeout');
      if (healthy === 'up') return gw;
      gw.stop();
      if (!gw.log.includes('in use')) break;
    }
    throw new Error(`shmetrics-gateway did not become healthy: ${gw.log}`);
  }

  async samples() {
    const {status, body} = await get(this.port, '/metrics');
    if (status !== 200) throw new Error(`/metrics answered ${status}`);
    this.lastBody = body;
    return parse(body);
  }

  stop() {
    if (this.process && this.process.exitCode === null) this.process.kill('SIGKILL');
  }
}

// An npm package of tests/node/npm (prom-client, express, ...), or an error saying how to get it.
function requirePeer(name) {
  return withPeerHint(name, () => require(name));
}

// The path of a file in such a package ('pm2/package.json').
function resolvePeer(request) {
  return withPeerHint(request, () => require.resolve(request));
}

function withPeerHint(request, load) {
  try {
    return load();
  } catch (e) {
    if (e.code !== 'MODULE_NOT_FOUND') throw e;
    throw new Error(`'${request}' not found on NODE_PATH (${process.env.NODE_PATH}): ` +
                    'scripts/test installs the npm packages of tests/node/npm into <build>/npm ' +
                    '(shmetrics_ensure_npm_packages in scripts/lib/common.sh)');
  }
}

module.exports = {uniqueRegion, removeRegion, freePort, get, sleep, waitFor, parse, Gateway,
                  requirePeer, resolvePeer};
