"""Load the inspect data files (builddoctor/data/inspect_*.toml)."""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

from builddoctor.paths import DATA_DIR

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib


@cache
def load(name: str) -> dict[str, Any]:
    with open(DATA_DIR / name, "rb") as fh:
        return tomllib.load(fh)
