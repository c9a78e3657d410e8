'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { A } = require('./load.js');
const { NODE, build, frames } = require('./fixture.js');

const L = A.flameLayout;

function rectOf(rects, node) {
  const i = rects.node.indexOf(node);
  return i < 0 ? null : { x: rects.x[i], w: rects.w[i], d: rects.d[i], collapsed: rects.collapsed[i] };
}

test('a view sums its stacks up the tree; self time is what children leave', () => {
  const { tree, totals } = build();
  assert.deepEqual(Array.from(totals), [100, 100, 50, 20, 30, 30, 50]);
  assert.equal(A.tree.selfMs(tree, totals, NODE.handler), 0);
  assert.equal(A.tree.selfMs(tree, totals, NODE.sleep), 30);
  assert.deepEqual(Array.from(tree.depth), [0, 1, 2, 3, 3, 4, 2]);
  assert.ok(tree.anyUser);
});

test('full stacks: widths proportional to time, children inside their parent, rows left to right', () => {
  const { tree, totals } = build();
  const R = L.layout(tree, totals, { zoom: 0, fromUser: false, width: 1000 });
  assert.equal(R.maxDepth, 4);
  assert.deepEqual(rectOf(R, NODE.root), { x: 0, w: 1000, d: 0, collapsed: 0 });
  assert.deepEqual(rectOf(R, NODE.handler), { x: 0, w: 500, d: 2, collapsed: 0 });
  assert.deepEqual(rectOf(R, NODE.idle), { x: 500, w: 500, d: 2, collapsed: 0 });
  assert.deepEqual(rectOf(R, NODE.helper), { x: 0, w: 200, d: 3, collapsed: 0 });
  assert.deepEqual(rectOf(R, NODE.query), { x: 200, w: 300, d: 3, collapsed: 0 });
  assert.deepEqual(rectOf(R, NODE.sleep), { x: 200, w: 300, d: 4, collapsed: 0 });
  for (let i = 0; i < R.node.length; i++) {
    const n = R.node[i];
    if (n === 0) continue;
    const p = rectOf(R, tree.parent[n]);
    assert.ok(R.x[i] >= p.x - 1e-9 && R.x[i] + R.w[i] <= p.x + p.w + 1e-9, 'inside parent');
    assert.equal(R.d[i], p.d + 1);
  }
  R.rows.forEach((row) => {
    for (let k = 1; k < row.length; k++) assert.ok(R.x[row[k]] >= R.x[row[k - 1]] + R.w[row[k - 1]] - 1e-9);
  });
});

test('start at your code: frames above it are left out, stacks without it collapse', () => {
  const { tree, totals } = build();
  const R = L.layout(tree, totals, { zoom: 0, fromUser: true, width: 1000 });
  assert.equal(rectOf(R, NODE.run), null);
  assert.deepEqual(rectOf(R, NODE.handler), { x: 0, w: 500, d: 1, collapsed: 0 });
  assert.deepEqual(rectOf(R, NODE.idle), { x: 500, w: 500, d: 1, collapsed: 1 });
  assert.deepEqual(rectOf(R, NODE.sleep), { x: 200, w: 300, d: 3, collapsed: 0 });
  assert.equal(R.maxDepth, 3);
});

test('zoom: the frame spans the width, its ancestors above it, others gone', () => {
  const { tree, totals } = build();
  const R = L.layout(tree, totals, { zoom: NODE.query, fromUser: true, width: 800 });
  assert.deepEqual(R.node.slice().sort(), [0, 1, 2, 4, 5]);
  assert.deepEqual(rectOf(R, NODE.query), { x: 0, w: 800, d: 3, collapsed: 0 });
  assert.deepEqual(rectOf(R, NODE.handler), { x: 0, w: 800, d: 2, collapsed: 0 });
  assert.deepEqual(rectOf(R, NODE.sleep), { x: 0, w: 800, d: 4, collapsed: 0 });
});

test('frames narrower than half a pixel are not drawn, nor their children; siblings keep their place', () => {
  const { tree } = build();
  const view = { nodes: [NODE.helper, NODE.sleep], ms: [0.1, 999.9] };
  const totals = A.tree.viewTotals(tree, view);
  const R = L.layout(tree, totals, { zoom: 0, fromUser: false, width: 1000 });
  assert.equal(rectOf(R, NODE.helper), null);
  assert.ok(Math.abs(rectOf(R, NODE.query).x - 0.1) < 1e-9);
  const empty = L.layout(tree, new Float64Array(tree.size), { zoom: 0, fromUser: false, width: 1000 });
  assert.equal(empty.maxDepth, -1);
  assert.equal(empty.node.length, 0);
});

test('hit test: the rectangle under the pointer by row and x, or -1', () => {
  const { tree, totals } = build();
  const R = L.layout(tree, totals, { zoom: 0, fromUser: false, width: 1000 });
  const row = L.ROW;
  assert.equal(R.node[L.hit(R, 250, 3 * row + 5)], NODE.query);
  assert.equal(R.node[L.hit(R, 199.9, 3 * row + 5)], NODE.helper);
  assert.equal(R.node[L.hit(R, 999, 2 * row)], NODE.idle);
  assert.equal(L.hit(R, 600, 3 * row + 5), -1); // idle has no children
  assert.equal(L.hit(R, 10, 9 * row), -1);
});

test('breadcrumbs keep the root and the last four of a deep zoom', () => {
  const { tree } = build();
  assert.deepEqual(A.tree.crumbs(tree, NODE.sleep), { chain: [0, 1, 2, 4, 5], hidden: [] });
  const deep = A.tree.buildTree({ parent: [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9], frame: [-1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] }, [1]);
  assert.deepEqual(A.tree.crumbs(deep, 10), { chain: [0, 7, 8, 9, 10], hidden: [1, 2, 3, 4, 5, 6] });
});

test('labels fit their room whole, cut with an ellipsis, or not at all', () => {
  const measure = (s) => s.length * 6;
  assert.equal(L.fitText('abc', 13, 6, measure), '');
  assert.equal(L.fitText('abc', 40, 6, measure), 'abc');
  assert.equal(L.fitText('abcdefghij', 40, 6, measure), 'abcde\u2026');
  assert.equal(L.fitText('abcdefghij', 14, 6, measure), '');
});

test('search is plain text over "name file:line"; nested matches count once', () => {
  const { table, tree, totals } = build();
  const texts = A.tree.searchTexts(table);
  const found = A.tree.matchFrames(texts, 'main.py');
  assert.equal(found.hits, 4); // run and idle (uvicorn/main.py), handler, helper
  const mine = A.tree.matchFrames(texts, '/app/main.py');
  assert.deepEqual(Array.from(mine.match), [0, 1, 0, 0, 1, 0]);
  assert.equal(A.tree.matchedMs(tree, totals, mine.match), 50); // handler, helper inside it
  assert.equal(A.tree.matchFrames(texts, '(').hits, 0); // regex syntax is just text
  assert.equal(A.tree.matchFrames(texts, '.*').hits, 0);
  assert.equal(A.tree.matchFrames(texts, 'time.py:40').hits, 1);
});

test('frame names, places and colours', () => {
  const { table } = build();
  assert.equal(table.label(1), 'handler (main.py:20)');
  assert.equal(table.where(3), '/usr/lib/python3.12/time.py:40');
  assert.equal(table.kindLabel(3), 'standard library');
  assert.equal(A.tree.frameTable([], { fn: [5], file: [0], line: [1], kind: [0] }).name(0), '(unknown)');
  const marks = A.tree.culpritFrames([{ frames: [1, 4] }], frames.fn.length);
  assert.deepEqual(Array.from(marks), [0, 1, 0, 0, 1, 0]);
  const colors = A.tree.frameColors(table, marks);
  assert.match(colors.fill[1], /^hsl\(0, 74%, 5\d%\)$/);
  assert.equal(colors.ink[1], '#ffffff');
  assert.match(colors.fill[0], /^hsl\((18[6-9]|19\d|20\d), /); // a library: teal
  assert.match(colors.fill[3], /^hsl\((21\d|22\d|23[0-3]), /); // the standard library: grey-blue
  // Stable: the colour follows the name.
  assert.deepEqual(A.tree.frameColors(table, marks), colors);
});

test('what a rectangle looks like: search dims the rest, zoom dims ancestors, focus outlines', () => {
  const { table, tree, totals } = build();
  const colors = A.tree.frameColors(table, new Uint8Array(6));
  const R = L.layout(tree, totals, { zoom: 0, fromUser: true, width: 1000 });
  const scene = { tree, frames: table, colors, totals, viewLabel: 'All samples', zoom: 0, match: null, focus: null };
  const i = (n) => R.node.indexOf(n);
  assert.equal(A.flameDraw.label(scene, R, i(0)), 'All samples \u2014 100 ms');
  assert.equal(A.flameDraw.label(scene, R, i(NODE.idle)), '\u22ef no code of yours: idle (main.py:60)');
  assert.equal(A.flameDraw.label(scene, R, i(NODE.helper)), 'helper (main.py:50)');
  assert.deepEqual(A.flameDraw.look(scene, R, i(NODE.handler)), { fill: colors.fill[1], ink: colors.ink[1], alpha: 1, outline: false });
  const match = new Uint8Array(6); match[4] = 1;
  const searched = { ...scene, match };
  assert.equal(A.flameDraw.look(searched, R, i(NODE.helper)).fill, '#b148d2');
  assert.equal(A.flameDraw.look(searched, R, i(NODE.handler)).alpha, 0.35);
  const Z = L.layout(tree, totals, { zoom: NODE.query, fromUser: true, width: 1000 });
  const zoomed = { ...scene, zoom: NODE.query, focus: match };
  assert.equal(A.flameDraw.look(zoomed, Z, Z.node.indexOf(NODE.handler)).alpha, 0.55);
  assert.equal(A.flameDraw.look(zoomed, Z, Z.node.indexOf(NODE.query)).alpha, 1);
  assert.equal(A.flameDraw.look(zoomed, Z, Z.node.indexOf(NODE.query)).outline, false);
  const focused = { ...scene, focus: match };
  assert.equal(A.flameDraw.look(focused, R, i(NODE.helper)).outline, true);
});
