'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { A } = require('./load.js');

const T = A.tables;

test("a worker's culprit table: its own ranking and figures, unknown rows skipped", () => {
  const worker = {
    culprits: [
      { culprit: 3, blocked_ms: 1500, episodes: 1200, max_ms: 12.5 },
      { culprit: 9, blocked_ms: 900, episodes: 2, max_ms: 450 }, // not a row of the table
      { culprit: 0, blocked_ms: 40, episodes: 1, max_ms: 40 },
    ],
  };
  const shown = { 0: {}, 1: {}, 3: {} };
  assert.deepEqual(T.workerRanking(worker, shown), [
    { culprit: 3, cells: ['1.50 s', '1\u2009200', '12 ms'] },
    { culprit: 0, cells: ['40 ms', '1', '40 ms'] },
  ]);
  assert.deepEqual(T.workerRanking({ culprits: [] }, shown), []);
});

test('the stack panel marks the culprit line (its last occurrence) and library lines', () => {
  const c = {
    function: 'f', file: '/app/a.py', line: 3,
    stack: ['main (/app/a.py:1)', 'f (/app/a.py:3)', 'g (/venv/lib/python3.12/site-packages/x.py:9)', 'f (/app/a.py:3)'],
  };
  const hit = T.stackHit(c);
  assert.equal(hit, 3);
  assert.deepEqual(c.stack.map((s, k) => T.stackLineClass(s, k, hit)), ['', '', 'lib', 'hit']);
  assert.equal(T.stackLineClass('C:\\Python312\\Lib\\site-packages\\y.py', 0, -1), 'lib');
  assert.equal(T.stackLineClass('/usr/lib/python3.11/asyncio/events.py', 0, -1), 'lib');
});

test('the culprit title names middleware and dependencies it runs in', () => {
  const c = { rank: 2, function: 'check', file: 'auth.py', line: 7, context: 'middleware', context_name: 'AuthMiddleware' };
  assert.equal(T.culpritTitle(c), '#2 check (auth.py:7) \u2014 in middleware AuthMiddleware');
  assert.equal(T.culpritTitle({ ...c, context: 'endpoint' }), '#2 check (auth.py:7)');
});

test('selecting a culprit opens the narrowest view with time at its node', () => {
  const totals = { blocking: [5, 0, 0], loop: [5, 3, 0], all: [9, 3, 2] };
  const has = (id) => id in totals;
  const of = (id) => totals[id];
  assert.deepEqual(T.focusView({ node: 1 }, has, of, 'all'), { view: 'loop', zoom: 1 });
  assert.deepEqual(T.focusView({ node: 2 }, has, of, 'all'), { view: 'all', zoom: 2 });
  assert.deepEqual(T.focusView({ node: -1 }, has, of, 'all'), { view: 'blocking', zoom: 0 });
  assert.deepEqual(T.focusView({ node: -1 }, (id) => id === 'all', of, 'all'), { view: 'all', zoom: 0 });
});
