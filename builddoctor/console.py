"""Terminal output: colour only on a TTY and never with NO_COLOR; JSON always plain."""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections.abc import Iterable
from typing import Any, TextIO, TypeVar

import click

_COLORS = {"ok": "green", "error": "red", "warning": "yellow", "info": "cyan", "dim": "bright_black"}
SYMBOLS = {"ok": "✓", "error": "✗", "warning": "!", "info": "·"}
ASCII_SYMBOLS = {"ok": "[ok]", "error": "[x]", "warning": "[!]", "info": "[-]"}


#: C0/C1 control characters but tab and newline: from foreign text (a program's output, CMake values,
#: profiles) they could move the cursor, retitle the terminal or write to its clipboard
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: builddoctor's own colour escapes travel as this mark until safe_text writes them: a per-run random
#: token that no foreign text can hold, so an ``ESC[31m`` quoted from a binary's output is filtered
#: like any other escape while builddoctor's own colours still reach the terminal
_OWN_ESC = f"\U000f0000{secrets.token_hex(8)}\U000f0001"
_OWN_SGR = re.compile(re.escape(_OWN_ESC) + r"\[[0-9;]*m")
_PARTIAL_MARK = re.compile("\U000f0000[0-9a-f]{0,16}(?![0-9a-f]*\U000f0001)")
#: a report line longer than this is cut (a list of 200k libraries is one line of megabytes)
MAX_LINE = 2000
#: entries of one list shown in a text report ("... and K more" after them)
MAX_ITEMS = 20
T = TypeVar("T")
#: entries of one list kept in --json output (far above any real list: CPU flags, NEEDED, findings);
#: what is cut is named in the document's "truncated" field
MAX_JSON_ITEMS = 1000


def bounded(items: Iterable[T], limit: int = MAX_ITEMS) -> tuple[list[T], int]:
    """The first ``limit`` of ``items`` and how many more there are: the one way reports cut a list."""
    items = items if isinstance(items, list) else list(items)
    return items[:limit], max(0, len(items) - limit)


def listing(items: Iterable[object], limit: int = MAX_ITEMS, sep: str = ", ") -> str:
    """``items`` joined for a text report: the first ``limit``, then "... and K more"."""
    shown, more = bounded(items, limit)
    return sep.join(map(str, shown)) + (f"{sep if shown else ''}... and {more:,} more" if more else "")


def bound_json(value: Any, limit: int = MAX_JSON_ITEMS) -> Any:
    """A plain JSON value with every list cut to its first ``limit`` entries. When something was cut,
    the document gets ``"truncated": [{"path": "cpu.features", "count": 200000, "shown": 1000}, ...]``
    (a top-level list is wrapped as ``{"items": [...], "truncated": [...]}``)."""
    cut: list[dict[str, Any]] = []

    def walk(v: Any, path: str) -> Any:
        if isinstance(v, dict):
            return {k: walk(x, f"{path}.{k}" if path else str(k)) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            shown, more = bounded(list(v), limit)
            if more:
                cut.append({"path": path or "items", "count": len(v), "shown": len(shown)})
            return [walk(x, f"{path}[{i}]") for i, x in enumerate(shown)]
        return v

    out = walk(value, "")
    if not cut:
        return out
    shown, more = bounded(cut, limit)
    if more:
        shown.append({"path": "(other lists)", "count": more, "shown": 0})
    if not isinstance(out, dict):
        return {"items": out, "truncated": shown}
    return {**out, "truncated": shown}


def json_text(value: Any) -> str:
    """``value`` (a dataclass with to_dict, or plain JSON) as --json prints it: indented, every list bounded."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return json.dumps(bound_json(value), indent=2)


def printable(text: str) -> str:
    """``text`` with every control character (ESC, CR, BEL...) shown as a visible escape, e.g. ``\\x1b``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def clip(line: str, limit: int = MAX_LINE) -> str:
    """One line, cut to ``limit`` characters with a count of the rest."""
    return line if len(line) <= limit else f"{line[:limit]}... ({len(line) - limit:,} more characters)"


def safe_text(text: str, keep_style: bool = False) -> str:
    """What may reach a terminal: control characters made visible, each line bounded; with
    ``keep_style`` the colour escapes builddoctor itself added are kept."""
    lines = []
    for line in printable(text).split("\n"):
        cut = clip(line)
        if cut is not line and _OWN_ESC[0] in line:  # a mark cut in two goes; a colour left on is ended
            cut = _PARTIAL_MARK.sub("", cut) + styled("")
        lines.append(cut)
    text = "\n".join(lines)
    return text.replace(_OWN_ESC, "\x1b") if keep_style else _OWN_SGR.sub("", text)


def styled(text: str, kind: str | None = None, bold: bool = False) -> str:
    """``text`` in builddoctor's own colour, marked so that safe_text(keep_style=True) keeps it."""
    # the text inside may be foreign: its escapes are made visible first, so only click's own get the mark
    return click.style(printable(text), fg=_COLORS.get(kind or ""), bold=bold).replace("\x1b", _OWN_ESC)


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
        return styled(text, kind, bold)

    def symbol(self, severity: str) -> str:
        return self.style(self.symbols.get(severity, "?"), severity)

    def echo(self, text: str = "", err: bool = False) -> None:
        if self.quiet >= (2 if err else 1):
            return
        click.echo(safe_text(text, keep_style=self.color), file=sys.stderr if err else self.stream)

    def debug(self, text: str) -> None:
        if self.verbose:
            click.echo(safe_text(self.style(text, "dim"), keep_style=self.color), file=sys.stderr)

    def json(self, value: Any) -> None:
        click.echo(json_text(value), file=self.stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
