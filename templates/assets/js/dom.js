/* dom.js: the only way text reaches the page. Target-derived text (function names, paths,
 * routes, source lines) goes in with textContent, never parsed as HTML; tests/js checks
 * that no module uses an HTML-parsing sink.
 */
(function (A) {
  'use strict';

  function el(doc, tag, cls, text) {
    var e = doc.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // A header figure: "<before><strong>strong</strong><after>", all as text.
  function stat(doc, bad, before, strong, after) {
    var s = el(doc, 'span', bad ? 'stat stat-bad' : 'stat', before);
    s.appendChild(el(doc, 'strong', '', strong));
    if (after) s.appendChild(doc.createTextNode(after));
    return s;
  }

  // A tooltip row with a red tag, then plain text.
  function taggedRow(doc, tag, text) {
    var row = el(doc, 'div', 'tt-row');
    row.appendChild(el(doc, 'span', 'tt-tag blocked', tag));
    row.appendChild(doc.createTextNode(text));
    return row;
  }

  function setupCanvas(canvas, cssWidth, cssHeight, dpr) {
    canvas.style.height = cssHeight + 'px';
    canvas.width = Math.max(1, Math.round(cssWidth * dpr));
    canvas.height = Math.max(1, Math.round(cssHeight * dpr));
    var ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return ctx;
  }

  // Where a tooltip of size (w, h) goes near the pointer, kept inside the window.
  function tipPosition(clientX, clientY, w, h, winW, winH) {
    var pad = 14;
    var x = clientX + pad;
    var y = clientY + pad;
    if (x + w > winW - 8) x = Math.max(8, clientX - w - pad);
    if (y + h > winH - 8) y = Math.max(8, clientY - h - pad);
    return { x: x, y: y };
  }

  // The shared tooltip element: show(nodes, clientX, clientY) and hide().
  function tooltip(win, tip) {
    return {
      show: function (nodes, clientX, clientY) {
        tip.replaceChildren.apply(tip, nodes);
        tip.hidden = false;
        var r = tip.getBoundingClientRect();
        var at = tipPosition(clientX, clientY, r.width, r.height, win.innerWidth, win.innerHeight);
        tip.style.left = at.x + 'px';
        tip.style.top = at.y + 'px';
      },
      hide: function () { tip.hidden = true; }
    };
  }

  // A vertical cursor line at `fraction` (0..1) of its parent's width; hidden outside.
  function showCursor(cursor, fraction) {
    if (!cursor) return;
    if (!(fraction >= 0 && fraction <= 1)) { cursor.hidden = true; return; }
    cursor.style.left = Math.round(fraction * cursor.parentNode.clientWidth) + 'px';
    cursor.hidden = false;
  }

  // Enter and Space act like a click on rows that take the keyboard focus.
  function onActivate(node, action) {
    node.addEventListener('click', action);
    node.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); action(); }
    });
  }

  A.dom = {
    el: el, stat: stat, taggedRow: taggedRow, setupCanvas: setupCanvas,
    tipPosition: tipPosition, tooltip: tooltip, showCursor: showCursor, onActivate: onActivate
  };
})(globalThis.AsgiprofReport = globalThis.AsgiprofReport || {});
