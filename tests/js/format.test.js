'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { A } = require('./load.js');

const F = A.format;

test('durations pick their unit and precision by size', () => {
  assert.equal(F.ms(0), '0.0 ms');
  assert.equal(F.ms(1.5), '1.5 ms');
  assert.equal(F.ms(9.96), '10.0 ms'); // rounds up across the branch, as format_ms does
  assert.equal(F.ms(250), '250 ms');
  assert.equal(F.ms(999.4), '999 ms');
  assert.equal(F.ms(1234), '1.23 s');
  assert.equal(F.ms(12345), '12.3 s');
  assert.equal(F.ms(59999.9), '60.0 s');
  assert.equal(F.ms(60000), '1 min 00 s');
  assert.equal(F.ms(125000), '2 min 05 s');
  assert.equal(F.ms(3725000), '62 min 05 s');
});

test('exact binary ties round to even, like Python (toFixed rounds them up)', () => {
  assert.equal((0.25).toFixed(1), '0.3'); // the behaviour `fixed` corrects
  assert.equal(F.fixed(0.25, 1), '0.2');
  assert.equal(F.fixed(0.75, 1), '0.8');
  assert.equal(F.fixed(12.5, 0), '12');
  assert.equal(F.fixed(13.5, 0), '14');
  assert.equal(F.fixed(2.5, 0), '2');
  assert.equal(F.fixed(1.125, 2), '1.12');
  // Not ties: the nearest double to 0.35 lies below it, to 0.45 above it.
  assert.equal(F.fixed(0.35, 1), '0.3');
  assert.equal(F.fixed(0.45, 1), '0.5');
  assert.equal(F.fixed(0.05, 1), '0.1');
  assert.equal(F.ms(12.5), '12 ms');
  assert.equal(F.ms(13.5), '14 ms');
  assert.equal(F.ms(90500), '1 min 30 s'); // round(90.5) is 90 in Python
  assert.equal(F.pct(0.00125), '0.1%');
});

test('shares: one decimal, tiny non-zero shares stay visible', () => {
  assert.equal(F.pct(0), '0.0%');
  assert.equal(F.pct(0.0005), '<0.1%');
  assert.equal(F.pct(0.001), '0.1%');
  assert.equal(F.pct(0.1234), '12.3%');
  assert.equal(F.pct(1), '100.0%');
});

test('counts group digits with thin spaces, charts with commas', () => {
  assert.equal(F.count(7), '7');
  assert.equal(F.count(1234567), '1\u2009234\u2009567');
  assert.equal(F.grouped(1234.6), '1,235');
  assert.equal(F.samples(1000, 100), ' \u00b7 \u2248100 samples');
  assert.equal(F.samples(1000, 0), '');
});

test('moments on the time axis', () => {
  assert.equal(F.seconds(0), '0 s');
  assert.equal(F.seconds(2.5), '2.5 s');
  assert.equal(F.seconds(12.4), '12 s');
  assert.equal(F.seconds(65), '1:05');
  assert.equal(F.seconds(119.7), '2:00'); // 60 seconds carry into the minute
});

test('resource values, axis labels and rates', () => {
  assert.equal(F.value(null, 'MiB'), '\u2013');
  assert.equal(F.value(5.25, 'MiB'), '5.3 MiB');
  assert.equal(F.value(1500, 'MiB'), '1.46 GiB');
  assert.equal(F.value(123.4, 'MiB'), '123 MiB');
  assert.equal(F.value(4321, 'count'), '4,321');
  assert.equal(F.axisValue(20480, 'MiB'), '20 GiB');
  assert.equal(F.axisValue(2.5, 'MiB'), '2.5 MiB');
  assert.equal(F.axisValue(40, 'MiB'), '40 MiB');
  assert.equal(F.rate(0.01, 'MiB'), '\u00b10.0 MiB/min');
  assert.equal(F.rate(2, 'MiB'), '+2.0 MiB/min');
  assert.equal(F.rate(-3, 'fds'), '\u22123/min');
});

test('basename of POSIX and Windows paths', () => {
  assert.equal(F.basename('/srv/app/main.py'), 'main.py');
  assert.equal(F.basename('C:\\app\\main.py'), 'main.py');
  assert.equal(F.basename('main.py'), 'main.py');
});
