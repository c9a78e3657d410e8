// Function names, paths, routes, labels and source lines come from the profiled program:
// the page must show them as text. No module may use an HTML-parsing sink, and the DOM
// helpers put hostile text in as text (the fake DOM throws on innerHTML and inline handlers).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { A, DIR, moduleNames } = require('./load.js');
const { FakeDocument } = require('./fake-dom.js');

const EVIL = '<img src=x onerror=alert(1)>\'"&</script><script>alert(2)</script>';

test('every module in the js folder is loaded, and none parses HTML or evaluates text', () => {
  const files = fs.readdirSync(DIR).filter((f) => f.endsWith('.js')).sort();
  assert.deepEqual(moduleNames().slice().sort(), files);
  const sinks = /innerHTML|outerHTML|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment|\beval\s*\(|new Function|setTimeout\s*\(\s*['"]|\.srcdoc|<\/script/i;
  for (const f of files) {
    const text = fs.readFileSync(path.join(DIR, f), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
    assert.doesNotMatch(text, sinks, f);
    assert.doesNotMatch(text, /setAttribute\(\s*['"]on/i, f);
  }
});

test('el, stat and tagged rows keep hostile text as text', () => {
  const doc = new FakeDocument();
  const node = A.dom.el(doc, 'div', 'tt-title', EVIL);
  assert.equal(node.textContent, EVIL);
  assert.equal(node.children.length, 0);
  const s = A.dom.stat(doc, true, EVIL, EVIL, EVIL);
  assert.equal(s.textContent, EVIL + EVIL + EVIL);
  assert.equal(s.className, 'stat stat-bad');
  assert.equal(A.dom.taggedRow(doc, EVIL, EVIL).textContent, EVIL + EVIL);
});

test("a worker's label and a hostile metric label reach the page as text", () => {
  const doc = new FakeDocument();
  const host = doc.add('resources-charts');
  const app = {
    doc, win: {}, tip: { show() {}, hide() {} }, state: {}, act: {},
    data: {
      resources: {
        end_s: 10, warmup_s: 2,
        processes: [{
          pid: 7, t_s: [0, 5, 10],
          metrics: [{ id: EVIL, label: EVIL, unit: 'MiB', values: [1, 2, 3], fit: [], leak: false, slope_per_min: 0, r2: 0 }],
        }],
      },
    },
  };
  A.resources.init(app);
  assert.equal(app.state.resourceCharts.length, 1);
  const texts = host.all().map((n) => n._text).filter(Boolean);
  assert.ok(texts.includes(EVIL));
  const card = host.all().find((n) => n.className === 'res-chart');
  assert.equal(card.dataset.metric, EVIL);
  const canvas = host.all().find((n) => n.tagName === 'CANVAS');
  assert.equal(canvas.attributes['aria-label'], EVIL + ' of PID 7 over time');
  const stats = A.workers.statNodes(doc, { utilization: 0.5, blocked_ms: 3, episodes: 1, longest_block_ms: 3 });
  assert.deepEqual(stats.map((n) => n.textContent), ['50.0% loop utilization', 'blocked 3.0 ms', '1 episode', 'longest 3.0 ms']);
});

test('tooltips stay inside the window', () => {
  assert.deepEqual(A.dom.tipPosition(100, 100, 200, 50, 1000, 800), { x: 114, y: 114 });
  assert.deepEqual(A.dom.tipPosition(950, 780, 200, 50, 1000, 800), { x: 736, y: 716 });
  assert.deepEqual(A.dom.tipPosition(50, 10, 300, 50, 200, 800), { x: 8, y: 24 });
});
