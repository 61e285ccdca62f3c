"""The operating system: name and version, kernel, C library, libstdc++ level, RAM.

All read from files and os calls; no child process on glibc Linux.
"""

from __future__ import annotations

import mmap
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

from builddoctor import proc
from builddoctor.platforms import system_name


@dataclass
class PlatformFacts:
    system: str  # linux, darwin, windows, freebsd...
    machine: str  # uname machine, e.g. x86_64, arm64
    os_version: str = ""
    kernel: str = ""
    libc: str | None = None
    libc_version: str | None = None
    libstdcxx_version: str | None = None
    memory_bytes: int | None = None
    notes: list[str] = field(default_factory=list)


def basic() -> PlatformFacts:
    """The cheap facts: system, machine, kernel, OS release, libc, RAM."""
    system = system_name()
    if hasattr(os, "uname"):
        u = os.uname()
        machine, kernel = u.machine, f"{u.sysname} {u.release}"
    else:
        machine, kernel = platform.machine(), f"{platform.system()} {platform.release()}"
    facts = PlatformFacts(system=system, machine=machine, kernel=kernel)
    if system == "linux":
        facts.os_version = os_release_name()
        facts.libc, facts.libc_version = linux_libc()
        facts.memory_bytes = linux_memory(facts.notes)
    elif system == "darwin":
        release = platform.mac_ver()[0]
        facts.os_version = f"macOS {release}" if release else ""
        facts.libc = "libSystem"
    elif system == "windows":
        facts.os_version = f"Windows {platform.release()} ({platform.version()})"
        facts.libc = "msvcrt"
    if facts.memory_bytes is None:
        try:
            facts.memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):
            pass
    return facts


def os_release_name(path: str = "/etc/os-release") -> str:
    values = {}
    for candidate in (path, "/usr/lib/os-release"):
        try:
            text = Path(candidate).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip().strip('"').strip("'")
        break
    return values.get("PRETTY_NAME") or " ".join(filter(None, [values.get("NAME"), values.get("VERSION")])) or ""


def linux_libc() -> tuple[str | None, str | None]:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        text = ""
    m = re.match(r"glibc (\S+)", text)
    if m:
        return "glibc", m.group(1)
    for loader in sorted(Path("/lib").glob("ld-musl-*.so.1")):
        done = proc.run([str(loader)], timeout=2)  # musl's loader prints its version when run bare
        mv = re.search(r"Version (\S+)", done.stdout + done.stderr)
        return "musl", mv.group(1) if mv else None
    return None, None


def linux_memory(notes: list[str]) -> int | None:
    total = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        return None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and total and int(raw) < total:
            notes.append(
                f"This process's cgroup limits memory to {int(raw) / 2**30:.1f} GiB "
                f"of the machine's {total / 2**30:.1f} GiB."
            )
        break
    return total


# --------------------------------------------------------------------------- libstdc++

_LIBSTDCXX_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/lib64",
    "/usr/lib",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/powerpc64le-linux-gnu",
    "/usr/lib/riscv64-linux-gnu",
    "/usr/lib/s390x-linux-gnu",
    "/usr/local/lib64",
    "/usr/local/lib",
)

_GLIBCXX = re.compile(rb"GLIBCXX_(\d+\.\d+(?:\.\d+)*)\x00")


def find_libstdcxx() -> Path | None:
    for d in _LIBSTDCXX_DIRS:
        p = Path(d) / "libstdc++.so.6"
        if p.exists():
            return p
    return None


def glibcxx_versions(path: Path) -> list[str]:
    """Every GLIBCXX_x.y.z version a libstdc++ defines, read from the file's string table."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        found = {m.group(1).decode() for m in _GLIBCXX.finditer(mm)}
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def libstdcxx_version() -> str | None:
    """The highest GLIBCXX symbol version of this machine's libstdc++ (None: no libstdc++)."""
    path = find_libstdcxx()
    if path is None:
        return None
    try:
        versions = glibcxx_versions(path)
    except (OSError, ValueError):
        return None
    return versions[-1] if versions else None
