"""PE and Mach-O headers, read without holding the file in memory.

LIEF reads a whole PE into memory and then copies every section's content (the 145 MB
``ggml-cuda.dll`` of a Windows CUDA build peaked at 338 MB, 1.3 s), and ``import lief`` alone
costs up to 0.9 s of CPU. PE files are therefore read with pefile (``fast_load`` over the file's
mmap: headers, then only the import and debug directories), except the export name table: pefile
builds a Python object per export (0.7 s for the 12,600 of a ``llama-common.dll``), while only
the names are needed, so those are read here from the mmap (the IMAGE_EXPORT_DIRECTORY's name
pointer array). Mach-O files are read here too, from the load commands headers.macho_slices has
checked: no maintained library exposes them cheaply (LIEF copies the file and makes an object per
symbol; macholib makes one per nlist entry and does not read the export trie). What LIEF gave
(dylibs incl. the file's own install name, nlist names, export trie names, section names) was
compared with this reader on the 192 PE and Mach-O files of the real-file corpus: identical.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field

# A hostile export directory may claim 4 billion names: no real DLL has a million.
_MAX_EXPORT_NAMES = 1 << 20
_MAX_NAME = 4096


class ForeignError(Exception):
    """The file is not a PE its headers promise (pefile refused it)."""


@dataclass
class PeFacts:
    is_dll: bool
    needed: list[str] = field(default_factory=list)  # imported DLLs, in import table order
    imported: list[str] = field(default_factory=list)  # imported function names
    exports: list[str] = field(default_factory=list)  # exported names
    has_debug: bool = False  # a debug directory (CodeView: a PDB was written)
    sections: list[tuple[str, int, int]] = field(default_factory=list)  # (name, file offset, size)


def _text(raw) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw or "")


def _sections_in_file(pe) -> list[tuple[int, int, int]]:
    """(first rva, end rva, file offset) of the bytes each section has in the file: its raw size,
    less the zero fill past its virtual size."""
    spans = []
    for s in pe.sections:
        length = min(s.Misc_VirtualSize, s.SizeOfRawData) if s.Misc_VirtualSize else s.SizeOfRawData
        spans.append((s.VirtualAddress, s.VirtualAddress + length, s.PointerToRawData))
    return spans


def _offset(spans, rva: int, size: int) -> tuple[int, tuple[int, int, int]] | None:
    """(file offset, its section span) of an rva, None outside the file."""
    hit = next((sp for sp in spans if sp[0] <= rva < sp[1]), None)
    if hit is None or hit[2] + rva - hit[0] >= size:
        return None
    return hit[2] + rva - hit[0], hit


def _export_names(pe, data, size: int) -> list[str]:
    """The names of the export name pointer table. They sit in one section (.rdata or .edata): that
    span is copied once and split at its NULs (20,000 names in a few ms); a name elsewhere is found
    through its own section."""
    dirs = pe.OPTIONAL_HEADER.DATA_DIRECTORY
    if not dirs or not dirs[0].VirtualAddress or not dirs[0].Size:
        return []
    spans = _sections_in_file(pe)
    got = _offset(spans, dirs[0].VirtualAddress, size)
    if got is None or got[0] + 40 > size:
        return []
    nnames, _funcs, names_rva = struct.unpack_from("<III", data, got[0] + 24)
    arr = _offset(spans, names_rva, size) if nnames else None
    if arr is None:
        return []
    n = min(nnames, _MAX_EXPORT_NAMES, (size - arr[0]) // 4)
    rvas = struct.unpack_from(f"<{n}I", data, arr[0])
    first = _offset(spans, min(rvas), size) if rvas else None
    if first is None:
        return []
    lo_rva, end_rva, raw = first[1]
    base = min(rvas)
    lo = raw + (base - lo_rva)
    buf = bytes(data[lo : min(raw + (end_rva - lo_rva), raw + (max(rvas) - lo_rva) + _MAX_NAME, size)])
    # every NUL-terminated string of that span by its start: one split, no Python per byte
    pieces = buf.split(b"\x00")[:-1]  # the last piece has no terminating NUL in the span
    table = dict(zip(itertools.accumulate((len(p) + 1 for p in pieces), initial=0), pieces, strict=False))
    out = []
    for rva in rvas:
        name = table.get(rva - base)
        if name is None:  # in another section, or the tail of a longer string: the slow way
            other = _offset(spans, rva, size)
            if other is None:
                continue
            at = other[0]
            end = data.find(b"\x00", at, min(at + _MAX_NAME, size))
            name = bytes(data[at:end]) if end > at else b""
        if 0 < len(name) < _MAX_NAME:
            out.append(name)
    return [name.decode("utf-8", "replace") for name in out]


def read_pe(data, size: int) -> PeFacts:
    """Facts of a PE file from its mmap (``data``), whose headers headers.pe_machine checked first.

    Raises ForeignError when pefile refuses the headers."""
    import pefile  # noqa: PLC0415 (pefile is heavy: loaded when a PE file is read)

    try:
        pe = pefile.PE(data=data, fast_load=True)
        want = [pefile.DIRECTORY_ENTRY[k] for k in ("IMAGE_DIRECTORY_ENTRY_IMPORT", "IMAGE_DIRECTORY_ENTRY_DEBUG")]
        pe.parse_data_directories(directories=want)
    except pefile.PEFormatError as exc:
        raise ForeignError(f"damaged PE file ({exc.value if hasattr(exc, 'value') else exc})") from None
    facts = PeFacts(is_dll=bool(pe.FILE_HEADER.IMAGE_FILE_DLL))
    for entry in getattr(pe, "DIRECTORY_ENTRY_IMPORT", []):
        facts.needed.append(_text(entry.dll))
        # by name only: pefile names ordinal imports from its own table, which the file does not hold
        facts.imported += [_text(imp.name) for imp in entry.imports if imp.name and not imp.import_by_ordinal]
    facts.exports = _export_names(pe, data, size)
    facts.has_debug = bool(getattr(pe, "DIRECTORY_ENTRY_DEBUG", None))
    facts.sections = [(_text(s.Name.split(b"\x00", 1)[0]), s.PointerToRawData, s.SizeOfRawData) for s in pe.sections]
    return facts


MH_EXECUTE = 2


@dataclass
class MachoFacts:
    filetype: int  # MH_EXECUTE = 2, MH_DYLIB = 6, MH_BUNDLE = 8 (a Python or node module)...
    libraries: list[str] = field(default_factory=list)  # the dylibs it loads, in load command order
    symbols: set[str] = field(default_factory=set)  # every nlist name, and every name its export trie holds
    sections: list[str] = field(default_factory=list)  # section names (__text, __debug_info...)


# <mach-o/loader.h>
_LC_SEGMENT, _LC_SYMTAB, _LC_SEGMENT_64 = 0x1, 0x2, 0x19
# ID (its own install name, first as LIEF lists it), LOAD, LOAD_WEAK, REEXPORT, LAZY_LOAD, LOAD_UPWARD
_LC_DYLIBS = {0xD, 0xC, 0x80000018, 0x8000001F, 0x20, 0x80000023}
_LC_DYLD_INFO = (0x22, 0x80000022)
_LC_DYLD_EXPORTS_TRIE = 0x80000033
_MAX_SYMBOLS = 4 << 20
_MAX_TRIE_NODES = 1 << 21


def _cstr(data, at: int, end: int) -> str:
    stop = data.find(b"\x00", at, min(end, at + _MAX_NAME))
    return bytes(data[at : stop if stop >= 0 else min(end, at + _MAX_NAME)]).decode("utf-8", "replace")


def _uleb(data, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            break
    raise ValueError("damaged ULEB128 number in the export trie")


def _trie_names(data, start: int, size: int, limit: int) -> set[str]:
    """Names in a dyld export trie (each node: terminal info, then edges: a label and a child
    offset); each node is visited once, so a trie whose edges loop ends."""
    end = min(start + size, limit)
    out: set[str] = set()
    seen: set[int] = set()
    todo = [(0, b"")]
    while todo and len(seen) < _MAX_TRIE_NODES:
        node, prefix = todo.pop()
        if node in seen or start + node >= end:
            continue
        seen.add(node)
        pos = start + node
        info, pos = _uleb(data, pos, end)
        if info:
            out.add(prefix.decode("utf-8", "replace"))
        pos += info
        if pos >= end:
            continue
        count = data[pos]
        pos += 1
        for _ in range(count):
            stop = data.find(b"\x00", pos, end)
            if stop < 0:
                break
            label = bytes(data[pos:stop])
            child, pos = _uleb(data, stop + 1, end)
            if len(prefix) + len(label) <= _MAX_NAME:  # a forged chain of long labels stays bounded
                todo.append((child, prefix + label))
    return out


def read_macho(data, size: int, base: int = 0) -> MachoFacts:
    """Facts of the thin Mach-O at ``base`` in ``data`` (the file's mmap), whose header and load
    commands headers.macho_slices checked first. Names are read in place; the symbol table is walked
    with struct.iter_unpack (LIEF made an object per symbol after copying the whole file)."""
    e = "<" if bytes(data[base : base + 4]) in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe") else ">"
    is64 = bytes(data[base : base + 4]) in (b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xcf")
    _cpu, _sub, filetype, ncmds, sizeofcmds = struct.unpack_from(e + "iiIII", data, base + 4)
    facts = MachoFacts(filetype=filetype)
    pos = base + (32 if is64 else 28)
    end = min(pos + sizeofcmds, size)
    symtab = None
    tries: list[tuple[int, int]] = []
    for _ in range(ncmds):
        if pos + 8 > end:
            break
        cmd, cmdsize = struct.unpack_from(e + "II", data, pos)
        if cmdsize < 8:
            break
        if cmd in _LC_DYLIBS and cmdsize >= 24:
            (name_off,) = struct.unpack_from(e + "I", data, pos + 8)
            if 24 <= name_off < cmdsize:
                facts.libraries.append(_cstr(data, pos + name_off, pos + cmdsize))
        elif cmd in (_LC_SEGMENT_64, _LC_SEGMENT):
            head, width = (72, 80) if cmd == _LC_SEGMENT_64 else (56, 68)
            (nsects,) = struct.unpack_from(e + "I", data, pos + head - 8)
            for i in range(min(nsects, (cmdsize - head) // width)):
                raw = bytes(data[pos + head + i * width : pos + head + i * width + 16])
                facts.sections.append(raw.split(b"\x00", 1)[0].decode("utf-8", "replace"))
        elif cmd == _LC_SYMTAB and cmdsize >= 24:
            symtab = struct.unpack_from(e + "IIII", data, pos + 8)
        elif cmd in _LC_DYLD_INFO and cmdsize >= 48:
            tries.append(struct.unpack_from(e + "II", data, pos + 40))
        elif cmd == _LC_DYLD_EXPORTS_TRIE and cmdsize >= 16:
            tries.append(struct.unpack_from(e + "II", data, pos + 8))
        pos += cmdsize
    if symtab is not None:
        symoff, nsyms, stroff, strsize = symtab
        width = 16 if is64 else 12
        lo, hi = base + stroff, min(base + stroff + strsize, size)
        nsyms = min(nsyms, _MAX_SYMBOLS, max(0, (size - base - symoff) // width))
        rows = memoryview(data)[base + symoff : base + symoff + nsyms * width]
        try:
            fmt = e + ("IBBHQ" if is64 else "IBBHI")
            for strx, *_rest in struct.iter_unpack(fmt, rows):
                at = lo + strx
                if at < hi:
                    stop = data.find(b"\x00", at, min(hi, at + _MAX_NAME))
                    facts.symbols.add(bytes(data[at : stop if stop >= 0 else hi]).decode("utf-8", "replace"))
                else:
                    facts.symbols.add("")
        finally:
            rows.release()
    for off, length in tries:
        if off and length:
            facts.symbols |= _trie_names(data, base + off, length, size)
    return facts
