"""`stacks.folded`: Brendan Gregg's folded stacks, `root;...;leaf COUNT`, one line per stack.

Contract: `folded_lines(analysis)` returns the lines (sorted, so the bytes are stable);
`REPORTER.render` writes them. COUNT is the number of samples of that stack summed over all
sampled threads; frames read `function (file:line)`. Frame text never contains `;` (replaced
by `,`) nor anything `str.splitlines` breaks on (replaced by a space), so every line splits
back into its frames and its count, whatever names the target used.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Final

from asgiprof.analyze.result import Analysis
from asgiprof.model import NO_STACK, Frame

# Everything str.splitlines() treats as a line boundary, plus the separator itself.
_LINE_BREAKS: Final = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
EMPTY_STACK: Final = "(no Python frames)"


def frame_text(frame: Frame) -> str:
    text = f"{frame.function} ({frame.file}:{frame.line})"
    return _LINE_BREAKS.sub(" ", text.replace(";", ","))


def folded_lines(analysis: Analysis) -> list[str]:
    profile = analysis.profile
    samples: dict[int, int] = defaultdict(int)
    for tl in profile.threads:
        for stack_id, n in zip(tl.stack, tl.samples, strict=True):
            if stack_id != NO_STACK and n > 0:
                samples[stack_id] += n
    texts = [frame_text(f) for f in profile.frames]
    # Two stacks can fold to one text once names are sanitised: merge them into one line.
    counts: dict[str, int] = defaultdict(int)
    for stack_id, n in samples.items():
        frame_ids = profile.stacks[stack_id]
        key = ";".join(texts[f] for f in frame_ids) if frame_ids else EMPTY_STACK
        counts[key] += n
    return [f"{key} {counts[key]}" for key in sorted(counts)]


class FoldedReporter:
    name = "folded"
    filename = "stacks.folded"

    def render(self, analysis: Analysis, out_dir: Path) -> Path:
        path = out_dir / self.filename
        lines = folded_lines(analysis)
        path.write_bytes(("\n".join(lines) + "\n" if lines else "").encode("utf-8"))
        return path


REPORTER = FoldedReporter()
