"""Whether a file carries llama.cpp, from its dynamic symbol table.

Discovery calls this for files whose names say nothing (``_foo.cpython-311-x86_64-linux-gnu.so``,
``foo.abi3.so``, an npm ``.node`` addon, a library named after its package): such a file is
llama.cpp when it exports or imports ggml/llama symbols. Only the dynamic symbol table is read
(ELF: .dynsym and its string table, searched in place; PE: its import and export tables;
Mach-O: its symbol table and export trie, both read in place by inspect.foreign), and the first hit ends
the search, so a site-packages of a few thousand libraries is read in well under a second.
Never raises: an unreadable or damaged file is simply not llama.cpp here (``analyze`` says why
when the file is inspected for other reasons).
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Sequence
from pathlib import Path

from builddoctor.inspect import foreign
from builddoctor.inspect.headers import elf_header_problem, macho_slices, pe_machine
from builddoctor.inspect.image import ImageError, SymbolTable

# The string table of one .dynsym is read at most this far (a 300 MB CUDA module has a few MB).
_MAX_STRTAB = 64 << 20


def mentions_strings(path: Path, needles: Sequence[str], limit: int) -> bool:
    """True when one of ``needles`` is in the first ``limit`` bytes of ``path``: read in 1 MB windows
    (``os.pread``, searched at C speed, all needles per window), not through an mmap, whose pages
    would all become resident (64 MB of a 150 MB CUDA DLL, for a search that finds nothing)."""
    chunk = 1 << 20
    raw = [n.encode() for n in needles]
    if not raw:
        return False
    overlap = max(len(n) for n in raw) - 1  # a needle across two windows is still found
    try:
        with open(path, "rb") as fh:
            fd = fh.fileno()
            end = min(os.fstat(fd).st_size, limit)
            pos = 0
            while pos < end:
                window = os.pread(fd, min(chunk, end - pos), pos)
                if not window:
                    return False
                if any(n in window for n in raw):
                    return True
                if pos + len(window) >= end:
                    return False
                pos += max(1, len(window) - overlap)
    except (OSError, ValueError, OverflowError):
        return False
    return False


def mentions_prefixes(path: Path, prefixes: Sequence[str]) -> bool:
    """True when ``path``'s dynamic symbols (defined or undefined) start with one of ``prefixes``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if head[:4] == b"\x7fELF":
                return _elf(fh, head, prefixes)
            if head[:2] == b"MZ" or head[:4] in (
                b"\xcf\xfa\xed\xfe",
                b"\xce\xfa\xed\xfe",
                b"\xca\xfe\xba\xbe",
                b"\xfe\xed\xfa\xcf",
                b"\xfe\xed\xfa\xce",
            ):
                return _foreign(path, head, prefixes)
    except (OSError, ValueError, struct.error, OverflowError, MemoryError):
        return False
    return False


def _elf(fh, head: bytes, prefixes: Sequence[str]) -> bool:
    """The section headers are unpacked here with struct: pyelftools spends about 2.5 ms a file
    setting up its parsers, and a site-packages holds thousands of libraries. The string table
    is searched first (at C speed) and a hit is confirmed against .dynsym (image.SymbolTable)."""
    size = os.fstat(fh.fileno()).st_size
    if len(head) < 64 or elf_header_problem(head, size):
        return False
    is64, little = head[4] == 2, head[5] == 1
    e = "<" if little else ">"
    if is64:
        (shoff,) = struct.unpack_from(e + "Q", head, 0x28)
        shentsize, shnum = struct.unpack_from(e + "HH", head, 0x3A)
        shdr, want_size = struct.Struct(e + "IIQQQQIIQQ"), 64
    else:
        (shoff,) = struct.unpack_from(e + "I", head, 0x20)
        shentsize, shnum = struct.unpack_from(e + "HH", head, 0x2E)
        shdr, want_size = struct.Struct(e + "IIIIIIIIII"), 40
    if shentsize != want_size or not 0 < shnum <= 65535 or shoff + shnum * shentsize > size:
        return False
    fh.seek(shoff)
    table = fh.read(shnum * shentsize)
    rows = [shdr.unpack_from(table, i * shentsize) for i in range(shnum)]
    # (type, offset, size, link) of each section
    secs = [(r[1], r[4], r[5], r[6]) for r in rows]  # same field order in both classes
    dynsym = next((s for s in secs if s[0] == SHT_DYNSYM), None)
    if dynsym is None or not 0 < dynsym[3] < len(secs):
        return False
    strsec = secs[dynsym[3]]
    if dynsym[1] + dynsym[2] > size or strsec[1] + strsec[2] > size:
        return False
    fh.seek(strsec[1])
    strtab = fh.read(min(strsec[2], _MAX_STRTAB))
    needles = [b"\x00" + p.encode() for p in prefixes]
    if not any(n in strtab for n in needles):
        return False
    fh.seek(dynsym[1])
    tab = SymbolTable(strtab, fh.read(min(dynsym[2], _MAX_STRTAB)), is64, little)
    return any(tab.has_prefix(p.encode(), defined=False) for p in prefixes)


SHT_DYNSYM = 11


def _foreign(path: Path, head: bytes, prefixes: Sequence[str]) -> bool:
    """PE: its import and export names; Mach-O: every slice's symbols (inspect.foreign, over an mmap)."""
    want = tuple(prefixes) + tuple("_" + p for p in prefixes)  # Mach-O names carry a leading "_"
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if head[:2] == b"MZ":
                pe_machine(data, len(data))
                pe = foreign.read_pe(data, len(data))
                return any(n.startswith(want) for n in pe.exports) or any(n.startswith(want) for n in pe.imported)
            return any(
                s.startswith(want)
                for _arch, off in macho_slices(data, len(data))
                for s in foreign.read_macho(data, len(data), off).symbols
            )
    except (ImageError, foreign.ForeignError, ValueError, IndexError, struct.error, OverflowError):
        return False
