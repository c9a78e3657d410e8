/* flame-draw.js: paints a flamegraph layout on a canvas. What each rectangle looks like
 * (fill, ink, alpha, label, outline) is decided by the pure `look`; `draw` only paints.
 */
(function (A) {
  'use strict';

  var FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';

  // The label of rectangle i: the view and its total on the root, frame names elsewhere.
  function label(scene, rects, i) {
    var n = rects.node[i];
    if (n === 0) return scene.viewLabel + ' \u2014 ' + A.format.ms(scene.totals[0]);
    var text = scene.frames.label(scene.tree.frame[n]);
    return rects.collapsed[i] ? '\u22ef no code of yours: ' + text : text;
  }

  // scene: {tree, frames, colors, totals, viewLabel, zoom, match, focus}.
  function look(scene, rects, i) {
    var n = rects.node[i];
    var fr = scene.tree.frame[n];
    var out = { fill: '', ink: '', alpha: 1, outline: false };
    if (n === 0) { out.fill = '#dde2ea'; out.ink = '#1d2330'; }
    else if (rects.collapsed[i]) { out.fill = '#e4e7ed'; out.ink = '#4a5263'; }
    else { out.fill = scene.colors.fill[fr]; out.ink = scene.colors.ink[fr]; }
    if (scene.match) {
      if (n !== 0 && scene.match[fr]) { out.fill = '#b148d2'; out.ink = '#ffffff'; }
      else out.alpha = 0.35;
    }
    // Ancestors of the zoomed frame are dimmed.
    if (scene.tree.depth[n] < scene.tree.depth[scene.zoom]) out.alpha = Math.min(out.alpha, 0.55);
    out.outline = !!(scene.focus && n !== 0 && scene.focus[fr]);
    return out;
  }

  function draw(ctx, rects, scene, width) {
    var ROW = A.flameLayout.ROW;
    var height = (rects.maxDepth + 1) * ROW + 1;
    ctx.clearRect(0, 0, width, height);
    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    var avgChar = ctx.measureText('abcdefghijklmnopqrstuvwxyz_()./0123456789').width / 41;
    var measure = function (s) { return ctx.measureText(s).width; };
    for (var i = 0; i < rects.node.length; i++) {
      var x = rects.x[i], w = rects.w[i], y = rects.d[i] * ROW;
      var st = look(scene, rects, i);
      ctx.globalAlpha = st.alpha;
      ctx.fillStyle = st.fill;
      ctx.fillRect(x, y, w > 2 ? w - 1 : w, ROW - 1);
      if (w > 20) {
        var t = A.flameLayout.fitText(label(scene, rects, i), w - 8, avgChar, measure);
        if (t) { ctx.fillStyle = st.ink; ctx.fillText(t, x + 4, y + ROW / 2); }
      }
      ctx.globalAlpha = 1;
      if (st.outline) {
        ctx.strokeStyle = '#7a1010';
        ctx.lineWidth = 2;
        ctx.strokeRect(x + 1, y + 1, Math.max(w - 3, 1), ROW - 3);
      }
    }
  }

  A.flameDraw = { label: label, look: look, draw: draw };
})(globalThis.AsgiprofReport = globalThis.AsgiprofReport || {});
