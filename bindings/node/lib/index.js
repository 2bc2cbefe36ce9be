'use strict';
// shmetrics for Node.js: prom-client's Counter, Gauge, Histogram and Summary writing into a
// shmetrics shared-memory region, which shmetrics-gateway merges over every worker (node:cluster,
// pm2 cluster mode) and serves as /metrics: no master code, no IPC at scrape time, and a dead
// worker's counts kept.
//
//   const client = require('shmetrics');            // the region: SHMETRICS_REGION, or
//   client.attach('myapp');                          // attach(name) before the first metric
//   const requests = new client.Counter({name: 'http_requests_total', help: 'Requests.',
//                                        labelNames: ['method', 'code']});
//   requests.labels('GET', '200').inc();             // a resolved child: one N-API call
//
// Code that requires prom-client itself (express-prom-bundle, say) gets this module instead once
// `require('shmetrics').install()` ran, or with `node -r shmetrics/register app.js`.
// register.metrics() is the region's /metrics as the gateway serves it, for an app that keeps its
// own route. Checks and error texts follow prom-client 15 where code matches on them.

const http = require('node:http');
const https = require('node:https');
const Module = require('node:module');
const defaultMetrics = require('./default_metrics.js');
const native = require('./shmetrics.node');

const METRIC_NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
// prom-client's default buckets.
const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

// prom-client's cluster `aggregator` for gauges, as the gateway's gauge modes: a dead worker's
// value leaves the merge, as it leaves prom-client's (which asks only live workers).
const AGGREGATORS = {
  sum: native.GAUGE_LIVESUM,
  min: native.GAUGE_LIVEMIN,
  max: native.GAUGE_LIVEMAX,
};
// The gateway's own mode names (shmetrics' `mode` option, as in the Python package).
const MODES = {
  all: native.GAUGE_ALL,
  liveall: native.GAUGE_LIVEALL,
  sum: native.GAUGE_SUM,
  livesum: native.GAUGE_LIVESUM,
  max: native.GAUGE_MAX,
  livemax: native.GAUGE_LIVEMAX,
  min: native.GAUGE_MIN,
  livemin: native.GAUGE_LIVEMIN,
  mostrecent: native.GAUGE_MOSTRECENT,
  livemostrecent: native.GAUGE_LIVEMOSTRECENT,
};

// Where register.metrics() asks for the region's exposition: the gateway's default address.
const DEFAULT_GATEWAY_URL = 'http://127.0.0.1:9716/metrics';

let attachedRegion = null;
let gatewayUrl = null; // set by attach({gatewayUrl}); else SHMETRICS_GATEWAY_URL, else the default

// Attaches this process to `region` (created if no gateway created it yet). Call it before the
// first metric, or set SHMETRICS_REGION instead; a second call must name the same region.
// options.gatewayUrl: the gateway's /metrics URL, for register.metrics().
function attach(region, options = {}) {
  if (typeof region !== 'string' || region === '') {
    throw new TypeError('shmetrics: attach(region) needs a region name');
  }
  if (options.gatewayUrl !== undefined) {
    gatewayUrl = parseGatewayUrl(options.gatewayUrl, 'gatewayUrl');
  }
  if (attachedRegion !== null) {
    if (region !== attachedRegion) {
      throw new Error(`shmetrics: already attached to region '${attachedRegion}', cannot ` +
                      `attach '${region}'`);
    }
    return;
  }
  native.attach(region);
  attachedRegion = region;
}

function parseGatewayUrl(text, from) {
  let url;
  try {
    url = new URL(text);
  } catch (e) {
    throw new Error(`shmetrics: ${from} '${text}' is not a URL (e.g. ${DEFAULT_GATEWAY_URL})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`shmetrics: ${from} '${text}' must be an http: or https: URL`);
  }
  return url;
}

function ensureAttached() {
  if (attachedRegion !== null) return;
  const region = process.env.SHMETRICS_REGION;
  if (!region) {
    throw new Error('shmetrics: no region: set SHMETRICS_REGION or call attach(name) before ' +
                    'creating the first metric');
  }
  attach(region);
}

// The metrics this process created, by name (prom-client's default registry).
const metrics = new Map();

class Metric {
  constructor(config, type, nativeType, registeredName, mode, buckets, reserved) {
    if (!config || typeof config !== 'object') throw new Error('Missing mandatory config');
    if (!config.name) throw new Error('Missing mandatory name parameter');
    if (!config.help) throw new Error('Missing mandatory help parameter');
    if (!METRIC_NAME_RE.test(config.name)) throw new Error('Invalid metric name');
    const labelNames = [...(config.labelNames || [])];
    for (const label of labelNames) {
      if (typeof label !== 'string' || !LABEL_NAME_RE.test(label) || label.startsWith('__')) {
        throw new Error('Invalid label name');
      }
      if (label === reserved) throw new Error(`${reserved} is a reserved label keyword`);
    }
    if (metrics.has(config.name)) {
      throw new Error(`A metric with the name ${config.name} has already been registered.`);
    }
    ensureAttached();
    this.name = config.name;
    this.help = config.help;
    this.type = type;
    this.labelNames = labelNames;
    this._nativeType = nativeType;
    this._registeredName = registeredName;
    this._family = native.register(nativeType, registeredName, config.help, labelNames, mode,
                                   buckets);
    this._children = new Map();  // label values joined by \u0000 -> child
    metrics.set(config.name, this);
    for (const registry of config.registers === undefined ? [register] : config.registers) {
      if (registry) registry.registerMetric(this);
    }
  }

  // The child of `labels` (an object, or undefined/null for none), made once and kept: label
  // values are strings, a missing one is empty, as prom-client prints it; an unknown label name
  // is an error.
  _childOf(labels) {
    const names = this.labelNames;
    let key = '';
    let given = 0;
    if (labels !== undefined && labels !== null) {
      for (let i = 0; i < names.length; ++i) {
        const v = labels[names[i]];
        if (v !== undefined) ++given;
        key += (i ? '\u0000' : '') + (v === undefined ? '' : String(v));
      }
      // Every key of `labels` is a label name when their count is that of the names found.
      if (Object.keys(labels).length !== given) this._checkLabelNames(labels);
    } else {
      key = names.length ? '\u0000'.repeat(names.length - 1) : '';
    }
    return this._children.get(key) || this._newChild(key);
  }

  _checkLabelNames(labels) {
    for (const name of Object.keys(labels)) {
      if (!this.labelNames.includes(name)) {
        throw new Error(`Added label "${name}" is not included in initial labelset: ` +
                        JSON.stringify(this.labelNames));
      }
    }
  }

  _newChild(key) {
    const values = this.labelNames.length ? key.split('\u0000') : [];
    const child = this._makeChild(native.bind(this._nativeType, this._family, values));
    this._children.set(key, child);
    return child;
  }

  // labels(...values) by position, or labels({name: value}).
  labels(...args) {
    if (args.length === 1 && args[0] !== null && typeof args[0] === 'object') {
      return this._childOf(args[0]);
    }
    if (args.length !== this.labelNames.length) {
      throw new Error(`Invalid number of arguments (${args.length}): "${args.join(', ')}" for ` +
                      `label names: "${this.labelNames.join(', ')}".`);
    }
    let key = '';
    for (let i = 0; i < args.length; ++i) {
      key += (i ? '\u0000' : '') + (args[i] === undefined ? '' : String(args[i]));
    }
    return this._children.get(key) || this._newChild(key);
  }
}

// (labels, value) or (value): prom-client's argument order for inc/dec/set/observe.
function splitArgs(labels, value, defaultValue) {
  if (typeof labels === 'number' || labels === undefined) {
    return [undefined, labels ?? defaultValue];
  }
  return [labels, value ?? defaultValue];
}

function checkNumber(value) {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`Value is not a valid number: ${value}`);
  }
}

function checkCounterIncrement(value) {
  checkNumber(value);
  if (value < 0) throw new Error('It is not possible to decrease a counter');
}

function timer(observe) {
  const start = process.hrtime.bigint();
  return (endLabels) => {
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    observe(endLabels, seconds);
    return seconds;
  };
}

function mergeLabels(a, b) {
  return b === undefined ? a : Object.assign({}, a, b);
}

function nameOf(config) {
  return config && config.name;
}

function checkSumAggregator(config, type) {
  if (config.aggregator !== undefined && config.aggregator !== 'sum') {
    throw new Error(`shmetrics: a ${type} is always summed over workers; aggregator ` +
                    `'${config.aggregator}' is for gauges`);
  }
}

class Counter extends Metric {
  constructor(config) {
    checkSumAggregator(config || {}, 'counter');
    const name = nameOf(config);
    super(config, 'counter', native.COUNTER,
          name && name.endsWith('_total') ? name : `${name}_total`, 0, null);
  }

  inc(labels, value) {
    [labels, value] = splitArgs(labels, value, 1);
    this._childOf(labels).inc(value);
  }

  // A child's inc() is one N-API call: the series is bound into its writer.
  _makeChild(series) {
    const add = native.writer(native.WRITE_COUNTER_ADD, series);
    return {
      inc(value = 1) {
        checkCounterIncrement(value);
        add(value);
      },
    };
  }
}

function gaugeMode(config) {
  if (config.mode !== undefined) {
    const mode = MODES[config.mode];
    if (mode === undefined) throw new Error(`shmetrics: unknown gauge mode '${config.mode}'`);
    return mode;
  }
  const aggregator = config.aggregator === undefined ? 'sum' : config.aggregator;
  const mode = AGGREGATORS[aggregator];
  if (mode === undefined) {
    throw new Error(`shmetrics: aggregator '${aggregator}' has no gauge mode (sum, min and max ` +
                    'have; or give mode: one of ' + Object.keys(MODES).join(', ') + ')');
  }
  return mode;
}

class Gauge extends Metric {
  constructor(config) {
    const mode = gaugeMode(config || {});
    super(config, 'gauge', native.GAUGE, nameOf(config), mode, null);
    this._noAdd = mode === native.GAUGE_MOSTRECENT || mode === native.GAUGE_LIVEMOSTRECENT;
  }

  set(labels, value) {
    [labels, value] = splitArgs(labels, value, undefined);
    this._childOf(labels).set(value);
  }

  inc(labels, value) {
    [labels, value] = splitArgs(labels, value, 1);
    this._childOf(labels).inc(value);
  }

  dec(labels, value) {
    [labels, value] = splitArgs(labels, value, 1);
    this._childOf(labels).dec(value);
  }

  setToCurrentTime(labels) {
    this._childOf(labels).setToCurrentTime();
  }

  startTimer(labels) {
    return timer((endLabels, seconds) => this.set(mergeLabels(labels, endLabels) || {}, seconds));
  }

  _makeChild(series) {
    const set = native.writer(native.WRITE_GAUGE_SET, series);
    const add = native.writer(native.WRITE_GAUGE_ADD, series);
    const noAdd = this._noAdd;
    const checkedAdd = (value) => {
      checkNumber(value);
      if (noAdd) throw new Error('shmetrics: inc/dec is not allowed in the mostrecent modes');
      add(value);
    };
    return {
      set(value) {
        checkNumber(value);
        set(value);
      },
      inc(value = 1) { checkedAdd(value); },
      dec(value = 1) { checkedAdd(-value); },
      setToCurrentTime() { set(Date.now() / 1000); },
      startTimer() { return timer((endLabels, seconds) => set(seconds)); },
    };
  }
}

// What Histogram and Summary share: observe([labels], value), startTimer, and children; they
// differ in the family they register and the native write.
class Observed extends Metric {
  constructor(config, type, nativeType, buckets, reserved, write) {
    super(config, type, nativeType, nameOf(config), 0, buckets, reserved);
    this._write = write;
  }

  observe(labels, value) {
    [labels, value] = splitArgs(labels, value, undefined);
    this._childOf(labels).observe(value);
  }

  startTimer(labels) {
    return timer(
        (endLabels, seconds) => this.observe(mergeLabels(labels, endLabels) || {}, seconds));
  }

  _makeChild(series) {
    const write = native.writer(this._write, series);
    return {
      observe(value) {
        checkNumber(value);
        write(value);
      },
      startTimer() { return timer((endLabels, seconds) => write(seconds)); },
    };
  }
}

class Histogram extends Observed {
  constructor(config) {
    checkSumAggregator(config || {}, 'histogram');
    const buckets = [...((config && config.buckets) || DEFAULT_BUCKETS)].filter(
        (b) => b !== Infinity);
    for (let i = 1; i < buckets.length; ++i) {
      if (!(buckets[i - 1] < buckets[i])) throw new Error('shmetrics: buckets must increase');
    }
    super(config, 'histogram', native.HISTOGRAM, buckets, 'le', native.WRITE_HISTOGRAM_OBSERVE);
    this.buckets = buckets;
  }
}

// Count and sum of observations; the region keeps no quantiles (prom-client's percentiles,
// maxAgeSeconds and ageBuckets are refused rather than ignored).
class Summary extends Observed {
  constructor(config) {
    checkSumAggregator(config || {}, 'summary');
    for (const option of ['percentiles', 'maxAgeSeconds', 'ageBuckets']) {
      if (config && config[option] !== undefined) {
        throw new Error(`shmetrics: a summary keeps count and sum only; '${option}' is not ` +
                        'supported (use a Histogram for quantiles)');
      }
    }
    super(config, 'summary', native.SUMMARY, null, 'quantile', native.WRITE_SUMMARY_OBSERVE);
  }
}

const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';
const GATEWAY_TIMEOUT_MS = 10000;

// The gateway's exposition of the attached region in `contentType`: resolves to the body, rejects
// naming the URL when no gateway answers, it answers other than 200, or it serves another region.
// A process that has no metrics of its own (a cluster primary) need not attach: the region is
// then SHMETRICS_REGION's.
function fetchExposition(contentType) {
  const region = attachedRegion || process.env.SHMETRICS_REGION;
  if (!region) {
    return Promise.reject(new Error('shmetrics: register.metrics(): no region: set ' +
                                    'SHMETRICS_REGION or call attach(name)'));
  }
  let url;
  try {
    url = gatewayUrl ||
          (process.env.SHMETRICS_GATEWAY_URL ?
               parseGatewayUrl(process.env.SHMETRICS_GATEWAY_URL, 'SHMETRICS_GATEWAY_URL') :
               new URL(DEFAULT_GATEWAY_URL));
  } catch (e) {
    return Promise.reject(e);
  }
  const accept = contentType === OPENMETRICS_CONTENT_TYPE ?
                     'application/openmetrics-text;version=1.0.0' : 'text/plain;version=0.0.4';
  const where = `the gateway at ${url.href} (region '${region}')`;
  return new Promise((resolve, reject) => {
    const req = (url.protocol === 'https:' ? https : http).get(
        url, {headers: {Accept: accept}, timeout: GATEWAY_TIMEOUT_MS}, (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('error', (e) => reject(new Error(`shmetrics: reading ${where}: ${e.message}`)));
          res.on('end', () => {
            const body = Buffer.concat(chunks).toString('utf8');
            if (res.statusCode !== 200) {
              reject(new Error(`shmetrics: ${where} answered ${res.statusCode}: ${body.trim()}`));
            } else if (res.headers['shmetrics-region'] !== region) {
              const served = res.headers['shmetrics-region'];
              reject(new Error(`shmetrics: ${where} serves ` +
                               (served ? `region '${served}'` : 'no shmetrics region') +
                               ': set SHMETRICS_GATEWAY_URL or attach(region, {gatewayUrl})'));
            } else {
              resolve(body);
            }
          });
        });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${GATEWAY_TIMEOUT_MS} ms`)));
    req.on('error', (e) => reject(new Error(
        `shmetrics: no exposition from ${where}: ${e.message} (is shmetrics-gateway running ` +
        'there? set SHMETRICS_GATEWAY_URL or attach(region, {gatewayUrl}))')));
  });
}

// Only the families named in `names` of a text or OpenMetrics body. A family's lines follow its
// `# TYPE`/`# HELP`/`# UNIT` lines; OpenMetrics names a counter family without `_total`.
function selectFamilies(body, names) {
  const out = [];
  let keep = false;
  for (const line of body.split('\n')) {
    const descriptor = /^# (?:TYPE|HELP|UNIT) ([^ ]+)/.exec(line);
    if (descriptor !== null) {
      keep = names.has(descriptor[1]) || names.has(`${descriptor[1]}_total`);
    } else if (line === '# EOF') {
      keep = true;
    }
    if (keep && line !== '') out.push(line);
  }
  return out.length ? out.join('\n') + '\n' : '';
}

const NOT_IN_A_SHARED_REGION =
    'series in a shared region cannot be removed or reset: they are summed over every worker, ' +
    'and the gateway keeps the counts of dead ones';

// prom-client's Registry. Every metric lives in the region whatever its `registers`; a registry
// lists the metrics this process created in it. metrics() is the gateway's exposition of the
// region: all of it for the default `register`, only this registry's families for another.
class Registry {
  constructor(contentType = PROMETHEUS_CONTENT_TYPE) {
    this.setContentType(contentType);
    this._metrics = new Map();
  }

  get contentType() { return this._contentType; }

  setContentType(contentType) {
    if (contentType !== PROMETHEUS_CONTENT_TYPE && contentType !== OPENMETRICS_CONTENT_TYPE) {
      throw new Error(`Content type ${contentType} is unsupported`);
    }
    this._contentType = contentType;
  }

  registerMetric(metric) {
    const existing = this._metrics.get(metric.name);
    if (existing !== undefined && existing !== metric) {
      throw new Error(`A metric with the name ${metric.name} has already been registered.`);
    }
    this._metrics.set(metric.name, metric);
  }

  getSingleMetric(name) { return this._metrics.get(name); }
  getMetricsAsArray() { return [...this._metrics.values()]; }

  async metrics() {
    const body = await fetchExposition(this._contentType);
    if (this === register) return body;
    return selectFamilies(body, new Set(this.getMetricsAsArray().map((m) => m._registeredName)));
  }

  removeSingleMetric(name) {
    throw new Error(`shmetrics: removeSingleMetric('${name}'): ${NOT_IN_A_SHARED_REGION}`);
  }
  clear() { throw new Error(`shmetrics: register.clear(): ${NOT_IN_A_SHARED_REGION}`); }
  resetMetrics() { throw new Error(`shmetrics: resetMetrics(): ${NOT_IN_A_SHARED_REGION}`); }
}
Registry.PROMETHEUS_CONTENT_TYPE = PROMETHEUS_CONTENT_TYPE;
Registry.OPENMETRICS_CONTENT_TYPE = OPENMETRICS_CONTENT_TYPE;

const register = new Registry();

// prom-client's AggregatorRegistry, for a cluster primary that still serves the cluster's
// metrics: clusterMetrics() is the gateway's merge of the region, with no IPC to the workers
// (which need not, and do not, answer the primary).
class AggregatorRegistry extends Registry {
  clusterMetrics() { return fetchExposition(this.contentType); }
  static setRegistries() {}
}

// prom-client's bucket generators, with its error texts.
function linearBuckets(start, width, count) {
  if (count < 1) throw new Error('Linear buckets needs a positive count');
  return Array.from({length: count}, (_, i) => start + i * width);
}

function exponentialBuckets(start, factor, count) {
  if (start <= 0) throw new Error('Exponential buckets needs a positive start');
  if (count < 1) throw new Error('Exponential buckets needs a positive count');
  if (factor <= 1) throw new Error('Exponential buckets needs a factor greater than 1');
  return Array.from({length: count}, (_, i) => start * factor ** i);
}

// From now on `require('prom-client')` anywhere in this process returns this module, so code
// written for prom-client (express-prom-bundle, NestJS modules) writes into the region. Refused
// once prom-client itself is loaded: metrics it made would stay outside the region, unseen.
function install() {
  if (Module._resolveFilename.shmetrics) return;
  const loaded = Object.keys(require.cache).find((f) => f.includes('/node_modules/prom-client/'));
  if (loaded !== undefined) {
    throw new Error(`shmetrics: install(): prom-client is already loaded (${loaded}); call ` +
                    "install() before anything requires 'prom-client', or start node with " +
                    '-r shmetrics/register');
  }
  const resolve = Module._resolveFilename;
  const self = __filename;
  Module._resolveFilename = function resolveToShmetrics(request, ...rest) {
    return request === 'prom-client' ? self : resolve.call(this, request, ...rest);
  };
  Module._resolveFilename.shmetrics = true;
}

// prom-client's default metrics, merged as workers' metrics can be (default_metrics.js).
function collectDefaultMetrics(config) {
  defaultMetrics.collectDefaultMetrics(module.exports, config);
}

module.exports = {
  attach, install, collectDefaultMetrics, Counter, Gauge, Histogram, Summary, Registry, register,
  AggregatorRegistry, linearBuckets, exponentialBuckets, DEFAULT_BUCKETS,
  validateMetricName: (name) => METRIC_NAME_RE.test(name),
  prometheusContentType: PROMETHEUS_CONTENT_TYPE,
  openMetricsContentType: OPENMETRICS_CONTENT_TYPE,
};
