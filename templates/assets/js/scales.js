/* scales.js: pure chart maths shared by the timeline, threadpool and resource charts. */
(function (A) {
  'use strict';

  var TIME_STEPS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];

  // Seconds between axis ticks: the first step that leaves >= 80 px between labels.
  function niceStep(span, width) {
    for (var i = 0; i < TIME_STEPS.length; i++) if (width / (span / TIME_STEPS[i]) >= 80) return TIME_STEPS[i];
    return TIME_STEPS[TIME_STEPS.length - 1];
  }

  // Tick positions of a time axis `span` seconds wide drawn over `width` px.
  function timeTicks(start, span, width) {
    var step = niceStep(span, width);
    var ticks = [];
    for (var t = 0; t <= span + 1e-9; t += step) {
      ticks.push({ x: Math.round(t / span * width) + 0.5, t: start + t });
    }
    return ticks;
  }

  // Gridline step for counts and sizes: 1, 2, 5, 10, 20, 50, ... giving at most `lines`.
  function niceCount(max, lines) {
    var step = 1;
    while (max / step > lines) {
      var k = String(step).charAt(0);
      step = k === '2' ? step * 2.5 : step * 2;
    }
    return step;
  }

  // Bin under pixel x of a chart `width` px wide with `bins` columns (clamped).
  function binAt(x, width, bins) {
    return Math.min(bins - 1, Math.max(0, Math.floor(x / width * bins)));
  }

  // Heights (px) of one timeline column: blocked at the bottom, busy above it.
  function stackHeights(idle, busy, blocked, height) {
    var total = idle + busy + blocked;
    if (total <= 0) return null;
    return { blocked: height * blocked / total, busy: height * busy / total };
  }

  // The episode at time t (within tol seconds), nearest first; episodes sorted by start.
  function episodeAt(ep, t, tol) {
    var lo = 0, hi = ep.start_s.length - 1, last = -1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (ep.start_s[mid] <= t + tol) { last = mid; lo = mid + 1; } else hi = mid - 1;
    }
    // Look back over episodes that may still overlap t.
    var best = -1, bestDist = Infinity;
    for (var k = last; k >= 0 && k > last - 64; k--) {
      var s = ep.start_s[k], e = s + ep.ms[k] / 1000;
      var dist = t < s ? s - t : (t > e ? t - e : 0);
      if (dist <= tol && dist < bestDist) { best = k; bestDist = dist; }
    }
    return best;
  }

  // The threadpool chart's y range: to the limit when near it, else to what was busy
  // (a flat line at the bottom says nothing) with the limit named instead of drawn.
  function threadpoolScale(tp) {
    var peak = 0;
    for (var i = 0; i < tp.mean_busy.length; i++) peak = Math.max(peak, tp.max_busy[i], tp.mean_busy[i]);
    if (peak < tp.limit * 0.5) return { max: Math.max(peak * 1.25, 2), showsLimit: false, peak: peak };
    return { max: Math.max(tp.limit, peak) * 1.06, showsLimit: true, peak: peak };
  }

  // Threadpool gridlines below the top, leaving out one that would sit on the limit line.
  function threadpoolGrid(sc, limit) {
    var step = niceCount(sc.max, 4);
    var grid = [];
    for (var g = step; g < sc.max; g += step) {
      if (!(sc.showsLimit && Math.abs(g - limit) < step * 0.4)) grid.push(g);
    }
    return grid;
  }

  // A resource chart's y range from its values (nulls are missed polls) and fitted line.
  function resourceScale(metric) {
    var lo = Infinity, hi = -Infinity;
    metric.values.forEach(function (v) { if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
    if (metric.fit.length) {
      lo = Math.min(lo, metric.fit[1], metric.fit[3]);
      hi = Math.max(hi, metric.fit[1], metric.fit[3]);
    }
    if (lo === Infinity) { lo = 0; hi = 1; }
    if (metric.unit === 'MiB') {
      // Memory from near its floor; a flat series sits mid-height in a 10% band.
      var band = Math.max(1, hi * 0.1);
      if (hi - lo < band) { var mid = (hi + lo) / 2; lo = Math.max(0, mid - band / 2); hi = mid + band / 2; }
    } else {
      lo = 0; // counts from zero: growth reads at its true size
      hi = Math.max(hi, 1);
    }
    // Round the ends to a step that gives a few gridlines: the labels read as round numbers.
    var step = niceCount(hi - lo, 3);
    return { lo: Math.floor(lo / step) * step, hi: Math.max(Math.ceil(hi / step) * step, lo + step), step: step };
  }

  // CSS width of a share bar (0..1 clamped, as a percentage with two decimals).
  function barWidth(share) {
    return Math.max(0, Math.min(100, share * 100)).toFixed(2) + '%';
  }

  A.scales = {
    niceStep: niceStep, timeTicks: timeTicks, niceCount: niceCount, binAt: binAt,
    stackHeights: stackHeights, episodeAt: episodeAt, threadpoolScale: threadpoolScale,
    threadpoolGrid: threadpoolGrid, resourceScale: resourceScale, barWidth: barWidth
  };
})(globalThis.AsgiprofReport = globalThis.AsgiprofReport || {});
