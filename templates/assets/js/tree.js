/* tree.js: the payload's frames and call tree as typed arrays, and the pure questions the
 * flamegraph asks of them (a view's totals, self time, search matches). No DOM here.
 *
 * The call tree is numbered in pre-order (parent[i] < i, node 0 is the root; siblings in
 * name order), so one backward pass sums subtrees and a backward walk links children in
 * ascending order.
 */
(function (A) {
  'use strict';

  var KIND_LABEL = ['your code', 'library', 'standard library'];

  // FNV-1a: stable pseudo-random hue offsets per function name.
  function hash(s) {
    var h = 2166136261;
    for (var i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return h >>> 0;
  }

  // Names of frames: payload.strings and payload.frames ({fn, file, line, kind} arrays).
  function frameTable(strings, fr) {
    var basename = A.format.basename;
    function name(f) { return strings[fr.fn[f]] || '(unknown)'; }
    function file(f) { return strings[fr.file[f]]; }
    return {
      count: fr.fn.length,
      kind: fr.kind,
      name: name,
      file: file,
      where: function (f) { return file(f) + ':' + fr.line[f]; },
      label: function (f) { return name(f) + ' (' + basename(file(f)) + ':' + fr.line[f] + ')'; },
      kindLabel: function (f) { return KIND_LABEL[fr.kind[f]]; }
    };
  }

  // Fill and text colours per frame: culprit frames red, else by kind (your code warm,
  // libraries teal, the standard library grey), the shade varying with the name.
  function frameColors(frames, culpritFrame) {
    var fill = new Array(frames.count);
    var ink = new Array(frames.count);
    for (var f = 0; f < frames.count; f++) {
      var h = hash(frames.name(f));
      var kind = frames.kind[f];
      if (culpritFrame[f]) {
        fill[f] = 'hsl(0, 74%, ' + (56 + h % 6) + '%)';
        ink[f] = '#ffffff';
        continue;
      }
      if (kind === 0) fill[f] = 'hsl(' + (26 + h % 20) + ', ' + (80 + (h >>> 5) % 12) + '%, ' + (63 + (h >>> 9) % 10) + '%)';
      else if (kind === 1) fill[f] = 'hsl(' + (186 + h % 24) + ', ' + (42 + (h >>> 5) % 16) + '%, ' + (68 + (h >>> 9) % 10) + '%)';
      else fill[f] = 'hsl(' + (210 + h % 24) + ', ' + (9 + (h >>> 5) % 8) + '%, ' + (77 + (h >>> 9) % 8) + '%)';
      ink[f] = '#1d2330';
    }
    return { fill: fill, ink: ink };
  }

  // 1 for every frame of any culprit's stack.
  function culpritFrames(culprits, frameCount) {
    var mark = new Uint8Array(frameCount);
    culprits.forEach(function (c) { c.frames.forEach(function (f) { mark[f] = 1; }); });
    return mark;
  }

  // payload.nodes ({parent, frame}) and frame kinds -> the linked tree.
  //
  // "Start at your code": a frame of your code is where a view starts when something not
  // yours calls it (a framework, the loop); frames above it are left out, and stacks with
  // no code of yours are drawn as one collapsed frame. fromUser[n]: n is such a frame or
  // below one; reachesUser[n]: n's subtree holds one.
  function buildTree(nodes, frameKind) {
    var N = nodes.parent.length;
    var parent = Int32Array.from(nodes.parent);
    var nframe = Int32Array.from(nodes.frame);
    var depth = new Int32Array(N);
    var firstChild = new Int32Array(N).fill(-1);
    var nextSibling = new Int32Array(N).fill(-1);
    for (var i = 1; i < N; i++) depth[i] = depth[parent[i]] + 1;
    for (var j = N - 1; j >= 1; j--) {
      nextSibling[j] = firstChild[parent[j]];
      firstChild[parent[j]] = j;
    }
    var fromUser = new Uint8Array(N);
    var notUserAbove = new Uint8Array(N);
    var reachesUser = new Uint8Array(N);
    var anyUser = false;
    for (var u = 1; u < N; u++) {
      var pu = parent[u];
      var mine = frameKind[nframe[u]] === 0;
      notUserAbove[u] = notUserAbove[pu] || (pu !== 0 && frameKind[nframe[pu]] !== 0) ? 1 : 0;
      fromUser[u] = fromUser[pu] || (mine && notUserAbove[u]) ? 1 : 0;
      if (fromUser[u]) anyUser = true;
    }
    for (var r = N - 1; r >= 1; r--) {
      if (fromUser[r]) reachesUser[r] = 1;
      if (reachesUser[r]) reachesUser[parent[r]] = 1;
    }
    return {
      size: N, parent: parent, frame: nframe, depth: depth, firstChild: firstChild,
      nextSibling: nextSibling, fromUser: fromUser, reachesUser: reachesUser, anyUser: anyUser
    };
  }

  // A view's time per node (ms) including its subtree, from its sparse (node, ms) ends.
  function viewTotals(tree, view) {
    var t = new Float64Array(tree.size);
    for (var k = 0; k < view.nodes.length; k++) t[view.nodes[k]] += view.ms[k];
    for (var n = tree.size - 1; n >= 1; n--) t[tree.parent[n]] += t[n];
    return t;
  }

  function selfMs(tree, totals, n) {
    var self = totals[n];
    for (var c = tree.firstChild[n]; c !== -1; c = tree.nextSibling[c]) self -= totals[c];
    return Math.max(0, self);
  }

  // Root first down to n.
  function pathTo(tree, n) {
    var chain = [];
    for (var a = n; a !== -1; a = tree.parent[a]) chain.push(a);
    return chain.reverse();
  }

  // Breadcrumbs for a zoom: deep ones keep the root, an ellipsis (what it hides) and the
  // last few.
  function crumbs(tree, zoom) {
    var chain = pathTo(tree, zoom);
    var hidden = chain.length > 7 ? chain.splice(1, chain.length - 5) : [];
    return { chain: chain, hidden: hidden };
  }

  // Lowercased "name file:line" per frame: what search looks in.
  function searchTexts(frames) {
    var texts = new Array(frames.count);
    for (var f = 0; f < frames.count; f++) texts[f] = (frames.name(f) + ' ' + frames.where(f)).toLowerCase();
    return texts;
  }

  // Frames containing the (lowercased) query as plain text: never a pattern.
  function matchFrames(texts, query) {
    var match = new Uint8Array(texts.length);
    var hits = 0;
    for (var f = 0; f < texts.length; f++) if (texts[f].indexOf(query) >= 0) { match[f] = 1; hits++; }
    return { match: match, hits: hits };
  }

  // Time under a matching frame, counting nested matches once.
  function matchedMs(tree, totals, match) {
    var inside = new Uint8Array(tree.size);
    var ms = 0;
    for (var n = 1; n < tree.size; n++) {
      var m = match[tree.frame[n]];
      if (m && !inside[tree.parent[n]]) ms += totals[n];
      inside[n] = inside[tree.parent[n]] | m;
    }
    return ms;
  }

  A.tree = {
    hash: hash, frameTable: frameTable, frameColors: frameColors, culpritFrames: culpritFrames,
    buildTree: buildTree, viewTotals: viewTotals, selfMs: selfMs, pathTo: pathTo, crumbs: crumbs,
    searchTexts: searchTexts, matchFrames: matchFrames, matchedMs: matchedMs
  };
})(globalThis.AsgiprofReport = globalThis.AsgiprofReport || {});
