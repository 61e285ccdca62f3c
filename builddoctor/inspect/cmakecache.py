"""Read a CMakeCache.txt: every entry, name -> value, types stripped.

Lines are ``NAME:TYPE=VALUE`` (``"NAME":TYPE=VALUE`` when the name holds a colon);
``//`` lines are help text and ``#`` lines comments. A ``-DNAME=VALUE`` that no option()
declares (a deprecated name such as LLAMA_CUBLAS) is kept as ``NAME:UNINITIALIZED=VALUE``
and so appears here like any other entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from builddoctor.readinput import read_text

_LINE = re.compile(r'^(?:"(?P<q>[^"]*)"|(?P<n>[^:=]+)):(?P<t>[A-Za-z_]+)=(?P<v>.*)$')

#: entry types that are CMake's own bookkeeping, not options a user set or could set
INTERNAL_TYPES = ("INTERNAL", "STATIC")


def parse_cmake_cache(text: str) -> dict[str, tuple[str, str]]:
    """name -> (type, value) of every entry."""
    out: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        line = line.rstrip("\r")
        if not line or line.startswith(("#", "//")):
            continue
        m = _LINE.match(line)
        if m:
            out[m.group("q") if m.group("q") is not None else m.group("n").strip()] = (m.group("t"), m.group("v"))
    return out


@dataclass(frozen=True)
class CacheFile:
    """A CMakeCache.txt read once, bounded: its entries, and whether the file was cut at the cap."""

    entries: dict[str, tuple[str, str]]
    truncated: bool = False
    note: str = ""

    def values(self) -> dict[str, str]:
        return {k: v for k, (_t, v) in self.entries.items()}

    def user_options(self) -> dict[str, str]:
        return {k: v for k, (t, v) in self.entries.items() if t not in INTERNAL_TYPES}


def load(path: Path) -> CacheFile:
    """Read a CMakeCache.txt with the bounded reader (a FIFO, a device or a huge file never blocks or
    fills memory). Raises InputError when it cannot be read; a file that is not a cache has no entries."""
    got = read_text(path, "CMakeCache.txt", errors="replace")
    text = got.text[: got.text.rfind("\n") + 1] if got.truncated else got.text  # no half entry
    return CacheFile(parse_cmake_cache(text), got.truncated, got.cut_note("CMake cache") if got.truncated else "")


def read_cmake_cache(path: Path) -> dict[str, str]:
    """All entries of a CMakeCache.txt as name -> value (types stripped).

    Raises InputError when it cannot be read; a file that is not a cache gives {}."""
    return load(path).values()


def user_options(path: Path) -> dict[str, str]:
    """The entries a user sets or could set (no INTERNAL/STATIC bookkeeping)."""
    return load(path).user_options()


def is_llama_cache(cache: dict[str, str]) -> bool:
    """A cache of a llama.cpp (or ggml) build tree."""
    return any(k.startswith(("LLAMA_", "GGML_")) for k in cache) or cache.get("CMAKE_PROJECT_NAME", "") in (
        "llama.cpp",
        "ggml",
    )
