/* tables.js: the server-rendered tables made interactive: share bars, route rows (open the
 * route's flamegraph), culprit rows (select: stack panel and flamegraph focus; "Show N
 * more"; the per-worker ranking). Offers app.act.selectCulprit and app.act.filterCulprits.
 */
(function (A) {
  'use strict';

  var LIB_PATH = /[\/\\](?:site|dist)-packages[\/\\]|[\/\\]lib[\/\\](?:python|pypy)\d/i;
  var NUM_CELLS = [4, 5, 6]; // culprit table columns: blocked, episodes, longest

  // Class of stack line k in the stack panel: the culprit's line, a library line, or ''.
  function stackLineClass(line, k, hitIndex) {
    if (k === hitIndex) return 'hit';
    return LIB_PATH.test(line) ? 'lib' : '';
  }

  // The culprit's line in its stack: its last occurrence (recursion repeats it).
  function stackHit(c) {
    return c.stack.lastIndexOf(c.function + ' (' + c.file + ':' + c.line + ')');
  }

  function culpritTitle(c) {
    var where = c.context === 'middleware' || c.context === 'dependency'
      ? ' \u2014 in ' + c.context + ' ' + (c.context_name || '') : '';
    return '#' + c.rank + ' ' + c.function + ' (' + c.file + ':' + c.line + ')' + where;
  }

  // The narrowest view with time at the culprit's node, and the node to zoom to.
  function focusView(c, hasView, totalsOf, defaultView) {
    var target = 'blocking';
    if (c.node >= 0) {
      var order = ['blocking', 'loop', 'all'];
      for (var k = 0; k < order.length; k++) {
        if (hasView(order[k]) && totalsOf(order[k])[c.node] > 0) { target = order[k]; break; }
      }
    }
    return { view: hasView(target) ? target : defaultView, zoom: c.node >= 0 ? c.node : 0 };
  }

  // One worker's culprit rows, in its own ranking (the payload's order: most blocked
  // first), with that worker's figures; culprits the table does not show are skipped.
  function workerRanking(worker, shown) {
    var out = [];
    worker.culprits.forEach(function (wc) {
      if (!shown[String(wc.culprit)]) return;
      out.push({
        culprit: wc.culprit,
        cells: [A.format.ms(wc.blocked_ms), A.format.count(wc.episodes), A.format.ms(wc.max_ms)]
      });
    });
    return out;
  }

  function initBars(doc) {
    // Widths from data-share through the CSSOM (the CSP forbids style attributes); a
    // non-zero share stays visible.
    doc.querySelectorAll('[data-share]').forEach(function (bar) {
      var share = parseFloat(bar.dataset.share) || 0;
      bar.style.width = A.scales.barWidth(share);
      if (share > 0 && !bar.classList.contains('bar-blocked')) bar.style.minWidth = '2px';
    });
  }

  function initRoutes(app) {
    var doc = app.doc;
    doc.querySelectorAll('.route-row[data-view]').forEach(function (row) {
      A.dom.onActivate(row, function () {
        app.act.setView(row.dataset.view);
        doc.getElementById('flamegraph').scrollIntoView({ behavior: 'smooth' });
      });
    });
  }

  function initCulprits(app) {
    var doc = app.doc, state = app.state;
    var byId = function (id) { return doc.getElementById(id); };
    var stackPanel = byId('stack-panel');
    var table = byId('culprits-table');
    var body = table ? table.tBodies[0] : null;
    var rows = body ? Array.prototype.slice.call(body.rows) : []; // merged order
    var rowOf = {};
    // Rows shown before "Show N more": the server marks the rest as extra.
    var shownRows = rows.filter(function (r) { return !r.classList.contains('extra'); }).length;
    // The merged figures as the server wrote them, to put back after a worker's.
    var mergedCells = rows.map(function (r) {
      rowOf[r.dataset.culprit] = r;
      return NUM_CELLS.map(function (c) { return r.cells[c].textContent; });
    });

    function rowFor(index) {
      return doc.querySelector('.culprit-row[data-culprit="' + Number(index) + '"]');
    }

    function expand() {
      table.classList.remove('collapsed');
      var more = byId('culprits-more');
      if (more) more.remove();
    }

    function selectCulprit(index) {
      if (index === state.selected) index = -1;
      state.selected = index;
      doc.querySelectorAll('.culprit-row').forEach(function (r) {
        var on = Number(r.dataset.culprit) === index;
        r.classList.toggle('selected', on);
        r.setAttribute('aria-expanded', String(on));
      });
      if (index < 0) {
        stackPanel.hidden = true;
        state.flame.focus = null;
        app.act.drawFlame();
        return;
      }
      var chosen = rowFor(index);
      // A culprit another worker's filter hides (the verdict, say): show every worker again.
      if (chosen && chosen.hidden) app.act.setWorker('');
      if (table && chosen && chosen.classList.contains('extra') && table.classList.contains('collapsed')) expand();
      var c = app.data.culprits[index];
      byId('stack-title').textContent = culpritTitle(c);
      var hitIndex = stackHit(c);
      var items = c.stack.map(function (s, k) { return A.dom.el(doc, 'li', stackLineClass(s, k, hitIndex), s); });
      var list = byId('stack-list');
      list.replaceChildren.apply(list, items);
      stackPanel.hidden = false;
      var focus = new Uint8Array(app.frames.count);
      c.frames.forEach(function (f) { focus[f] = 1; });
      state.flame.focus = focus;
      var to = focusView(c, app.act.hasView, app.act.totalsOf, app.data.default_view);
      app.act.setView(to.view, to.zoom);
    }

    // Select the culprit (unless it is) and bring its row into view.
    function revealCulprit(index) {
      if (index !== state.selected) selectCulprit(index);
      var row = rowFor(index);
      if (row) row.scrollIntoView({ behavior: 'smooth', block: 'center' });
    }

    // One worker's culprits (in its ranking, with its figures), or all with null.
    function filterCulprits(w) {
      if (!body) return;
      var order = rows, figures = {};
      if (w) {
        var ranked = workerRanking(w, rowOf);
        order = ranked.map(function (r) { return rowOf[String(r.culprit)]; });
        ranked.forEach(function (r) { figures[r.culprit] = r.cells; });
      }
      rows.forEach(function (r, k) {
        r.hidden = true;
        var cells = w ? figures[r.dataset.culprit] : mergedCells[k];
        if (cells) NUM_CELLS.forEach(function (c, j) { r.cells[c].textContent = cells[j]; });
      });
      order.forEach(function (r, k) {
        r.hidden = false;
        r.classList.toggle('extra', k >= shownRows);
        body.appendChild(r);
      });
      var more = byId('culprits-more');
      if (more) {
        var rest = Math.max(0, order.length - shownRows);
        more.hidden = rest === 0;
        more.textContent = 'Show ' + rest + ' more';
      }
      table.parentNode.hidden = order.length === 0;
      var empty = byId('culprits-worker-empty');
      if (empty) empty.hidden = order.length > 0;
      var sel = rowOf[String(state.selected)];
      if (state.selected >= 0 && sel && sel.hidden) selectCulprit(state.selected);
    }

    doc.querySelectorAll('.culprit-row').forEach(function (row) {
      var index = Number(row.dataset.culprit);
      A.dom.onActivate(row, function () { selectCulprit(index); });
    });
    // The call chain opens and closes by itself: its clicks and keys must not (de)select the row.
    doc.querySelectorAll('.culprit-row .calls').forEach(function (d) {
      d.addEventListener('click', function (ev) { ev.stopPropagation(); });
      d.addEventListener('keydown', function (ev) { ev.stopPropagation(); });
    });
    doc.querySelectorAll('.verdict').forEach(function (v) {
      v.addEventListener('click', function () { revealCulprit(Number(v.dataset.culprit)); });
    });
    var more = byId('culprits-more');
    if (more) more.addEventListener('click', expand);
    var toFlame = byId('stack-to-flame');
    if (toFlame) toFlame.addEventListener('click', function () { byId('flamegraph').scrollIntoView({ behavior: 'smooth' }); });

    app.act.selectCulprit = selectCulprit;
    app.act.revealCulprit = revealCulprit;
    app.act.filterCulprits = filterCulprits;
  }

  function init(app) {
    initBars(app.doc);
    initCulprits(app);
    initRoutes(app);
  }

  A.tables = {
    stackLineClass: stackLineClass, stackHit: stackHit, culpritTitle: culpritTitle,
    focusView: focusView, workerRanking: workerRanking, init: init
  };
})(globalThis.AsgiprofReport = globalThis.AsgiprofReport || {});
