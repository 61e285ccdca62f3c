"""Whether a file carries llama.cpp, from its dynamic symbol table.

Discovery calls this for files whose names say nothing (``_foo.cpython-311-x86_64-linux-gnu.so``,
``foo.abi3.so``, an npm ``.node`` addon, a library named after its package): such a file is
llama.cpp when it exports or imports ggml/llama symbols. Only the dynamic symbol table is read
(ELF: .dynsym and its string table, searched in place; Mach-O/PE: LIEF), and the first hit ends
the search, so a site-packages of a few thousand libraries is read in well under a second.
Never raises: an unreadable or damaged file is simply not llama.cpp here (``analyze`` says why
when the file is inspected for other reasons).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

# The string table of one .dynsym is read at most this far (a 300 MB CUDA module has a few MB).
_MAX_STRTAB = 64 << 20


def mentions_strings(path: Path, needles: Sequence[str], limit: int) -> bool:
    """True when one of ``needles`` is in the first ``limit`` bytes of ``path`` (mapped, searched in
    place at C speed: a 64 MB read costs tens of milliseconds)."""
    import mmap

    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if not size:
                return False
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
                end = min(size, limit)
                return any(m.find(n.encode(), 0, end) >= 0 for n in needles)
    except (OSError, ValueError, OverflowError):
        return False


def mentions_prefixes(path: Path, prefixes: Sequence[str]) -> bool:
    """True when ``path``'s dynamic symbols (defined or undefined) start with one of ``prefixes``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if head[:4] == b"\x7fELF":
                return _elf(fh, head, prefixes)
            if head[:2] == b"MZ" or head[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe",
                                                  b"\xfe\xed\xfa\xcf", b"\xfe\xed\xfa\xce"):
                return _lief(path, head, prefixes)
    except (OSError, ValueError, struct.error, OverflowError, MemoryError):
        return False
    return False


def _elf(fh, head: bytes, prefixes: Sequence[str]) -> bool:
    """The section headers are unpacked here with struct: pyelftools spends about 2.5 ms a file
    setting up its parsers, and a site-packages holds thousands of libraries. The string table
    is searched first (at C speed) and a hit is confirmed against .dynsym (image.SymbolTable)."""
    from builddoctor.inspect.image import SymbolTable, elf_header_problem

    size = os.fstat(fh.fileno()).st_size
    if len(head) < 64 or elf_header_problem(head, size):
        return False
    is64, little = head[4] == 2, head[5] == 1
    e = "<" if little else ">"
    if is64:
        shoff, = struct.unpack_from(e + "Q", head, 0x28)
        shentsize, shnum = struct.unpack_from(e + "HH", head, 0x3A)
        shdr, want_size = struct.Struct(e + "IIQQQQIIQQ"), 64
    else:
        shoff, = struct.unpack_from(e + "I", head, 0x20)
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


def _lief(path: Path, head: bytes, prefixes: Sequence[str]) -> bool:
    try:
        import lief

        from builddoctor.inspect.binary import _text
    except ImportError:
        return False
    lief.logging.disable()
    want = tuple(prefixes) + tuple("_" + p for p in prefixes)  # Mach-O names carry a leading "_"
    try:
        if head[:2] == b"MZ":
            pe = lief.PE.parse(str(path))
            if pe is None:
                return False
            if any(_text(e.name).startswith(want) for e in pe.exported_functions):
                return True
            return any(_text(entry.name or "").startswith(want) for imp in pe.imports for entry in imp.entries)
        fat = lief.MachO.parse(str(path))
        if fat is None:
            return False
        slices = [b for b in (fat.at(i) for i in range(len(fat))) if b is not None]
        return any(_text(s.name).startswith(want) for b in slices for s in b.symbols)
    except Exception:  # noqa: BLE001 - LIEF raises its own types on odd input: not llama.cpp then
        return False
