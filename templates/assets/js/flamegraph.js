/* flamegraph.js: the flamegraph's controls: view buttons and route select, "Full stacks",
 * search, zoom by click, breadcrumbs, hover outline and tooltip. Reads and writes
 * app.state.flame; offers app.act.setView, setZoom, drawFlame, totalsOf.
 */
(function (A) {
  'use strict';

  function init(app) {
    var doc = app.doc, data = app.data, tree = app.tree, frames = app.frames;
    var F = A.format, L = A.flameLayout, el = A.dom.el;
    var ROW = L.ROW;
    var byId = function (id) { return doc.getElementById(id); };
    var wrap = byId('flame-wrap');
    var canvas = byId('flame-canvas');
    var emptyNote = byId('flame-empty');
    var crumbsBox = byId('flame-crumbs');
    var searchInput = byId('flame-search');
    var searchResult = byId('search-result');
    var routeSelect = byId('route-select');
    var viewButtons = byId('view-buttons');
    var hover = byId('flame-hover');
    var fullStacks = byId('flame-full-stacks');
    var resetButton = byId('flame-reset');

    var flame = app.state.flame = {
      view: null,
      totals: null,
      zoom: 0,
      focus: null, // Uint8Array over frames of the selected culprit
      match: null, // Uint8Array over frames matching the search
      query: '',
      rects: L.layout(tree, new Float64Array(tree.size), { zoom: 0, fromUser: false, width: 0 }),
      fromUser: tree.anyUser, // views start at your code unless "Full stacks" is checked
      rendered: false
    };
    var viewById = {};
    data.views.forEach(function (v) { viewById[v.id] = v; });
    var totalsCache = {};
    var searchTexts = null; // built on the first search

    function totalsOf(id) {
      if (!totalsCache[id]) totalsCache[id] = A.tree.viewTotals(tree, viewById[id]);
      return totalsCache[id];
    }

    function nodeLabel(n) {
      return n === 0 ? flame.view.label : frames.label(tree.frame[n]);
    }

    function markRendered() {
      if (flame.rendered) return;
      flame.rendered = true;
      app.win.__asgiprofRenderMs = app.win.performance.now();
      app.win.__asgiprofRendered = true;
    }

    function drawFlame() {
      var width = wrap.clientWidth;
      var rects = L.layout(tree, flame.totals, { zoom: flame.zoom, fromUser: flame.fromUser, width: width });
      flame.rects = rects;
      var empty = rects.maxDepth < 0;
      emptyNote.hidden = !empty;
      canvas.hidden = empty;
      wrap.dataset.view = flame.view.id;
      wrap.dataset.zoom = String(flame.zoom);
      wrap.dataset.drawn = String(rects.node.length);
      resetButton.disabled = flame.zoom === 0;
      renderCrumbs();
      if (!empty) {
        var ctx = A.dom.setupCanvas(canvas, width, (rects.maxDepth + 1) * ROW + 1, app.win.devicePixelRatio || 1);
        A.flameDraw.draw(ctx, rects, {
          tree: tree, frames: frames, colors: app.colors, totals: flame.totals,
          viewLabel: flame.view.label, zoom: flame.zoom, match: flame.match, focus: flame.focus
        }, width);
      }
      markRendered();
    }

    function hitAt(clientX, clientY) {
      var r = canvas.getBoundingClientRect();
      return L.hit(flame.rects, clientX - r.left, clientY - r.top);
    }

    function nodeTip(n) {
      var tot = flame.totals;
      var ms = tot[n];
      var out = [];
      if (n === 0) {
        out.push(el(doc, 'div', 'tt-title', flame.view.label));
      } else {
        var fr = tree.frame[n];
        out.push(el(doc, 'div', 'tt-title', frames.name(fr)));
        out.push(el(doc, 'div', 'tt-file', frames.where(fr)));
        var tags = el(doc, 'div', 'tt-row');
        tags.appendChild(el(doc, 'span', 'tt-tag', frames.kindLabel(fr)));
        if (app.culpritFrame[fr]) tags.appendChild(el(doc, 'span', 'tt-tag blocked', 'blocking culprit'));
        out.push(tags);
      }
      var self = n !== 0 ? ' \u00b7 self ' + F.ms(A.tree.selfMs(tree, tot, n)) : '';
      out.push(el(doc, 'div', 'tt-row', F.ms(ms) + F.samples(ms, data.rate_hz || 0) + self));
      var share = F.pct(tot[0] > 0 ? ms / tot[0] : 0) + ' of ' + flame.view.label.toLowerCase();
      var up = tree.parent[n];
      if (n !== 0 && up > 0 && tot[up] > 0) share += ' \u00b7 ' + F.pct(ms / tot[up]) + ' of caller';
      out.push(el(doc, 'div', 'tt-row', share));
      return out;
    }

    function hideHover() { hover.hidden = true; app.tip.hide(); }

    canvas.addEventListener('mousemove', function (ev) {
      var idx = hitAt(ev.clientX, ev.clientY);
      if (idx < 0) { hideHover(); canvas.style.cursor = 'default'; return; }
      canvas.style.cursor = 'pointer';
      var R = flame.rects;
      // Outline the hovered frame with a positioned element: no canvas redraw per move.
      hover.style.left = R.x[idx] + 'px';
      hover.style.top = R.d[idx] * ROW + 'px';
      hover.style.width = Math.max(R.w[idx] - 1, 1) + 'px';
      hover.style.height = (ROW - 1) + 'px';
      hover.hidden = false;
      app.tip.show(nodeTip(R.node[idx]), ev.clientX, ev.clientY);
    });
    canvas.addEventListener('mouseleave', hideHover);
    canvas.addEventListener('click', function (ev) {
      var idx = hitAt(ev.clientX, ev.clientY);
      if (idx >= 0) setZoom(flame.rects.node[idx]);
    });

    function setZoom(n) {
      flame.zoom = flame.totals[n] > 0 ? n : 0;
      hideHover();
      drawFlame();
    }

    function renderCrumbs() {
      var c = A.tree.crumbs(tree, flame.zoom);
      var chain = c.chain;
      var items = [];
      chain.forEach(function (n, k) {
        if (k > 0) items.push(el(doc, 'span', 'sep', '\u203a'));
        if (k === 1 && c.hidden.length) {
          var gap = el(doc, 'span', 'gap', '\u2026');
          gap.title = c.hidden.map(function (h) { return frames.name(tree.frame[h]); }).join(' \u203a ');
          items.push(gap, el(doc, 'span', 'sep', '\u203a'));
        }
        var last = k === chain.length - 1;
        var b = el(doc, 'button', last ? 'current' : '', n === 0 ? flame.view.label : frames.name(tree.frame[n]));
        b.type = 'button';
        b.title = nodeLabel(n);
        if (!last) b.addEventListener('click', function () { setZoom(n); });
        items.push(b);
      });
      crumbsBox.replaceChildren.apply(crumbsBox, items);
    }

    fullStacks.checked = !tree.anyUser;
    fullStacks.disabled = !tree.anyUser;
    fullStacks.addEventListener('change', function () {
      flame.fromUser = !fullStacks.checked;
      flame.zoom = 0;
      hideHover();
      drawFlame();
    });
    resetButton.addEventListener('click', function () { setZoom(0); });

    // Views: segmented buttons for the main views, a select for routes.
    var buttonOf = {};
    data.views.forEach(function (v) {
      if (v.group === 'main') {
        var b = el(doc, 'button', '', v.label);
        b.type = 'button';
        b.dataset.view = v.id;
        b.disabled = !(v.total_ms > 0);
        b.title = v.total_ms > 0 ? F.ms(v.total_ms) : 'no samples in this view';
        b.setAttribute('aria-pressed', 'false');
        b.addEventListener('click', function () { setView(v.id); });
        viewButtons.appendChild(b);
        buttonOf[v.id] = b;
      } else {
        var o = el(doc, 'option', '', v.label + ' (' + F.ms(v.total_ms) + ')');
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
      hideHover();
      drawFlame();
    }

    // Search: highlight frames whose name or file:line contains the text.
    function updateSearch() {
      var q = flame.query;
      if (!q) { flame.match = null; searchResult.textContent = ''; return; }
      if (!searchTexts) searchTexts = A.tree.searchTexts(frames);
      var found = A.tree.matchFrames(searchTexts, q);
      flame.match = found.match;
      var tot = flame.totals;
      var ms = A.tree.matchedMs(tree, tot, found.match);
      searchResult.textContent = found.hits
        ? 'matches: ' + F.ms(ms) + ' (' + F.pct(tot[0] > 0 ? ms / tot[0] : 0) + ' of this view)'
        : 'no frame matches';
    }

    var searchPending = false;
    searchInput.addEventListener('input', function () {
      if (searchPending) return;
      searchPending = true;
      app.win.requestAnimationFrame(function () {
        searchPending = false;
        flame.query = searchInput.value.trim().toLowerCase();
        updateSearch();
        drawFlame();
      });
    });

    // Where a frame is drawn (page px), for the test hook: the first labelled `text`.
    function locate(text) {
      var r = canvas.getBoundingClientRect();
      var R = flame.rects;
      for (var i = 0; i < R.node.length; i++) {
        var n = R.node[i];
        if (n !== 0 && R.w[i] >= 4 && nodeLabel(n).indexOf(text) >= 0) {
          return { x: r.left + R.x[i], y: r.top + R.d[i] * ROW, w: R.w[i], h: ROW - 1, node: n };
        }
      }
      return null;
    }

    app.act.setView = setView;
    app.act.setZoom = setZoom;
    app.act.drawFlame = drawFlame;
    app.act.totalsOf = totalsOf;
    app.act.hasView = function (id) { return !!viewById[id]; };
    app.act.locateFrame = locate;
  }

  A.flamegraph = { init: init };
})(globalThis.AsgiprofReport = globalThis.AsgiprofReport || {});
