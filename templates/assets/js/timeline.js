/* timeline.js: the event-loop timeline (idle / busy / blocked per time bin, blocking
 * episodes as red marks) and its tooltip; clicking an episode selects its culprit.
 * Draws app.state.timeline and app.state.episodes (all workers' or one worker's).
 * Offers app.act.drawTimeline and the shared time axis A.timeline.drawAxis.
 */
(function (A) {
  'use strict';

  var TL_H = 132, STRIP_TOP = 4, STRIP_H = 12, BAR_TOP = 22, AXIS_H = 20;
  var FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif';

  function span(tl) { return tl.idle_ms.length * tl.width_s; }

  // What is under pointer x (px from the left of a chart `width` px wide).
  function hitAt(tl, ep, x, width) {
    var bins = tl.idle_ms.length;
    var total = span(tl);
    var t = tl.start_s + x / width * total;
    var tol = 4 / width * total;
    return { t: t, episode: bins ? A.scales.episodeAt(ep, t, tol) : -1, bin: A.scales.binAt(x, width, bins) };
  }

  // A bin's time range and its idle / busy / blocked shares (null without samples).
  function binSummary(tl, b) {
    var idle = tl.idle_ms[b], busy = tl.busy_ms[b], blocked = tl.blocked_ms[b];
    var total = idle + busy + blocked;
    var t0 = tl.start_s + b * tl.width_s;
    return {
      t0: t0,
      t1: t0 + tl.width_s,
      shares: total > 0 ? { idle: idle / total, busy: busy / total, blocked: blocked / total } : null
    };
  }

  function drawAxis(ctx, width, y, start, spanS) {
    ctx.fillStyle = '#8a94a6';
    ctx.strokeStyle = '#cfd6e1';
    ctx.lineWidth = 1;
    ctx.textBaseline = 'top';
    A.scales.timeTicks(start, spanS, width).forEach(function (tick) {
      ctx.beginPath(); ctx.moveTo(tick.x, y); ctx.lineTo(tick.x, y + 4); ctx.stroke();
      var label = A.format.seconds(tick.t);
      var lw = ctx.measureText(label).width;
      ctx.fillText(label, Math.min(Math.max(tick.x - lw / 2, 0), width - lw), y + 6);
    });
  }

  function draw(ctx, tl, ep, width) {
    ctx.clearRect(0, 0, width, TL_H);
    ctx.font = FONT;
    var barH = TL_H - BAR_TOP - AXIS_H;
    var bins = tl.idle_ms.length, total = span(tl);
    if (!bins || total <= 0) {
      ctx.fillStyle = '#647084';
      ctx.fillText('No event-loop samples.', 8, BAR_TOP + barH / 2);
      return;
    }
    ctx.fillStyle = '#f3f5f9';
    ctx.fillRect(0, BAR_TOP, width, barH);
    var bw = width / bins;
    var bottom = BAR_TOP + barH;
    for (var i = 0; i < bins; i++) {
      var h = A.scales.stackHeights(tl.idle_ms[i], tl.busy_ms[i], tl.blocked_ms[i], barH);
      if (!h) continue;
      var x = i * bw, w = bw + 0.6; // overlap a hair: no seams between columns
      ctx.fillStyle = '#e03e3e'; ctx.fillRect(x, bottom - h.blocked, w, h.blocked);
      ctx.fillStyle = '#4c7be8'; ctx.fillRect(x, bottom - h.blocked - h.busy, w, h.busy);
      ctx.fillStyle = '#c9ced8'; ctx.fillRect(x, BAR_TOP, w, barH - h.blocked - h.busy);
    }
    // Episodes: red marks in a strip above the bars, at least 2 px wide so short ones show.
    ctx.fillStyle = '#e03e3e';
    for (var k = 0; k < ep.start_s.length; k++) {
      var ex = (ep.start_s[k] - tl.start_s) / total * width;
      var ew = Math.max(2, ep.ms[k] / 1000 / total * width);
      ctx.fillRect(ex, STRIP_TOP, ew, STRIP_H);
    }
    drawAxis(ctx, width, bottom, tl.start_s, total);
  }

  function tipNodes(app, hit) {
    var doc = app.doc, el = A.dom.el, F = A.format;
    var tl = app.state.timeline, ep = app.state.episodes;
    var out = [];
    if (hit.episode >= 0) {
      var k = hit.episode;
      out.push(el(doc, 'div', 'tt-title', 'Blocked ' + F.ms(ep.ms[k]) + ' at ' + F.seconds(ep.start_s[k])));
      var ci = ep.culprit[k];
      if (ci >= 0) {
        var c = app.data.culprits[ci];
        out.push(el(doc, 'div', 'tt-row', '#' + c.rank + ' ' + c.function));
        out.push(el(doc, 'div', 'tt-file', c.file + ':' + c.line));
        if (c.code) out.push(el(doc, 'div', 'tt-file', c.code));
      } else {
        out.push(el(doc, 'div', 'tt-row', 'no single line of your code (see the blocking flamegraph)'));
      }
      var ri = ep.route[k];
      if (ri >= 0) out.push(el(doc, 'div', 'tt-row', 'route ' + app.data.route_names[ri]));
      return out;
    }
    var b = binSummary(tl, hit.bin);
    out.push(el(doc, 'div', 'tt-title', F.seconds(b.t0) + ' \u2013 ' + F.seconds(b.t1)));
    out.push(el(doc, 'div', 'tt-row', b.shares
      ? 'idle ' + F.pct(b.shares.idle) + ' \u00b7 busy ' + F.pct(b.shares.busy) + ' \u00b7 blocked ' + F.pct(b.shares.blocked)
      : 'no event-loop samples'));
    return out;
  }

  function init(app) {
    var doc = app.doc, state = app.state;
    var wrap = doc.getElementById('timeline-wrap');
    var canvas = doc.getElementById('timeline-canvas');
    var cursor = doc.getElementById('timeline-cursor');
    var bins = function () { return state.timeline.idle_ms.length; };

    function pointer(ev) {
      var r = canvas.getBoundingClientRect();
      return { x: ev.clientX - r.left, width: r.width };
    }

    canvas.addEventListener('mousemove', function (ev) {
      if (!bins()) return;
      var p = pointer(ev);
      var hit = hitAt(state.timeline, state.episodes, p.x, p.width);
      cursor.style.left = Math.round(p.x) + 'px';
      cursor.hidden = false;
      A.dom.showCursor(doc.getElementById('threadpool-cursor'), p.x / p.width);
      var ci = hit.episode >= 0 ? state.episodes.culprit[hit.episode] : -1;
      canvas.style.cursor = ci >= 0 ? 'pointer' : 'default';
      app.tip.show(tipNodes(app, hit), ev.clientX, ev.clientY);
    });
    canvas.addEventListener('mouseleave', function () {
      cursor.hidden = true;
      var tpCursor = doc.getElementById('threadpool-cursor');
      if (tpCursor) tpCursor.hidden = true;
      app.tip.hide();
    });
    canvas.addEventListener('click', function (ev) {
      if (!bins()) return;
      var p = pointer(ev);
      var hit = hitAt(state.timeline, state.episodes, p.x, p.width);
      if (hit.episode < 0) return;
      var ci = state.episodes.culprit[hit.episode];
      if (ci >= 0 && ci !== state.selected) app.act.revealCulprit(ci);
    });

    app.act.drawTimeline = function () {
      var width = wrap.clientWidth;
      draw(A.dom.setupCanvas(canvas, width, TL_H, app.win.devicePixelRatio || 1), state.timeline, state.episodes, width);
    };
  }

  A.timeline = { span: span, hitAt: hitAt, binSummary: binSummary, drawAxis: drawAxis, draw: draw, init: init };
})(globalThis.AsgiprofReport = globalThis.AsgiprofReport || {});
