'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { A } = require('./load.js');

const S = A.scales;

test('time axis: ticks at least 80 px apart, on round steps, from 0 to the span', () => {
  assert.equal(S.niceStep(10, 800), 1);
  assert.equal(S.niceStep(10, 400), 2);
  assert.equal(S.niceStep(600, 800), 60);
  assert.equal(S.niceStep(1e6, 100), 7200); // longer than the table: the largest step
  const ticks = S.timeTicks(100, 10, 800);
  assert.deepEqual(ticks.map((t) => t.t), [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110]);
  assert.equal(ticks[0].x, 0.5);
  assert.equal(ticks[10].x, 800.5);
  for (let i = 1; i < ticks.length; i++) assert.ok(ticks[i].x - ticks[i - 1].x >= 79.5);
});

test('count gridlines: 1, 2, 5, 10, 20, 50 ... with at most `lines` of them', () => {
  assert.equal(S.niceCount(3, 4), 1);
  assert.equal(S.niceCount(9, 4), 5);
  assert.equal(S.niceCount(40, 4), 10);
  assert.equal(S.niceCount(41, 4), 20);
  assert.equal(S.niceCount(4000, 3), 2000);
});

test('binning: pixel to bin (clamped) and stacked column heights', () => {
  assert.equal(S.binAt(0, 100, 10), 0);
  assert.equal(S.binAt(55, 100, 10), 5);
  assert.equal(S.binAt(100, 100, 10), 9);
  assert.equal(S.binAt(-3, 100, 10), 0);
  assert.equal(S.stackHeights(0, 0, 0, 90), null);
  assert.deepEqual(S.stackHeights(50, 30, 20, 90), { blocked: 18, busy: 27 });
});

const EP = { start_s: [1, 2, 2.05, 5], ms: [100, 500, 10, 50], culprit: [0, 1, -1, 0], route: [0, -1, 0, 0] };

test('the episode under the pointer: inside one, nearest within tolerance, else none', () => {
  assert.equal(S.episodeAt(EP, 1.05, 0.01), 0);
  assert.equal(S.episodeAt(EP, 2.055, 0.01), 2); // inside both 1 and 2: the later start wins ties
  assert.equal(S.episodeAt(EP, 2.4, 0.01), 1); // only the long one still runs
  assert.equal(S.episodeAt(EP, 1.108, 0.01), 0); // just after its end
  assert.equal(S.episodeAt(EP, 3.5, 0.01), -1);
  assert.equal(S.episodeAt({ start_s: [], ms: [] }, 1, 1), -1);
});

const TL = { start_s: 10, width_s: 0.5, idle_ms: [500, 0, 250], busy_ms: [0, 0, 125], blocked_ms: [0, 0, 125] };

test('timeline hit test and bin summary', () => {
  const hit = A.timeline.hitAt(TL, EP, 150, 300); // the middle of 1.5 s
  assert.equal(hit.t, 10.75);
  assert.equal(hit.bin, 1);
  const b = A.timeline.binSummary(TL, 2);
  assert.deepEqual(b, { t0: 11, t1: 11.5, shares: { idle: 0.5, busy: 0.25, blocked: 0.25 } });
  assert.equal(A.timeline.binSummary(TL, 1).shares, null);
});

test("a worker's timeline and episodes: its bins, its episodes in start order", () => {
  const own = { idle_ms: [1, 2, 3], busy_ms: [0, 0, 0], blocked_ms: [4, 5, 6] };
  const tl = A.workers.workerTimeline(TL, own);
  assert.deepEqual(tl, { start_s: 10, width_s: 0.5, idle_ms: [1, 2, 3], busy_ms: [0, 0, 0], blocked_ms: [4, 5, 6] });
  const ep = A.workers.workerEpisodes(EP, [1, 3]);
  assert.deepEqual(ep, { start_s: [2, 5], ms: [500, 50], culprit: [1, 0], route: [-1, 0] });
});

test('threadpool scale: near the limit it is drawn, far below it is named', () => {
  const far = { limit: 40, mean_busy: [0.5, 1], max_busy: [1, 3], start_s: 0, width_s: 1 };
  const sc = S.threadpoolScale(far);
  assert.deepEqual(sc, { max: 3.75, showsLimit: false, peak: 3 });
  assert.equal(A.threadpool.limitLabel(far, sc), 'limit 40 (off scale: at most 3 busy)');
  const near = { limit: 4, mean_busy: [2, 3.5], max_busy: [3, 4], start_s: 0, width_s: 1 };
  const sn = S.threadpoolScale(near);
  assert.ok(sn.showsLimit);
  assert.ok(Math.abs(sn.max - 4.24) < 1e-9);
  // Steps of 2 up to 4.24; no gridline on top of the dashed limit line.
  assert.deepEqual(S.threadpoolGrid(sn, 4), [2]);
  assert.deepEqual(S.threadpoolGrid({ max: 4.24, showsLimit: false }, 4), [2, 4]);
});

test('threadpool axis follows the timeline; bins by time', () => {
  const tp = { limit: 4, mean_busy: [1, 1, 1, 1], max_busy: [1, 1, 1, 1], start_s: 9, width_s: 1 };
  assert.deepEqual(A.threadpool.axis(TL, tp), { start: 10, span: 1.5 });
  const noLoop = { start_s: 0, width_s: 1, idle_ms: [], busy_ms: [], blocked_ms: [] };
  assert.deepEqual(A.threadpool.axis(noLoop, tp), { start: 9, span: 4 });
  assert.equal(A.threadpool.binAt(tp, 8.9), -1);
  assert.equal(A.threadpool.binAt(tp, 10.5), 1);
  assert.equal(A.threadpool.binAt(tp, 13), -1);
});

test('resource scale: memory from near its floor, counts from zero, round ends', () => {
  const mem = { unit: 'MiB', values: [100, null, 104], fit: [] };
  const sm = S.resourceScale(mem);
  assert.ok(sm.lo <= 100 && sm.hi >= 104 && sm.lo > 0);
  assert.equal(sm.lo % sm.step, 0);
  const flat = { unit: 'MiB', values: [50, 50], fit: [] };
  const sf = S.resourceScale(flat);
  assert.ok(sf.lo < 50 && sf.hi > 50); // a flat series sits inside a band
  const fds = { unit: 'count', values: [7, 9], fit: [0, 7, 10, 12] };
  const sc = S.resourceScale(fds);
  assert.equal(sc.lo, 0);
  assert.ok(sc.hi >= 12); // the fitted line stays on the chart
  assert.deepEqual(S.resourceScale({ unit: 'count', values: [null], fit: [] }), { lo: 0, hi: 1, step: 1 });
  assert.equal(A.resources.lastValue([1, 2, null]), 2);
  assert.equal(A.resources.lastValue([null]), null);
  assert.equal(A.resources.nearestPoll([0, 1, 2], (t) => t * 100, 140), 1);
});

test('share bars are clamped percentages', () => {
  assert.equal(S.barWidth(0.5), '50.00%');
  assert.equal(S.barWidth(1.5), '100.00%');
  assert.equal(S.barWidth(-1), '0.00%');
});
