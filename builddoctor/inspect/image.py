"""A read-only view of one binary's bytes: addresses, symbols, strings.

pyelftools (ELF) and inspect/foreign.py (PE, Mach-O) read the headers, which inspect/headers.py
checks first: sections, segments, NEEDED, symbol versions. This module reads what a general
library is slow at for large files, straight from an mmap: symbol tables (LIEF builds a Python
object per symbol, ~3 us each, far too slow for a libllama with 20,000 of them), pointers through
relocations, C strings and function bytes.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

SHN_UNDEF = 0
STT_OBJECT = 1
STT_FUNC = 2
STT_GNU_IFUNC = 10
SHF_COMPRESSED = 0x800


class ImageError(Exception):
    """The file is not what its headers say (truncated, damaged)."""


@dataclass
class Segment:
    vaddr: int
    offset: int
    filesz: int
    memsz: int


@dataclass
class Section:
    name: str
    offset: int
    size: int
    vaddr: int
    type: int = 0
    flags: int = 0
    link: int = 0


class SymbolTable:
    """One ELF symbol table (.dynsym or .symtab) with its string table.

    Entries are unpacked with ``struct.iter_unpack`` (about 0.2 us each); names are found by
    searching the string table bytes, so no Python string is made for symbols never asked for.
    """

    def __init__(self, strtab: bytes, raw: bytes | memoryview, is64: bool = True, little: bool = True):
        e = "<" if little else ">"
        self._fmt = struct.Struct(e + ("IBBHQQ" if is64 else "IIIBBH"))
        self._is64 = is64
        width = self._fmt.size
        raw = memoryview(raw)
        self._raw = raw[: len(raw) - len(raw) % width]
        self.strtab = strtab
        self._by_name: dict[int, int] | None = None
        self._n = len(self._raw) // width
        self.is_dynsym = False

    def __len__(self) -> int:
        return self._n

    def _row(self, i: int) -> tuple[int, int, int, int, int]:
        """(name, info, shndx, value, size) of entry i."""
        r = self._fmt.unpack_from(self._raw, i * self._fmt.size)
        if self._is64:
            return r[0], r[1], r[3], r[4], r[5]
        return r[0], r[3], r[5], r[1], r[2]

    def _index(self) -> dict[int, int]:
        """name offset -> entry. Built at C speed from a strided view of the name fields;
        when two entries share a name (static functions of different files) the last wins."""
        if self._by_name is None:
            width = self._fmt.size
            if self._fmt.format[0] == "<" and sys.byteorder == "little":
                names: Sequence[int] = self._raw.cast("I")[:: width // 4]
            else:
                names = [self._fmt.unpack_from(self._raw, i * width)[0] for i in range(self._n)]
            self._by_name = dict(zip(names, range(self._n), strict=False))
        return self._by_name

    def _rows_at(self, offsets) -> Iterator[tuple[int, int, int, int, int]]:
        idx = self._index()
        for off in offsets:
            i = idx.get(off)
            if i is not None:
                yield self._row(i)

    def lookup(self, name: str) -> list[tuple[int, int, int, bool]]:
        """(value, size, kind, defined) of every symbol named exactly ``name``."""
        needle = name.encode() + b"\x00"
        offsets = []
        start = 0
        while True:
            i = self.strtab.find(needle, start)
            if i < 0:
                break
            offsets.append(i)
            start = i + 1
        return [
            (value, size, info & 0xF, shndx != SHN_UNDEF) for _n, info, shndx, value, size in self._rows_at(offsets)
        ]

    def defined_value(self, name: str) -> tuple[int, int] | None:
        for value, size, _kind, defined in self.lookup(name):
            if defined and value:
                return value, size
        return None

    def defined_values(self, names: list[str]) -> dict[str, tuple[int, int]]:
        """Many exact names, a few passes over the string table: one regex per common prefix,
        so that the regex engine can skip ahead on a literal (an alternation of 50 names at
        the top would be tried at every byte of a multi-MB string table)."""
        groups: dict[bytes, list[bytes]] = {}
        for n in names:
            b = n.encode()
            groups.setdefault(b[:5], []).append(b[5:])
        out: dict[str, tuple[int, int]] = {}
        idx = self._index()
        strtab = self.strtab
        for prefix, rests in groups.items():
            alt = b"|".join(re.escape(r) for r in sorted(rests, key=len, reverse=True))
            rx = re.compile(re.escape(prefix) + b"(?:" + alt + b")\x00")
            pos = 0
            while True:
                m = rx.search(strtab, pos)
                if m is None:
                    break
                # a name may be the tail of a longer one: go on one byte later
                pos = m.start() + 1
                i = idx.get(m.start())
                if i is None:
                    continue
                _n, _info, shndx, value, size = self._row(i)
                if shndx != SHN_UNDEF and value:
                    out.setdefault(m.group(0)[:-1].decode(), (value, size))
        return out

    def rows_at(self, offsets) -> Iterator[tuple[int, int, int, int, int]]:
        """(name offset, info, shndx, value, size) of the entries whose names start at ``offsets``."""
        return self._rows_at(offsets)

    def search(self, pattern: bytes, *, defined: bool = True, funcs: bool = False) -> Iterator[tuple[str, int, int]]:
        """(name, value, size) of symbols whose name matches the regex ``pattern`` at its start."""
        rx = re.compile(pattern + rb"[^\x00]*\x00")
        offsets = (m.start() for m in rx.finditer(self.strtab))
        for off, info, shndx, value, size in self._rows_at(offsets):
            if defined and shndx == SHN_UNDEF:
                continue
            if funcs and (info & 0xF) not in (STT_FUNC, STT_GNU_IFUNC):
                continue
            end = self.strtab.find(b"\x00", off)
            yield self.strtab[off:end].decode("utf-8", "replace"), value, size

    def has_prefix(self, prefix: bytes, *, defined: bool = True, tries: int = 64) -> bool:
        """A symbol whose name starts with ``prefix``: bytes.find for a name start (right after a NUL,
        which skips the hits inside mangled C++ names) at memchr speed, then that entry. A regex with a
        look-behind ran at a few MB/s over the string table of a 100,000-symbol module."""
        pos = 0
        for _ in range(tries):
            i = self.strtab.find(b"\x00" + prefix, pos)
            if i < 0:
                return False
            if any(not defined or shndx != SHN_UNDEF for _n, _i, shndx, _v, _s in self._rows_at([i + 1])):
                return True
            pos = i + 1
        return False


@dataclass
class Image:
    """mmap of a file plus the address map an ELF/Mach-O/PE reader gave us."""

    data: mmap.mmap | bytes
    size: int
    segments: list[Segment] = field(default_factory=list)
    sections: dict[str, Section] = field(default_factory=dict)
    symtabs: list[SymbolTable] = field(default_factory=list)
    is64: bool = True
    little: bool = True
    _relocs: dict[int, int] | None = None
    _known: dict[str, tuple[int, int] | None] | None = None
    exported_only: bool = False  # a shared library: named look-ups use .dynsym alone

    def _named_tables(self) -> list[SymbolTable]:
        if self.exported_only and self.symtabs and self.symtabs[0].is_dynsym:
            return self.symtabs[:1]
        return self.symtabs

    rela_sections: list[Section] = field(default_factory=list)
    relative_types: tuple[int, ...] = (8,)  # R_X86_64_RELATIVE

    # -- addresses ---------------------------------------------------------------------
    def offset_of(self, vaddr: int) -> int | None:
        for s in self.segments:
            if s.vaddr <= vaddr < s.vaddr + s.filesz:
                return s.offset + (vaddr - s.vaddr)
        for sec in self.sections.values():
            if sec.vaddr and sec.vaddr <= vaddr < sec.vaddr + sec.size and sec.type != 8:  # not NOBITS
                return sec.offset + (vaddr - sec.vaddr)
        return None

    def read(self, vaddr: int, n: int) -> bytes:
        off = self.offset_of(vaddr)
        if off is None or off >= self.size:
            return b""
        return bytes(self.data[off : min(off + n, self.size)])

    def cstring(self, vaddr: int, limit: int = 512) -> str | None:
        raw = self.read(vaddr, limit)
        if not raw:
            return None
        end = raw.find(b"\x00")
        if end < 0:
            return None
        try:
            text = raw[:end].decode("utf-8")
        except UnicodeDecodeError:
            return None
        return text if text.isprintable() else None

    def pointer(self, vaddr: int) -> int | None:
        """The address stored at ``vaddr``, following a RELATIVE relocation when the bytes are 0."""
        width = 8 if self.is64 else 4
        raw = self.read(vaddr, width)
        if len(raw) != width:
            return None
        value = int.from_bytes(raw, "little" if self.little else "big")
        if value:
            return value
        return self.relocations().get(vaddr)

    def relocations(self) -> dict[int, int]:
        """offset -> addend of the RELATIVE relocations (RELA sections only)."""
        if self._relocs is None:
            self._relocs = {}
            e = "<" if self.little else ">"
            for sec in self.rela_sections:
                raw = self.data[sec.offset : sec.offset + sec.size]
                if self.is64:
                    fmt, width, mask = e + "QQq", 24, 0xFFFFFFFF
                else:
                    fmt, width, mask = e + "IIi", 12, 0xFF
                raw = raw[: len(raw) - len(raw) % width]
                types = self.relative_types
                self._relocs.update(
                    (off, add) for off, info, add in struct.iter_unpack(fmt, raw) if info & mask in types
                )
        return self._relocs

    # -- symbols -----------------------------------------------------------------------
    def prefetch(self, names: list[str]) -> None:
        """Look many names up at once; later ``symbol()`` calls for them are free."""
        if self._known is None:
            self._known = {}
        todo = [n for n in names if n not in self._known]
        if not todo:
            return
        for n in todo:
            self._known[n] = None
        for tab in self._named_tables():
            for n, v in tab.defined_values(todo).items():
                if self._known.get(n) is None:
                    self._known[n] = v

    def symbol(self, name: str) -> tuple[int, int] | None:
        """(address, size) of a defined symbol, from any table."""
        if self._known is not None and name in self._known:
            return self._known[name]
        for tab in self._named_tables():
            got = tab.defined_value(name)
            if got:
                return got
        return None

    def search_symbols(self, pattern: bytes, *, funcs: bool = True) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for tab in self.symtabs:
            for name, value, size in tab.search(pattern, funcs=funcs):
                if value and name not in out:
                    out[name] = (value, size)
        return out

    def defines_prefix(self, prefix: str) -> bool:
        return any(t.has_prefix(prefix.encode()) for t in self._named_tables())

    # -- raw sections ------------------------------------------------------------------
    def find_in(self, section: str, needle: bytes, limit: int | None = None) -> int:
        """Offset of ``needle`` inside a section (searched in place, no copy), or -1."""
        sec = self.sections.get(section)
        if sec is None or sec.type == 8 or sec.flags & SHF_COMPRESSED or sec.offset >= self.size:
            return -1
        end = min(sec.offset + (sec.size if limit is None else min(sec.size, limit)), self.size)
        i = self.data.find(needle, sec.offset, end)
        return i - sec.offset if i >= 0 else -1

    def section_bytes(self, name: str, limit: int | None = None) -> bytes | memoryview:
        sec = self.sections.get(name)
        if sec is None or sec.type == 8 or sec.flags & SHF_COMPRESSED:
            return b""
        end = sec.offset + (sec.size if limit is None else min(sec.size, limit))
        if sec.offset >= self.size:
            return b""
        return memoryview(self.data)[sec.offset : min(end, self.size)]


class FileWindow:
    """Small reads of an open file at any offset (``os.pread``), for walking the headers of a large
    section: through an mmap each page fault maps the 64 KB around it into this process (the
    kernel's fault-around), so hopping over the ~1,000 entry headers of a 128 MB CUDA fatbin made
    120 MB resident; read this way, only the bytes asked for are copied, 4 KB at a time.
    Slicing gives bytes, ``find`` searches in 1 MB windows; ``len`` is the file's size."""

    _FIND_CHUNK = 1 << 20

    def __init__(self, fd: int, size: int):
        self._fd, self._size = fd, size
        self._base, self._buf = 0, b""  # the last 4 KB read: a header and its first entry

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, sl: slice) -> bytes:
        start, stop, _step = sl.indices(self._size)
        if stop <= start:
            return b""
        if not (self._base <= start and stop <= self._base + len(self._buf)):
            self._base = start
            self._buf = os.pread(self._fd, max(stop - start, 4096), start)
        return self._buf[start - self._base : stop - self._base]

    def find(self, needle: bytes, start: int = 0, end: int | None = None) -> int:
        end = self._size if end is None else min(end, self._size)
        pos = start
        while pos < end:
            chunk = os.pread(self._fd, min(self._FIND_CHUNK, end - pos), pos)
            if not chunk:
                break
            i = chunk.find(needle)
            if i >= 0:
                return pos + i
            if pos + len(chunk) >= end:
                break
            pos += max(1, len(chunk) - len(needle) + 1)  # a needle across two windows is still found
        return -1
