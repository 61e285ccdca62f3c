"""Read a CMakeCache.txt: every entry, name -> value, types stripped.

Lines are ``NAME:TYPE=VALUE`` (``"NAME":TYPE=VALUE`` when the name holds a colon);
``//`` lines are help text and ``#`` lines comments. A ``-DNAME=VALUE`` that no option()
declares (a deprecated name such as LLAMA_CUBLAS) is kept as ``NAME:UNINITIALIZED=VALUE``
and so appears here like any other entry.
"""

from __future__ import annotations

import re
from pathlib import Path

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


def read_cmake_cache(path: Path) -> dict[str, str]:
    """All entries of a CMakeCache.txt as name -> value (types stripped).

    Raises OSError when it cannot be read; a file that is not a cache gives {}."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return {k: v for k, (_t, v) in parse_cmake_cache(text).items()}


def user_options(path: Path) -> dict[str, str]:
    """The entries a user sets or could set (no INTERNAL/STATIC bookkeeping)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return {k: v for k, (t, v) in parse_cmake_cache(text).items() if t not in INTERNAL_TYPES}


def is_llama_cache(cache: dict[str, str]) -> bool:
    """A cache of a llama.cpp (or ggml) build tree."""
    return any(k.startswith(("LLAMA_", "GGML_")) for k in cache) or \
        cache.get("CMAKE_PROJECT_NAME", "") in ("llama.cpp", "ggml")
