"""How the terminal views look: colour or plain, Unicode or ASCII glyphs, and the width.

Colour follows the usual conventions: on for a terminal, off when piped, when NO_COLOR is
set (https://no-color.org) or TERM=dumb; --color and --no-color decide explicitly.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

__all__ = ["MIN_WIDTH", "Glyphs", "Style", "short_hex", "wrap"]

MIN_WIDTH = 80
#: Wider than this, lines get hard to follow; the views stop growing.
MAX_WIDTH = 140

_CODES = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}


@dataclass(frozen=True)
class Glyphs:
    ok: str
    bad: str
    ellipsis: str
    hline: str
    vline: str
    right: str
    left: str
    down: str
    branch: str
    last: str
    to: str


UNICODE = Glyphs("✓", "✗", "…", "─", "│", "▶", "◀", "▼", "├─", "└─", "→")
ASCII = Glyphs("OK", "XX", "...", "-", "|", ">", "<", "v", "|-", "`-", "->")


@dataclass(frozen=True)
class Style:
    color: bool = False
    width: int = MIN_WIDTH
    glyphs: Glyphs = UNICODE

    def paint(self, text: str, *styles: str) -> str:
        if not self.color or not styles or not text:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"

    def short(self, value: str, keep: int = 4) -> str:
        return short_hex(value, keep, self.glyphs.ellipsis)

    def mark(self, ok: bool) -> str:
        return (
            self.paint(self.glyphs.ok, "green", "bold")
            if ok
            else self.paint(self.glyphs.bad, "red", "bold")
        )

    @classmethod
    def for_stream(
        cls, stream: TextIO, environ: Mapping[str, str], color: bool | None = None
    ) -> Style:
        """The style for ``stream``: colour as decided above, glyphs its encoding can show."""
        if color is None:
            color = (
                _isatty(stream)
                and not environ.get("NO_COLOR")
                and environ.get("TERM", "") != "dumb"
            )
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            "".join(vars(UNICODE).values()).encode(encoding)
            glyphs = UNICODE
        except (UnicodeEncodeError, LookupError):
            glyphs = ASCII
        return cls(color=bool(color), width=terminal_width(stream, environ), glyphs=glyphs)


def terminal_width(stream: TextIO, environ: Mapping[str, str]) -> int:
    """COLUMNS if set, else the terminal's width when ``stream`` is one; at least 80."""
    width = 0
    columns = environ.get("COLUMNS", "")
    if columns.isdigit():
        width = int(columns)
    elif _isatty(stream):
        width = shutil.get_terminal_size((MIN_WIDTH, 24)).columns
    return max(MIN_WIDTH, min(width or MIN_WIDTH, MAX_WIDTH))


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def short_hex(value: str, keep: int = 4, ellipsis: str = "…") -> str:
    """``5c3e…9a1f``: the first and last ``keep`` characters of a long value."""
    if len(value) <= 2 * keep + len(ellipsis) + 2:
        return value
    return f"{value[:keep]}{ellipsis}{value[-keep:]}"


def wrap(text: str, width: int, indent: str = "", subsequent: str | None = None) -> list[str]:
    """Wrap plain text to ``width`` columns; a word longer than a line is split."""
    return textwrap.wrap(
        text,
        width=max(width, 20),
        initial_indent=indent,
        subsequent_indent=indent if subsequent is None else subsequent,
        break_long_words=True,
        break_on_hyphens=False,
    ) or [indent.rstrip()]
