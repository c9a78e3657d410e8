/* asgiprof diff: draws the differential flamegraph of diff.html from its JSON payload.
 * Target-derived text is set with textContent only, never parsed as HTML; styles go
 * through the CSSOM (the CSP forbids inline style attributes). Loads nothing. */
(function () {
  'use strict';
  var ROW = 18;
  var data = JSON.parse(document.getElementById('asgiprof-diff').textContent);
  var host = document.getElementById('diff-flame');
  var info = document.getElementById('diff-info');
  var switcher = document.getElementById('diff-views');

  function pct(x) { return (x * 100).toFixed(2) + '%'; }

  function totals(nodes) {
    var n = nodes.length, base = new Float64Array(n), head = new Float64Array(n);
    var children = [];
    for (var i = 0; i < n; i++) { base[i] = nodes[i][2]; head[i] = nodes[i][3]; children.push([]); }
    for (var j = n - 1; j >= 0; j--) {
      var p = nodes[j][0];
      if (p >= 0) { base[p] += base[j]; head[p] += head[j]; }
    }
    var roots = [];
    for (var k = 0; k < n; k++) {
      if (nodes[k][0] >= 0) { children[nodes[k][0]].push(k); } else { roots.push(k); }
    }
    return { base: base, head: head, children: children, roots: roots };
  }

  function color(delta, scale) {
    if (scale <= 0 || Math.abs(delta) < 1e-9) { return 'hsl(220, 8%, 78%)'; }
    var t = Math.min(1, Math.abs(delta) / scale);
    var light = 88 - 40 * t;
    return delta > 0 ? 'hsl(0, 75%, ' + light + '%)' : 'hsl(215, 75%, ' + light + '%)';
  }

  function draw(viewId) {
    var view = data.views[viewId];
    host.textContent = '';
    var t = totals(view.nodes);
    var total = 0, scale = 0, i;
    for (i = 0; i < t.roots.length; i++) { total += (t.base[t.roots[i]] + t.head[t.roots[i]]) / 2; }
    for (i = 0; i < view.nodes.length; i++) { scale = Math.max(scale, Math.abs(t.head[i] - t.base[i])); }
    if (total <= 0) { info.textContent = 'No samples in this view.'; host.style.height = '0px'; return; }
    var depthMax = 0;
    function place(ids, left, depth) {
      for (var a = 0; a < ids.length; a++) {
        var id = ids[a];
        var width = (t.base[id] + t.head[id]) / 2 / total;
        if (width < 0.002) { left += width; continue; }
        var frame = data.frames[view.nodes[id][1]];
        var box = document.createElement('div');
        box.className = 'diff-frame';
        box.style.left = (left * 100) + '%';
        box.style.width = (width * 100) + '%';
        box.style.top = (depth * ROW) + 'px';
        box.style.background = color(t.head[id] - t.base[id], scale);
        box.textContent = frame[0];
        box.title = frame[0] + ' (' + frame[1] + ':' + frame[2] + ')\nbase ' + pct(t.base[id]) +
          ', head ' + pct(t.head[id]) + ' of loop samples, change ' +
          (t.head[id] >= t.base[id] ? '+' : '') + pct(t.head[id] - t.base[id]);
        host.appendChild(box);
        depthMax = Math.max(depthMax, depth);
        place(t.children[id], left, depth + 1);
        left += width;
      }
    }
    place(t.roots, 0, 0);
    host.style.height = ((depthMax + 1) * ROW) + 'px';
    info.textContent = view.label + ': ' + view.nodes.length + ' frames; largest change ' + pct(scale) + ' of loop samples.';
  }

  Object.keys(data.views).forEach(function (id, n) {
    var button = document.createElement('button');
    button.type = 'button';
    button.textContent = data.views[id].label;
    button.addEventListener('click', function () { draw(id); });
    switcher.appendChild(button);
    if (n === 0) { draw(id); }
  });
}());
