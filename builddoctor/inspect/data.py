"""The inspect data files (builddoctor/data/inspect_*.toml): the data layer's cached reader."""

from __future__ import annotations

from typing import Any

from builddoctor.tomlload import data_file


def load(name: str) -> dict[str, Any]:
    """builddoctor/data/NAME, read once and shared (read-only)."""
    return data_file(name)
