"""The build progress view: ninja's progress while ``build`` and ``fix`` compile."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from builddoctor.console import safe_text

if TYPE_CHECKING:  # the build package is the build command's, not every command's start-up
    from builddoctor.build import ProgressEvent


def fmt_time(seconds: float | None) -> str:
    """A duration as the progress line and the build result say it: 45s, 2m05s, or ? when unknown."""
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressView:
    """ninja progress as one rewritten line on a terminal, or a line every ~10% otherwise."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty() if hasattr(self.stream, "isatty") else False
        self.last_pct = -100
        self.last_t = 0.0
        self.drawn = False

    def __call__(self, ev: ProgressEvent) -> None:
        if not self.enabled:
            return
        if ev.stage in ("configure", "waiting"):
            self._line(ev.message)
        elif ev.stage == "compile" and ev.total:
            self._compile(ev)
        elif ev.stage in ("done", "failed") and self.drawn:
            self.stream.write("\n")
            self.drawn = False

    def _compile(self, ev: ProgressEvent) -> None:
        pct = 100 * ev.done // ev.total
        eta = f" ETA {fmt_time(ev.eta_s)}" if ev.eta_s is not None else ""
        if self.tty:
            self.stream.write(bar(ev.done, ev.total, f" {fmt_time(ev.elapsed_s)}{eta}").ljust(72))
            self.stream.flush()
            self.drawn = True
        elif pct >= self.last_pct + 10 or ev.done == ev.total or time.monotonic() - self.last_t > 60:
            self.last_pct, self.last_t = pct, time.monotonic()
            self._line(f"[{ev.done}/{ev.total}] {pct}% elapsed {fmt_time(ev.elapsed_s)}{eta}")

    def _line(self, text: str) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.drawn = False
        self.stream.write(safe_text(text) + "\n")  # configure's words are foreign text: no raw escapes
        self.stream.flush()


def bar(done: int, total: int, tail: str, width: int = 30) -> str:
    """The terminal's progress line: carriage return, a bar of ``width``, counts and percent, ``tail``."""
    fill = width * done // total
    return f"\r[{'#' * fill}{'-' * (width - fill)}] {done}/{total} {100 * done // total:3d}%{tail}"
