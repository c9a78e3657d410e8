/* threadpool.js: busy threadpool workers over time (mean as an area, most at once as a
 * step line, the limit dashed), on the event-loop timeline's time axis so the two line up.
 * Offers app.act.drawThreadpool.
 */
(function (A) {
  'use strict';

  var TP_H = 150, TP_TOP = 14, TP_AXIS = 20; // the top 12 px mark stretches at the limit
  var FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif';

  // The shared axis: the timeline's when it has bins, else the threadpool's own.
  function axis(tl, tp) {
    var bins = tl.idle_ms.length;
    return bins
      ? { start: tl.start_s, span: bins * tl.width_s }
      : { start: tp.start_s, span: tp.mean_busy.length * tp.width_s };
  }

  // The threadpool bin at time t, or -1.
  function binAt(tp, t) {
    var b = Math.floor((t - tp.start_s) / tp.width_s);
    return b >= 0 && b < tp.mean_busy.length ? b : -1;
  }

  function limitLabel(tp, sc) {
    return sc.showsLimit ? 'limit ' + tp.limit : 'limit ' + tp.limit + ' (off scale: at most ' + Math.round(sc.peak) + ' busy)';
  }

  // Draws and returns true, or returns false with a note when there is nothing to draw.
  function draw(ctx, tp, ax, width) {
    var bins = tp.mean_busy.length;
    ctx.clearRect(0, 0, width, TP_H);
    ctx.font = FONT;
    var plotH = TP_H - TP_TOP - TP_AXIS;
    var bottom = TP_TOP + plotH;
    if (!bins || ax.span <= 0) {
      ctx.fillStyle = '#647084';
      ctx.fillText('No worker-thread samples.', 8, TP_TOP + plotH / 2);
      return false;
    }
    var sc = A.scales.threadpoolScale(tp);
    var yMax = sc.max;
    function y(v) { return bottom - Math.min(v, yMax) / yMax * plotH; }
    function x(t) { return (t - ax.start) / ax.span * width; }
    ctx.fillStyle = '#f8f9fb';
    ctx.fillRect(0, TP_TOP, width, plotH);
    // Gridlines (labelled once the data is drawn, so the labels stay on top).
    var grid = A.scales.threadpoolGrid(sc, tp.limit);
    ctx.strokeStyle = '#e6e9ef';
    ctx.lineWidth = 1;
    grid.forEach(function (v) {
      var gy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(0, gy); ctx.lineTo(width, gy); ctx.stroke();
    });
    // Stretches with every worker busy: a faint shade and a red mark above the plot.
    for (var i = 0; i < bins; i++) {
      if (tp.max_busy[i] >= tp.limit) {
        var x0 = x(tp.start_s + i * tp.width_s);
        var w = x(tp.start_s + (i + 1) * tp.width_s) - x0 + 0.6;
        ctx.fillStyle = '#fbe3e3';
        ctx.fillRect(x0, TP_TOP, w, plotH);
        ctx.fillStyle = '#e03e3e';
        ctx.fillRect(x0, 2, w, 8);
      }
    }
    // Average busy workers per slice: a filled step area.
    ctx.beginPath();
    ctx.moveTo(x(tp.start_s), bottom);
    for (var k = 0; k < bins; k++) {
      var t0 = tp.start_s + k * tp.width_s;
      ctx.lineTo(x(t0), y(tp.mean_busy[k]));
      ctx.lineTo(x(t0 + tp.width_s), y(tp.mean_busy[k]));
    }
    ctx.lineTo(x(tp.start_s + bins * tp.width_s), bottom);
    ctx.closePath();
    ctx.fillStyle = '#a9bdf0';
    ctx.fill();
    // Most busy at once: a step line above it.
    ctx.beginPath();
    for (var m = 0; m < bins; m++) {
      var s0 = tp.start_s + m * tp.width_s;
      if (m === 0) ctx.moveTo(x(s0), y(tp.max_busy[m]));
      else ctx.lineTo(x(s0), y(tp.max_busy[m]));
      ctx.lineTo(x(s0 + tp.width_s), y(tp.max_busy[m]));
    }
    ctx.strokeStyle = '#23408e';
    ctx.lineWidth = 1.25;
    ctx.stroke();
    // The limit: a dashed line with its label, or a note when it is far off the scale.
    var label = limitLabel(tp, sc);
    var lw = ctx.measureText(label).width;
    var ly = sc.showsLimit ? Math.round(y(tp.limit)) + 0.5 : TP_TOP + 14;
    if (sc.showsLimit) {
      ctx.setLineDash([5, 4]);
      ctx.strokeStyle = '#e03e3e';
      ctx.lineWidth = 1.25;
      ctx.beginPath(); ctx.moveTo(0, ly); ctx.lineTo(width, ly); ctx.stroke();
      ctx.setLineDash([]);
    }
    ctx.textBaseline = 'bottom';
    ctx.fillStyle = 'rgba(255, 255, 255, 0.85)';
    ctx.fillRect(width - lw - 8, ly - 14, lw + 6, 13);
    ctx.fillStyle = '#c22f2f';
    ctx.fillText(label, width - lw - 5, ly - 2);
    ctx.textBaseline = 'top';
    grid.forEach(function (v) {
      var text = String(v);
      var gy = Math.round(y(v)) + 2;
      ctx.fillStyle = 'rgba(248, 249, 251, 0.85)';
      ctx.fillRect(1, gy - 1, ctx.measureText(text).width + 4, 13);
      ctx.fillStyle = '#647084';
      ctx.fillText(text, 3, gy);
    });
    A.timeline.drawAxis(ctx, width, bottom, ax.start, ax.span);
    return true;
  }

  function tipNodes(doc, tp, b) {
    var el = A.dom.el, F = A.format;
    var t0 = tp.start_s + b * tp.width_s;
    var out = [el(doc, 'div', 'tt-title', F.seconds(t0) + ' \u2013 ' + F.seconds(t0 + tp.width_s))];
    out.push(el(doc, 'div', 'tt-row', tp.mean_busy[b].toFixed(1) + ' workers busy on average, ' + tp.max_busy[b] + ' at most'));
    if (tp.max_busy[b] >= tp.limit) out.push(A.dom.taggedRow(doc, 'all ' + tp.limit + ' busy', 'further def work waited'));
    return out;
  }

  function init(app) {
    var doc = app.doc, tp = app.data.threadpool;
    var wrap = doc.getElementById('threadpool-wrap');
    var canvas = doc.getElementById('threadpool-canvas');
    var cursor = doc.getElementById('threadpool-cursor');
    // The merged timeline fixes the axis: a worker's has the same bins.
    var ax = axis(app.data.timeline, tp);
    app.state.threadpoolDrawn = false;
    app.act.drawThreadpool = function () {
      if (!canvas) return;
      var width = wrap.clientWidth;
      var ctx = A.dom.setupCanvas(canvas, width, TP_H, app.win.devicePixelRatio || 1);
      cursor.style.top = TP_TOP + 'px';
      cursor.style.height = (TP_H - TP_TOP - TP_AXIS) + 'px';
      if (draw(ctx, tp, ax, width)) app.state.threadpoolDrawn = true;
    };
    if (!canvas) return;
    canvas.addEventListener('mousemove', function (ev) {
      var r = canvas.getBoundingClientRect();
      var fraction = (ev.clientX - r.left) / r.width;
      A.dom.showCursor(cursor, fraction);
      A.dom.showCursor(doc.getElementById('timeline-cursor'), fraction);
      var b = binAt(tp, ax.start + fraction * ax.span);
      if (b < 0) { app.tip.hide(); return; }
      app.tip.show(tipNodes(doc, tp, b), ev.clientX, ev.clientY);
    });
    canvas.addEventListener('mouseleave', function () {
      cursor.hidden = true;
      doc.getElementById('timeline-cursor').hidden = true;
      app.tip.hide();
    });
  }

  A.threadpool = { axis: axis, binAt: binAt, limitLabel: limitLabel, draw: draw, init: init };
})(globalThis.AsgiprofReport = globalThis.AsgiprofReport || {});
