/* main.js: reads the payload, builds the one `app` object the modules share and starts
 * the page. Loaded last (asgiprof/reporters/script_assets.py inlines the modules in
 * load-order.txt's order).
 *
 * app: {doc, win, data (the payload), frames, tree, colors, culpritFrame, tip,
 *       state (what changes: flame, selected, worker, timeline, episodes, charts),
 *       act (what modules offer each other: setView, selectCulprit, setWorker, draw*)}.
 * Data comes only from the JSON payload element; nothing here loads anything.
 */
(function (A) {
  'use strict';

  function createApp(doc, win, data) {
    var T = A.tree;
    var frames = T.frameTable(data.strings, data.frames);
    var culpritFrame = T.culpritFrames(data.culprits, frames.count);
    return {
      doc: doc,
      win: win,
      data: data,
      frames: frames,
      tree: T.buildTree(data.nodes, data.frames.kind),
      colors: T.frameColors(frames, culpritFrame),
      culpritFrame: culpritFrame,
      tip: A.dom.tooltip(win, doc.getElementById('tooltip')),
      state: { selected: -1 },
      act: {}
    };
  }

  // A read-only hook for tests and the benchmark: where a frame is drawn, what is shown.
  function testHook(app) {
    var state = app.state;
    var sum = function (xs) { return xs.reduce(function (a, b) { return a + b; }, 0); };
    return {
      state: function () {
        var f = state.flame;
        return { view: f.view.id, zoom: f.zoom, drawn: f.rects.node.length, query: f.query, selected: state.selected, worker: state.worker ? state.worker.pid : null };
      },
      timeline: function () {
        var tl = state.timeline;
        return { idle_ms: sum(tl.idle_ms), busy_ms: sum(tl.busy_ms), blocked_ms: sum(tl.blocked_ms), episodes: state.episodes.start_s.length };
      },
      charts: function () {
        return {
          threadpool: state.threadpoolDrawn,
          resources: state.resourceCharts.filter(function (c) { return c.drawn; }).length
        };
      },
      locate: app.act.locateFrame
    };
  }

  function drawAll(app) {
    app.act.drawTimeline();
    app.act.drawThreadpool();
    app.act.drawResources();
    app.act.drawFlame();
  }

  function start(doc, win) {
    var payloadEl = doc.getElementById('asgiprof-data');
    if (!payloadEl) return;
    var app = createApp(doc, win, JSON.parse(payloadEl.textContent));
    A.flamegraph.init(app);
    A.tables.init(app);
    A.workers.init(app);
    A.timeline.init(app);
    A.threadpool.init(app);
    A.resources.init(app);
    var resizePending = false;
    win.addEventListener('resize', function () {
      if (resizePending) return;
      resizePending = true;
      win.requestAnimationFrame(function () {
        resizePending = false;
        drawAll(app);
      });
    });
    win.__asgiprof = testHook(app);
    app.act.drawTimeline();
    app.act.drawThreadpool();
    app.act.drawResources();
    app.act.setView(app.data.default_view);
  }

  A.main = { createApp: createApp, start: start };
  if (typeof document !== 'undefined' && typeof window !== 'undefined') start(document, window);
})(globalThis.AsgiprofReport = globalThis.AsgiprofReport || {});
