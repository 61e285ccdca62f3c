"""What this machine has free right now: memory, disk and cores.

Read by the build (its job count, its disk check) and by the smoke model (its room check): a low
module of its own, so that neither has to import the other for them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def available_memory() -> int | None:
    """Bytes of memory available to a new process (MemAvailable), None where it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cpu_count() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def free_space(path: Path) -> int | None:
    """Free bytes on the disk that holds ``path`` (or would: its nearest existing parent)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None
