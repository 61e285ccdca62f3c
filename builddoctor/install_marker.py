"""The marker `fix --replace` leaves in a folder it replaced, and the careful reading of small files.

In the bottom layer because both sides read the marker: install (rollback checks that a backup
belongs to the folder) and the inspector (``inspect.discover``: the marker names the build the
folder's programs now come from). Files are read never through a symlink, never blocking on a FIFO,
and only up to a cap: a marker, manifest or journal is foreign input once it is on disk.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from builddoctor import paths
from builddoctor.profiles import Serializable

MAX_MARKER = 64 << 10


class Unusable(Exception):
    """A file that is not what it should be; the argument says how, in words."""


@dataclass
class ReplacedMarker(Serializable):
    """`.builddoctor-replaced.json`: which build the programs in a folder now come from."""

    build_dir: str | None = None
    cmake_cache: str | None = None
    backup: str | None = None  # the backup's folder name
    manifest_sha256: str | None = None


def open_regular(path: Path) -> int:
    """An fd of a regular file, never through a symlink, never blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Unusable("it is missing") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Unusable("it is a symlink") from None
        raise Unusable(f"it cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Unusable("it is not a regular file")
    return fd


def read_small(path: Path, cap: int) -> bytes:
    fd = open_regular(path)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(cap + 1)
    except OSError as exc:
        raise Unusable(f"it cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > cap:
        raise Unusable(f"it is over {cap // 1024} KiB, far more than builddoctor writes")
    return data


def read_marker(folder: Path) -> ReplacedMarker | None:
    """The marker `fix --replace` left in ``folder``, or None when there is none or it is unusable."""
    try:
        data = json.loads(read_small(Path(folder) / paths.REPLACED_MARKER, MAX_MARKER).decode("utf-8"))
    except (Unusable, OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    fields = {
        k: v
        for k, v in data.items()
        if k in ReplacedMarker.__dataclass_fields__ and isinstance(v, str) and "\x00" not in v
    }
    return ReplacedMarker(**fields)
