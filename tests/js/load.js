// Loads the report's modules the way the page gets them: every file of load-order.txt, in
// order, into one namespace (globalThis.AsgiprofReport). main.js starts nothing without a
// document.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const DIR = path.join(__dirname, '..', '..', 'templates', 'assets', 'js');

function moduleNames() {
  return fs.readFileSync(path.join(DIR, 'load-order.txt'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
}

for (const name of moduleNames()) require(path.join(DIR, name));

module.exports = { A: globalThis.AsgiprofReport, DIR, moduleNames };
