"""Formatting shared by the templates (pure, so tests pin the exact text)."""

from __future__ import annotations

from markupsafe import Markup, escape


def format_ms(ms: float) -> str:
    """1.5 -> "1.5 ms", 250 -> "250 ms", 12345 -> "12.3 s", 125000 -> "2 min 05 s"."""
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.{2 if ms < 10_000 else 1}f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes} min {seconds:02d} s"


def format_pct(share: float) -> str:
    """0.1234 -> "12.3%"; tiny non-zero shares stay visible as "<0.1%"."""
    if 0 < share < 0.001:
        return "<0.1%"
    return f"{share * 100:.1f}%"


def format_count(n: int) -> str:
    return f"{n:,}".replace(",", "\u2009")  # thin space: readable, locale-neutral


def code_spans(text: str) -> Markup:
    """Escape `text`, then show its `backticked` parts (as advice writes code) as <code>."""
    pieces = text.split("`")
    if len(pieces) % 2 == 0:  # an unpaired backtick: keep it literal
        return escape(text)
    out = Markup("")
    for i, piece in enumerate(pieces):
        out += Markup("<code>%s</code>") % piece if i % 2 else escape(piece)
    return out


def short_path(path: str, parts: int = 3) -> str:
    """The last `parts` components of a path, "…/" first when some were dropped."""
    pieces = [p for p in path.replace("\\", "/").split("/") if p]
    return path if len(pieces) <= parts else "\u2026/" + "/".join(pieces[-parts:])
