"""The call tree shared by all flamegraph views: the prefix tree of every stack with weight
in some view, numbered in pre-order (children sorted by function, file, line, so a parent
always precedes its children and siblings keep their order across views)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from asgiprof.model import Frame


@dataclass(frozen=True, slots=True)
class CallTree:
    """Prefix tree of stacks in pre-order: `parent[i] < i`, node 0 is the root."""

    parent: list[int]
    frame: list[int]  # index into `frames`, -1 for the root
    frames: list[int]  # compact frame index -> profile frame id
    stack_node: dict[int, int]  # profile stack id -> node where that stack ends
    _children: list[dict[int, int]]  # pre-order node -> {profile frame id: node}

    def node_of(self, frame_ids: Sequence[int]) -> int | None:
        """Node reached by following `frame_ids` (root first) from the root, if any."""
        node = 0
        for fid in frame_ids:
            nxt = self._children[node].get(fid)
            if nxt is None:
                return None
            node = nxt
        return node


def build_call_tree(
    frames: Sequence[Frame], stacks: Sequence[tuple[int, ...]], stack_ids: Iterable[int]
) -> CallTree:
    """Merge the given stacks into one pre-ordered tree; siblings sorted by name."""
    children: list[dict[int, int]] = [{}]
    node_frame = [-1]
    ends: dict[int, int] = {}
    for sid in sorted(set(stack_ids)):
        node = 0
        for fid in stacks[sid]:
            branch = children[node]
            nxt = branch.get(fid)
            if nxt is None:
                nxt = branch[fid] = len(node_frame)
                children.append({})
                node_frame.append(fid)
            node = nxt
        ends[sid] = node

    used = {fid for fid in node_frame if fid >= 0}
    order_key = {
        fid: rank
        for rank, fid in enumerate(
            sorted(used, key=lambda f: (frames[f].function, frames[f].file, frames[f].line, f))
        )
    }
    # Pre-order walk; push children in reverse so the smallest name comes out first.
    new_id = [0] * len(node_frame)
    old_parent = [-1] * len(node_frame)
    order: list[int] = []
    todo = [0]
    while todo:
        old = todo.pop()
        new_id[old] = len(order)
        order.append(old)
        kids = sorted(children[old].values(), key=lambda c: order_key[node_frame[c]])
        for c in reversed(kids):
            old_parent[c] = old
            todo.append(c)

    compact: dict[int, int] = {}
    parent: list[int] = []
    frame: list[int] = []
    for old in order:
        fid = node_frame[old]
        if fid >= 0 and fid not in compact:
            compact[fid] = len(compact)
        parent.append(-1 if old == 0 else new_id[old_parent[old]])
        frame.append(compact[fid] if fid >= 0 else -1)
    new_children = [{fid: new_id[c] for fid, c in children[old].items()} for old in order]
    return CallTree(
        parent=parent,
        frame=frame,
        frames=list(compact),
        stack_node={sid: new_id[n] for sid, n in ends.items()},
        _children=new_children,
    )
