// A small payload-shaped call tree for the flamegraph tests.
//
//   root
//   └ run (uvicorn, library)
//     ├ handler (/app/main.py, yours)
//     │ ├ helper (/app/main.py, yours)        20 ms
//     │ └ query (site-packages, library)
//     │   └ sleep (stdlib)                    30 ms
//     └ idle (library)                        50 ms
'use strict';
const { A } = require('./load.js');

const strings = [
  'run', 'handler', 'query', 'sleep', 'helper', 'idle',
  '/venv/lib/python3.12/site-packages/uvicorn/main.py', '/app/main.py',
  '/venv/lib/python3.12/site-packages/db/q.py', '/usr/lib/python3.12/time.py',
];
const frames = {
  fn: [0, 1, 2, 3, 4, 5],
  file: [6, 7, 8, 9, 7, 6],
  line: [10, 20, 30, 40, 50, 60],
  kind: [1, 0, 1, 2, 0, 1],
};
// Pre-order: node -> parent, node -> frame.
const nodes = { parent: [-1, 0, 1, 2, 2, 4, 1], frame: [-1, 0, 1, 4, 2, 3, 5] };
const NODE = { root: 0, run: 1, handler: 2, helper: 3, query: 4, sleep: 5, idle: 6 };
const allView = { id: 'all', label: 'All samples', nodes: [3, 5, 6], ms: [20, 30, 50] };

function build() {
  const table = A.tree.frameTable(strings, frames);
  const tree = A.tree.buildTree(nodes, frames.kind);
  return { table, tree, totals: A.tree.viewTotals(tree, allView) };
}

module.exports = { strings, frames, nodes, NODE, allView, build };
