"""Mask secrets (passwords, tokens, keys) in command lines and free text before they are
shown or saved: record redacts command lines, store seals py-spy's process frames."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_MASK = "***"
# Words that make an option, variable or key secret when they are one of its parts:
# `--db-password`, `--api-key`, `GITHUB_TOKEN`, `AWS_SECRET_ACCESS_KEY`, `client_secret`.
_SECRET_WORD = (
    r"(?:password|passwd|passphrase|pass|pwd|secrets?|tokens?|api[-_]?keys?|apikey|keys?"
    r"|auth|authorization|credentials?|cookie)"
)
# Words that make a name secret even inside a part: `PGPASSWORD`, `GHTOKEN`, `db_password`.
_SECRET_INFIX = r"(?:password|passwd|secret|token|api[-_]?key)"
# A value: quoted, or a run of non-space that leaves a closing shell quote in place.
_VALUE = r"""(?:"[^"\n]*"|'[^'\n]*'|[^\s"']\S*?(?=["']?(?:\s|$)))"""
# Names are bounded ({1,64}): real ones are short, and bounds keep every rule linear on
# hostile input (a scan can never run to the end of a long word and back).
_PART = r"[A-Za-z0-9]{1,64}"
# A secret flag: dash/underscore/dot-separated parts, one of them a secret word.
_SECRET_FLAG = rf"--?(?:{_PART}[-_.]){{0,8}}{_SECRET_WORD}(?:[-_.]{_PART}){{0,8}}"
# A secret variable: `X_KEY`, `MY_APP_TOKEN_2`, `PGPASSWORD`; never the shell's PWD.
_SECRET_VAR = (
    rf"(?!(?:OLD)?PWD=)(?:{_PART}_){{0,8}}(?:[A-Za-z0-9]{{0,32}}{_SECRET_INFIX}|{_SECRET_WORD})"
    rf"(?:_{_PART}){{0,8}}"
)


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# Each rule keeps the group `keep` and replaces the rest of its match with ***.
# Applied in order to free text (`redact_text`) and to every argv element (`redact`).
_TEXT_RULES: tuple[re.Pattern[str], ...] = (
    # scheme://user:PASSWORD@host (databases, brokers, proxies). The password may hold "/"
    # (SQLAlchemy accepts it raw) but not "://", which keeps the scan linear on hostile text.
    _compile(
        r"(?P<keep>(?<![a-z0-9+.-])[a-z][a-z0-9+.-]{0,31}://[^\s:/@]*:)(?:(?!://)[^\s@])+(?=@)"
    ),
    # ?token=X&db_password=Y in URLs
    _compile(
        rf"(?P<keep>[?&;](?:[\w.-]{{0,32}}(?:{_SECRET_INFIX}|signature|credential)[\w.-]{{0,32}}"
        r"|key|sig|auth)=)"
        r"[^&#;\s\"']+"
    ),
    # Authorization: Bearer X (also Basic, Token, ... and `authorization=X`)
    _compile(
        r"(?P<keep>\b(?:proxy-)?authorization\s*[:=]\s*(?:(?:bearer|basic|token|digest"
        rf"|negotiate|apikey)\s+)?){_VALUE}"
    ),
    _compile(r"(?P<keep>\bbearer\s+)[\w\-.~+/]+=*"),
    # --password=X / --api-key X / -token X
    _compile(rf"(?<![\w-])(?P<keep>{_SECRET_FLAG}(?:=|[ \t]+)(?!--)){_VALUE}"),
    # SECRET_KEY=X / db_password=X (environment, .env files, command-line assignments)
    _compile(rf"(?<![\w.?&;/-])(?P<keep>{_SECRET_VAR}=){_VALUE}"),
    # "password": "X" / token: X (JSON, YAML, dict reprs)
    _compile(
        rf"(?P<keep>[\"']?(?<![\w-])[\w-]{{0,32}}{_SECRET_INFIX}[\w-]{{0,32}}[\"']?\s*:\s*)"
        r"""(?:"[^"\n]*"|'[^'\n]*'|[^\s,}\]"']+)"""
    ),
)
# Whole-element forms in argv, where the value is everything after `=` (spaces included).
_TOKEN_RULES: tuple[re.Pattern[str], ...] = (
    _compile(rf"^(?P<keep>{_SECRET_FLAG}=).+$"),
    _compile(rf"^(?P<keep>{_SECRET_VAR}=).+$"),
)
# An argv element that is a secret flag alone: the next element is its value.
_SECRET_FLAG_ALONE = _compile(rf"^{_SECRET_FLAG}$")


def _mask(match: re.Match[str]) -> str:
    keep = match["keep"]
    secret = match[0][len(keep) :]
    if len(secret) >= 2 and secret[0] in "\"'" and secret[-1] == secret[0]:
        return f"{keep}{secret[0]}{_MASK}{secret[0]}"  # keep the quotes: JSON stays JSON
    return keep + _MASK


def _apply(rules: Sequence[re.Pattern[str]], text: str) -> str:
    replace: Callable[[re.Match[str]], str] = _mask
    for rule in rules:
        text = rule.sub(replace, text)
    return text


def redact_text(text: str) -> str:
    """`text` with passwords, tokens and keys replaced by ***: URLs, flags, assignments, headers."""
    return _apply(_TEXT_RULES, text)


def redact(argv: Sequence[str]) -> tuple[str, ...]:
    """A command line safe to show and save: secret values replaced by *** (see `redact_text`)."""
    out: list[str] = []
    hide_next = False
    for token in argv:
        if hide_next and not token.startswith("--"):
            out.append(_MASK)
            hide_next = False
            continue
        hide_next = bool(_SECRET_FLAG_ALONE.match(token))
        out.append(redact_text(_apply(_TOKEN_RULES, token)))
    return tuple(out)
