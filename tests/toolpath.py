"""A PATH folder with only some of this machine's tools: how the tests take a toolchain away."""

from __future__ import annotations

import shutil
from pathlib import Path


def only_tools(folder: Path, names: tuple[str, ...]) -> Path:
    """Symlink each named tool that exists here into ``folder`` (created) and return it, for PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        found = shutil.which(name)
        if found:
            (folder / name).symlink_to(found)
    return folder
