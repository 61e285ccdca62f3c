"""Terminal output: colour only on a TTY and never with NO_COLOR; JSON always plain."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

_COLORS = {"ok": "green", "error": "red", "warning": "yellow", "info": "cyan", "dim": "bright_black"}
SYMBOLS = {"ok": "✓", "error": "✗", "warning": "!", "info": "·"}
ASCII_SYMBOLS = {"ok": "[ok]", "error": "[x]", "warning": "[!]", "info": "[-]"}


class Console:
    def __init__(self, verbose: int = 0, quiet: bool = False, color: bool | None = None, stream=None):
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
        if self.quiet and not err:
            return
        click.echo(text, file=sys.stderr if err else self.stream)

    def debug(self, text: str) -> None:
        if self.verbose:
            click.echo(self.style(text, "dim"), file=sys.stderr)

    def json(self, value: Any) -> None:
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        click.echo(json.dumps(value, indent=2), file=self.stream)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
