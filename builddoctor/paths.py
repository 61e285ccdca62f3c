"""Where builddoctor keeps things: the pinned source, caches, its install prefix."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

#: written by `fix --replace` beside the programs it replaced: which build they now come from, so that
#: `check` reads that build's CMakeCache.txt, not the stale one of the folder's own build tree
REPLACED_MARKER = ".builddoctor-replaced.json"
DATA_DIR = PACKAGE_DIR / "data"


def project_root() -> Path | None:
    """The builddoctor checkout this package runs from, if any (editable installs)."""
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "builddoctor").is_dir():
        return root
    return None


def vendor_dir() -> Path:
    """Where the pinned llama.cpp tree lives: BUILDDOCTOR_VENDOR, else <checkout>/vendor/llama.cpp."""
    env = os.environ.get("BUILDDOCTOR_VENDOR")
    if env:
        return Path(env).expanduser().resolve()
    root = project_root()
    if root is not None:
        return root / "vendor" / "llama.cpp"
    return cache_dir() / "vendor" / "llama.cpp"


def cache_dir() -> Path:
    env = os.environ.get("BUILDDOCTOR_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "builddoctor"


def data_home() -> Path:
    """builddoctor's install prefix and backups (user data, not cache)."""
    env = os.environ.get("BUILDDOCTOR_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "builddoctor"
