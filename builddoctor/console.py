"""Terminal output: colour only on a TTY and never with NO_COLOR; JSON always plain."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, TextIO

import click

_COLORS = {"ok": "green", "error": "red", "warning": "yellow", "info": "cyan", "dim": "bright_black"}
SYMBOLS = {"ok": "✓", "error": "✗", "warning": "!", "info": "·"}
ASCII_SYMBOLS = {"ok": "[ok]", "error": "[x]", "warning": "[!]", "info": "[-]"}


#: C0/C1 control characters but tab and newline: from foreign text (a program's output, CMake values,
#: profiles) they could move the cursor, retitle the terminal or write to its clipboard
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: the only escapes builddoctor writes itself: colour and bold (click.style)
_OWN_SGR = re.compile(r"\x1b\[[0-9;]*m")
#: a report line longer than this is cut (a list of 200k libraries is one line of megabytes)
MAX_LINE = 2000


def printable(text: str) -> str:
    """``text`` with every control character (ESC, CR, BEL...) shown as a visible escape, e.g. ``\\x1b``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def clip(line: str, limit: int = MAX_LINE) -> str:
    """One line, cut to ``limit`` characters with a count of the rest."""
    return line if len(line) <= limit else f"{line[:limit]}... ({len(line) - limit:,} more characters)"


def safe_text(text: str, keep_style: bool = False) -> str:
    """What may reach a terminal: control characters made visible, each line bounded; with
    ``keep_style`` the colour escapes builddoctor itself added are kept."""
    if keep_style:
        parts, last = [], 0
        for m in _OWN_SGR.finditer(text):
            parts += [printable(text[last:m.start()]), m.group()]
            last = m.end()
        parts.append(printable(text[last:]))
        text = "".join(parts)
    else:
        text = printable(text)
    return "\n".join(clip(line) for line in text.split("\n"))


class Console:
    """Where a command's text goes. ``quiet`` counts like pip's -q: 1 drops the report text on stdout
    (JSON and errors stay; commands also turn their progress views off), 2 or more also the status lines
    on stderr."""

    def __init__(self, verbose: int = 0, quiet: int = 0, color: bool | None = None, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self.quiet = quiet
        if color is None:
            color = _isatty(self.stream) and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        self.color = color
        enc = (getattr(self.stream, "encoding", None) or "").lower()
        self.symbols = SYMBOLS if "utf" in enc else ASCII_SYMBOLS

    def style(self, text: str, kind: str | None = None, bold: bool = False) -> str:
        if not self.color or (kind is None and not bold):
            return text
        return click.style(text, fg=_COLORS.get(kind or ""), bold=bold)

    def symbol(self, severity: str) -> str:
        return self.style(self.symbols.get(severity, "?"), severity)

    def echo(self, text: str = "", err: bool = False) -> None:
        if self.quiet >= (2 if err else 1):
            return
        click.echo(safe_text(text, keep_style=self.color), file=sys.stderr if err else self.stream)

    def debug(self, text: str) -> None:
        if self.verbose:
            click.echo(self.style(safe_text(text), "dim"), file=sys.stderr)

    def json(self, value: Any) -> None:
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        click.echo(json.dumps(value, indent=2), file=self.stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
