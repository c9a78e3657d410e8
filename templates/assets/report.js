/* asgiprof report: draws the event-loop timeline and the flamegraph from the JSON payload.
 *
 * Data comes only from the JSON payload element (#asgiprof-data). Target-derived text
 * (function names, paths, routes, source lines) is put into the page with textContent or
 * drawn on a canvas, never parsed as HTML. No network access: nothing here loads anything.
 */
(function () {
  'use strict';

  var payloadEl = document.getElementById('asgiprof-data');
  if (!payloadEl) return;
  var data = JSON.parse(payloadEl.textContent);

  var S = data.strings;
  var FR = data.frames;
  var NF = FR.fn.length;
  var RATE = data.rate_hz || 0;
  var KIND_LABEL = ['your code', 'library', 'standard library'];

  // ---- small helpers ------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function fmtMs(ms) {
    if (ms < 10) return ms.toFixed(1) + ' ms';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
    var total = Math.round(ms / 1000);
    var sec = total % 60;
    return Math.floor(total / 60) + ' min ' + (sec < 10 ? '0' : '') + sec + ' s';
  }

  function fmtPct(share) {
    if (share > 0 && share < 0.001) return '<0.1%';
    return (share * 100).toFixed(1) + '%';
  }

  function fmtSeconds(s) {
    if (s >= 60) {
      var m = Math.floor(s / 60);
      var r = Math.round(s - m * 60);
      if (r === 60) { m += 1; r = 0; }
      return m + ':' + (r < 10 ? '0' : '') + r;
    }
    return (s < 10 && s % 1 !== 0 ? s.toFixed(1) : Math.round(s)) + ' s';
  }

  function basename(path) {
    var i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
    return i >= 0 ? path.slice(i + 1) : path;
  }

  // FNV-1a: stable pseudo-random hue offsets per function name.
  function hash(s) {
    var h = 2166136261;
    for (var i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return h >>> 0;
  }

  function setupCanvas(canvas, cssWidth, cssHeight) {
    var dpr = window.devicePixelRatio || 1;
    canvas.style.height = cssHeight + 'px';
    canvas.width = Math.max(1, Math.round(cssWidth * dpr));
    canvas.height = Math.max(1, Math.round(cssHeight * dpr));
    var ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return ctx;
  }

  // ---- tooltip --------------------------------------------------------------------------

  var tip = $('tooltip');

  function showTip(nodes, clientX, clientY) {
    tip.replaceChildren.apply(tip, nodes);
    tip.hidden = false;
    var pad = 14;
    var r = tip.getBoundingClientRect();
    var x = clientX + pad;
    var y = clientY + pad;
    if (x + r.width > window.innerWidth - 8) x = Math.max(8, clientX - r.width - pad);
    if (y + r.height > window.innerHeight - 8) y = Math.max(8, clientY - r.height - pad);
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  }

  function hideTip() { tip.hidden = true; }

  // ---- frames ---------------------------------------------------------------------------

  function frameName(f) { return S[FR.fn[f]] || '(unknown)'; }
  function frameFile(f) { return S[FR.file[f]]; }
  function frameWhere(f) { return frameFile(f) + ':' + FR.line[f]; }
  function frameLabel(f) { return frameName(f) + ' (' + basename(frameFile(f)) + ':' + FR.line[f] + ')'; }

  var culprits = data.culprits;
  var culpritFrame = new Uint8Array(NF);
  culprits.forEach(function (c) { c.frames.forEach(function (f) { culpritFrame[f] = 1; }); });

  var frameColor = new Array(NF);
  var frameTextColor = new Array(NF);
  for (var f = 0; f < NF; f++) {
    var h = hash(frameName(f));
    var kind = FR.kind[f];
    if (culpritFrame[f]) {
      frameColor[f] = 'hsl(0, 74%, ' + (56 + h % 6) + '%)';
      frameTextColor[f] = '#ffffff';
      continue;
    }
    if (kind === 0) frameColor[f] = 'hsl(' + (26 + h % 20) + ', ' + (80 + (h >>> 5) % 12) + '%, ' + (63 + (h >>> 9) % 10) + '%)';
    else if (kind === 1) frameColor[f] = 'hsl(' + (186 + h % 24) + ', ' + (42 + (h >>> 5) % 16) + '%, ' + (68 + (h >>> 9) % 10) + '%)';
    else frameColor[f] = 'hsl(' + (210 + h % 24) + ', ' + (9 + (h >>> 5) % 8) + '%, ' + (77 + (h >>> 9) % 8) + '%)';
    frameTextColor[f] = '#1d2330';
  }

  var searchText = null; // lowercased "name file:line", built on first search

  // ---- call tree ------------------------------------------------------------------------

  var N = data.nodes.parent.length;
  var parent = Int32Array.from(data.nodes.parent);
  var nframe = Int32Array.from(data.nodes.frame);
  var depth = new Int32Array(N);
  var firstChild = new Int32Array(N).fill(-1);
  var nextSibling = new Int32Array(N).fill(-1);
  for (var i = 1; i < N; i++) depth[i] = depth[parent[i]] + 1;
  // Pre-order numbering: walking backwards links children in ascending (name) order.
  for (var j = N - 1; j >= 1; j--) {
    nextSibling[j] = firstChild[parent[j]];
    firstChild[parent[j]] = j;
  }

  // "Start at your code": a frame of your code is where a view starts when something not
  // yours calls it (a framework, the loop); frames above it are left out, and stacks with no
  // code of yours are drawn as one collapsed frame. `fromUser[n]`: n is such a frame or
  // below one; `reachesUser[n]`: n's subtree holds one.
  var fromUser = new Uint8Array(N);
  var notUserAbove = new Uint8Array(N);
  var reachesUser = new Uint8Array(N);
  var anyUser = false;
  for (var u = 1; u < N; u++) {
    var pu = parent[u];
    var mine = FR.kind[nframe[u]] === 0;
    notUserAbove[u] = notUserAbove[pu] || (pu !== 0 && FR.kind[nframe[pu]] !== 0) ? 1 : 0;
    fromUser[u] = fromUser[pu] || (mine && notUserAbove[u]) ? 1 : 0;
    if (fromUser[u]) anyUser = true;
  }
  for (var r = N - 1; r >= 1; r--) {
    if (fromUser[r]) reachesUser[r] = 1;
    if (reachesUser[r]) reachesUser[parent[r]] = 1;
  }

  var views = data.views;
  var viewById = {};
  views.forEach(function (v) { viewById[v.id] = v; });
  var totalsCache = {};

  function totalsOf(id) {
    var t = totalsCache[id];
    if (t) return t;
    var v = viewById[id];
    t = new Float64Array(N);
    for (var k = 0; k < v.nodes.length; k++) t[v.nodes[k]] += v.ms[k];
    // Children follow their parent in pre-order, so one backward pass sums subtrees.
    for (var n = N - 1; n >= 1; n--) t[parent[n]] += t[n];
    totalsCache[id] = t;
    return t;
  }

  // ---- flamegraph -----------------------------------------------------------------------

  var ROW = 18;
  var MIN_WIDTH = 0.5; // px: smaller frames are not drawn (nor their children)
  var FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';

  var flameWrap = $('flame-wrap');
  var flameCanvas = $('flame-canvas');
  var flameEmpty = $('flame-empty');
  var crumbs = $('flame-crumbs');
  var searchInput = $('flame-search');
  var searchResult = $('search-result');
  var routeSelect = $('route-select');
  var viewButtons = $('view-buttons');

  var flame = {
    view: null,
    totals: null,
    zoom: 0,
    focus: null, // Uint8Array over frames of the selected culprit
    match: null, // Uint8Array over frames matching the search
    query: '',
    rects: { x: [], w: [], node: [], d: [], collapsed: [], rows: [] },
    fromUser: false, // start at your code (see fromUser above)
    avgChar: 6.5,
    rendered: false
  };

  function nodeLabel(n) {
    if (n === 0) return flame.view.label;
    return frameLabel(nframe[n]);
  }

  function layoutFlame(width) {
    var tot = flame.totals;
    var z = flame.zoom;
    var xs = [], ws = [], ns = [], ds = [], cs = [], rows = [];
    var maxDepth = -1;
    function put(n, x, w, d, collapsed) {
      if (!rows[d]) rows[d] = [];
      rows[d].push(xs.length);
      xs.push(x); ws.push(w); ns.push(n); ds.push(d); cs.push(collapsed ? 1 : 0);
      if (d > maxDepth) maxDepth = d;
    }
    if (tot[z] > 0 && flame.fromUser && z === 0) {
      var scaleU = width / tot[0];
      put(0, 0, width, 0, false);
      // (node, x, row): a node left out passes its row on to its children.
      var sN = [0], sX = [0], sD = [0];
      while (sN.length) {
        var pn = sN.pop(), px = sX.pop(), pd = sD.pop();
        var ux = px;
        for (var uc = firstChild[pn]; uc !== -1; uc = nextSibling[uc]) {
          var ut = tot[uc];
          if (ut <= 0) continue;
          var uw = ut * scaleU;
          if (uw >= MIN_WIDTH) {
            if (fromUser[uc]) { put(uc, ux, uw, pd + 1, false); sN.push(uc); sX.push(ux); sD.push(pd + 1); }
            else if (reachesUser[uc]) { sN.push(uc); sX.push(ux); sD.push(pd); }
            else put(uc, ux, uw, pd + 1, true);
          }
          ux += uw;
        }
      }
      // Left-out frames reorder the walk: rows must run left to right for hit tests.
      rows.forEach(function (row) { row.sort(function (a, b) { return xs[a] - xs[b]; }); });
    } else if (tot[z] > 0) {
      var chain = [];
      for (var a = parent[z]; a !== -1; a = parent[a]) chain.push(a);
      for (var c = chain.length - 1; c >= 0; c--) put(chain[c], 0, width, depth[chain[c]], false);
      var scale = width / tot[z];
      var stackN = [z], stackX = [0];
      var kids = [];
      while (stackN.length) {
        var n = stackN.pop();
        var x = stackX.pop();
        put(n, x, tot[n] * scale, depth[n], false);
        kids.length = 0;
        var cx = x;
        for (var ch = firstChild[n]; ch !== -1; ch = nextSibling[ch]) {
          var t = tot[ch];
          if (t <= 0) continue;
          var cw = t * scale;
          if (cw >= MIN_WIDTH) kids.push(ch, cx);
          cx += cw;
        }
        // Push right to left so frames of one row come out left to right (sorted rows).
        for (var k = kids.length - 2; k >= 0; k -= 2) { stackN.push(kids[k]); stackX.push(kids[k + 1]); }
      }
    }
    return { x: xs, w: ws, node: ns, d: ds, collapsed: cs, rows: rows, maxDepth: maxDepth };
  }

  function fitText(ctx, text, room) {
    if (room < 14) return '';
    if (text.length * flame.avgChar <= room * 0.8) return text;
    if (ctx.measureText(text).width <= room) return text;
    var n = Math.floor(room / flame.avgChar);
    while (n > 1) {
      var s = text.slice(0, n) + '\u2026';
      if (ctx.measureText(s).width <= room) return s;
      n = Math.floor(n * 0.85);
    }
    return '';
  }

  function drawFlame() {
    var width = flameWrap.clientWidth;
    var L = layoutFlame(width);
    flame.rects = L;
    var empty = L.maxDepth < 0;
    flameEmpty.hidden = !empty;
    flameCanvas.hidden = empty;
    flameWrap.dataset.view = flame.view.id;
    flameWrap.dataset.zoom = String(flame.zoom);
    flameWrap.dataset.drawn = String(L.node.length);
    resetButton.disabled = flame.zoom === 0;
    renderCrumbs();
    if (empty) { markRendered(); return; }
    var height = (L.maxDepth + 1) * ROW + 1;
    var ctx = setupCanvas(flameCanvas, width, height);
    ctx.clearRect(0, 0, width, height);
    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    flame.avgChar = ctx.measureText('abcdefghijklmnopqrstuvwxyz_()./0123456789').width / 41;
    var zDepth = depth[flame.zoom];
    var match = flame.match, focus = flame.focus;
    for (var i = 0; i < L.node.length; i++) {
      var n = L.node[i], x = L.x[i], w = L.w[i];
      var y = L.d[i] * ROW;
      var fr = nframe[n];
      var fill, ink;
      if (n === 0) { fill = '#dde2ea'; ink = '#1d2330'; }
      else if (L.collapsed[i]) { fill = '#e4e7ed'; ink = '#4a5263'; }
      else { fill = frameColor[fr]; ink = frameTextColor[fr]; }
      if (match) {
        if (n !== 0 && match[fr]) { fill = '#b148d2'; ink = '#ffffff'; }
        else ctx.globalAlpha = 0.35;
      }
      if (depth[n] < zDepth) ctx.globalAlpha = Math.min(ctx.globalAlpha, 0.55);
      ctx.fillStyle = fill;
      ctx.fillRect(x, y, w > 2 ? w - 1 : w, ROW - 1);
      if (w > 20) {
        var label = n === 0 ? flame.view.label + ' \u2014 ' + fmtMs(flame.totals[0])
          : L.collapsed[i] ? '\u22ef no code of yours: ' + frameLabel(fr) : frameLabel(fr);
        var t = fitText(ctx, label, w - 8);
        if (t) { ctx.fillStyle = ink; ctx.fillText(t, x + 4, y + ROW / 2); }
      }
      ctx.globalAlpha = 1;
      if (focus && n !== 0 && focus[fr]) {
        ctx.strokeStyle = '#7a1010';
        ctx.lineWidth = 2;
        ctx.strokeRect(x + 1, y + 1, Math.max(w - 3, 1), ROW - 3);
      }
    }
    markRendered();
  }

  function markRendered() {
    if (flame.rendered) return;
    flame.rendered = true;
    window.__asgiprofRenderMs = performance.now();
    window.__asgiprofRendered = true;
  }

  function hitFlame(clientX, clientY) {
    var r = flameCanvas.getBoundingClientRect();
    var x = clientX - r.left, y = clientY - r.top;
    var d = Math.floor(y / ROW);
    var row = flame.rects.rows[d];
    if (!row) return -1;
    var lo = 0, hi = row.length - 1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      var idx = row[mid];
      if (x < flame.rects.x[idx]) hi = mid - 1;
      else if (x >= flame.rects.x[idx] + Math.max(flame.rects.w[idx], 1)) lo = mid + 1;
      else return idx;
    }
    return -1;
  }

  function nodeTip(n) {
    var tot = flame.totals;
    var ms = tot[n];
    var out = [];
    if (n === 0) {
      out.push(el('div', 'tt-title', flame.view.label));
    } else {
      var fr = nframe[n];
      out.push(el('div', 'tt-title', frameName(fr)));
      out.push(el('div', 'tt-file', frameWhere(fr)));
      var tags = el('div', 'tt-row');
      tags.appendChild(el('span', 'tt-tag', KIND_LABEL[FR.kind[fr]]));
      if (culpritFrame[fr]) tags.appendChild(el('span', 'tt-tag blocked', 'blocking culprit'));
      out.push(tags);
    }
    var self = ms;
    for (var c = firstChild[n]; c !== -1; c = nextSibling[c]) self -= tot[c];
    var samples = RATE ? ' \u00b7 \u2248' + Math.round(ms * RATE / 1000).toLocaleString('en-US') + ' samples' : '';
    out.push(el('div', 'tt-row', fmtMs(ms) + samples + (n !== 0 ? ' \u00b7 self ' + fmtMs(Math.max(0, self)) : '')));
    var share = fmtPct(tot[0] > 0 ? ms / tot[0] : 0) + ' of ' + flame.view.label.toLowerCase();
    if (n !== 0 && parent[n] > 0 && tot[parent[n]] > 0) share += ' \u00b7 ' + fmtPct(ms / tot[parent[n]]) + ' of caller';
    out.push(el('div', 'tt-row', share));
    return out;
  }

  var flameHover = $('flame-hover');

  function hideFlameHover() { flameHover.hidden = true; hideTip(); }

  flameCanvas.addEventListener('mousemove', function (ev) {
    var idx = hitFlame(ev.clientX, ev.clientY);
    if (idx < 0) { hideFlameHover(); flameCanvas.style.cursor = 'default'; return; }
    flameCanvas.style.cursor = 'pointer';
    var n = flame.rects.node[idx];
    // Outline the hovered frame with a positioned element: no canvas redraw per move.
    flameHover.style.left = flame.rects.x[idx] + 'px';
    flameHover.style.top = flame.rects.d[idx] * ROW + 'px';
    flameHover.style.width = Math.max(flame.rects.w[idx] - 1, 1) + 'px';
    flameHover.style.height = (ROW - 1) + 'px';
    flameHover.hidden = false;
    showTip(nodeTip(n), ev.clientX, ev.clientY);
  });
  flameCanvas.addEventListener('mouseleave', hideFlameHover);
  flameCanvas.addEventListener('click', function (ev) {
    var idx = hitFlame(ev.clientX, ev.clientY);
    if (idx < 0) return;
    setZoom(flame.rects.node[idx]);
  });

  function setZoom(n) {
    flame.zoom = flame.totals[n] > 0 ? n : 0;
    hideFlameHover();
    drawFlame();
  }

  function renderCrumbs() {
    var chain = [];
    for (var a = flame.zoom; a !== -1; a = parent[a]) chain.push(a);
    chain.reverse();
    var items = [];
    // Deep zooms: keep the view, an ellipsis (titled with what it hides) and the last few.
    var hidden = chain.length > 7 ? chain.splice(1, chain.length - 5) : [];
    chain.forEach(function (n, k) {
      if (k > 0) items.push(el('span', 'sep', '\u203a'));
      if (k === 1 && hidden.length) {
        var gap = el('span', 'gap', '\u2026');
        gap.title = hidden.map(function (h) { return frameName(nframe[h]); }).join(' \u203a ');
        items.push(gap, el('span', 'sep', '\u203a'));
      }
      var b = el('button', k === chain.length - 1 ? 'current' : '', n === 0 ? flame.view.label : frameName(nframe[n]));
      b.type = 'button';
      b.title = nodeLabel(n);
      if (k < chain.length - 1) b.addEventListener('click', function () { setZoom(n); });
      items.push(b);
    });
    crumbs.replaceChildren.apply(crumbs, items);
  }

  // Views start at your code unless "Full stacks" is checked (or no frame is yours).
  var fullStacks = $('flame-full-stacks');
  flame.fromUser = anyUser;
  fullStacks.checked = !anyUser;
  fullStacks.disabled = !anyUser;
  fullStacks.addEventListener('change', function () {
    flame.fromUser = !fullStacks.checked;
    flame.zoom = 0;
    hideFlameHover();
    drawFlame();
  });

  var resetButton = $('flame-reset');
  resetButton.addEventListener('click', function () { setZoom(0); });

  // Views: segmented buttons for the main views, a select for routes.
  var buttonOf = {};
  views.forEach(function (v) {
    if (v.group === 'main') {
      var b = el('button', '', v.label);
      b.type = 'button';
      b.dataset.view = v.id;
      b.disabled = !(v.total_ms > 0);
      b.title = v.total_ms > 0 ? fmtMs(v.total_ms) : 'no samples in this view';
      b.setAttribute('aria-pressed', 'false');
      b.addEventListener('click', function () { setView(v.id); });
      viewButtons.appendChild(b);
      buttonOf[v.id] = b;
    } else {
      var o = el('option', '', v.label + ' (' + fmtMs(v.total_ms) + ')');
      o.value = v.id;
      routeSelect.appendChild(o);
    }
  });
  if (routeSelect.options.length <= 1) routeSelect.disabled = true;
  routeSelect.addEventListener('change', function () {
    if (routeSelect.value) setView(routeSelect.value);
  });

  function setView(id, zoom) {
    var v = viewById[id];
    if (!v) return;
    flame.view = v;
    flame.totals = totalsOf(id);
    var z = zoom === undefined ? 0 : zoom;
    flame.zoom = flame.totals[z] > 0 ? z : 0;
    Object.keys(buttonOf).forEach(function (k) { buttonOf[k].setAttribute('aria-pressed', String(k === id)); });
    routeSelect.value = v.group === 'route' ? id : '';
    routeSelect.classList.toggle('active', v.group === 'route');
    updateSearch();
    hideFlameHover();
    drawFlame();
  }

  // Search: highlight frames whose name or file:line contains the text.
  function updateSearch() {
    var q = flame.query;
    if (!q) { flame.match = null; searchResult.textContent = ''; return; }
    if (!searchText) {
      searchText = new Array(NF);
      for (var f = 0; f < NF; f++) searchText[f] = (frameName(f) + ' ' + frameWhere(f)).toLowerCase();
    }
    var match = new Uint8Array(NF);
    var hits = 0;
    for (var g = 0; g < NF; g++) if (searchText[g].indexOf(q) >= 0) { match[g] = 1; hits++; }
    flame.match = match;
    // Time under a matching frame, counting nested matches once.
    var tot = flame.totals;
    var inside = new Uint8Array(N);
    var ms = 0;
    for (var n = 1; n < N; n++) {
      var m = match[nframe[n]];
      if (m && !inside[parent[n]]) ms += tot[n];
      inside[n] = inside[parent[n]] | m;
    }
    searchResult.textContent = hits
      ? 'matches: ' + fmtMs(ms) + ' (' + fmtPct(tot[0] > 0 ? ms / tot[0] : 0) + ' of this view)'
      : 'no frame matches';
  }

  var searchPending = false;
  searchInput.addEventListener('input', function () {
    if (searchPending) return;
    searchPending = true;
    requestAnimationFrame(function () {
      searchPending = false;
      flame.query = searchInput.value.trim().toLowerCase();
      updateSearch();
      drawFlame();
    });
  });

  // ---- culprits -------------------------------------------------------------------------

  var stackPanel = $('stack-panel');
  var selected = -1;
  var LIB_PATH = /[\/\\](?:site|dist)-packages[\/\\]|[\/\\]lib[\/\\](?:python|pypy)\d/i;

  function selectCulprit(index) {
    var rows = document.querySelectorAll('.culprit-row');
    if (index === selected) index = -1;
    selected = index;
    rows.forEach(function (r) {
      var on = Number(r.dataset.culprit) === index;
      r.classList.toggle('selected', on);
      r.setAttribute('aria-expanded', String(on));
    });
    if (index < 0) {
      stackPanel.hidden = true;
      flame.focus = null;
      drawFlame();
      return;
    }
    var table = $('culprits-table');
    var chosen = document.querySelector('.culprit-row[data-culprit="' + index + '"]');
    // A culprit another worker's filter hides (the verdict, say): show every worker again.
    if (chosen && chosen.hidden) setWorker('');
    if (table && chosen && chosen.classList.contains('extra') && table.classList.contains('collapsed')) {
      table.classList.remove('collapsed');
      var moreButton = $('culprits-more');
      if (moreButton) moreButton.remove();
    }
    var c = culprits[index];
    var where = c.context === 'middleware' || c.context === 'dependency'
      ? ' \u2014 in ' + c.context + ' ' + (c.context_name || '') : '';
    $('stack-title').textContent = '#' + c.rank + ' ' + c.function + ' (' + c.file + ':' + c.line + ')' + where;
    var hit = c.function + ' (' + c.file + ':' + c.line + ')';
    var last = c.stack.lastIndexOf(hit);
    var items = c.stack.map(function (s, k) {
      var li = el('li', k === last ? 'hit' : (LIB_PATH.test(s) ? 'lib' : ''), s);
      return li;
    });
    $('stack-list').replaceChildren.apply($('stack-list'), items);
    stackPanel.hidden = false;
    // Focus the flamegraph: the narrowest view that has time at the culprit frame.
    var focus = new Uint8Array(NF);
    c.frames.forEach(function (f) { focus[f] = 1; });
    flame.focus = focus;
    var target = 'blocking';
    if (c.node >= 0) {
      var order = ['blocking', 'loop', 'all'];
      for (var k = 0; k < order.length; k++) {
        if (viewById[order[k]] && totalsOf(order[k])[c.node] > 0) { target = order[k]; break; }
      }
    }
    setView(viewById[target] ? target : data.default_view, c.node >= 0 ? c.node : 0);
  }

  document.querySelectorAll('.culprit-row').forEach(function (row) {
    var index = Number(row.dataset.culprit);
    row.addEventListener('click', function () { selectCulprit(index); });
    row.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); selectCulprit(index); }
    });
  });
  // The call chain opens and closes by itself: its clicks and keys must not (de)select the row.
  document.querySelectorAll('.culprit-row .calls').forEach(function (d) {
    d.addEventListener('click', function (ev) { ev.stopPropagation(); });
    d.addEventListener('keydown', function (ev) { ev.stopPropagation(); });
  });
  document.querySelectorAll('.verdict').forEach(function (v) {
    v.addEventListener('click', function () {
      var index = Number(v.dataset.culprit);
      if (index !== selected) selectCulprit(index);
      var row = document.querySelector('.culprit-row[data-culprit="' + index + '"]');
      if (row) row.scrollIntoView({ behavior: 'smooth', block: 'center' });
    });
  });
  var more = $('culprits-more');
  if (more) {
    more.addEventListener('click', function () {
      $('culprits-table').classList.remove('collapsed');
      more.remove();
    });
  }
  var toFlame = $('stack-to-flame');
  if (toFlame) toFlame.addEventListener('click', function () { $('flamegraph').scrollIntoView({ behavior: 'smooth' }); });

  // ---- routes table ---------------------------------------------------------------------

  // Bars (route shares, middleware layers, threadpool holders): widths from data-share,
  // set through the CSSOM (the CSP forbids style attributes); a non-zero share stays visible.
  document.querySelectorAll('[data-share]').forEach(function (bar) {
    var share = parseFloat(bar.dataset.share) || 0;
    bar.style.width = Math.max(0, Math.min(100, share * 100)).toFixed(2) + '%';
    if (share > 0 && !bar.classList.contains('bar-blocked')) bar.style.minWidth = '2px';
  });
  document.querySelectorAll('.route-row[data-view]').forEach(function (row) {
    function go() {
      setView(row.dataset.view);
      $('flamegraph').scrollIntoView({ behavior: 'smooth' });
    }
    row.addEventListener('click', go);
    row.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); go(); }
    });
  });

  // ---- timeline -------------------------------------------------------------------------

  var TL = data.timeline;
  var EP = data.episodes;
  var tlWrap = $('timeline-wrap');
  var tlCanvas = $('timeline-canvas');
  var TL_H = 132, STRIP_TOP = 4, STRIP_H = 12, BAR_TOP = 22, AXIS_H = 20;
  var nBins = TL.idle_ms.length;
  var tlSpan = nBins * TL.width_s;

  function niceStep(span, width) {
    var steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
    for (var i = 0; i < steps.length; i++) if (width / (span / steps[i]) >= 80) return steps[i];
    return steps[steps.length - 1];
  }

  function drawTimeline() {
    var width = tlWrap.clientWidth;
    var ctx = setupCanvas(tlCanvas, width, TL_H);
    ctx.clearRect(0, 0, width, TL_H);
    ctx.font = '11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif';
    var barH = TL_H - BAR_TOP - AXIS_H;
    if (!nBins || tlSpan <= 0) {
      ctx.fillStyle = '#647084';
      ctx.fillText('No event-loop samples.', 8, BAR_TOP + barH / 2);
      return;
    }
    ctx.fillStyle = '#f3f5f9';
    ctx.fillRect(0, BAR_TOP, width, barH);
    var bw = width / nBins;
    for (var i = 0; i < nBins; i++) {
      var idle = TL.idle_ms[i], busy = TL.busy_ms[i], blocked = TL.blocked_ms[i];
      var total = idle + busy + blocked;
      if (total <= 0) continue;
      var x = i * bw, w = bw + 0.6; // overlap a hair: no seams between columns
      var bottom = BAR_TOP + barH;
      var hb = barH * blocked / total, hu = barH * busy / total;
      ctx.fillStyle = '#e03e3e'; ctx.fillRect(x, bottom - hb, w, hb);
      ctx.fillStyle = '#4c7be8'; ctx.fillRect(x, bottom - hb - hu, w, hu);
      ctx.fillStyle = '#c9ced8'; ctx.fillRect(x, BAR_TOP, w, barH - hb - hu);
    }
    // Episodes: red marks in a strip above the bars, at least 2 px wide so short ones show.
    ctx.fillStyle = '#e03e3e';
    for (var k = 0; k < EP.start_s.length; k++) {
      var ex = (EP.start_s[k] - TL.start_s) / tlSpan * width;
      var ew = Math.max(2, EP.ms[k] / 1000 / tlSpan * width);
      ctx.fillRect(ex, STRIP_TOP, ew, STRIP_H);
    }
    // Time axis.
    var step = niceStep(tlSpan, width);
    ctx.fillStyle = '#8a94a6';
    ctx.strokeStyle = '#cfd6e1';
    ctx.lineWidth = 1;
    ctx.textBaseline = 'top';
    var axisY = BAR_TOP + barH;
    for (var t = 0; t <= tlSpan + 1e-9; t += step) {
      var tx = Math.round(t / tlSpan * width) + 0.5;
      ctx.beginPath(); ctx.moveTo(tx, axisY); ctx.lineTo(tx, axisY + 4); ctx.stroke();
      var label = fmtSeconds(TL.start_s + t);
      var lw = ctx.measureText(label).width;
      var lx = Math.min(Math.max(tx - lw / 2, 0), width - lw);
      ctx.fillText(label, lx, axisY + 6);
    }
  }

  function episodeAt(t, tol) {
    // Episodes are sorted by start: binary search, then look back over overlapping ones.
    var lo = 0, hi = EP.start_s.length - 1, last = -1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (EP.start_s[mid] <= t + tol) { last = mid; lo = mid + 1; } else hi = mid - 1;
    }
    var best = -1, bestDist = Infinity;
    for (var k = last; k >= 0 && k > last - 64; k--) {
      var s = EP.start_s[k], e = s + EP.ms[k] / 1000;
      var dist = t < s ? s - t : (t > e ? t - e : 0);
      if (dist <= tol && dist < bestDist) { best = k; bestDist = dist; }
    }
    return best;
  }

  function timelineHit(ev) {
    var r = tlCanvas.getBoundingClientRect();
    var x = ev.clientX - r.left;
    var t = TL.start_s + x / r.width * tlSpan;
    var tol = 4 / r.width * tlSpan;
    return { t: t, episode: nBins ? episodeAt(t, tol) : -1, bin: Math.min(nBins - 1, Math.max(0, Math.floor(x / r.width * nBins))) };
  }

  var tlCursor = $('timeline-cursor');

  tlCanvas.addEventListener('mousemove', function (ev) {
    if (!nBins) return;
    var hit = timelineHit(ev);
    var tlRect = tlCanvas.getBoundingClientRect();
    tlCursor.style.left = Math.round(ev.clientX - tlRect.left) + 'px';
    tlCursor.hidden = false;
    showCursor(tpCursor, (ev.clientX - tlRect.left) / tlRect.width);
    var out = [];
    if (hit.episode >= 0) {
      var k = hit.episode;
      out.push(el('div', 'tt-title', 'Blocked ' + fmtMs(EP.ms[k]) + ' at ' + fmtSeconds(EP.start_s[k])));
      var ci = EP.culprit[k];
      if (ci >= 0) {
        var c = culprits[ci];
        out.push(el('div', 'tt-row', '#' + c.rank + ' ' + c.function));
        out.push(el('div', 'tt-file', c.file + ':' + c.line));
        if (c.code) out.push(el('div', 'tt-file', c.code));
      } else {
        out.push(el('div', 'tt-row', 'no single line of your code (see the blocking flamegraph)'));
      }
      var ri = EP.route[k];
      if (ri >= 0) out.push(el('div', 'tt-row', 'route ' + data.route_names[ri]));
      tlCanvas.style.cursor = ci >= 0 ? 'pointer' : 'default';
    } else {
      var b = hit.bin;
      var idle = TL.idle_ms[b], busy = TL.busy_ms[b], blocked = TL.blocked_ms[b];
      var total = idle + busy + blocked;
      var t0 = TL.start_s + b * TL.width_s;
      out.push(el('div', 'tt-title', fmtSeconds(t0) + ' \u2013 ' + fmtSeconds(t0 + TL.width_s)));
      if (total > 0) {
        out.push(el('div', 'tt-row', 'idle ' + fmtPct(idle / total) + ' \u00b7 busy ' + fmtPct(busy / total) + ' \u00b7 blocked ' + fmtPct(blocked / total)));
      } else {
        out.push(el('div', 'tt-row', 'no event-loop samples'));
      }
      tlCanvas.style.cursor = 'default';
    }
    showTip(out, ev.clientX, ev.clientY);
  });
  tlCanvas.addEventListener('mouseleave', function () {
    tlCursor.hidden = true;
    if (tpCursor) tpCursor.hidden = true;
    hideTip();
  });
  tlCanvas.addEventListener('click', function (ev) {
    if (!nBins) return;
    var hit = timelineHit(ev);
    if (hit.episode < 0) return;
    var ci = EP.culprit[hit.episode];
    if (ci >= 0 && ci !== selected) {
      selectCulprit(ci);
      var row = document.querySelector('.culprit-row[data-culprit="' + ci + '"]');
      if (row) row.scrollIntoView({ behavior: 'smooth', block: 'center' });
    }
  });

  // ---- shared time axis -------------------------------------------------------------------

  // The threadpool chart shares the event-loop timeline's time axis, so the two line up.
  var TP = data.threadpool;
  var tpBins = TP.mean_busy.length;
  var axisStart = nBins ? TL.start_s : TP.start_s;
  var axisSpan = nBins ? tlSpan : tpBins * TP.width_s;

  function drawTimeAxis(ctx, width, y, start, span) {
    var step = niceStep(span, width);
    ctx.fillStyle = '#8a94a6';
    ctx.strokeStyle = '#cfd6e1';
    ctx.lineWidth = 1;
    ctx.textBaseline = 'top';
    for (var t = 0; t <= span + 1e-9; t += step) {
      var tx = Math.round(t / span * width) + 0.5;
      ctx.beginPath(); ctx.moveTo(tx, y); ctx.lineTo(tx, y + 4); ctx.stroke();
      var label = fmtSeconds(start + t);
      var lw = ctx.measureText(label).width;
      ctx.fillText(label, Math.min(Math.max(tx - lw / 2, 0), width - lw), y + 6);
    }
  }

  function showCursor(cursor, fraction) {
    if (!cursor) return;
    if (!(fraction >= 0 && fraction <= 1)) { cursor.hidden = true; return; }
    cursor.style.left = Math.round(fraction * cursor.parentNode.clientWidth) + 'px';
    cursor.hidden = false;
  }

  // ---- threadpool -------------------------------------------------------------------------

  var tpWrap = $('threadpool-wrap');
  var tpCanvas = $('threadpool-canvas');
  var tpCursor = $('threadpool-cursor');
  var TP_H = 150, TP_TOP = 14, TP_AXIS = 20; // the top 12 px mark stretches at the limit
  var CHART_FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif';
  var tpDrawn = false;

  // Gridline step for counts and sizes: 1, 2, 5, 10, 20, 50, ... giving at most `lines`.
  function niceCount(max, lines) {
    var step = 1;
    while (max / step > lines) {
      var k = String(step).charAt(0);
      step = k === '2' ? step * 2.5 : step * 2;
    }
    return step;
  }

  function tpScale() {
    var peak = 0;
    for (var i = 0; i < tpBins; i++) peak = Math.max(peak, TP.max_busy[i], TP.mean_busy[i]);
    // Far below the limit, scale to what was busy (a flat line at the bottom says nothing)
    // and name the limit instead of drawing it.
    if (peak < TP.limit * 0.5) return { max: Math.max(peak * 1.25, 2), showsLimit: false, peak: peak };
    return { max: Math.max(TP.limit, peak) * 1.06, showsLimit: true, peak: peak };
  }

  function drawThreadpool() {
    if (!tpCanvas) return;
    var width = tpWrap.clientWidth;
    var ctx = setupCanvas(tpCanvas, width, TP_H);
    ctx.clearRect(0, 0, width, TP_H);
    ctx.font = CHART_FONT;
    var plotH = TP_H - TP_TOP - TP_AXIS;
    var bottom = TP_TOP + plotH;
    tpCursor.style.top = TP_TOP + 'px';
    tpCursor.style.height = plotH + 'px';
    if (!tpBins || axisSpan <= 0) {
      ctx.fillStyle = '#647084';
      ctx.fillText('No worker-thread samples.', 8, TP_TOP + plotH / 2);
      return;
    }
    var sc = tpScale();
    var yMax = sc.max;
    function y(v) { return bottom - Math.min(v, yMax) / yMax * plotH; }
    function x(t) { return (t - axisStart) / axisSpan * width; }
    ctx.fillStyle = '#f8f9fb';
    ctx.fillRect(0, TP_TOP, width, plotH);
    // Gridlines (labelled once the data is drawn, so the labels stay on top).
    var step = niceCount(yMax, 4);
    var grid = [];
    for (var g = step; g < yMax; g += step) {
      if (!(sc.showsLimit && Math.abs(g - TP.limit) < step * 0.4)) grid.push(g);
    }
    ctx.strokeStyle = '#e6e9ef';
    ctx.lineWidth = 1;
    grid.forEach(function (v) {
      var gy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(0, gy); ctx.lineTo(width, gy); ctx.stroke();
    });
    // Stretches with every worker busy: a faint shade and a red mark above the plot.
    for (var i = 0; i < tpBins; i++) {
      if (TP.max_busy[i] >= TP.limit) {
        var x0 = x(TP.start_s + i * TP.width_s);
        var w = x(TP.start_s + (i + 1) * TP.width_s) - x0 + 0.6;
        ctx.fillStyle = '#fbe3e3';
        ctx.fillRect(x0, TP_TOP, w, plotH);
        ctx.fillStyle = '#e03e3e';
        ctx.fillRect(x0, 2, w, 8);
      }
    }
    // Average busy workers per slice: a filled step area.
    ctx.beginPath();
    ctx.moveTo(x(TP.start_s), bottom);
    for (var k = 0; k < tpBins; k++) {
      var t0 = TP.start_s + k * TP.width_s;
      ctx.lineTo(x(t0), y(TP.mean_busy[k]));
      ctx.lineTo(x(t0 + TP.width_s), y(TP.mean_busy[k]));
    }
    ctx.lineTo(x(TP.start_s + tpBins * TP.width_s), bottom);
    ctx.closePath();
    ctx.fillStyle = '#a9bdf0';
    ctx.fill();
    // Most busy at once: a step line above it.
    ctx.beginPath();
    for (var m = 0; m < tpBins; m++) {
      var s0 = TP.start_s + m * TP.width_s;
      if (m === 0) ctx.moveTo(x(s0), y(TP.max_busy[m]));
      else ctx.lineTo(x(s0), y(TP.max_busy[m]));
      ctx.lineTo(x(s0 + TP.width_s), y(TP.max_busy[m]));
    }
    ctx.strokeStyle = '#23408e';
    ctx.lineWidth = 1.25;
    ctx.stroke();
    // The limit: a dashed line with its label, or a note when it is far off the scale.
    var label = sc.showsLimit ? 'limit ' + TP.limit : 'limit ' + TP.limit + ' (off scale: at most ' + Math.round(sc.peak) + ' busy)';
    var lw = ctx.measureText(label).width;
    var ly = sc.showsLimit ? Math.round(y(TP.limit)) + 0.5 : TP_TOP + 14;
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
    drawTimeAxis(ctx, width, bottom, axisStart, axisSpan);
    tpDrawn = true;
  }

  function tpBinAt(clientX) {
    var r = tpCanvas.getBoundingClientRect();
    var t = axisStart + (clientX - r.left) / r.width * axisSpan;
    var b = Math.floor((t - TP.start_s) / TP.width_s);
    return b >= 0 && b < tpBins ? b : -1;
  }

  if (tpCanvas) {
    tpCanvas.addEventListener('mousemove', function (ev) {
      var r = tpCanvas.getBoundingClientRect();
      var fraction = (ev.clientX - r.left) / r.width;
      showCursor(tpCursor, fraction);
      showCursor(tlCursor, fraction);
      var b = tpBinAt(ev.clientX);
      if (b < 0) { hideTip(); return; }
      var t0 = TP.start_s + b * TP.width_s;
      var out = [el('div', 'tt-title', fmtSeconds(t0) + ' \u2013 ' + fmtSeconds(t0 + TP.width_s))];
      out.push(el('div', 'tt-row', TP.mean_busy[b].toFixed(1) + ' workers busy on average, ' + TP.max_busy[b] + ' at most'));
      if (TP.max_busy[b] >= TP.limit) {
        var tag = el('div', 'tt-row');
        tag.appendChild(el('span', 'tt-tag blocked', 'all ' + TP.limit + ' busy'));
        tag.appendChild(document.createTextNode('further def work waited'));
        out.push(tag);
      }
      showTip(out, ev.clientX, ev.clientY);
    });
    tpCanvas.addEventListener('mouseleave', function () {
      tpCursor.hidden = true;
      tlCursor.hidden = true;
      hideTip();
    });
  }

  // ---- resources --------------------------------------------------------------------------

  var RES = data.resources;
  var resHost = $('resources-charts');
  var resCharts = []; // {canvas, metric, times}
  var RES_H = 84, RES_PAD = 4, RES_AXIS = 14;

  function fmtValue(v, unit) {
    if (v === null || v === undefined) return '\u2013';
    if (unit === 'MiB') {
      if (Math.abs(v) >= 1024) return (v / 1024).toFixed(2) + ' GiB';
      return (Math.abs(v) < 10 ? v.toFixed(1) : Math.round(v).toLocaleString('en-US')) + ' MiB';
    }
    return Math.round(v).toLocaleString('en-US');
  }

  function fmtAxis(v, unit) {
    if (unit !== 'MiB') return Math.round(v).toLocaleString('en-US');
    return v >= 10240 ? Math.round(v / 1024) + ' GiB' : (v < 10 && v % 1 ? v.toFixed(1) : Math.round(v)) + ' MiB';
  }

  function fmtRate(v, unit) {
    var flat = Math.abs(v) < (unit === 'MiB' ? 0.05 : 0.5); // shows as zero: no sign
    var sign = flat ? '\u00b1' : (v > 0 ? '+' : '\u2212');
    return sign + fmtValue(Math.abs(v), unit) + '/min';
  }

  function lastValue(values) {
    for (var i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
    return null;
  }

  function buildResources() {
    if (!resHost) return;
    RES.processes.forEach(function (proc) {
      var box = el('div', 'res-proc');
      var head = el('div', 'res-proc-head', 'PID ' + proc.pid);
      var span = proc.t_s[proc.t_s.length - 1] - proc.t_s[0];
      head.appendChild(el('span', 'muted', ' \u00b7 ' + proc.t_s.length + ' polls over ' + fmtSeconds(span)));
      box.appendChild(head);
      var grid = el('div', 'res-grid');
      proc.metrics.forEach(function (m) {
        var card = el('div', 'res-chart' + (m.leak ? ' leak' : ''));
        card.dataset.metric = m.id;
        card.dataset.pid = String(proc.pid);
        var top = el('div', 'res-head');
        top.appendChild(el('span', 'res-title', m.label));
        top.appendChild(el('span', 'res-value', fmtValue(lastValue(m.values), m.unit)));
        card.appendChild(top);
        var sub;
        if (m.leak) sub = 'possible leak: ' + fmtRate(m.slope_per_min, m.unit) + ', r\u00b2 ' + m.r2.toFixed(2);
        else if (m.fit.length) sub = 'after warm-up ' + fmtRate(m.slope_per_min, m.unit) + (m.r2 > 0 ? ', r\u00b2 ' + m.r2.toFixed(2) : '');
        else sub = 'too few polls after the warm-up to fit a line';
        card.appendChild(el('div', 'res-sub', sub));
        var canvas = el('canvas', 'res-canvas');
        canvas.setAttribute('aria-label', m.label + ' of PID ' + proc.pid + ' over time');
        card.appendChild(canvas);
        grid.appendChild(card);
        var chart = { canvas: canvas, metric: m, times: proc.t_s };
        resCharts.push(chart);
        canvas.addEventListener('mousemove', function (ev) { resourceTip(chart, ev); });
        canvas.addEventListener('mouseleave', hideTip);
      });
      box.appendChild(grid);
      resHost.appendChild(box);
    });
  }

  function resScale(chart) {
    var m = chart.metric;
    var lo = Infinity, hi = -Infinity;
    m.values.forEach(function (v) { if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
    if (m.fit.length) { lo = Math.min(lo, m.fit[1], m.fit[3]); hi = Math.max(hi, m.fit[1], m.fit[3]); }
    if (lo === Infinity) { lo = 0; hi = 1; }
    if (m.unit === 'MiB') {
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

  var RES_GUTTER = 56; // px right of the plot for the value labels

  function drawResource(chart) {
    var canvas = chart.canvas, m = chart.metric, times = chart.times;
    var full = canvas.parentNode.clientWidth - 20;
    if (full <= RES_GUTTER + 20) return;
    var ctx = setupCanvas(canvas, full, RES_H);
    ctx.clearRect(0, 0, full, RES_H);
    ctx.font = '10.5px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif';
    var width = full - RES_GUTTER;
    var plotTop = RES_PAD, plotH = RES_H - RES_PAD - RES_AXIS, bottom = plotTop + plotH;
    var end = Math.max(RES.end_s, times[times.length - 1]) || 1;
    var sc = resScale(chart);
    function x(t) { return t / end * width; }
    function y(v) { return bottom - (v - sc.lo) / (sc.hi - sc.lo) * plotH; }
    chart.x = x;
    ctx.fillStyle = '#fafbfc';
    ctx.fillRect(0, plotTop, width, plotH);
    // Warm-up: left out of the fit.
    var w0 = x(times[0]), w1 = x(Math.min(times[0] + RES.warmup_s, end));
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
      ctx.fillText(fmtAxis(g, m.unit), width + 5, Math.min(Math.max(gy, plotTop + 5), bottom - 4));
    }
    if (w1 - w0 > 44) {
      // Label the warm-up where its own data is not: at the bottom if that sits high.
      var warmLow = Infinity;
      for (var k = 0; k < times.length && times[k] < times[0] + RES.warmup_s; k++) {
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
    var endText = fmtSeconds(end);
    ctx.fillText(endText, width - ctx.measureText(endText).width, bottom + 2);
    chart.drawn = true;
  }

  function resourceTip(chart, ev) {
    if (!chart.x) return;
    var r = chart.canvas.getBoundingClientRect();
    var px = ev.clientX - r.left;
    var best = -1, bestDist = Infinity;
    for (var i = 0; i < chart.times.length; i++) {
      var d = Math.abs(chart.x(chart.times[i]) - px);
      if (d < bestDist) { bestDist = d; best = i; }
    }
    if (best < 0) return;
    var m = chart.metric;
    var t = chart.times[best];
    var out = [el('div', 'tt-title', m.label + ': ' + fmtValue(m.values[best], m.unit))];
    out.push(el('div', 'tt-row', 'at ' + fmtSeconds(t) + (t < chart.times[0] + RES.warmup_s ? ' (warm-up)' : '')));
    if (m.leak) {
      var row = el('div', 'tt-row');
      row.appendChild(el('span', 'tt-tag blocked', 'possible leak'));
      row.appendChild(document.createTextNode(fmtRate(m.slope_per_min, m.unit)));
      out.push(row);
    }
    showTip(out, ev.clientX, ev.clientY);
  }

  function drawResources() { resCharts.forEach(drawResource); }

  // ---- workers --------------------------------------------------------------------------

  // Several server processes: the switch narrows the culprits table and the timeline to one
  // worker, from figures the payload carries per worker (the flamegraph stays merged).
  var WORKERS = data.workers || [];
  var workerSelect = $('worker-select');
  var workerStats = $('worker-stats');
  var allStats = workerStats ? Array.prototype.map.call(workerStats.childNodes, function (n) { return n.cloneNode(true); }) : [];
  var workerByPid = {};
  WORKERS.forEach(function (w) { workerByPid[String(w.pid)] = w; });
  var ALL_TIMELINE = data.timeline, ALL_EPISODES = data.episodes;
  var currentWorker = null;

  var culpritTable = $('culprits-table');
  var culpritBody = culpritTable ? culpritTable.tBodies[0] : null;
  var culpritRows = culpritBody ? Array.prototype.slice.call(culpritBody.rows) : []; // merged order
  var culpritRowOf = {};
  // Rows shown before "Show N more": the server marks the rest as extra.
  var shownRows = culpritRows.filter(function (r) { return !r.classList.contains('extra'); }).length;
  var NUM_CELLS = [4, 5, 6]; // blocked, episodes, longest
  var mergedCells = culpritRows.map(function (r) {
    culpritRowOf[r.dataset.culprit] = r;
    return NUM_CELLS.map(function (c) { return r.cells[c].textContent; });
  });

  function fmtCount(n) { return n.toLocaleString('en-US').replace(/,/g, '\u2009'); }

  function workerEpisodes(w) {
    if (w.episodesView) return w.episodesView;
    var v = { start_s: [], ms: [], culprit: [], route: [] };
    // Ascending indexes into merged episodes sorted by start: the subset stays sorted.
    w.episode_ids.forEach(function (i) {
      v.start_s.push(ALL_EPISODES.start_s[i]);
      v.ms.push(ALL_EPISODES.ms[i]);
      v.culprit.push(ALL_EPISODES.culprit[i]);
      v.route.push(ALL_EPISODES.route[i]);
    });
    w.episodesView = v;
    return v;
  }

  function workerTimeline(w) {
    return {
      start_s: ALL_TIMELINE.start_s,
      width_s: ALL_TIMELINE.width_s,
      idle_ms: w.timeline.idle_ms,
      busy_ms: w.timeline.busy_ms,
      blocked_ms: w.timeline.blocked_ms
    };
  }

  function filterCulprits(w) {
    if (!culpritBody) return;
    var order = [], figures = {};
    if (w) {
      w.culprits.forEach(function (wc) {
        var row = culpritRowOf[String(wc.culprit)];
        if (row) { order.push(row); figures[wc.culprit] = [fmtMs(wc.blocked_ms), fmtCount(wc.episodes), fmtMs(wc.max_ms)]; }
      });
    } else {
      order = culpritRows;
    }
    culpritRows.forEach(function (r, k) {
      r.hidden = true;
      var cells = w ? figures[r.dataset.culprit] : mergedCells[k];
      if (cells) NUM_CELLS.forEach(function (c, j) { r.cells[c].textContent = cells[j]; });
    });
    // The worker's own ranking: most blocked time in it first.
    order.forEach(function (r, k) {
      r.hidden = false;
      r.classList.toggle('extra', k >= shownRows);
      culpritBody.appendChild(r);
    });
    var more = $('culprits-more');
    if (more) {
      var rest = Math.max(0, order.length - shownRows);
      more.hidden = rest === 0;
      more.textContent = 'Show ' + rest + ' more';
    }
    culpritTable.parentNode.hidden = order.length === 0;
    var empty = $('culprits-worker-empty');
    if (empty) empty.hidden = order.length > 0;
    if (selected >= 0 && culpritRowOf[String(selected)] && culpritRowOf[String(selected)].hidden) selectCulprit(selected);
  }

  function stat(bad, before, strong, after) {
    var s = el('span', bad ? 'stat stat-bad' : 'stat', before);
    s.appendChild(el('strong', '', strong));
    if (after) s.appendChild(document.createTextNode(after));
    return s;
  }

  function showWorkerStats(w) {
    if (!workerStats) return;
    if (!w) {
      workerStats.replaceChildren.apply(workerStats, allStats.map(function (n) { return n.cloneNode(true); }));
      return;
    }
    workerStats.replaceChildren(
      stat(false, '', fmtPct(w.utilization), ' loop utilization'),
      stat(w.blocked_ms > 0, 'blocked ', fmtMs(w.blocked_ms)),
      stat(false, '', fmtCount(w.episodes), w.episodes === 1 ? ' episode' : ' episodes'),
      stat(false, 'longest ', fmtMs(w.longest_block_ms))
    );
  }

  function setWorker(pid) {
    var w = pid ? workerByPid[String(pid)] || null : null;
    if (!workerSelect || w === currentWorker) return;
    currentWorker = w;
    workerSelect.value = w ? String(w.pid) : '';
    workerSelect.classList.toggle('active', !!w);
    document.querySelectorAll('.worker-row').forEach(function (r) {
      var on = !!w && r.dataset.pid === String(w.pid);
      r.classList.toggle('selected', on);
      r.setAttribute('aria-selected', String(on));
    });
    document.querySelectorAll('[data-worker-badge]').forEach(function (b) {
      b.textContent = w ? w.label : '';
      b.hidden = !w;
    });
    showWorkerStats(w);
    filterCulprits(w);
    TL = w ? workerTimeline(w) : ALL_TIMELINE;
    EP = w ? workerEpisodes(w) : ALL_EPISODES;
    hideTip();
    drawTimeline();
  }

  if (workerSelect) {
    workerSelect.addEventListener('change', function () { setWorker(workerSelect.value); });
    document.querySelectorAll('.worker-row').forEach(function (row) {
      // Clicking the chosen worker again goes back to all workers.
      function toggle() { setWorker(currentWorker && String(currentWorker.pid) === row.dataset.pid ? '' : row.dataset.pid); }
      row.addEventListener('click', toggle);
      row.addEventListener('keydown', function (ev) {
        if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); toggle(); }
      });
    });
  }

  // ---- start ----------------------------------------------------------------------------

  var resizePending = false;
  window.addEventListener('resize', function () {
    if (resizePending) return;
    resizePending = true;
    requestAnimationFrame(function () {
      resizePending = false;
      drawTimeline();
      drawThreadpool();
      drawResources();
      drawFlame();
    });
  });

  // A read-only hook for tests and the benchmark: where a frame is drawn, what is shown.
  window.__asgiprof = {
    state: function () {
      return { view: flame.view.id, zoom: flame.zoom, drawn: flame.rects.node.length, query: flame.query, selected: selected, worker: currentWorker ? currentWorker.pid : null };
    },
    timeline: function () {
      var sum = function (xs) { return xs.reduce(function (a, b) { return a + b; }, 0); };
      return { idle_ms: sum(TL.idle_ms), busy_ms: sum(TL.busy_ms), blocked_ms: sum(TL.blocked_ms), episodes: EP.start_s.length };
    },
    charts: function () {
      return {
        threadpool: tpDrawn,
        resources: resCharts.filter(function (c) { return c.drawn; }).length
      };
    },
    locate: function (text) {
      var r = flameCanvas.getBoundingClientRect();
      var R = flame.rects;
      for (var i = 0; i < R.node.length; i++) {
        var n = R.node[i];
        if (n !== 0 && R.w[i] >= 4 && nodeLabel(n).indexOf(text) >= 0) {
          return { x: r.left + R.x[i], y: r.top + R.d[i] * ROW, w: R.w[i], h: ROW - 1, node: n };
        }
      }
      return null;
    }
  };

  drawTimeline();
  drawThreadpool();
  buildResources();
  drawResources();
  setView(data.default_view);
})();
