/* resources.js: one small chart per process and metric (memory, threads, open files ...)
 * with the warm-up shaded and the fitted line after it; a leak is drawn red.
 * Offers app.act.drawResources; app.state.resourceCharts lists the charts.
 */
(function (A) {
  'use strict';

  var RES_H = 84, RES_PAD = 4, RES_AXIS = 14;
  var GUTTER = 56; // px right of the plot for the value labels
  var FONT = '10.5px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif';

  function lastValue(values) {
    for (var i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
    return null;
  }

  // The line under a chart's title: the leak, the slope after the warm-up, or why none.
  function subtitle(m) {
    var F = A.format;
    if (m.leak) return 'possible leak: ' + F.rate(m.slope_per_min, m.unit) + ', r\u00b2 ' + m.r2.toFixed(2);
    if (m.fit.length) return 'after warm-up ' + F.rate(m.slope_per_min, m.unit) + (m.r2 > 0 ? ', r\u00b2 ' + m.r2.toFixed(2) : '');
    return 'too few polls after the warm-up to fit a line';
  }

  // Index of the poll drawn nearest to pixel px (x(t) maps time to px), or -1.
  function nearestPoll(times, x, px) {
    var best = -1, bestDist = Infinity;
    for (var i = 0; i < times.length; i++) {
      var d = Math.abs(x(times[i]) - px);
      if (d < bestDist) { bestDist = d; best = i; }
    }
    return best;
  }

  function draw(ctx, chart, res, full) {
    var m = chart.metric, times = chart.times;
    ctx.clearRect(0, 0, full, RES_H);
    ctx.font = FONT;
    var width = full - GUTTER;
    var plotTop = RES_PAD, plotH = RES_H - RES_PAD - RES_AXIS, bottom = plotTop + plotH;
    var end = Math.max(res.end_s, times[times.length - 1]) || 1;
    var sc = A.scales.resourceScale(m);
    function x(t) { return t / end * width; }
    function y(v) { return bottom - (v - sc.lo) / (sc.hi - sc.lo) * plotH; }
    chart.x = x;
    ctx.fillStyle = '#fafbfc';
    ctx.fillRect(0, plotTop, width, plotH);
    // Warm-up: left out of the fit.
    var w0 = x(times[0]), w1 = x(Math.min(times[0] + res.warmup_s, end));
    ctx.fillStyle = '#eceff4';
    ctx.fillRect(w0, plotTop, Math.max(0, w1 - w0), plotH);
    // Gridlines and their values in the gutter.
    ctx.strokeStyle = '#e6e9ef';
    ctx.lineWidth = 1;
    ctx.fillStyle = '#8a94a6';
    ctx.textBaseline = 'middle';
    for (var g = sc.lo; g <= sc.hi + sc.step * 1e-6; g += sc.step) {
      var gy = Math.round(y(g)) + 0.5;
      ctx.beginPath(); ctx.moveTo(0, gy); ctx.lineTo(width, gy); ctx.stroke();
      ctx.fillText(A.format.axisValue(g, m.unit), width + 5, Math.min(Math.max(gy, plotTop + 5), bottom - 4));
    }
    if (w1 - w0 > 44) {
      // Label the warm-up where its own data is not: at the bottom if that sits high.
      var warmLow = Infinity;
      for (var k = 0; k < times.length && times[k] < times[0] + res.warmup_s; k++) {
        if (m.values[k] !== null) warmLow = Math.min(warmLow, m.values[k]);
      }
      var labelLow = warmLow === Infinity || y(warmLow) < plotTop + plotH * 0.6;
      ctx.textBaseline = labelLow ? 'bottom' : 'top';
      ctx.fillText('warm-up', w0 + 4, labelLow ? bottom - 2 : plotTop + 2);
    }
    // The series; unreadable polls break the line.
    var color = m.leak ? '#e03e3e' : '#4c7be8';
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.6;
    ctx.lineJoin = 'round';
    ctx.beginPath();
    var pen = false;
    for (var i = 0; i < times.length; i++) {
      var v = m.values[i];
      if (v === null) { pen = false; continue; }
      if (pen) ctx.lineTo(x(times[i]), y(v)); else ctx.moveTo(x(times[i]), y(v));
      pen = true;
    }
    ctx.stroke();
    if (times.length <= 60) {
      ctx.fillStyle = color;
      for (var j = 0; j < times.length; j++) {
        if (m.values[j] === null) continue;
        ctx.beginPath(); ctx.arc(x(times[j]), y(m.values[j]), 1.7, 0, 2 * Math.PI); ctx.fill();
      }
    }
    // The fitted line after the warm-up.
    if (m.fit.length) {
      ctx.setLineDash([4, 3]);
      ctx.strokeStyle = m.leak ? '#7a1010' : '#1d2330';
      ctx.globalAlpha = 0.75;
      ctx.lineWidth = 1.25;
      ctx.beginPath(); ctx.moveTo(x(m.fit[0]), y(m.fit[1])); ctx.lineTo(x(m.fit[2]), y(m.fit[3])); ctx.stroke();
      ctx.setLineDash([]);
      ctx.globalAlpha = 1;
    }
    // Time at both ends.
    ctx.fillStyle = '#8a94a6';
    ctx.textBaseline = 'top';
    ctx.fillText('0 s', 0, bottom + 2);
    var endText = A.format.seconds(end);
    ctx.fillText(endText, width - ctx.measureText(endText).width, bottom + 2);
    chart.drawn = true;
  }

  function tipNodes(doc, chart, res, best) {
    var el = A.dom.el, F = A.format;
    var m = chart.metric;
    var t = chart.times[best];
    var out = [el(doc, 'div', 'tt-title', m.label + ': ' + F.value(m.values[best], m.unit))];
    out.push(el(doc, 'div', 'tt-row', 'at ' + F.seconds(t) + (t < chart.times[0] + res.warmup_s ? ' (warm-up)' : '')));
    if (m.leak) out.push(A.dom.taggedRow(doc, 'possible leak', F.rate(m.slope_per_min, m.unit)));
    return out;
  }

  function build(app, host) {
    var doc = app.doc, el = A.dom.el, F = A.format, res = app.data.resources;
    res.processes.forEach(function (proc) {
      var box = el(doc, 'div', 'res-proc');
      var head = el(doc, 'div', 'res-proc-head', 'PID ' + proc.pid);
      var polled = proc.t_s[proc.t_s.length - 1] - proc.t_s[0];
      head.appendChild(el(doc, 'span', 'muted', ' \u00b7 ' + proc.t_s.length + ' polls over ' + F.seconds(polled)));
      box.appendChild(head);
      var grid = el(doc, 'div', 'res-grid');
      proc.metrics.forEach(function (m) {
        var card = el(doc, 'div', 'res-chart' + (m.leak ? ' leak' : ''));
        card.dataset.metric = m.id;
        card.dataset.pid = String(proc.pid);
        var top = el(doc, 'div', 'res-head');
        top.appendChild(el(doc, 'span', 'res-title', m.label));
        top.appendChild(el(doc, 'span', 'res-value', F.value(lastValue(m.values), m.unit)));
        card.appendChild(top);
        card.appendChild(el(doc, 'div', 'res-sub', subtitle(m)));
        var canvas = el(doc, 'canvas', 'res-canvas');
        canvas.setAttribute('aria-label', m.label + ' of PID ' + proc.pid + ' over time');
        card.appendChild(canvas);
        grid.appendChild(card);
        var chart = { canvas: canvas, metric: m, times: proc.t_s, x: null, drawn: false };
        app.state.resourceCharts.push(chart);
        canvas.addEventListener('mousemove', function (ev) {
          if (!chart.x) return;
          var r = canvas.getBoundingClientRect();
          var best = nearestPoll(chart.times, chart.x, ev.clientX - r.left);
          if (best >= 0) app.tip.show(tipNodes(doc, chart, res, best), ev.clientX, ev.clientY);
        });
        canvas.addEventListener('mouseleave', app.tip.hide);
      });
      box.appendChild(grid);
      host.appendChild(box);
    });
  }

  function init(app) {
    var host = app.doc.getElementById('resources-charts');
    app.state.resourceCharts = [];
    if (host) build(app, host);
    app.act.drawResources = function () {
      app.state.resourceCharts.forEach(function (chart) {
        var full = chart.canvas.parentNode.clientWidth - 20;
        if (full <= GUTTER + 20) return;
        var ctx = A.dom.setupCanvas(chart.canvas, full, RES_H, app.win.devicePixelRatio || 1);
        draw(ctx, chart, app.data.resources, full);
      });
    };
  }

  A.resources = { lastValue: lastValue, subtitle: subtitle, nearestPoll: nearestPoll, draw: draw, init: init };
})(globalThis.AsgiprofReport = globalThis.AsgiprofReport || {});
