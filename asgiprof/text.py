"""Text from the target (function names, paths, source lines, thread names, command lines)
made safe to store and to show: it is data, never markup or terminal commands.

- `json_safe`: for files; text Python decoded with surrogateescape (bytes that were not
  UTF-8 in a file name or command line) becomes `\\xff`-style escapes instead of failing.
- `terminal_safe` / `Printable`: for the terminal; control characters (ESC starts terminal
  commands), bidirectional overrides and undecodable bytes become visible one-cell stand-ins
  (`␛`, `�`), so the layout rich computed stays aligned.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment

_REPLACEMENT: Final = "\ufffd"


def _terminal_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0x20):
        if chr(code) not in "\n\t":
            table[code] = chr(0x2400 + code)  # Unicode "control pictures": ␀ ... ␟, ␛
    table[0x7F] = "\u2421"  # ␡
    for code in range(0x80, 0xA0):  # C1 controls: 0x9b is a one-byte CSI on some terminals
        table[code] = _REPLACEMENT
    # Bidirectional overrides and isolates reorder what follows them ("Trojan source").
    for code in (0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        table[code] = _REPLACEMENT
    for code in range(0xD800, 0xE000):  # lone surrogates cannot even be encoded
        table[code] = _REPLACEMENT
    return table


_TERMINAL: Final = _terminal_table()


def terminal_safe(text: str) -> str:
    """`text` with every character a terminal would act on replaced by a visible one."""
    return text.translate(_TERMINAL)


def json_safe(text: str) -> str:
    """`text` encodable as UTF-8: surrogate-escaped bytes become `\\xNN` escapes."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


class Printable:
    """Wraps a rich renderable so that the text of every segment it renders is
    `terminal_safe`; rich's own control segments (cursor moves) pass unchanged."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        for segment in console.render(self.renderable, options):
            if segment.control or not segment.text:
                yield segment
            else:
                yield Segment(segment.text.translate(_TERMINAL), segment.style)
