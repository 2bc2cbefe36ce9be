'use strict';
// The package as an app installs it: `npm pack` of the build tree's package, then
// `npm install <tarball>` and `npm install <dir>` into a new app directory with no network
// (--offline), and the installed copy counting through the real gateway. The tarball carries the
// addon and libshmetrics.so.1 and nothing else of the build tree.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const {after, before, test} = require('node:test');

const support = require('./support');

const region = support.uniqueRegion('packaging');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'shmetrics-npm-'));
let gateway;

function run(command, args, cwd, env = {}) {
  const r = childProcess.spawnSync(command, args, {cwd, encoding: 'utf8', timeout: 60000,
                                                   env: {...process.env, ...env}});
  if (r.error || r.status !== 0) {
    throw new Error(`${command} ${args.join(' ')}: ${r.error || `exit ${r.status}`}\n` +
                    `${r.stdout}${r.stderr}`);
  }
  return r.stdout;
}

// A new app directory, `npm install`ed with `spec`; returns its path.
function appWith(name, spec) {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'package.json'),
                   JSON.stringify({name, version: '1.0.0', private: true}));
  run('npm', ['install', '--offline', '--no-audit', '--no-fund', spec], dir);
  return dir;
}

// The app counts `n` with the shmetrics it installed (NODE_PATH cleared: nothing else is found);
// returns where that shmetrics is, links resolved.
function countIn(dir, n) {
  return run(process.execPath, ['-e', `
    const shmetrics = require('shmetrics');
    new shmetrics.Counter({name: 'packaging_installs', help: 'x'}).inc(${n});
    process.stdout.write(require('node:fs').realpathSync(require.resolve('shmetrics')));`],
             dir, {NODE_PATH: '', SHMETRICS_REGION: region});
}

before(async () => {
  gateway = await support.Gateway.start(region);
});

after(() => {
  gateway.stop();
  support.removeRegion(region);
  fs.rmSync(work, {recursive: true, force: true});
});

test('npm pack: a tarball with the addon, its library and the JS, nothing else', () => {
  const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work,
                                        process.env.SHMETRICS_NODE_PACKAGE], work));
  const files = packed[0].files.map((f) => f.path).sort();
  assert.deepEqual(files, ['default_metrics.js', 'index.js', 'libshmetrics.so.1', 'package.json',
                           'register.js', 'shmetrics.node']);
  assert.equal(packed[0].name, 'shmetrics');
  const needed = run('readelf', ['-d', path.join(process.env.SHMETRICS_NODE_PACKAGE,
                                                 'shmetrics.node')], work);
  assert.match(needed, /RUNPATH.*\[\$ORIGIN\]/, 'the addon finds its library beside it only');
});

test('npm install <tarball> and <dir>, offline: require(\'shmetrics\') counts', async () => {
  const tarball = path.join(work, 'shmetrics-0.1.0.tgz');
  assert.ok(fs.existsSync(tarball), 'the tarball of the test before');
  const fromTarball = appWith('app-tarball', tarball);
  // A tarball is unpacked: a copy, with no link back to the build tree.
  assert.ok(!fs.lstatSync(path.join(fromTarball, 'node_modules', 'shmetrics')).isSymbolicLink());
  assert.equal(countIn(fromTarball, 2),
               path.join(fromTarball, 'node_modules', 'shmetrics', 'index.js'));
  // A directory is linked: the app runs the build tree's package.
  const fromDir = appWith('app-dir', process.env.SHMETRICS_NODE_PACKAGE);
  assert.equal(countIn(fromDir, 3), path.join(process.env.SHMETRICS_NODE_PACKAGE, 'index.js'));
  assert.equal((await gateway.samples())['packaging_installs_total'], 5);
});
