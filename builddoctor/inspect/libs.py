"""Find the shared libraries an ELF file needs the way ld.so would, without loading them.

Search order (ld.so(8)): DT_RPATH (when there is no DT_RUNPATH), LD_LIBRARY_PATH,
DT_RUNPATH, the ld.so cache (``ldconfig -p``), then the default directories. Like the
brief asks, the file's own folder is searched last too: llama.cpp loads its backends from
the executable's folder, and a library found only there is reported as found.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
from functools import lru_cache
from itertools import accumulate, compress
from operator import not_
from pathlib import Path

from builddoctor import platforms, proc
from builddoctor.inspect.data import load
from builddoctor.profiles import LoadProblem

_LDCONFIG_ARCH = {"x86_64": "x86-64", "aarch64": "AArch64", "riscv64": "RISC-V", "ppc64": "ppc64", "s390x": "s390x"}
_MULTIARCH = {
    "x86_64": "x86_64-linux-gnu",
    "aarch64": "aarch64-linux-gnu",
    "i386": "i386-linux-gnu",
    "arm": "arm-linux-gnueabihf",
    "riscv64": "riscv64-linux-gnu",
    "ppc64": "powerpc64le-linux-gnu",
    "s390x": "s390x-linux-gnu",
}


def machine_arch() -> str:
    """This machine's architecture, in builddoctor.platforms' spelling (x86_64, aarch64, i386...)."""
    return platforms.host()[1]


def elf_identity(path: str | Path) -> tuple[int, str] | None:
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
    for token, value in (
        ("$ORIGIN", origin),
        ("${ORIGIN}", origin),
        ("$LIB", lib),
        ("${LIB}", lib),
        ("$PLATFORM", arch),
        ("${PLATFORM}", arch),
    ):
        entry = entry.replace(token, value)
    return entry


class Resolver:
    """Resolves NEEDED names to files for ELF files of one arch, caching what it learns."""

    def __init__(self, ld_library_path: str | None = None):
        self.ld_library_path = [
            p
            for p in (ld_library_path if ld_library_path is not None else os.environ.get("LD_LIBRARY_PATH", "")).split(
                ":"
            )
            if p
        ]
        self._found: dict[tuple, str | None] = {}

    def _ok(self, path: str, elf_class: int, arch: str) -> bool:
        ident = elf_identity(path)
        return ident is not None and ident == (elf_class, arch)

    def resolve(
        self, name: str, *, origin: str, rpath: list[str], runpath: list[str], elf_class: int, arch: str
    ) -> str | None:
        if "/" in name:
            return name if os.path.exists(name) else None
        key = (name, origin, tuple(rpath), tuple(runpath), elf_class, arch)
        if key in self._found:
            return self._found[key]
        found = self._search(name, origin, rpath, runpath, elf_class, arch)
        self._found[key] = found
        return found

    def _search(self, name, origin, rpath, runpath, elf_class, arch) -> str | None:
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
    return _dynamic(path)[6]


# --------------------------------------------------------------------------- will it load


@lru_cache(maxsize=1024)
def real(path: str) -> str:
    """os.path.realpath, remembered: each file of a build resolves the same libraries."""
    return os.path.realpath(path)


_VERSION = struct.Struct("<H")


def _version_key(name: str) -> tuple[str, tuple[int, ...]] | None:
    """("GLIBCXX", (3, 4, 30)) from "GLIBCXX_3.4.30"."""
    prefix, _, rest = name.rpartition("_")
    try:
        return prefix, tuple(int(x) for x in rest.split("."))
    except ValueError:
        return None


def newest_version(path: str, prefix: str) -> str | None:
    """The highest ``prefix``_N.N version a library defines (GLIBCXX_3.4.30), or None."""
    best = None
    for name in defined_versions(path):
        key = _version_key(name)
        if key and key[0] == prefix and (best is None or key[1] > best[1]):
            best = (name, key[1])
    return best[0] if best else None


@lru_cache(maxsize=256)
def _dynamic(
    path: str,
) -> tuple[frozenset[str], tuple[str, ...], tuple[str, ...], tuple[str, ...], int, str, frozenset[str]]:
    """(defined dynamic symbol names, NEEDED, RPATH, RUNPATH, ELF class, arch, defined versions) of a
    library found here.
    Read straight from the section headers, .dynamic and .dynsym with struct: pyelftools builds an
    object per section and per symbol (0.1 s for a libc), too slow for every library of every file."""
    empty: tuple[frozenset[str], tuple[str, ...], tuple[str, ...], tuple[str, ...], int, str, frozenset[str]] = (
        frozenset(),
        (),
        (),
        (),
        2,
        "",
        frozenset(),
    )
    ident = elf_identity(path)
    if ident is None:
        return empty
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return _read_dynamic(m, ident)
    except (OSError, ValueError, struct.error, IndexError):
        return empty


def _read_dynamic(m, ident: tuple[int, str]):
    is64 = ident[0] == 2
    e = "<" if m[5] == 1 else ">"
    if is64:
        (shoff,) = struct.unpack_from(e + "Q", m, 40)
        shentsize, shnum = struct.unpack_from(e + "HH", m, 58)
        shdr = struct.Struct(e + "IIQQQQIIQQ")  # name type flags addr offset size link info align entsize
    else:
        (shoff,) = struct.unpack_from(e + "I", m, 32)
        shentsize, shnum = struct.unpack_from(e + "HH", m, 46)
        shdr = struct.Struct(e + "IIIIIIIIII")
    secs = [shdr.unpack_from(m, shoff + i * shentsize) for i in range(shnum)]

    def body(sec) -> bytes:
        return m[sec[4] : sec[4] + sec[5]]

    names: set[str] = set()
    needed: list[str] = []
    rpath: list[str] = []
    runpath: list[str] = []
    versions: set[str] = set()
    for sec in secs:
        if sec[1] == 0x6FFFFFFD and sec[6] < len(secs):  # SHT_GNU_verdef: Verdef entries, each with Verdaux names
            strtab, raw, off = body(secs[sec[6]]), body(sec), 0
            for _ in range(4096):
                if off + 20 > len(raw):
                    break
                _v, _f, _ndx, cnt, _h, aux, nxt = struct.unpack_from(e + "HHHHIII", raw, off)
                a = off + aux
                for _ in range(cnt):
                    if a + 8 > len(raw):
                        break
                    name, anext = struct.unpack_from(e + "II", raw, a)
                    versions.add(_name_at(strtab, name))
                    if not anext:
                        break
                    a += anext
                if not nxt:
                    break
                off += nxt
        elif sec[1] == 11 and sec[6] < len(secs):  # SHT_DYNSYM
            names |= _defined_names(body(sec), body(secs[sec[6]]), is64, e == "<")
        elif sec[1] == 6 and sec[6] < len(secs):  # SHT_DYNAMIC
            strtab = body(secs[sec[6]])
            raw = body(sec)
            fmt = struct.Struct(e + ("qQ" if is64 else "iI"))
            raw = raw[: len(raw) - len(raw) % fmt.size]
            for tag, val in fmt.iter_unpack(raw):
                if tag == 0:
                    break
                if tag == 1:
                    needed.append(_name_at(strtab, val))
                elif tag == 15:
                    rpath += [p for p in _name_at(strtab, val).split(":") if p]
                elif tag == 29:
                    runpath += [p for p in _name_at(strtab, val).split(":") if p]
    return frozenset(names), tuple(needed), tuple(rpath), tuple(runpath), ident[0], ident[1], frozenset(versions)


def _entries(raw, is64: bool, little: bool):
    """(name offset, info, shndx) of each symbol table entry."""
    e = "<" if little else ">"
    if is64:
        fmt = struct.Struct(e + "IBBHQQ")
        raw = raw[: len(raw) - len(raw) % fmt.size]
        return ((n, info, shndx) for n, info, _o, shndx, _v, _s in fmt.iter_unpack(raw))
    fmt = struct.Struct(e + "IIIBBH")
    raw = raw[: len(raw) - len(raw) % fmt.size]
    return ((n, info, shndx) for n, _v, _s, info, _o, shndx in fmt.iter_unpack(raw))


def _name_at(strtab, off: int) -> str:
    end = strtab.find(b"\x00", off)
    return bytes(strtab[off : end if end >= 0 else len(strtab)]).decode("utf-8", "replace")


def _defined_names(raw, strtab, is64: bool, little: bool) -> set[str]:
    """Names of the defined GLOBAL/WEAK/UNIQUE symbols. The string table is split at C speed and
    mapped by offset; only names that start inside another (tail-merged) are looked up one by one."""
    strtab = bytes(strtab)
    parts = strtab.split(b"\x00")
    by_off = dict(zip(accumulate((len(p) + 1 for p in parts), initial=0), parts, strict=False))
    out: set[str] = set()
    for n, info, shndx in _entries(raw, is64, little):
        if shndx == 0 or not n or (info >> 4) not in (1, 2, 10):
            continue
        name = by_off.get(n)
        out.add(name.decode("utf-8", "replace") if name is not None else _name_at(strtab, n))
    return out


def undefined_unversioned(
    dynsym: bytes | memoryview, strtab, versym: bytes | memoryview | None, is64: bool, little: bool
) -> list[str]:
    """Names of the strong undefined symbols that carry no version (their .gnu.version entry is 0 or 1):
    the ones ld.so looks for by name alone. Weak ones may stay undefined. The columns are read as
    strided views (C speed): a module with 100,000 exported functions has as many entries."""
    width = 24 if is64 else 16
    raw = memoryview(dynsym)[: len(dynsym) - len(dynsym) % width]
    if little and sys.byteorder == "little" and is64:
        names = raw.cast("I")[0::6]
        infos = raw.cast("B")[4::24]
        shndx = raw.cast("H")[3::12]
        rows = [(i, names[i], infos[i]) for i in compress(range(len(shndx)), map(not_, shndx))]
    else:
        rows = [(i, n, info) for i, (n, info, sh) in enumerate(_entries(raw, is64, little)) if sh == 0]
    versions = None
    if versym is not None:
        v = memoryview(versym)[: len(versym) - len(versym) % 2]
        versions = v.cast("H") if little == (sys.byteorder == "little") else None
    out = []
    for i, n, info in rows:
        if i == 0 or not n or (info >> 4) != 1:  # STB_GLOBAL only
            continue
        if versions is not None and i < len(versions) and (versions[i] & 0x7FFF) > 1:
            continue
        out.append(_name_at(strtab, n))
    return out


def load_problems(
    required: dict[str, list[str]], resolved: dict[str, str], unversioned: list[str], *, resolver: Resolver
) -> list[LoadProblem]:
    """Why ld.so would refuse a file here, from the libraries found for it: a symbol version that
    the library found does not define (GLIBCXX_3.4.99 from a libstdc++ that stops at 3.4.30), or
    an unversioned symbol that none of the libraries it loads defines (ld.so's "undefined symbol").
    Missing libraries are reported on their own: with one missing, pass no ``unversioned``."""
    out: list[LoadProblem] = []
    for lib, versions in required.items():
        got = resolved.get(lib)
        have = defined_versions(real(got)) if got else frozenset()
        if not have:
            continue
        for v in versions:
            if v not in have:
                key = _version_key(v)
                newest = newest_version(real(got), key[0]) if key else None
                out.append(LoadProblem(kind="version", lib=lib, need=v, have=newest or ""))
    if not unversioned:
        return out
    cfg = load("inspect_libs.toml")["load"]
    host = tuple(cfg["host_provided"])
    todo = {n for n in unversioned[: int(cfg["max_symbols"])] if not n.startswith(host)}
    if not todo:
        return out
    # ld.so's global scope: every library loaded for the file, breadth first
    seen: set[str] = set()
    queue = [real(p) for p in resolved.values()]
    while queue and todo:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        names, needed, rpath, runpath, elf_class, arch, _versions = _dynamic(path)
        todo -= names
        origin = os.path.dirname(path)
        for name in needed:
            found = resolver.resolve(
                name, origin=origin, rpath=list(rpath), runpath=list(runpath), elf_class=elf_class, arch=arch
            )
            if found:
                queue.append(real(found))
    if todo:
        libs = ", ".join(sorted(resolved))
        out.append(LoadProblem(kind="symbol", lib=libs, need=", ".join(sorted(todo)[:5]), have="", count=len(todo)))
    return out
