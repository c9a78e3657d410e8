/* workers.js: with several server processes, the switch narrows the culprits table and the
 * event-loop timeline to one worker, from the figures the payload carries per worker (the
 * flamegraph stays merged). Offers app.act.setWorker(pid or '').
 */
(function (A) {
  'use strict';

  // One worker's episodes: its ascending indexes into the merged episodes (sorted by
  // start), so the subset stays sorted.
  function workerEpisodes(all, ids) {
    var v = { start_s: [], ms: [], culprit: [], route: [] };
    ids.forEach(function (i) {
      v.start_s.push(all.start_s[i]);
      v.ms.push(all.ms[i]);
      v.culprit.push(all.culprit[i]);
      v.route.push(all.route[i]);
    });
    return v;
  }

  // One worker's timeline on the merged timeline's bins.
  function workerTimeline(all, own) {
    return {
      start_s: all.start_s,
      width_s: all.width_s,
      idle_ms: own.idle_ms,
      busy_ms: own.busy_ms,
      blocked_ms: own.blocked_ms
    };
  }

  // The header figures of one worker.
  function statNodes(doc, w) {
    var F = A.format, stat = A.dom.stat;
    return [
      stat(doc, false, '', F.pct(w.utilization), ' loop utilization'),
      stat(doc, w.blocked_ms > 0, 'blocked ', F.ms(w.blocked_ms)),
      stat(doc, false, '', F.count(w.episodes), w.episodes === 1 ? ' episode' : ' episodes'),
      stat(doc, false, 'longest ', F.ms(w.longest_block_ms))
    ];
  }

  function init(app) {
    var doc = app.doc, data = app.data, state = app.state;
    var select = doc.getElementById('worker-select');
    var statsBox = doc.getElementById('worker-stats');
    // The merged figures as the server wrote them, to put back.
    var allStats = statsBox ? Array.prototype.map.call(statsBox.childNodes, function (n) { return n.cloneNode(true); }) : [];
    var byPid = {};
    (data.workers || []).forEach(function (w) { byPid[String(w.pid)] = w; });
    var episodesOf = {};
    state.worker = null;
    state.timeline = data.timeline;
    state.episodes = data.episodes;

    function showStats(w) {
      if (!statsBox) return;
      var nodes = w ? statNodes(doc, w) : allStats.map(function (n) { return n.cloneNode(true); });
      statsBox.replaceChildren.apply(statsBox, nodes);
    }

    function setWorker(pid) {
      var w = pid ? byPid[String(pid)] || null : null;
      if (!select || w === state.worker) return;
      state.worker = w;
      select.value = w ? String(w.pid) : '';
      select.classList.toggle('active', !!w);
      doc.querySelectorAll('.worker-row').forEach(function (r) {
        var on = !!w && r.dataset.pid === String(w.pid);
        r.classList.toggle('selected', on);
        r.setAttribute('aria-selected', String(on));
      });
      doc.querySelectorAll('[data-worker-badge]').forEach(function (b) {
        b.textContent = w ? w.label : '';
        b.hidden = !w;
      });
      showStats(w);
      app.act.filterCulprits(w);
      if (w && !episodesOf[w.pid]) episodesOf[w.pid] = workerEpisodes(data.episodes, w.episode_ids);
      state.timeline = w ? workerTimeline(data.timeline, w.timeline) : data.timeline;
      state.episodes = w ? episodesOf[w.pid] : data.episodes;
      app.tip.hide();
      app.act.drawTimeline();
    }

    app.act.setWorker = setWorker;
    if (!select) return;
    select.addEventListener('change', function () { setWorker(select.value); });
    doc.querySelectorAll('.worker-row').forEach(function (row) {
      // Clicking the chosen worker again goes back to all workers.
      A.dom.onActivate(row, function () {
        setWorker(state.worker && String(state.worker.pid) === row.dataset.pid ? '' : row.dataset.pid);
      });
    });
  }

  A.workers = { workerEpisodes: workerEpisodes, workerTimeline: workerTimeline, statNodes: statNodes, init: init };
})(globalThis.AsgiprofReport = globalThis.AsgiprofReport || {});
