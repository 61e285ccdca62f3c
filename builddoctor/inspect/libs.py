"""Find the shared libraries an ELF file needs the way ld.so would, without loading them.

Search order (ld.so(8)): DT_RPATH (when there is no DT_RUNPATH), LD_LIBRARY_PATH,
DT_RUNPATH, the ld.so cache (``ldconfig -p``), then the default directories. Like the
brief asks, the file's own folder is searched last too: llama.cpp loads its backends from
the executable's folder, and a library found only there is reported as found.
"""

from __future__ import annotations

import os
import struct
from functools import lru_cache
from pathlib import Path
from typing import Optional

from builddoctor import platforms, proc
from builddoctor.inspect.image import gnu_versions

_LDCONFIG_ARCH = {"x86_64": "x86-64", "aarch64": "AArch64", "riscv64": "RISC-V", "ppc64": "ppc64", "s390x": "s390x"}
_MULTIARCH = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu", "i386": "i386-linux-gnu",
              "arm": "arm-linux-gnueabihf", "riscv64": "riscv64-linux-gnu", "ppc64": "powerpc64le-linux-gnu",
              "s390x": "s390x-linux-gnu"}


def machine_arch() -> str:
    """This machine's architecture, in builddoctor.platforms' spelling (x86_64, aarch64, i386...)."""
    return platforms.host()[1]


def elf_identity(path: str | Path) -> Optional[tuple[int, str]]:
    """(ELF class 1/2, arch) of a file, or None when it is not a readable ELF."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    e = "<" if head[5] == 1 else ">"
    (machine,) = struct.unpack_from(e + "H", head, 18)
    return head[4], platforms.elf_arch(machine) or f"machine {machine}"


@lru_cache(maxsize=1)
def ld_cache() -> dict[str, list[tuple[str, str]]]:
    """name -> [(flags, path)] from ``ldconfig -p`` (empty when ldconfig is not there)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for exe in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        if exe.startswith("/") and not os.path.exists(exe):
            continue
        res = proc.run([exe, "-p"], timeout=5)
        if not res.ok:
            continue
        for line in res.stdout.splitlines()[1:]:
            line = line.strip()
            if " => " not in line or " (" not in line:
                continue
            left, path = line.split(" => ", 1)
            name, _, flags = left.partition(" (")
            out.setdefault(name.strip(), []).append((flags.rstrip(")"), path.strip()))
        break
    return out


def default_dirs(arch: str, elf_class: int) -> list[str]:
    tri = _MULTIARCH.get(arch, "")
    dirs = []
    if tri:
        dirs += [f"/lib/{tri}", f"/usr/lib/{tri}"]
    if elf_class == 2:
        dirs += ["/lib64", "/usr/lib64"]
    dirs += ["/lib", "/usr/lib", "/usr/local/lib"]
    return dirs


def _expand(entry: str, origin: str, arch: str, elf_class: int) -> str:
    lib = "lib64" if elf_class == 2 else "lib"
    for token, value in (("$ORIGIN", origin), ("${ORIGIN}", origin), ("$LIB", lib), ("${LIB}", lib),
                         ("$PLATFORM", arch), ("${PLATFORM}", arch)):
        entry = entry.replace(token, value)
    return entry


class Resolver:
    """Resolves NEEDED names to files for ELF files of one arch, caching what it learns."""

    def __init__(self, ld_library_path: Optional[str] = None):
        self.ld_library_path = [p for p in (ld_library_path if ld_library_path is not None
                                            else os.environ.get("LD_LIBRARY_PATH", "")).split(":") if p]
        self._found: dict[tuple, Optional[str]] = {}

    def _ok(self, path: str, elf_class: int, arch: str) -> bool:
        ident = elf_identity(path)
        return ident is not None and ident == (elf_class, arch)

    def resolve(self, name: str, *, origin: str, rpath: list[str], runpath: list[str],
                elf_class: int, arch: str) -> Optional[str]:
        if "/" in name:
            return name if os.path.exists(name) else None
        key = (name, origin, tuple(rpath), tuple(runpath), elf_class, arch)
        if key in self._found:
            return self._found[key]
        found = self._search(name, origin, rpath, runpath, elf_class, arch)
        self._found[key] = found
        return found

    def _search(self, name, origin, rpath, runpath, elf_class, arch) -> Optional[str]:
        dirs: list[str] = []
        if not runpath:
            dirs += rpath
        dirs += self.ld_library_path
        dirs += runpath
        for d in dirs:
            cand = os.path.join(_expand(d, origin, arch, elf_class), name)
            if os.path.exists(cand) and self._ok(cand, elf_class, arch):
                return cand
        want = _LDCONFIG_ARCH.get(arch)
        for flags, path in ld_cache().get(name, []):
            if arch == "i386" and "x86-64" in flags:
                continue
            if want and arch != "i386" and want not in flags and elf_class == 2:
                continue
            if os.path.exists(path):
                return path
        for d in default_dirs(arch, elf_class) + [origin]:
            cand = os.path.join(d, name)
            if os.path.exists(cand) and self._ok(cand, elf_class, arch):
                return cand
        return None


@lru_cache(maxsize=256)
def defined_versions(path: str) -> frozenset[str]:
    """Symbol version names a library defines (GLIBC_2.34, GLIBCXX_3.4.30...), from .gnu.version_d."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    names = set()
    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            for sec in elf.iter_sections():
                if sec.header["sh_type"] == "SHT_GNU_verdef":
                    for _ver, auxs in gnu_versions(sec):  # bounded: a looping chain cannot hang
                        names.update(auxs)
    except (OSError, ELFError, ValueError, struct.error):
        return frozenset()
    return frozenset(names)
