"""The build cache: whole entries, leftovers of killed builds, the machine-wide lock, kept logs."""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from builddoctor.build.settings import MARKER, default_lock_path
from builddoctor.errors import InputError
from builddoctor.profiles import BuildResult
from builddoctor.readinput import read_json


def entry_result(entry: Path) -> BuildResult | None:
    """The marker of a finished cache entry, if it is whole (marker and every binary present)."""
    try:
        result = BuildResult.from_dict(read_json(entry / MARKER, "build cache marker"))
    except (InputError, ValueError):
        return None
    if not result.binaries or not all(Path(b).is_file() for b in result.binaries):
        return None
    return result


def clean_stale(cache_root: Path) -> list[Path]:
    """Remove temp folders of builds that did not finish.

    Call with the build lock held: then no other build of this cache is running, and every
    ``.tmp-*`` folder is the remains of a killed or crashed one.
    """
    removed: list[Path] = []
    if not cache_root.is_dir():
        return removed
    for p in cache_root.iterdir():
        if p.name.startswith(".tmp-"):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


@contextmanager
def build_lock(path: Path | None = None, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    with open(path or default_lock_path(), "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def keep_log(log_file: Path, folder: Path, key: str) -> Path | None:
    """A failed build's log, copied out of its temp folder before that is removed."""
    if not log_file.is_file():
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / f"{key}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        shutil.copyfile(log_file, dest)
        return dest
    except OSError:
        return None


def _omit_variants(bin_dir: Path, variants: list[str]) -> None:
    """Remove the CPU variants the plan leaves out (a known-bad row): ggml's loader then picks
    the next best variant on a CPU that would have loaded one of them."""
    for v in variants:
        for pattern in (f"libggml-cpu-{v}.so*", f"libggml-cpu-{v}.dylib", f"ggml-cpu-{v}.dll"):
            for f in bin_dir.glob(pattern):
                f.unlink()


def drop_objects(build_dir: Path) -> None:
    """Object files are in ccache already; a cache entry keeps what runs and what explains."""
    for root, _dirs, files in os.walk(build_dir):
        for name in files:
            if name.endswith((".o", ".obj")):
                try:
                    os.unlink(os.path.join(root, name))
                except OSError:
                    pass
