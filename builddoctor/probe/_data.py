"""Loading the probe's data tables (builddoctor/data/*.toml), once per process."""

from __future__ import annotations

import functools
from typing import Any

from builddoctor.paths import DATA_DIR


@functools.cache
def load(name: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    with open(DATA_DIR / f"{name}.toml", "rb") as fh:
        return tomllib.load(fh)
