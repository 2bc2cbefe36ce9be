'use strict';
// `node -r shmetrics/register app.js` (or NODE_OPTIONS='-r shmetrics/register', pm2's node_args):
// the app's own `require('prom-client')` gets shmetrics, with no change to its code. The region
// is SHMETRICS_REGION's.
require('./index.js').install();
