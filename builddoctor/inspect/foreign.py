"""PE and Mach-O headers, read without holding the file in memory.

LIEF reads a whole PE into memory and then copies every section's content (the 145 MB
``ggml-cuda.dll`` of a Windows CUDA build peaked at 338 MB, 1.3 s), and ``import lief`` alone
costs up to 0.9 s of CPU. PE files are therefore read with pefile (``fast_load`` over the file's
mmap: headers, then only the import and debug directories), except the export name table: pefile
builds a Python object per export (0.7 s for the 12,600 of a ``llama-common.dll``), while only
the names are needed, so those are read here from the mmap (the IMAGE_EXPORT_DIRECTORY's name
pointer array). Mach-O files stay with LIEF, configured to skip the dyld bind and rebase opcodes
that nothing here reads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable, Optional

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


def _rva_to_offset(pe, size: int) -> Callable[[int], Optional[int]]:
    """rva -> file offset, with the last section hit remembered: the names of an export table sit
    in one section, so 18,000 look-ups cost one section search each at most once."""
    spans = []
    for s in pe.sections:
        # the bytes in the file: the raw size, less the zero fill past the virtual size
        length = min(s.Misc_VirtualSize, s.SizeOfRawData) if s.Misc_VirtualSize else s.SizeOfRawData
        spans.append((s.VirtualAddress, s.VirtualAddress + length, s.PointerToRawData))
    last = [None]

    def conv(rva: int) -> Optional[int]:
        hit = last[0]
        if hit is None or not hit[0] <= rva < hit[1]:
            hit = next((sp for sp in spans if sp[0] <= rva < sp[1]), None)
            if hit is None:
                return None
            last[0] = hit
        off = hit[2] + rva - hit[0]
        return off if off < size else None

    return conv


def _export_names(pe, data, size: int) -> list[str]:
    dirs = pe.OPTIONAL_HEADER.DATA_DIRECTORY
    if not dirs or not dirs[0].VirtualAddress or not dirs[0].Size:
        return []
    conv = _rva_to_offset(pe, size)
    off = conv(dirs[0].VirtualAddress)
    if off is None or off + 40 > size:
        return []
    nnames, _funcs, names_rva = struct.unpack_from("<III", data, off + 24)
    arr = conv(names_rva) if nnames else None
    if arr is None:
        return []
    n = min(nnames, _MAX_EXPORT_NAMES, (size - arr) // 4)
    out = []
    for rva in struct.unpack_from(f"<{n}I", data, arr):
        at = conv(rva)
        if at is None:
            continue
        end = data.find(b"\x00", at, min(at + _MAX_NAME, size))
        if end > at:
            out.append(bytes(data[at:end]).decode("utf-8", "replace"))
    return out


def read_pe(data, size: int) -> PeFacts:
    """Facts of a PE file from its mmap (``data``), whose headers image.pe_machine checked first.

    Raises ForeignError when pefile refuses the headers."""
    import pefile

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


def parse_macho(path: str):
    """LIEF's FatBinary of a Mach-O file (None when LIEF cannot read it), without the dyld bind and
    rebase opcodes (nothing here reads them; they were half of LIEF's time on a 5 MB dylib)."""
    import lief

    lief.logging.disable()
    config = lief.MachO.ParserConfig()
    config.parse_dyld_bindings = False
    config.parse_dyld_rebases = False
    return lief.MachO.parse(path, config)
