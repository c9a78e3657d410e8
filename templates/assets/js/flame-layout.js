/* flame-layout.js: pure flamegraph geometry. A call tree and a view's totals become
 * rectangles (x, width in px, row, node); rows list rectangle indexes left to right so a
 * pointer finds its frame by binary search. No DOM, no canvas.
 */
(function (A) {
  'use strict';

  var ROW = 18; // px per row
  var MIN_WIDTH = 0.5; // px: smaller frames are not drawn (nor their children)

  // opts: {zoom: node, fromUser: start at your code, width: px}. Returns
  // {x, w, node, d, collapsed, rows, maxDepth}; maxDepth -1 when nothing has time.
  function layout(tree, totals, opts) {
    var z = opts.zoom, width = opts.width;
    var out = { x: [], w: [], node: [], d: [], collapsed: [], rows: [], maxDepth: -1 };
    function put(n, x, w, d, collapsed) {
      if (!out.rows[d]) out.rows[d] = [];
      out.rows[d].push(out.x.length);
      out.x.push(x); out.w.push(w); out.node.push(n); out.d.push(d); out.collapsed.push(collapsed ? 1 : 0);
      if (d > out.maxDepth) out.maxDepth = d;
    }
    if (!(totals[z] > 0)) return out;
    if (opts.fromUser && z === 0) layoutFromUser(tree, totals, width, put, out);
    else layoutZoomed(tree, totals, z, width, put);
    return out;
  }

  // Every frame from the zoomed node down; its ancestors span the full width above it.
  function layoutZoomed(tree, totals, z, width, put) {
    var chain = A.tree.pathTo(tree, z);
    for (var c = 0; c < chain.length - 1; c++) put(chain[c], 0, width, tree.depth[chain[c]], false);
    var scale = width / totals[z];
    var stackN = [z], stackX = [0];
    var kids = [];
    while (stackN.length) {
      var n = stackN.pop();
      var x = stackX.pop();
      put(n, x, totals[n] * scale, tree.depth[n], false);
      kids.length = 0;
      var cx = x;
      for (var ch = tree.firstChild[n]; ch !== -1; ch = tree.nextSibling[ch]) {
        var t = totals[ch];
        if (t <= 0) continue;
        var cw = t * scale;
        if (cw >= MIN_WIDTH) kids.push(ch, cx);
        cx += cw;
      }
      // Push right to left so frames of one row come out left to right (sorted rows).
      for (var k = kids.length - 2; k >= 0; k -= 2) { stackN.push(kids[k]); stackX.push(kids[k + 1]); }
    }
  }

  // "Start at your code": frames above your code are left out (their row passes on to
  // their children); stacks with none of it are one collapsed frame.
  function layoutFromUser(tree, totals, width, put, out) {
    var scale = width / totals[0];
    put(0, 0, width, 0, false);
    var sN = [0], sX = [0], sD = [0];
    while (sN.length) {
      var pn = sN.pop(), px = sX.pop(), pd = sD.pop();
      var ux = px;
      for (var uc = tree.firstChild[pn]; uc !== -1; uc = tree.nextSibling[uc]) {
        var ut = totals[uc];
        if (ut <= 0) continue;
        var uw = ut * scale;
        if (uw >= MIN_WIDTH) {
          if (tree.fromUser[uc]) { put(uc, ux, uw, pd + 1, false); sN.push(uc); sX.push(ux); sD.push(pd + 1); }
          else if (tree.reachesUser[uc]) { sN.push(uc); sX.push(ux); sD.push(pd); }
          else put(uc, ux, uw, pd + 1, true);
        }
        ux += uw;
      }
    }
    // Left-out frames reorder the walk: rows must run left to right for hit tests.
    out.rows.forEach(function (row) { row.sort(function (a, b) { return out.x[a] - out.x[b]; }); });
  }

  // Index of the rectangle under (x, y) px, or -1. A frame is at least 1 px wide to hit.
  function hit(rects, x, y) {
    var row = rects.rows[Math.floor(y / ROW)];
    if (!row) return -1;
    var lo = 0, hi = row.length - 1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      var idx = row[mid];
      if (x < rects.x[idx]) hi = mid - 1;
      else if (x >= rects.x[idx] + Math.max(rects.w[idx], 1)) lo = mid + 1;
      else return idx;
    }
    return -1;
  }

  // The label that fits `room` px: whole, cut with an ellipsis, or '' (measure(text) -> px).
  function fitText(text, room, avgChar, measure) {
    if (room < 14) return '';
    if (text.length * avgChar <= room * 0.8) return text;
    if (measure(text) <= room) return text;
    var n = Math.floor(room / avgChar);
    while (n > 1) {
      var s = text.slice(0, n) + '\u2026';
      if (measure(s) <= room) return s;
      n = Math.floor(n * 0.85);
    }
    return '';
  }

  A.flameLayout = { ROW: ROW, MIN_WIDTH: MIN_WIDTH, layout: layout, hit: hit, fitText: fitText };
})(globalThis.AsgiprofReport = globalThis.AsgiprofReport || {});
