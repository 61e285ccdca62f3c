"""The data layer: every TOML file builddoctor reads (builddoctor/data/, recipes/, checks.toml, a
user's file) goes through here, with the file, line and column in every error (archspec's schema.py
is the model). ``data_file`` caches the shipped tables; the values it returns are shared: read them,
never change them.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from builddoctor.errors import UserError
from builddoctor.paths import DATA_DIR
from builddoctor.readinput import JSON_CAP, read_text

TOMLDecodeError = tomllib.TOMLDecodeError
_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)")


def parse_toml(text: str, path: str | Path, error: type[UserError] = UserError) -> dict[str, Any]:
    """``text`` (the contents of ``path``) as TOML; malformed: ``error("PATH:LINE:COL: malformed TOML: ...")``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _AT.search(msg)
        if m:
            detail = (msg[: m.start()] + msg[m.end() :]).strip()
            raise error(f"{path}:{m.group(1)}:{m.group(2)}: malformed TOML: {detail}.") from None
        raise error(f"{path}: malformed TOML: {msg}.") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file, read within the size cap (a fresh dict: the caller may change it)."""
    text = read_text(path, "TOML file", cap=JSON_CAP, truncate=False).text
    return parse_toml(text, path)


def data_file(name: str) -> dict[str, Any]:
    """builddoctor/data/NAME (``.toml`` added when missing), read once per process and shared."""
    return _cached(str(DATA_DIR / (name if name.endswith(".toml") else f"{name}.toml")))


@functools.cache
def _cached(path: str) -> dict[str, Any]:
    return load_toml(path)
